//! The vocabulary of the log core: log entries and snapshots, the messages
//! replicas exchange, the durable writes, the inputs and outputs of a
//! [`Node`](crate::Node), its configuration, and the canaries.

use crate::{Ballot, NodeId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

pub type Slot = u64;

/// A log entry: a batch of client commands, or a no-op filling a gap.
///
/// `Eq`, `Hash` and `Ord` (here and on the messages, writes and the node)
/// compare by content, through the `Arc`: what the model checker
/// (`paxsim check`) needs to store states and keep the network sorted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Entry<C> {
    Noop,
    /// Shared: a batch travels to every peer and into every record
    /// without being copied.
    Cmds(Arc<[C]>),
    /// A membership change: the whole new configuration (not a delta), so
    /// that what a slot chose says by itself who votes from `slot + α` on
    /// (see [`Members`] and the crate docs).
    Config(Members),
}

/// A configuration: who votes, who learns, who is gone for good. Sets of
/// node ids as bitmasks (ids below [`MAX_NODES`](crate::MAX_NODES)).
///
/// *Voters* promise and accept, and quorums are majorities of them.
/// *Learners* are replicas being added: they receive the log and catch up
/// but do not vote until a later configuration promotes them. *Leaving*
/// voters (a subset of the voters) are to be removed when the learners are
/// promoted: that is how a replica is replaced (the new one catches up
/// first, then one change swaps them). *Gone* ids were removed and are
/// never members again (Paxos Made Live, Chubby: a new machine gets a new
/// id). The *epoch* counts the changes before it: a configuration chosen
/// with any other epoch than the next was computed from an older view (a
/// change another leader had chosen meanwhile was not in it), and changes
/// nothing when applied.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Members {
    pub epoch: u64,
    pub voters: u16,
    pub learners: u16,
    pub leaving: u16,
    pub gone: u16,
}

impl Members {
    /// The first configuration of a cluster whose voters are `voters`.
    pub fn first(voters: u16) -> Members {
        assert!(voters != 0, "a configuration has a voter");
        Members {
            voters,
            ..Members::default()
        }
    }

    /// Nodes `0..n` voting.
    pub fn all(n: u8) -> u16 {
        assert!(n >= 1 && n as usize <= crate::MAX_NODES);
        ((1u32 << n) - 1) as u16
    }

    pub fn votes(&self, id: NodeId) -> bool {
        self.voters & crate::bit(id) != 0
    }

    pub fn learns(&self, id: NodeId) -> bool {
        self.learners & crate::bit(id) != 0
    }

    /// Voters and learners: who receives the log.
    pub fn reach(&self) -> u16 {
        self.voters | self.learners
    }

    /// The size of a quorum: a majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voters.count_ones() as usize / 2 + 1
    }

    /// Whether the nodes of `set` include a majority of the voters (other
    /// nodes in `set` count for nothing).
    pub fn is_quorum(&self, set: u16) -> bool {
        (set & self.voters).count_ones() as usize >= self.quorum()
    }

    /// Whether this is a configuration a correct replica could propose
    /// for a cluster of `n` machines: a voter at least, ids in range, and
    /// the sets apart as their meaning requires.
    pub fn well_formed(&self, n: u8) -> bool {
        let all = Members::all(n);
        let sets = [self.voters, self.learners, self.gone];
        self.voters != 0
            && sets.iter().all(|s| s & !all == 0)
            && self.voters & self.learners == 0
            && (self.voters | self.learners) & self.gone == 0
            && self.leaving & !self.voters == 0
    }

    /// `change` applied to this configuration, or why it cannot be. The
    /// leader computes it once and proposes the result whole.
    pub fn changed(&self, change: Change, n: u8) -> Result<Members, &'static str> {
        let mut m = *self;
        let used = m.voters | m.learners | m.gone;
        match change {
            Change::Add(id) => {
                if id >= n {
                    return Err("no such machine");
                }
                if used & crate::bit(id) != 0 {
                    return Err("that id is or was a member (ids are never reused)");
                }
                m.learners |= crate::bit(id);
            }
            Change::Remove(id) => {
                if id >= n || m.reach() & crate::bit(id) == 0 {
                    return Err("not a member");
                }
                if m.voters == crate::bit(id) {
                    return Err("the last voter cannot be removed");
                }
                m.voters &= !crate::bit(id);
                m.learners &= !crate::bit(id);
                m.leaving &= !crate::bit(id);
                m.gone |= crate::bit(id);
            }
            Change::Replace { old, new } => {
                if old == 0 || new == 0 || old & !m.voters != 0 {
                    return Err("replace voters with new machines");
                }
                if new & used != 0 || new & !Members::all(n) != 0 {
                    return Err("that id is or was a member (ids are never reused)");
                }
                m.learners |= new;
                m.leaving |= old;
            }
            Change::Promote => {
                if m.learners == 0 {
                    return Err("no learner to promote");
                }
                m.voters = (m.voters & !m.leaving) | m.learners;
                m.gone |= m.leaving;
                m.learners = 0;
                m.leaving = 0;
            }
        }
        if m == *self {
            return Err("no change");
        }
        m.epoch = self.epoch + 1;
        assert!(m.well_formed(n), "a change keeps a configuration whole");
        Ok(m)
    }
}

/// What an operator (or the simulator's nemesis) asks the leader to do to
/// the membership ([`Input::Reconfigure`]). Added machines join as
/// learners; the leader promotes them itself once they caught up
/// ([`Change::Promote`]), removing the voters they replace in the same
/// configuration.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Change {
    /// A new machine joins as a learner.
    Add(NodeId),
    /// A voter or learner leaves for good (the leader too).
    Remove(NodeId),
    /// New machines `new` (a set) join as learners and, once promoted, take
    /// the place of the voters `old` (a set) in one configuration.
    Replace { old: u16, new: u16 },
    /// The learners become voters (and the leaving voters go): the leader
    /// proposes it when every learner caught up.
    Promote,
}

/// A state-machine snapshot tied to a log position: the state after applying
/// every slot below `upto`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Snap<S> {
    pub upto: Slot,
    pub state: S,
    /// The configurations that govern slots from `upto` on, by the first
    /// slot each governs (the node fills it in: what a driver passes is
    /// replaced). Chosen changes below `upto` are gone with the log, and
    /// with the α-window they still decide who votes up to `upto + α`.
    pub configs: Configs,
}

impl<S> Snap<S> {
    /// A snapshot of `state` after every slot below `upto`.
    pub fn new(upto: Slot, state: S) -> Snap<S> {
        Snap {
            upto,
            state,
            configs: Configs::default(),
        }
    }
}

/// Configurations by the first slot each governs (see the crate docs).
pub type Configs = BTreeMap<Slot, Members>;

/// Whether `configs` could be a node's: some, each the next epoch of the
/// one before, and no removed id back. (A node asserts this of its own; a
/// snapshot from a peer or a file is checked with it before it is taken.)
pub fn configs_chain_ok(configs: &Configs) -> bool {
    let pairs = configs.values().zip(configs.values().skip(1));
    !configs.is_empty()
        && pairs
            .into_iter()
            .all(|(a, b)| a.epoch + 1 == b.epoch && a.gone & !b.gone == 0)
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
    /// A learner's answer to a heartbeat: it applied every slot below
    /// `applied` (the leader promotes learners that caught up).
    Progress {
        applied: Slot,
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
    RebuildQuery {
        /// `Ballot::ZERO`: just report. Otherwise the *fence*: first
        /// promise this ballot (durably), then report. A wiped replica
        /// fences a majority of the others above every ballot its lost
        /// incarnation could have sent Accepts in, so that none of its
        /// in-flight Accepts lands after their state was reported.
        fence: Ballot,
    },
    RebuildState {
        state: Box<Durable<C, S>>,
    },
    /// One part of a message too large to send whole: a `Promise`,
    /// `Snapshot` or `RebuildState` whose encoding is over
    /// [`Config::part_bytes`] (see `transfer`). `bytes` is the encoding's
    /// range from `offset`; `total` its length and `id` its CRC32C name the
    /// whole. The receiver pulls each next part.
    Part {
        id: u32,
        total: u64,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// Asks for the part of transfer `id` that starts at `offset`; at
    /// `offset == total` it says the whole arrived.
    Pull {
        id: u32,
        offset: u64,
    },
}

impl<C, S> Msg<C, S> {
    /// Whether this kind carries state the protocol does not bound (a
    /// promise's report, a snapshot, a replica's whole state), so that it
    /// may outgrow a frame and travel in parts (`transfer`).
    pub fn may_outgrow_a_frame(&self) -> bool {
        matches!(
            self,
            Msg::Promise { .. } | Msg::Snapshot { .. } | Msg::RebuildState { .. }
        )
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Timer {
    /// Follower: no word from a leader; stand for election (`epoch` guards staleness).
    Election { epoch: u64 },
    /// Leader: time to send heartbeats.
    Heartbeat,
    /// A message is arriving in parts: pull again what stalled.
    Pull,
}

/// One durable change. Each is one record on disk, written atomically or
/// torn ([`storage`](crate::storage) encodes it, frames it with CRC32Cs and
/// reads it back). The serde encoding is the on-disk payload: changing a
/// variant or a field changes the format (see [`storage`](crate::storage)).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
            Write::Init => {
                assert!(!self.initialized, "Init is only a disk's first record");
                self.initialized = true;
            }
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
                // An older snapshot changes nothing: the newest one wins.
                assert!(self.base() >= snap.upto);
                assert!(self.accepted.keys().next().is_none_or(|s| *s >= snap.upto));
                assert!(self.chosen.keys().next().is_none_or(|s| *s >= snap.upto));
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
    /// A client command submitted to this node. A leader ignores one equal
    /// to a command still waiting in its queue (a client's retry): that one
    /// is proposed once.
    Submit(C),
    Synced {
        upto: u64,
    },
    /// The driver's snapshot of the state machine after applying every slot
    /// below `snap.upto` (which must not exceed [`Node::applied`](crate::Node::applied)).
    Snapshot(Snap<S>),
    /// An operator's membership change: the leader proposes the new
    /// configuration when it may (one change at a time, after an entry of
    /// its own ballot is chosen); anyone else refuses. Answered by
    /// [`Output::Reconfigure`].
    Reconfigure(Change),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
    /// A submitted command was refused: this node leads, but its queue of
    /// commands waiting for a slot already holds [`QUEUE_MAX`] (the pipeline
    /// window is full and the queue behind it too). Nothing of `cmd` was
    /// proposed or persisted; the submitter may retry later or elsewhere.
    /// Load shedding: a bounded queue instead of unbounded memory and
    /// latency. Unreachable while submitters keep fewer than `QUEUE_MAX`
    /// commands outstanding.
    Busy {
        cmd: C,
    },
    /// A rebuilding replica has its state back and votes again.
    Rebuilt,
    /// A message from `from` was refused: it is not one a correct peer
    /// sends (`why` says what is wrong with it; see `validate`). Nothing of
    /// it reached the node's state. `from` is this node itself when its own
    /// ballot rounds ran out ([`ROUND_MAX`](crate::ROUND_MAX)) and it did
    /// not stand. For the driver to count and log.
    Refused {
        from: NodeId,
        why: crate::Refusal,
    },
    /// This leader now counts on its lease, in `ballot`, until its local
    /// time `until` (it rose). For a harness's lease check (the
    /// simulator's P7); a driver may ignore it.
    Lease {
        ballot: Ballot,
        until: u64,
    },
    /// A [`Buggify`] knob just steered this node down the rare path it
    /// names. For coverage (a simulator counts the runs that got there);
    /// it changes nothing, and a node whose knobs are all off never emits it.
    Buggified(Buggified),
    /// The answer to [`Input::Reconfigure`]: the configuration proposed
    /// (it governs from α slots after the slot that chooses it), or why
    /// nothing was.
    Reconfigure {
        change: Change,
        outcome: Result<Members, &'static str>,
    },
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
    /// 13. (resources) Every resent Accept is written
    ///     and fsynced again, as before issue 19: under load and large
    ///     values, WALs of gigabytes and a cluster that seized.
    #[serde(default)]
    pub rewrite_resent_accepts: bool,
    /// 14. (hostile input) Peer messages reach the handlers unvalidated and
    ///     ballot rounds grow unchecked, as before issue 19: one message no
    ///     correct peer sends trips an assertion, or leaves a round at its
    ///     maximum that overflows at the next election.
    #[serde(default)]
    pub trust_peer_messages: bool,
    /// 15. (hostile input) A follower walks every slot up to a leader's
    ///     commit index, as before issue 19: a distant one spins it.
    #[serde(default)]
    pub walk_to_commit_index: bool,
    /// 16. (resources) Every message goes whole, however large, as before
    ///     issue 19: state over the transport's frame limit is never
    ///     delivered, and a replica that needs it never recovers (R1).
    #[serde(default)]
    pub send_state_whole: bool,
    /// 17. (durability, the service's write path `kv::write_path`) A batch
    ///     of writes is reported durable when it is handed to the disk,
    ///     before its fsync: a power loss loses what a reply revealed (D1).
    #[serde(default)]
    pub synced_before_fsync: bool,
    /// 18. (durability, `kv::write_path`) "Pipelined sync": a sync counts
    ///     as done once the writer has the writes (D1).
    #[serde(default)]
    pub pipelined_sync: bool,
    /// 19. (leases) A leader times its lease from when a quorum's
    ///     acknowledgements arrived, not from when it sent the heartbeat
    ///     they acknowledge: it counts on grants past their end (P7).
    #[serde(default)]
    pub lease_from_ack: bool,
    /// 20. (durability, recovery: `kv::write_path::recover`) A last record
    ///     that fails its checksum is taken for a torn write and dropped,
    ///     though it was written whole: a synced vote is forgotten.
    #[serde(default)]
    pub corrupt_tail_as_torn: bool,
    /// 21. (recovery) A replica rebuilding from its peers takes the state
    ///     of the first majority that answers, without fencing: an Accept
    ///     its lost incarnation sent can still land after they answered.
    #[serde(default)]
    pub rebuild_without_fence: bool,
    /// 22. (service) A Put or Cas on an ephemeral key keeps its owner, so
    ///     the key still vanishes when that session ends: a plain write
    ///     lost (K4).
    #[serde(default)]
    pub plain_write_keeps_owner: bool,
    /// 23. (membership) A configuration takes effect at the next slot as
    ///     soon as a replica accepts it, not α slots after it is chosen
    ///     (Raft's rule, without Raft's other rules).
    #[serde(default)]
    pub config_when_received: bool,
    /// 24. (membership) A new leader re-proposes a change it learned in
    ///     Phase 1 but goes on counting quorums in the configuration it was
    ///     elected in (eBay/NuRaft #67).
    #[serde(default)]
    pub ignore_reported_config: bool,
    /// 25. (membership) A learner votes before it is promoted.
    #[serde(default)]
    pub learner_votes: bool,
    /// 26. (membership) A removed replica keeps voting and standing.
    #[serde(default)]
    pub removed_keeps_voting: bool,
    /// 27. (membership) A candidate counts a majority of the union of the
    ///     configurations it must win instead of a majority of each.
    #[serde(default)]
    pub union_quorum: bool,
}

/// Switches one canary on.
pub type EnableBug = fn(&mut Bugs);

/// The canaries by name, for command lines and test tables.
pub const CANARIES: [(&str, EnableBug); 27] = [
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
    ("rewrite-resent-accepts", |b| {
        b.rewrite_resent_accepts = true
    }),
    ("trust-peer-messages", |b| b.trust_peer_messages = true),
    ("walk-to-commit-index", |b| b.walk_to_commit_index = true),
    ("send-state-whole", |b| b.send_state_whole = true),
    ("synced-before-fsync", |b| b.synced_before_fsync = true),
    ("pipelined-sync", |b| b.pipelined_sync = true),
    ("lease-from-ack", |b| b.lease_from_ack = true),
    ("corrupt-tail-as-torn", |b| b.corrupt_tail_as_torn = true),
    ("rebuild-without-fence", |b| b.rebuild_without_fence = true),
    ("plain-write-keeps-owner", |b| {
        b.plain_write_keeps_owner = true
    }),
    ("config-when-received", |b| b.config_when_received = true),
    ("ignore-reported-config", |b| {
        b.ignore_reported_config = true
    }),
    ("learner-votes", |b| b.learner_votes = true),
    ("removed-keeps-voting", |b| b.removed_keeps_voting = true),
    ("union-quorum", |b| b.union_quorum = true),
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

/// BUGGIFY, after FoundationDB's: knobs that make a node take, often, the
/// rare paths it otherwise takes only when the faults line up, so that
/// simulation reaches them. Each knob swaps a normal choice for a rare but
/// legal one (a value or a choice the protocol must cope with anyway), so a
/// correct node stays correct with any knobs on, and a canary is still
/// caught. The driver passes the knobs in [`Config::buggify`] (the simulator
/// draws them per seed); the node only reads them and draws nothing. A real
/// deployment runs with [`Buggify::OFF`], the default. When a knob changes
/// what the node does, the node says so with [`Output::Buggified`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Buggify {
    /// The leader keeps one slot in flight instead of [`Config::window`]:
    /// commands queue behind it, and slots carry batches (with the default
    /// window, a handful of clients never fill it, so neither happens).
    pub window_of_one: bool,
    /// The leader packs one command per slot instead of [`Config::batch`],
    /// however many wait: a queue drains slot by slot.
    pub batch_of_one: bool,
    /// Election timeouts almost all equal (the jitter cut to a sixteenth):
    /// followers that lose their leader stand together, and candidates duel.
    pub tight_elections: bool,
    /// The leader counts its lease as lasting one heartbeat interval at most
    /// (the default grant is several): it runs out just as the next round
    /// leaves, and reads until that round's acks come back fall back to the
    /// log. Safe: the followers still promise no one else for the whole
    /// lease they granted.
    pub short_lease: bool,
    /// A catch-up `Query` is answered with one chosen entry instead of up
    /// to 64: a lagging replica catches up over many rounds.
    pub catch_up_by_one: bool,
}

impl Buggify {
    /// Every knob off: what a real deployment runs.
    pub const OFF: Buggify = Buggify {
        window_of_one: false,
        batch_of_one: false,
        tight_elections: false,
        short_lease: false,
        catch_up_by_one: false,
    };

    pub fn any(&self) -> bool {
        *self != Buggify::OFF
    }

    /// Whether the knob behind `rare` is on (a node reports only those).
    pub fn steers(&self, rare: Buggified) -> bool {
        match rare {
            Buggified::QueuedBehindWindow => self.window_of_one,
            Buggified::BatchCut => self.batch_of_one,
            Buggified::CandidacyLost => self.tight_elections,
            Buggified::LeaseLapsed => self.short_lease,
            Buggified::CatchUpCut => self.catch_up_by_one,
        }
    }
}

/// A rare path a [`Buggify`] knob steered a node down.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Buggified {
    /// `window_of_one`: commands waited behind the one slot in flight where
    /// the configured window had room.
    QueuedBehindWindow,
    /// `batch_of_one`: a slot went out with one command while more waited.
    BatchCut,
    /// `tight_elections`: a candidacy ended before it won (a competing
    /// candidate's ballot or a leader's word came first).
    CandidacyLost,
    /// `short_lease`: the leader's lease ran out while it still led.
    LeaseLapsed,
    /// `catch_up_by_one`: a Query was answered with one entry where more
    /// chosen entries followed.
    CatchUpCut,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Machines: every id a member may have (`0..n`).
    pub n: u8,
    pub id: NodeId,
    /// The first configuration's voters (a bitmask of ids below `n`); the
    /// other machines are spares a later configuration may add. Usually
    /// [`Members::all`]`(n)`.
    pub voters: u16,
    pub timing: Timing,
    /// Slots a leader may have in flight at once (pipelining).
    pub window: u64,
    /// Commands a leader packs into one slot at most (batching).
    pub batch: usize,
    /// Bytes ([`Weight`]) a leader packs into one slot at most: a command
    /// that alone weighs more gets a slot of its own. With `window`, this
    /// bounds what a leader has in flight (and resends) at once.
    pub slot_bytes: usize,
    /// Bytes a leader queues behind its window at most: a command that does
    /// not fit is refused with [`Output::Busy`] (unless the queue is empty:
    /// one command, however heavy, always gets through).
    pub queue_bytes: usize,
    /// The largest message a node sends whole, encoded (postcard), in
    /// bytes: a `Promise`, `Snapshot` or `RebuildState` over it travels in
    /// parts of at most this many bytes ([`Msg::Part`]), so that state of
    /// any size fits the transport's frames. Below the frame limit by the
    /// part header's few dozen bytes (see [`PART_HEADROOM`]).
    pub part_bytes: usize,
    pub bugs: Bugs,
    /// Rare-path knobs for simulation; [`Buggify::OFF`] outside it.
    pub buggify: Buggify,
}

impl Config {
    /// The first configuration.
    pub fn first(&self) -> Members {
        Members::first(self.voters)
    }

    /// The α of the α-window: a change chosen at slot `c` governs slots
    /// from `c + α` on. It is the pipeline window, so that a leader always
    /// knows the configuration of every slot it may propose in.
    pub fn alpha(&self) -> u64 {
        self.window
    }
}

/// The most commands a leader queues behind its pipeline window. A command
/// submitted to a full queue is refused with [`Output::Busy`] (see there).
pub const QUEUE_MAX: usize = 4096;

/// The default [`Config::slot_bytes`]: 512 KiB a slot.
pub const SLOT_BYTES: usize = 512 << 10;
/// The default [`Config::queue_bytes`]: 16 MiB queued.
pub const QUEUE_BYTES: usize = 16 << 20;

/// The default [`Config::part_bytes`]: 1 MiB a part, so that a state
/// transfer never holds a peer link for long (a heartbeat waits behind one
/// part at most, not behind the whole state).
pub const PART_BYTES: usize = 1 << 20;
/// What a part's message adds to its bytes, at most: a frame limit of `F`
/// takes `part_bytes = F - PART_HEADROOM` (the variant tag, id, total,
/// offset and length, as postcard varints, and a transport's own tag).
pub const PART_HEADROOM: usize = 64;
/// The largest message a node accepts in parts (4 GiB): a peer's `total`
/// beyond it is refused. Bytes are kept only as they arrive, never
/// reserved from `total`.
pub const TRANSFER_MAX: u64 = 1 << 32;

/// What the core needs of a command: to copy, compare and show it, to weigh
/// it, and to encode it (a message too large to send whole is sent as
/// parts of its encoding).
pub trait Command: Clone + Debug + PartialEq + Weight + Serialize + DeserializeOwned {}
impl<T: Clone + Debug + PartialEq + Weight + Serialize + DeserializeOwned> Command for T {}

/// What the core needs of a snapshot's state: the same, without a weight.
pub trait State: Clone + Debug + PartialEq + Serialize + DeserializeOwned {}
impl<T: Clone + Debug + PartialEq + Serialize + DeserializeOwned> State for T {}

/// What a command weighs: about the bytes it takes on the wire and on disk.
/// The leader's byte budgets ([`Config::slot_bytes`],
/// [`Config::queue_bytes`]) count it.
pub trait Weight {
    fn weight(&self) -> usize;
}

impl Weight for u32 {
    fn weight(&self) -> usize {
        4
    }
}

impl Weight for u64 {
    fn weight(&self) -> usize {
        8
    }
}
