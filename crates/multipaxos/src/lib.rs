//! Multi-Paxos: a replicated log as a sans-IO state machine.
//!
//! The log is a sequence of Paxos instances (*slots*). Running both phases
//! per slot would cost two round trips per command, so a distinguished
//! *leader* runs Phase 1 once, for every slot from its first unchosen slot
//! on. Acceptors answer with everything they accepted from that slot up. The
//! leader then owns the log under its ballot. It first re-proposes, under
//! its own ballot, each slot a Phase-1 quorum reported as accepted (the
//! highest-ballot value per slot) and fills the gaps below the highest such
//! slot with no-ops. After that it serves new commands with Phase 2 alone,
//! several slots in flight at once, for as long as its ballot stands. An
//! acceptor that promised a higher ballot rejects its Accepts, so a deposed
//! leader cannot write.
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
//! For any other slot it asks a peer (`Query`) for the chosen entry.
//!
//! Like the Basic Paxos core, a node's promises and acceptances are durable
//! before it replies: every change is a [`Write`] followed by a sync, and
//! the replies that depend on it are parked until the driver reports the
//! sync complete.
//!
//! Not yet here (issue 3 continues): snapshots and compaction, checksummed
//! records and rebuilding a wiped replica, command batching, and the
//! harness scenario that drives this core.

use paxos::{Ballot, NodeId, MAX_NODES};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;

pub type Slot = u64;

/// A log entry: a client command, or a no-op filling a gap.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Entry<C> {
    Noop,
    Cmd(C),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg<C> {
    /// Phase 1 for every slot from `from` on.
    Prepare {
        ballot: Ballot,
        from: Slot,
    },
    /// Everything this acceptor accepted at slots `>= from`.
    Promise {
        ballot: Ballot,
        accepted: Vec<(Slot, Ballot, Entry<C>)>,
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
    Heartbeat {
        ballot: Ballot,
        commit: Slot,
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
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Follower: no word from a leader; stand for election (`epoch` guards staleness).
    Election { epoch: u64 },
    /// Leader: time to send heartbeats.
    Heartbeat,
}

/// One durable change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write<C> {
    Promise(Ballot),
    Accept {
        slot: Slot,
        ballot: Ballot,
        entry: Entry<C>,
    },
    Chosen {
        slot: Slot,
        entry: Entry<C>,
    },
}

/// The durable state a node is rebuilt from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Durable<C> {
    pub promised: Ballot,
    pub accepted: BTreeMap<Slot, (Ballot, Entry<C>)>,
    pub chosen: BTreeMap<Slot, Entry<C>>,
}

impl<C> Default for Durable<C> {
    fn default() -> Self {
        Durable {
            promised: Ballot::ZERO,
            accepted: BTreeMap::new(),
            chosen: BTreeMap::new(),
        }
    }
}

impl<C: Clone> Durable<C> {
    /// Applies one write (what the storage shim does when it becomes durable).
    pub fn apply(&mut self, w: &Write<C>) {
        match w {
            Write::Promise(b) => self.promised = self.promised.max(*b),
            Write::Accept {
                slot,
                ballot,
                entry,
            } => {
                self.accepted.insert(*slot, (*ballot, entry.clone()));
            }
            Write::Chosen { slot, entry } => {
                self.chosen.insert(*slot, entry.clone());
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<C> {
    Receive {
        from: NodeId,
        msg: Msg<C>,
    },
    Timer(Timer),
    /// A client command submitted to this node.
    Submit(C),
    Synced {
        upto: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<C> {
    Send {
        to: NodeId,
        msg: Msg<C>,
    },
    Persist {
        seq: u64,
        write: Write<C>,
    },
    Sync {
        upto: u64,
    },
    SetTimer {
        timer: Timer,
        delay_us: u64,
        jitter_us: u64,
    },
    /// Slot `slot` is chosen with `entry`; emitted in slot order, once each.
    Apply {
        slot: Slot,
        entry: Entry<C>,
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
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    pub election_us: u64,
    pub election_jitter_us: u64,
    pub heartbeat_us: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            election_us: 150_000,
            election_jitter_us: 150_000,
            heartbeat_us: 50_000,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub n: u8,
    pub id: NodeId,
    pub timing: Timing,
    /// Slots a leader may have in flight at once (pipelining).
    pub window: u64,
}

impl Config {
    pub fn quorum(&self) -> usize {
        self.n as usize / 2 + 1
    }
}

#[derive(Clone, Debug)]
enum Role<C> {
    Follower,
    Candidate {
        ballot: Ballot,
        from: Slot,
        promises: u16,
        /// Highest-ballot acceptance reported per slot.
        reported: BTreeMap<Slot, (Ballot, Entry<C>)>,
    },
    Leader {
        ballot: Ballot,
        next: Slot,
        /// Slots proposed and not yet chosen: the entry and who accepted it.
        inflight: BTreeMap<Slot, (Entry<C>, u16)>,
        queue: VecDeque<C>,
    },
}

/// One Multi-Paxos replica: acceptor, learner, and leader when elected.
#[derive(Clone, Debug)]
pub struct Node<C> {
    cfg: Config,
    promised: Ballot,
    accepted: BTreeMap<Slot, (Ballot, Entry<C>)>,
    chosen: BTreeMap<Slot, Entry<C>>,
    /// Every slot below this is chosen and applied.
    applied: Slot,
    /// The highest ballot seen (to pick a higher one when standing).
    seen: Ballot,
    leader: Option<NodeId>,
    epoch: u64,
    role: Role<C>,
    persist_seq: u64,
    synced_seq: u64,
    parked: Vec<(u64, NodeId, Msg<C>)>,
}

fn bit(id: NodeId) -> u16 {
    debug_assert!((id as usize) < MAX_NODES);
    1 << id
}

impl<C: Clone + Debug + PartialEq> Node<C> {
    pub fn new(cfg: Config) -> Self {
        Self::recover(cfg, Durable::default())
    }

    /// Rebuilds a node from its durable state after a crash.
    pub fn recover(cfg: Config, d: Durable<C>) -> Self {
        assert!(cfg.n >= 1 && cfg.n as usize <= MAX_NODES);
        assert!(cfg.id < cfg.n);
        assert!(cfg.window >= 1);
        for (b, _) in d.accepted.values() {
            assert!(*b <= d.promised, "durable acceptance above the promise");
        }
        Node {
            cfg,
            promised: d.promised,
            accepted: d.accepted,
            chosen: d.chosen,
            applied: 0,
            seen: d.promised,
            leader: None,
            epoch: 0,
            role: Role::Follower,
            persist_seq: 0,
            synced_seq: 0,
            parked: Vec::new(),
        }
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader { .. })
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
    /// Commands this node, as leader, has queued or in flight.
    pub fn pending(&self) -> usize {
        match &self.role {
            Role::Leader {
                inflight, queue, ..
            } => inflight.len() + queue.len(),
            _ => 0,
        }
    }

    /// Start-up: arm the election timer, and apply the chosen prefix the
    /// node already holds (a restart replays it).
    pub fn start(&mut self, out: &mut Vec<Output<C>>) {
        self.advance_applied(out);
        self.arm_election(out);
    }

    pub fn handle(&mut self, input: Input<C>, out: &mut Vec<Output<C>>) {
        match input {
            Input::Receive { from, msg } => {
                assert!(from < self.cfg.n);
                self.receive(from, msg, out)
            }
            Input::Timer(Timer::Election { epoch }) => {
                if epoch == self.epoch && !self.is_leader() {
                    self.stand(out);
                }
            }
            Input::Timer(Timer::Heartbeat) => self.heartbeat(out),
            Input::Submit(cmd) => self.submit(cmd, out),
            Input::Synced { upto } => self.synced(upto, out),
        }
    }

    // ---------------------------------------------------------------- storage

    fn persist(&mut self, write: Write<C>, out: &mut Vec<Output<C>>) -> u64 {
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

    fn send_after(&mut self, seq: u64, to: NodeId, msg: Msg<C>, out: &mut Vec<Output<C>>) {
        if seq <= self.synced_seq {
            out.push(Output::Send { to, msg });
        } else {
            self.parked.push((seq, to, msg));
        }
    }

    fn synced(&mut self, upto: u64, out: &mut Vec<Output<C>>) {
        assert!(upto <= self.persist_seq, "sync of a write never issued");
        if upto <= self.synced_seq {
            return;
        }
        self.synced_seq = upto;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(s, _, _)| *s <= upto);
        self.parked = waiting;
        for (_, to, msg) in ready {
            out.push(Output::Send { to, msg });
        }
    }

    fn broadcast(&mut self, seq: u64, msg: Msg<C>, out: &mut Vec<Output<C>>) {
        for to in 0..self.cfg.n {
            self.send_after(seq, to, msg.clone(), out);
        }
    }

    // --------------------------------------------------------------- election

    fn arm_election(&mut self, out: &mut Vec<Output<C>>) {
        self.epoch += 1;
        out.push(Output::SetTimer {
            timer: Timer::Election { epoch: self.epoch },
            delay_us: self.cfg.timing.election_us,
            jitter_us: self.cfg.timing.election_jitter_us,
        });
    }

    /// Runs Phase 1 for every slot from the first unchosen one.
    fn stand(&mut self, out: &mut Vec<Output<C>>) {
        let ballot = Ballot {
            round: self.seen.round + 1,
            node: self.cfg.id,
        };
        self.seen = ballot;
        let from = self.applied;
        self.role = Role::Candidate {
            ballot,
            from,
            promises: 0,
            reported: BTreeMap::new(),
        };
        self.leader = None;
        // Our own promise is durable before any Prepare leaves: otherwise a
        // restart could stand again with this very ballot and propose other
        // entries under it.
        self.promised = ballot;
        let seq = self.persist(Write::Promise(ballot), out);
        self.broadcast(seq, Msg::Prepare { ballot, from }, out);
        self.arm_election(out);
    }

    fn on_prepare(&mut self, from: NodeId, ballot: Ballot, slot: Slot, out: &mut Vec<Output<C>>) {
        if ballot < self.promised {
            let promised = self.promised;
            out.push(Output::Send {
                to: from,
                msg: Msg::Nack { ballot, promised },
            });
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
        self.send_after(seq, from, Msg::Promise { ballot, accepted }, out);
    }

    fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        accepted: Vec<(Slot, Ballot, Entry<C>)>,
        out: &mut Vec<Output<C>>,
    ) {
        let quorum = self.cfg.quorum();
        let Role::Candidate {
            ballot: mine,
            from: first,
            promises,
            reported,
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
        *promises |= bit(from);
        if (promises.count_ones() as usize) < quorum {
            return;
        }
        // Elected. Re-propose every reported slot under our ballot and fill
        // the gaps below the highest with no-ops, before any new command.
        let first = *first;
        let reported = std::mem::take(reported);
        let top = reported
            .keys()
            .next_back()
            .map_or(first, |s| s + 1)
            .max(first);
        self.role = Role::Leader {
            ballot,
            next: top,
            inflight: BTreeMap::new(),
            queue: VecDeque::new(),
        };
        self.leader = Some(self.cfg.id);
        out.push(Output::Elected { ballot });
        for slot in first..top {
            if self.chosen.contains_key(&slot) {
                let entry = self.chosen[&slot].clone();
                self.propose(slot, entry, out);
                continue;
            }
            let entry = reported.get(&slot).map_or(Entry::Noop, |(_, e)| e.clone());
            self.propose(slot, entry, out);
        }
        // The Accepts just sent announce the new leader; heartbeats follow.
        out.push(Output::SetTimer {
            timer: Timer::Heartbeat,
            delay_us: self.cfg.timing.heartbeat_us,
            jitter_us: 0,
        });
    }

    fn step_down(&mut self, out: &mut Vec<Output<C>>) {
        if let Role::Leader { queue, .. } = std::mem::replace(&mut self.role, Role::Follower) {
            for cmd in queue {
                out.push(Output::NotLeader { cmd, leader: None });
            }
        }
        self.arm_election(out);
    }

    // ----------------------------------------------------------------- leader

    fn submit(&mut self, cmd: C, out: &mut Vec<Output<C>>) {
        let Role::Leader { queue, .. } = &mut self.role else {
            out.push(Output::NotLeader {
                cmd,
                leader: self.leader,
            });
            return;
        };
        queue.push_back(cmd);
        self.pump(out);
    }

    /// Proposes queued commands while the pipeline window has room.
    fn pump(&mut self, out: &mut Vec<Output<C>>) {
        loop {
            let window = self.cfg.window;
            let Role::Leader {
                next,
                inflight,
                queue,
                ..
            } = &mut self.role
            else {
                return;
            };
            if inflight.len() as u64 >= window {
                return;
            }
            let Some(cmd) = queue.pop_front() else { return };
            let slot = *next;
            self.propose(slot, Entry::Cmd(cmd), out);
        }
    }

    fn propose(&mut self, slot: Slot, entry: Entry<C>, out: &mut Vec<Output<C>>) {
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
        inflight.insert(slot, (entry.clone(), 0));
        self.broadcast_accept(ballot, slot, entry, commit, out);
    }

    fn broadcast_accept(
        &mut self,
        ballot: Ballot,
        slot: Slot,
        entry: Entry<C>,
        commit: Slot,
        out: &mut Vec<Output<C>>,
    ) {
        let msg = Msg::Accept {
            ballot,
            slot,
            entry,
            commit,
        };
        self.broadcast(self.persist_seq, msg, out);
    }

    fn on_accepted(&mut self, from: NodeId, ballot: Ballot, slot: Slot, out: &mut Vec<Output<C>>) {
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

    fn heartbeat(&mut self, out: &mut Vec<Output<C>>) {
        let Role::Leader {
            ballot, inflight, ..
        } = &self.role
        else {
            return;
        };
        let (ballot, commit) = (*ballot, self.applied);
        // Resend what is still in flight: an Accept or Accepted may be lost.
        let resend: Vec<(Slot, Entry<C>)> =
            inflight.iter().map(|(s, (e, _))| (*s, e.clone())).collect();
        for (slot, entry) in resend {
            self.broadcast_accept(ballot, slot, entry, commit, out);
        }
        for to in 0..self.cfg.n {
            if to != self.cfg.id {
                out.push(Output::Send {
                    to,
                    msg: Msg::Heartbeat { ballot, commit },
                });
            }
        }
        out.push(Output::SetTimer {
            timer: Timer::Heartbeat,
            delay_us: self.cfg.timing.heartbeat_us,
            jitter_us: 0,
        });
    }

    // --------------------------------------------------------------- acceptor

    fn on_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        entry: Entry<C>,
        commit: Slot,
        out: &mut Vec<Output<C>>,
    ) {
        if ballot < self.promised {
            let promised = self.promised;
            out.push(Output::Send {
                to: from,
                msg: Msg::Nack { ballot, promised },
            });
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

    /// Hearing from a leader at `ballot`: follow it and reset the election timer.
    fn follow(&mut self, leader: NodeId, ballot: Ballot, out: &mut Vec<Output<C>>) {
        self.seen = self.seen.max(ballot);
        if leader != self.cfg.id {
            if !matches!(self.role, Role::Follower) {
                self.step_down(out);
            } else {
                self.arm_election(out);
            }
            self.leader = Some(leader);
        }
    }

    /// The leader says every slot below `commit` is chosen. Mark chosen only
    /// the slots we hold accepted *in the leader's ballot*; ask for the rest.
    fn commit_upto(
        &mut self,
        leader: NodeId,
        ballot: Ballot,
        commit: Slot,
        out: &mut Vec<Output<C>>,
    ) {
        let mut missing = None;
        for slot in self.applied..commit {
            if self.chosen.contains_key(&slot) {
                continue;
            }
            match self.accepted.get(&slot) {
                Some((b, e)) if *b == ballot => {
                    let e = e.clone();
                    self.learn(slot, e, out);
                }
                _ => {
                    missing.get_or_insert(slot);
                }
            }
        }
        if let Some(from) = missing {
            if leader != self.cfg.id {
                out.push(Output::Send {
                    to: leader,
                    msg: Msg::Query { from },
                });
            }
        }
    }

    fn on_query(&mut self, from: NodeId, slot: Slot, out: &mut Vec<Output<C>>) {
        for (s, e) in self.chosen.range(slot..).take(64) {
            out.push(Output::Send {
                to: from,
                msg: Msg::Chosen {
                    slot: *s,
                    entry: e.clone(),
                },
            });
        }
    }

    // ---------------------------------------------------------------- learner

    fn learn(&mut self, slot: Slot, entry: Entry<C>, out: &mut Vec<Output<C>>) {
        if let Some(e) = self.chosen.get(&slot) {
            assert_eq!(*e, entry, "slot {slot} chosen twice with different entries");
            return;
        }
        self.chosen.insert(slot, entry.clone());
        self.persist(Write::Chosen { slot, entry }, out);
        self.advance_applied(out);
    }

    fn advance_applied(&mut self, out: &mut Vec<Output<C>>) {
        while let Some(e) = self.chosen.get(&self.applied) {
            out.push(Output::Apply {
                slot: self.applied,
                entry: e.clone(),
            });
            self.applied += 1;
        }
    }

    fn receive(&mut self, from: NodeId, msg: Msg<C>, out: &mut Vec<Output<C>>) {
        match msg {
            Msg::Prepare { ballot, from: slot } => self.on_prepare(from, ballot, slot, out),
            Msg::Promise { ballot, accepted } => self.on_promise(from, ballot, accepted, out),
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
            Msg::Heartbeat { ballot, commit } => {
                if ballot >= self.promised {
                    self.follow(from, ballot, out);
                    self.commit_upto(from, ballot, commit, out);
                }
            }
            Msg::Query { from: slot } => self.on_query(from, slot, out),
            Msg::Chosen { slot, entry } => {
                if slot >= self.applied {
                    self.learn(slot, entry, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
