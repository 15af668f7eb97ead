//! What a peer's message must satisfy before any handler sees it.
//!
//! **Network contents are input, not invariants.** A message comes from
//! another process, which may run a buggy build, a different version, or
//! something that is not a replica at all; the transport tells the node who
//! sent it (`from`) and nothing more. So every field a handler relies on is
//! checked here, once, against what a correct peer could have sent and
//! against the receiver's own state, and a message that fails is *refused*:
//! nothing of it reaches the node's state or its disk, and the node reports
//! [`Output::Refused`](crate::Output::Refused) so the driver can count and
//! log it. The handlers keep their `assert!`s: after this gate they guard
//! only what the node itself guarantees.
//!
//! What cannot be told from a lie is not refused here: Paxos tolerates
//! crashes and lost, duplicated or delayed messages, not peers that lie
//! about what they accepted or what was chosen. Those are kept out by
//! authenticating peers, not by validation.

use crate::{Ballot, Command, Entry, Msg, Node, NodeId, Slot, Snap, State, TRANSFER_MAX};

/// The highest slot (and commit index) a message may name. A log never
/// gets near it (2^56 slots at a million a second take two thousand
/// years), and everything below it leaves room for `slot + 1`.
pub const SLOT_MAX: Slot = 1 << 56;

/// The round bounds belong to the ballot (`paxos`): a message naming a
/// round above `ROUND_MAX` is refused, and a node whose rounds ran out stops
/// standing instead of overflowing (it says so with
/// [`Output::Refused`](crate::Output::Refused) on its own id); a proposal
/// more than `ROUND_JUMP_MAX` above every round seen is refused, so that no
/// single message can use up the rounds that are left. A node that missed
/// more elections than that catches up by rebuilding, whose state is not
/// held to it.
pub use paxos::{ROUND_JUMP_MAX, ROUND_MAX};

/// Why a message was refused: a short, fixed phrase (for counters and logs).
pub type Refusal = &'static str;

impl<C: Command, S: State> Node<C, S> {
    /// A ballot some node of this cluster could own, in a usable round.
    fn ballot_ok(&self, b: Ballot) -> Result<(), Refusal> {
        if b.node >= self.cfg.n {
            return Err("a ballot of a node outside the cluster");
        }
        if b.round > ROUND_MAX {
            return Err("a ballot round above the maximum");
        }
        Ok(())
    }

    /// A round no further above everything seen than a correct peer gets.
    fn near(&self, b: Ballot) -> Result<(), Refusal> {
        if b.round > self.seen.round.saturating_add(ROUND_JUMP_MAX) {
            return Err("a ballot round far above any seen");
        }
        Ok(())
    }

    /// A ballot the sender `from` proposes in: its own, round 1 or more.
    fn own_ballot(&self, from: NodeId, b: Ballot) -> Result<(), Refusal> {
        self.ballot_ok(b)?;
        self.near(b)?;
        if b.node != from {
            return Err("a ballot not owned by its sender");
        }
        if b.round == 0 {
            return Err("a proposal in ballot zero");
        }
        Ok(())
    }

    /// An answer to one of our ballots.
    fn our_ballot(&self, b: Ballot) -> Result<(), Refusal> {
        self.ballot_ok(b)?;
        if b.node != self.cfg.id {
            return Err("an answer to a ballot that is not ours");
        }
        Ok(())
    }

    fn slot_ok(s: Slot) -> Result<(), Refusal> {
        if s > SLOT_MAX {
            return Err("a slot or commit index beyond the maximum");
        }
        Ok(())
    }

    /// An entry a correct replica could propose: a configuration of this
    /// cluster's machines, whole.
    fn entry_ok(&self, e: &Entry<C>) -> Result<(), Refusal> {
        match e {
            Entry::Config(m) if !m.well_formed(self.cfg.n) => {
                Err("a configuration out of shape or naming no machine of ours")
            }
            _ => Ok(()),
        }
    }

    /// A snapshot's configurations: some, each whole, the first governing
    /// its base.
    fn snap_ok(&self, s: &Snap<S>) -> Result<(), Refusal> {
        Self::slot_ok(s.upto)?;
        match s.configs.keys().next() {
            None => return Err("a snapshot without its configuration"),
            Some(k) if *k > s.upto => return Err("a snapshot whose configuration starts late"),
            _ => {}
        }
        for (k, m) in &s.configs {
            Self::slot_ok(*k)?;
            self.entry_ok(&Entry::Config(*m))?;
            if *k >= s.upto.saturating_add(self.cfg.alpha()) {
                // Only changes below `upto` are in it: they govern from
                // below `upto + α`.
                return Err("a snapshot with a configuration beyond its reach");
            }
        }
        if !crate::types::configs_chain_ok(&s.configs) {
            return Err("a snapshot whose configurations do not follow each other");
        }
        Ok(())
    }

    fn peer_only(&self, from: NodeId) -> Result<(), Refusal> {
        if from == self.cfg.id {
            return Err("a message only peers send, from this node itself");
        }
        Ok(())
    }

    /// `Ok` if `msg` from `from` is one a correct peer could send to this
    /// node now; `Err` says what is wrong with it.
    pub(crate) fn check_msg(&self, from: NodeId, msg: &Msg<C, S>) -> Result<(), Refusal> {
        match msg {
            Msg::Prepare { ballot, from: slot } => {
                self.own_ballot(from, *ballot)?;
                Self::slot_ok(*slot)
            }
            Msg::Promise {
                ballot,
                accepted,
                snapshot,
            } => {
                self.our_ballot(*ballot)?;
                let mut last = None;
                for (slot, b, e) in accepted {
                    Self::slot_ok(*slot)?;
                    self.ballot_ok(*b)?;
                    self.entry_ok(e)?;
                    if b > ballot {
                        return Err("a promise reporting an acceptance above its ballot");
                    }
                    if last.is_some_and(|l| l >= *slot) {
                        return Err("a promise reporting slots out of order");
                    }
                    last = Some(*slot);
                }
                match snapshot {
                    Some(s) => self.snap_ok(s),
                    None => Ok(()),
                }
            }
            Msg::Accept {
                ballot,
                slot,
                commit,
                entry,
            } => {
                self.own_ballot(from, *ballot)?;
                Self::slot_ok(*slot)?;
                self.entry_ok(entry)?;
                Self::slot_ok(*commit)
            }
            Msg::Accepted { ballot, slot } => {
                self.our_ballot(*ballot)?;
                Self::slot_ok(*slot)
            }
            Msg::Nack { ballot, promised } => {
                self.our_ballot(*ballot)?;
                self.ballot_ok(*promised)?;
                self.near(*promised)?;
                if promised <= ballot {
                    return Err("a Nack that carries no higher promise");
                }
                Ok(())
            }
            Msg::Heartbeat { ballot, commit, .. } => {
                self.peer_only(from)?;
                self.own_ballot(from, *ballot)?;
                Self::slot_ok(*commit)
            }
            Msg::HeartbeatAck { ballot, .. } => {
                self.peer_only(from)?;
                self.our_ballot(*ballot)?;
                if self.cfg.timing.lease_us == 0 {
                    return Err("a lease grant with leases off");
                }
                Ok(())
            }
            Msg::Query { from: slot } | Msg::Progress { applied: slot } => {
                self.peer_only(from)?;
                Self::slot_ok(*slot)
            }
            Msg::Chosen { slot, entry } => {
                self.peer_only(from)?;
                Self::slot_ok(*slot)?;
                self.entry_ok(entry)?;
                match self.chosen.get(slot) {
                    Some(mine) if mine != entry => Err("a chosen entry that contradicts ours"),
                    _ => Ok(()),
                }
            }
            Msg::Snapshot { snap } => {
                if snap.upto == 0 {
                    return Err("a snapshot of no slot");
                }
                self.snap_ok(snap)
            }
            Msg::RebuildQuery { fence } => {
                self.peer_only(from)?;
                if *fence != Ballot::ZERO {
                    self.own_ballot(from, *fence)?;
                }
                Ok(())
            }
            Msg::RebuildState { state } => {
                self.peer_only(from)?;
                if !state.initialized {
                    return Err("a rebuild state from a disk never initialized");
                }
                self.ballot_ok(state.promised)?;
                let base = state.base();
                Self::slot_ok(base)?;
                if let Some(s) = &state.snapshot {
                    self.snap_ok(s)?;
                }
                for (slot, (b, e)) in &state.accepted {
                    Self::slot_ok(*slot)?;
                    self.ballot_ok(*b)?;
                    self.entry_ok(e)?;
                    if *slot < base {
                        return Err("a rebuild state accepting below its snapshot");
                    }
                    if *b > state.promised {
                        return Err("a rebuild state accepting above its promise");
                    }
                }
                for (slot, e) in &state.chosen {
                    Self::slot_ok(*slot)?;
                    self.entry_ok(e)?;
                    if *slot < base {
                        return Err("a rebuild state choosing below its snapshot");
                    }
                }
                Ok(())
            }
            Msg::Part {
                total,
                offset,
                bytes,
                ..
            } => {
                if bytes.is_empty() {
                    return Err("an empty part");
                }
                if *total > TRANSFER_MAX {
                    return Err("a message in parts over the transfer maximum");
                }
                if offset
                    .checked_add(bytes.len() as u64)
                    .is_none_or(|end| end > *total)
                {
                    return Err("a part beyond its message's end");
                }
                Ok(())
            }
            Msg::Pull { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
