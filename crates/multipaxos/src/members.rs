//! Membership changes: who votes in which slot, and how it changes while
//! the log is served.
//!
//! **The protocol: Lamport's α-window** ("reconfigurable state machine",
//! as in *Paxos Made Simple* §3 and Stoppable Paxos). A configuration
//! ([`Members`]: voters, learners, leaving voters, ids gone for good) is a
//! log entry, [`Entry::Config`], carrying the whole new configuration. The
//! configuration that governs slot `s` is the first configuration with
//! every change *chosen* at a slot `c <= s - α` applied in slot order;
//! α is the pipeline window ([`Config::alpha`](crate::Config::alpha)). So a
//! change chosen at `c` governs slots from `c + α` on, and a node knows who
//! votes in slot `s` exactly when it has applied every slot up to `s - α`:
//! below its *horizon*, `applied + α`.
//!
//! **Why it is safe.**
//! 1. Who votes in slot `s` is a function of the chosen log below `s - α + 1`.
//!    Chosen entries are unique per slot (by induction over slots: what
//!    follows makes each slot a single-decree Paxos instance with one fixed
//!    set of acceptors), so every node that knows the configuration of `s`
//!    knows the same one. Nothing a node merely *received* (an accepted but
//!    unchosen change, a promise's report) changes it.
//! 2. Nodes act only on configurations they know. An acceptor votes in slot
//!    `s` (accepts) only if `s` is below its horizon and it is a voter of
//!    `s`'s configuration; it promises a ballot whose Phase 1 starts at slot
//!    `f` only if `f` is below its horizon and it is a voter of some
//!    configuration from `f` on. A leader proposes at slot `s` only below its
//!    horizon, which the α-window guarantees: it is also its pipeline window.
//! 3. Phase 2 of slot `s` is decided by a majority of the voters of `s`'s
//!    one configuration: any two such quorums intersect.
//! 4. Phase 1 of a ballot covers every slot from `f` on, but the leader
//!    proposes at slot `s` only once its promisers include a majority of the
//!    voters of `s`'s configuration, and proposes the highest-ballot entry
//!    any promiser reported there. That majority meets every Phase 2 quorum
//!    of a lower ballot at `s` (3.), so this is single-decree Paxos per
//!    slot. Promises from nodes outside that configuration only add entries
//!    proposed in lower ballots, which the highest-ballot rule handles as
//!    it always does. A candidate is elected once its promisers include a
//!    majority of *each* configuration governing `[f, f + α)`, never of
//!    their union (canary `union-quorum`); past that, a configuration with
//!    new voters makes the leader *top up* Phase 1: the same ballot's
//!    Prepare to the voters it lacks, whose reports it merges before
//!    proposing there.
//! 5. A learner votes only once it knows a configuration that makes it a
//!    voter, which it learns from the chosen log (canary `learner-votes`).
//!    A removed voter stops voting where the configuration without it
//!    governs, and peers refuse its ballots once the removal governs their
//!    applied prefix (canary `removed-keeps-voting`). Ids are never reused,
//!    so a message from a removed id is never mistaken for a member's.
//! 6. Snapshots carry the configurations governing `[upto, upto + α)`
//!    ([`Snap::configs`](crate::Snap)): the chosen changes below `upto` go
//!    with the log. A replica rebuilding a lost disk waits for a majority
//!    of the others in every configuration the state it gathered knows.
//! 7. A leader's lease counts grants from a majority of every configuration
//!    from the one governing its applied prefix to the newest it knows, and
//!    it drops the lease when it applies a change: a leader elected only by
//!    a new configuration's voters could otherwise miss every grant.
//!
//! **Operating rules** (liveness and clarity, not safety). A leader proposes
//! one change at a time: only when every earlier change governs its applied
//! prefix, and only after an entry of its own ballot is chosen (Raft's rule
//! after the 2015 single-server-change bug; under the α-window a change
//! takes effect only once chosen, so the rule is not needed for safety, and
//! we keep it as cheap insurance). After a change is chosen the leader fills
//! the slots up to where it governs with no-ops, so that it takes effect
//! without waiting for client traffic. Machines join as learners
//! ([`Change::Add`], or [`Change::Replace`] for replicas taking voters'
//! places); the leader promotes them all in one configuration once each
//! reported an applied prefix within α of its own ([`Msg::Progress`]), and
//! removes the voters they replace in the same configuration. A leader
//! stops at the first slot where it is a voter of no configuration it
//! knows (a proposer needs no vote of its own, so a voter of later slots
//! leads the slots before them too) and steps down once everything it
//! proposed is chosen; the others elect a new leader.
//!
//! Two rules the simulator's seeds taught (issue 23): a leader steps down
//! when it learns a slot chosen beyond or against what it proposed, and
//! when a Prepare shows a higher ballot even if it makes no promise (a
//! deposed leader that kept leading announced a commit index over other
//! ballots' choices, and a follower took its own unchosen entry for
//! chosen); and a replica that will not promise because the candidate
//! lags behind it answers as if the candidate had asked to catch up (a
//! slot below its snapshot no longer says who voted there).

use crate::{
    bit, Ballot, Change, Command, Configs, Entry, Members, Msg, Node, NodeId, Output, Role, Slot,
    Snap, State,
};

impl<C: Command, S: State> Node<C, S> {
    /// The first slot whose configuration this node does not know.
    pub fn horizon(&self) -> Slot {
        self.applied + self.cfg.alpha()
    }

    /// The configuration governing `slot` (below the horizon).
    pub fn members_at(&self, slot: Slot) -> Members {
        assert!(
            slot < self.horizon() || self.cfg.bugs.config_when_received,
            "slot {slot}: who votes there is not known yet"
        );
        *self
            .configs
            .range(..=slot)
            .next_back()
            .map(|(_, m)| m)
            .expect("the configurations cover every slot from the base")
    }

    /// The configuration governing the applied prefix (in force now).
    pub fn members(&self) -> Members {
        self.members_at(self.applied)
    }

    /// The newest configuration this node knows (it may govern only later).
    pub fn latest(&self) -> Members {
        *self.configs.values().next_back().expect("a configuration")
    }

    /// The configurations governing `[from, end)` (`end` at most the
    /// horizon), in slot order.
    pub(crate) fn window(&self, from: Slot, end: Slot) -> impl Iterator<Item = Members> + '_ {
        assert!(end <= self.horizon());
        let from = from.max(*self.configs.keys().next().expect("a configuration"));
        let first = self.members_at(from);
        let later = self
            .configs
            .range(from + 1..end.max(from + 1))
            .map(|(_, m)| *m);
        std::iter::once(first).chain(later)
    }

    /// The first slot the configuration governing `slot` governs.
    fn governing_key(&self, slot: Slot) -> Slot {
        *self
            .configs
            .range(..=slot)
            .next_back()
            .map(|(s, _)| s)
            .expect("the configurations cover every slot from the base")
    }

    /// The configurations from the one in force (at the applied prefix) to
    /// the newest.
    fn in_force_onward(&self) -> impl Iterator<Item = &Members> + '_ {
        self.configs
            .range(self.governing_key(self.applied)..)
            .map(|(_, m)| m)
    }

    /// Every node that receives the log: voters and learners of the
    /// configurations from the one in force to the newest.
    pub(crate) fn reach(&self) -> u16 {
        self.in_force_onward().fold(0, |set, m| set | m.reach())
    }

    /// Whether `id`'s removal governs our applied prefix: its ballots and
    /// votes are refused from then on.
    pub(crate) fn removed(&self, id: NodeId) -> bool {
        self.members().gone & bit(id) != 0
    }

    /// BUG (canaries 25 and 26): this node votes whatever the configuration
    /// says, as a learner or once removed.
    fn canary_votes_anyway(&self) -> bool {
        let id = self.cfg.id;
        let latest = self.latest();
        (self.cfg.bugs.learner_votes && latest.learns(id))
            || (self.cfg.bugs.removed_keeps_voting && latest.gone & bit(id) != 0)
    }

    /// May this node accept at `slot`? Only where it knows the configuration
    /// and is one of its voters.
    pub(crate) fn votes_at(&self, slot: Slot) -> bool {
        if self.canary_votes_anyway() {
            return true;
        }
        slot < self.horizon() && self.members_at(slot).votes(self.cfg.id)
    }

    /// May this node promise a ballot whose Phase 1 starts at `from`? Only if
    /// it knows the configuration there and votes somewhere from there on.
    pub(crate) fn may_promise(&self, from: Slot) -> bool {
        if self.canary_votes_anyway() {
            return true;
        }
        let id = self.cfg.id;
        from < self.horizon() && self.window(from, self.horizon()).any(|m| m.votes(id))
    }

    /// May this node stand? Only as a voter of the newest configuration it
    /// knows (a leaving voter would only have to step down).
    pub(crate) fn may_stand(&self) -> bool {
        self.latest().votes(self.cfg.id) || self.canary_votes_anyway()
    }

    /// Do `promises` elect a candidate whose Phase 1 starts at `from`? A
    /// majority of each configuration governing `[from, from + α)`.
    pub(crate) fn elects(&self, from: Slot, promises: u16) -> bool {
        let end = (from + self.cfg.alpha()).min(self.horizon());
        let window: Vec<Members> = self.window(from, end).collect();
        let each = window.iter().all(|m| m.is_quorum(promises));
        if self.cfg.bugs.union_quorum {
            // BUG (canary 27): a majority of everyone involved will do.
            let union = window.iter().fold(0, |u, m| u | m.voters);
            return each || (promises & union).count_ones() > union.count_ones() / 2;
        }
        each
    }

    /// Do our ballot's `promisers` cover a slot governed by `members`? A
    /// majority of its voters. (BUG, canary 27: a majority of everyone in
    /// the configurations this node knows from its applied prefix on.)
    pub(crate) fn phase1_covers(&self, members: Members, promisers: u16) -> bool {
        let covered = members.is_quorum(promisers);
        if self.cfg.bugs.union_quorum {
            let union = self
                .window(self.applied, self.horizon())
                .fold(0, |u, m| u | m.voters);
            return covered || (promisers & union).count_ones() > union.count_ones() / 2;
        }
        covered
    }

    /// Do lease grants from `acks` hold off every other candidate? A
    /// majority of every configuration from the one in force to the newest.
    pub(crate) fn lease_quorum(&self, acks: u16) -> bool {
        self.in_force_onward().all(|m| m.is_quorum(acks))
    }

    /// Slot `slot` applied with a configuration: it governs from `slot + α`.
    pub(crate) fn apply_config(&mut self, slot: Slot, m: Members) {
        let at = if self.cfg.bugs.config_when_received {
            slot + 1
        } else {
            slot + self.cfg.alpha()
        };
        if m.epoch != self.latest().epoch + 1 {
            // Computed from an older view: another change came first.
            return;
        }
        if self.cfg.bugs.config_when_received {
            self.configs.split_off(&at);
            self.configs.insert(at, m);
            return;
        }
        assert!(
            self.configs.keys().next_back().is_none_or(|k| *k < at),
            "configurations are chosen in slot order"
        );
        self.configs.insert(at, m);
        if let Role::Leader { lease_until, .. } = &mut self.role {
            // Grants counted before this change may not hold off a
            // candidate of the new configuration: count them again.
            *lease_until = 0;
        }
    }

    /// BUG (canary 23): a replica that accepts a change acts on it at once.
    pub(crate) fn canary_config_on_accept(&mut self, slot: Slot, entry: &Entry<C>) {
        if let Entry::Config(m) = entry {
            self.configs.split_off(&(slot + 1));
            self.configs.insert(slot + 1, *m);
        }
    }

    /// Keeps only the configurations that govern slots from `upto` on.
    pub(crate) fn trim_configs(&mut self, upto: Slot) {
        self.configs = self.configs.split_off(&self.governing_key(upto));
    }

    /// The configurations a snapshot at `upto` carries: those governing
    /// `[upto, upto + α)`, which the slots below `upto` decided.
    pub(crate) fn configs_for_snapshot(&self, upto: Slot) -> Configs {
        assert!(upto <= self.applied);
        self.configs
            .range(self.governing_key(upto)..upto + self.cfg.alpha())
            .map(|(s, m)| (*s, *m))
            .collect()
    }

    pub(crate) fn assert_configs(&self) {
        let n = self.cfg.n;
        assert!(!self.configs.is_empty(), "a node knows a configuration");
        assert!(
            *self.configs.keys().next().expect("non-empty") <= self.base(),
            "the configurations cover every slot from the base"
        );
        for m in self.configs.values() {
            assert!(m.well_formed(n), "a configuration out of shape: {m:?}");
        }
        // Pairs of consecutive configurations (no allocation: this runs
        // after every input). (`types::configs_chain_ok` is the same rule,
        // for snapshots from peers and files.)
        let pairs = self.configs.values().zip(self.configs.values().skip(1));
        for (a, b) in pairs {
            assert!(a.gone & !b.gone == 0, "a removed id came back");
            assert!(
                a.epoch + 1 == b.epoch || self.cfg.bugs.config_when_received,
                "configurations follow each other"
            );
        }
    }

    // ----------------------------------------------------------- the leader

    /// A change is on its way: asked for, in flight, reported to re-propose,
    /// or chosen and not yet governing the applied prefix.
    fn change_pending(&self) -> bool {
        let Role::Leader { change, .. } = &self.role else {
            return true;
        };
        change.is_some()
            || self.config_in_flight()
            || (self.chosen.range(self.applied..)).any(|(_, e)| matches!(e, Entry::Config(_)))
    }

    /// A leader's configuration on its way: one chosen that does not govern
    /// the applied prefix yet, or one in flight, or one reported to
    /// re-propose.
    fn config_in_flight(&self) -> bool {
        let Role::Leader {
            inflight, reported, ..
        } = &self.role
        else {
            return false;
        };
        let is_config = |e: &Entry<C>| matches!(e, Entry::Config(_));
        *self.configs.keys().next_back().expect("a configuration") > self.applied
            || inflight.values().any(|(e, _)| is_config(e))
            || reported.values().any(|(_, e)| is_config(e))
    }

    /// The configuration a leader counts `slot`'s votes and promises in:
    /// the one governing it. (BUG, canary 24: the one it was elected in,
    /// always.)
    pub(crate) fn counting_config(&self, slot: Slot) -> Members {
        match &self.role {
            Role::Leader {
                frozen: Some(m), ..
            } => *m,
            _ => self.members_at(slot),
        }
    }

    /// An operator's change: the leader takes it if it may.
    pub(crate) fn reconfigure(&mut self, change: Change, out: &mut Vec<Output<C, S>>) {
        let outcome = self.accept_change(change);
        out.push(Output::Reconfigure { change, outcome });
        if outcome.is_ok() {
            self.pump(out);
        }
    }

    fn accept_change(&mut self, change: Change) -> Result<Members, &'static str> {
        if !self.is_leader() {
            return Err("not the leader");
        }
        if change == Change::Promote {
            return Err("the leader promotes learners itself");
        }
        if self.change_pending() {
            return Err("another change is in progress");
        }
        let m = self.latest().changed(change, self.cfg.n)?;
        let Role::Leader { change, .. } = &mut self.role else {
            unreachable!("checked above")
        };
        *change = Some(m);
        Ok(m)
    }

    /// A learner's applied prefix: promote the learners once all caught up.
    pub(crate) fn on_progress(&mut self, from: NodeId, applied: Slot, out: &mut Vec<Output<C, S>>) {
        let latest = self.latest();
        let Role::Leader { progress, .. } = &mut self.role else {
            return;
        };
        if !latest.learns(from) {
            return;
        }
        let p = progress.entry(from).or_default();
        *p = (*p).max(applied);
        self.maybe_promote();
        self.pump(out);
    }

    /// Every learner is within α of our applied prefix: ask for their
    /// promotion (the pump proposes it in its turn).
    fn maybe_promote(&mut self) {
        let latest = self.latest();
        if latest.learners == 0 || self.change_pending() {
            return;
        }
        let alpha = self.cfg.alpha();
        let applied = self.applied;
        let Role::Leader {
            progress, change, ..
        } = &mut self.role
        else {
            return;
        };
        let caught_up = (0..self.cfg.n)
            .filter(|id| latest.learns(*id))
            .all(|id| progress.get(&id).is_some_and(|p| p + alpha >= applied));
        if caught_up {
            *change = Some(
                latest
                    .changed(Change::Promote, self.cfg.n)
                    .expect("learners to promote"),
            );
        }
    }

    /// The change to propose now, if its turn came: an entry of our own
    /// ballot is chosen and every earlier change governs.
    pub(crate) fn change_ready(&self) -> Option<Members> {
        let Role::Leader {
            change, own_chosen, ..
        } = &self.role
        else {
            return None;
        };
        let m = (*change)?;
        (*own_chosen && !self.config_in_flight()).then_some(m)
    }

    /// Phase 1 does not cover `slot` yet: its configuration has voters that
    /// did not promise. Ask them, in our ballot, from `slot` on.
    pub(crate) fn top_up(&mut self, slot: Slot, out: &mut Vec<Output<C, S>>) {
        let m = self.members_at(slot);
        let Role::Leader {
            ballot, promisers, ..
        } = &self.role
        else {
            unreachable!("only a leader tops up")
        };
        let (ballot, promisers) = (*ballot, *promisers);
        let missing = m.voters & !promisers;
        assert_ne!(missing, 0, "a quorum would not need a top-up");
        for to in 0..self.cfg.n {
            if missing & bit(to) != 0 {
                out.push(Output::Send {
                    to,
                    msg: Msg::Prepare { ballot, from: slot },
                    after: 0,
                });
            }
        }
    }

    /// Heartbeat: if the pipeline waits for a top-up of Phase 1, ask the
    /// voters that have not promised again.
    pub(crate) fn top_up_again(&mut self, out: &mut Vec<Output<C, S>>) {
        let Role::Leader {
            next,
            promisers,
            frozen,
            ..
        } = &self.role
        else {
            return;
        };
        let (slot, promisers, frozen) = (*next, *promisers, *frozen);
        if slot >= self.horizon() || frozen.is_some() {
            return;
        }
        let members = self.members_at(slot);
        if !self.phase1_covers(members, promisers) {
            self.top_up(slot, out);
        }
    }

    /// A promise for our ballot after we were elected (late, or answering a
    /// top-up): merge what it reports from the next slot on.
    pub(crate) fn late_promise(
        &mut self,
        from: NodeId,
        accepted: Vec<(Slot, Ballot, Entry<C>)>,
        snapshot: Option<Snap<S>>,
        out: &mut Vec<Output<C, S>>,
    ) {
        if let Some(s) = snapshot {
            // It compacted past our next slot: what it dropped is chosen.
            self.install(s, out);
        }
        let Role::Leader {
            next,
            top,
            promisers,
            reported,
            ..
        } = &mut self.role
        else {
            unreachable!("only a leader takes late promises")
        };
        for (slot, b, e) in accepted {
            if slot < *next {
                // Proposed already, with a quorum's reports behind it.
                continue;
            }
            if reported.get(&slot).is_none_or(|(rb, _)| b > *rb) {
                reported.insert(slot, (b, e));
            }
            *top = (*top).max(slot + 1);
        }
        *promisers |= bit(from);
        self.pump(out);
    }
}
