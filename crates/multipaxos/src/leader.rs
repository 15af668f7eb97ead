//! The proposer: candidacy (Phase 1 for every slot from the first unchosen
//! one), election, and the leader's accept pipeline with its bounded queue.

use crate::{
    bit, Ballot, Buggified, Command, Entry, Msg, Node, NodeId, Output, Role, Slot, Snap, State,
    Timer, Write, QUEUE_MAX, ROUND_MAX,
};
use std::collections::{BTreeMap, VecDeque};

/// BUG (canary 11, `leader-stops-proposing`): after 16 heartbeat rounds the
/// leader proposes nothing more, yet its heartbeats keep everyone following.
fn canary_leader_stalls(round: u64) -> bool {
    round >= 16
}

/// BUG (canary 14, `trust-peer-messages`): the next round, unchecked, as
/// a release build computes it (wrapping to zero past the maximum).
fn canary_next_round(round: u32) -> Option<u32> {
    Some(round.wrapping_add(1))
}

impl<C: Command, S: State> Node<C, S> {
    /// The election timer fired: stand, unless the leader was heard since
    /// it was set (then wait out the rest of the timeout).
    pub(crate) fn on_election_timer(&mut self, epoch: u64, out: &mut Vec<Output<C, S>>) {
        assert!(epoch <= self.epoch, "a timer this incarnation never set");
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
                jitter_us: self.election_jitter_us(),
            });
            return;
        }
        if self.is_rebuilding() {
            self.ask_rebuild(out);
            self.arm_election(out);
        } else if !self.may_stand() {
            // A learner, a spare or a removed replica: it follows, and never
            // leads (a removed one is refused by its peers anyway).
            self.step_down(out);
        } else if matches!(self.role, Role::Candidate { .. }) && self.parts_arriving() {
            // A promise is arriving in parts: standing again would make
            // every promiser send a new one. Wait while it makes progress.
            self.arm_election(out);
        } else {
            self.stand(out);
        }
    }

    /// Runs Phase 1 for every slot from the first unchosen one.
    pub(crate) fn stand(&mut self, out: &mut Vec<Output<C, S>>) {
        assert!(!self.is_leader(), "a leader does not stand");
        assert!(!self.is_rebuilding(), "a rebuilding replica does not stand");
        if self.lease_forbids(self.cfg.id) {
            // Our own vote counts: we may not promise ourselves either.
            // Try again as soon as the lease we granted runs out.
            assert!(self.granted_until > self.now);
            self.epoch += 1;
            out.push(Output::SetTimer {
                timer: Timer::Election { epoch: self.epoch },
                delay_us: self.granted_until - self.now + 1,
                jitter_us: self.election_jitter_us() / 16,
            });
            return;
        }
        let next = if self.cfg.bugs.trust_peer_messages {
            canary_next_round(self.seen.round)
        } else {
            self.seen.round.checked_add(1).filter(|r| *r <= ROUND_MAX)
        };
        let Some(round) = next else {
            // Every round is used up (a peer drove them there): refuse to
            // stand rather than overflow, and say so; keep following.
            out.push(Output::Refused {
                from: self.cfg.id,
                why: "ballot rounds exhausted: not standing",
            });
            self.arm_election(out);
            return;
        };
        let ballot = Ballot {
            round,
            node: self.cfg.id,
        };
        assert!(ballot > self.seen, "a new ballot is above every one seen");
        assert!(ballot > self.promised, "a new ballot is above our promise");
        self.seen = ballot;
        let from = self.applied;
        self.role = Role::Candidate {
            ballot,
            from,
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
            let reach = self.reach();
            for to in (0..self.cfg.n).filter(|to| reach & bit(*to) != 0) {
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

    /// A promise for our candidacy. A majority of each configuration of the
    /// window elects us: we re-propose what the promisers reported (as the
    /// window reaches it), fill the gaps with no-ops, start heartbeats.
    pub(crate) fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        accepted: Vec<(Slot, Ballot, Entry<C>)>,
        snap: Option<Snap<S>>,
        out: &mut Vec<Output<C, S>>,
    ) {
        assert!(!self.is_rebuilding(), "a rebuilding replica does not stand");
        assert_eq!(ballot.node, self.cfg.id, "a promise answers our Prepare");
        if matches!(&self.role, Role::Leader { ballot: b, .. } if *b == ballot) {
            return self.late_promise(from, accepted, snap, out);
        }
        let Role::Candidate {
            ballot: mine,
            from: start,
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
        let start = *start;
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
        let promisers = *promises;
        if !self.elects(start, promisers) {
            return;
        }
        let Role::Candidate {
            reported, snapshot, ..
        } = &mut self.role
        else {
            unreachable!("checked above")
        };
        let mut reported = std::mem::take(reported);
        let snapshot = snapshot.take();
        // Elected. A promiser compacted past our log: take its snapshot first.
        if let Some(s) = snapshot {
            self.install(s, out);
        }
        // Every reported slot is re-proposed under our ballot, and the gaps
        // below the highest filled with no-ops, before any new command: the
        // pump does it in slot order as the α-window reaches each slot.
        let first = self.applied;
        reported = reported.split_off(&first);
        if self.cfg.bugs.assume_reported_chosen {
            // BUG (canary 2): an acceptance from an earlier ballot is taken
            // as chosen, without re-proposing it.
            let end = first + self.cfg.alpha();
            for (slot, (_, e)) in reported
                .range(..end)
                .map(|(s, r)| (*s, r.clone()))
                .collect::<Vec<_>>()
            {
                if !self.chosen.contains_key(&slot) {
                    self.learn(slot, e, out);
                }
            }
            let applied = self.applied;
            reported = reported.split_off(&applied);
        }
        let first = self.applied;
        let top = reported
            .keys()
            .next_back()
            .map_or(first, |s| s + 1)
            .max(self.chosen.keys().next_back().map_or(first, |s| s + 1))
            .max(first);
        assert!(ballot <= self.promised, "elected in a ballot we promised");
        let frozen = (self.cfg.bugs.ignore_reported_config
            && reported
                .values()
                .any(|(_, e)| matches!(e, Entry::Config(_))))
        .then(|| self.members());
        self.role = Role::Leader {
            ballot,
            next: first,
            top,
            inflight: BTreeMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            fresh_from: first,
            rounds: VecDeque::new(),
            round: 0,
            lease_until: 0,
            promisers,
            reported,
            own_chosen: false,
            progress: BTreeMap::new(),
            change: None,
            frozen,
        };
        self.leader = Some(self.cfg.id);
        out.push(Output::Elected { ballot });
        self.pump(out);
        if !self.is_leader() {
            return;
        }
        let Role::Leader {
            next, fresh_from, ..
        } = &mut self.role
        else {
            unreachable!("checked above")
        };
        // The Accepts just sent need no resend at the first heartbeat.
        *fresh_from = *next;
        // Heartbeats start the lease.
        self.heartbeat(false, out);
        assert!(self.is_leader(), "an election ends with a leader");
    }

    /// Leaves candidacy or leadership (refusing every queued command), or,
    /// as a follower, re-arms the election timer.
    pub(crate) fn step_down(&mut self, out: &mut Vec<Output<C, S>>) {
        assert!(
            !self.is_rebuilding(),
            "a rebuilding replica has no role to leave"
        );
        match std::mem::replace(&mut self.role, Role::Follower) {
            Role::Leader { queue, .. } => {
                assert!(queue.len() <= QUEUE_MAX);
                for cmd in queue {
                    out.push(Output::NotLeader { cmd, leader: None });
                }
            }
            Role::Candidate { .. } if self.cfg.buggify.tight_elections => {
                out.push(Output::Buggified(Buggified::CandidacyLost));
            }
            _ => {}
        }
        self.arm_election(out);
        assert!(matches!(self.role, Role::Follower));
    }

    /// A rejection of our Prepare or Accept: someone promised `promised`.
    pub(crate) fn on_nack(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        promised: Ballot,
        out: &mut Vec<Output<C, S>>,
    ) {
        assert!(from < self.cfg.n);
        assert!(
            !self.is_rebuilding(),
            "a rebuilding replica sends no ballots"
        );
        assert_eq!(ballot.node, self.cfg.id, "a Nack answers our own ballot");
        assert!(promised > ballot, "a Nack carries a higher promise");
        self.seen = self.seen.max(promised);
        if promised > self.promised && !matches!(self.role, Role::Follower) {
            self.step_down(out);
        }
        assert!(self.seen >= promised);
    }

    // ------------------------------------------------------------- pipeline

    /// A client command: the leader queues it behind its pipeline, up to
    /// [`QUEUE_MAX`], unless the very same command waits there already;
    /// anyone else refuses it.
    pub(crate) fn submit(&mut self, cmd: C, out: &mut Vec<Output<C, S>>) {
        let budget = self.cfg.queue_bytes;
        let Role::Leader {
            queue,
            queued_bytes,
            ..
        } = &mut self.role
        else {
            out.push(Output::NotLeader {
                cmd,
                leader: self.leader().filter(|l| *l != self.cfg.id),
            });
            return;
        };
        assert!(queue.len() <= QUEUE_MAX, "the queue outgrew its bound");
        if queue.contains(&cmd) {
            // A client's retry of a command still waiting for a slot (it
            // timed out, and came back here). It will be proposed once:
            // a copy would only take a slot of its own to be answered by
            // the dedup table, and a leader slower than the clients' retry
            // timeout would queue copies faster than its window drains
            // them, until no command got through (a retry storm that
            // BUGGIFY's window and batch of one brought out under madsim).
            return;
        }
        let w = cmd.weight();
        let heavy = !queue.is_empty() && *queued_bytes + w > budget;
        if queue.len() == QUEUE_MAX || heavy {
            // Load shedding: refuse rather than queue without bound, in
            // commands or in bytes (every queued command is resent in its
            // slot until chosen: a queue of large values is memory, network
            // and, before issue 19, disk without bound).
            out.push(Output::Busy { cmd });
            return;
        }
        *queued_bytes += w;
        queue.push_back(cmd);
        assert!(queue.len() <= QUEUE_MAX);
        assert!(*queued_bytes <= budget || queue.len() == 1);
        self.pump(out);
    }

    /// Fills the pipeline, slot by slot, within the α-window: first what
    /// earlier leaders left (re-proposals, no-ops in the gaps), then a
    /// membership change whose turn came, then queued commands, up to
    /// `batch` per slot while the window has room, then no-ops up to where
    /// a chosen change governs. (BUGGIFY: `window_of_one` and
    /// `batch_of_one` make window and batch one.)
    pub(crate) fn pump(&mut self, out: &mut Vec<Output<C, S>>) {
        assert!(self.is_leader(), "only a leader proposes");
        let knobs = self.cfg.buggify;
        let window = if knobs.window_of_one {
            1
        } else {
            self.cfg.window
        };
        let batch = if knobs.batch_of_one {
            1
        } else {
            self.cfg.batch
        };
        assert!(window >= 1 && window <= self.cfg.window);
        assert!(batch >= 1 && batch <= self.cfg.batch);
        loop {
            let applied = self.applied;
            let Role::Leader {
                next,
                inflight,
                promisers,
                reported,
                fresh_from,
                ..
            } = &mut self.role
            else {
                return;
            };
            if *next < applied {
                // Learned chosen meanwhile (a peer's answer, a snapshot):
                // nothing to propose there.
                *next = applied;
                *fresh_from = (*fresh_from).max(applied);
                *reported = reported.split_off(&applied);
            }
            let slot = *next;
            let (empty, promisers) = (inflight.is_empty(), *promisers);
            if slot >= self.horizon() {
                // The α-window: who votes there is not known yet.
                return;
            }
            let members = self.counting_config(slot);
            let me = self.cfg.id;
            if !members.votes(me) && !self.latest().votes(me) && !self.cfg.bugs.removed_keeps_voting
            {
                // Removed from here on: finish what is in flight, then go.
                // (A voter of later slots leads these too: a proposer
                // needs no vote of its own.)
                if empty {
                    self.step_down(out);
                }
                return;
            }
            if !self.phase1_covers(members, promisers) {
                return self.top_up(slot, out);
            }
            let Some(entry) = self.next_entry(window, batch, out) else {
                return;
            };
            self.propose(slot, entry, out);
            let Role::Leader { inflight, .. } = &self.role else {
                unreachable!("proposing keeps the leadership")
            };
            // New commands enter only below the window: the map stays bounded.
            assert!(
                inflight.len() as u64 <= window.max(self.cfg.alpha()),
                "the window overflowed: {:?} applied {} horizon {}",
                inflight.keys().collect::<Vec<_>>(),
                self.applied,
                self.horizon()
            );
        }
    }

    /// What to propose at the next slot, if anything.
    fn next_entry(
        &mut self,
        window: u64,
        batch: usize,
        out: &mut Vec<Output<C, S>>,
    ) -> Option<Entry<C>> {
        let knobs = self.cfg.buggify;
        let change = self.change_ready();
        let last_config = *self.configs.keys().next_back().expect("a configuration");
        let Role::Leader {
            next,
            top,
            inflight,
            queue,
            queued_bytes,
            round,
            reported,
            change: asked,
            ..
        } = &mut self.role
        else {
            unreachable!("only a leader proposes")
        };
        let slot = *next;
        // What earlier leaders left: a chosen entry, a reported one, or a
        // no-op in a gap below the highest reported slot.
        if let Some(e) = self.chosen.get(&slot) {
            reported.remove(&slot);
            return Some(e.clone());
        }
        if let Some((_, e)) = reported.remove(&slot) {
            return Some(e);
        }
        if slot < *top {
            return Some(Entry::Noop);
        }
        if inflight.len() as u64 >= window {
            if !queue.is_empty() && (inflight.len() as u64) < self.cfg.window {
                // Only the knob holds these commands back.
                assert!(knobs.window_of_one);
                out.push(Output::Buggified(Buggified::QueuedBehindWindow));
            }
            return None;
        }
        if let Some(m) = change {
            *asked = None;
            return Some(Entry::Config(m));
        }
        if self.cfg.bugs.leader_stops_proposing && canary_leader_stalls(*round) {
            return None;
        }
        if queue.is_empty() {
            // A chosen change governs from `last_config`: fill the slots
            // below it so that it takes effect without client traffic.
            return (slot < last_config).then_some(Entry::Noop);
        }
        // Up to `batch` commands and `slot_bytes` (one at least).
        let mut k = 0;
        let mut bytes = 0;
        for c in queue.iter().take(batch) {
            let w = c.weight();
            if k > 0 && bytes + w > self.cfg.slot_bytes {
                break;
            }
            k += 1;
            bytes += w;
        }
        assert!(k >= 1);
        assert!(bytes <= *queued_bytes);
        *queued_bytes -= bytes;
        // The knob cut the batch (the byte budget may cut it too; the
        // knob is reported only where it is on).
        if knobs.batch_of_one && k < queue.len().min(self.cfg.batch) {
            out.push(Output::Buggified(Buggified::BatchCut));
        }
        let cmds: Vec<C> = queue.drain(..k).collect();
        Some(Entry::Cmds(cmds.into()))
    }

    /// Sends `entry` for `slot` under our ballot and tracks it in flight.
    pub(crate) fn propose(&mut self, slot: Slot, entry: Entry<C>, out: &mut Vec<Output<C, S>>) {
        let commit = self.applied;
        let promised = self.promised;
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
        assert!(
            ballot <= promised,
            "proposing in a ballot we did not promise"
        );
        *next = (*next).max(slot + 1);
        let fresh = inflight.insert(slot, (entry.clone(), 0)).is_none();
        assert!(fresh, "slot {slot} proposed twice in ballot {ballot:?}");
        assert!(slot < *next);
        self.broadcast_accept(ballot, slot, entry, commit, out);
    }

    pub(crate) fn broadcast_accept(
        &mut self,
        ballot: Ballot,
        slot: Slot,
        entry: Entry<C>,
        commit: Slot,
        out: &mut Vec<Output<C, S>>,
    ) {
        assert_eq!(ballot.node, self.cfg.id, "Accepts go out in our own ballot");
        assert!(
            commit <= self.applied,
            "a commit index beyond what we applied"
        );
        let msg = Msg::Accept {
            ballot,
            slot,
            entry,
            commit,
        };
        // An Accept reveals no write of ours, so it leaves at once. Our
        // ballot was durable before any Prepare left (`stand`), and we lead
        // only once promises answered one, so no restart of ours can stand
        // again with it; our own acceptance is written when the Accept
        // reaches us, as anyone's is, and announced only once durable; the
        // commit index it carries is a fact about a quorum's acceptances,
        // not about our disk. (It used to wait for every write issued
        // before it: with one client, each Accept waited for the previous
        // slot's chosen mark to be fsynced, two fsyncs in series per write.)
        self.broadcast(0, msg, out);
    }

    /// An acceptance of our Accept: a quorum chooses the slot.
    pub(crate) fn on_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        out: &mut Vec<Output<C, S>>,
    ) {
        assert!(
            !self.is_rebuilding(),
            "a rebuilding replica proposes nothing"
        );
        assert_eq!(
            ballot.node, self.cfg.id,
            "an Accepted answers our own Accept"
        );
        let Role::Leader {
            ballot: mine,
            inflight,
            ..
        } = &self.role
        else {
            return;
        };
        if ballot != *mine || !inflight.contains_key(&slot) {
            return;
        }
        let members = self.counting_config(slot);
        let Role::Leader {
            inflight,
            own_chosen,
            ..
        } = &mut self.role
        else {
            unreachable!("checked above")
        };
        let (entry, acks) = inflight.get_mut(&slot).expect("checked above");
        assert!(!members.is_quorum(*acks), "a chosen slot stayed in flight");
        *acks |= bit(from);
        if !members.is_quorum(*acks) {
            return;
        }
        let entry = entry.clone();
        inflight.remove(&slot);
        *own_chosen = true;
        self.learn(slot, entry, out);
        if self.is_leader() {
            self.pump(out);
        }
    }
}
