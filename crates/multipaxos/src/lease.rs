//! Heartbeats and leader leases: the leader's heartbeats carry its commit
//! index and collect lease grants; a follower that grants a lease promises
//! no other candidate until it runs out.

use crate::{
    bit, Ballot, Buggified, Command, Entry, Msg, Node, NodeId, Output, Role, Slot, State, Timer,
    ROUNDS_KEPT,
};

impl<C: Command, S: State> Node<C, S> {
    /// May the leader answer a read from its own state at local time `now`?
    /// Only while it holds a lease (no other leader can exist) and has
    /// applied everything earlier leaders may have had chosen.
    pub fn lease_read_ok(&self, now: u64) -> bool {
        match &self.role {
            Role::Leader { lease_until, .. } => {
                self.cfg.timing.lease_us > 0 && now < *lease_until && self.lease_usable()
            }
            _ => false,
        }
    }

    /// Whether this leader's state can serve reads at all: it applied
    /// everything earlier leaders may have had chosen (`top`), and its
    /// ballot's promisers include a majority of every configuration it
    /// knows to govern from its applied prefix to its horizon. With
    /// membership changes the second matters: a leader elected by an old
    /// configuration's voters does not hold off a leader of a newer one
    /// it has not heard of, and may lag behind that one's writes; once its
    /// promisers cover every configuration up to its horizon, no slot
    /// beyond what it applied can be chosen in a lower ballot (each such
    /// slot's configuration would be covered, so reported, so applied).
    pub(crate) fn lease_usable(&self) -> bool {
        match &self.role {
            Role::Leader { top, promisers, .. } => {
                self.applied >= *top
                    && self
                        .window(self.applied, self.horizon())
                        .all(|m| m.is_quorum(*promisers))
            }
            _ => false,
        }
    }

    /// How long a lease lasts on the leader's clock: the followers' `lease_us`
    /// shortened so that it ends first even if the leader's clock runs slow
    /// and a follower's fast by the drift bound. (BUGGIFY `short_lease`: no
    /// longer than one heartbeat interval, so it runs out just as the next
    /// round leaves. A leader may always count less than it was granted.)
    pub(crate) fn lease_span(&self) -> u64 {
        let t = self.cfg.timing;
        let span = if self.cfg.bugs.lease_ignores_drift {
            t.lease_us // BUG (canary 6)
        } else {
            let ppm = t.drift_ppm.min(999_999);
            let span =
                (t.lease_us as u128 * (1_000_000 - ppm) as u128 / (1_000_000 + ppm) as u128) as u64;
            assert!(span <= t.lease_us, "drift only shortens a lease");
            span
        };
        if self.cfg.buggify.short_lease {
            span.min(t.heartbeat_us)
        } else {
            span
        }
    }

    /// Whether a lease this acceptor granted forbids promising `candidate`.
    pub(crate) fn lease_forbids(&self, candidate: NodeId) -> bool {
        assert!(candidate < self.cfg.n);
        self.now < self.granted_until && self.grantee != Some(candidate)
    }

    /// Leader: a heartbeat round to every other node (with the commit index),
    /// and with `resend` every Accept still in flight; then re-arm.
    pub(crate) fn heartbeat(&mut self, resend: bool, out: &mut Vec<Output<C, S>>) {
        let now = self.now;
        let commit = self.applied;
        let Role::Leader {
            ballot,
            next,
            inflight,
            rounds,
            round,
            lease_until,
            fresh_from,
            ..
        } = &mut self.role
        else {
            // A timer left over from a leadership that ended.
            return;
        };
        let ballot = *ballot;
        assert!(rounds.len() <= ROUNDS_KEPT);
        assert!(rounds.back().is_none_or(|(_, sent, _)| *sent <= now));
        if self.cfg.buggify.short_lease && *lease_until != 0 && *lease_until <= now {
            // The lease a quorum granted ran out before this round: until
            // the round's acks come back, reads go through the log.
            assert!(self.cfg.timing.lease_us > 0, "a lease with leases off");
            out.push(Output::Buggified(Buggified::LeaseLapsed));
        }
        *round += 1;
        if self.cfg.timing.lease_us > 0 {
            // The leader's own vote is in every lease quorum: it refuses
            // other candidates too, for longer than its lease lasts.
            self.grantee = Some(self.cfg.id);
            self.granted_until = now + self.cfg.timing.lease_us;
        }
        let r = *round;
        if rounds.len() == ROUNDS_KEPT {
            rounds.pop_front();
        }
        // The leader's own ack: it does not vote against itself.
        rounds.push_back((r, now, bit(self.cfg.id)));
        assert!(
            rounds.len() <= ROUNDS_KEPT,
            "heartbeat rounds kept unbounded"
        );
        // Resend what is still in flight from before the last heartbeat:
        // an Accept or Accepted may be lost. (Younger ones are likely on
        // their way; the next heartbeat resends them if they are still in
        // flight then.)
        let again: Vec<(Slot, Entry<C>)> = if resend {
            let old = inflight.range(..*fresh_from);
            old.map(|(s, (e, _))| (*s, e.clone())).collect()
        } else {
            Vec::new()
        };
        *fresh_from = *next;
        for (slot, entry) in again {
            self.broadcast_accept(ballot, slot, entry, commit, out);
        }
        if resend {
            // A top-up whose Prepares found voters lagging (they promise
            // once caught up) is asked again.
            self.top_up_again(out);
        }
        self.broadcast_others(
            Msg::Heartbeat {
                ballot,
                commit,
                round: r,
            },
            out,
        );
        assert!(
            self.cfg.timing.heartbeat_us > 0,
            "a heartbeat interval of 0"
        );
        out.push(Output::SetTimer {
            timer: Timer::Heartbeat,
            delay_us: self.cfg.timing.heartbeat_us,
            jitter_us: 0,
        });
    }

    /// A leader's heartbeat: follow it (granting the lease if free), ack it
    /// if we granted it the lease, and learn from its commit index.
    pub(crate) fn on_heartbeat(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        commit: Slot,
        round: u64,
        out: &mut Vec<Output<C, S>>,
    ) {
        assert!(!self.is_rebuilding(), "a rebuilding replica follows no one");
        assert_ne!(from, self.cfg.id, "a leader sends itself no heartbeat");
        assert_eq!(ballot.node, from, "a heartbeat carries its leader's ballot");
        if ballot >= self.promised {
            self.follow(from, ballot, out);
            if self.grantee == Some(from) {
                assert!(self.cfg.timing.lease_us > 0, "a grant with leases off");
                out.push(Output::Send {
                    to: from,
                    msg: Msg::HeartbeatAck { ballot, round },
                    after: 0,
                });
            }
            self.commit_upto(from, ballot, commit, out);
            if self.latest().learns(self.cfg.id) {
                // A learner tells the leader how far it caught up.
                let applied = self.applied;
                out.push(Output::Send {
                    to: from,
                    msg: Msg::Progress { applied },
                    after: 0,
                });
            }
        }
    }

    /// A follower granted our lease in heartbeat `round`: a quorum of grants
    /// holds the lease from when that round was sent.
    pub(crate) fn on_heartbeat_ack(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        round: u64,
        out: &mut Vec<Output<C, S>>,
    ) {
        assert!(
            !self.is_rebuilding(),
            "a rebuilding replica sends no heartbeats"
        );
        assert_ne!(from, self.cfg.id, "the leader's own grant is implicit");
        assert!(
            self.cfg.timing.lease_us > 0,
            "a lease grant with leases off"
        );
        let span = self.lease_span();
        let now = self.now;
        let Role::Leader {
            ballot: mine,
            rounds,
            ..
        } = &mut self.role
        else {
            return;
        };
        if ballot != *mine {
            return;
        }
        let Some((_, sent, acks)) = rounds.iter_mut().find(|(r, _, _)| *r == round) else {
            return;
        };
        assert!(*sent <= now);
        *acks |= bit(from);
        let (sent, acks) = (*sent, *acks);
        // A lease counts only for a leader whose state can serve reads.
        let quorum = self.lease_quorum(acks) && self.lease_usable();
        let Role::Leader { lease_until, .. } = &mut self.role else {
            unreachable!("checked above")
        };
        if quorum {
            // Every acker granted from after `sent` on its own clock.
            let from_time = if self.cfg.bugs.lease_from_ack {
                now // BUG (canary 19): they granted before now
            } else {
                sent
            };
            if from_time + span > *lease_until {
                *lease_until = from_time + span;
                out.push(Output::Lease {
                    ballot,
                    until: *lease_until,
                });
            }
        }
        assert!(
            *lease_until <= now + span,
            "a lease beyond what any round proves"
        );
    }
}
