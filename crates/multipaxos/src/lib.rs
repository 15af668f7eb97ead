//! Multi-Paxos: a replicated log as a sans-IO state machine.
//!
//! The log is a sequence of Paxos instances (*slots*). Running both phases
//! per slot would cost two round trips per command, so a distinguished
//! *leader* runs Phase 1 once, for every slot from its first unchosen slot
//! on. Acceptors answer with everything they accepted from that slot up (and
//! their snapshot, if they compacted past it). The leader then owns the log
//! under its ballot. It first re-proposes, under its own ballot, each slot a
//! Phase-1 quorum reported as accepted (the highest-ballot value per slot)
//! and fills the gaps below the highest such slot with no-ops. After that it
//! serves new commands with Phase 2 alone, several slots in flight at once
//! (pipelining) and several commands per slot (batching), for as long as its
//! ballot stands. An acceptor that promised a higher ballot rejects its
//! Accepts, so a deposed leader cannot write.
//!
//! Followers watch for the leader's heartbeats and Accepts. A follower that
//! hears nothing for a randomized election timeout (the driver draws the
//! jitter from the run's seed) starts Phase 1 with a higher ballot.
//!
//! The leader learns a slot is chosen from a quorum of Accepted messages and
//! piggybacks its *commit index* (everything below it is chosen) on Accepts
//! and heartbeats. A follower may mark a slot chosen from the commit index
//! only if it holds that slot's entry *accepted in the leader's current
//! ballot*: an entry from an older ballot may differ from what was chosen.
//! For any other slot it asks the leader (`Query`) for the chosen entry.
//!
//! **Snapshots.** The driver hands the node a snapshot of its state machine
//! at a log position ([`Input::Snapshot`]); the node persists it as one
//! record that also drops the log below that position, so a crash leaves
//! either the old log or the snapshot, never a mix. A peer that asks for a
//! compacted slot, or a candidate whose Phase 1 starts below an acceptor's
//! compaction point, receives the snapshot instead.
//!
//! **Durability.** Every promise and acceptance is a [`Write`] followed by a
//! sync, and the replies that depend on it are parked until the driver
//! reports the sync complete. [`storage`] seals each record with a checksum;
//! a replica whose disk is wiped or corrupt starts in *rebuild* mode
//! ([`Node::rebuild`]): it does not vote (no promises, no acceptances, no
//! candidacy) until it has gathered the state of a majority of the *other*
//! replicas — highest promise, highest-ballot acceptance per slot, chosen
//! entries, newest snapshot — and made that durable. Any ballot it promised
//! before losing its disk that won a quorum is then reflected in one of those
//! replicas, and any value chosen with its vote is still accepted at one.
//!
//! **Leases.** With `lease_us > 0` a follower that hears from the leader
//! *grants* it a lease: for `lease_us` of the follower's own clock it refuses
//! to promise any other candidate (and a restarted or rebuilt replica, which
//! forgot whom it granted, refuses everyone for `lease_us`). The leader
//! times its lease from when it *sent* the heartbeat a quorum acknowledged,
//! shortened for the worst clock drift `drift_ppm` between two clocks. So
//! while the leader believes it holds the lease no other node can be
//! elected: a new leader waits out the old lease. The service reads locally
//! only under a valid lease ([`Node::lease_read_ok`]).

pub mod storage;

pub use paxos::{Ballot, NodeId, MAX_NODES};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;

pub type Slot = u64;

/// A log entry: a batch of client commands, or a no-op filling a gap.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Entry<C> {
    Noop,
    Cmds(Vec<C>),
}

/// A state-machine snapshot tied to a log position: the state after applying
/// every slot below `upto`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Snap<S> {
    pub upto: Slot,
    pub state: S,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg<C, S> {
    /// Phase 1 for every slot from `from` on.
    Prepare {
        ballot: Ballot,
        from: Slot,
    },
    /// Everything this acceptor accepted at slots `>= from`, and its snapshot
    /// if it compacted past `from`.
    Promise {
        ballot: Ballot,
        accepted: Vec<(Slot, Ballot, Entry<C>)>,
        snapshot: Option<Snap<S>>,
    },
    /// Phase 2 for one slot, with the leader's commit index.
    Accept {
        ballot: Ballot,
        slot: Slot,
        entry: Entry<C>,
        commit: Slot,
    },
    Accepted {
        ballot: Ballot,
        slot: Slot,
    },
    /// A rejection, carrying the acceptor's promise.
    Nack {
        ballot: Ballot,
        promised: Ballot,
    },
    /// Leader liveness and commit index; `round` numbers it for lease acks.
    Heartbeat {
        ballot: Ballot,
        commit: Slot,
        round: u64,
    },
    HeartbeatAck {
        ballot: Ballot,
        round: u64,
    },
    /// Catch-up: send me the chosen entries from `from` on.
    Query {
        from: Slot,
    },
    /// A chosen entry, in answer to a query.
    Chosen {
        slot: Slot,
        entry: Entry<C>,
    },
    /// The sender compacted past what the receiver asked for.
    Snapshot {
        snap: Snap<S>,
    },
    /// A replica rebuilding a lost disk asks for a peer's whole state.
    RebuildQuery,
    RebuildState {
        state: Box<Durable<C, S>>,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Timer {
    /// Follower: no word from a leader; stand for election (`epoch` guards staleness).
    Election { epoch: u64 },
    /// Leader: time to send heartbeats.
    Heartbeat,
}

/// One durable change. Each is one record on disk, written atomically
/// (checksummed by [`storage`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Write<C, S> {
    /// The first record of every disk: this replica was initialized. A disk
    /// without it was wiped.
    Init,
    Promise(Ballot),
    Accept {
        slot: Slot,
        ballot: Ballot,
        entry: Entry<C>,
    },
    /// A chosen slot, with its entry (one record: crash-atomic).
    Chosen {
        slot: Slot,
        entry: Entry<C>,
    },
    /// Canary `non-atomic-chosen` only: "the slot is chosen" without the
    /// entry; recovery takes whatever entry the slot holds as accepted.
    ChosenMark {
        slot: Slot,
    },
    /// A snapshot; the log below it is dropped in the same record.
    Snapshot(Snap<S>),
    /// A rebuilt replica's whole state, in one record.
    Rebuilt(Box<Durable<C, S>>),
}

/// The durable state a node is rebuilt from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Durable<C, S> {
    pub initialized: bool,
    pub promised: Ballot,
    pub accepted: BTreeMap<Slot, (Ballot, Entry<C>)>,
    pub chosen: BTreeMap<Slot, Entry<C>>,
    pub snapshot: Option<Snap<S>>,
}

impl<C, S> Default for Durable<C, S> {
    fn default() -> Self {
        Durable {
            initialized: false,
            promised: Ballot::ZERO,
            accepted: BTreeMap::new(),
            chosen: BTreeMap::new(),
            snapshot: None,
        }
    }
}

impl<C: Clone, S: Clone> Durable<C, S> {
    /// The first slot the log still holds (below it: the snapshot).
    pub fn base(&self) -> Slot {
        self.snapshot.as_ref().map_or(0, |s| s.upto)
    }

    /// Applies one write (what the disk holds once it is durable).
    pub fn apply(&mut self, w: &Write<C, S>) {
        match w {
            Write::Init => self.initialized = true,
            Write::Promise(b) => self.promised = self.promised.max(*b),
            Write::Accept {
                slot,
                ballot,
                entry,
            } => {
                if *slot >= self.base() {
                    self.accepted.insert(*slot, (*ballot, entry.clone()));
                }
            }
            Write::Chosen { slot, entry } => {
                if *slot >= self.base() {
                    self.chosen.insert(*slot, entry.clone());
                }
            }
            Write::ChosenMark { slot } => {
                if let Some((_, e)) = self.accepted.get(slot) {
                    self.chosen.insert(*slot, e.clone());
                }
            }
            Write::Snapshot(snap) => {
                if snap.upto > self.base() || self.snapshot.is_none() {
                    self.accepted = self.accepted.split_off(&snap.upto);
                    self.chosen = self.chosen.split_off(&snap.upto);
                    self.snapshot = Some(snap.clone());
                }
            }
            Write::Rebuilt(d) => {
                *self = (**d).clone();
                self.initialized = true;
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<C, S> {
    Receive {
        from: NodeId,
        msg: Msg<C, S>,
    },
    Timer(Timer),
    /// A client command submitted to this node.
    Submit(C),
    Synced {
        upto: u64,
    },
    /// The driver's snapshot of the state machine after applying every slot
    /// below `snap.upto` (which must not exceed [`Node::applied`]).
    Snapshot(Snap<S>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<C, S> {
    /// Put `msg` on the wire to `to`. `after` names the write the message
    /// reveals (0 for none): it must not leave before every write up to
    /// `after` is durable. The harness checks the order (invariant D1).
    Send {
        to: NodeId,
        msg: Msg<C, S>,
        after: u64,
    },
    Persist {
        seq: u64,
        write: Write<C, S>,
    },
    Sync {
        upto: u64,
    },
    /// Fire `timer` after `delay_us` of this node's clock, plus up to
    /// `jitter_us` drawn by the driver.
    SetTimer {
        timer: Timer,
        delay_us: u64,
        jitter_us: u64,
    },
    /// Slot `slot` is chosen with `entry`; emitted in slot order, once each
    /// per incarnation.
    Apply {
        slot: Slot,
        entry: Entry<C>,
    },
    /// Replace the state machine with this snapshot; the next Apply is
    /// `snap.upto`.
    Install {
        snap: Snap<S>,
    },
    /// This node became leader under `ballot`.
    Elected {
        ballot: Ballot,
    },
    /// A submitted command was refused: this node is not the leader.
    NotLeader {
        cmd: C,
        leader: Option<NodeId>,
    },
    /// A rebuilding replica has its state back and votes again.
    Rebuilt,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    pub election_us: u64,
    pub election_jitter_us: u64,
    pub heartbeat_us: u64,
    /// Leader lease length on a follower's clock; 0 switches leases off.
    pub lease_us: u64,
    /// The bound on clock drift between any two nodes, in parts per million.
    pub drift_ppm: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            election_us: 150_000,
            election_jitter_us: 150_000,
            heartbeat_us: 50_000,
            lease_us: 0,
            drift_ppm: 0,
        }
    }
}

/// Known-buggy variants (canaries). All off in a correct build; each one is
/// switched on only by a test or an explicit `--bug` flag.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bugs {
    /// 1. Acceptors check the ballot only on Prepare: a deposed leader's
    ///    Accepts are accepted.
    pub deposed_leader_writes: bool,
    /// 2. A new leader treats slots reported accepted under an earlier ballot
    ///    as chosen, without re-proposing them.
    pub assume_reported_chosen: bool,
    /// 3. A follower marks slots chosen up to the leader's commit index using
    ///    whatever entry it holds, from any ballot.
    pub commit_without_entry: bool,
    /// 4. A restarted replica truncates its log to its chosen prefix,
    ///    forgetting acceptances above it.
    pub truncate_on_restart: bool,
    /// 5. The leader serves reads locally without holding a lease (service).
    pub read_without_lease: bool,
    /// 6. The leader's lease ignores clock drift.
    pub lease_ignores_drift: bool,
    /// 7. Snapshots leave out the dedup table (service).
    pub snapshot_without_dedup: bool,
    /// 8. A replica with a wiped disk rejoins as a voter with empty state.
    pub wiped_rejoins_as_voter: bool,
    /// 9. A learned slot is persisted as two records (chosen mark, then the
    ///    entry), not one: a crash between them leaves a stale entry chosen.
    pub non_atomic_chosen: bool,
    /// 10. A candidate's Prepares leave before its own promise is durable:
    ///     a restart can stand again in the very same ballot and propose
    ///     other entries under it.
    #[serde(default)]
    pub prepare_before_promise: bool,
    /// 11. (liveness) A leader stops proposing after a while, but keeps
    ///     sending heartbeats, so no one replaces it.
    #[serde(default)]
    pub leader_stops_proposing: bool,
    /// 12. (liveness) A lagging follower never asks to catch up.
    #[serde(default)]
    pub no_catch_up: bool,
}

/// Switches one canary on.
pub type EnableBug = fn(&mut Bugs);

/// The canaries by name, for command lines and test tables.
pub const CANARIES: [(&str, EnableBug); 12] = [
    ("deposed-leader-writes", |b| b.deposed_leader_writes = true),
    ("assume-reported-chosen", |b| {
        b.assume_reported_chosen = true
    }),
    ("commit-without-entry", |b| b.commit_without_entry = true),
    ("truncate-on-restart", |b| b.truncate_on_restart = true),
    ("read-without-lease", |b| b.read_without_lease = true),
    ("lease-ignores-drift", |b| b.lease_ignores_drift = true),
    ("snapshot-without-dedup", |b| {
        b.snapshot_without_dedup = true
    }),
    ("wiped-rejoins-as-voter", |b| {
        b.wiped_rejoins_as_voter = true
    }),
    ("non-atomic-chosen", |b| b.non_atomic_chosen = true),
    ("prepare-before-promise", |b| {
        b.prepare_before_promise = true
    }),
    ("leader-stops-proposing", |b| {
        b.leader_stops_proposing = true
    }),
    ("no-catch-up", |b| b.no_catch_up = true),
];

impl Bugs {
    /// Switches on the canary called `name`; `Err` lists the known names.
    pub fn enable(&mut self, name: &str) -> Result<(), String> {
        paxos::enable_canary(&CANARIES, self, name)
    }

    pub fn any(&self) -> bool {
        *self != Bugs::default()
    }

    /// The names of the canaries switched on.
    pub fn names(&self) -> Vec<&'static str> {
        paxos::canary_names(&CANARIES, self)
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub n: u8,
    pub id: NodeId,
    pub timing: Timing,
    /// Slots a leader may have in flight at once (pipelining).
    pub window: u64,
    /// Commands a leader packs into one slot at most (batching).
    pub batch: usize,
    pub bugs: Bugs,
}

impl Config {
    pub fn quorum(&self) -> usize {
        self.n as usize / 2 + 1
    }
}

#[derive(Clone, Debug)]
enum Role<C, S> {
    Follower,
    Candidate {
        ballot: Ballot,
        promises: u16,
        /// Highest-ballot acceptance reported per slot.
        reported: BTreeMap<Slot, (Ballot, Entry<C>)>,
        /// The newest snapshot a promiser compacted to.
        snapshot: Option<Snap<S>>,
    },
    Leader {
        ballot: Ballot,
        next: Slot,
        /// Everything below is re-proposed state from earlier leaders.
        top: Slot,
        /// Slots proposed and not yet chosen: the entry and who accepted it.
        inflight: BTreeMap<Slot, (Entry<C>, u16)>,
        queue: VecDeque<C>,
        /// Heartbeat rounds awaiting acks: (round, sent at, acks).
        rounds: VecDeque<(u64, u64, u16)>,
        round: u64,
        /// Local time until which this leader holds the lease.
        lease_until: u64,
    },
    /// Wiped or corrupt disk: collecting peers' state; no votes.
    Rebuilding {
        replies: u16,
        state: Box<Durable<C, S>>,
    },
}

/// One Multi-Paxos replica: acceptor, learner, and leader when elected.
#[derive(Clone, Debug)]
pub struct Node<C, S> {
    cfg: Config,
    now: u64,
    promised: Ballot,
    accepted: BTreeMap<Slot, (Ballot, Entry<C>)>,
    chosen: BTreeMap<Slot, Entry<C>>,
    snapshot: Option<Snap<S>>,
    /// Every slot below this is chosen and applied.
    applied: Slot,
    /// The highest ballot seen (to pick a higher one when standing).
    seen: Ballot,
    leader: Option<NodeId>,
    epoch: u64,
    role: Role<C, S>,
    /// Lease granted (acceptor side): no promise to anyone but `grantee`
    /// before local time `granted_until`. `None` with a deadline: to no one.
    grantee: Option<NodeId>,
    granted_until: u64,
    /// Local time the leader was last heard from (election timeouts count
    /// from here).
    heard: u64,
    persist_seq: u64,
    synced_seq: u64,
    parked: Vec<(u64, NodeId, Msg<C, S>)>,
    /// Start-up work for `start`: a snapshot to install.
    pending_install: Option<Snap<S>>,
}

// Canary-only code lives in functions named `canary_*`, so mutation testing
// of the correct protocol can leave it out (`.cargo/mutants.toml`).

/// BUG (canary 4, `truncate-on-restart`): keep only the chosen prefix of the
/// log, forgetting every acceptance above it.
fn canary_truncate_to_chosen_prefix<C: Clone, S: Clone>(d: &mut Durable<C, S>) {
    let mut prefix = d.base();
    while d.chosen.contains_key(&prefix) {
        prefix += 1;
    }
    d.accepted.retain(|s, _| *s < prefix);
}

/// BUG (canary 11, `leader-stops-proposing`): after 16 heartbeat rounds the
/// leader proposes nothing more, yet its heartbeats keep everyone following.
fn canary_leader_stalls(round: u64) -> bool {
    round >= 16
}

fn bit(id: NodeId) -> u16 {
    assert!((id as usize) < MAX_NODES);
    1 << id
}

impl<C: Clone + Debug + PartialEq, S: Clone + Debug + PartialEq> Node<C, S> {
    /// A freshly initialized replica (its disk holds only [`Write::Init`]).
    pub fn new(cfg: Config) -> Self {
        let d = Durable {
            initialized: true,
            ..Durable::default()
        };
        let mut node = Self::recover(cfg, d, 0);
        // A brand-new replica has granted no lease.
        node.granted_until = 0;
        node
    }

    /// Rebuilds a node from its durable state after a crash, at local time `now`.
    pub fn recover(cfg: Config, mut d: Durable<C, S>, now: u64) -> Self {
        assert!(cfg.n >= 1 && cfg.n as usize <= MAX_NODES);
        assert!(cfg.id < cfg.n);
        assert!(cfg.window >= 1 && cfg.batch >= 1);
        assert!(
            d.initialized,
            "recovering from a disk that was never initialized"
        );
        for (b, _) in d.accepted.values() {
            assert!(*b <= d.promised, "durable acceptance above the promise");
        }
        let base = d.base();
        if cfg.bugs.truncate_on_restart {
            canary_truncate_to_chosen_prefix(&mut d);
        }
        let mut node = Node {
            cfg,
            now,
            promised: d.promised,
            accepted: d.accepted,
            chosen: d.chosen,
            applied: base,
            snapshot: None,
            seen: d.promised,
            leader: None,
            epoch: 0,
            role: Role::Follower,
            // A restarted replica forgot whom it granted a lease: it promises
            // no one until any lease it granted has run out.
            grantee: None,
            granted_until: now + cfg.timing.lease_us,
            heard: now,
            persist_seq: 0,
            synced_seq: 0,
            parked: Vec::new(),
            pending_install: d.snapshot.clone(),
        };
        node.snapshot = d.snapshot;
        node
    }

    /// A replica whose disk was found wiped or corrupt: it must not vote
    /// until it has rebuilt its state from a majority of the others. (With
    /// the `wiped-rejoins-as-voter` canary it rejoins at once, empty.)
    pub fn rebuild(cfg: Config, now: u64) -> Self {
        let mut node = Self::new(cfg);
        node.now = now;
        node.granted_until = now + cfg.timing.lease_us;
        if !cfg.bugs.wiped_rejoins_as_voter {
            node.role = Role::Rebuilding {
                replies: 0,
                state: Box::default(),
            };
        }
        node
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader { .. })
    }
    pub fn is_rebuilding(&self) -> bool {
        matches!(self.role, Role::Rebuilding { .. })
    }
    /// The leader this node believes in.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    /// The first slot not yet applied.
    pub fn applied(&self) -> Slot {
        self.applied
    }
    pub fn chosen(&self, slot: Slot) -> Option<&Entry<C>> {
        self.chosen.get(&slot)
    }
    pub fn promised(&self) -> Ballot {
        self.promised
    }
    /// The compaction point: slots below it live only in the snapshot.
    pub fn base(&self) -> Slot {
        self.snapshot.as_ref().map_or(0, |s| s.upto)
    }
    /// Commands this node, as leader, has queued or in flight.
    pub fn pending(&self) -> usize {
        match &self.role {
            Role::Leader {
                inflight, queue, ..
            } => inflight.len() + queue.len(),
            _ => 0,
        }
    }

    /// May the leader answer a read from its own state at local time `now`?
    /// Only while it holds a lease (no other leader can exist) and has
    /// applied everything earlier leaders may have had chosen.
    pub fn lease_read_ok(&self, now: u64) -> bool {
        match &self.role {
            Role::Leader {
                top, lease_until, ..
            } => self.cfg.timing.lease_us > 0 && now < *lease_until && self.applied >= *top,
            _ => false,
        }
    }

    /// How long a lease lasts on the leader's clock: the followers' `lease_us`
    /// shortened so that it ends first even if the leader's clock runs slow
    /// and a follower's fast by the drift bound.
    fn lease_span(&self) -> u64 {
        let t = self.cfg.timing;
        if self.cfg.bugs.lease_ignores_drift {
            return t.lease_us; // BUG (canary 6)
        }
        let ppm = t.drift_ppm.min(999_999);
        (t.lease_us as u128 * (1_000_000 - ppm) as u128 / (1_000_000 + ppm) as u128) as u64
    }

    /// Start-up: install the durable snapshot, apply the chosen prefix the
    /// node already holds (a restart replays it), and arm the election timer
    /// (a rebuilding node asks its peers instead).
    pub fn start(&mut self, now: u64, out: &mut Vec<Output<C, S>>) {
        self.now = now;
        if let Some(snap) = self.pending_install.take() {
            out.push(Output::Install { snap });
        }
        self.advance_applied(out);
        if self.is_rebuilding() {
            self.broadcast_others(Msg::RebuildQuery, out);
        }
        self.arm_election(out);
    }

    pub fn handle(&mut self, now: u64, input: Input<C, S>, out: &mut Vec<Output<C, S>>) {
        assert!(now >= self.now, "a node's clock went backwards");
        self.now = now;
        match input {
            Input::Receive { from, msg } => {
                assert!(from < self.cfg.n);
                self.receive(from, msg, out)
            }
            Input::Timer(Timer::Election { epoch }) => {
                if epoch != self.epoch || self.is_leader() {
                    return;
                }
                let quiet_since = self.heard + self.cfg.timing.election_us;
                if matches!(self.role, Role::Follower) && self.now < quiet_since {
                    // The leader was heard since this timer was set.
                    self.epoch += 1;
                    out.push(Output::SetTimer {
                        timer: Timer::Election { epoch: self.epoch },
                        delay_us: quiet_since - self.now,
                        jitter_us: self.cfg.timing.election_jitter_us,
                    });
                    return;
                }
                if self.is_rebuilding() {
                    self.broadcast_others(Msg::RebuildQuery, out);
                    self.arm_election(out);
                } else {
                    self.stand(out);
                }
            }
            Input::Timer(Timer::Heartbeat) => self.heartbeat(true, out),
            Input::Submit(cmd) => self.submit(cmd, out),
            Input::Synced { upto } => self.synced(upto, out),
            Input::Snapshot(snap) => self.take_snapshot(snap, out),
        }
    }

    // ---------------------------------------------------------------- storage

    fn persist(&mut self, write: Write<C, S>, out: &mut Vec<Output<C, S>>) -> u64 {
        self.persist_seq += 1;
        out.push(Output::Persist {
            seq: self.persist_seq,
            write,
        });
        out.push(Output::Sync {
            upto: self.persist_seq,
        });
        self.persist_seq
    }

    fn send_after(&mut self, seq: u64, to: NodeId, msg: Msg<C, S>, out: &mut Vec<Output<C, S>>) {
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

    fn synced(&mut self, upto: u64, out: &mut Vec<Output<C, S>>) {
        assert!(upto <= self.persist_seq, "sync of a write never issued");
        if upto <= self.synced_seq {
            return;
        }
        self.synced_seq = upto;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(s, _, _)| *s <= upto);
        self.parked = waiting;
        for (after, to, msg) in ready {
            out.push(Output::Send { to, msg, after });
        }
    }

    fn broadcast(&mut self, seq: u64, msg: Msg<C, S>, out: &mut Vec<Output<C, S>>) {
        for to in 0..self.cfg.n {
            self.send_after(seq, to, msg.clone(), out);
        }
    }

    fn broadcast_others(&mut self, msg: Msg<C, S>, out: &mut Vec<Output<C, S>>) {
        for to in 0..self.cfg.n {
            if to != self.cfg.id {
                out.push(Output::Send {
                    to,
                    msg: msg.clone(),
                    after: 0,
                });
            }
        }
    }

    // -------------------------------------------------------------- snapshots

    fn take_snapshot(&mut self, snap: Snap<S>, out: &mut Vec<Output<C, S>>) {
        assert!(
            snap.upto <= self.applied,
            "snapshot at {} beyond the applied prefix {}",
            snap.upto,
            self.applied
        );
        if snap.upto <= self.base() {
            return;
        }
        self.compact(&snap);
        self.persist(Write::Snapshot(snap), out);
    }

    fn compact(&mut self, snap: &Snap<S>) {
        self.accepted = self.accepted.split_off(&snap.upto);
        self.chosen = self.chosen.split_off(&snap.upto);
        self.snapshot = Some(snap.clone());
    }

    /// Installs a peer's snapshot that reaches past our applied prefix.
    fn install(&mut self, snap: Snap<S>, out: &mut Vec<Output<C, S>>) {
        if snap.upto <= self.applied {
            return;
        }
        self.compact(&snap);
        self.applied = snap.upto;
        if let Role::Leader { inflight, next, .. } = &mut self.role {
            *inflight = inflight.split_off(&snap.upto);
            *next = (*next).max(snap.upto);
        }
        out.push(Output::Install { snap: snap.clone() });
        self.persist(Write::Snapshot(snap), out);
        self.advance_applied(out);
    }

    // --------------------------------------------------------------- election

    fn arm_election(&mut self, out: &mut Vec<Output<C, S>>) {
        self.heard = self.now;
        self.epoch += 1;
        out.push(Output::SetTimer {
            timer: Timer::Election { epoch: self.epoch },
            delay_us: self.cfg.timing.election_us,
            jitter_us: self.cfg.timing.election_jitter_us,
        });
    }

    /// Whether a lease this acceptor granted forbids promising `candidate`.
    fn lease_forbids(&self, candidate: NodeId) -> bool {
        self.now < self.granted_until && self.grantee != Some(candidate)
    }

    /// Runs Phase 1 for every slot from the first unchosen one.
    fn stand(&mut self, out: &mut Vec<Output<C, S>>) {
        if self.lease_forbids(self.cfg.id) {
            // Our own vote counts: we may not promise ourselves either.
            // Try again as soon as the lease we granted runs out.
            self.epoch += 1;
            out.push(Output::SetTimer {
                timer: Timer::Election { epoch: self.epoch },
                delay_us: self.granted_until - self.now + 1,
                jitter_us: self.cfg.timing.election_jitter_us / 16,
            });
            return;
        }
        let ballot = Ballot {
            round: self.seen.round + 1,
            node: self.cfg.id,
        };
        self.seen = ballot;
        let from = self.applied;
        self.role = Role::Candidate {
            ballot,
            promises: 0,
            reported: BTreeMap::new(),
            snapshot: None,
        };
        self.leader = None;
        // Our own promise is durable before any Prepare leaves: otherwise a
        // restart could stand again with this very ballot and propose other
        // entries under it.
        self.promised = ballot;
        let seq = self.persist(Write::Promise(ballot), out);
        if self.cfg.bugs.prepare_before_promise {
            // BUG (canary 10): the Prepares leave at once; the write they
            // depend on is not even named.
            for to in 0..self.cfg.n {
                out.push(Output::Send {
                    to,
                    msg: Msg::Prepare { ballot, from },
                    after: 0,
                });
            }
        } else {
            self.broadcast(seq, Msg::Prepare { ballot, from }, out);
        }
        self.arm_election(out);
    }

    fn on_prepare(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        out: &mut Vec<Output<C, S>>,
    ) {
        if ballot < self.promised {
            let promised = self.promised;
            out.push(Output::Send {
                to: from,
                msg: Msg::Nack { ballot, promised },
                after: 0,
            });
            return;
        }
        if from != self.cfg.id && self.lease_forbids(from) {
            // A lease we granted is running: stay silent (the candidate
            // retries after its election timeout).
            return;
        }
        if ballot > self.promised {
            self.promised = ballot;
            self.seen = self.seen.max(ballot);
            if ballot.node != self.cfg.id {
                self.step_down(out);
            }
        }
        let seq = self.persist(Write::Promise(ballot), out);
        let accepted = self
            .accepted
            .range(slot..)
            .map(|(s, (b, e))| (*s, *b, e.clone()))
            .collect();
        let snapshot = self.snapshot.clone().filter(|s| s.upto > slot);
        self.send_after(
            seq,
            from,
            Msg::Promise {
                ballot,
                accepted,
                snapshot,
            },
            out,
        );
    }

    fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        accepted: Vec<(Slot, Ballot, Entry<C>)>,
        snap: Option<Snap<S>>,
        out: &mut Vec<Output<C, S>>,
    ) {
        let quorum = self.cfg.quorum();
        let Role::Candidate {
            ballot: mine,
            promises,
            reported,
            snapshot,
            ..
        } = &mut self.role
        else {
            return;
        };
        if ballot != *mine {
            return;
        }
        for (slot, b, e) in accepted {
            assert!(
                b <= ballot,
                "a promise reports an acceptance above its ballot"
            );
            if reported.get(&slot).is_none_or(|(rb, _)| b > *rb) {
                reported.insert(slot, (b, e));
            }
        }
        if let Some(s) = snap {
            if snapshot.as_ref().is_none_or(|old| s.upto > old.upto) {
                *snapshot = Some(s);
            }
        }
        *promises |= bit(from);
        if (promises.count_ones() as usize) < quorum {
            return;
        }
        let reported = std::mem::take(reported);
        let snapshot = snapshot.take();
        // Elected. A promiser compacted past our log: take its snapshot first.
        if let Some(s) = snapshot {
            self.install(s, out);
        }
        // Re-propose every reported slot under our ballot and fill the gaps
        // below the highest with no-ops, before any new command.
        let first = self.applied;
        let top = reported
            .keys()
            .next_back()
            .map_or(first, |s| s + 1)
            .max(first);
        self.role = Role::Leader {
            ballot,
            next: top,
            top,
            inflight: BTreeMap::new(),
            queue: VecDeque::new(),
            rounds: VecDeque::new(),
            round: 0,
            lease_until: 0,
        };
        self.leader = Some(self.cfg.id);
        out.push(Output::Elected { ballot });
        for slot in first..top {
            if let Some(entry) = self.chosen.get(&slot) {
                let entry = entry.clone();
                self.propose(slot, entry, out);
                continue;
            }
            match reported.get(&slot) {
                Some((_, e)) if self.cfg.bugs.assume_reported_chosen => {
                    // BUG (canary 2): an acceptance from an earlier ballot
                    // is taken as chosen, without re-proposing it.
                    let e = e.clone();
                    self.learn(slot, e, out);
                }
                reported => {
                    let entry = reported.map_or(Entry::Noop, |(_, e)| e.clone());
                    self.propose(slot, entry, out);
                }
            }
        }
        // Heartbeats start the lease; the Accepts just sent need no resend.
        self.heartbeat(false, out);
    }

    fn step_down(&mut self, out: &mut Vec<Output<C, S>>) {
        if let Role::Leader { queue, .. } = std::mem::replace(&mut self.role, Role::Follower) {
            for cmd in queue {
                out.push(Output::NotLeader { cmd, leader: None });
            }
        }
        self.arm_election(out);
    }

    // ---------------------------------------------------------------- rebuild

    fn on_rebuild_state(&mut self, from: NodeId, peer: Durable<C, S>, out: &mut Vec<Output<C, S>>) {
        let quorum = self.cfg.quorum();
        let Role::Rebuilding { replies, state } = &mut self.role else {
            return;
        };
        // Only the others are asked. A duplicate reply merges the same state
        // again, which changes nothing, and counts once in the bitmask.
        assert_ne!(
            from, self.cfg.id,
            "a rebuilding replica asks only the others"
        );
        *replies |= bit(from);
        state.promised = state.promised.max(peer.promised);
        if peer.snapshot.as_ref().map_or(0, |s| s.upto) > state.base() {
            let snap = peer.snapshot.clone().expect("checked above");
            state.apply(&Write::Snapshot(snap));
        }
        let base = state.base();
        for (slot, (b, e)) in peer.accepted.range(base..) {
            if state.accepted.get(slot).is_none_or(|(sb, _)| b > sb) {
                state.accepted.insert(*slot, (*b, e.clone()));
            }
        }
        for (slot, e) in peer.chosen.range(base..) {
            state.chosen.insert(*slot, e.clone());
        }
        // A majority of the *others*: it meets every quorum we were part of.
        if (replies.count_ones() as usize) < quorum {
            return;
        }
        let mut d = *std::mem::take(state);
        d.initialized = true;
        // Keep the invariant "accepted at most promised".
        let top = d.accepted.values().map(|(b, _)| *b).max();
        d.promised = d.promised.max(top.unwrap_or(Ballot::ZERO));
        self.role = Role::Follower;
        self.promised = d.promised;
        self.seen = self.seen.max(d.promised);
        self.accepted = d.accepted.clone();
        self.chosen = d.chosen.clone();
        if let Some(s) = d.snapshot.clone() {
            // In memory only: the Rebuilt record below carries it to disk,
            // and must be the disk's first record.
            self.compact(&s);
            self.applied = s.upto;
            out.push(Output::Install { snap: s });
        }
        self.persist(Write::Rebuilt(Box::new(d)), out);
        out.push(Output::Rebuilt);
        self.advance_applied(out);
        self.arm_election(out);
    }

    // ----------------------------------------------------------------- leader

    fn submit(&mut self, cmd: C, out: &mut Vec<Output<C, S>>) {
        let Role::Leader { queue, .. } = &mut self.role else {
            out.push(Output::NotLeader {
                cmd,
                leader: self.leader.filter(|l| *l != self.cfg.id),
            });
            return;
        };
        queue.push_back(cmd);
        self.pump(out);
    }

    /// Proposes queued commands, up to `batch` per slot, while the pipeline
    /// window has room.
    fn pump(&mut self, out: &mut Vec<Output<C, S>>) {
        loop {
            let (window, batch) = (self.cfg.window, self.cfg.batch);
            let Role::Leader {
                next,
                inflight,
                queue,
                round,
                ..
            } = &mut self.role
            else {
                return;
            };
            if inflight.len() as u64 >= window || queue.is_empty() {
                return;
            }
            if self.cfg.bugs.leader_stops_proposing && canary_leader_stalls(*round) {
                return;
            }
            let k = queue.len().min(batch);
            let cmds: Vec<C> = queue.drain(..k).collect();
            let slot = *next;
            self.propose(slot, Entry::Cmds(cmds), out);
        }
    }

    fn propose(&mut self, slot: Slot, entry: Entry<C>, out: &mut Vec<Output<C, S>>) {
        let commit = self.applied;
        let Role::Leader {
            ballot,
            next,
            inflight,
            ..
        } = &mut self.role
        else {
            unreachable!("only a leader proposes")
        };
        let ballot = *ballot;
        *next = (*next).max(slot + 1);
        let fresh = inflight.insert(slot, (entry.clone(), 0)).is_none();
        assert!(fresh, "slot {slot} proposed twice in ballot {ballot:?}");
        self.broadcast_accept(ballot, slot, entry, commit, out);
    }

    fn broadcast_accept(
        &mut self,
        ballot: Ballot,
        slot: Slot,
        entry: Entry<C>,
        commit: Slot,
        out: &mut Vec<Output<C, S>>,
    ) {
        let msg = Msg::Accept {
            ballot,
            slot,
            entry,
            commit,
        };
        self.broadcast(self.persist_seq, msg, out);
    }

    fn on_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        out: &mut Vec<Output<C, S>>,
    ) {
        let quorum = self.cfg.quorum();
        let Role::Leader {
            ballot: mine,
            inflight,
            ..
        } = &mut self.role
        else {
            return;
        };
        if ballot != *mine {
            return;
        }
        let Some((entry, acks)) = inflight.get_mut(&slot) else {
            return;
        };
        *acks |= bit(from);
        if (acks.count_ones() as usize) < quorum {
            return;
        }
        let entry = entry.clone();
        inflight.remove(&slot);
        self.learn(slot, entry, out);
        self.pump(out);
    }

    fn heartbeat(&mut self, resend: bool, out: &mut Vec<Output<C, S>>) {
        let now = self.now;
        let commit = self.applied;
        let Role::Leader {
            ballot,
            inflight,
            rounds,
            round,
            ..
        } = &mut self.role
        else {
            return;
        };
        let ballot = *ballot;
        *round += 1;
        if self.cfg.timing.lease_us > 0 {
            // The leader's own vote is in every lease quorum: it refuses
            // other candidates too, for longer than its lease lasts.
            self.grantee = Some(self.cfg.id);
            self.granted_until = now + self.cfg.timing.lease_us;
        }
        let r = *round;
        if rounds.len() == 8 {
            rounds.pop_front();
        }
        // The leader's own ack: it does not vote against itself.
        rounds.push_back((r, now, bit(self.cfg.id)));
        // Resend what is still in flight: an Accept or Accepted may be lost.
        let again: Vec<(Slot, Entry<C>)> = if resend {
            inflight.iter().map(|(s, (e, _))| (*s, e.clone())).collect()
        } else {
            Vec::new()
        };
        for (slot, entry) in again {
            self.broadcast_accept(ballot, slot, entry, commit, out);
        }
        self.broadcast_others(
            Msg::Heartbeat {
                ballot,
                commit,
                round: r,
            },
            out,
        );
        out.push(Output::SetTimer {
            timer: Timer::Heartbeat,
            delay_us: self.cfg.timing.heartbeat_us,
            jitter_us: 0,
        });
    }

    fn on_heartbeat_ack(&mut self, from: NodeId, ballot: Ballot, round: u64) {
        let quorum = self.cfg.quorum();
        let span = self.lease_span();
        let Role::Leader {
            ballot: mine,
            rounds,
            lease_until,
            ..
        } = &mut self.role
        else {
            return;
        };
        if ballot != *mine {
            return;
        }
        if let Some((_, sent, acks)) = rounds.iter_mut().find(|(r, _, _)| *r == round) {
            *acks |= bit(from);
            if acks.count_ones() as usize >= quorum {
                // Every acker granted from after `sent` on its own clock.
                *lease_until = (*lease_until).max(*sent + span);
            }
        }
    }

    // --------------------------------------------------------------- acceptor

    fn on_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        entry: Entry<C>,
        commit: Slot,
        out: &mut Vec<Output<C, S>>,
    ) {
        if ballot < self.promised && !self.cfg.bugs.deposed_leader_writes {
            let promised = self.promised;
            out.push(Output::Send {
                to: from,
                msg: Msg::Nack { ballot, promised },
                after: 0,
            });
            return;
        }
        if slot < self.base() {
            // Compacted here, so chosen: the sender is behind.
            if let Some(snap) = self.snapshot.clone() {
                out.push(Output::Send {
                    to: from,
                    msg: Msg::Snapshot { snap },
                    after: 0,
                });
            }
            return;
        }
        self.follow(from, ballot, out);
        if ballot > self.promised {
            self.promised = ballot;
            self.persist(Write::Promise(ballot), out);
        }
        self.accepted.insert(slot, (ballot, entry.clone()));
        let seq = self.persist(
            Write::Accept {
                slot,
                ballot,
                entry,
            },
            out,
        );
        self.send_after(seq, from, Msg::Accepted { ballot, slot }, out);
        self.commit_upto(from, ballot, commit, out);
    }

    /// Hearing from a leader at `ballot`: follow it, grant it a lease, and
    /// reset the election timer.
    fn follow(&mut self, leader: NodeId, ballot: Ballot, out: &mut Vec<Output<C, S>>) {
        self.seen = self.seen.max(ballot);
        if leader != self.cfg.id {
            if !matches!(self.role, Role::Follower) {
                self.step_down(out);
            } else {
                // One pending timer is enough: it re-arms itself for the
                // rest of the timeout when it finds the leader was heard.
                self.heard = self.now;
            }
            self.leader = Some(leader);
            if self.cfg.timing.lease_us > 0 && !self.lease_forbids(leader) {
                self.grantee = Some(leader);
                self.granted_until = self.now + self.cfg.timing.lease_us;
            }
        }
    }

    /// The leader says every slot below `commit` is chosen. Mark chosen only
    /// the slots we hold accepted *in the leader's ballot*; ask for the rest.
    fn commit_upto(
        &mut self,
        leader: NodeId,
        ballot: Ballot,
        commit: Slot,
        out: &mut Vec<Output<C, S>>,
    ) {
        let mut missing = None;
        for slot in self.applied..commit {
            if self.chosen.contains_key(&slot) {
                continue;
            }
            match self.accepted.get(&slot) {
                Some((b, e)) if *b == ballot || self.cfg.bugs.commit_without_entry => {
                    // (BUG, canary 3: an entry from any ballot is taken.)
                    let e = e.clone();
                    self.learn(slot, e, out);
                }
                _ => {
                    missing.get_or_insert(slot);
                }
            }
        }
        if let Some(from) = missing {
            // (BUG, canary 12: a lagging follower never asks.)
            if leader != self.cfg.id && !self.cfg.bugs.no_catch_up {
                out.push(Output::Send {
                    to: leader,
                    msg: Msg::Query { from },
                    after: 0,
                });
            }
        }
    }

    fn on_query(&mut self, from: NodeId, slot: Slot, out: &mut Vec<Output<C, S>>) {
        let mut slot = slot;
        if slot < self.base() {
            let snap = self.snapshot.clone().expect("a base implies a snapshot");
            slot = snap.upto;
            out.push(Output::Send {
                to: from,
                msg: Msg::Snapshot { snap },
                after: 0,
            });
        }
        for (s, e) in self.chosen.range(slot..).take(64) {
            out.push(Output::Send {
                to: from,
                msg: Msg::Chosen {
                    slot: *s,
                    entry: e.clone(),
                },
                after: 0,
            });
        }
    }

    fn durable_view(&self) -> Durable<C, S> {
        Durable {
            initialized: true,
            promised: self.promised,
            accepted: self.accepted.clone(),
            chosen: self.chosen.clone(),
            snapshot: self.snapshot.clone(),
        }
    }

    // ---------------------------------------------------------------- learner

    fn learn(&mut self, slot: Slot, entry: Entry<C>, out: &mut Vec<Output<C, S>>) {
        if slot < self.applied {
            return;
        }
        if let Some(e) = self.chosen.get(&slot) {
            assert_eq!(*e, entry, "slot {slot} chosen twice with different entries");
            return;
        }
        self.chosen.insert(slot, entry.clone());
        if self.cfg.bugs.non_atomic_chosen {
            // BUG (canary 9): the mark and the entry in separate records.
            self.persist(Write::ChosenMark { slot }, out);
        }
        self.persist(Write::Chosen { slot, entry }, out);
        self.advance_applied(out);
    }

    fn advance_applied(&mut self, out: &mut Vec<Output<C, S>>) {
        while let Some(e) = self.chosen.get(&self.applied) {
            out.push(Output::Apply {
                slot: self.applied,
                entry: e.clone(),
            });
            self.applied += 1;
        }
    }

    fn receive(&mut self, from: NodeId, msg: Msg<C, S>, out: &mut Vec<Output<C, S>>) {
        if self.is_rebuilding() {
            // No votes, no leadership: only rebuild traffic and learning.
            if let Msg::RebuildState { state } = msg {
                self.on_rebuild_state(from, *state, out);
            }
            return;
        }
        match msg {
            Msg::Prepare { ballot, from: slot } => self.on_prepare(from, ballot, slot, out),
            Msg::Promise {
                ballot,
                accepted,
                snapshot,
            } => self.on_promise(from, ballot, accepted, snapshot, out),
            Msg::Accept {
                ballot,
                slot,
                entry,
                commit,
            } => self.on_accept(from, ballot, slot, entry, commit, out),
            Msg::Accepted { ballot, slot } => self.on_accepted(from, ballot, slot, out),
            Msg::Nack { promised, .. } => {
                self.seen = self.seen.max(promised);
                if promised > self.promised && !matches!(self.role, Role::Follower) {
                    self.step_down(out);
                }
            }
            Msg::Heartbeat {
                ballot,
                commit,
                round,
            } => {
                if ballot >= self.promised {
                    self.follow(from, ballot, out);
                    if self.grantee == Some(from) {
                        out.push(Output::Send {
                            to: from,
                            msg: Msg::HeartbeatAck { ballot, round },
                            after: 0,
                        });
                    }
                    self.commit_upto(from, ballot, commit, out);
                }
            }
            Msg::HeartbeatAck { ballot, round } => self.on_heartbeat_ack(from, ballot, round),
            Msg::Query { from: slot } => self.on_query(from, slot, out),
            Msg::Chosen { slot, entry } => {
                if slot >= self.base() {
                    self.learn(slot, entry, out);
                }
            }
            Msg::Snapshot { snap } => self.install(snap, out),
            Msg::RebuildQuery => {
                // Only durable facts may be handed over: a reply waits for
                // every write issued so far.
                let state = Box::new(self.durable_view());
                let seq = self.persist_seq;
                self.send_after(seq, from, Msg::RebuildState { state }, out);
            }
            Msg::RebuildState { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests;
