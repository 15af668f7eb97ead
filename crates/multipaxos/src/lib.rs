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
//! reports the sync complete. [`storage`] turns each write into bytes (one
//! CRC32C-checked record of a versioned file) and reads a file back; a replica whose disk is wiped or corrupt starts in *rebuild* mode
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
//!
//! **Layout** (by role, as in OmniPaxos): `types` holds the vocabulary (entries, messages, writes, inputs, outputs, config,
//! canaries); this module holds the [`Node`] itself, its construction,
//! start-up and input dispatch; `io` the durability plumbing (writes, syncs,
//! sends parked behind them); `acceptor` Phase 1 and 2 votes; `leader` the
//! proposer: candidacy, election, the accept pipeline and its queue;
//! `learner` chosen slots, the commit index, catch-up and snapshots;
//! `lease` heartbeats and leader leases; `rebuild` the recovery of a replica
//! that lost its disk.
//!
//! **Assertions.** Every handler opens with its preconditions and every
//! input ends with the node's invariants checked ([`Node::handle`]); they
//! are `assert!`s, never compiled out, so a simulation run that breaks one
//! reports it.

mod acceptor;
mod io;
mod leader;
mod learner;
mod lease;
mod members;
mod rebuild;
pub mod storage;
mod transfer;
mod types;
mod validate;

pub use paxos::{Ballot, NodeId, MAX_NODES};
pub use transfer::GIVE_UP_TIMEOUTS;
pub use types::{
    Buggified, Buggify, Bugs, Change, Command, Config, Configs, Durable, EnableBug, Entry, Input,
    Members, Msg, Output, Slot, Snap, State, Timer, Timing, Weight, Write, CANARIES, PART_BYTES,
    PART_HEADROOM, QUEUE_BYTES, QUEUE_MAX, SLOT_BYTES, TRANSFER_MAX,
};
pub use validate::{Refusal, ROUND_JUMP_MAX, ROUND_MAX, SLOT_MAX};

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;

/// Heartbeat rounds a leader remembers while it waits for their acks.
const ROUNDS_KEPT: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Role<C, S> {
    Follower,
    Candidate {
        ballot: Ballot,
        /// Phase 1 covers every slot from here on.
        from: Slot,
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
        /// Who promised our ballot: a slot is proposed only once they
        /// include a quorum of its configuration (`members`).
        promisers: u16,
        /// What promisers reported accepted at slots not proposed yet
        /// (the highest ballot's entry per slot): proposed in slot order
        /// as the α-window reaches them.
        reported: BTreeMap<Slot, (Ballot, Entry<C>)>,
        /// An entry proposed in our ballot was chosen (a change waits for
        /// it: see `members`).
        own_chosen: bool,
        /// Learners' applied prefixes, as they last reported them.
        progress: BTreeMap<NodeId, Slot>,
        /// A change asked for and not yet proposed (it waits for its turn).
        change: Option<Members>,
        /// Canary 24 only: the configuration this leader counts quorums in,
        /// whatever the log says.
        frozen: Option<Members>,
        /// Slots proposed and not yet chosen: the entry and who accepted it.
        inflight: BTreeMap<Slot, (Entry<C>, u16)>,
        /// Commands waiting for room in the window: at most [`QUEUE_MAX`],
        /// and at most `Config::queue_bytes` (unless one command alone).
        queue: VecDeque<C>,
        /// What the queue weighs ([`Weight`]).
        queued_bytes: usize,
        /// Slots proposed since the last heartbeat start here: a heartbeat
        /// resends only the Accepts older than that (a younger one is
        /// likely still on its way, and resending it only doubles traffic).
        fresh_from: Slot,
        /// Heartbeat rounds awaiting acks: (round, sent at, acks).
        rounds: VecDeque<(u64, u64, u16)>,
        round: u64,
        /// Local time until which this leader holds the lease.
        lease_until: u64,
    },
    /// Wiped or corrupt disk: collecting peers' state; no votes. First
    /// (`fence` zero) a majority of the others report their promises; then
    /// a majority of the others promise `fence`, above all of them, and
    /// report their state, which the rebuild merges.
    Rebuilding {
        replies: u16,
        state: Box<Durable<C, S>>,
        fence: Ballot,
    },
}

/// One Multi-Paxos replica: acceptor, learner, and leader when elected.
///
/// `Eq` and `Hash` cover every field (none is a cache): two nodes are equal
/// when no input could tell them apart, which is what the model checker
/// (`paxsim check`) needs to recognise a state it has visited. Every
/// collection is ordered (`BTreeMap`, `VecDeque`, `Vec`), never hashed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
    /// Messages being sent in parts, one per peer (`transfer`).
    outgoing: BTreeMap<NodeId, transfer::Outgoing>,
    /// Messages arriving in parts, one per peer.
    incoming: BTreeMap<NodeId, transfer::Incoming>,
    /// A [`Timer::Pull`] is set (one at a time, while parts are awaited).
    pull_armed: bool,
    /// Who votes where: each configuration by the first slot it governs
    /// (`members`). Known for every slot below `applied + α`.
    configs: Configs,
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
    assert!(d.accepted.keys().all(|s| d.chosen.contains_key(s)));
}

/// A node's bit in a set of nodes (promises, acks, replies, configurations).
pub fn bit(id: NodeId) -> u16 {
    assert!((id as usize) < MAX_NODES);
    1 << id
}

/// The counters that never go back, to check across one input.
#[derive(Copy, Clone)]
struct Monotone {
    promised: Ballot,
    seen: Ballot,
    applied: Slot,
    base: Slot,
    epoch: u64,
    persist_seq: u64,
    synced_seq: u64,
}

impl<C: Command, S: State> Node<C, S> {
    /// A freshly initialized replica (its disk holds only [`Write::Init`]).
    pub fn new(cfg: Config) -> Self {
        let d = Durable {
            initialized: true,
            ..Durable::default()
        };
        let mut node = Self::recover(cfg, d, 0);
        // A brand-new replica has granted no lease.
        node.granted_until = 0;
        assert_eq!(node.promised, Ballot::ZERO);
        assert_eq!(node.applied, 0);
        node
    }

    /// Rebuilds a node from its durable state after a crash, at local time `now`.
    pub fn recover(cfg: Config, mut d: Durable<C, S>, now: u64) -> Self {
        assert!(cfg.n >= 1, "a cluster has at least one node");
        assert!(cfg.n as usize <= MAX_NODES, "at most {MAX_NODES} nodes");
        assert!(cfg.id < cfg.n, "node id out of range");
        assert!(
            cfg.first().well_formed(cfg.n),
            "the first voters are machines of the cluster"
        );
        assert!(
            cfg.window >= 1,
            "a leader needs room for one slot in flight"
        );
        assert!(cfg.batch >= 1, "a slot holds at least one command");
        assert!(
            cfg.slot_bytes >= 1 && cfg.queue_bytes >= 1 && cfg.part_bytes >= 1,
            "byte budgets of zero"
        );
        assert!(
            d.initialized,
            "recovering from a disk that was never initialized"
        );
        for (b, _) in d.accepted.values() {
            assert!(*b <= d.promised, "durable acceptance above the promise");
        }
        let base = d.base();
        assert!(d.accepted.keys().next().is_none_or(|s| *s >= base));
        assert!(d.chosen.keys().next().is_none_or(|s| *s >= base));
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
            outgoing: BTreeMap::new(),
            incoming: BTreeMap::new(),
            pull_armed: false,
            configs: d
                .snapshot
                .as_ref()
                .map_or_else(|| Configs::from([(0, cfg.first())]), |s| s.configs.clone()),
        };
        node.snapshot = d.snapshot;
        assert_eq!(node.base(), base);
        node.assert_invariants();
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
                fence: Ballot::ZERO,
            };
        }
        node.assert_invariants();
        node
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader { .. })
    }
    pub fn is_rebuilding(&self) -> bool {
        matches!(self.role, Role::Rebuilding { .. })
    }
    /// The leader this node believes in (none once it is no member of the
    /// newest configuration it knows: a removed replica's word is stale).
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
            .filter(|_| self.latest().reach() & bit(self.cfg.id) != 0)
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

    /// Start-up: install the durable snapshot, apply the chosen prefix the
    /// node already holds (a restart replays it), and arm the election timer
    /// (a rebuilding node asks its peers instead).
    pub fn start(&mut self, now: u64, out: &mut Vec<Output<C, S>>) {
        assert!(now >= self.now, "a node's clock went backwards");
        assert_eq!(self.epoch, 0, "start runs once, before any timer");
        assert!(matches!(
            self.role,
            Role::Follower | Role::Rebuilding { .. }
        ));
        self.now = now;
        if let Some(snap) = self.pending_install.take() {
            assert_eq!(snap.upto, self.applied, "the snapshot is the start");
            out.push(Output::Install { snap });
        }
        self.advance_applied(out);
        self.ask_rebuild(out);
        self.arm_election(out);
        assert!(self.pending_install.is_none());
        self.assert_invariants();
    }

    pub fn handle(&mut self, now: u64, input: Input<C, S>, out: &mut Vec<Output<C, S>>) {
        assert!(now >= self.now, "a node's clock went backwards");
        let before = self.monotone();
        let emitted = out.len();
        self.now = now;
        match input {
            Input::Receive { from, msg } => {
                assert!(from < self.cfg.n, "a message from outside the cluster");
                self.receive(from, msg, out)
            }
            Input::Timer(Timer::Election { epoch }) => self.on_election_timer(epoch, out),
            Input::Timer(Timer::Heartbeat) => self.heartbeat(true, out),
            Input::Timer(Timer::Pull) => self.on_pull_timer(out),
            Input::Submit(cmd) => self.submit(cmd, out),
            Input::Synced { upto } => self.synced(upto, out),
            Input::Snapshot(snap) => self.take_snapshot(snap, out),
            Input::Reconfigure(change) => self.reconfigure(change, out),
        }
        self.assert_monotone(before);
        self.assert_outputs(&out[emitted..]);
        self.assert_invariants();
    }

    fn receive(&mut self, from: NodeId, msg: Msg<C, S>, out: &mut Vec<Output<C, S>>) {
        assert!(from < self.cfg.n);
        // Network contents are input: refuse what no correct peer sends
        // (`validate`), before any handler's assertions see it.
        // (BUG, canary 14: everything reaches the handlers.)
        let checked = if self.cfg.bugs.trust_peer_messages {
            Ok(())
        } else {
            self.check_msg(from, &msg)
        };
        if let Err(why) = checked {
            out.push(Output::Refused { from, why });
            return;
        }
        // Parts first: a rebuilding replica receives its peers' state in
        // parts too; the whole, once assembled, comes back through here.
        let msg = match msg {
            Msg::Part {
                id,
                total,
                offset,
                bytes,
            } => return self.on_part(from, id, total, offset, bytes, out),
            Msg::Pull { id, offset } => return self.on_pull(from, id, offset, out),
            msg => msg,
        };
        if from != self.cfg.id && self.removed(from) && !self.cfg.bugs.removed_keeps_voting {
            // Its removal governs our applied prefix: nothing it says counts.
            out.push(Output::Refused {
                from,
                why: "a message from a removed replica",
            });
            return;
        }
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
            Msg::Nack { ballot, promised } => self.on_nack(from, ballot, promised, out),
            Msg::Heartbeat {
                ballot,
                commit,
                round,
            } => self.on_heartbeat(from, ballot, commit, round, out),
            Msg::HeartbeatAck { ballot, round } => self.on_heartbeat_ack(from, ballot, round, out),
            Msg::Progress { applied } => self.on_progress(from, applied, out),
            Msg::Query { from: slot } => self.on_query(from, slot, out),
            Msg::Chosen { slot, entry } => self.on_chosen(from, slot, entry, out),
            Msg::Snapshot { snap } => self.on_snapshot(from, snap, out),
            Msg::RebuildQuery { fence } => self.on_rebuild_query(from, fence, out),
            // A rebuilt replica ignores late answers.
            Msg::RebuildState { .. } => {}
            Msg::Part { .. } | Msg::Pull { .. } => unreachable!("handled above"),
        }
    }

    fn arm_election(&mut self, out: &mut Vec<Output<C, S>>) {
        assert!(self.cfg.timing.election_us > 0, "an election timeout of 0");
        self.heard = self.now;
        self.epoch += 1;
        if !self.is_rebuilding() && !self.may_stand() {
            // A learner, a spare or a removed replica never stands: no
            // timer (one is armed when a configuration makes it a voter).
            return;
        }
        out.push(Output::SetTimer {
            timer: Timer::Election { epoch: self.epoch },
            delay_us: self.cfg.timing.election_us,
            jitter_us: self.election_jitter_us(),
        });
    }

    /// The random part of an election timeout (the driver draws it).
    /// BUGGIFY `tight_elections`: a sixteenth, so that followers time out
    /// almost together and stand against each other.
    fn election_jitter_us(&self) -> u64 {
        let j = self.cfg.timing.election_jitter_us;
        if self.cfg.buggify.tight_elections {
            j / 16
        } else {
            j
        }
    }

    // ------------------------------------------------------------- invariants

    fn monotone(&self) -> Monotone {
        Monotone {
            promised: self.promised,
            seen: self.seen,
            applied: self.applied,
            base: self.base(),
            epoch: self.epoch,
            persist_seq: self.persist_seq,
            synced_seq: self.synced_seq,
        }
    }

    /// What no input may take back.
    fn assert_monotone(&self, before: Monotone) {
        assert!(self.promised >= before.promised, "the promise went back");
        assert!(
            self.seen >= before.seen,
            "the highest ballot seen went back"
        );
        assert!(self.applied >= before.applied, "the applied prefix shrank");
        assert!(self.base() >= before.base, "the compaction point went back");
        assert!(self.epoch >= before.epoch);
        assert!(self.persist_seq >= before.persist_seq);
        assert!(self.synced_seq >= before.synced_seq);
    }

    /// What one input emitted: sends within the cluster that reveal only
    /// durable writes (D1), writes and syncs that were issued, applies below
    /// the applied frontier.
    fn assert_outputs(&self, emitted: &[Output<C, S>]) {
        for o in emitted {
            match o {
                Output::Send { to, after, msg } => {
                    assert!(*to < self.cfg.n, "a send outside the cluster");
                    assert!(*after <= self.synced_seq, "a send ahead of its sync");
                    // Whatever can grow went through `whole_or_first_part`
                    // (a message this check finds large is the bug it names).
                    if msg.may_outgrow_a_frame() && !self.cfg.bugs.send_state_whole {
                        let size = postcard::experimental::serialized_size(msg)
                            .expect("a message always encodes");
                        assert!(
                            size <= self.cfg.part_bytes,
                            "a message of {size} bytes sent whole, not in parts"
                        );
                    }
                }
                Output::Persist { seq, .. } => {
                    assert!(*seq >= 1);
                    assert!(*seq <= self.persist_seq);
                }
                Output::Sync { upto } => assert!(*upto <= self.persist_seq),
                Output::Apply { slot, .. } => assert!(*slot < self.applied),
                Output::Install { snap } => assert!(snap.upto <= self.applied),
                Output::Elected { ballot } => assert_eq!(ballot.node, self.cfg.id),
                Output::Lease { ballot, .. } => {
                    assert!(self.cfg.timing.lease_us > 0, "a lease with leases off");
                    assert!(
                        matches!(&self.role, Role::Leader { ballot: b, .. } if b == ballot),
                        "a lease counted on by a node not leading in its ballot"
                    );
                }
                Output::NotLeader { leader, .. } => {
                    assert!(leader.is_none_or(|l| l != self.cfg.id));
                }
                Output::Buggified(rare) => {
                    assert!(self.cfg.buggify.steers(*rare), "{rare:?} with its knob off");
                }
                Output::Refused { from, .. } => assert!(*from < self.cfg.n),
                Output::Reconfigure { outcome, .. } => {
                    assert!(
                        outcome.is_err() || self.is_leader(),
                        "only a leader changes"
                    );
                }
                Output::SetTimer { .. } | Output::Busy { .. } | Output::Rebuilt => {}
            }
        }
    }

    /// The node's state invariants, each checked in O(log n).
    fn assert_invariants(&self) {
        let n = self.cfg.n;
        self.assert_transfers();
        assert!(
            self.synced_seq <= self.persist_seq,
            "synced a write never issued"
        );
        assert!(self.promised <= self.seen, "promised a ballot never seen");
        assert!(
            self.base() <= self.applied,
            "compacted past the applied prefix"
        );
        let base = self.base();
        assert!(self.accepted.keys().next().is_none_or(|s| *s >= base));
        assert!(self.chosen.keys().next().is_none_or(|s| *s >= base));
        self.assert_configs();
        assert!(self.leader.is_none_or(|l| l < n));
        assert!(self.grantee.is_none_or(|g| g < n));
        assert!(
            self.heard <= self.now,
            "heard from the leader in the future"
        );
        match &self.role {
            Role::Follower => {}
            Role::Candidate {
                ballot,
                promises,
                from,
                ..
            } => {
                assert_eq!(ballot.node, self.cfg.id, "standing in another's ballot");
                assert!(
                    *ballot <= self.promised,
                    "a candidate promises itself first"
                );
                // (No "a quorum elects" here: a snapshot installed or taken
                // meanwhile changes which configurations the window holds,
                // so the promises may come to suffice between two of them;
                // the next promise or timeout settles it.)
                let _ = (from, promises);
                assert_eq!(u32::from(*promises) >> n, 0, "a promise from outside");
            }
            Role::Leader {
                ballot,
                next,
                top,
                inflight,
                queue,
                queued_bytes,
                fresh_from,
                rounds,
                round,
                lease_until,
                promisers,
                reported,
                change,
                progress,
                own_chosen: _,
                frozen,
            } => {
                assert!(frozen.is_none() || self.cfg.bugs.ignore_reported_config);
                assert_eq!(ballot.node, self.cfg.id, "leading in another's ballot");
                assert_eq!(u32::from(*promisers) >> n, 0, "a promise from outside");
                assert!(reported.keys().next().is_none_or(|s| s >= next));
                assert!(change.is_none_or(|m| m.well_formed(n)));
                assert!(progress.keys().all(|id| *id < n));
                // The α-window: a leader proposes only where it knows who votes.
                assert!(
                    *next <= self.horizon() || inflight.is_empty(),
                    "proposed beyond the α-window"
                );
                assert!(*ballot <= self.promised, "a leader promised its own ballot");
                assert!(
                    reported.keys().next_back().is_none_or(|s| s < top),
                    "new commands go above the re-proposed slots"
                );
                assert!(inflight.keys().next_back().is_none_or(|s| s < next));
                assert!(queue.len() <= QUEUE_MAX, "the queue outgrew its bound");
                assert!(
                    !queue.is_empty() || *queued_bytes == 0,
                    "an empty queue weighs"
                );
                assert!(
                    *queued_bytes <= self.cfg.queue_bytes || queue.len() == 1,
                    "the queue outgrew its byte budget"
                );
                assert!(*fresh_from <= *next);
                assert!(rounds.len() <= ROUNDS_KEPT);
                assert!(*round >= 1, "a new leader's heartbeat is round 1");
                assert!(rounds.back().is_none_or(|r| r.0 == *round));
                assert!(*lease_until <= self.now + self.lease_span());
            }
            Role::Rebuilding { replies, fence, .. } => {
                assert!(*fence == Ballot::ZERO || fence.node == self.cfg.id);
                assert_eq!(self.promised, Ballot::ZERO, "a rebuilding replica votes");
                assert!(self.accepted.is_empty(), "a rebuilding replica accepts");
                assert!(self.chosen.is_empty());
                assert_eq!(self.applied, 0);
                assert_eq!(self.persist_seq, 0, "Rebuilt must be the first record");
                assert_eq!(replies & bit(self.cfg.id), 0, "it asks only the others");
            }
        }
    }
}

#[cfg(test)]
mod tests;
