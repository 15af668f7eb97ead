//! Rebuilding a replica whose disk was wiped or corrupt: it gathers the
//! durable state of a majority of the *others* before it votes again, and
//! answers the same question for its peers.

use crate::{
    bit, Ballot, Command, Configs, Durable, Entry, Members, Msg, Node, NodeId, Output, Role, Slot,
    State, Write,
};

/// Merges a peer's durable state into what a rebuild gathered: the newest
/// snapshot, the highest-ballot acceptance per slot, every chosen entry.
fn merge<C: Command, S: State>(state: &mut Durable<C, S>, peer: &Durable<C, S>) {
    if peer.snapshot.as_ref().map_or(0, |s| s.upto) > state.base() {
        let snap = peer.snapshot.clone().expect("checked above");
        state.apply(&Write::Snapshot(snap));
    }
    let base = state.base();
    for (slot, (b, e)) in peer.accepted.range(base..) {
        assert!(*b <= peer.promised, "a peer accepted above its promise");
        if state.accepted.get(slot).is_none_or(|(sb, _)| b > sb) {
            state.accepted.insert(*slot, (*b, e.clone()));
        }
    }
    for (slot, e) in peer.chosen.range(base..) {
        state.chosen.insert(*slot, e.clone());
    }
}

/// The configurations a durable state knows, from its base on: its
/// snapshot's, then one for each change in its chosen prefix.
fn configs_of<C: Command, S: State>(d: &Durable<C, S>, first: Members, alpha: Slot) -> Configs {
    let mut configs = d
        .snapshot
        .as_ref()
        .map_or_else(|| Configs::from([(0, first)]), |s| s.configs.clone());
    if configs.is_empty() {
        configs.insert(0, first);
    }
    let mut slot = d.base();
    while let Some(e) = d.chosen.get(&slot) {
        if let Entry::Config(m) = e {
            configs.insert(slot + alpha, *m);
        }
        slot += 1;
    }
    configs
}

impl<C: Command, S: State> Node<C, S> {
    /// What this replica holds durably (every write issued, once synced).
    pub(crate) fn durable_view(&self) -> Durable<C, S> {
        assert!(
            !self.is_rebuilding(),
            "a rebuilding replica has nothing to give"
        );
        Durable {
            initialized: true,
            promised: self.promised,
            accepted: self.accepted.clone(),
            chosen: self.chosen.clone(),
            snapshot: self.snapshot.clone(),
        }
    }

    /// A rebuilding replica asks the others (again, on each timeout) for
    /// their state: for promises first, then for the fence. A peer whose
    /// state is arriving in parts is not asked again (that would restart
    /// it); it is pulled again if it stalled.
    pub(crate) fn ask_rebuild(&mut self, out: &mut Vec<Output<C, S>>) {
        let Role::Rebuilding { fence, .. } = &self.role else {
            return;
        };
        let msg = Msg::RebuildQuery { fence: *fence };
        for to in 0..self.cfg.n {
            if to != self.cfg.id && !self.transfer_alive(to, out) {
                out.push(Output::Send {
                    to,
                    msg: msg.clone(),
                    after: 0,
                });
            }
        }
    }

    /// A rebuilding peer asks for our state, fenced at `fence` if not zero.
    pub(crate) fn on_rebuild_query(
        &mut self,
        from: NodeId,
        fence: Ballot,
        out: &mut Vec<Output<C, S>>,
    ) {
        assert!(!self.is_rebuilding(), "a rebuilding replica answers no one");
        assert_ne!(
            from, self.cfg.id,
            "a rebuilding replica asks only the others"
        );
        assert!(
            fence == Ballot::ZERO || fence.node == from,
            "a fence is the rebuilding replica's own ballot"
        );
        if fence > self.promised {
            // From now on no Accept at or below the fence lands here, in
            // particular none the peer sent before it lost its disk. The
            // fence elects no one: the peer stands later, above it, through
            // an ordinary Phase 1 (which leases still hold back).
            self.promised = fence;
            self.seen = self.seen.max(fence);
            self.step_down(out);
            self.persist(Write::Promise(fence), out);
        }
        // Only durable facts may be handed over: a reply waits for
        // every write issued so far.
        let state = Box::new(self.durable_view());
        let seq = self.persist_seq;
        self.send_after(seq, from, Msg::RebuildState { state }, out);
    }

    /// A peer's state, for our rebuild: merge it; a majority of the others
    /// completes the rebuild.
    pub(crate) fn on_rebuild_state(
        &mut self,
        from: NodeId,
        peer: Durable<C, S>,
        out: &mut Vec<Output<C, S>>,
    ) {
        assert!(from < self.cfg.n);
        assert!(
            peer.initialized,
            "a peer's state comes from an initialized disk"
        );
        let id = self.cfg.id;
        let (first, alpha) = (self.cfg.first(), self.cfg.alpha());
        let Role::Rebuilding {
            replies,
            state,
            fence,
        } = &mut self.role
        else {
            return;
        };
        if *fence > peer.promised {
            // An answer to the first query, after the fence went out.
            return;
        }
        // Only the others are asked. A duplicate reply merges the same state
        // again, which changes nothing, and counts once in the bitmask.
        assert_ne!(
            from, self.cfg.id,
            "a rebuilding replica asks only the others"
        );
        assert_eq!(self.promised, Ballot::ZERO, "a rebuilding replica votes");
        *replies |= bit(from);
        assert_eq!(*replies & bit(id), 0, "replies from the others only");
        state.promised = state.promised.max(peer.promised);
        merge(state, &peer);
        // Who must have answered: a majority of every configuration the
        // gathered state knows, which grows as answers come in.
        let enough = configs_of(state, first, alpha)
            .values()
            .all(|m| m.is_quorum(*replies));
        // BUG (canary 21): no fence; the first majority's state is final.
        if *fence == Ballot::ZERO && !self.cfg.bugs.rebuild_without_fence {
            if !enough {
                return;
            }
            // A majority of the others reported their promises. Any ballot
            // our lost incarnation sent Accepts in had a quorum's promises,
            // which meets this majority: fence above them all, then rebuild
            // from the state a majority of the others hold once fenced.
            // Peers' promises are validated to `ROUND_MAX` at most, so
            // the fence fits; past it, peers refuse the fence (rounds ran
            // out) and the rebuild waits: refused, never an overflow.
            *fence = Ballot {
                round: state.promised.round.saturating_add(1),
                node: id,
            };
            *replies = 0;
            **state = Durable::default();
            let msg = Msg::RebuildQuery { fence: *fence };
            self.broadcast_others(msg, out);
            return;
        }
        assert!(peer.promised >= *fence, "a fenced peer promised the fence");
        // A majority of the *others* in every configuration: it meets every
        // quorum we were part of.
        if !enough {
            return;
        }
        let mut d = *std::mem::take(state);
        d.initialized = true;
        // Keep the invariant "accepted at most promised".
        let top = d.accepted.values().map(|(b, _)| *b).max();
        d.promised = d.promised.max(top.unwrap_or(Ballot::ZERO));
        assert!(d.promised >= self.promised, "the promise never goes back");
        assert!(d.accepted.keys().next().is_none_or(|s| *s >= d.base()));
        assert!(d.chosen.keys().next().is_none_or(|s| *s >= d.base()));
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
        assert!(!self.is_rebuilding());
    }
}
