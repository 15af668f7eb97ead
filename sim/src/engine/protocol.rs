//! The seam: what a protocol, its checker and its workload give the
//! simulator. Everything here is public API; `examples/caspaxos` uses
//! nothing else.

use crate::config::RunConfig;
pub use crate::nemesis::Caps;
use checkers::{Invariant, Violation};
use paxos::NodeId;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use super::member::MemberChange;
use std::fmt::{Debug, Display};
use std::hash::Hash;

/// What a checker callback returns: `Err` is the first broken invariant.
pub type Check = Result<(), Violation>;

/// A sans-IO protocol node. The simulator owns its disk, its clock, its
/// network and its timers; the node only maps `(now, input)` to effects.
///
/// `now` is the node's local clock (skewed and drifting under clock faults),
/// never decreasing across calls to one incarnation. A node must not read a
/// clock, draw random numbers, do IO or spawn threads: everything
/// nondeterministic comes in as an input, so one seed fixes the run.
pub trait Protocol: Sized + 'static {
    /// Everything a node needs to boot (its id, the cluster size, timing,
    /// the known-buggy variants switched on). Built by the [`Scenario`].
    type Config: Clone;
    /// A message between nodes.
    type Msg: Clone;
    /// One durable record, as the node hands it to its disk.
    type Write: DiskRecord;
    /// A timer's name; the node gets it back when the timer fires.
    type Timer: Copy + Debug + Hash + Serialize;
    /// A client's request to a node (traced in full: keep it small, and
    /// cheap to clone: the trace keeps a copy of each, and a value of bytes
    /// is best shared, e.g. behind an `Arc`).
    type Request: Clone + Display + Hash + Serialize;
    /// A node's answer to a client (traced in full, like a request).
    type Reply: Clone + Display + Hash + Serialize;
    /// A fact for the checkers (chose, learned, applied, elected ...).
    type Note;
    /// What the trace keeps of a message, a write and a note: small and
    /// `Copy`, but hashing all of the content that matters, because the
    /// trace hash is what the determinism check compares.
    type MsgSummary: Copy + Display + Hash + Serialize;
    type WriteSummary: Copy + Display + Hash + Serialize;
    type NoteSummary: Copy + Display + Hash + Serialize;
    /// What `start` and `handle` emit: [`Effect<Self>`] itself (with
    /// `effect` returning `Some(o)`), or an existing core's own output type
    /// that `effect` maps, so an adapter needs no second buffer.
    type Output;

    /// Boots a node from its disk: `incarnation` 0 is the first boot (the
    /// disk is empty), later ones follow a crash. The node may repair its
    /// disk (drop a torn tail). It returns how it came up.
    fn boot(
        cfg: &Self::Config,
        incarnation: u32,
        disk: &mut Vec<Self::Write>,
        now: u64,
    ) -> (Self, Boot);
    /// Called once right after `boot` (arm timers, start an election ...).
    fn start(&mut self, now: u64, out: &mut Vec<Self::Output>);
    fn handle(&mut self, now: u64, input: Input<Self>, out: &mut Vec<Self::Output>);
    /// The effect an output asks for (`None`: nothing for the simulator).
    fn effect(o: Self::Output) -> Option<Effect<Self>>;

    fn summarize_msg(msg: &Self::Msg) -> Self::MsgSummary;
    fn summarize_write(write: &Self::Write) -> Self::WriteSummary;
    /// `None`: the note is for checkers only and stays out of the trace.
    fn summarize_note(note: &Self::Note) -> Option<Self::NoteSummary>;

    /// For leader-aimed faults: `Some(rank)` if this node leads now (the
    /// highest rank among live leaders is "the" leader). Protocols without
    /// leaders keep the default, and leader-aimed faults do nothing to them.
    fn leader_rank(&self) -> Option<u64> {
        None
    }
    /// Whether this node lost its durable state and has not rebuilt it.
    fn disk_lost(&self) -> bool {
        false
    }
    /// Whether a crashed node's disk would boot with its state intact (not
    /// wiped, not corrupt). Disk faults keep lost disks to a minority.
    fn disk_intact(disk: &[Self::Write]) -> bool {
        let _ = disk;
        true
    }

    // ---- hostile input and resources: declared by the protocol, judged by
    // ---- the engine (H1, R1; R2 is `DiskRecord::fact`). Defaults: none.

    /// Hostile input (the nemesis' `hostile_permille`, offered when
    /// [`Caps::hostile`] is set): a message that peer `from` could put on
    /// the wire to this node but that no correct peer sends: a field out of
    /// range, a ballot its sender does not own, a commit index beyond any
    /// slot, a round at its maximum. `self` is the receiver as it is now
    /// (the nemesis is omniscient, so it can aim just past what the node
    /// knows); draw from `rng` only. The engine delivers the result as if
    /// from `from`, and judges **H1**: the node must refuse it (and say so
    /// with [`Effect::Refused`]) or handle it, never panic, hang or spin.
    ///
    /// Forge only what a validating node can tell from a correct peer's
    /// message, or what is legal but extreme: a crash-tolerant protocol
    /// cannot survive a peer that lies plausibly (claims a value chosen
    /// that was not), and the checkers, which judge what nodes sent, would
    /// rightly blame the node that believed it. `None`: nothing this time.
    fn forge(&self, from: NodeId, rng: &mut ChaCha8Rng) -> Option<Self::Msg> {
        let _ = (from, rng);
        None
    }

    /// The bytes `msg` takes on the wire as the protocol encodes it.
    /// Consulted only if [`Protocol::wire_limit`] declares a limit.
    fn wire_size(msg: &Self::Msg) -> usize {
        let _ = msg;
        0
    }

    /// The largest message, in encoded bytes, the protocol may send under
    /// `cfg` (a transport's frame limit). The engine checks every send
    /// against it (**R1**). `None`: not declared, not checked.
    fn wire_limit(cfg: &Self::Config) -> Option<usize> {
        let _ = cfg;
        None
    }

    // ---- membership changes ([`Caps::membership`]). Default: none.

    /// An operator asks this node, the leader of the moment, for a
    /// membership change (the nemesis' membership episodes; `situation`
    /// says what else is going on, for coverage). The node may take it or
    /// refuse it (a change under way, a cluster-size limit), as a real one
    /// would answer its operator. Called only if the scenario's
    /// [`Caps::membership`] is set.
    fn reconfigure(
        &mut self,
        now: u64,
        change: MemberChange,
        situation: Situation,
        out: &mut Vec<Self::Output>,
    ) {
        let _ = (now, change, situation, out);
    }
}

/// `paxsim check`'s defaults for a scenario ([`Scenario::check_defaults`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CheckDefaults {
    pub nodes: u8,
    pub clients: u8,
    pub bounds: crate::nemesis::Bounds,
}

impl Default for CheckDefaults {
    /// Three nodes, one client, one timer firing, no faults.
    fn default() -> Self {
        CheckDefaults {
            nodes: 3,
            clients: 1,
            bounds: crate::nemesis::Bounds::default(),
        }
    }
}

/// What the world looks like when an operator asks for a change.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Situation {
    /// Some link is cut (a partition, an isolated leader, a one-way cut).
    pub partitioned: bool,
    /// Some node lost its disk and has not rebuilt it.
    pub rebuilding: bool,
}

/// How a node came up.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Boot {
    /// From its durable state.
    Recovered,
    /// Its disk was wiped (`corrupt: false`) or failed its checksums: it
    /// rebuilds from its peers.
    Rebuilding { corrupt: bool },
}

/// A durable record: how disk faults act on it. A protocol whose records
/// carry no checksum keeps the defaults and must not be offered bit flips or
/// torn writes (its [`Caps`] say so).
pub trait DiskRecord: Clone {
    /// A crash cut this write short. The engine draws `cut` from the run's
    /// generator; a record of bytes keeps its first `cut % len` of them.
    fn tear(&mut self, cut: u32) {
        let _ = cut;
    }
    /// Flips one bit of the record as it lies on disk (a record of bytes:
    /// bit `bit % (8 * len)`, anywhere in it).
    fn flip_bit(&mut self, bit: u32) {
        let _ = bit;
    }
    /// This record holds the whole state: once durable, the ones before it
    /// are garbage (the disk keeps only it).
    fn replaces_all(&self) -> bool {
        false
    }
    /// A large record (a snapshot): power may fail while it is written.
    fn is_snapshot(&self) -> bool {
        false
    }
    /// A fingerprint of the fact this record makes durable (a promise of a
    /// ballot, an acceptance of an entry in a slot, a chosen entry, a
    /// snapshot's position), or `None` for a record that states no single
    /// fact (a header, a whole rebuilt state). The engine judges **R2**: a
    /// node's disk holds each fact once, so a node that writes and fsyncs
    /// the same fact again (a resent message answered with a second
    /// record) is caught long before its disk fills. Default: not declared.
    fn fact(&self) -> Option<u64> {
        None
    }
}

/// What the simulator feeds a node.
pub enum Input<P: Protocol> {
    Receive {
        from: NodeId,
        msg: P::Msg,
    },
    Timer(P::Timer),
    /// A client's request, delivered.
    Request {
        client: u32,
        req: P::Request,
    },
    /// Every write numbered `upto` or less is durable.
    Synced {
        upto: u64,
    },
}

/// What a node asks of the simulator.
pub enum Effect<P: Protocol> {
    /// Put `msg` on the wire. `after` names the write the message reveals
    /// (0: none): it must be durable before the message leaves (D1, checked
    /// by the simulator for every protocol).
    Send {
        to: NodeId,
        msg: P::Msg,
        after: u64,
    },
    /// Write `write` as write number `seq` (increasing per incarnation,
    /// below 2^53); durable only after a [`Effect::Sync`] covering it
    /// completes.
    Persist {
        seq: u64,
        write: P::Write,
    },
    Sync {
        upto: u64,
    },
    /// Fire `timer` after `delay_us` of this node's clock plus up to
    /// `jitter_us` drawn by the simulator (together at most
    /// [`TIMER_MAX_US`](crate::engine::TIMER_MAX_US)).
    SetTimer {
        timer: P::Timer,
        delay_us: u64,
        jitter_us: u64,
    },
    Reply {
        client: u32,
        reply: P::Reply,
    },
    Note(P::Note),
    /// The node refused a message from `from` (`why`: a short, fixed
    /// phrase): counted in the run's stats and traced. `from` is the node
    /// itself when it refused to act on its own state (a resource ran out).
    Refused {
        from: NodeId,
        why: &'static str,
    },
}

/// The omniscient observer of one run: it sees what nodes actually sent,
/// received, wrote and reported, and judges the invariants itself. Every
/// callback has a default that checks nothing.
#[allow(unused_variables)]
pub trait Checker<P: Protocol> {
    fn on_send(&mut self, now: u64, from: NodeId, to: NodeId, msg: &P::Msg) -> Check {
        Ok(())
    }
    fn on_receive(&mut self, now: u64, from: NodeId, to: NodeId, msg: &P::Msg) -> Check {
        Ok(())
    }
    /// A write issued (not yet durable).
    fn on_persist(&mut self, now: u64, node: NodeId, seq: u64, write: &P::Write) -> Check {
        Ok(())
    }
    /// Writes that just became durable, in order (after a sync, or the
    /// prefix that reached the platter before a crash).
    fn on_durable(&mut self, now: u64, node: NodeId, writes: &[P::Write]) -> Check {
        Ok(())
    }
    fn on_note(&mut self, now: u64, node: NodeId, note: &P::Note) -> Check {
        Ok(())
    }
    /// A node answered a client (before the network carries it).
    fn on_reply(&mut self, now: u64, node: NodeId, client: u32, reply: &P::Reply) -> Check {
        Ok(())
    }
    /// The workload started a client operation.
    fn on_invoke(&mut self, now: u64, client: u32, req: &P::Request) -> Check {
        Ok(())
    }
    fn on_crash(&mut self, node: NodeId) {}
    fn on_restart(&mut self, node: NodeId) {}
    fn on_disk_lost(&mut self, node: NodeId) {}
    /// `node`'s true clock, told once before anything runs (the simulator
    /// only: the model checker's clocks are unrelated to real time). Nodes
    /// never see it; a checker may, to judge real-time promises (leases).
    fn on_clock(&mut self, node: NodeId, clock: Clock) {}
    /// Whether the cluster has settled (everyone learned, replicas agree):
    /// with the workload done, the run may end early in the quiet period.
    fn settled(&self, nodes: &[Option<P>]) -> bool {
        true
    }
    /// The liveness verdict when the deadline passed with the workload done
    /// but the cluster not settled.
    fn unsettled(&self, now: u64, cfg: &RunConfig, nodes: &[Option<P>]) -> Violation;
    /// Coverage marks: `(name, times reached)`, in a fixed order.
    fn coverage(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// A workload's handle on the world: everything a client may do.
pub trait Cx<P: Protocol> {
    fn now(&self) -> u64;
    fn cfg(&self) -> &RunConfig;
    /// Whether the quiet period has begun, and when.
    fn quiet_at(&self) -> Option<u64>;
    /// The workload's own random stream.
    fn rng(&mut self) -> &mut ChaCha8Rng;
    /// The live nodes (read-only).
    fn nodes(&self) -> &[Option<P>];
    /// Records that `client` starts an operation (`node`: where it goes
    /// first); the checker hears of it.
    fn invoke(&mut self, client: u32, node: NodeId, req: P::Request);
    /// Sends `req` from `client` to `node` over the clients' network: lost,
    /// duplicated and delayed like any message, but outside partitions
    /// (clients reach an isolated node).
    fn send(&mut self, client: u32, node: NodeId, req: P::Request);
    /// Hands `req` to `node` as soon as this callback returns, bypassing
    /// the network (a client on the node's own machine). Dropped if the
    /// node is down.
    fn local(&mut self, client: u32, node: NodeId, req: P::Request);
    /// Calls [`Workload::on_wake`] with `token` after `after_us`.
    fn wake(&mut self, client: u32, after_us: u64, token: u64);
    /// Records that `client` accepted `reply` from `node`.
    fn complete(&mut self, client: u32, node: NodeId, reply: P::Reply);
    /// Records that `client` timed out and resends.
    fn retry(&mut self, client: u32, node: NodeId);
    /// Reports a broken invariant (the first one of a run stands).
    fn fail(&mut self, invariant: Invariant, node: Option<NodeId>, detail: String);
}

/// The clients: what they ask, when, and what they make of the answers.
/// A workload acts only through its [`Cx`].
#[allow(unused_variables)]
pub trait Workload<P: Protocol> {
    /// Called once, before any event: schedule the clients' first moves.
    fn start(&mut self, cx: &mut dyn Cx<P>);
    /// A timer set with [`Cx::wake`] fired.
    fn on_wake(&mut self, cx: &mut dyn Cx<P>, client: u32, token: u64) {}
    /// A reply from `from` reached `client`.
    fn on_reply(&mut self, cx: &mut dyn Cx<P>, client: u32, from: NodeId, reply: P::Reply) {}
    /// Node `node` restarted (after it booted and started).
    fn on_restart(&mut self, cx: &mut dyn Cx<P>, node: NodeId) {}
    /// When the workload's liveness bound runs out (the quiet period has
    /// begun at `quiet_at`); `u64::MAX`: no bound.
    fn deadline(&self, quiet_at: u64, cfg: &RunConfig) -> u64;
    /// Every client operation is complete.
    fn done(&self) -> bool;
    /// The liveness verdict when the deadline passed with the workload not
    /// done; `None` defers to [`Checker::unsettled`].
    fn stalled(
        &self,
        now: u64,
        quiet_at: u64,
        cfg: &RunConfig,
        nodes: &[Option<P>],
    ) -> Option<Violation> {
        None
    }
    /// At the end of a run with no violation: judge what the clients saw as
    /// a whole (linearizability). `Ok(false)`: no verdict (search budget
    /// spent), counted as unproven.
    fn finish(&mut self) -> Result<bool, Violation> {
        Ok(true)
    }
}

/// A client request a model check delivers: `(client, node, request)`.
pub type Asked<P> = (u32, NodeId, <P as Protocol>::Request);

/// A known-buggy variant: name and what it breaks.
pub type Canary = (&'static str, &'static str);

/// A protocol, its checker and workload, registered under a name: what
/// `paxsim --scenario NAME` runs. Implement this for your own protocol and
/// pass it to [`crate::cli::main`].
pub trait Scenario: Sync + 'static {
    type P: Protocol;
    type Checker: Checker<Self::P>;
    type Workload: Workload<Self::P>;

    fn name(&self) -> &'static str;
    /// One line for `paxsim scenarios`.
    fn about(&self) -> &'static str;
    /// The default config (its `scenario` field is filled in).
    fn defaults(&self) -> RunConfig;
    /// The fault kinds this scenario's protocol faces under `cfg`.
    fn caps(&self, cfg: &RunConfig) -> Caps;
    /// Known-buggy variants, enabled by name in [`RunConfig::bugs`].
    fn canaries(&self) -> Vec<Canary> {
        Vec::new()
    }
    /// Scenario-specific checks of a config (cluster size limits, params);
    /// the generic fields are checked already.
    fn validate(&self, cfg: &RunConfig) -> Result<(), String> {
        let _ = cfg;
        Ok(())
    }
    /// The node configs, one per node, for a validated `cfg`.
    fn node_configs(&self, cfg: &RunConfig) -> Vec<<Self::P as Protocol>::Config>;
    fn checker(&self, cfg: &RunConfig) -> Self::Checker;
    /// `rng` is the seed's workload stream (the one `Cx::rng` continues),
    /// for per-seed workload choices.
    fn workload(&self, cfg: &RunConfig, rng: &mut rand_chacha::ChaCha8Rng) -> Self::Workload;
    /// BUGGIFY (after FoundationDB's): draws this seed's rare-path knobs
    /// into `cfg` (its `params`), from the seed's own stream
    /// (`Stream::Buggify`). `plan` calls it, unless `cfg.buggify` is off,
    /// as it draws the swarm's faults, so the resolved config (and a repro
    /// file) holds the knobs; [`node_configs`](Scenario::node_configs)
    /// passes them to the protocol, which only reads them. Knobs must pick
    /// legal behaviour: a correct protocol passes with any of them on.
    /// Default: the scenario has none.
    fn buggify(&self, cfg: &mut RunConfig, rng: &mut rand_chacha::ChaCha8Rng) {
        let _ = (cfg, rng);
    }
    /// The BUGGIFY knobs of a resolved config, for a run's header (`None`:
    /// the scenario has none).
    fn buggify_knobs(&self, cfg: &RunConfig) -> Option<String> {
        let _ = cfg;
        None
    }
    /// The coverage marks a campaign should reach under `cfg` (others may
    /// be reported but are not required).
    fn required_marks(&self, cfg: &RunConfig) -> Vec<&'static str> {
        let _ = cfg;
        Vec::new()
    }
    /// Whether runs end with a whole-history check whose undecided outcome
    /// the campaign should report.
    fn checks_history(&self) -> bool {
        false
    }
    /// The client requests a model check delivers (each at any moment):
    /// `(client, node, request)`.
    fn check_requests(&self, cfg: &RunConfig) -> Vec<Asked<Self::P>> {
        let _ = cfg;
        Vec::new()
    }
    /// The client requests a model check adds each time node `node`
    /// restarts (clients retrying with a restarted node, as the workload's
    /// do): `(client, node, request)`.
    fn check_retries(&self, cfg: &RunConfig, node: NodeId) -> Vec<Asked<Self::P>> {
        let _ = (cfg, node);
        Vec::new()
    }
    /// What `paxsim check` explores unless told otherwise: the smallest
    /// configuration that means something for this protocol (nodes,
    /// clients) and the bounds it needs to get anywhere (a log needs an
    /// election: a timer firing).
    fn check_defaults(&self) -> CheckDefaults {
        CheckDefaults::default()
    }
    /// The operator membership changes a model check may ask for (up to
    /// its `changes` bound, each once, of any live node at any moment).
    fn check_changes(&self, cfg: &RunConfig) -> Vec<MemberChange> {
        let _ = cfg;
        Vec::new()
    }
    /// Explores every interleaving of `cfg` within `bounds` (`paxsim
    /// check`). Scenarios whose protocol is `check::Explorable`
    /// implement it as `paxsim::check::explore(self, cfg, bounds, search)`.
    fn explore(
        &'static self,
        cfg: &RunConfig,
        bounds: crate::nemesis::Bounds,
        search: Search,
    ) -> Result<CheckReport, String> {
        let _ = (cfg, bounds, search);
        Err(format!(
            "scenario {} cannot be model-checked (its states are not hashable)",
            self.name()
        ))
    }
}

/// The reply type of a protocol whose nodes never answer clients directly.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Never {}

impl Display for Never {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

/// How `paxsim check` searches.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Search {
    /// Stop after visiting this many states.
    pub max_states: usize,
    /// Stop after this much wall time (`None`: no limit).
    pub max_time: Option<std::time::Duration>,
    /// Depth-first instead of breadth-first: memory grows with the depth
    /// instead of the frontier, but a violation's history is not the
    /// shortest.
    pub depth_first: bool,
}

impl Search {
    /// Breadth-first, up to `max_states` visited states, no time limit.
    pub fn states(max_states: usize) -> Search {
        Search {
            max_states,
            max_time: None,
            depth_first: false,
        }
    }
}

/// What an exploration found.
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub unique_states: usize,
    pub states: usize,
    pub max_depth: usize,
    pub elapsed: std::time::Duration,
    pub complete: bool,
    /// The first violation, and the shortest history to it: a script the
    /// engine replays (`paxsim replay` of the repro file `paxsim check`
    /// saves).
    pub violation: Option<(Violation, crate::engine::script::Script)>,
}

/// A node's clock: `skew + t * (1 + rate_ppm / 10^6)`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Clock {
    pub skew_us: u64,
    pub rate_ppm: i32,
}

impl Clock {
    pub fn local(&self, t: u64) -> u64 {
        if self.rate_ppm == 0 {
            return self.skew_us + t;
        }
        let drift = (t as i128 * self.rate_ppm as i128) / 1_000_000;
        (self.skew_us as i128 + t as i128 + drift) as u64
    }
    /// Real time for `d` of local time to pass.
    pub fn real(&self, d: u64) -> u64 {
        if self.rate_ppm == 0 {
            return d;
        }
        ((d as u128 * 1_000_000).div_ceil((1_000_000 + self.rate_ppm as i64) as u128)) as u64
    }
}
