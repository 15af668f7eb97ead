//! The acceptor: Phase 1 (promises) and Phase 2 (acceptances) votes, each
//! made durable before the reply that reveals it leaves.

use crate::{Ballot, Command, Entry, Msg, Node, NodeId, Output, Role, Slot, State, Write};

impl<C: Command, S: State> Node<C, S> {
    /// Refuses `ballot` from `to`: we promised a higher one. A Nack only
    /// makes its proposer retry higher, so it waits for no write.
    fn nack(&self, to: NodeId, ballot: Ballot, out: &mut Vec<Output<C, S>>) {
        assert!(ballot < self.promised, "a Nack refuses a lower ballot");
        let promised = self.promised;
        out.push(Output::Send {
            to,
            msg: Msg::Nack { ballot, promised },
            after: 0,
        });
    }

    /// Phase 1: promise `ballot` and report every acceptance from `slot` on
    /// (and the snapshot, if we compacted past `slot`).
    pub(crate) fn on_prepare(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        out: &mut Vec<Output<C, S>>,
    ) {
        assert!(!self.is_rebuilding(), "a rebuilding replica does not vote");
        assert_eq!(ballot.node, from, "a Prepare carries its sender's ballot");
        assert!(ballot.round >= 1, "ballot zero is never proposed");
        if ballot < self.promised {
            // First, voter or not: the candidate learns of the higher
            // ballot and stands above it (a lagging replica that stood in a
            // higher ballot, and cannot promise the leader's next one, would
            // otherwise reject that leader's Accepts for ever, one round
            // ahead of it).
            return self.nack(from, ballot, out);
        }
        if !self.may_promise(slot) {
            // Not a voter from `slot` on, or we do not know who votes there
            // yet: no promise. The candidate knows the log to `slot`; if we
            // lag behind it, catching up may tell us we vote (a learner
            // whose promotion we have not applied yet).
            if slot > self.applied {
                self.query_leader(from, self.applied, out);
            } else if slot < self.applied && from != self.cfg.id {
                // The candidate lags behind us (what it asks for is chosen
                // here, maybe compacted, and who voted there forgotten):
                // help it catch up, as if it had asked; it stands again
                // from further on.
                self.on_query(from, slot, out);
            }
            // A higher ballot is about: a leader or candidate of a lower one
            // steps down, vote or no vote (a deposed leader that went on
            // would announce a commit index over what others chose).
            self.seen = self.seen.max(ballot);
            if ballot > self.promised && !matches!(self.role, Role::Follower) {
                self.step_down(out);
            }
            return;
        }
        if from != self.cfg.id && self.lease_forbids(from) {
            // A lease we granted is running: stay silent (the candidate
            // retries after its election timeout).
            return;
        }
        let fresh = ballot > self.promised;
        if fresh {
            self.promised = ballot;
            self.seen = self.seen.max(ballot);
            if ballot.node != self.cfg.id {
                self.step_down(out);
            }
        }
        assert_eq!(self.promised, ballot, "a promise is for the highest ballot");
        // A promise already made (a duplicated or resent Prepare, or our
        // own after `stand`) is on disk or on its way: no second record.
        // The answer waits for every write issued so far, which covers it.
        let seq = if fresh {
            self.persist(Write::Promise(ballot), out)
        } else {
            self.persist_seq
        };
        let accepted: Vec<_> = self
            .accepted
            .range(slot..)
            .map(|(s, (b, e))| {
                assert!(*b <= ballot, "an acceptance above the promise");
                (*s, *b, e.clone())
            })
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

    /// Phase 2: accept `entry` at `slot` under `ballot` unless we promised a
    /// higher ballot; then learn what the leader's commit index allows.
    pub(crate) fn on_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        entry: Entry<C>,
        commit: Slot,
        out: &mut Vec<Output<C, S>>,
    ) {
        assert!(!self.is_rebuilding(), "a rebuilding replica does not vote");
        assert_eq!(ballot.node, from, "an Accept carries its leader's ballot");
        assert!(ballot.round >= 1, "ballot zero is never proposed");
        if ballot < self.promised && !self.cfg.bugs.deposed_leader_writes {
            return self.nack(from, ballot, out);
        }
        if slot < self.base() {
            // Compacted here, so chosen: the sender is behind.
            if let Some(snap) = self.snapshot.clone() {
                self.send_after(0, from, Msg::Snapshot { snap }, out);
            }
            return;
        }
        self.follow(from, ballot, out);
        if !self.votes_at(slot) {
            // Learn what the commit index allows first: it may tell us who
            // votes at `slot`.
            self.commit_upto(from, ballot, commit, out);
            if !self.votes_at(slot) {
                // A learner, a spare, a voter of other slots, or one that
                // lags: no vote.
                return;
            }
        }
        if self.cfg.bugs.config_when_received {
            self.canary_config_on_accept(slot, &entry);
        }
        if ballot > self.promised {
            self.promised = ballot;
            self.persist(Write::Promise(ballot), out);
        }
        // (With canary 1 a lower ballot is accepted too: never a higher one.)
        assert!(ballot <= self.promised, "accepted above the promise");
        assert!(slot >= self.base());
        // (BUG, canary 13: every copy is written again.)
        let again = !self.cfg.bugs.rewrite_resent_accepts
            && matches!(self.accepted.get(&slot), Some((b, e)) if *b == ballot && *e == entry);
        let seq = if again {
            // The leader resent what we accepted already (it resends every
            // Accept in flight each heartbeat): the acceptance is on disk or
            // on its way, so no second record and no second fsync; the
            // answer waits for every write issued so far, which covers it.
            // (Each copy used to be written and fsynced again: under large
            // values and load, WALs of gigabytes and a cluster that stalled.)
            self.persist_seq
        } else {
            self.accepted.insert(slot, (ballot, entry.clone()));
            self.persist(
                Write::Accept {
                    slot,
                    ballot,
                    entry,
                },
                out,
            )
        };
        self.send_after(seq, from, Msg::Accepted { ballot, slot }, out);
        self.commit_upto(from, ballot, commit, out);
    }

    /// Hearing from a leader at `ballot`: follow it, grant it a lease, and
    /// reset the election timer.
    pub(crate) fn follow(&mut self, leader: NodeId, ballot: Ballot, out: &mut Vec<Output<C, S>>) {
        assert!(leader < self.cfg.n);
        assert_eq!(ballot.node, leader, "a leader speaks in its own ballot");
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
            assert!(matches!(self.role, Role::Follower), "following another");
        }
        assert!(self.seen >= ballot);
    }
}
