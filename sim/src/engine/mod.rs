//! The one event loop: a discrete-event simulation of any [`Protocol`].
//!
//! A run is a single priority queue ordered by (simulated time, insertion
//! number). Every event — a message arriving, a timer firing, a disk sync
//! completing, a client request or reply, a scheduled fault — is popped in
//! that order and handed to the sans-IO node it concerns; the node's effects
//! become new events through the network interposer (latency, jitter, loss,
//! duplication, long delays, partitions, one-way cuts, slow nodes) and the
//! disk ([`Disk`]: syncs, power loss keeping a prefix, torn writes, bit
//! flips, wipes). Each node runs on its own clock (skew and drift from the
//! nemesis) and can be paused.
//!
//! Randomness comes from named ChaCha streams of the seed ([`Stream`]): the
//! swarm draw, the schedule, the run (network, disk, timers), the workload
//! (with its per-seed choices) and the BUGGIFY knobs each have their own, so
//! an edited schedule leaves the swarm draw alone, a workload change leaves
//! the network's draws alone, and a seed whose knobs are off runs as it did
//! before BUGGIFY existed.
//!
//! After every effect the scenario's [`Checker`] judges what the node did;
//! D1 (durability before disclosure) is judged here, for every protocol. A
//! protocol assertion that fails inside a node is caught and reported as a
//! violation. The run stops at the first violation.
//!
//! Why not madsim's runtime here: a campaign runs millions of schedules, and
//! madsim pays for socket emulation, task spawns and a boxed payload per
//! message. This loop pays for none of that; `crates/node` runs the same
//! cores on madsim's net/time/task APIs.

pub mod disk;
pub mod member;
pub mod protocol;
pub mod script;

pub use disk::Disk;
pub use protocol::{
    Asked, Boot, Canary, Caps, Check, CheckDefaults, CheckReport, Checker, Clock, Cx, DiskRecord,
    Effect, Input, MemberChange, Never, Protocol, Scenario, Search, Situation, Workload,
};
pub use script::{Script, Step};

use crate::config::RunConfig;
use crate::nemesis::{Fault, Faults, Schedule};
use crate::queue::Queue;
use crate::trace::{CrashCause, DropReason, Event, Keep, Kind, Link, Tracer};
use checkers::{Invariant, Violation};
use paxos::{NodeId, MAX_NODES};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The seed's random streams, one per purpose.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Which fault kinds are on and how hard (swarm testing).
    Swarm = 0,
    /// The fault schedule.
    Schedule = 1,
    /// Run time: latencies, message and disk faults, timer jitter.
    Run = 2,
    /// The clients: what they ask and when (and the workload's per-seed
    /// choices, drawn first).
    Workload = 4,
    /// The scenario's BUGGIFY knobs ([`Scenario::buggify`]).
    Buggify = 5,
}

/// The generator of a seed's stream.
pub fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream as u64);
    r
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
    /// 1 if the end-of-run history check ran out of budget (no verdict).
    #[serde(default)]
    pub unproven: u64,
    /// Hostile messages the nemesis delivered (`hostile_permille`).
    #[serde(default)]
    pub forged: u64,
    /// Messages nodes refused ([`Effect::Refused`]).
    #[serde(default)]
    pub refused: u64,
}

/// The typed result of one run.
pub struct Outcome<P: Protocol> {
    /// The config and schedule the run ran under (handed back, not copied).
    pub config: RunConfig,
    pub schedule: Schedule,
    pub violation: Option<Violation>,
    pub stats: Stats,
    pub coverage: Vec<(&'static str, u64)>,
    pub trace_hash: u64,
    /// The last events before the end (the lead-up to a violation): kept
    /// if the run failed or kept its whole trace.
    pub recent: Vec<Event<P>>,
    pub trace: Option<Vec<Event<P>>>,
}

enum Ev<P: Protocol> {
    Deliver {
        link: Link,
        msg: P::Msg,
        /// Its trace summary, computed once at the send.
        sum: P::MsgSummary,
    },
    /// A message that reached `to`'s host while its process was paused:
    /// it waits in the socket buffer and is handed over at the resume, cut
    /// link or not (it crossed before the cut); only a crash loses it
    /// (`inc` is the process it reached).
    Arrived {
        link: Link,
        inc: u32,
        msg: P::Msg,
        sum: P::MsgSummary,
    },
    Timer {
        node: NodeId,
        inc: u32,
        timer: P::Timer,
    },
    SyncDone {
        node: NodeId,
        inc: u32,
        upto: u64,
    },
    Fault(u32),
    /// Power loss during a sync or a snapshot's write: crash `node` if
    /// still incarnation `inc`.
    PowerLoss {
        node: NodeId,
        inc: u32,
        cause: CrashCause,
    },
    Restart {
        node: NodeId,
    },
    /// A client's request reaches a node.
    ToNode {
        to: NodeId,
        client: u32,
        req: P::Request,
    },
    /// A node's reply reaches a client.
    ToClient {
        client: u32,
        from: NodeId,
        reply: P::Reply,
    },
    Wake {
        client: u32,
        token: u64,
    },
    Quiet,
    /// A hostile message ([`Protocol::forge`]) reaches `to` as if from
    /// `from`: forged as it arrives, against `to` as it is then (forged at
    /// the send, it could contradict only a state `to` has since lost, and
    /// so be a plausible lie).
    Forged {
        from: NodeId,
        to: NodeId,
    },
}

impl<P: Protocol> Ev<P> {
    /// The node whose pause holds this event back, if any.
    fn target(&self) -> Option<NodeId> {
        match self {
            Ev::Deliver { link, .. } | Ev::Arrived { link, .. } => Some(link.to),
            Ev::ToNode { to, .. } | Ev::Forged { to, .. } => Some(*to),
            Ev::Timer { node, .. } | Ev::SyncDone { node, .. } => Some(*node),
            _ => None,
        }
    }
}

/// A node's slot: its process (if up), its disk and what the nemesis did to it.
struct Slot<W> {
    /// Incarnation: bumped at each crash, so a dead process's timers and
    /// syncs are ignored.
    inc: u32,
    disk: Disk<W>,
    slow: bool,
    paused_until: u64,
    clock: Clock,
    /// The facts ([`DiskRecord::fact`]) the disk holds durably (R2).
    facts: FxHashSet<u64>,
}

/// The longest timer a node may set, in µs (2^40, 12.7 days): far beyond
/// any run, and far below where simulated time (and the trace's numbers,
/// exact below 2^53) would overflow.
pub const TIMER_MAX_US: u64 = 1 << 40;

/// The bound on queued events: a run that exceeds it is a harness bug or a
/// message storm, and stops with an assertion rather than eating memory.
const QUEUE_MAX: usize = 1 << 21;

/// The part of the world a workload may touch, through [`Cx`].
pub struct Core<P: Protocol> {
    cfg: RunConfig,
    faults: Faults,
    now: u64,
    quiet: bool,
    quiet_at: u64,
    rng: ChaCha8Rng,
    wrng: ChaCha8Rng,
    queue: Queue<Ev<P>>,
    /// `blocked[a]` has bit `b` set when messages from a to b are cut.
    blocked: [u16; MAX_NODES],
    nodes: Vec<Option<P>>,
    slots: Vec<Slot<P::Write>>,
    trace: Tracer<P>,
    stats: Stats,
    violation: Option<Violation>,
    /// Operations the workload started, for the checker.
    invoked: Vec<(u32, P::Request)>,
    /// Requests the workload hands to a node directly: (client, node, req).
    local: Vec<(u32, NodeId, P::Request)>,
    /// Whether the schedule pauses any node (else no event is ever held).
    pauses: bool,
    /// In a scripted run: what waits for a step to name it.
    held: Option<Box<Held<P>>>,
    /// Messages sent so far: the next send's id.
    msgs: u64,
}

/// What a scripted run holds until a step names it (see [`script`]).
struct Held<P: Protocol> {
    /// Messages in flight, in send order: `(link, msg, summary)`.
    net: Vec<(Link, P::Msg, P::MsgSummary)>,
    /// Each node's pending timers and their due times (a timer set again
    /// while pending is due anew).
    timers: Vec<Vec<(P::Timer, u64)>>,
    /// Each node's clock, moved only by its timers firing (as in the model).
    clocks: Vec<u64>,
    /// Each node's pending syncs.
    syncs: Vec<Vec<u64>>,
    immediate_syncs: bool,
    /// Syncs the current step asked for, completed right after it.
    now_synced: Vec<u64>,
    /// Client requests not yet delivered: `(client, node, request)`.
    requests: Vec<Asked<P>>,
    /// The requests each node's restart adds.
    retries: Vec<Vec<Asked<P>>>,
}

impl<P: Protocol> Cx<P> for Core<P> {
    fn now(&self) -> u64 {
        self.now
    }
    fn cfg(&self) -> &RunConfig {
        &self.cfg
    }
    fn quiet_at(&self) -> Option<u64> {
        self.quiet.then_some(self.quiet_at)
    }
    fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.wrng
    }
    fn nodes(&self) -> &[Option<P>] {
        &self.nodes
    }
    fn invoke(&mut self, client: u32, _node: NodeId, req: P::Request) {
        self.record_none(Kind::Invoke {
            client,
            req: req.clone(),
        });
        self.invoked.push((client, req));
    }
    fn send(&mut self, client: u32, node: NodeId, req: P::Request) {
        self.client_send(client, node, req);
    }
    fn local(&mut self, client: u32, node: NodeId, req: P::Request) {
        self.local.push((client, node, req));
    }
    fn wake(&mut self, client: u32, after_us: u64, token: u64) {
        let at = self.now + after_us;
        self.push(at, Ev::Wake { client, token });
    }
    fn complete(&mut self, client: u32, node: NodeId, reply: P::Reply) {
        self.record_none(Kind::Complete {
            client,
            from: node,
            reply,
        });
    }
    fn retry(&mut self, client: u32, _node: NodeId) {
        self.record_none(Kind::Retry { client });
    }
    fn fail(&mut self, invariant: Invariant, node: Option<NodeId>, detail: String) {
        let at_us = self.now;
        self.check(Err(Violation {
            invariant,
            at_us,
            node,
            detail,
        }));
    }
}

impl<P: Protocol> Core<P> {
    fn push(&mut self, at_us: u64, ev: Ev<P>) {
        assert!(at_us >= self.now, "an event scheduled in the past");
        self.queue.push(at_us, ev);
    }

    /// Traces `kind` on `node`, in its current incarnation.
    #[inline]
    fn record(&mut self, node: NodeId, kind: Kind<P>) {
        let inc = self.slots[node as usize].inc;
        self.record_in(node, inc, kind);
    }

    #[inline]
    fn record_in(&mut self, node: NodeId, inc: u32, kind: Kind<P>) {
        self.trace.record(Event {
            at_us: self.now,
            node: Some(node),
            inc,
            kind,
        });
    }

    /// Traces `kind` on no node: in the network, at the clients, in the
    /// harness.
    #[inline]
    fn record_none(&mut self, kind: Kind<P>) {
        self.trace.record(Event {
            at_us: self.now,
            node: None,
            inc: 0,
            kind,
        });
    }

    /// Node `id` asks that its writes up to `upto` be made durable: in a
    /// scripted run, a step (or the step's end) completes it; else the disk
    /// does, after its latency, unless power fails first.
    fn sync(&mut self, id: NodeId, upto: u64) {
        assert!(
            upto <= crate::schema::MAX_SAFE,
            "n{id} asked to sync up to #{upto}: write numbers stay below 2^53"
        );
        self.record(id, Kind::SyncRequest { upto });
        if let Some(h) = self.held.as_mut() {
            match h.immediate_syncs {
                true => h.now_synced.push(upto),
                false => h.syncs[id as usize].push(upto),
            }
            return;
        }
        let now = self.now;
        let slot = &self.slots[id as usize];
        let slow = if slot.slow { self.cfg.slow_factor } else { 1 };
        let inc = slot.inc;
        let f = self.active_faults();
        let mut d = self.cfg.disk_us;
        if f.disk_jitter_us > 0 {
            d += self.rng.gen_range(0..=f.disk_jitter_us);
        }
        let d = d * slow;
        self.push(
            now + d,
            Ev::SyncDone {
                node: id,
                inc,
                upto,
            },
        );
        if self.permille(f.crash_in_sync_permille) {
            let at = now + self.rng.gen_range(0..d);
            let cause = CrashCause::PowerLossInSync;
            self.push(
                at,
                Ev::PowerLoss {
                    node: id,
                    inc,
                    cause,
                },
            );
        }
    }

    /// Node `id` sets `timer`: in a scripted run it waits for a step to
    /// fire it (due on the model's clock); else it fires after the delay
    /// and a jitter drawn here, on the node's clock, if the node lives.
    fn set_timer(&mut self, id: NodeId, timer: P::Timer, delay_us: u64, jitter_us: u64) {
        assert!(
            delay_us.saturating_add(jitter_us) <= TIMER_MAX_US,
            "n{id} set a timer {delay_us} µs (+ up to {jitter_us} µs) away: beyond \
             {TIMER_MAX_US} µs (12.7 days), the longest the simulator schedules"
        );
        let due_us = match self.held.as_mut() {
            Some(h) => {
                let due = h.clocks[id as usize] + delay_us;
                let ts = &mut h.timers[id as usize];
                let text = format!("{timer:?}");
                match ts.iter_mut().find(|(t, _)| format!("{t:?}") == text) {
                    Some(pending) => pending.1 = due,
                    None => ts.push((timer, due)),
                }
                None
            }
            None => {
                let jitter = if jitter_us > 0 {
                    self.rng.gen_range(0..=jitter_us)
                } else {
                    0
                };
                let slot = &self.slots[id as usize];
                let (inc, d) = (slot.inc, slot.clock.real(delay_us + jitter));
                let at = self.now + d;
                self.push(
                    at,
                    Ev::Timer {
                        node: id,
                        inc,
                        timer,
                    },
                );
                Some(at)
            }
        };
        let set = Kind::TimerSet {
            timer,
            delay_us,
            jitter_us,
            due_us,
        };
        self.record(id, set);
    }

    /// The id of a message being sent.
    fn next_msg(&mut self) -> u64 {
        self.msgs += 1;
        self.msgs
    }

    fn check(&mut self, r: Check) {
        if let Err(v) = r {
            if self.violation.is_none() {
                self.violation = Some(v);
            }
        }
    }

    fn active_faults(&self) -> Faults {
        if self.quiet {
            Faults::NONE
        } else {
            self.faults
        }
    }

    fn permille(&mut self, p: u16) -> bool {
        p > 0 && self.rng.gen_range(0..1000) < p
    }

    fn latency(&mut self, a: NodeId, b: Option<NodeId>, f: &Faults) -> u64 {
        let mut d = self.cfg.latency_us;
        if f.jitter_us > 0 {
            d += self.rng.gen_range(0..=f.jitter_us);
        }
        if self.permille(f.long_delay_permille) {
            d += self.rng.gen_range(0..=self.cfg.long_delay_us_max);
        }
        if self.slots[a as usize].slow || b.is_some_and(|b| self.slots[b as usize].slow) {
            d *= self.cfg.slow_factor;
        }
        d
    }

    fn cut(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked[from as usize] & (1 << to) != 0
    }

    fn drop_msg(&mut self, link: Link, msg: P::MsgSummary, reason: DropReason) {
        self.stats.drops += 1;
        self.record_none(Kind::Drop { link, msg, reason });
    }

    /// The network interposer: decides the fate of one message.
    fn send(&mut self, link: Link, msg: P::Msg, sum: P::MsgSummary) {
        if let Some(h) = self.held.as_mut() {
            h.net.push((link, msg, sum));
            return;
        }
        let Link { from, to, .. } = link;
        let deliver = |msg| Ev::Deliver { link, msg, sum };
        if from == to {
            // Local delivery never crosses the network.
            self.push(self.now + 1, deliver(msg));
            return;
        }
        if self.cut(from, to) {
            self.drop_msg(link, sum, DropReason::Partition);
            return;
        }
        let f = self.active_faults();
        if self.permille(f.loss_permille) {
            self.drop_msg(link, sum, DropReason::Loss);
            return;
        }
        let at = self.now + self.latency(from, Some(to), &f);
        if self.permille(f.dup_permille) {
            self.stats.duplicates += 1;
            self.record_none(Kind::Duplicate { link, msg: sum });
            let again = self.now + self.latency(from, Some(to), &f);
            self.push(again, deliver(msg.clone()));
        }
        self.push(at, deliver(msg));
        if self.permille(f.hostile_permille) {
            self.forge(from, to, &f);
        }
    }

    /// Hostile input: a message no correct peer sends will reach `to` on
    /// the link from `from` (H1 judges how `to` takes it).
    fn forge(&mut self, from: NodeId, to: NodeId, f: &Faults) {
        let at = self.now + self.latency(from, Some(to), f);
        self.push(at, Ev::Forged { from, to });
    }

    /// A client request on the clients' network (loss, duplication, delay;
    /// no partitions: clients sit outside them).
    fn client_send(&mut self, client: u32, to: NodeId, req: P::Request) {
        let f = self.active_faults();
        if self.permille(f.loss_permille) {
            self.stats.drops += 1;
            let reason = DropReason::Loss;
            self.record_none(Kind::RequestLost { client, to, reason });
            return;
        }
        let at = self.now + self.latency(to, None, &f);
        if self.permille(f.dup_permille) {
            self.stats.duplicates += 1;
            self.record_none(Kind::RequestDuplicated { client, to });
            let again = self.now + self.latency(to, None, &f);
            let req = req.clone();
            self.push(again, Ev::ToNode { to, client, req });
        }
        self.push(at, Ev::ToNode { to, client, req });
    }

    fn answer(&mut self, from: NodeId, client: u32, reply: P::Reply) {
        let f = self.active_faults();
        if self.permille(f.loss_permille) {
            self.stats.drops += 1;
            self.record_none(Kind::ReplyLost { client, from });
            return;
        }
        let at = self.now + self.latency(from, None, &f);
        self.push(
            at,
            Ev::ToClient {
                client,
                from,
                reply,
            },
        );
    }

    fn local(&self, id: NodeId) -> u64 {
        if let Some(h) = &self.held {
            return h.clocks[id as usize]; // The model's clocks.
        }
        self.slots[id as usize].clock.local(self.now)
    }

    /// Until when the node an event is for is paused, if it is.
    fn paused(&self, ev: &Ev<P>) -> Option<u64> {
        let until = self.slots[ev.target()? as usize].paused_until;
        (until > self.now).then_some(until)
    }

    /// Whether node `i` has lost its durable state and not yet rebuilt it.
    fn disk_lost(&self, i: NodeId) -> bool {
        match &self.nodes[i as usize] {
            Some(p) => p.disk_lost(),
            None => !P::disk_intact(&self.slots[i as usize].disk.durable),
        }
    }

    /// R2: the records in `landed` just became durable on `node`; none may
    /// state a fact its disk holds already.
    fn facts_landed(&mut self, node: NodeId, landed: std::ops::Range<usize>) {
        let slot = &mut self.slots[node as usize];
        let mut again = None;
        for r in &slot.disk.durable[landed] {
            if let Some(f) = r.fact() {
                if !slot.facts.insert(f) && again.is_none() {
                    again = Some(P::summarize_write(r));
                }
            }
        }
        if let Some(w) = again {
            let v = Violation {
                invariant: Invariant::R2,
                at_us: self.now,
                node: Some(node),
                detail: format!("n{node} made {w} durable a second time"),
            };
            self.check(Err(v));
        }
    }

    /// The live node that leads with the highest rank.
    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((p.as_ref()?.leader_rank()?, i as NodeId)))
            .max()
            .map(|(_, i)| i)
    }
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
pub fn catching(f: impl FnOnce()) -> Result<(), String> {
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

/// One run of one seed of scenario `S`.
pub struct Engine<S: Scenario> {
    core: Core<S::P>,
    configs: Vec<<S::P as Protocol>::Config>,
    checker: S::Checker,
    workload: S::Workload,
    schedule: Schedule,
    out: Vec<<S::P as Protocol>::Output>,
    /// The node being stepped (for assertion reports).
    current: Option<NodeId>,
    /// The input being stepped is a forged message: a panic now is H1.
    forged: bool,
}

impl<S: Scenario> Engine<S> {
    /// `cfg` must be validated and its faults resolved, and `schedule` must
    /// fit it (the callers check both and report errors).
    pub fn new(scenario: &S, seed: u64, cfg: RunConfig, schedule: Schedule, keep: Keep) -> Self {
        let faults = cfg.faults.expect("faults resolved by plan()");
        let (configs, checker) = (scenario.node_configs(&cfg), scenario.checker(&cfg));
        let n = cfg.machines() as usize;
        let slots = (0..n)
            .map(|_| Slot {
                inc: 0,
                disk: Disk::default(),
                slow: false,
                paused_until: 0,
                clock: Clock::default(),
                facts: FxHashSet::default(),
            })
            .collect();
        let mut wrng = rng(seed, Stream::Workload);
        let workload = scenario.workload(&cfg, &mut wrng);
        Engine {
            core: Core {
                faults,
                now: 0,
                quiet: false,
                quiet_at: 0,
                rng: rng(seed, Stream::Run),
                wrng,
                queue: Queue::new(QUEUE_MAX),
                blocked: [0; MAX_NODES],
                nodes: (0..n).map(|_| None).collect(),
                slots,
                trace: Tracer::new(keep),
                stats: Stats::default(),
                violation: None,
                invoked: Vec::new(),
                local: Vec::new(),
                pauses: schedule
                    .faults
                    .iter()
                    .any(|t| matches!(t.fault, Fault::Pause { .. })),
                held: None,
                msgs: 0,
                cfg,
            },
            configs,
            checker,
            workload,
            schedule,
            out: Vec::with_capacity(64),
            current: None,
            forged: false,
        }
    }

    /// Runs to the end: until the workload is done and the cluster settled
    /// in the quiet period, or a liveness deadline passed, or an invariant
    /// broke.
    pub fn run(mut self) -> Outcome<S::P> {
        if let Err(detail) = catching(|| self.run_loop()) {
            self.assert_failed(self.current, detail);
        }
        if self.core.violation.is_none() {
            match catching(|| match self.workload.finish() {
                Ok(true) => {}
                Ok(false) => self.core.stats.unproven = 1,
                Err(v) => self.core.violation = Some(v),
            }) {
                Ok(()) => {}
                Err(detail) => self.assert_failed(None, detail),
            }
        }
        self.outcome()
    }

    /// Replays `script` (a model checker's counterexample) instead of
    /// drawing events from the seed: `requests` are the client requests the
    /// model delivers (`Scenario::check_requests`), `retries` the ones each
    /// node's restart adds (`Scenario::check_retries`). `Err`: the script
    /// does not fit this protocol (a step names something not pending).
    pub fn run_script(
        mut self,
        script: &Script,
        requests: Vec<Asked<S::P>>,
        retries: Vec<Vec<Asked<S::P>>>,
    ) -> Result<Outcome<S::P>, String> {
        let n = self.core.cfg.machines() as usize;
        self.core.held = Some(Box::new(Held {
            net: Vec::new(),
            timers: vec![Vec::new(); n],
            clocks: vec![0; n],
            syncs: vec![Vec::new(); n],
            immediate_syncs: script.immediate_syncs,
            now_synced: Vec::new(),
            requests,
            retries,
        }));
        let mut result = Ok(());
        if let Err(detail) = catching(|| result = self.script_loop(&script.steps)) {
            self.assert_failed(self.current, detail);
        }
        result.map(|()| self.outcome())
    }

    /// An assertion failed (at `node`, if one was being stepped): the run's
    /// violation.
    fn assert_failed(&mut self, node: Option<NodeId>, detail: String) {
        // A panic while a node handled a forged message: the network made
        // it panic (H1), whatever assertion it tripped.
        let (invariant, detail) = if self.forged {
            let d = format!("a forged message made the node panic: {detail}");
            (Invariant::H1, d)
        } else {
            (Invariant::Assert, detail)
        };
        self.core.violation = Some(Violation {
            invariant,
            at_us: self.core.now,
            node,
            detail,
        });
    }

    fn script_loop(&mut self, steps: &[Step]) -> Result<(), String> {
        for id in 0..self.core.cfg.machines() {
            self.boot(id);
        }
        let held = self.core.held.as_ref().expect("a scripted run");
        for (client, _, req) in held.requests.clone() {
            let r = self.checker.on_invoke(0, client, &req);
            self.core.record_none(Kind::Invoke { client, req });
            self.core.check(r);
        }
        for (k, step) in steps.iter().enumerate() {
            if self.core.violation.is_some() {
                break; // The model stops at the first violation too.
            }
            self.core.now = k as u64 + 1;
            self.script_step(step)
                .map_err(|e| format!("step {} ({step}): {e}", k + 1))?;
        }
        Ok(())
    }

    fn script_step(&mut self, step: &Step) -> Result<(), String> {
        let n = self.core.cfg.machines();
        let node_ok = |id: NodeId| {
            if id < n {
                Ok(id as usize)
            } else {
                Err(format!("there is no node n{id}"))
            }
        };
        let held = self.core.held.as_mut().expect("a scripted run");
        let find_msg = |h: &Held<S::P>, from: NodeId, to: NodeId, msg: &str| {
            h.net
                .iter()
                .position(|(l, _, sum)| l.from == from && l.to == to && sum.to_string() == msg)
                .ok_or_else(|| format!("no message n{from}->n{to} '{msg}' is in flight"))
        };
        match step {
            Step::Deliver { from, to, msg } => {
                let (link, msg, sum) = held.net.remove(find_msg(held, *from, *to, msg)?);
                self.deliver(link, msg, sum, true);
            }
            Step::Lose { from, to, msg } => {
                let (link, _, sum) = held.net.remove(find_msg(held, *from, *to, msg)?);
                self.core.drop_msg(link, sum, DropReason::Loss);
            }
            Step::Duplicate { from, to, msg } => {
                let m = held.net[find_msg(held, *from, *to, msg)?].clone();
                self.core.stats.duplicates += 1;
                let (link, msg) = (m.0, m.2);
                self.core.record_none(Kind::Duplicate { link, msg });
                self.core.held.as_mut().expect("scripted").net.push(m);
            }
            Step::Fire { node, timer } => {
                let i = node_ok(*node)?;
                let ts = &mut held.timers[i];
                let k = ts
                    .iter()
                    .position(|(t, _)| format!("{t:?}") == *timer)
                    .ok_or_else(|| format!("n{node} has no timer {timer} pending"))?;
                let (t, due) = ts.remove(k);
                held.clocks[i] = held.clocks[i].max(due);
                self.core.record(*node, Kind::Timer { timer: t });
                self.step(*node, Some(Input::Timer(t)));
            }
            Step::Sync { node, upto } => {
                let i = node_ok(*node)?;
                let s = &mut held.syncs[i];
                if !s.contains(upto) {
                    return Err(format!("n{node} has no sync up to #{upto} pending"));
                }
                s.retain(|u| u != upto);
                self.complete_sync(*node, *upto);
            }
            Step::Crash { node } => {
                let i = node_ok(*node)?;
                if self.core.nodes[i].is_none() {
                    return Err(format!("n{node} is down already"));
                }
                held.timers[i].clear();
                held.syncs[i].clear();
                self.crash_keeping(*node, 0, None, CrashCause::Fault);
            }
            Step::Restart { node } => {
                if self.core.nodes[node_ok(*node)?].is_some() {
                    return Err(format!("n{node} is up"));
                }
                self.core.record(*node, Kind::Restart);
                self.boot(*node);
                let h = self.core.held.as_mut().expect("scripted");
                let again = h.retries[*node as usize].clone();
                h.requests.extend(again);
            }
            Step::Request { client, node, req } => {
                let k = held
                    .requests
                    .iter()
                    .position(|(c, t, r)| c == client && t == node && r.to_string() == *req)
                    .ok_or_else(|| {
                        format!("no request {req} from c{client} to n{node} is pending")
                    })?;
                let (client, to, req) = held.requests.remove(k);
                self.request(client, to, req);
            }
            Step::Reconfigure { node, change } => {
                if self.core.nodes[node_ok(*node)?].is_none() {
                    return Err(format!("n{node} is down"));
                }
                let change = *change;
                let fault = match change {
                    MemberChange::Add(node) => Fault::Join { node },
                    MemberChange::Remove(node) => Fault::Leave { node },
                    MemberChange::Replace { old, new } => Fault::Replace { old, new },
                };
                self.core.record(*node, Kind::Fault { fault });
                // As in the model: no partitions, no disk lost.
                self.ask(*node, change, Situation::default());
            }
        }
        Ok(())
    }

    fn outcome(self) -> Outcome<S::P> {
        let mut core = self.core;
        core.stats.sim_time_us = core.now;
        core.stats.events = core.trace.count;
        let trace = core.trace.take_all();
        let recent = if core.violation.is_some() || trace.is_some() {
            core.trace.recent().cloned().collect()
        } else {
            Vec::new()
        };
        Outcome {
            config: core.cfg,
            schedule: self.schedule,
            violation: core.violation,
            stats: core.stats,
            coverage: self.checker.coverage(),
            trace_hash: core.trace.hash(),
            recent,
            trace,
        }
    }

    fn deadline(&self) -> u64 {
        if !self.core.quiet {
            return u64::MAX;
        }
        self.workload.deadline(self.core.quiet_at, &self.core.cfg)
    }

    fn run_loop(&mut self) {
        let n = self.core.cfg.machines();
        // Clock faults act from time zero, before anyone reads a clock.
        for t in &self.schedule.faults {
            if let Fault::Clock {
                node,
                skew_us,
                rate_ppm,
            } = t.fault
            {
                self.core.slots[node as usize].clock = Clock { skew_us, rate_ppm };
                self.core.stats.faults[t.fault.kind_index()] += 1;
                self.core.record(node, Kind::Fault { fault: t.fault });
            }
        }
        for id in 0..n {
            self.checker
                .on_clock(id, self.core.slots[id as usize].clock);
        }
        for id in 0..n {
            self.boot(id);
        }
        self.workload.start(&mut self.core);
        self.invoked();
        for i in 0..self.schedule.faults.len() {
            let t = self.schedule.faults[i];
            if !matches!(t.fault, Fault::Clock { .. }) {
                self.core.push(t.at_us, Ev::Fault(i as u32));
            }
        }
        let quiet = self.core.cfg.fault_phase_us;
        self.core.push(quiet, Ev::Quiet);
        while let Some((at_us, ev)) = self.core.queue.pop() {
            if at_us > self.deadline() {
                break;
            }
            assert!(at_us >= self.core.now, "time went backwards");
            self.core.now = at_us;
            self.dispatch(ev);
            if self.core.violation.is_some() {
                return;
            }
            if self.core.quiet && self.workload.done() && self.checker.settled(&self.core.nodes) {
                return;
            }
        }
        let deadline = self.deadline();
        if deadline != u64::MAX {
            self.core.now = self.core.now.max(deadline);
        }
        let (now, quiet_at, cfg, nodes) = (
            self.core.now,
            self.core.quiet_at,
            &self.core.cfg,
            &self.core.nodes,
        );
        let v = match self.workload.stalled(now, quiet_at, cfg, nodes) {
            Some(v) => v,
            None => self.checker.unsettled(now, cfg, nodes),
        };
        self.core.violation = Some(v);
    }

    /// After a workload callback: hands the operations it started to the
    /// checker, then the requests it handed to nodes directly to the nodes.
    fn invoked(&mut self) {
        if !self.core.invoked.is_empty() {
            let now = self.core.now;
            for (client, req) in std::mem::take(&mut self.core.invoked) {
                let r = self.checker.on_invoke(now, client, &req);
                self.core.check(r);
            }
        }
        for (client, node, req) in std::mem::take(&mut self.core.local) {
            self.request(client, node, req);
        }
    }

    /// A client's request reaches node `to` (if it is up).
    fn request(&mut self, client: u32, to: NodeId, req: <S::P as Protocol>::Request) {
        if self.core.nodes[to as usize].is_none() {
            self.core.stats.drops += 1;
            let reason = DropReason::Down;
            self.core
                .record_none(Kind::RequestLost { client, to, reason });
        } else {
            let traced = Kind::Request {
                client,
                req: req.clone(),
            };
            self.core.record(to, traced);
            self.step(to, Some(Input::Request { client, req }));
        }
    }

    fn live(&self, node: NodeId, inc: u32) -> bool {
        let s = &self.core.slots[node as usize];
        s.inc == inc && self.core.nodes[node as usize].is_some()
    }

    fn dispatch(&mut self, ev: Ev<S::P>) {
        // A paused node handles nothing: its events wait for the pause's end.
        if self.core.pauses {
            if let Some(until) = self.core.paused(&ev) {
                let ev = match ev {
                    // The message reaches the host now: the link is judged
                    // now, and what crossed waits for the process.
                    Ev::Deliver { link, msg, sum } => {
                        if self.core.cut(link.from, link.to) {
                            let reason = DropReason::Partition;
                            return self.core.drop_msg(link, sum, reason);
                        }
                        let inc = self.core.slots[link.to as usize].inc;
                        Ev::Arrived {
                            link,
                            inc,
                            msg,
                            sum,
                        }
                    }
                    ev => ev,
                };
                return self.core.push(until, ev);
            }
        }
        match ev {
            Ev::Deliver { link, msg, sum } => self.deliver(link, msg, sum, true),
            Ev::Arrived {
                link,
                inc,
                msg,
                sum,
            } => match self.live(link.to, inc) {
                true => self.deliver(link, msg, sum, false),
                false => self.core.drop_msg(link, sum, DropReason::Down),
            },
            Ev::Forged { from, to } => self.deliver_forged(from, to),
            Ev::Timer { node, inc, timer } => {
                if self.live(node, inc) {
                    self.core.record(node, Kind::Timer { timer });
                    self.step(node, Some(Input::Timer(timer)));
                }
            }
            Ev::SyncDone { node, inc, upto } => {
                if self.live(node, inc) {
                    self.complete_sync(node, upto);
                }
            }
            Ev::Fault(i) => {
                let fault = self.schedule.faults[i as usize].fault;
                self.fault(fault);
            }
            // Not faults of the schedule: the trace shows a power loss
            // as a crash with its cause, and the restart after it alone.
            Ev::PowerLoss { node, inc, cause } => {
                if self.live(node, inc) && !self.core.quiet {
                    self.core.stats.faults[Fault::Crash { node }.kind_index()] += 1;
                    self.crash(node, cause);
                    let back = self.core.now + self.core.rng.gen_range(1_000..=50_000);
                    self.core.push(back, Ev::Restart { node });
                }
            }
            Ev::Restart { node } => {
                if self.core.nodes[node as usize].is_none() {
                    self.core.stats.faults[Fault::Restart { node }.kind_index()] += 1;
                    self.restart(node);
                }
            }
            Ev::ToNode { to, client, req } => self.request(client, to, req),
            Ev::ToClient {
                client,
                from,
                reply,
            } => {
                self.workload.on_reply(&mut self.core, client, from, reply);
                self.invoked();
            }
            Ev::Wake { client, token } => {
                self.workload.on_wake(&mut self.core, client, token);
                self.invoked();
            }
            Ev::Quiet => {
                let core = &mut self.core;
                core.quiet = true;
                core.quiet_at = core.now;
                core.record_none(Kind::Quiet);
                core.blocked = [0; MAX_NODES];
                for id in 0..core.cfg.machines() {
                    self.core.slots[id as usize].slow = false;
                    if self.core.nodes[id as usize].is_none() {
                        self.restart(id);
                    }
                }
            }
        }
    }

    /// A message reaches `to`: dropped if `to` is down or (if `crossing`,
    /// not yet in `to`'s socket buffer) the link is cut.
    #[inline]
    fn deliver(
        &mut self,
        link: Link,
        msg: <S::P as Protocol>::Msg,
        sum: <S::P as Protocol>::MsgSummary,
        crossing: bool,
    ) {
        let Link { from, to, .. } = link;
        if self.core.nodes[to as usize].is_none() {
            self.core.drop_msg(link, sum, DropReason::Down);
        } else if crossing && self.core.cut(from, to) {
            self.core.drop_msg(link, sum, DropReason::Partition);
        } else {
            self.core.stats.deliveries += 1;
            self.core.record(to, Kind::Receive { link, msg: sum });
            let r = self.checker.on_receive(self.core.now, from, to, &msg);
            self.core.check(r);
            self.step(to, Some(Input::Receive { from, msg }));
        }
    }

    /// A hostile message reaches `to` on the link from `from`, if `to` is up
    /// and the link not cut: forged now, against `to` as it is. No checker
    /// hears of it (checkers judge what nodes sent, and no node sent this);
    /// a panic while `to` handles it is H1.
    fn deliver_forged(&mut self, from: NodeId, to: NodeId) {
        let core = &mut self.core;
        let Some(node) = core.nodes[to as usize].as_ref() else {
            return;
        };
        if core.cut(from, to) {
            return;
        }
        let Some(msg) = node.forge(from, &mut core.rng) else {
            return;
        };
        let sum = <S::P as Protocol>::summarize_msg(&msg);
        core.stats.forged += 1;
        core.record(to, Kind::Forged { from, msg: sum });
        self.forged = true;
        self.step(to, Some(Input::Receive { from, msg }));
        self.forged = false;
    }

    fn fault(&mut self, fault: Fault) {
        let n = self.core.cfg.machines();
        // Leader-aimed faults resolve to a node now (and count as such).
        let kind = fault.kind_index();
        let core = &self.core;
        let live = |i: NodeId| core.nodes[i as usize].is_some();
        let voters = core.cfg.fewest_voters(self.schedule.changes_membership());
        let lost = |i| core.disk_lost(i);
        let Some(fault) = fault.resolve(n, voters, live, lost, || core.leader()) else {
            return;
        };
        self.core.stats.faults[kind] += 1;
        // The trace's node: the machine the fault acts on (the leader, for
        // what is aimed at it or asked of it); none for links and the
        // harness.
        let node = match fault {
            Fault::Crash { node }
            | Fault::Restart { node }
            | Fault::Slow { node }
            | Fault::Fast { node }
            | Fault::Pause { node, .. }
            | Fault::Clock { node, .. }
            | Fault::BitFlip { node, .. }
            | Fault::Wipe { node } => Some(node),
            Fault::IsolateLeader
            | Fault::Join { .. }
            | Fault::Leave { .. }
            | Fault::Replace { .. } => self.core.leader(),
            Fault::CrashLeader
            | Fault::LeaveLeader
            | Fault::OneWay { .. }
            | Fault::Partition { .. }
            | Fault::Heal
            | Fault::RestartDown => None,
        };
        match node {
            Some(node) => self.core.record(node, Kind::Fault { fault }),
            None => self.core.record_none(Kind::Fault { fault }),
        }
        let core = &mut self.core;
        match fault {
            Fault::Crash { node } => self.crash(node, CrashCause::Fault),
            Fault::Restart { node } => self.restart(node),
            Fault::RestartDown => {
                for id in 0..n {
                    if self.core.nodes[id as usize].is_none() {
                        self.restart(id);
                    }
                }
            }
            Fault::Partition { side } => {
                for a in 0..n {
                    for b in 0..n {
                        if (side >> a) & 1 != (side >> b) & 1 {
                            core.blocked[a as usize] |= 1 << b;
                        }
                    }
                }
            }
            Fault::IsolateLeader => {
                // `resolve` saw to it that there is a leader.
                let node = node.expect("a leader to isolate");
                for b in 0..n {
                    if b != node {
                        core.blocked[node as usize] |= 1 << b;
                        core.blocked[b as usize] |= 1 << node;
                    }
                }
            }
            Fault::OneWay { from, to } => core.blocked[from as usize] |= 1 << to,
            Fault::Heal => core.blocked = [0; MAX_NODES],
            Fault::Slow { node } => core.slots[node as usize].slow = true,
            Fault::Fast { node } => core.slots[node as usize].slow = false,
            Fault::Pause { node, us } => {
                let now = core.now;
                let s = &mut core.slots[node as usize];
                s.paused_until = s.paused_until.max(now + us);
            }
            Fault::BitFlip { node, record, bit } => {
                self.crash(node, CrashCause::Fault);
                self.core.slots[node as usize].disk.flip_bit(record, bit);
            }
            Fault::Wipe { node } => {
                self.crash(node, CrashCause::Fault);
                self.core.slots[node as usize].disk.wipe();
            }
            Fault::Join { node } => self.reconfigure(MemberChange::Add(node)),
            Fault::Leave { node } => self.reconfigure(MemberChange::Remove(node)),
            Fault::Replace { old, new } => self.reconfigure(MemberChange::Replace { old, new }),
            Fault::CrashLeader | Fault::Clock { .. } | Fault::LeaveLeader => {}
        }
    }

    /// An operator's membership change, asked of the leader (there is one:
    /// `Fault::resolve` saw to it).
    fn reconfigure(&mut self, change: MemberChange) {
        let core = &self.core;
        let Some(leader) = core.leader() else {
            return;
        };
        let situation = Situation {
            partitioned: core.blocked.iter().any(|b| *b != 0),
            rebuilding: (0..core.cfg.machines()).any(|i| core.disk_lost(i)),
        };
        self.ask(leader, change, situation);
    }

    /// An operator asks `node` (the leader, in a random run; any node, in
    /// a model's script) for `change`.
    fn ask(&mut self, node: NodeId, change: MemberChange, situation: Situation) {
        self.step_with(node, |n, now, out| {
            n.reconfigure(now, change, situation, out)
        });
    }

    /// Writes up to `upto` on `node` became durable: the checker sees them
    /// land, then the node hears of it.
    fn complete_sync(&mut self, node: NodeId, upto: u64) {
        let now = self.core.now;
        let slot = &mut self.core.slots[node as usize];
        let landed = slot.disk.sync(upto);
        if !landed.is_empty() {
            let r = self
                .checker
                .on_durable(now, node, &slot.disk.durable[landed.clone()]);
            self.core.check(r);
            self.core.facts_landed(node, landed);
        }
        self.core.record(node, Kind::Sync { upto });
        self.step(node, Some(Input::Synced { upto }));
    }

    /// Power loss at `node`: a random prefix of its unsynced writes made it
    /// to the platter, the next may be torn, the rest are lost.
    fn crash(&mut self, node: NodeId, cause: CrashCause) {
        if self.core.nodes[node as usize].is_none() {
            return;
        }
        let f = self.core.active_faults();
        let torn = self.core.permille(f.torn_permille);
        let pending = self.core.slots[node as usize].disk.pending();
        let keep = self.core.rng.gen_range(0..=pending);
        // Where the torn write is cut: drawn only when there is one, so a
        // run without torn writes draws as it always did.
        let tear = (torn && keep < pending).then(|| self.core.rng.gen());
        self.crash_keeping(node, keep, tear, cause);
    }

    /// Power loss at live `node`: the first `keep` unsynced writes landed,
    /// the next is torn, cut at `tear`, if that is `Some`.
    fn crash_keeping(&mut self, node: NodeId, keep: usize, tear: Option<u32>, cause: CrashCause) {
        self.core.nodes[node as usize] = None;
        let now = self.core.now;
        let slot = &mut self.core.slots[node as usize];
        let ended = slot.inc;
        slot.inc += 1;
        let (landed, lost) = slot.disk.crash(keep, tear);
        if !landed.is_empty() {
            let r = self
                .checker
                .on_durable(now, node, &slot.disk.durable[landed.clone()]);
            self.core.check(r);
            self.core.facts_landed(node, landed);
        }
        self.checker.on_crash(node);
        let crash = Kind::Crash {
            lost_writes: lost,
            cause,
        };
        self.core.record_in(node, ended, crash);
    }

    /// Restarts a crashed node from its disk and tells the workload.
    fn restart(&mut self, id: NodeId) {
        self.core.record(id, Kind::Restart);
        self.boot(id);
        self.workload.on_restart(&mut self.core, id);
        self.invoked();
    }

    /// Starts node `id` from its disk (first boot, or after a crash).
    fn boot(&mut self, id: NodeId) {
        let now = self.core.local(id);
        let slot = &mut self.core.slots[id as usize];
        assert!(
            self.core.nodes[id as usize].is_none(),
            "boot of a live node"
        );
        assert_eq!(
            slot.disk.pending(),
            0,
            "a crash must settle unsynced writes"
        );
        let cfg = &self.configs[id as usize];
        // A record that replaced all before it leaves no garbage to read.
        slot.disk.compact();
        let (node, how) = S::P::boot(cfg, slot.inc, &mut slot.disk.durable, now);
        // Boot may have repaired or cleared the disk: its facts are what
        // is left on it.
        slot.facts = slot.disk.durable.iter().filter_map(|r| r.fact()).collect();
        if let Boot::Rebuilding { corrupt } = how {
            self.checker.on_disk_lost(id);
            self.core.record(id, Kind::Rebuilding { corrupt });
        }
        self.core.nodes[id as usize] = Some(node);
        self.checker.on_restart(id);
        self.step(id, None);
    }

    /// Feeds `input` (or the start-up call) to node `id` and executes its effects.
    fn step(&mut self, id: NodeId, input: Option<Input<S::P>>) {
        self.step_with(id, |node, now, out| match input {
            Some(i) => node.handle(now, i, out),
            None => node.start(now, out),
        })
    }

    /// Calls `f` on node `id` at its local time and executes its effects.
    fn step_with(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut S::P, u64, &mut Vec<<S::P as Protocol>::Output>),
    ) {
        let mut out = std::mem::take(&mut self.out);
        assert!(out.is_empty());
        self.current = Some(id);
        let now = self.core.local(id);
        let node = self.core.nodes[id as usize]
            .as_mut()
            .expect("stepping a live node");
        f(node, now, &mut out);
        for o in out.drain(..) {
            if let Some(e) = S::P::effect(o) {
                self.execute(id, e);
            }
        }
        self.current = None;
        self.out = out;
        if let Some(h) = self.core.held.as_mut() {
            // The syncs this step asked for, completed once its sends have
            // left, as in the model.
            for upto in std::mem::take(&mut h.now_synced) {
                self.complete_sync(id, upto);
            }
        }
    }

    fn execute(&mut self, id: NodeId, e: Effect<S::P>) {
        let now = self.core.now;
        match e {
            Effect::Send { to, msg, after } => {
                let synced = self.core.slots[id as usize].disk.synced;
                let sum = S::P::summarize_msg(&msg);
                if let Some(limit) = S::P::wire_limit(&self.configs[id as usize]) {
                    let size = S::P::wire_size(&msg);
                    if size > limit {
                        self.core.check(Err(Violation {
                            invariant: Invariant::R1,
                            at_us: now,
                            node: Some(id),
                            detail: format!(
                                "n{id} sent {sum} to n{to}: {size} bytes encoded, over the \
                                 wire limit of {limit}"
                            ),
                        }));
                    }
                }
                let what = || sum;
                let r = checkers::check_disclosure(now, id, to, after, synced, what);
                self.core.check(r);
                let r = self.checker.on_send(now, id, to, &msg);
                self.core.check(r);
                let link = Link {
                    from: id,
                    to,
                    id: self.core.next_msg(),
                };
                self.core.record(id, Kind::Send { link, msg: sum });
                self.core.send(link, msg, sum);
            }
            Effect::Persist { seq, write } => {
                // Before the trace sees it: its numbers are exact below 2^53.
                assert!(
                    seq <= crate::schema::MAX_SAFE,
                    "n{id} numbered a write #{seq}: write numbers stay below 2^53"
                );
                let s = S::P::summarize_write(&write);
                self.core.record(id, Kind::Persist { seq, write: s });
                let r = self.checker.on_persist(now, id, seq, &write);
                self.core.check(r);
                let snapshot = write.is_snapshot();
                self.core.slots[id as usize].disk.write(seq, write);
                let f = self.core.active_faults();
                if snapshot && self.core.permille(f.snapshot_crash_permille) {
                    // Power fails while the snapshot is being written.
                    let inc = self.core.slots[id as usize].inc;
                    let at = now + self.core.rng.gen_range(0..=self.core.cfg.disk_us);
                    let cause = CrashCause::PowerLossInSnapshot;
                    self.core.push(
                        at,
                        Ev::PowerLoss {
                            node: id,
                            inc,
                            cause,
                        },
                    );
                }
            }
            Effect::Sync { upto } => self.core.sync(id, upto),
            Effect::SetTimer {
                timer,
                delay_us,
                jitter_us,
            } => self.core.set_timer(id, timer, delay_us, jitter_us),
            Effect::Reply { client, reply } => {
                let r = self.checker.on_reply(now, id, client, &reply);
                self.core.check(r);
                if self.core.held.is_none() {
                    let traced = Kind::Reply {
                        client,
                        reply: reply.clone(),
                    };
                    self.core.record(id, traced);
                    self.core.answer(id, client, reply);
                } else {
                    self.core.record(id, Kind::Reply { client, reply });
                }
            }
            Effect::Refused { from, why } => {
                self.core.stats.refused += 1;
                self.core.record(id, Kind::Refused { from, why });
            }
            Effect::Note(note) => {
                if let Some(s) = S::P::summarize_note(&note) {
                    self.core.record(id, Kind::Note { note: s });
                }
                let r = self.checker.on_note(now, id, &note);
                self.core.check(r);
            }
        }
    }
}

/// Runs `seed` of scenario `s` with an explicit schedule and returns the
/// typed outcome (events of `S::P`, for tests that inspect them). `cfg` must
/// be validated with its faults resolved.
pub fn run<S: Scenario>(
    s: &S,
    seed: u64,
    cfg: &RunConfig,
    schedule: Schedule,
    keep: Keep,
) -> Outcome<S::P> {
    Engine::new(s, seed, cfg.clone(), schedule, keep).run()
}
