//! The scheduler for the log scenarios (`multi` and `kv`): replicas of the
//! coordination service ([`kv::Server`], the Multi-Paxos core underneath)
//! and the clients that use it, driven by one seeded event queue.
//!
//! The same discipline as [`world`](crate::world): one queue ordered by
//! (simulated time, insertion number), one ChaCha stream per purpose, the
//! network interposer between replicas (latency, jitter, loss, duplication,
//! partitions), and a storage shim. Here the shim keeps each replica's disk
//! as a list of checksummed records ([`multipaxos::storage`]): a crash keeps
//! a random prefix of the unsynced writes and may tear the next one; a bit
//! flip corrupts a record; a wipe empties the disk. Recovery reads the disk
//! back: a torn tail is dropped, anything worse makes the replica rebuild
//! from its peers.
//!
//! Each node has its own clock (offset and rate from the nemesis): the node
//! sees its local time, and its timers run on it.
//!
//! Clients sit outside the replicas' partitions (they reach an isolated
//! leader, which is what makes stale reads possible), but their messages
//! are lost, duplicated and delayed like any other. Every client operation
//! on a persistent key goes into a history that is checked for
//! linearizability at the end of the run.

use crate::config::{RunConfig, Scenario};
use crate::nemesis::{Fault, Faults, Schedule};
use crate::queue::Queue;
use crate::trace::{DropReason, Event, Keep, Kind, LMsg, Tracer};
use crate::world::{rng, Report, Stats};
use checkers::log::LogObserver;
use checkers::{Invariant, Violation};
use kv::client::{Client, ClientOut};
use kv::server::{
    Event as SEvent, LogNode, LogOutput, Server, ServerConfig, ServerInput, Snapshot,
};
use kv::{Cmd, Command, Op, Reply};
use linearizability::{History, KvModel, KvOp, KvRet, OpId};
use multipaxos::storage::{load, Loaded, Sealed};
use multipaxos::{Entry, Msg, Write};
use paxos::{NodeId, MAX_NODES};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHasher;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

type LMsgFull = Msg<Cmd, Snapshot>;
type Record = Sealed<Cmd, Snapshot>;

/// Persistent keys the workload uses (checked for linearizability).
const KEYS: u64 = 5;
/// Ephemeral keys live above this (one per client); not in the history.
const EPHEMERAL_BASE: u64 = 1 << 32;
const LOCKS: u64 = 2;
/// Linearizability search budget per key.
const LIN_BUDGET: u64 = 2_000_000;

fn digest<T: Hash>(t: &T) -> u64 {
    let mut h = FxHasher::default();
    t.hash(&mut h);
    h.finish()
}

/// A message summary for the trace; the digest covers the whole content.
fn summarize(m: &LMsgFull) -> LMsg {
    let (kind, ballot, slot, len) = match m {
        Msg::Prepare { ballot, from } => ("Prepare", Some(*ballot), Some(*from), 0),
        Msg::Promise {
            ballot, accepted, ..
        } => ("Promise", Some(*ballot), None, accepted.len() as u32),
        Msg::Accept {
            ballot,
            slot,
            entry,
            ..
        } => ("Accept", Some(*ballot), Some(*slot), entry_len(entry)),
        Msg::Accepted { ballot, slot } => ("Accepted", Some(*ballot), Some(*slot), 0),
        Msg::Nack { promised, .. } => ("Nack", Some(*promised), None, 0),
        Msg::Heartbeat { ballot, commit, .. } => ("Heartbeat", Some(*ballot), Some(*commit), 0),
        Msg::HeartbeatAck { ballot, .. } => ("HeartbeatAck", Some(*ballot), None, 0),
        Msg::Query { from } => ("Query", None, Some(*from), 0),
        Msg::Chosen { slot, entry } => ("Chosen", None, Some(*slot), entry_len(entry)),
        Msg::Snapshot { snap } => ("Snapshot", None, Some(snap.upto), 0),
        Msg::RebuildQuery => ("RebuildQuery", None, None, 0),
        Msg::RebuildState { state } => (
            "RebuildState",
            Some(state.promised),
            None,
            state.accepted.len() as u32,
        ),
    };
    LMsg {
        kind,
        ballot,
        slot,
        len,
        digest: msg_digest(m),
    }
}

fn entry_len(e: &Entry<Cmd>) -> u32 {
    match e {
        Entry::Noop => 0,
        Entry::Cmds(c) => c.len() as u32,
    }
}

/// Fingerprints a message. Snapshots are fingerprinted by position only (a
/// snapshot's content follows from the log it summarizes).
fn msg_digest(m: &LMsgFull) -> u64 {
    let mut h = FxHasher::default();
    match m {
        Msg::Promise {
            ballot,
            accepted,
            snapshot,
        } => {
            ballot.hash(&mut h);
            accepted.hash(&mut h);
            snapshot.as_ref().map(|s| s.upto).hash(&mut h);
        }
        Msg::Snapshot { snap } => snap.upto.hash(&mut h),
        Msg::RebuildState { state } => {
            state.promised.hash(&mut h);
            state.accepted.hash(&mut h);
            state.chosen.hash(&mut h);
        }
        Msg::Prepare { ballot, from } => (0u8, ballot, from).hash(&mut h),
        Msg::Accept {
            ballot,
            slot,
            entry,
            commit,
        } => (1u8, ballot, slot, entry, commit).hash(&mut h),
        Msg::Accepted { ballot, slot } => (2u8, ballot, slot).hash(&mut h),
        Msg::Nack { ballot, promised } => (3u8, ballot, promised).hash(&mut h),
        Msg::Heartbeat {
            ballot,
            commit,
            round,
        } => (4u8, ballot, commit, round).hash(&mut h),
        Msg::HeartbeatAck { ballot, round } => (5u8, ballot, round).hash(&mut h),
        Msg::Query { from } => (6u8, from).hash(&mut h),
        Msg::Chosen { slot, entry } => (7u8, slot, entry).hash(&mut h),
        Msg::RebuildQuery => 8u8.hash(&mut h),
    }
    h.finish()
}

fn summarize_write(w: &Write<Cmd, Snapshot>) -> LMsg {
    let (kind, ballot, slot, len, digest) = match w {
        Write::Init => ("Init", None, None, 0, 0),
        Write::Promise(b) => ("Promise", Some(*b), None, 0, 0),
        Write::Accept {
            slot,
            ballot,
            entry,
        } => (
            "Accept",
            Some(*ballot),
            Some(*slot),
            entry_len(entry),
            digest(entry),
        ),
        Write::Chosen { slot, entry } => {
            ("Chosen", None, Some(*slot), entry_len(entry), digest(entry))
        }
        Write::ChosenMark { slot } => ("ChosenMark", None, Some(*slot), 0, 0),
        Write::Snapshot(s) => ("Snapshot", None, Some(s.upto), 0, 0),
        Write::Rebuilt(d) => (
            "Rebuilt",
            Some(d.promised),
            None,
            d.accepted.len() as u32,
            0,
        ),
    };
    LMsg {
        kind,
        ballot,
        slot,
        len,
        digest,
    }
}

#[derive(Clone, Debug)]
enum Resp {
    Reply { seq: u64, reply: Reply, local: bool },
    Redirect { seq: u64, leader: Option<NodeId> },
}

#[derive(Clone, Debug)]
enum Ev {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: LMsgFull,
    },
    Timer {
        node: NodeId,
        inc: u32,
        timer: multipaxos::Timer,
    },
    Tick {
        node: NodeId,
        inc: u32,
    },
    SyncDone {
        node: NodeId,
        inc: u32,
        upto: u64,
    },
    Fault(u32),
    PowerLoss {
        node: NodeId,
        inc: u32,
    },
    Restart {
        node: NodeId,
    },
    ToServer {
        to: NodeId,
        cmd: Command,
    },
    ToClient {
        client: u32,
        from: NodeId,
        resp: Resp,
    },
    ClientTimer {
        client: u32,
        epoch: u64,
    },
    ClientNext {
        client: u32,
    },
    Quiet,
}

/// A node's clock: `skew + t * (1 + rate_ppm / 10^6)`.
#[derive(Copy, Clone, Debug, Default)]
struct Clock {
    skew_us: u64,
    rate_ppm: i32,
}

impl Clock {
    fn local(&self, t: u64) -> u64 {
        let drift = (t as i128 * self.rate_ppm as i128) / 1_000_000;
        (self.skew_us as i128 + t as i128 + drift) as u64
    }
    /// Real time for `d` of local time to pass.
    fn real(&self, d: u64) -> u64 {
        ((d as u128 * 1_000_000).div_ceil((1_000_000 + self.rate_ppm as i64) as u128)) as u64
    }
}

struct Rep {
    server: Option<Server>,
    inc: u32,
    /// Durable records (what a recovery reads).
    disk: Vec<Record>,
    /// Issued, not yet synced.
    unsynced: Vec<(u64, Record)>,
    /// The number of the last write of this incarnation known durable (D1).
    synced: u64,
    slow: bool,
    paused_until: u64,
    clock: Clock,
}

/// What a client is doing.
struct Cl {
    client: Client,
    done: u32,
    /// The history entry of the operation in flight, if it is checked.
    op: Option<(Option<OpId>, u64)>,
    invoked_at: u64,
    token: BTreeMap<u64, u64>,
    has_session: bool,
}

pub struct LogWorld {
    seed: u64,
    cfg: RunConfig,
    faults: Faults,
    schedule: Schedule,
    rng: ChaCha8Rng,
    now: u64,
    queue: Queue<Ev>,
    reps: Vec<Rep>,
    clients: Vec<Cl>,
    blocked: [u16; MAX_NODES],
    quiet: bool,
    quiet_at: u64,
    /// When the last client operation completed.
    last_done: u64,
    obs: LogObserver,
    history: History<KvModel>,
    /// Every command a client sent: (client, seq) -> op.
    submitted: BTreeMap<(u32, u64), Op>,
    trace: Tracer,
    stats: Stats,
    violation: Option<Violation>,
    current: Option<NodeId>,
    out: Vec<SEvent>,
}

impl LogWorld {
    pub fn new(seed: u64, config: RunConfig, schedule: Schedule, keep: Keep) -> LogWorld {
        config.validate().expect("config validated by the caller");
        config
            .validate_schedule(&schedule)
            .expect("schedule validated by the caller");
        assert!(config.scenario.is_log());
        let faults = config.faults.expect("faults resolved by plan()");
        let n = config.nodes as usize;
        let reps = (0..n)
            .map(|_| Rep {
                server: None,
                inc: 0,
                disk: vec![Sealed::seal(Write::Init)],
                unsynced: Vec::new(),
                synced: 0,
                slow: false,
                paused_until: 0,
                clock: Clock::default(),
            })
            .collect();
        LogWorld {
            seed,
            faults,
            schedule,
            rng: rng(seed, 2),
            now: 0,
            queue: Queue::new(1 << 21),
            reps,
            clients: Vec::new(),
            blocked: [0; MAX_NODES],
            quiet: false,
            quiet_at: 0,
            last_done: 0,
            obs: LogObserver::new(n),
            history: History::new(),
            submitted: BTreeMap::new(),
            trace: Tracer::new(keep),
            stats: Stats::default(),
            violation: None,
            current: None,
            out: Vec::with_capacity(64),
            cfg: config,
        }
    }

    fn node_config(&self, id: NodeId) -> multipaxos::Config {
        multipaxos::Config {
            n: self.cfg.nodes,
            id,
            timing: self.cfg.log.timing,
            window: self.cfg.log.window,
            batch: self.cfg.log.batch,
            bugs: self.cfg.log_bugs,
        }
    }

    fn server_config(&self) -> ServerConfig {
        ServerConfig {
            snapshot_every: self.cfg.log.snapshot_every,
            tick_us: self.cfg.log.tick_us,
            lease_reads: self.cfg.log.timing.lease_us > 0,
            bugs: self.cfg.log_bugs,
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

    fn fail(&mut self, invariant: Invariant, node: Option<NodeId>, detail: String) {
        self.check(Err(Violation {
            invariant,
            at_us: self.now,
            node,
            detail,
        }));
    }

    pub fn run(mut self) -> Report {
        let result = crate::world::catching(|| self.run_loop());
        if let Err(detail) = result {
            self.violation = Some(Violation {
                invariant: Invariant::Assert,
                at_us: self.now,
                node: self.current,
                detail,
            });
        }
        if self.violation.is_none() {
            self.check_history();
        }
        self.stats.sim_time_us = self.now;
        self.stats.events = self.trace.count;
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

    fn check_history(&mut self) {
        match linearizability::check(&self.history, LIN_BUDGET) {
            linearizability::Report::Linearizable => {}
            linearizability::Report::NotLinearizable { key, minimal } => {
                let detail = format!(
                    "key {key}: no order of these {} operations explains their results:\n{}",
                    minimal.len(),
                    linearizability::render(&minimal)
                );
                self.fail(Invariant::K3, None, detail);
            }
            linearizability::Report::Unknown { .. } => {
                // Not a verdict either way: counted and reported by the
                // campaign and `paxsim run`, not a failure.
                self.stats.lin_undecided = 1;
            }
        }
    }

    fn run_loop(&mut self) {
        let n = self.cfg.nodes;
        // Clock faults act from time zero, before anyone reads a clock.
        for i in 0..self.schedule.faults.len() {
            if let Fault::Clock {
                node,
                skew_us,
                rate_ppm,
            } = self.schedule.faults[i].fault
            {
                self.reps[node as usize].clock = Clock { skew_us, rate_ppm };
                self.stats.faults[self.schedule.faults[i].fault.kind_index()] += 1;
            }
        }
        for id in 0..n {
            self.boot(id);
        }
        let retry = self.cfg.log.client_retry_us;
        for c in 0..self.cfg.clients {
            let target = self.rng.gen_range(0..n);
            self.clients.push(Cl {
                client: Client::new(c as u32, n, target, retry),
                done: 0,
                op: None,
                invoked_at: 0,
                token: BTreeMap::new(),
                has_session: false,
            });
            let at = self.rng.gen_range(0..20_000);
            self.push(at, Ev::ClientNext { client: c as u32 });
        }
        for i in 0..self.schedule.faults.len() {
            let t = self.schedule.faults[i];
            if !matches!(t.fault, Fault::Clock { .. }) {
                self.push(t.at_us, Ev::Fault(i as u32));
            }
        }
        self.push(self.cfg.fault_phase_us, Ev::Quiet);
        while let Some((at_us, ev)) = self.queue.pop() {
            if at_us > self.liveness_deadline() {
                break;
            }
            self.now = at_us;
            self.dispatch(ev);
            if self.violation.is_some() {
                return;
            }
            if self.quiet && self.finished() {
                return;
            }
        }
        let deadline = self.liveness_deadline();
        if deadline != u64::MAX {
            self.now = self.now.max(deadline);
        }
        let bound = self.cfg.log.op_bound_us;
        let late: Vec<String> = self
            .clients
            .iter()
            .filter(|c| c.op.is_some() && self.op_deadline(c) <= self.now)
            .map(|c| {
                format!(
                    "c{} op {} of {} (invoked at {})",
                    c.client.id,
                    c.done + 1,
                    self.cfg.ops,
                    checkers::fmt_time(c.invoked_at)
                )
            })
            .collect();
        let detail = if !late.is_empty() {
            format!(
                "operations unanswered {} after their invocation or the quiet period's start \
                 ({}): {}",
                checkers::fmt_time(bound),
                checkers::fmt_time(self.quiet_at),
                late.join(", ")
            )
        } else if self.clients.iter().any(|c| c.done < self.cfg.ops) {
            format!(
                "the run stalled with clients unfinished: {}",
                self.divergence()
            )
        } else {
            format!(
                "replicas did not converge within {} of the last completion at {}: {}",
                checkers::fmt_time(self.cfg.liveness_us),
                checkers::fmt_time(self.last_done),
                self.divergence()
            )
        };
        self.fail(Invariant::L2, None, detail);
    }

    /// When client `c`'s operation in flight must have completed: within
    /// `op_bound_us` of its invocation, or of the quiet period's start if it
    /// was invoked before.
    fn op_deadline(&self, c: &Cl) -> u64 {
        c.invoked_at.max(self.quiet_at) + self.cfg.log.op_bound_us
    }

    /// L2's bound, which scales with the workload rather than the run: the
    /// earliest deadline of an operation in flight; once every client is done,
    /// `liveness_us` after the last completion for the replicas to converge.
    /// No bound during the fault phase.
    fn liveness_deadline(&self) -> u64 {
        if !self.quiet {
            return u64::MAX;
        }
        let ops = self.clients.iter().filter(|c| c.op.is_some());
        let mut d = ops.map(|c| self.op_deadline(c)).min().unwrap_or(u64::MAX);
        if self.clients.iter().all(|c| c.done >= self.cfg.ops) {
            d = d.min(self.last_done.max(self.quiet_at) + self.cfg.liveness_us);
        }
        d
    }

    fn divergence(&self) -> String {
        self.reps
            .iter()
            .enumerate()
            .map(|(i, r)| match &r.server {
                None => format!("n{i} down"),
                Some(s) if s.node().is_rebuilding() => format!("n{i} rebuilding"),
                Some(s) => format!(
                    "n{i} applied {} digest {:04x}",
                    s.node().applied(),
                    s.machine().digest() & 0xffff
                ),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// All clients done, every replica up, and all at the same state.
    fn finished(&self) -> bool {
        if self.clients.iter().any(|c| c.done < self.cfg.ops) {
            return false;
        }
        let mut applied = None;
        for r in &self.reps {
            let Some(s) = &r.server else { return false };
            if s.node().is_rebuilding() {
                return false;
            }
            let a = s.node().applied();
            if *applied.get_or_insert(a) != a {
                return false;
            }
        }
        let d0 = self.reps[0].server.as_ref().map(|s| s.machine().digest());
        self.reps
            .iter()
            .all(|r| r.server.as_ref().map(|s| s.machine().digest()) == d0)
    }

    fn local(&self, id: NodeId) -> u64 {
        self.reps[id as usize].clock.local(self.now)
    }

    /// Starts node `id` from its disk (first boot, or after a crash).
    fn boot(&mut self, id: NodeId) {
        let cfg = self.node_config(id);
        let now = self.local(id);
        let rep = &mut self.reps[id as usize];
        assert!(rep.server.is_none(), "boot of a live node");
        assert!(
            rep.unsynced.is_empty(),
            "a crash must settle unsynced writes"
        );
        let node: LogNode = match load(&rep.disk) {
            Loaded::Ok { state, torn } => {
                // Recovery repairs a torn tail, as a WAL truncates it.
                let keep = rep.disk.len() - torn;
                rep.disk.truncate(keep);
                LogNode::recover(cfg, state, now)
            }
            Loaded::Wiped => {
                rep.disk.clear();
                self.obs.on_disk_lost(id);
                self.record(id, Kind::Rebuilding { corrupt: false });
                LogNode::rebuild(cfg, now)
            }
            Loaded::Corrupt { .. } => {
                let rep = &mut self.reps[id as usize];
                rep.disk.clear();
                self.obs.on_disk_lost(id);
                self.record(id, Kind::Rebuilding { corrupt: true });
                LogNode::rebuild(cfg, now)
            }
        };
        let scfg = self.server_config();
        self.reps[id as usize].server = Some(Server::new(node, scfg));
        self.obs.on_restart(id);
        self.step(id, None);
    }

    fn crash(&mut self, node: NodeId) {
        let f = self.active_faults();
        let torn = self.permille(f.torn_permille);
        let rep = &mut self.reps[node as usize];
        if rep.server.is_none() {
            return;
        }
        rep.server = None;
        rep.inc += 1;
        rep.synced = 0;
        // Unsynced writes: a random prefix made it to the platter, the next
        // may be torn, the rest are lost.
        let pending = std::mem::take(&mut rep.unsynced);
        let k = self.rng.gen_range(0..=pending.len());
        let lost = (pending.len() - k) as u32;
        let mut it = pending.into_iter().map(|(_, r)| r);
        let rep = &mut self.reps[node as usize];
        for r in it.by_ref().take(k) {
            rep.disk.push(r);
        }
        if torn {
            if let Some(mut r) = it.next() {
                r.torn = true;
                rep.disk.push(r);
            }
        }
        self.record(node, Kind::Crash { lost_writes: lost });
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

    /// Re-queues an event for a paused node; true if it was paused.
    fn paused(&mut self, node: NodeId, ev: &Ev) -> bool {
        let until = self.reps[node as usize].paused_until;
        if until > self.now {
            self.push(until, ev.clone());
            true
        } else {
            false
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { from, to, ref msg } => {
                if self.reps[to as usize].server.is_none() {
                    let s = summarize(msg);
                    self.drop_msg(from, to, s, DropReason::Down);
                } else if self.blocked[from as usize] & (1 << to) != 0 {
                    let s = summarize(msg);
                    self.drop_msg(from, to, s, DropReason::Partition);
                } else if !self.paused(to, &ev) {
                    let Ev::Deliver { msg, .. } = ev else {
                        unreachable!()
                    };
                    self.stats.deliveries += 1;
                    self.record(
                        to,
                        Kind::LReceive {
                            from,
                            msg: summarize(&msg),
                        },
                    );
                    if let Msg::Accept {
                        ballot,
                        slot,
                        entry,
                        ..
                    } = &msg
                    {
                        let (b, s, d) = (*ballot, *slot, digest(entry));
                        let r = self.obs.on_accept_received(self.now, from, to, b, s, d);
                        self.check(r);
                    }
                    self.step(
                        to,
                        Some(ServerInput::Log(multipaxos::Input::Receive { from, msg })),
                    );
                }
            }
            Ev::Timer { node, inc, timer } => {
                let rep = &self.reps[node as usize];
                if rep.inc == inc && rep.server.is_some() && !self.paused(node, &ev) {
                    self.record(node, Kind::LTimer { timer });
                    self.step(
                        node,
                        Some(ServerInput::Log(multipaxos::Input::Timer(timer))),
                    );
                }
            }
            Ev::Tick { node, inc } => {
                let rep = &self.reps[node as usize];
                if rep.inc == inc && rep.server.is_some() && !self.paused(node, &ev) {
                    self.record(node, Kind::Tick);
                    self.step(node, Some(ServerInput::Tick));
                }
            }
            Ev::SyncDone { node, inc, upto } => {
                let rep = &mut self.reps[node as usize];
                if rep.inc != inc || rep.server.is_none() {
                    return;
                }
                let k = rep.unsynced.iter().take_while(|(s, _)| *s <= upto).count();
                rep.synced = rep.synced.max(upto);
                let done: Vec<_> = rep.unsynced.drain(..k).collect();
                for (_, r) in done {
                    rep.disk.push(r);
                }
                if !self.paused(node, &ev) {
                    self.record(node, Kind::Sync { upto });
                    self.step(
                        node,
                        Some(ServerInput::Log(multipaxos::Input::Synced { upto })),
                    );
                } else {
                    // The disk finished; the node hears of it after the pause
                    // (the re-queued event finds nothing left to move).
                }
            }
            Ev::Fault(i) => {
                let fault = self.schedule.faults[i as usize].fault;
                self.fault(fault);
            }
            Ev::PowerLoss { node, inc } => {
                if self.reps[node as usize].inc == inc && !self.quiet {
                    self.stats.faults[0] += 1;
                    self.record(
                        node,
                        Kind::Fault {
                            fault: Fault::Crash { node },
                        },
                    );
                    self.crash(node);
                    let back = self.now + self.rng.gen_range(1_000..=50_000);
                    self.push(back, Ev::Restart { node });
                }
            }
            Ev::Restart { node } => {
                if self.reps[node as usize].server.is_none() {
                    self.record(node, Kind::Restart);
                    self.boot(node);
                }
            }
            Ev::ToServer { to, cmd } => {
                if self.reps[to as usize].server.is_none() || self.paused(to, &ev) {
                    return;
                }
                self.record(
                    to,
                    Kind::Request {
                        client: cmd.client,
                        seq: cmd.seq,
                    },
                );
                self.step(to, Some(ServerInput::Request(cmd)));
            }
            Ev::ToClient { client, from, resp } => self.client_receive(client, from, resp),
            Ev::ClientTimer { client, epoch } => {
                let mut out = Vec::new();
                let cl = &mut self.clients[client as usize];
                cl.client.on_timer(epoch, &mut out);
                if !out.is_empty() {
                    let seq = cl.client.current().map_or(0, |c| c.seq);
                    self.record(0, Kind::Retry { client, seq });
                }
                self.client_out(client, out);
            }
            Ev::ClientNext { client } => self.client_next(client),
            Ev::Quiet => {
                self.quiet = true;
                self.quiet_at = self.now;
                self.record(0, Kind::Quiet);
                self.blocked = [0; MAX_NODES];
                for id in 0..self.cfg.nodes {
                    self.reps[id as usize].slow = false;
                    if self.reps[id as usize].server.is_none() {
                        self.record(id, Kind::Restart);
                        self.boot(id);
                    }
                }
            }
        }
    }

    /// Whether node `i` has lost its durable state and not yet rebuilt it.
    fn disk_lost(&self, i: NodeId) -> bool {
        let r = &self.reps[i as usize];
        match &r.server {
            Some(s) => s.node().is_rebuilding(),
            None => !matches!(load(&r.disk), Loaded::Ok { .. }),
        }
    }

    /// The live node that leads with the highest ballot.
    fn leader(&self) -> Option<NodeId> {
        self.reps
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let s = r.server.as_ref()?;
                s.node()
                    .is_leader()
                    .then_some((s.node().promised(), i as NodeId))
            })
            .max()
            .map(|(_, i)| i)
    }

    fn fault(&mut self, fault: Fault) {
        let n = self.cfg.nodes;
        // Leader-targeted faults resolve to a node now (and count as such).
        let kind = fault.kind_index();
        let fault = match fault {
            Fault::CrashLeader => match self.leader() {
                Some(node) => Fault::Crash { node },
                None => return,
            },
            f => f,
        };
        let applies = match fault {
            Fault::Crash { node } => self.reps[node as usize].server.is_some(),
            // Losing a disk is survivable only while a majority of the
            // others still hold theirs: at most a minority (f) at a time.
            Fault::BitFlip { node, .. } | Fault::Wipe { node } => {
                let f = (n as usize - 1) / 2;
                !self.disk_lost(node) && (0..n).filter(|&i| self.disk_lost(i)).count() < f
            }
            Fault::Restart { node } => self.reps[node as usize].server.is_none(),
            Fault::IsolateLeader => self.leader().is_some(),
            _ => true,
        };
        if !applies {
            return;
        }
        self.stats.faults[kind] += 1;
        let node = match fault {
            Fault::Crash { node }
            | Fault::Restart { node }
            | Fault::Slow { node }
            | Fault::Fast { node }
            | Fault::Pause { node, .. }
            | Fault::BitFlip { node, .. }
            | Fault::Wipe { node } => node,
            Fault::OneWay { from, .. } => from,
            Fault::IsolateLeader => self.leader().unwrap_or(0),
            _ => 0,
        };
        self.record(node, Kind::Fault { fault });
        match fault {
            Fault::Crash { node } => self.crash(node),
            Fault::Restart { node } => self.boot(node),
            Fault::RestartDown => {
                for id in 0..n {
                    if self.reps[id as usize].server.is_none() {
                        self.boot(id);
                    }
                }
            }
            Fault::Partition { side } => {
                for a in 0..n {
                    for b in 0..n {
                        if (side >> a) & 1 != (side >> b) & 1 {
                            self.blocked[a as usize] |= 1 << b;
                        }
                    }
                }
            }
            Fault::IsolateLeader => {
                for b in 0..n {
                    if b != node {
                        self.blocked[node as usize] |= 1 << b;
                        self.blocked[b as usize] |= 1 << node;
                    }
                }
            }
            Fault::OneWay { from, to } => self.blocked[from as usize] |= 1 << to,
            Fault::Heal => self.blocked = [0; MAX_NODES],
            Fault::Slow { node } => self.reps[node as usize].slow = true,
            Fault::Fast { node } => self.reps[node as usize].slow = false,
            Fault::Pause { node, us } => {
                let r = &mut self.reps[node as usize];
                r.paused_until = r.paused_until.max(self.now + us);
            }
            Fault::BitFlip { node, record, bit } => {
                self.crash(node);
                let disk = &mut self.reps[node as usize].disk;
                if !disk.is_empty() {
                    let i = record as usize % disk.len();
                    disk[i].flip_bit(bit);
                }
            }
            Fault::Wipe { node } => {
                self.crash(node);
                self.reps[node as usize].disk.clear();
            }
            Fault::CrashLeader | Fault::Clock { .. } => {}
        }
    }

    // ----------------------------------------------------------------- nodes

    fn step(&mut self, id: NodeId, input: Option<ServerInput>) {
        let mut out = std::mem::take(&mut self.out);
        assert!(out.is_empty());
        self.current = Some(id);
        let now = self.local(id);
        let server = self.reps[id as usize]
            .server
            .as_mut()
            .expect("stepping a live node");
        match input {
            Some(i) => server.handle(now, i, &mut out),
            None => server.start(now, &mut out),
        }
        for e in out.drain(..) {
            self.execute(id, e);
        }
        self.current = None;
        self.out = out;
    }

    fn execute(&mut self, id: NodeId, e: SEvent) {
        match e {
            SEvent::Log(o) => self.execute_log(id, o),
            SEvent::Reply {
                client,
                seq,
                reply,
                local,
            } => {
                if local {
                    self.stats.coverage.lease_reads += 1;
                }
                self.reply_to_client(id, client, Resp::Reply { seq, reply, local })
            }
            SEvent::Redirect {
                client,
                seq,
                leader,
            } => {
                self.record(
                    id,
                    Kind::Redirect {
                        client,
                        seq,
                        leader,
                    },
                );
                self.reply_to_client(id, client, Resp::Redirect { seq, leader })
            }
            SEvent::Executed { slot, cmd, applied } => {
                if !applied.executed {
                    self.stats.coverage.dedup_hits += 1;
                }
                if applied.executed {
                    let r = self
                        .obs
                        .on_executed(self.now, id, cmd.client, cmd.seq, slot);
                    self.check(r);
                }
                if applied.executed && self.obs.service_turn(id, slot) {
                    let r = self.lock_model(id, slot, cmd, applied.reply);
                    self.check(r);
                }
                if let (Op::Acquire { lock }, Reply::Lock(Ok(token)), true) =
                    (cmd.op, applied.reply, applied.executed)
                {
                    let r = self
                        .obs
                        .on_grant(self.now, id, lock, cmd.client, token, slot);
                    self.check(r);
                }
            }
            SEvent::Ticked { slot, now_us } => {
                if self.obs.service_turn(id, slot) {
                    self.obs.on_tick(now_us);
                }
            }
            SEvent::SetTick { delay_us } => {
                let rep = &self.reps[id as usize];
                let (inc, d) = (rep.inc, rep.clock.real(delay_us));
                self.push(self.now + d, Ev::Tick { node: id, inc });
            }
        }
    }

    /// Feeds one executed command, in log order, to the checker's model of
    /// sessions and lock holders.
    fn lock_model(
        &mut self,
        id: NodeId,
        slot: u64,
        cmd: Command,
        reply: Reply,
    ) -> Result<(), Violation> {
        match (cmd.op, reply) {
            (Op::OpenSession { .. } | Op::KeepAlive, Reply::Session(Ok(expiry))) => {
                self.obs.on_session(cmd.client, Some(expiry));
            }
            (Op::CloseSession, Reply::Closed(true)) => self.obs.on_session(cmd.client, None),
            (Op::Release { lock, token }, Reply::Released(true)) => {
                self.obs.on_release(lock, cmd.client, token)
            }
            (Op::Acquire { lock }, Reply::Lock(Ok(token))) => {
                return self
                    .obs
                    .on_exclusive_grant(self.now, id, lock, cmd.client, token, slot);
            }
            _ => {}
        }
        Ok(())
    }

    fn execute_log(&mut self, id: NodeId, o: LogOutput) {
        match o {
            multipaxos::Output::Send { to, msg, after } => {
                let synced = self.reps[id as usize].synced;
                let what = || summarize(&msg);
                let r = checkers::check_disclosure(self.now, id, to, after, synced, what);
                self.check(r);
                match &msg {
                    Msg::Prepare { ballot, .. } | Msg::Accept { ballot, .. } => {
                        let r = self.obs.on_ballot_sent(self.now, id, *ballot);
                        self.check(r);
                    }
                    Msg::Promise { ballot, .. } => {
                        let r = self.obs.on_promise(self.now, id, *ballot);
                        self.check(r);
                    }
                    Msg::Accepted { ballot, slot } => {
                        let r = self.obs.on_accepted(self.now, id, *ballot, *slot);
                        self.check(r);
                    }
                    _ => {}
                }
                self.record(
                    id,
                    Kind::LSend {
                        to,
                        msg: summarize(&msg),
                    },
                );
                self.send(id, to, msg);
            }
            multipaxos::Output::Persist { seq, write } => {
                self.record(
                    id,
                    Kind::LPersist {
                        seq,
                        write: summarize_write(&write),
                    },
                );
                if let Write::Accept {
                    slot,
                    ballot,
                    entry,
                } = &write
                {
                    self.obs.on_accept_write(id, *ballot, *slot, digest(entry));
                }
                let snapshot = matches!(write, Write::Snapshot(_));
                let rep = &mut self.reps[id as usize];
                assert!(rep.unsynced.last().is_none_or(|(s, _)| *s < seq));
                rep.unsynced.push((seq, Sealed::seal(write)));
                let f = self.active_faults();
                if snapshot && self.permille(f.snapshot_crash_permille) {
                    // Power fails while the snapshot is being written.
                    let inc = self.reps[id as usize].inc;
                    let at = self.now + self.rng.gen_range(0..=self.cfg.disk_us);
                    self.push(at, Ev::PowerLoss { node: id, inc });
                }
            }
            multipaxos::Output::Sync { upto } => {
                let rep = &self.reps[id as usize];
                let slow = if rep.slow { self.cfg.slow_factor } else { 1 };
                let inc = rep.inc;
                let f = self.active_faults();
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
            multipaxos::Output::SetTimer {
                timer,
                delay_us,
                jitter_us,
            } => {
                let jitter = if jitter_us > 0 {
                    self.rng.gen_range(0..=jitter_us)
                } else {
                    0
                };
                let rep = &self.reps[id as usize];
                let (inc, d) = (rep.inc, rep.clock.real(delay_us + jitter));
                self.push(
                    self.now + d,
                    Ev::Timer {
                        node: id,
                        inc,
                        timer,
                    },
                );
            }
            multipaxos::Output::Apply { slot, entry } => {
                let d = digest(&entry);
                let submitted = match &entry {
                    Entry::Noop => true,
                    Entry::Cmds(cmds) => cmds.iter().all(|c| match c {
                        Cmd::Client(c) => self.submitted.get(&(c.client, c.seq)) == Some(&c.op),
                        Cmd::Tick { .. } => true,
                    }),
                };
                self.record(
                    id,
                    Kind::Apply {
                        slot,
                        cmds: entry_len(&entry),
                        digest: d,
                    },
                );
                let r = self.obs.on_apply(self.now, id, slot, d, submitted);
                self.check(r);
            }
            multipaxos::Output::Install { snap } => {
                self.stats.coverage.snapshot_installs += 1;
                self.record(id, Kind::Install { upto: snap.upto });
                self.obs.on_install(id, snap.upto);
            }
            multipaxos::Output::Elected { ballot } => {
                self.record(id, Kind::Elected { ballot });
                if self.obs.elections > 0 {
                    self.stats.coverage.leader_changes += 1;
                }
                let r = self.obs.on_elected(self.now, id, ballot);
                self.check(r);
            }
            multipaxos::Output::Rebuilt => {
                self.stats.coverage.rebuilds += 1;
                self.record(id, Kind::Rebuilt)
            }
            multipaxos::Output::NotLeader { .. } => {}
        }
    }

    fn drop_msg(&mut self, from: NodeId, to: NodeId, msg: LMsg, reason: DropReason) {
        self.stats.drops += 1;
        self.record(from, Kind::LDrop { to, msg, reason });
    }

    fn latency(&mut self, a: NodeId, b: Option<NodeId>, f: &Faults) -> u64 {
        let mut d = self.cfg.latency_us;
        if f.jitter_us > 0 {
            d += self.rng.gen_range(0..=f.jitter_us);
        }
        if self.permille(f.long_delay_permille) {
            d += self.rng.gen_range(0..=self.cfg.long_delay_us_max);
        }
        if self.reps[a as usize].slow || b.is_some_and(|b| self.reps[b as usize].slow) {
            d *= self.cfg.slow_factor;
        }
        d
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: LMsgFull) {
        if from == to {
            self.push(self.now + 1, Ev::Deliver { from, to, msg });
            return;
        }
        if self.blocked[from as usize] & (1 << to) != 0 {
            self.drop_msg(from, to, summarize(&msg), DropReason::Partition);
            return;
        }
        let f = self.active_faults();
        if self.permille(f.loss_permille) {
            self.drop_msg(from, to, summarize(&msg), DropReason::Loss);
            return;
        }
        if self.permille(f.dup_permille) {
            self.stats.duplicates += 1;
            self.record(
                from,
                Kind::LDuplicate {
                    to,
                    msg: summarize(&msg),
                },
            );
            let at = self.now + self.latency(from, Some(to), &f);
            self.push(
                at,
                Ev::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
        let at = self.now + self.latency(from, Some(to), &f);
        self.push(at, Ev::Deliver { from, to, msg });
    }

    // --------------------------------------------------------------- clients

    fn reply_to_client(&mut self, from: NodeId, client: u32, resp: Resp) {
        let f = self.active_faults();
        if self.permille(f.loss_permille) {
            self.stats.drops += 1;
            return;
        }
        let at = self.now + self.latency(from, None, &f);
        self.push(at, Ev::ToClient { client, from, resp });
    }

    fn client_out(&mut self, client: u32, out: Vec<ClientOut>) {
        for o in out {
            match o {
                ClientOut::Send { to, cmd } => {
                    let f = self.active_faults();
                    if self.permille(f.loss_permille) {
                        self.stats.drops += 1;
                        continue;
                    }
                    if self.permille(f.dup_permille) {
                        self.stats.duplicates += 1;
                        let at = self.now + self.latency(to, None, &f);
                        self.push(at, Ev::ToServer { to, cmd });
                    }
                    let at = self.now + self.latency(to, None, &f);
                    self.push(at, Ev::ToServer { to, cmd });
                }
                ClientOut::SetTimer { delay_us, epoch } => {
                    self.push(self.now + delay_us, Ev::ClientTimer { client, epoch });
                }
            }
        }
    }

    /// The workload: the next operation of `client`.
    fn next_op(&mut self, client: u32) -> Op {
        let key = self.rng.gen_range(0..KEYS);
        let value = self.rng.gen_range(1..1_000_000);
        if self.cfg.scenario == Scenario::Multi {
            return Op::Put { key, value };
        }
        // Client 0 only reads, and sticks to the replica that answered it:
        // a monitoring client, the one that would see a stale lease read.
        if client == 0 && self.cfg.clients > 1 {
            return Op::Get { key };
        }
        let cl = &self.clients[client as usize];
        if !cl.has_session {
            return Op::OpenSession {
                ttl_us: self.cfg.log.session_ttl_us,
            };
        }
        let held: Vec<(u64, u64)> = cl.token.iter().map(|(l, t)| (*l, *t)).collect();
        match self.rng.gen_range(0..100) {
            0..=34 => Op::Get { key },
            35..=54 => Op::Put { key, value },
            55..=66 => {
                let expected = self.rng.gen_range(0..4);
                Op::Cas {
                    key,
                    expected,
                    value,
                }
            }
            67..=71 => Op::Delete { key },
            72..=79 => Op::KeepAlive,
            80..=84 => Op::PutEphemeral {
                key: EPHEMERAL_BASE + client as u64,
                value,
            },
            85..=92 => Op::Acquire {
                lock: self.rng.gen_range(0..LOCKS),
            },
            _ => match held.first() {
                Some(&(lock, token)) => Op::Release { lock, token },
                None => Op::Get { key },
            },
        }
    }

    fn client_next(&mut self, client: u32) {
        if self.clients[client as usize].done >= self.cfg.ops {
            return;
        }
        let op = self.next_op(client);
        let cl = &mut self.clients[client as usize];
        let mut out = Vec::new();
        // In `multi`, every operation goes to a random replica: concurrent
        // proposals arrive everywhere, and most must be redirected.
        let cmd = cl.client.invoke(op, &mut out);
        self.submitted.insert((client, cmd.seq), op);
        let kop = match op {
            Op::Get { key } => Some((key, KvOp::Get)),
            Op::Put { key, value } => Some((key, KvOp::Put(value))),
            Op::Delete { key } => Some((key, KvOp::Delete)),
            Op::Cas {
                key,
                expected,
                value,
            } => Some((key, KvOp::Cas { expected, value })),
            _ => None,
        };
        let id = kop.map(|(key, op)| self.history.invoke(client, key, op, self.now));
        let cl = &mut self.clients[client as usize];
        cl.op = Some((id, cmd.seq));
        cl.invoked_at = self.now;
        let to = match out.first() {
            Some(ClientOut::Send { to, .. }) => *to,
            _ => 0,
        };
        self.record(
            to,
            Kind::Invoke {
                client,
                seq: cmd.seq,
                op,
            },
        );
        self.client_out(client, out);
    }

    fn client_receive(&mut self, client: u32, from: NodeId, resp: Resp) {
        match resp {
            Resp::Redirect { seq, leader } => {
                let mut out = Vec::new();
                self.clients[client as usize]
                    .client
                    .on_redirect(seq, leader, &mut out);
                self.client_out(client, out);
            }
            Resp::Reply { seq, reply, local } => {
                let cl = &mut self.clients[client as usize];
                let Some((cmd, reply)) = cl.client.on_reply(from, seq, reply) else {
                    return;
                };
                let (id, s) = cl.op.take().expect("an operation in flight");
                assert_eq!(s, cmd.seq);
                cl.done += 1;
                self.last_done = self.now;
                let cl = &mut self.clients[client as usize];
                match (cmd.op, reply) {
                    (Op::OpenSession { .. }, Reply::Session(Ok(_))) => cl.has_session = true,
                    (_, Reply::Session(Err(_)))
                    | (_, Reply::Lock(Err(kv::LockError::NoSession))) => {
                        cl.has_session = false;
                        cl.token.clear();
                    }
                    (Op::Acquire { lock }, Reply::Lock(Ok(t))) => {
                        cl.token.insert(lock, t);
                    }
                    (Op::Release { lock, .. }, _) => {
                        cl.token.remove(&lock);
                    }
                    _ => {}
                }
                if let Some(id) = id {
                    let ret = match reply {
                        Reply::Value(v) => Some(KvRet::Value(v)),
                        Reply::Version(v) => Some(KvRet::Version(v)),
                        Reply::Deleted(d) => Some(KvRet::Deleted(d)),
                        Reply::Cas(r) => Some(KvRet::CasResult(r)),
                        _ => None,
                    };
                    match ret {
                        Some(r) => self.history.ok(id, r, self.now),
                        None => {
                            let detail = format!("c{client} #{seq} {:?} got {reply:?}", cmd.op);
                            self.fail(Invariant::K3, Some(from), detail);
                            self.history.info(id);
                        }
                    }
                }
                self.stats.deliveries += 0;
                self.record(
                    from,
                    Kind::Complete {
                        client,
                        seq,
                        reply,
                        local,
                    },
                );
                if self.quiet {
                    let start = self.clients[client as usize].invoked_at.max(self.quiet_at);
                    if self.now - start > self.cfg.log.op_bound_us {
                        let detail = format!(
                            "c{client} #{seq} took {} after the quiet period (bound {})",
                            checkers::fmt_time(self.now - start),
                            checkers::fmt_time(self.cfg.log.op_bound_us)
                        );
                        self.fail(Invariant::L2, None, detail);
                    }
                }
                let think = self.rng.gen_range(0..2_000);
                self.push(self.now + think, Ev::ClientNext { client });
            }
        }
    }
}
