//! The generic madsim runner: any [`Scenario`] of the seam on madsim's
//! seeded runtime (see the crate docs for the idea and madsim's quirks).
//!
//! # Fault model under madsim
//!
//! The nemesis plays a [`Schedule`] drawn by the fast scheduler's own
//! generator (`Schedule::generate`, from the config's [`Faults`], or from a
//! swarm draw over the scenario's [`Caps`] when the config leaves them open),
//! seeded from madsim's generator. Each kind maps onto madsim:
//! - **crash / restart**, **leader crash**, **restart of crashed nodes**:
//!   `Handle::kill` then `Handle::restart`; the kill is a power loss on the
//!   node's [`Disk`] (a random prefix of the unsynced writes lands, the next is
//!   torn with `torn_permille`), and the restarted process boots from it;
//! - **partition**, **one-way cut**, **leader isolation**, **heal**:
//!   `NetSim::clog_link` / `unclog_link` between replicas only, so clients
//!   still reach an isolated leader (which is what makes stale reads
//!   possible); madsim judges a clog when a message leaves, and the node drops
//!   one that lands while its link is cut (as the engine does);
//! - **process pause**: `Handle::pause`, resumed after the pause;
//! - **clock skew and drift**: each node's [`Clock`] turns madsim's time into
//!   the `now` its core sees, and its timers run on that clock;
//! - **bit flip** and **disk wipe**: a crash, then the disk damaged, for at
//!   most a minority of replicas at a time (as the engine bounds them);
//! - **slow node**: its syncs take `slow_factor` times longer, and its
//!   messages (to or from it) are held that much longer on the wire;
//! - per message: **loss** is madsim's `packet_loss_rate` (clients' messages
//!   too), **reordering** is madsim's latency range widened by `jitter_us`,
//!   **long delays** are drawn here per send and held by the receiver (so a
//!   long-delayed message survives its sender's crash, as on a real network:
//!   a sleep before the send would die with the sender's tasks; madsim's own
//!   send, about a millisecond, still does), and
//!   **duplication** per message
//!   between nodes (not for clients' requests, which the engine also
//!   duplicates); per sync:
//!   **fsync spikes**, **power loss during a sync**, and **power loss during a
//!   snapshot write** (the node crashes, then restarts 1–50 ms later).
//!
//! So every scheduled kind of the fast scheduler runs here too; only the
//! fast scheduler duplicates clients' requests. What differs most is time:
//! madsim adds at least 1 ms to every sleep and every send, so a hop takes
//! about 2 ms (0.5 ms in the engine) and a disk sync 1-3 ms, and a
//! protocol's timers are short relative to them (lease windows shrink).
//!
//! As in the engine, the quiet period begins at `fault_phase_us`: links heal,
//! message faults stop, crashed nodes restart. The run ends when the workload
//! is done and the checker settled, at the first violation, or at the
//! workload's deadline (the liveness verdict); a run without violation ends
//! with the workload's whole-history verdict (linearizability for `kv`).

use checkers::{Invariant, Violation};
use madsim::net::{Endpoint, NetSim};
use madsim::rand::{thread_rng, Rng, SeedableRng};
use madsim::runtime::{Handle, NodeHandle, Runtime};
use madsim::time::{sleep, Duration, TimeHandle};
use paxos::NodeId;
use paxsim::engine::{
    catching, Boot, Check, Checker, Clock, Cx, Disk, DiskRecord, Effect, Input, MemberChange,
    Protocol, Scenario, Situation, Workload,
};
use paxsim::nemesis::KINDS;
use paxsim::{Fault, Faults, RunConfig, Schedule};
use rand_chacha::ChaCha8Rng;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

const PORT: u16 = 7000;
const TAG: u64 = 1;

fn ip(id: NodeId) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, id + 1))
}

fn addr(id: NodeId) -> SocketAddr {
    SocketAddr::new(ip(id), PORT)
}

/// Every client shares one machine outside the replicas' partitions.
fn clients_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)), PORT)
}

/// Simulated microseconds since the run began.
fn now_us() -> u64 {
    TimeHandle::current().elapsed().as_micros() as u64
}

fn us(d: u64) -> Duration {
    Duration::from_micros(d)
}

/// The bounds a scenario's types need to cross madsim's network and tasks.
/// madsim runs every task on one thread, so `Send` is never exercised; it is
/// asked because madsim's payloads and spawned tasks are `Send`.
pub trait Runnable: Scenario<Checker: Send, Workload: Send, P: Node> {}
impl<S: Scenario<Checker: Send, Workload: Send, P: Node>> Runnable for S {}

/// A [`Protocol`] whose state and messages can live in madsim's tasks.
pub trait Node:
    Protocol<
        Config: Send + Sync,
        Msg: Send + Sync,
        Write: Send,
        Request: Send + Sync,
        Reply: Send + Sync,
        Timer: Send,
    > + Send
{
}
impl<P> Node for P where
    P: Protocol<
            Config: Send + Sync,
            Msg: Send + Sync,
            Write: Send,
            Request: Send + Sync,
            Reply: Send + Sync,
            Timer: Send,
        > + Send
{
}

/// What travels between endpoints.
enum Wire<P: Protocol> {
    /// A peer message, held `hold_us` on the wire (a long delay, a slow
    /// node) beyond madsim's latency. The receiver holds it, not the
    /// sender: the held part survives its sender's crash, as on a real
    /// network (a sender-side sleep would die with the sender's tasks).
    Peer {
        from: NodeId,
        msg: P::Msg,
        hold_us: u64,
    },
    Request {
        client: u32,
        req: P::Request,
    },
    Reply {
        client: u32,
        from: NodeId,
        reply: P::Reply,
        hold_us: u64,
    },
}

/// The result of one madsim run.
pub struct Outcome<P> {
    /// The config with its faults resolved, and the schedule the nemesis played.
    pub config: RunConfig,
    pub schedule: Schedule,
    pub violation: Option<Violation>,
    /// A fingerprint of every observed event with its time and node.
    pub trace_hash: u64,
    /// Messages nodes sent to each other.
    pub messages: u64,
    /// Client operations the workload completed.
    pub completed: u64,
    /// Faults that took effect, by `Fault::kind_index`.
    pub faults: [u64; KINDS],
    pub coverage: Vec<(&'static str, u64)>,
    /// The workload's whole-history check ran and passed (`Workload::finish`
    /// gave `Ok(true)`); false after a violation or when it had no verdict.
    pub history_checked: bool,
    pub sim_time_us: u64,
    /// The nodes as the run left them (`None`: down).
    pub nodes: Vec<Option<P>>,
}

/// What the node layer keeps of a node across its incarnations.
struct Slot<P: Protocol> {
    /// madsim's id of the node's machine.
    id: madsim::task::NodeId,
    disk: Disk<P::Write>,
    /// Bumped at every crash: a power loss aimed at an earlier incarnation
    /// does nothing.
    inc: u32,
    /// Not killed (the process may still be booting).
    up: bool,
    clock: Clock,
    slow: bool,
    /// The live incarnation's endpoint and input queue.
    io: Option<(Arc<Endpoint>, async_channel::Sender<Item<P>>)>,
}

/// What a node's process takes from its queue: an input, or an operator's
/// membership change (the nemesis asks the leader through its queue, so
/// the node acts on it in its own process, as on any input).
enum Item<P: Protocol> {
    In(Input<P>),
    Reconfigure(MemberChange, Situation),
}

/// The part of the world a workload may touch, through [`Cx`].
struct Core<P: Protocol> {
    cfg: RunConfig,
    faults: Faults,
    quiet_at: Option<u64>,
    wrng: ChaCha8Rng,
    nodes: Vec<Option<P>>,
    slots: Vec<Slot<P>>,
    /// `blocked[a]` has bit `b` set while the link from a to b is clogged:
    /// madsim judges a clog when a message leaves, and this drops what was
    /// in flight when it lands (as the engine does).
    blocked: [u16; paxos::MAX_NODES],
    violation: Option<Violation>,
    /// The run is over: every task stops at its next step.
    over: bool,
    hash: u64,
    messages: u64,
    completed: u64,
    faults_done: [u64; KINDS],
    // What workload callbacks and node steps asked for, carried out by
    // `Sim::flush` once they return (they cannot spawn tasks themselves).
    invoked: Vec<(u32, P::Request)>,
    local: Vec<(u32, NodeId, P::Request)>,
    sends: Vec<(u32, NodeId, P::Request)>,
    wakes: Vec<(u32, u64, u64)>,
    /// Power losses to strike: (node, incarnation, after_us).
    power_losses: Vec<(NodeId, u32, u64)>,
    /// The clients' machine (never killed), which also runs the nemesis's
    /// delayed work, and the clients' endpoint on it.
    ctl: NodeHandle,
    client_ep: Arc<Endpoint>,
    schedule: Schedule,
}

impl<P: Protocol> Core<P> {
    fn note(&mut self, node: NodeId, what: impl Hash) {
        let mut h = rustc_hash::FxHasher::default();
        (self.hash, now_us(), node, what).hash(&mut h);
        self.hash = h.finish();
    }

    fn check(&mut self, r: Check) {
        if let (Err(v), None) = (r, &self.violation) {
            self.violation = Some(v);
        }
    }

    fn stopped(&self) -> bool {
        self.over || self.violation.is_some()
    }

    fn active(&self) -> Faults {
        if self.quiet_at.is_some() {
            Faults::NONE
        } else {
            self.faults
        }
    }

    fn permille(p: u16) -> bool {
        p > 0 && thread_rng().gen_range(0..1000) < p
    }

    /// Whether node `i` lost its durable state and has not rebuilt it.
    fn disk_lost(&self, i: usize) -> bool {
        match &self.nodes[i] {
            Some(p) => p.disk_lost(),
            None => !P::disk_intact(&self.slots[i].disk.durable),
        }
    }

    /// The live node that leads with the highest rank.
    fn leader(&self) -> Option<NodeId> {
        let ranks = self.nodes.iter().enumerate();
        ranks
            .filter_map(|(i, p)| Some((p.as_ref()?.leader_rank()?, i as NodeId)))
            .max()
            .map(|(_, i)| i)
    }

    /// Extra delay before a message between `a` and `b` (`None`: a client)
    /// leaves: slow nodes and long delays. madsim adds latency and jitter.
    fn extra_delay(&self, a: NodeId, b: Option<NodeId>) -> u64 {
        let f = self.active();
        let mut d = 0;
        if self.slots[a as usize].slow || b.is_some_and(|b| self.slots[b as usize].slow) {
            d += self.cfg.latency_us * self.cfg.slow_factor.saturating_sub(1);
        }
        if Self::permille(f.long_delay_permille) {
            d += thread_rng().gen_range(0..=self.cfg.long_delay_us_max);
        }
        d
    }
}

impl<P: Protocol> Cx<P> for Core<P> {
    fn now(&self) -> u64 {
        now_us()
    }
    fn cfg(&self) -> &RunConfig {
        &self.cfg
    }
    fn quiet_at(&self) -> Option<u64> {
        self.quiet_at
    }
    fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.wrng
    }
    fn nodes(&self) -> &[Option<P>] {
        &self.nodes
    }
    fn invoke(&mut self, client: u32, node: NodeId, req: P::Request) {
        self.note(node, ("invoke", client, &req));
        self.invoked.push((client, req));
    }
    fn send(&mut self, client: u32, node: NodeId, req: P::Request) {
        self.sends.push((client, node, req));
    }
    fn local(&mut self, client: u32, node: NodeId, req: P::Request) {
        self.local.push((client, node, req));
    }
    fn wake(&mut self, client: u32, after_us: u64, token: u64) {
        self.wakes.push((client, after_us, token));
    }
    fn complete(&mut self, client: u32, node: NodeId, reply: P::Reply) {
        self.completed += 1;
        self.note(node, ("complete", client, reply));
    }
    fn retry(&mut self, client: u32, node: NodeId) {
        self.note(node, ("retry", client));
    }
    fn fail(&mut self, invariant: Invariant, node: Option<NodeId>, detail: String) {
        let at_us = now_us();
        self.check(Err(Violation {
            invariant,
            at_us,
            node,
            detail,
        }));
    }
}

/// Everything shared by the run's tasks.
struct World<S: Scenario> {
    core: Core<S::P>,
    configs: Vec<<S::P as Protocol>::Config>,
    checker: S::Checker,
    workload: S::Workload,
    /// The schedule asks for membership changes (disk losses then stay
    /// below a minority of the fewest voters a configuration may have).
    membership: bool,
}

/// A panic in a node's core (a failed assertion: a canary can trip one) or
/// in a checker or workload callback, as a violation.
fn asserted(node: Option<NodeId>, detail: String) -> Violation {
    Violation {
        invariant: Invariant::Assert,
        at_us: now_us(),
        node,
        detail,
    }
}

impl<S: Runnable> World<S> {
    /// Boots node `id` from its disk (its process just started).
    fn boot(&mut self, id: NodeId) {
        let now = self.core.slots[id as usize].clock.local(now_us());
        let slot = &mut self.core.slots[id as usize];
        assert_eq!(slot.disk.pending(), 0, "a crash settles unsynced writes");
        let cfg = &self.configs[id as usize];
        let (node, how) = S::P::boot(cfg, slot.inc, &mut slot.disk.durable, now);
        if let Boot::Rebuilding { corrupt } = how {
            self.checker.on_disk_lost(id);
            self.core.note(id, ("rebuilding", corrupt));
        }
        self.core.nodes[id as usize] = Some(node);
        self.checker.on_restart(id);
        self.core.note(id, "boot");
        self.step(id, None);
    }

    /// Feeds `input` (`None`: the start-up call) to node `id` and carries out
    /// its effects.
    fn step(&mut self, id: NodeId, input: Option<Input<S::P>>) {
        let now = self.core.slots[id as usize].clock.local(now_us());
        let mut out = Vec::new();
        let node = self.core.nodes[id as usize].as_mut().expect("a live node");
        match input {
            Some(i) => node.handle(now, i, &mut out),
            None => node.start(now, &mut out),
        }
        for o in out {
            if let Some(e) = S::P::effect(o) {
                self.execute(id, e);
            }
        }
    }

    /// An operator's membership change, at node `id` (the leader when the
    /// nemesis asked).
    fn reconfigure(&mut self, id: NodeId, change: MemberChange, situation: Situation) {
        self.core.note(id, ("reconfigure", change));
        let now = self.core.slots[id as usize].clock.local(now_us());
        let mut out = Vec::new();
        let node = self.core.nodes[id as usize].as_mut().expect("a live node");
        node.reconfigure(now, change, situation, &mut out);
        for o in out {
            if let Some(e) = S::P::effect(o) {
                self.execute(id, e);
            }
        }
    }

    /// One input from node `id`'s queue.
    fn input(&mut self, id: NodeId, input: Input<S::P>) {
        let now = now_us();
        match &input {
            Input::Receive { from, msg } => {
                let sum = S::P::summarize_msg(msg);
                if self.core.blocked[*from as usize] & (1 << id) != 0 {
                    self.core.note(id, ("cut", *from, sum));
                    return;
                }
                self.core.note(id, ("receive", *from, sum));
                let r = self.checker.on_receive(now, *from, id, msg);
                self.core.check(r);
            }
            Input::Timer(t) => self.core.note(id, ("timer", *t)),
            Input::Request { client, req } => self.core.note(id, ("request", *client, req)),
            Input::Synced { upto } => {
                let disk = &mut self.core.slots[id as usize].disk;
                let landed = disk.sync(*upto);
                if !landed.is_empty() {
                    let r = self.checker.on_durable(now, id, &disk.durable[landed]);
                    self.core.check(r);
                }
                self.core.note(id, ("synced", *upto));
            }
        }
        self.step(id, Some(input));
    }

    fn execute(&mut self, id: NodeId, e: Effect<S::P>) {
        let now = now_us();
        let core = &mut self.core;
        let f = core.active();
        let slot = &core.slots[id as usize];
        let (ep, tx) = slot.io.clone().expect("a live node has its io");
        let inc = slot.inc;
        match e {
            Effect::Send { to, msg, after } => {
                let sum = S::P::summarize_msg(&msg);
                let synced = slot.disk.synced;
                let r = checkers::check_disclosure(now, id, to, after, synced, || sum);
                core.check(r);
                let r = self.checker.on_send(now, id, to, &msg);
                core.check(r);
                core.note(id, ("send", to, sum));
                core.messages += 1;
                if to == id {
                    // A node's messages to itself never cross the network.
                    let _ = tx.try_send(Item::In(Input::Receive { from: id, msg }));
                    return;
                }
                let copies = if Core::<S::P>::permille(f.dup_permille) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let wire = Wire::<S::P>::Peer {
                        from: id,
                        msg: msg.clone(),
                        hold_us: core.extra_delay(id, Some(to)),
                    };
                    transmit(&ep, addr(to), wire);
                }
            }
            Effect::Persist { seq, write } => {
                core.note(id, ("persist", seq, S::P::summarize_write(&write)));
                let r = self.checker.on_persist(now, id, seq, &write);
                core.check(r);
                let snapshot = write.is_snapshot();
                core.slots[id as usize].disk.write(seq, write);
                if snapshot && Core::<S::P>::permille(f.snapshot_crash_permille) {
                    let at = thread_rng().gen_range(0..=core.cfg.disk_us.max(1_000));
                    core.power_losses.push((id, inc, at));
                }
            }
            Effect::Sync { upto } => {
                // madsim sleeps at least 1 ms: shorter latencies would all
                // collapse to exactly 1 ms, so they are spread over 1-3 ms.
                let mut d = core.cfg.disk_us.max(1_000) + thread_rng().gen_range(0..=2_000);
                if f.disk_jitter_us > 0 {
                    d += thread_rng().gen_range(0..=f.disk_jitter_us);
                }
                if slot.slow {
                    d *= core.cfg.slow_factor;
                }
                later(tx, d, Item::In(Input::Synced { upto }));
                if Core::<S::P>::permille(f.crash_in_sync_permille) {
                    let at = thread_rng().gen_range(0..d);
                    core.power_losses.push((id, inc, at));
                }
            }
            Effect::SetTimer {
                timer,
                delay_us,
                jitter_us,
            } => {
                let jitter = if jitter_us > 0 {
                    thread_rng().gen_range(0..=jitter_us)
                } else {
                    0
                };
                let at = slot.clock.real(delay_us + jitter);
                later(tx, at, Item::In(Input::Timer(timer)));
            }
            Effect::Reply { client, reply } => {
                let r = self.checker.on_reply(now, id, client, &reply);
                core.check(r);
                core.note(id, ("reply", client, &reply));
                let wire = Wire::<S::P>::Reply {
                    client,
                    from: id,
                    reply,
                    hold_us: core.extra_delay(id, None),
                };
                transmit(&ep, clients_addr(), wire);
            }
            Effect::Note(note) => {
                if let Some(s) = S::P::summarize_note(&note) {
                    core.note(id, ("note", s));
                }
                let r = self.checker.on_note(now, id, &note);
                core.check(r);
            }
            // madsim's runner forges nothing (hostile input is the
            // engine's): a refusal here is a node refusing a correct
            // peer's message, which the trace shows.
            Effect::Refused { from, why } => core.note(id, ("refused", from, why)),
        }
    }

    /// Power loss at node `id`: its process dies, a random prefix of its
    /// unsynced writes made it to the platter (the next may be torn).
    fn crash(&mut self, id: NodeId) {
        let core = &mut self.core;
        let slot = &mut core.slots[id as usize];
        if !slot.up {
            return;
        }
        Handle::current().kill(slot.id);
        slot.up = false;
        slot.io = None;
        slot.inc += 1;
        core.nodes[id as usize] = None;
        let torn = Core::<S::P>::permille(core.faults.torn_permille);
        let keep = thread_rng().gen_range(0..=slot.disk.pending());
        // Where a torn write is cut, drawn only when one is (as the engine).
        let tear = torn.then(|| thread_rng().gen::<u32>());
        let (landed, lost) = slot.disk.crash(keep, tear);
        if !landed.is_empty() {
            let r = self
                .checker
                .on_durable(now_us(), id, &slot.disk.durable[landed]);
            core.check(r);
        }
        self.checker.on_crash(id);
        core.note(id, ("crash", lost));
    }

    /// Starts a new process on a crashed node (it boots from its disk).
    fn restart(&mut self, id: NodeId) {
        let slot = &mut self.core.slots[id as usize];
        if !slot.up {
            slot.up = true;
            Handle::current().restart(slot.id);
            self.core.note(id, "restart");
        }
    }

    /// Cuts (or with `clog` false, restores) the link from `a` to `b`.
    fn link(&self, a: NodeId, b: NodeId, clog: bool) {
        let (a, b) = (
            self.core.slots[a as usize].id,
            self.core.slots[b as usize].id,
        );
        if clog {
            NetSim::current().clog_link(a, b);
        } else {
            NetSim::current().unclog_link(a, b);
        }
    }

    fn heal(&mut self) {
        let n = self.core.cfg.machines();
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    self.link(a, b, false);
                }
            }
        }
    }

    /// Applies one scheduled fault (as the engine does, but on madsim).
    fn fault(&mut self, fault: Fault) {
        let n = self.core.cfg.machines();
        let kind = fault.kind_index();
        let core = &self.core;
        let live = |i: NodeId| core.slots[i as usize].up;
        let lost = |i: NodeId| core.disk_lost(i as usize);
        let voters = core.cfg.fewest_voters(self.membership);
        let Some(fault) = fault.resolve(n, voters, live, lost, || core.leader()) else {
            return;
        };
        // madsim can pause only a running process.
        if let Fault::Pause { node, .. } = fault {
            if !live(node) {
                return;
            }
        }
        self.core.faults_done[kind] += 1;
        self.core.note(0, ("fault", fault));
        match fault {
            Fault::Crash { node } => self.crash(node),
            Fault::Restart { node } => self.restart(node),
            Fault::RestartDown => (0..n).for_each(|id| self.restart(id)),
            Fault::Partition { side } => {
                for a in 0..n {
                    for b in 0..n {
                        if (side >> a) & 1 != (side >> b) & 1 {
                            self.link(a, b, true);
                        }
                    }
                }
            }
            Fault::IsolateLeader => {
                let l = self.core.leader().expect("checked above");
                for b in (0..n).filter(|&b| b != l) {
                    self.link(l, b, true);
                    self.link(b, l, true);
                }
            }
            Fault::OneWay { from, to } => self.link(from, to, true),
            Fault::Heal => self.heal(),
            Fault::Slow { node } => self.core.slots[node as usize].slow = true,
            Fault::Fast { node } => self.core.slots[node as usize].slow = false,
            Fault::Pause { node, us: pause } => {
                let id = self.core.slots[node as usize].id;
                Handle::current().pause(id);
                self.core.ctl.spawn(async move {
                    sleep(us(pause)).await;
                    Handle::current().resume(id);
                });
            }
            Fault::BitFlip { node, record, bit } => {
                self.crash(node);
                self.core.slots[node as usize].disk.flip_bit(record, bit);
            }
            Fault::Wipe { node } => {
                self.crash(node);
                self.core.slots[node as usize].disk.wipe();
            }
            Fault::Join { node } => self.ask_leader(MemberChange::Add(node)),
            Fault::Leave { node } => self.ask_leader(MemberChange::Remove(node)),
            Fault::Replace { old, new } => self.ask_leader(MemberChange::Replace { old, new }),
            Fault::CrashLeader | Fault::Clock { .. } | Fault::LeaveLeader => {}
        }
    }

    /// Queues an operator's membership change at the leader (there is one:
    /// `Fault::resolve` saw to it).
    fn ask_leader(&mut self, change: MemberChange) {
        let core = &self.core;
        let Some(leader) = core.leader() else { return };
        let situation = Situation {
            partitioned: core.blocked.iter().any(|b| *b != 0),
            rebuilding: (0..core.cfg.machines() as usize).any(|i| core.disk_lost(i)),
        };
        if let Some((_, tx)) = &core.slots[leader as usize].io {
            let _ = tx.try_send(Item::Reconfigure(change, situation));
        }
    }

    /// The quiet period begins: links heal, message faults stop, crashed
    /// nodes restart.
    fn quiet(&mut self) {
        let now = now_us();
        self.core.quiet_at = Some(now);
        self.core.note(0, "quiet");
        NetSim::current().update_config(|c| {
            c.packet_loss_rate = 0.0;
            c.send_latency = latency(&self.core.cfg, 0);
        });
        self.heal();
        for id in 0..self.core.cfg.machines() {
            self.core.slots[id as usize].slow = false;
            self.restart(id);
        }
    }
}

/// madsim's per-message latency range: the config's latency, widened by the
/// jitter (which reorders messages).
fn latency(cfg: &RunConfig, jitter_us: u64) -> std::ops::Range<Duration> {
    us(cfg.latency_us)..us(cfg.latency_us + jitter_us + 1)
}

/// Sends `wire` from `ep`, as its own task: madsim spends
/// at least a millisecond of simulated time inside every send, and awaiting
/// sends in the node's loop would stall it for n ms per broadcast and release
/// its messages one by one in id order. A send still in flight when the node
/// is killed dies with it; a send to a dead or cut-off node is lost.
fn transmit<P: Node>(ep: &Arc<Endpoint>, to: SocketAddr, wire: Wire<P>) {
    let ep = ep.clone();
    madsim::task::spawn_local(async move {
        let _ = ep.send_to_raw(to, TAG, Box::new(wire)).await;
    });
}

/// Puts `input` on a node's queue after `delay_us`, unless the node dies
/// first (the task dies with it).
fn later<T: 'static>(tx: async_channel::Sender<T>, delay_us: u64, input: T) {
    madsim::task::spawn_local(async move {
        sleep(us(delay_us)).await;
        let _ = tx.send(input).await;
    });
}

/// The shared world: madsim runs every task on one thread, so the mutex is
/// never contended (and no task holds it across an await).
struct Sim<S: Scenario>(Arc<Mutex<World<S>>>);

impl<S: Scenario> Clone for Sim<S> {
    fn clone(&self) -> Self {
        Sim(self.0.clone())
    }
}

impl<S: Runnable> Sim<S> {
    fn lock(&self) -> MutexGuard<'_, World<S>> {
        self.0.lock().expect("no task panics holding the world")
    }

    /// Runs `f` on the world unless the run is over; a panic inside becomes
    /// an `Assert` violation (at `node`). Then carries out what it asked for.
    fn with(&self, node: Option<NodeId>, f: impl FnOnce(&mut World<S>)) -> bool {
        let mut w = self.lock();
        if w.core.stopped() {
            return false;
        }
        let w = &mut *w;
        let r = catching(|| {
            f(w);
            self.flush(w);
        });
        if let Err(detail) = r {
            w.core.check(Err(asserted(node, detail)));
        }
        !w.core.stopped()
    }

    /// Carries out what a workload callback or a node step asked for.
    fn flush(&self, w: &mut World<S>) {
        let now = now_us();
        let core = &mut w.core;
        for (client, req) in std::mem::take(&mut core.invoked) {
            let r = w.checker.on_invoke(now, client, &req);
            core.check(r);
        }
        for (client, node, req) in std::mem::take(&mut core.local) {
            if let Some((_, tx)) = &core.slots[node as usize].io {
                let _ = tx.try_send(Item::In(Input::Request { client, req }));
            }
        }
        let ctl = core.ctl.clone();
        for (client, node, req) in std::mem::take(&mut core.sends) {
            let ep = core.client_ep.clone();
            let delay = core.extra_delay(node, None);
            ctl.spawn(async move {
                if delay > 0 {
                    sleep(us(delay)).await;
                }
                let wire = Wire::<S::P>::Request { client, req };
                let _ = ep.send_to_raw(addr(node), TAG, Box::new(wire)).await;
            });
        }
        for (client, after, token) in std::mem::take(&mut core.wakes) {
            let sim = self.clone();
            ctl.spawn(async move {
                sleep(us(after)).await;
                sim.with(None, |w| w.workload.on_wake(&mut w.core, client, token));
            });
        }
        for (node, inc, after) in std::mem::take(&mut core.power_losses) {
            let sim = self.clone();
            ctl.spawn(async move {
                sleep(us(after)).await;
                let mut struck = false;
                sim.with(Some(node), |w| {
                    let slot = &w.core.slots[node as usize];
                    if slot.inc == inc && slot.up && w.core.quiet_at.is_none() {
                        w.crash(node);
                        struck = true;
                    }
                });
                if struck {
                    sleep(us(thread_rng().gen_range(1_000..=50_000))).await;
                    sim.with(Some(node), |w| w.restart(node));
                }
            });
        }
    }

    /// One incarnation of node `id`: boots from its disk, then handles its
    /// queue until it is killed.
    async fn node(self, id: NodeId) {
        let ep = Arc::new(Endpoint::bind(addr(id)).await.expect("bind"));
        let (tx, rx) = async_channel::unbounded::<Item<S::P>>();
        let (ep2, tx2) = (ep.clone(), tx.clone());
        madsim::task::spawn_local(async move {
            while let Ok((payload, _)) = ep2.recv_from_raw(TAG).await {
                let input = match *payload.downcast::<Wire<S::P>>().expect("only Wire travels") {
                    Wire::Peer { from, msg, hold_us } if hold_us > 0 => {
                        // Held on the wire; lost if this node dies first.
                        later(tx2.clone(), hold_us, Item::In(Input::Receive { from, msg }));
                        continue;
                    }
                    Wire::Peer { from, msg, .. } => Item::In(Input::Receive { from, msg }),
                    Wire::Request { client, req } => Item::In(Input::Request { client, req }),
                    Wire::Reply { .. } => continue,
                };
                if tx2.send(input).await.is_err() {
                    return;
                }
            }
        });
        let booted = self.with(Some(id), |w| {
            w.core.slots[id as usize].io = Some((ep, tx));
            let restarted = w.core.slots[id as usize].inc > 0;
            w.boot(id);
            if restarted {
                w.workload.on_restart(&mut w.core, id);
            }
        });
        if !booted {
            return;
        }
        while let Ok(item) = rx.recv().await {
            let done = self.with(Some(id), |w| match item {
                Item::In(input) => w.input(id, input),
                Item::Reconfigure(change, situation) => w.reconfigure(id, change, situation),
            });
            if !done {
                return;
            }
        }
    }

    /// The clients' end of the network: replies reach the workload.
    async fn clients(self, ep: Arc<Endpoint>) {
        while let Ok((payload, _)) = ep.recv_from_raw(TAG).await {
            let wire = *payload.downcast::<Wire<S::P>>().expect("only Wire travels");
            if let Wire::Reply {
                client,
                from,
                reply,
                hold_us,
            } = wire
            {
                if hold_us > 0 {
                    // Held on the wire, without holding up the replies
                    // behind it (the clients' machine never dies).
                    let sim = self.clone();
                    madsim::task::spawn_local(async move {
                        sleep(us(hold_us)).await;
                        sim.with(None, |w| {
                            w.workload.on_reply(&mut w.core, client, from, reply);
                        });
                    });
                    continue;
                }
                let stop = !self.with(None, |w| {
                    w.workload.on_reply(&mut w.core, client, from, reply);
                });
                if stop {
                    return;
                }
            }
        }
    }

    /// Plays the schedule (clock faults were applied before the first boot).
    async fn nemesis(self, schedule: Schedule) {
        for t in schedule.faults {
            if matches!(t.fault, Fault::Clock { .. }) {
                continue;
            }
            let now = now_us();
            if t.at_us > now {
                sleep(us(t.at_us - now)).await;
            }
            let live = self.with(None, |w| {
                if w.core.quiet_at.is_none() {
                    w.fault(t.fault);
                }
            });
            if !live {
                return;
            }
        }
    }
}

/// How long past the quiet period's start a run may go on when the workload
/// sets no deadline: a guard against a run that never ends.
const RUN_CAP_US: u64 = 120_000_000;

/// Runs `seed` of `scenario` under `cfg` on madsim's seeded runtime.
///
/// `cfg` must be a valid config of `scenario` (`cfg.validate()`); its faults,
/// if `None`, are drawn from the seed over the scenario's capabilities.
pub fn run<S: Runnable>(scenario: &'static S, cfg: &RunConfig, seed: u64) -> Outcome<S::P> {
    assert_eq!(cfg.scenario, scenario.name(), "a config of this scenario");
    if let Err(e) = scenario.validate(cfg) {
        panic!("invalid config: {e}");
    }
    let mut config = madsim::Config::default();
    config.net.send_latency = latency(cfg, 0);
    let rt = Runtime::with_seed_and_config(seed, config);
    let cfg = cfg.clone();
    rt.block_on(async move {
        let s = setup(scenario, cfg).await;
        let phase = s.lock().core.cfg.fault_phase_us;
        loop {
            sleep(us(1_000)).await;
            let mut g = s.lock();
            let w = &mut *g;
            if w.core.stopped() {
                break;
            }
            let now = now_us();
            let Some(quiet_at) = w.core.quiet_at else {
                if now >= phase {
                    w.quiet();
                }
                continue;
            };
            if w.workload.done() && w.checker.settled(&w.core.nodes) {
                break;
            }
            let deadline = w.workload.deadline(quiet_at, &w.core.cfg);
            if now > deadline.min(quiet_at + RUN_CAP_US) {
                let (cfg, nodes) = (&w.core.cfg, &w.core.nodes);
                let v = match w.workload.stalled(now, quiet_at, cfg, nodes) {
                    Some(v) => v,
                    None => w.checker.unsettled(now, cfg, nodes),
                };
                w.core.violation = Some(v);
                break;
            }
        }
        let mut g = s.lock();
        let w = &mut *g;
        w.core.over = true;
        w.core.note(0, "end");
        let mut history_checked = false;
        if w.core.violation.is_none() {
            let mut verdict = Ok(false);
            if let Err(detail) = catching(|| verdict = w.workload.finish()) {
                verdict = Err(asserted(None, detail));
            }
            match verdict {
                Ok(proven) => history_checked = proven,
                Err(v) => w.core.violation = Some(v),
            }
        }
        let core = &mut w.core;
        Outcome {
            config: core.cfg.clone(),
            schedule: std::mem::take(&mut core.schedule),
            violation: core.violation.clone(),
            trace_hash: core.hash,
            messages: core.messages,
            completed: core.completed,
            faults: core.faults_done,
            coverage: w.checker.coverage(),
            history_checked,
            sim_time_us: now_us(),
            nodes: std::mem::take(&mut core.nodes),
        }
    })
}

/// Draws the faults and the schedule, builds the world, starts the nodes,
/// the clients and the nemesis.
async fn setup<S: Runnable>(scenario: &'static S, mut cfg: RunConfig) -> Sim<S> {
    let mut rng = ChaCha8Rng::seed_from_u64(thread_rng().gen());
    let caps = scenario.caps(&cfg);
    let faults = match cfg.faults {
        Some(f) => f.only(&caps),
        None => Faults::draw(&mut rng, &caps),
    };
    let schedule = Schedule::generate_with(
        &mut rng,
        cfg.machines(),
        cfg.nodes,
        &faults,
        cfg.fault_phase_us,
    );
    cfg.faults = Some(faults);
    // The scenario's BUGGIFY knobs, drawn as the engine's `plan` draws them
    // (here from madsim's seeded generator).
    if cfg.buggify {
        scenario.buggify(&mut cfg, &mut rng);
    }
    NetSim::current().update_config(|c| {
        c.packet_loss_rate = faults.loss_permille as f64 / 1000.0;
        c.send_latency = latency(&cfg, faults.jitter_us);
    });
    let handle = Handle::current();
    let ctl = handle
        .create_node()
        .name("clients")
        .ip(clients_addr().ip())
        .build();
    let ep = ctl.spawn(async { Endpoint::bind(clients_addr()).await.expect("bind") });
    let client_ep = Arc::new(ep.await.expect("the clients' machine runs"));
    let mut wrng = ChaCha8Rng::seed_from_u64(thread_rng().gen());
    let workload = scenario.workload(&cfg, &mut wrng);
    let n = cfg.machines() as usize;
    // Clock faults act from time zero, before anyone reads a clock.
    let mut clocks = vec![Clock::default(); n];
    let mut faults_done = [0; KINDS];
    for t in &schedule.faults {
        if let Fault::Clock {
            node,
            skew_us,
            rate_ppm,
        } = t.fault
        {
            clocks[node as usize] = Clock { skew_us, rate_ppm };
            faults_done[t.fault.kind_index()] += 1;
        }
    }
    let mut checker = scenario.checker(&cfg);
    for (id, clock) in clocks.iter().enumerate() {
        checker.on_clock(id as NodeId, *clock);
    }
    let world = World::<S> {
        configs: scenario.node_configs(&cfg),
        checker,
        workload,
        membership: schedule.changes_membership(),
        core: Core {
            faults,
            quiet_at: None,
            wrng,
            nodes: (0..n).map(|_| None).collect(),
            slots: Vec::with_capacity(n),
            blocked: [0; paxos::MAX_NODES],
            violation: None,
            over: false,
            hash: 0,
            messages: 0,
            completed: 0,
            faults_done,
            invoked: Vec::new(),
            local: Vec::new(),
            sends: Vec::new(),
            wakes: Vec::new(),
            power_losses: Vec::new(),
            ctl: ctl.clone(),
            client_ep: client_ep.clone(),
            schedule: schedule.clone(),
            cfg,
        },
    };
    let s = Sim(Arc::new(Mutex::new(world)));
    for (id, clock) in clocks.into_iter().enumerate() {
        let sim = s.clone();
        let node = handle
            .create_node()
            .name(format!("n{id}"))
            .ip(ip(id as NodeId))
            .init(move || sim.clone().node(id as NodeId))
            .build();
        s.lock().core.slots.push(Slot {
            id: node.id(),
            disk: Disk::default(),
            inc: 0,
            up: true,
            clock,
            slow: false,
            io: None,
        });
    }
    ctl.spawn(s.clone().clients(client_ep));
    // Every node boots before the clients start, as in the engine.
    loop {
        let booting = {
            let w = s.lock();
            w.core.nodes.iter().any(Option::is_none) && !w.core.stopped()
        };
        if !booting {
            break;
        }
        sleep(us(1)).await;
    }
    s.with(None, |w| w.workload.start(&mut w.core));
    madsim::task::spawn(s.clone().nemesis(schedule));
    s
}
