//! The deterministic scheduler: one run of one seed.
//!
//! A run is a discrete-event simulation over a single priority queue ordered
//! by (simulated time, insertion number). Every event — a message arriving, a
//! timer firing, a disk sync completing, a scheduled fault — is popped in that
//! order and handed to the sans-IO node it concerns; the node's outputs are
//! turned into new events by the network interposer (latency, jitter, loss,
//! duplication, partitions) and the storage shim (unsynced writes, crashes).
//!
//! One ChaCha generator per purpose, all derived from the seed: stream 0
//! draws the swarm settings, stream 1 the fault schedule, stream 2 everything
//! at run time (latencies, message faults, timer jitter, proposal times). An
//! edited schedule therefore leaves the swarm draw alone.
//!
//! Why not madsim's runtime here: a campaign runs millions of schedules, and
//! madsim pays for socket emulation, task spawns and a boxed payload per
//! message. This loop pays for none of that; `crates/node` runs the same core
//! on madsim's net/time/task APIs.
//!
//! After every event the omniscient [`Observer`] checks S1–S4; a protocol
//! assertion that fails inside a node is caught and reported as a violation.
//! The run stops at the first violation.

use crate::config::RunConfig;
use crate::nemesis::{Fault, Faults, Schedule};
use crate::queue::Queue;
use crate::trace::{DropReason, Event, Keep, Kind, Tracer};
use checkers::{Coverage, Invariant, Observer, Violation};
use paxos::{Config, Input, Msg, Node, NodeId, Output, Record, Timer, Value, MAX_NODES};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// The RNG of a seed's stream `stream`.
pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// Resolves a config for a seed: draws the faults if the config leaves them
/// to the swarm, and generates the schedule.
pub fn plan(seed: u64, cfg: &RunConfig) -> (RunConfig, Schedule) {
    let mut resolved = cfg.clone();
    let faults = cfg.faults.unwrap_or_else(|| {
        if cfg.scenario.is_log() {
            Faults::draw_log(&mut rng(seed, 0), cfg.log.timing.drift_ppm)
        } else {
            Faults::draw(&mut rng(seed, 0))
        }
    });
    resolved.faults = Some(faults);
    let schedule = Schedule::generate(&mut rng(seed, 1), cfg.nodes, &faults, cfg.fault_phase_us);
    (resolved, schedule)
}

/// The value proposer `node` proposes (distinct per proposer).
pub fn value_of(node: NodeId) -> Value {
    100 + node as Value
}

/// The value `node`'s client asks for on its `retry`-th fresh retry (0: the
/// first request). Distinct across proposers and retries.
pub fn retry_value(node: NodeId, retry: u32) -> Value {
    value_of(node) + 1000 * retry as Value
}

/// What a run measured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub events: u64,
    pub deliveries: u64,
    pub drops: u64,
    pub duplicates: u64,
    pub sim_time_us: u64,
    /// Scheduled faults that took effect, by [`Fault::kind_index`].
    pub faults: [u64; crate::nemesis::KINDS],
    pub coverage: Coverage,
    /// `kv`: 1 if the linearizability search ran out of budget on some key
    /// (no key failed, but the history is not proven linearizable).
    #[serde(default)]
    pub lin_undecided: u64,
}

/// The result of one run.
pub struct Report {
    pub seed: u64,
    /// The config with its faults resolved.
    pub config: RunConfig,
    pub schedule: Schedule,
    pub violation: Option<Violation>,
    pub stats: Stats,
    pub trace_hash: u64,
    /// The last events before the end (the lead-up to a violation).
    pub recent: Vec<Event>,
    pub trace: Option<Vec<Event>>,
}

#[derive(Copy, Clone, Debug)]
enum Ev {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: Msg,
    },
    Timer {
        node: NodeId,
        inc: u32,
        timer: Timer,
    },
    SyncDone {
        node: NodeId,
        inc: u32,
        upto: u64,
    },
    Fault(u32),
    Propose {
        node: NodeId,
    },
    /// Power loss during a sync: crash `node` if still incarnation `inc`.
    PowerLoss {
        node: NodeId,
        inc: u32,
    },
    Restart {
        node: NodeId,
    },
    Quiet,
}

/// A node's slot: its process (if up) and its disk.
struct Slot {
    node: Option<Node>,
    /// Incarnation: bumped at each crash, so a dead process's timers and
    /// syncs are ignored.
    inc: u32,
    durable: Record,
    /// The number of the last write of this incarnation known durable (D1).
    synced: u64,
    /// Writes issued but not yet synced; a crash loses them.
    unsynced: Vec<(u64, Record)>,
    slow: bool,
    proposed: bool,
    /// How many times this node's client retried its request after a
    /// restart (each retry with a fresh value, in seeds that draw so).
    retries: u32,
}

/// The bound on queued events: a run that exceeds it is a harness bug or a
/// message storm, and stops with an assertion rather than eating memory.
const QUEUE_MAX: usize = 1 << 20;

pub struct World {
    seed: u64,
    cfg: RunConfig,
    faults: Faults,
    schedule: Schedule,
    rng: ChaCha8Rng,
    now: u64,
    queue: Queue<Ev>,
    slots: Vec<Slot>,
    /// `blocked[a]` has bit `b` set when messages from a to b are cut.
    blocked: [u16; MAX_NODES],
    quiet: bool,
    /// Whether a client whose proposer restarted retries with a fresh value
    /// (drawn per seed), as a real client retrying with a new command would.
    fresh_retries: bool,
    obs: Observer,
    out: Vec<Output>,
    trace: Tracer,
    stats: Stats,
    violation: Option<Violation>,
    /// The node being stepped (for assertion reports).
    current: Option<NodeId>,
}

thread_local! {
    /// The message and location of the last panic on this thread, recorded by
    /// the hook below so a failed protocol assertion can be reported.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static IN_RUN: RefCell<bool> = const { RefCell::new(false) };
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_RUN.with(|r| *r.borrow()) {
                let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
                    s.to_string()
                } else if let Some(s) = info.payload().downcast_ref::<String>() {
                    s.clone()
                } else {
                    "panic".to_string()
                };
                let loc = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{loc}")));
            } else {
                default(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic (a failed protocol assertion) into its message
/// and location, without printing it.
pub(crate) fn catching(f: impl FnOnce()) -> Result<(), String> {
    install_panic_hook();
    IN_RUN.with(|r| *r.borrow_mut() = true);
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_RUN.with(|r| *r.borrow_mut() = false);
    result.map_err(|_| {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "panic".into())
    })
}

impl World {
    pub fn new(seed: u64, config: RunConfig, schedule: Schedule, keep: Keep) -> World {
        config.validate().expect("config validated by the caller");
        config
            .validate_schedule(&schedule)
            .expect("schedule validated by the caller");
        let faults = config.faults.expect("faults resolved by plan()");
        let n = config.nodes as usize;
        let slots = (0..n)
            .map(|_| Slot {
                node: None,
                inc: 0,
                durable: Record::default(),
                synced: 0,
                unsynced: Vec::new(),
                slow: false,
                proposed: false,
                retries: 0,
            })
            .collect();
        World {
            seed,
            faults,
            schedule,
            rng: rng(seed, 2),
            now: 0,
            queue: Queue::new(QUEUE_MAX),
            slots,
            blocked: [0; MAX_NODES],
            quiet: false,
            // Its own stream, so the seeds' other draws stay as they were.
            fresh_retries: rng(seed, 3).gen_bool(0.5),
            obs: Observer::new(n),
            out: Vec::with_capacity(64),
            trace: Tracer::new(keep),
            stats: Stats::default(),
            violation: None,
            current: None,
            cfg: config,
        }
    }

    fn node_config(&self, id: NodeId) -> Config {
        Config {
            n: self.cfg.nodes,
            id,
            proposer: id < self.cfg.proposers,
            timing: self.cfg.timing,
            bugs: self.cfg.bugs,
        }
    }

    fn push(&mut self, at_us: u64, ev: Ev) {
        assert!(at_us >= self.now, "an event scheduled in the past");
        self.queue.push(at_us, ev);
    }

    fn record(&mut self, node: NodeId, kind: Kind) {
        self.trace.record(Event {
            at_us: self.now,
            node,
            kind,
        });
    }

    fn check(&mut self, r: Result<(), Violation>) {
        if let Err(v) = r {
            if self.violation.is_none() {
                self.violation = Some(v);
            }
        }
    }

    /// Runs to the end: until every node learned after the quiet period
    /// began, or the liveness deadline passed, or an invariant broke.
    pub fn run(mut self) -> Report {
        if let Err(detail) = catching(|| self.run_loop()) {
            self.violation = Some(Violation {
                invariant: Invariant::Assert,
                at_us: self.now,
                node: self.current,
                detail,
            });
        }
        self.stats.sim_time_us = self.now;
        self.stats.events = self.trace.count;
        self.stats.coverage = self.obs.coverage;
        Report {
            seed: self.seed,
            config: self.cfg,
            schedule: self.schedule,
            violation: self.violation,
            stats: self.stats,
            trace_hash: self.trace.hash(),
            recent: self.trace.recent(),
            trace: self.trace.take_all(),
        }
    }

    fn run_loop(&mut self) {
        let n = self.cfg.nodes;
        for id in 0..n {
            self.slots[id as usize].node = Some(Node::new(self.node_config(id)));
            self.step(id, None);
        }
        // How close together the clients propose decides how hard the
        // proposers duel: drawn per seed, from near-simultaneous to spread out.
        let propose_window = match self.rng.gen_range(0..3) {
            0 => 1_000,
            1 => 20_000,
            _ => self.cfg.fault_phase_us / 4,
        }
        .clamp(1, self.cfg.fault_phase_us.max(1));
        for node in 0..self.cfg.proposers {
            let at = self.rng.gen_range(0..propose_window);
            self.push(at, Ev::Propose { node });
        }
        for i in 0..self.schedule.faults.len() {
            let at = self.schedule.faults[i].at_us;
            self.push(at, Ev::Fault(i as u32));
        }
        self.push(self.cfg.fault_phase_us, Ev::Quiet);
        let deadline = self.cfg.fault_phase_us + self.cfg.liveness_us;

        while let Some((at_us, ev)) = self.queue.pop() {
            if at_us > deadline {
                break;
            }
            assert!(at_us >= self.now, "time went backwards");
            self.now = at_us;
            self.dispatch(ev);
            if self.violation.is_some() {
                return;
            }
            if self.quiet && self.all_learned() {
                return;
            }
        }
        let unlearned = self.obs.unlearned(0..n);
        let undecided = self.obs.undecided(self.waiting_clients());
        assert!(
            !unlearned.is_empty() || !undecided.is_empty() || !self.quiet,
            "loop ended while all learned and decided"
        );
        self.now = self.now.max(deadline);
        let detail = if !unlearned.is_empty() {
            format!(
                "{} of {n} nodes had not learned {} after the quiet period began at {} (bound {}): {:?}",
                unlearned.len(),
                self.obs.chosen().map_or("anything".into(), |v| v.to_string()),
                checkers::fmt_time(self.cfg.fault_phase_us),
                checkers::fmt_time(self.cfg.liveness_us),
                unlearned,
            )
        } else {
            format!(
                "every node learned, but the proposers of {:?} never reported a decision to \
                 their clients after the quiet period began at {} (bound {})",
                undecided,
                checkers::fmt_time(self.cfg.fault_phase_us),
                checkers::fmt_time(self.cfg.liveness_us),
            )
        };
        self.violation = Some(Violation {
            invariant: Invariant::L1,
            at_us: self.now,
            node: unlearned.first().or(undecided.first()).copied(),
            detail,
        });
    }

    /// Proposers whose client asked for a value and waits for the answer.
    fn waiting_clients(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.cfg.proposers).filter(|&i| self.slots[i as usize].proposed)
    }

    fn all_learned(&self) -> bool {
        self.obs.unlearned(0..self.cfg.nodes).is_empty()
            && self.obs.undecided(self.waiting_clients()).is_empty()
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { from, to, msg } => {
                let slot = &self.slots[to as usize];
                if slot.node.is_none() {
                    self.drop_msg(from, to, msg, DropReason::Down);
                } else if self.blocked[from as usize] & (1 << to) != 0 {
                    self.drop_msg(from, to, msg, DropReason::Partition);
                } else {
                    self.stats.deliveries += 1;
                    self.record(to, Kind::Receive { from, msg });
                    let r = self.obs.on_receive(self.now, from, to, msg);
                    self.check(r);
                    self.step(to, Some(Input::Receive { from, msg }));
                }
            }
            Ev::Timer { node, inc, timer } => {
                let slot = &self.slots[node as usize];
                if slot.inc == inc && slot.node.is_some() {
                    self.record(node, Kind::Timer { timer });
                    self.step(node, Some(Input::Timer(timer)));
                }
            }
            Ev::SyncDone { node, inc, upto } => {
                let slot = &mut self.slots[node as usize];
                if slot.inc != inc || slot.node.is_none() {
                    return;
                }
                let k = slot.unsynced.iter().take_while(|(s, _)| *s <= upto).count();
                slot.synced = slot.synced.max(upto);
                if k > 0 {
                    slot.durable = slot.unsynced[k - 1].1;
                    slot.unsynced.drain(..k);
                    let durable = slot.durable;
                    let r = self.obs.on_durable(self.now, node, durable);
                    self.check(r);
                }
                self.record(node, Kind::Sync { upto });
                self.step(node, Some(Input::Synced { upto }));
            }
            Ev::Fault(i) => {
                let fault = self.schedule.faults[i as usize].fault;
                self.fault(fault);
            }
            Ev::Propose { node } => {
                let value = value_of(node);
                self.obs.on_propose(node, value);
                self.slots[node as usize].proposed = true;
                self.record(node, Kind::Propose { value });
                if self.slots[node as usize].node.is_some() {
                    self.step(node, Some(Input::Propose(value)));
                }
            }
            Ev::PowerLoss { node, inc } => {
                if self.slots[node as usize].inc == inc && !self.quiet {
                    self.fault(Fault::Crash { node });
                    let back = self.now + self.rng.gen_range(1_000..=50_000);
                    self.push(back, Ev::Restart { node });
                }
            }
            Ev::Restart { node } => self.fault(Fault::Restart { node }),
            Ev::Quiet => {
                self.quiet = true;
                self.record(0, Kind::Quiet);
                self.blocked = [0; MAX_NODES];
                for id in 0..self.cfg.nodes {
                    self.slots[id as usize].slow = false;
                    if self.slots[id as usize].node.is_none() {
                        self.restart(id);
                    }
                }
            }
        }
    }

    fn fault(&mut self, fault: Fault) {
        let n = self.cfg.nodes;
        if fault.log_only() {
            // Rejected for `basic` by `RunConfig::validate_schedule`.
            return;
        }
        let applies = match fault {
            Fault::Crash { node } => self.slots[node as usize].node.is_some(),
            Fault::Restart { node } => self.slots[node as usize].node.is_none(),
            _ => true,
        };
        if !applies {
            return;
        }
        self.stats.faults[fault.kind_index()] += 1;
        let node = match fault {
            Fault::Crash { node } | Fault::Restart { node } => node,
            Fault::Slow { node } | Fault::Fast { node } => node,
            Fault::OneWay { from, .. } => from,
            _ => 0,
        };
        self.record(node, Kind::Fault { fault });
        match fault {
            Fault::Crash { node } => {
                let slot = &mut self.slots[node as usize];
                slot.node = None;
                slot.inc += 1;
                slot.synced = 0;
                let lost = slot.unsynced.len() as u32;
                slot.unsynced.clear();
                self.obs.on_crash(node);
                self.record(node, Kind::Crash { lost_writes: lost });
            }
            Fault::Restart { node } => self.restart(node),
            Fault::Partition { side } => {
                for a in 0..n {
                    for b in 0..n {
                        if (side >> a) & 1 != (side >> b) & 1 {
                            self.blocked[a as usize] |= 1 << b;
                        }
                    }
                }
            }
            Fault::OneWay { from, to } => self.blocked[from as usize] |= 1 << to,
            Fault::Heal => self.blocked = [0; MAX_NODES],
            Fault::Slow { node } => self.slots[node as usize].slow = true,
            Fault::Fast { node } => self.slots[node as usize].slow = false,
            _ => unreachable!("log-only faults return above"),
        }
    }

    fn restart(&mut self, id: NodeId) {
        let cfg = self.node_config(id);
        let slot = &mut self.slots[id as usize];
        assert!(slot.node.is_none(), "restart of a live node");
        assert!(
            slot.unsynced.is_empty(),
            "a crash must discard unsynced writes"
        );
        slot.node = Some(Node::recover(cfg, slot.durable));
        let proposed = slot.proposed;
        self.obs.on_restart(id);
        self.record(id, Kind::Restart);
        self.step(id, None);
        if proposed {
            // The client retries its request with the restarted proposer: in
            // some seeds with a fresh value, as a new command would be.
            let value = if self.fresh_retries {
                let slot = &mut self.slots[id as usize];
                slot.retries += 1;
                let v = retry_value(id, slot.retries);
                self.obs.on_propose(id, v);
                self.record(id, Kind::Propose { value: v });
                v
            } else {
                value_of(id)
            };
            self.step(id, Some(Input::Propose(value)));
        }
    }

    /// Feeds `input` (or the start-up call) to node `id` and executes its outputs.
    fn step(&mut self, id: NodeId, input: Option<Input>) {
        let mut out = std::mem::take(&mut self.out);
        assert!(out.is_empty());
        self.current = Some(id);
        let node = self.slots[id as usize]
            .node
            .as_mut()
            .expect("stepping a live node");
        match input {
            Some(i) => node.handle(self.now, i, &mut out),
            None => node.start(self.now, &mut out),
        }
        for o in out.drain(..) {
            self.execute(id, o);
        }
        self.current = None;
        self.out = out;
    }

    fn execute(&mut self, id: NodeId, o: Output) {
        match o {
            Output::Send { to, msg, after } => {
                let synced = self.slots[id as usize].synced;
                let r = checkers::check_disclosure(self.now, id, to, after, synced, || msg);
                self.check(r);
                let r = self.obs.on_send(self.now, id, to, msg);
                self.check(r);
                self.record(id, Kind::Send { to, msg });
                self.send(id, to, msg);
            }
            Output::Persist { seq, record } => {
                self.record(id, Kind::Persist { seq, record });
                let slot = &mut self.slots[id as usize];
                assert!(slot.unsynced.last().is_none_or(|(s, _)| *s < seq));
                slot.unsynced.push((seq, record));
            }
            Output::Sync { upto } => {
                let slot = &self.slots[id as usize];
                let slow = if slot.slow { self.cfg.slow_factor } else { 1 };
                let inc = slot.inc;
                let f = if self.quiet {
                    Faults::NONE
                } else {
                    self.faults
                };
                let mut d = self.cfg.disk_us;
                if f.disk_jitter_us > 0 {
                    d += self.rng.gen_range(0..=f.disk_jitter_us);
                }
                let d = d * slow;
                self.push(
                    self.now + d,
                    Ev::SyncDone {
                        node: id,
                        inc,
                        upto,
                    },
                );
                if self.permille(f.crash_in_sync_permille) {
                    let at = self.now + self.rng.gen_range(0..d);
                    self.push(at, Ev::PowerLoss { node: id, inc });
                }
            }
            Output::SetTimer {
                timer,
                delay_us,
                jitter_us,
            } => {
                let jitter = if jitter_us > 0 {
                    self.rng.gen_range(0..=jitter_us)
                } else {
                    0
                };
                let inc = self.slots[id as usize].inc;
                self.push(
                    self.now + delay_us + jitter,
                    Ev::Timer {
                        node: id,
                        inc,
                        timer,
                    },
                );
            }
            Output::Learned { value } => {
                self.record(id, Kind::Learn { value });
                let r = self.obs.on_learned(self.now, id, value);
                self.check(r);
            }
            Output::Decided { value } => {
                self.record(id, Kind::Decide { value });
                let r = self.obs.on_decided(self.now, id, value);
                self.check(r);
            }
        }
    }

    fn permille(&mut self, p: u16) -> bool {
        p > 0 && self.rng.gen_range(0..1000) < p
    }

    fn drop_msg(&mut self, from: NodeId, to: NodeId, msg: Msg, reason: DropReason) {
        self.stats.drops += 1;
        self.record(from, Kind::Drop { to, msg, reason });
    }

    /// The network interposer: decides the fate of one message.
    fn send(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        if from == to {
            // Local delivery never crosses the network.
            self.push(self.now + 1, Ev::Deliver { from, to, msg });
            return;
        }
        if self.blocked[from as usize] & (1 << to) != 0 {
            self.drop_msg(from, to, msg, DropReason::Partition);
            return;
        }
        let f = if self.quiet {
            Faults::NONE
        } else {
            self.faults
        };
        if self.permille(f.loss_permille) {
            self.drop_msg(from, to, msg, DropReason::Loss);
            return;
        }
        let at = self.now + self.latency(from, to, &f);
        self.push(at, Ev::Deliver { from, to, msg });
        if self.permille(f.dup_permille) {
            self.stats.duplicates += 1;
            self.record(from, Kind::Duplicate { to, msg });
            let at = self.now + self.latency(from, to, &f);
            self.push(at, Ev::Deliver { from, to, msg });
        }
    }

    fn latency(&mut self, from: NodeId, to: NodeId, f: &Faults) -> u64 {
        let mut d = self.cfg.latency_us;
        if f.jitter_us > 0 {
            d += self.rng.gen_range(0..=f.jitter_us);
        }
        if self.permille(f.long_delay_permille) {
            d += self.rng.gen_range(0..=self.cfg.long_delay_us_max);
        }
        if self.slots[from as usize].slow || self.slots[to as usize].slow {
            d *= self.cfg.slow_factor;
        }
        d
    }
}

/// Plans and runs `seed` under `cfg`.
pub fn run_seed(seed: u64, cfg: &RunConfig, keep: Keep) -> Report {
    let (resolved, schedule) = plan(seed, cfg);
    run_schedule(seed, &resolved, schedule, keep)
}

/// Runs `seed` with an explicit schedule (replays, shrinking, fuzzing).
/// `cfg.faults` must be resolved (`Some`).
pub fn run_schedule(seed: u64, cfg: &RunConfig, schedule: Schedule, keep: Keep) -> Report {
    if cfg.scenario.is_log() {
        crate::logworld::LogWorld::new(seed, cfg.clone(), schedule, keep).run()
    } else {
        World::new(seed, cfg.clone(), schedule, keep).run()
    }
}
