//! Basic (single-decree) Paxos as sans-IO state machines.
//!
//! Paxos chooses one value among those proposed, despite crashes and an
//! asynchronous, lossy network. A *proposer* picks a ballot higher than any it
//! has seen and asks the acceptors to promise to ignore lower ballots (phase 1,
//! Prepare/Promise). Once a majority promised, it must propose the value of the
//! highest-ballot acceptance reported in those promises, or its own value if
//! there is none (phase 2, Accept/Accepted). A value is *chosen* once a
//! majority of acceptors accepted it in the same ballot; *learners* find out by
//! counting Accepted messages from distinct acceptors.
//!
//! Every role here is a pure state machine: an [`Input`] (a message, a timer,
//! a client proposal, a completed disk sync) plus `now` goes in, and
//! [`Output`]s (sends, storage writes, sync requests, timer requests, learn and
//! decide notifications) come out into a caller-owned buffer. Nothing here
//! reads a clock, touches a socket, spawns a thread or draws a random number:
//! timer jitter is requested as a range and drawn by the driver from the run's
//! seed. This lets the same code run under the deterministic simulator and
//! under a real runtime.
//!
//! Durability: a node's promise, acceptance and highest proposer round are one
//! [`Record`]. Any handler that changes it emits [`Output::Persist`] and
//! [`Output::Sync`], and *parks* the messages that depend on it until the
//! driver reports the sync complete ([`Input::Synced`]). A crash loses every
//! write not yet synced, and a restarted node is rebuilt from the last durable
//! record with [`Node::recover`].
//!
//! Known-buggy variants ([`Bugs`]) exist so the harness can prove it catches
//! real mistakes. They are off by default and only a test or an explicit
//! command-line flag switches them on.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A node's index in the cluster, `0..n`.
pub type NodeId = u8;
/// A proposed value. The harness gives each proposer its own distinct value.
pub type Value = u64;

/// The largest cluster the core supports (acceptor sets are `u16` bitmasks).
pub const MAX_NODES: usize = 16;

/// A ballot: totally ordered by `(round, node)`, and unique per proposer
/// because the proposer's id breaks ties (the Chubby `s = m·n + i` scheme in
/// a structured form).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    pub round: u32,
    pub node: NodeId,
}

impl Ballot {
    /// The ballot below every real ballot (round 0 is never used by a proposer).
    pub const ZERO: Ballot = Ballot { round: 0, node: 0 };
}

impl std::fmt::Display for Ballot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.round, self.node)
    }
}

/// Protocol messages. All are `Copy`: moving one costs no allocation.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Msg {
    /// Phase 1a: promise to ignore ballots below `ballot`.
    Prepare { ballot: Ballot },
    /// Phase 1b: the promise, with this acceptor's highest acceptance, if any.
    Promise {
        ballot: Ballot,
        accepted: Option<(Ballot, Value)>,
    },
    /// Phase 2a: accept `value` in `ballot`.
    Accept { ballot: Ballot, value: Value },
    /// Phase 2b: sent to every learner (and so to every proposer).
    Accepted { ballot: Ballot, value: Value },
    /// A rejection of `ballot`, carrying the acceptor's promise so the
    /// proposer can jump past it.
    Nack { ballot: Ballot, promised: Ballot },
    /// A learner that missed messages asks what was accepted / chosen.
    Query,
    /// A node whose learner knows the chosen value tells a querying learner.
    Chosen { value: Value },
}

/// Timers a node may request. The payload lets the node ignore stale timers
/// (there is no cancel: a timer that no longer matters is ignored on arrival).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// Proposer: the attempt numbered `attempt` took too long; start again.
    Retry { attempt: u32 },
    /// Learner: nothing learned yet; ask the acceptors.
    Query,
}

/// The single durable record of a node.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record {
    /// The acceptor's promise: it ignores ballots below this.
    pub promised: Ballot,
    /// The acceptor's highest acceptance.
    pub accepted: Option<(Ballot, Value)>,
    /// The highest round this node's proposer has used; a restarted proposer
    /// starts above it, so it never reuses a ballot with another value.
    pub proposer_round: u32,
}

/// Everything the outside world can tell a node.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    Receive {
        from: NodeId,
        msg: Msg,
    },
    Timer(Timer),
    /// A client asks this node's proposer to get `value` chosen.
    Propose(Value),
    /// Every write up to and including persist number `upto` is durable.
    Synced {
        upto: u64,
    },
}

/// Everything a node asks the outside world to do.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// Put `msg` on the wire to `to`. `after` names the write the message
    /// reveals (its number, 0 for none): the message must not leave before
    /// every write up to `after` is durable. The harness checks that order
    /// for every send (durability before disclosure, invariant D1).
    Send { to: NodeId, msg: Msg, after: u64 },
    /// Write `record` (not yet durable). `seq` numbers the node's writes.
    Persist { seq: u64, record: Record },
    /// Make every write up to `upto` durable, then deliver `Input::Synced`.
    Sync { upto: u64 },
    /// Fire `timer` after a delay drawn uniformly from
    /// `[delay_us, delay_us + jitter_us]` by the driver.
    SetTimer {
        timer: Timer,
        delay_us: u64,
        jitter_us: u64,
    },
    /// This node's learner learned that `value` is chosen.
    Learned { value: Value },
    /// This node's proposer reports its proposal finished: `value` is chosen.
    Decided { value: Value },
    /// A message from `from` was refused: no correct peer sends it (`why`
    /// says what is wrong; see [`Node::check_msg`]). Nothing of it reached
    /// the node. For the driver to count and log.
    Refused { from: NodeId, why: &'static str },
}

/// The highest round a message may name: every round below leaves room for
/// the next (`round + 1`), so none overflows. (The log core, `multipaxos`,
/// uses the same bounds.)
pub const ROUND_MAX: u32 = u32::MAX - 1;
/// How far above every round a node has seen a peer's ballot may jump it:
/// a correct peer is that far ahead only after a million rounds this node
/// missed, and a forged ballot must not use up the rounds that are left.
pub const ROUND_JUMP_MAX: u32 = 1 << 20;

/// Known-buggy variants. Each breaks one thing Paxos relies on; the harness
/// must catch every one. All are off by default.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bugs {
    /// 1. The acceptor replies before its write is synced, so a crash can
    ///    lose a promise or acceptance that others already relied on.
    pub reply_before_sync: bool,
    /// 2. The acceptor accepts a ballot lower than it promised.
    pub accept_below_promise: bool,
    /// 3. The proposer ignores accepted values reported in promises.
    pub ignore_promised_values: bool,
    /// 4. The learner counts duplicate Accepted messages from one acceptor.
    pub count_duplicate_accepted: bool,
    /// 5. Quorums are `n/2` instead of `n/2 + 1`.
    pub minority_quorum: bool,
    /// 6. Proposers leave their id out of the ballot, so two can share one.
    pub shared_ballots: bool,
    /// 7. The proposer's round is volatile: it is never written before the
    ///    Prepares leave, so a restarted proposer can reuse a ballot (with
    ///    another value).
    #[serde(default)]
    pub volatile_round: bool,
}

/// Switches one canary on.
pub type EnableBug = fn(&mut Bugs);

/// The canaries by name, for command lines and test tables.
pub const CANARIES: [(&str, EnableBug); 7] = [
    ("reply-before-sync", |b| b.reply_before_sync = true),
    ("accept-below-promise", |b| b.accept_below_promise = true),
    ("ignore-promised-values", |b| {
        b.ignore_promised_values = true
    }),
    ("count-duplicate-accepted", |b| {
        b.count_duplicate_accepted = true
    }),
    ("minority-quorum", |b| b.minority_quorum = true),
    ("shared-ballots", |b| b.shared_ballots = true),
    ("volatile-round", |b| b.volatile_round = true),
];

impl Bugs {
    /// Switches on the canary called `name`; `Err` lists the known names.
    pub fn enable(&mut self, name: &str) -> Result<(), String> {
        enable_canary(&CANARIES, self, name)
    }

    pub fn any(&self) -> bool {
        *self != Bugs::default()
    }

    /// The names of the canaries switched on.
    pub fn names(&self) -> Vec<&'static str> {
        canary_names(&CANARIES, self)
    }
}

/// One entry of a canary table: a name and the switch that turns it on.
pub type Canary<B> = (&'static str, fn(&mut B));

/// Switches on the canary called `name` from a table of canaries (this
/// crate's, or another protocol's); `Err` lists the known names.
pub fn enable_canary<B>(table: &[Canary<B>], bugs: &mut B, name: &str) -> Result<(), String> {
    match table.iter().find(|(n, _)| *n == name) {
        Some((_, set)) => {
            set(bugs);
            Ok(())
        }
        None => Err(format!(
            "unknown bug '{name}'; known: {}",
            table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The names of the canaries of `table` switched on in `bugs`.
pub fn canary_names<B: Copy + PartialEq>(table: &[Canary<B>], bugs: &B) -> Vec<&'static str> {
    table
        .iter()
        .filter(|(_, set)| {
            // A canary is on when switching it on changes nothing.
            let mut b = *bugs;
            set(&mut b);
            b == *bugs
        })
        .map(|(n, _)| *n)
        .collect()
}

/// Timeouts the protocol asks for. The driver adds seeded jitter.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// How long a proposer waits for a quorum before retrying.
    pub retry_us: u64,
    /// Randomized backoff added to each retry (drawn by the driver), so that
    /// duelling proposers eventually stop pre-empting each other.
    pub retry_jitter_us: u64,
    /// How often a learner that knows nothing asks the acceptors.
    pub query_us: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            retry_us: 20_000,
            retry_jitter_us: 40_000,
            query_us: 50_000,
        }
    }
}

/// Static configuration of one node.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Config {
    /// Cluster size: every node is an acceptor and a learner.
    pub n: u8,
    pub id: NodeId,
    /// Whether this node runs a proposer.
    pub proposer: bool,
    pub timing: Timing,
    pub bugs: Bugs,
}

impl Config {
    /// The size of a quorum. Any two quorums intersect (unless the
    /// `minority_quorum` canary is on).
    pub fn quorum(&self) -> usize {
        let n = self.n as usize;
        if self.bugs.minority_quorum {
            n / 2
        } else {
            n / 2 + 1
        }
    }
}

/// The true majority of `n`, independent of any canary (for checkers).
pub const fn majority(n: usize) -> usize {
    n / 2 + 1
}

const _: () = assert!(2 * majority(3) > 3 && 2 * majority(4) > 4 && 2 * majority(9) > 9);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Phase {
    /// No proposal, or finished, or pre-empted and waiting for the retry timer.
    Idle,
    /// Phase 1: collecting promises.
    Promising {
        from: u16,
        highest: Option<(Ballot, Value)>,
    },
    /// Phase 2: Accepts sent. The proposer decides when this node's learner
    /// learns the chosen value (every node learns from every Accepted, so
    /// counting them again here would be a second, identical quorum count).
    Accepting,
}

/// The proposer role.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Proposer {
    /// The value this proposer's client asked for.
    own: Option<Value>,
    ballot: Ballot,
    /// The highest round seen anywhere (in a Nack or a message).
    seen_round: u32,
    attempt: u32,
    phase: Phase,
    decided: bool,
}

/// The learner role: which acceptors accepted what.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Learner {
    /// For each (ballot, value): a bitmask of acceptors (or a plain count under
    /// the `count_duplicate_accepted` canary).
    votes: BTreeMap<(Ballot, Value), u16>,
    learned: Option<Value>,
}

/// One Paxos node: acceptor, learner and (optionally) proposer, sharing one
/// durable record. `Eq` and `Hash` let a model checker keep visited states.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    cfg: Config,
    /// In-memory state; `durable` lags it until syncs complete.
    record: Record,
    /// Number of the last write issued, and of the last one known durable.
    persist_seq: u64,
    synced_seq: u64,
    /// Messages waiting for the write they depend on to be durable.
    parked: Vec<(u64, NodeId, Msg)>,
    proposer: Proposer,
    learner: Learner,
    /// The latest `now` the driver gave (local microseconds): it never goes
    /// backwards. Basic Paxos needs no clock (its timeouts are requests to
    /// the driver); `now` is an input so every core has one shape.
    now: u64,
}

fn bit(id: NodeId) -> u16 {
    assert!((id as usize) < MAX_NODES);
    1u16 << id
}

impl Node {
    /// A node starting from empty storage.
    pub fn new(cfg: Config) -> Node {
        Node::recover(cfg, Record::default())
    }

    /// A node rebuilt after a crash from its last durable record.
    pub fn recover(cfg: Config, durable: Record) -> Node {
        assert!(
            cfg.n >= 1 && cfg.n as usize <= MAX_NODES,
            "bad cluster size"
        );
        assert!(cfg.id < cfg.n, "node id out of range");
        if let Some((b, _)) = durable.accepted {
            assert!(b <= durable.promised, "durable acceptance above promise");
        }
        Node {
            cfg,
            record: durable,
            persist_seq: 0,
            synced_seq: 0,
            parked: Vec::new(),
            proposer: Proposer {
                own: None,
                ballot: Ballot::ZERO,
                seen_round: durable.proposer_round.max(durable.promised.round),
                attempt: 0,
                phase: Phase::Idle,
                decided: false,
            },
            learner: Learner::default(),
            now: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// The in-memory record (what the node believes, durable or not).
    pub fn record(&self) -> Record {
        self.record
    }
    /// What this node's learner learned, if anything.
    pub fn learned(&self) -> Option<Value> {
        self.learner.learned
    }
    /// Whether this node's proposer finished.
    pub fn decided(&self) -> bool {
        self.proposer.decided
    }

    /// Timers a freshly started or restarted node needs, at local time `now`.
    pub fn start(&mut self, now: u64, out: &mut Vec<Output>) {
        self.now = now;
        self.arm_query(out);
    }

    /// Handles one input at local time `now`, appending effects to `out`.
    pub fn handle(&mut self, now: u64, input: Input, out: &mut Vec<Output>) {
        assert!(now >= self.now, "a node's clock went backwards");
        self.now = now;
        match input {
            Input::Receive { from, msg } => {
                assert!(from < self.cfg.n, "message from unknown node {from}");
                self.receive(from, msg, out)
            }
            Input::Timer(t) => self.timer(t, out),
            Input::Propose(v) => self.propose(v, out),
            Input::Synced { upto } => self.synced(upto, out),
        }
    }

    /// `Ok` if `msg` is one a correct peer could send this node
    /// now; `Err` says what is wrong with it. Network contents are input,
    /// not invariants: this one gate refuses what a handler's assertions
    /// would otherwise trip on (rounds out of range, ballots of nodes
    /// outside the cluster, a Nack with no higher promise, a promise that
    /// reports an acceptance above its ballot, a chosen value that
    /// contradicts the one learned), so the assertions guard only what the
    /// node itself guarantees. (Ballot ownership is left to the checkers:
    /// the `shared-ballots` canary sends ballots its proposers do not own.)
    pub fn check_msg(&self, msg: &Msg) -> Result<(), &'static str> {
        let ballot_ok = |b: Ballot| {
            if b.node >= self.cfg.n {
                return Err("a ballot of a node outside the cluster");
            }
            if b.round > ROUND_MAX {
                return Err("a ballot round above the maximum");
            }
            Ok(())
        };
        let proposal = |b: Ballot| {
            ballot_ok(b)?;
            if b.round == 0 {
                return Err("a proposal in round zero");
            }
            Ok(())
        };
        match *msg {
            Msg::Prepare { ballot } | Msg::Accept { ballot, .. } => proposal(ballot),
            Msg::Accepted { ballot, .. } => ballot_ok(ballot),
            Msg::Promise { ballot, accepted } => {
                ballot_ok(ballot)?;
                match accepted {
                    Some((b, _)) if b > ballot => {
                        Err("a promise reporting an acceptance above its ballot")
                    }
                    Some((b, _)) => ballot_ok(b),
                    None => Ok(()),
                }
            }
            Msg::Nack { ballot, promised } => {
                ballot_ok(ballot)?;
                ballot_ok(promised)?;
                if promised <= ballot {
                    return Err("a Nack that carries no higher promise");
                }
                let seen = self.proposer.seen_round.max(self.proposer.ballot.round);
                if promised.round > seen.saturating_add(ROUND_JUMP_MAX) {
                    return Err("a ballot round far above any seen");
                }
                Ok(())
            }
            Msg::Query => Ok(()),
            Msg::Chosen { value } => match self.learner.learned {
                Some(v) if v != value => Err("a chosen value that contradicts the one learned"),
                _ => Ok(()),
            },
        }
    }

    fn receive(&mut self, from: NodeId, msg: Msg, out: &mut Vec<Output>) {
        if let Err(why) = self.check_msg(&msg) {
            out.push(Output::Refused { from, why });
            return;
        }
        match msg {
            Msg::Prepare { ballot } => self.on_prepare(from, ballot, out),
            Msg::Accept { ballot, value } => self.on_accept(from, ballot, value, out),
            Msg::Promise { ballot, accepted } => self.on_promise(from, ballot, accepted, out),
            Msg::Accepted { ballot, value } => self.learn_vote(from, ballot, value, out),
            Msg::Nack { ballot, promised } => self.on_nack(ballot, promised),
            Msg::Query => self.on_query(from, out),
            Msg::Chosen { value } => self.learn(value, out),
        }
    }

    // ---------------------------------------------------------------- storage

    /// Issues a write of the current record and a sync covering it; returns
    /// the write's number, which replies that depend on it wait for.
    fn persist(&mut self, out: &mut Vec<Output>) -> u64 {
        self.persist_seq += 1;
        out.push(Output::Persist {
            seq: self.persist_seq,
            record: self.record,
        });
        out.push(Output::Sync {
            upto: self.persist_seq,
        });
        self.persist_seq
    }

    /// Sends `msg` once write `seq` is durable (at once if it already is).
    fn send_after(&mut self, seq: u64, to: NodeId, msg: Msg, out: &mut Vec<Output>) {
        if seq <= self.synced_seq {
            out.push(Output::Send {
                to,
                msg,
                after: seq,
            });
        } else {
            self.parked.push((seq, to, msg));
        }
    }

    /// An acceptor's reply to a request that changed its record: durable
    /// first, unless the `reply_before_sync` canary is on.
    fn reply_after(&mut self, seq: u64, to: NodeId, msg: Msg, out: &mut Vec<Output>) {
        if self.cfg.bugs.reply_before_sync {
            // BUG (canary 1): the reply leaves before its write is durable.
            out.push(Output::Send {
                to,
                msg,
                after: seq,
            });
        } else {
            self.send_after(seq, to, msg, out);
        }
    }

    fn synced(&mut self, upto: u64, out: &mut Vec<Output>) {
        assert!(upto <= self.persist_seq, "sync of a write never issued");
        if upto <= self.synced_seq {
            return; // A sync overtaken by a later one.
        }
        self.synced_seq = upto;
        // Release, in order, every parked message whose write is durable.
        let mut i = 0;
        while i < self.parked.len() {
            if self.parked[i].0 <= upto {
                let (after, to, msg) = self.parked.remove(i);
                out.push(Output::Send { to, msg, after });
            } else {
                i += 1;
            }
        }
    }

    fn broadcast_after(&mut self, seq: u64, msg: Msg, out: &mut Vec<Output>) {
        for to in 0..self.cfg.n {
            self.send_after(seq, to, msg, out);
        }
    }

    // --------------------------------------------------------------- acceptor

    fn on_prepare(&mut self, from: NodeId, ballot: Ballot, out: &mut Vec<Output>) {
        assert!(ballot.round > 0, "round 0 is never proposed");
        if ballot < self.record.promised {
            let promised = self.record.promised;
            out.push(Output::Send {
                to: from,
                msg: Msg::Nack { ballot, promised },
                after: 0,
            });
            return;
        }
        let accepted = self.record.accepted;
        let msg = Msg::Promise { ballot, accepted };
        if ballot == self.record.promised {
            // A duplicate or retransmitted Prepare: the promise already stands
            // (or is being written); answer once it is durable.
            let seq = self.persist_seq;
            self.reply_after(seq, from, msg, out);
            return;
        }
        self.record.promised = ballot;
        let seq = self.persist(out);
        self.reply_after(seq, from, msg, out);
        assert!(self
            .record
            .accepted
            .is_none_or(|(b, _)| b <= self.record.promised));
    }

    fn on_accept(&mut self, from: NodeId, ballot: Ballot, value: Value, out: &mut Vec<Output>) {
        assert!(ballot.round > 0, "round 0 is never proposed");
        if ballot < self.record.promised && !self.cfg.bugs.accept_below_promise {
            let promised = self.record.promised;
            out.push(Output::Send {
                to: from,
                msg: Msg::Nack { ballot, promised },
                after: 0,
            });
            return;
        }
        let msg = Msg::Accepted { ballot, value };
        if self.record.accepted == Some((ballot, value)) {
            // Duplicate Accept: already accepted; re-announce once durable.
            let seq = self.persist_seq;
            for to in 0..self.cfg.n {
                self.reply_after(seq, to, msg, out);
            }
            return;
        }
        if ballot > self.record.promised {
            self.record.promised = ballot;
        }
        self.record.accepted = Some((ballot, value));
        let seq = self.persist(out);
        for to in 0..self.cfg.n {
            self.reply_after(seq, to, msg, out);
        }
        if !self.cfg.bugs.accept_below_promise {
            assert!(ballot == self.record.promised, "accepted below promise");
        }
    }

    fn on_query(&mut self, from: NodeId, out: &mut Vec<Output>) {
        if let Some(value) = self.learner.learned {
            out.push(Output::Send {
                to: from,
                msg: Msg::Chosen { value },
                after: 0,
            });
        } else if let Some((ballot, value)) = self.record.accepted {
            // Re-announce our acceptance, but only what is durable: a learner
            // may count it toward a quorum.
            let seq = self.persist_seq;
            self.reply_after(seq, from, Msg::Accepted { ballot, value }, out);
        }
    }

    // ---------------------------------------------------------------- learner

    fn learn_vote(&mut self, from: NodeId, ballot: Ballot, value: Value, out: &mut Vec<Output>) {
        if self.learner.learned.is_some() {
            return;
        }
        let votes = self.learner.votes.entry((ballot, value)).or_insert(0);
        let count = if self.cfg.bugs.count_duplicate_accepted {
            *votes = votes.saturating_add(1);
            *votes as usize
        } else {
            *votes |= bit(from);
            votes.count_ones() as usize
        };
        if count >= self.cfg.quorum() {
            self.learn(value, out);
        }
    }

    fn learn(&mut self, value: Value, out: &mut Vec<Output>) {
        match self.learner.learned {
            Some(v) => assert_eq!(v, value, "learner told of two chosen values"),
            None => {
                self.learner.learned = Some(value);
                self.learner.votes = BTreeMap::new();
                out.push(Output::Learned { value });
                self.finish_proposal(value, out);
            }
        }
    }

    fn arm_query(&mut self, out: &mut Vec<Output>) {
        if self.learner.learned.is_none() {
            out.push(Output::SetTimer {
                timer: Timer::Query,
                delay_us: self.cfg.timing.query_us,
                jitter_us: self.cfg.timing.query_us / 2,
            });
        }
    }

    // --------------------------------------------------------------- proposer

    fn propose(&mut self, value: Value, out: &mut Vec<Output>) {
        assert!(
            self.cfg.proposer,
            "Propose sent to a node without a proposer"
        );
        self.proposer.own = Some(value);
        self.proposer.decided = false;
        if let Some(v) = self.learner.learned {
            self.finish_proposal(v, out);
            return;
        }
        self.start_round(out);
    }

    fn start_round(&mut self, out: &mut Vec<Output>) {
        let p = &mut self.proposer;
        assert!(!p.decided);
        let Some(round) = p.seen_round.max(p.ballot.round).checked_add(1) else {
            // Every round is used up: refuse to propose rather than overflow.
            out.push(Output::Refused {
                from: self.cfg.id,
                why: "ballot rounds exhausted: not proposing",
            });
            return;
        };
        p.seen_round = round;
        let node = if self.cfg.bugs.shared_ballots {
            0
        } else {
            self.cfg.id
        };
        p.ballot = Ballot { round, node };
        p.attempt += 1;
        // The round must be durable before any Prepare leaves, or a restart
        // could reuse this ballot with another value.
        let seq = if self.cfg.bugs.volatile_round {
            // BUG (canary 7): the round lives only in memory.
            self.synced_seq
        } else {
            self.record.proposer_round = round;
            self.persist(out)
        };
        let ballot = self.proposer.ballot;
        self.broadcast_after(seq, Msg::Prepare { ballot }, out);
        self.proposer.phase = Phase::Promising {
            from: 0,
            highest: None,
        };
        out.push(Output::SetTimer {
            timer: Timer::Retry {
                attempt: self.proposer.attempt,
            },
            delay_us: self.cfg.timing.retry_us,
            jitter_us: self.cfg.timing.retry_jitter_us,
        });
    }

    fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        accepted: Option<(Ballot, Value)>,
        out: &mut Vec<Output>,
    ) {
        if ballot != self.proposer.ballot {
            return; // A promise for an older attempt.
        }
        let quorum = self.cfg.quorum();
        let ignore = self.cfg.bugs.ignore_promised_values;
        let Phase::Promising { from: set, highest } = &mut self.proposer.phase else {
            return; // Already in phase 2 (or finished).
        };
        if let Some((b, _)) = accepted {
            assert!(
                b <= ballot,
                "promise reports an acceptance above its ballot"
            );
            if highest.is_none_or(|(hb, _)| b > hb) {
                *highest = accepted;
            }
        }
        *set |= bit(from);
        if (set.count_ones() as usize) < quorum {
            return;
        }
        let own = self
            .proposer
            .own
            .expect("a proposer in phase 1 has a value");
        let value = match highest {
            Some((_, v)) if !ignore => *v,
            _ => own,
        };
        self.proposer.phase = Phase::Accepting;
        let seq = self.synced_seq;
        self.broadcast_after(seq, Msg::Accept { ballot, value }, out);
    }

    fn on_nack(&mut self, ballot: Ballot, promised: Ballot) {
        assert!(promised > ballot, "a Nack must carry a higher promise");
        self.proposer.seen_round = self.proposer.seen_round.max(promised.round);
        // The retry timer, with its seeded backoff, restarts the proposal;
        // restarting at once would make duelling proposers livelock.
        if ballot == self.proposer.ballot && !self.proposer.decided {
            self.proposer.phase = Phase::Idle;
        }
    }

    fn finish_proposal(&mut self, value: Value, out: &mut Vec<Output>) {
        if !self.cfg.proposer || self.proposer.decided || self.proposer.own.is_none() {
            return;
        }
        self.proposer.decided = true;
        self.proposer.phase = Phase::Idle;
        out.push(Output::Decided { value });
    }

    fn timer(&mut self, t: Timer, out: &mut Vec<Output>) {
        match t {
            Timer::Retry { attempt } => {
                if attempt == self.proposer.attempt
                    && !self.proposer.decided
                    && self.proposer.own.is_some()
                {
                    self.start_round(out);
                }
            }
            Timer::Query => {
                if self.learner.learned.is_none() {
                    for to in 0..self.cfg.n {
                        out.push(Output::Send {
                            to,
                            msg: Msg::Query,
                            after: 0,
                        });
                    }
                    self.arm_query(out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
