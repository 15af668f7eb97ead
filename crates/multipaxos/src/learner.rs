//! The learner: chosen slots, applied in order; the leader's commit index;
//! catch-up (`Query` answered by `Chosen` entries or a `Snapshot`); and
//! snapshots, taken locally or installed from a peer.

use crate::{
    Ballot, Buggified, Command, Entry, Msg, Node, NodeId, Output, Role, Slot, Snap, State, Write,
};

/// The most chosen entries one `Query` is answered with.
const CHOSEN_PER_QUERY: usize = 64;

impl<C: Command, S: State> Node<C, S> {
    /// The leader says every slot below `commit` is chosen. Mark chosen only
    /// the slots we hold accepted *in the leader's ballot*; ask for the rest.
    pub(crate) fn commit_upto(
        &mut self,
        leader: NodeId,
        ballot: Ballot,
        commit: Slot,
        out: &mut Vec<Output<C, S>>,
    ) {
        assert!(leader < self.cfg.n);
        assert_eq!(ballot.node, leader, "a commit index comes from its leader");
        if self.cfg.bugs.walk_to_commit_index {
            return self.canary_walk_to_commit(leader, ballot, commit, out);
        }
        // Only the entries this node holds are visited, never the whole
        // range up to `commit`: the commit index is the sender's word, and
        // a distant one (2^50, say) must cost no more than a near one.
        let learnable: Vec<(Slot, Entry<C>)> = self
            .accepted
            .range(self.applied..commit.max(self.applied))
            .filter(|(s, (b, _))| {
                !self.chosen.contains_key(s) && (*b == ballot || self.cfg.bugs.commit_without_entry)
            })
            // (BUG, canary 3: an entry from any ballot is taken.)
            .map(|(s, (_, e))| (*s, e.clone()))
            .collect();
        for (slot, e) in learnable {
            self.learn(slot, e, out);
        }
        // The first slot below `commit` neither chosen nor learned is the
        // applied frontier itself (everything chosen from there on applies).
        assert!(!self.chosen.contains_key(&self.applied));
        if self.applied < commit {
            self.query_leader(leader, self.applied, out);
        }
    }

    /// Asks `leader` for the chosen entries from `from` on (a slot below its
    /// commit index that this node lacks), unless this node is the leader.
    pub(crate) fn query_leader(&self, leader: NodeId, from: Slot, out: &mut Vec<Output<C, S>>) {
        assert!(from >= self.applied, "asking for a slot already applied");
        // (BUG, canary 12: a lagging follower never asks.) A snapshot the
        // leader is sending in parts is not sent again: the leader resends
        // its first part from what it kept, and this node pulls what it
        // lacks (`transfer`).
        if leader != self.cfg.id && !self.cfg.bugs.no_catch_up {
            out.push(Output::Send {
                to: leader,
                msg: Msg::Query { from },
                after: 0,
            });
        }
    }

    /// BUG (canary 15, `walk-to-commit-index`): the walk over every slot up
    /// to the commit index that this function did before issue 19.
    fn canary_walk_to_commit(
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
                    let e = e.clone();
                    self.learn(slot, e, out);
                }
                _ => {
                    missing.get_or_insert(slot);
                }
            }
        }
        if let Some(from) = missing {
            self.query_leader(leader, from, out);
        }
    }

    /// A peer asks for the chosen entries from `slot` on: the snapshot
    /// first if we compacted past `slot`, then up to 64 entries.
    pub(crate) fn on_query(&mut self, from: NodeId, slot: Slot, out: &mut Vec<Output<C, S>>) {
        assert!(
            !self.is_rebuilding(),
            "a rebuilding replica knows nothing chosen"
        );
        assert_ne!(from, self.cfg.id, "a node never queries itself");
        let mut slot = slot;
        if slot < self.base() {
            let snap = self.snapshot.clone().expect("a base implies a snapshot");
            slot = snap.upto;
            // Reveals nothing unchosen: no write to wait for.
            self.send_after(0, from, Msg::Snapshot { snap }, out);
        }
        assert!(slot >= self.base(), "only what the log still holds");
        // BUGGIFY `catch_up_by_one`: one entry per answer; the asker asks
        // again at the leader's next word.
        let chunk = if self.cfg.buggify.catch_up_by_one {
            1
        } else {
            CHOSEN_PER_QUERY
        };
        if chunk < CHOSEN_PER_QUERY && self.chosen.range(slot..).nth(chunk).is_some() {
            out.push(Output::Buggified(Buggified::CatchUpCut));
        }
        for (s, e) in self.chosen.range(slot..).take(chunk) {
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

    /// A chosen entry, in answer to our query.
    pub(crate) fn on_chosen(
        &mut self,
        from: NodeId,
        slot: Slot,
        entry: Entry<C>,
        out: &mut Vec<Output<C, S>>,
    ) {
        assert!(
            !self.is_rebuilding(),
            "a rebuilding replica learns by rebuilding"
        );
        assert_ne!(from, self.cfg.id, "a node never answers itself");
        if slot >= self.base() {
            self.learn(slot, entry, out);
        }
    }

    /// A peer's snapshot: it compacted past what we asked or sent for.
    pub(crate) fn on_snapshot(&mut self, from: NodeId, snap: Snap<S>, out: &mut Vec<Output<C, S>>) {
        assert!(from < self.cfg.n);
        assert!(
            !self.is_rebuilding(),
            "a rebuilding replica installs by rebuilding"
        );
        assert!(snap.upto >= 1, "a snapshot covers at least one slot");
        self.install(snap, out);
    }

    /// `slot` is chosen with `entry`: record it durably and apply what follows.
    pub(crate) fn learn(&mut self, slot: Slot, entry: Entry<C>, out: &mut Vec<Output<C, S>>) {
        if slot < self.applied {
            return;
        }
        assert!(slot >= self.base());
        if let Some(e) = self.chosen.get(&slot) {
            assert_eq!(*e, entry, "slot {slot} chosen twice with different entries");
            return;
        }
        // A leader learns its own ballot's slots from its quorums. A slot
        // chosen beyond what it proposed, or with another entry, was chosen
        // by a higher ballot: it is deposed, and its commit index must not
        // cover that slot for followers holding its own entry there.
        // (Below `top` a slot may be chosen in an earlier ballot: our
        // promisers reported it, and we propose the same entry there.)
        let deposed = match &self.role {
            Role::Leader {
                next,
                top,
                inflight,
                reported,
                ..
            } => {
                let differs = |e: Option<&Entry<C>>| e.is_some_and(|e| *e != entry);
                (slot >= *next && slot >= *top)
                    || differs(inflight.get(&slot).map(|(e, _)| e))
                    || differs(reported.get(&slot).map(|(_, e)| e))
            }
            _ => false,
        };
        self.chosen.insert(slot, entry.clone());
        if self.cfg.bugs.non_atomic_chosen {
            // BUG (canary 9): the mark and the entry in separate records.
            self.persist(Write::ChosenMark { slot }, out);
        }
        self.persist(Write::Chosen { slot, entry }, out);
        if deposed {
            self.step_down(out);
        }
        self.advance_applied(out);
        assert!(slot < self.applied || self.chosen.contains_key(&slot));
    }

    /// Applies the chosen prefix, in slot order.
    pub(crate) fn advance_applied(&mut self, out: &mut Vec<Output<C, S>>) {
        assert!(
            self.applied >= self.base(),
            "applied below the compaction point"
        );
        let could_stand = self.may_stand();
        while let Some(e) = self.chosen.get(&self.applied) {
            let slot = self.applied;
            let config = match e {
                Entry::Config(m) => Some(*m),
                _ => None,
            };
            out.push(Output::Apply {
                slot,
                entry: e.clone(),
            });
            self.applied += 1;
            if let Some(m) = config {
                self.apply_config(slot, m);
            }
        }
        if let Role::Leader { inflight, .. } = &mut self.role {
            // Applied is chosen, however we heard: nothing to wait for there.
            if inflight.keys().next().is_some_and(|s| *s < self.applied) {
                *inflight = inflight.split_off(&self.applied);
            }
        }
        if !could_stand && self.may_stand() && matches!(self.role, Role::Follower) {
            // Promoted: a voter watches for its leader from now on.
            self.arm_election(out);
        }
        assert!(!self.chosen.contains_key(&self.applied));
    }

    /// The driver's snapshot of the state machine below `snap.upto`.
    pub(crate) fn take_snapshot(&mut self, snap: Snap<S>, out: &mut Vec<Output<C, S>>) {
        assert!(
            snap.upto <= self.applied,
            "snapshot at {} beyond the applied prefix {}",
            snap.upto,
            self.applied
        );
        if snap.upto <= self.base() {
            return;
        }
        let snap = Snap {
            configs: self.configs_for_snapshot(snap.upto),
            ..snap
        };
        self.compact(&snap);
        self.persist(Write::Snapshot(snap), out);
    }

    /// Drops the log below `snap.upto` (in memory) and keeps the snapshot.
    pub(crate) fn compact(&mut self, snap: &Snap<S>) {
        assert!(snap.upto > self.base(), "a snapshot only moves forward");
        self.accepted = self.accepted.split_off(&snap.upto);
        self.chosen = self.chosen.split_off(&snap.upto);
        self.snapshot = Some(snap.clone());
        if snap.upto > self.applied {
            // A peer's snapshot: who votes from there on is what it says.
            self.configs = snap.configs.clone();
        } else {
            self.trim_configs(snap.upto);
        }
        assert_eq!(self.base(), snap.upto);
    }

    /// Installs a peer's snapshot that reaches past our applied prefix.
    pub(crate) fn install(&mut self, snap: Snap<S>, out: &mut Vec<Output<C, S>>) {
        if snap.upto <= self.applied {
            return;
        }
        let could_stand = self.may_stand();
        self.compact(&snap);
        self.applied = snap.upto;
        if let Role::Leader {
            inflight,
            next,
            reported,
            ..
        } = &mut self.role
        {
            *inflight = inflight.split_off(&snap.upto);
            *next = (*next).max(snap.upto);
            *reported = reported.split_off(&snap.upto);
        }
        out.push(Output::Install { snap: snap.clone() });
        self.persist(Write::Snapshot(snap), out);
        self.advance_applied(out);
        if !could_stand && self.may_stand() && matches!(self.role, Role::Follower) {
            // Promoted, as the snapshot says: watch for the leader.
            self.arm_election(out);
        }
        assert!(self.applied >= self.base());
    }
}
