//! Omniscient checkers for the replicated log and the service on it.
//!
//! Like [`Observer`](crate::Observer) for Basic Paxos, the [`LogObserver`]
//! sits outside the replicas and is told what actually happened: an
//! acceptor's durable Accept write and its `Accepted` message, a `Promise`
//! leaving an acceptor, a replica applying a slot or installing a snapshot,
//! a leader announcing itself, a command executing. It decides for itself
//! which entry is *chosen* in each slot — a true majority of acceptors sent
//! `Accepted` for the same (ballot, slot), with the entry each of them wrote
//! — and never asks a replica what it believes. Entries are compared by a
//! 64-bit fingerprint the driver computes from their full content.
//!
//! Invariants: [`P1`](Invariant::P1) one chosen entry per slot, forever;
//! [`P2`](Invariant::P2) replicas apply only that entry, made of submitted
//! commands; [`P3`](Invariant::P3) each replica applies slots in order with
//! no gap, and all agree slot by slot; [`P4`](Invariant::P4) one leader per
//! ballot; [`P5`](Invariant::P5) promises monotone per acceptor across
//! crashes (a wiped disk starts a new acceptor life); [`P6`](Invariant::P6)
//! every ballot has one owner and carries one entry per slot, judged from the
//! Accepts acceptors actually receive, across crashes (a restarted leader
//! that stands again in a ballot it used proposes other entries under it);
//! [`K1`](Invariant::K1)
//! fencing tokens increase per lock in log order, each token granted to one
//! client, and no lock granted while the checker's own model of sessions and
//! holders says another client holds it, nor to a client without a live
//! session in that model; [`K2`](Invariant::K2) a (client, seq) executes at one slot only.
//!
//! # Membership changes
//!
//! [`LogObserver::new`] fixes the voters forever: acceptors `0..n`, and a
//! slot is chosen by a majority of them. [`LogObserver::with_membership`]
//! follows a log that changes its own voters with Lamport's α-window rule: a
//! configuration entry (the driver registers its fingerprint and its voters
//! with [`LogObserver::on_config_entry`]) carries the *absolute* new set of
//! voters; chosen at slot `c`, it governs every slot from `c + alpha` on,
//! until a later one takes over. The configuration of slot `s` is thus the
//! last one chosen at a slot `<= s - alpha` (the initial one if none), and
//! the checker knows it only once it has seen every slot up to `s - alpha`
//! chosen. A slot is chosen by a majority of *its* configuration's voters,
//! counting no one else; votes at a slot whose configuration the checker
//! does not know yet are kept and judged, in the order they came, as soon as
//! it does (slots get chosen out of order), and a violation found then is
//! reported by the call that made it known.
//!
//! Invariants of membership mode: [`M1`](Invariant::M1) a slot is decided
//! only by a quorum of the configuration in force for it (a replica applied
//! an entry that only a majority of another configuration voted for);
//! [`M2`](Invariant::M2) a node votes only in a configuration it is a voter
//! of (an `Accepted` from a non-voter of the slot's configuration, a
//! `Promise` from a node that is a voter nowhere from the Prepare's first
//! slot on); [`M3`](Invariant::M3) a removed node's messages change no
//! decision (a replica applied an entry that reaches a majority of the slot's
//! configuration only by counting votes of non-voters). M1 and M3 diagnose
//! what would otherwise be reported as P2, an apply of an entry nothing chose.

use crate::{Invariant, Violation};
use paxos::{majority, Ballot, NodeId, MAX_NODES};
use std::collections::BTreeMap;

pub type Slot = u64;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Acceptor {
    /// (ballot, slot) -> entry fingerprint this acceptor wrote.
    wrote: BTreeMap<(Ballot, Slot), u64>,
    /// slot -> the highest ballot it wrote an acceptance in there.
    highest: BTreeMap<Slot, Ballot>,
    /// The highest ballot it promised or accepted in, this disk life.
    promised: Ballot,
    /// Every slot below this is in a snapshot it wrote: decided there, so
    /// a vote at such a slot needs no acceptance record of its own (a
    /// write path may fold one into the snapshot's compacted file).
    base: Slot,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Replica {
    /// The next slot this replica must apply.
    next: Slot,
}

/// What happened to a lock grant (for K1).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
struct Grant {
    /// Where in the log: the slot, and the command's place in its batch.
    at: (Slot, u32),
    token: u64,
    client: u32,
}

/// `Clone`, `Eq` and `Hash` (every field, all ordered maps): the model
/// checker keeps the observer in the states it visits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogObserver {
    n: usize,
    acceptors: Vec<Acceptor>,
    replicas: Vec<Replica>,
    /// Per slot, per (ballot, entry): which acceptors sent Accepted.
    votes: BTreeMap<Slot, BTreeMap<(Ballot, u64), u16>>,
    chosen: BTreeMap<Slot, u64>,
    /// The entry each slot was first applied with.
    applied: BTreeMap<Slot, u64>,
    leaders: BTreeMap<Ballot, NodeId>,
    /// The entry of the first Accept received per (ballot, slot).
    proposals: crate::ballots::FirstValues<(Ballot, Slot)>,
    /// Which disk life and incarnation of its owner first used each ballot.
    owners: crate::ballots::Owners,
    /// Per replica: incarnation (bumped at every start) and disk life (bumped
    /// when its disk is lost).
    incarnation: Vec<(u32, u32)>,
    /// (client, seq) -> where it executed (slot, index in the batch).
    executed: BTreeMap<(u32, u64), (Slot, u32)>,
    /// lock -> grants seen, by position in the log (slot, index in its
    /// batch: a slot carries several commands, and two grants of one lock
    /// may share a slot legitimately).
    grants: BTreeMap<u64, BTreeMap<(Slot, u32), Grant>>,
    /// Leader changes observed (coverage).
    pub elections: u64,
    /// Configuration entries chosen so far (coverage; membership mode).
    pub configs_chosen: u64,
    locks: LockModel,
    /// Who votes where, when voters change (`None`: acceptors `0..n`, for
    /// ever, judged eagerly: the hot path of every fixed-size campaign).
    membership: Option<Membership>,
}

/// Per slot, per (ballot, entry): which acceptors sent Accepted.
type Votes = BTreeMap<Slot, BTreeMap<(Ballot, u64), u16>>;

/// What membership mode knows of configurations, and what it cannot judge
/// yet. A configuration is a set of voters, as a bitmask over node ids.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Membership {
    /// The voters before any configuration entry takes over.
    initial: u16,
    /// A configuration chosen at slot `c` governs slots from `c + alpha` on.
    alpha: u64,
    /// Configuration entries the driver registered: fingerprint -> (epoch,
    /// voters).
    entries: BTreeMap<u64, (u64, u16)>,
    /// The epoch of the newest configuration in `history` (the initial
    /// one's is 0). A configuration entry joins the history only if its
    /// epoch is the next: a stale one (proposed from an older view and
    /// chosen after another change) changes nothing, as at the replicas.
    epoch: u64,
    /// The first slot the checker has not seen chosen: every configuration
    /// of a slot below `prefix + alpha` is known.
    prefix: Slot,
    /// From which slot each configuration is in force: `0 -> initial`, then
    /// `c + alpha -> voters` for each configuration entry chosen at a slot
    /// `c < prefix` (only those: a later one cannot be placed in the chain
    /// while a slot before it may still turn out to be a configuration).
    history: BTreeMap<Slot, u16>,
    /// Every configuration entry chosen so far, by slot, beyond `prefix`
    /// too (a node whose promotion is chosen may already take part).
    chosen: BTreeMap<Slot, (u64, u16)>,
    /// Per ballot, the first slot its Prepare asked for.
    prepares: BTreeMap<Ballot, Slot>,
    /// Votes at slots whose configuration is not known yet, in the order
    /// they came: (time, node, ballot, entry). All of a slot's votes are
    /// here until it is known (knowledge only grows), so replaying them
    /// judges the slot exactly as if it had been known all along.
    deferred_votes: BTreeMap<Slot, Vec<(u64, NodeId, Ballot, u64)>>,
    /// Applies at slots whose configuration was not known then: (time,
    /// node, entry). A replica applies in order, so the first slot it
    /// applies beyond the checker's knowledge follows one it applied within
    /// it and that was judged then: these wait only behind a snapshot
    /// install or a late observation.
    deferred_applies: BTreeMap<Slot, Vec<(u64, NodeId, u64)>>,
}

/// The checker's own model of sessions and lock holders, fed the service's
/// events in log order: from the first replica to reach each slot (P3
/// guarantees the others agree). Session expiries come from the replies to
/// OpenSession/KeepAlive, time from the leader's ticks; the rest (who holds
/// what) the checker works out itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct LockModel {
    /// The lowest slot no replica has fed yet.
    next: Slot,
    /// The slot being fed, and by which replica.
    current: Option<(Slot, NodeId)>,
    clock: u64,
    /// client -> session expiry
    sessions: BTreeMap<u32, u64>,
    /// lock -> (holder, token, slot granted)
    holders: BTreeMap<u64, (u32, u64, Slot)>,
}

fn v(invariant: Invariant, at_us: u64, node: Option<NodeId>, detail: String) -> Violation {
    Violation {
        invariant,
        at_us,
        node,
        detail,
    }
}

impl LogObserver {
    pub fn new(n: usize) -> LogObserver {
        assert!(n <= MAX_NODES);
        LogObserver {
            n,
            acceptors: vec![Acceptor::default(); n],
            replicas: vec![Replica::default(); n],
            votes: BTreeMap::new(),
            chosen: BTreeMap::new(),
            applied: BTreeMap::new(),
            leaders: BTreeMap::new(),
            proposals: Default::default(),
            owners: Default::default(),
            incarnation: vec![(0, 0); n],
            executed: BTreeMap::new(),
            grants: BTreeMap::new(),
            elections: 0,
            configs_chosen: 0,
            locks: LockModel::default(),
            membership: None,
        }
    }

    /// Membership mode: machines `0..ids` (acceptors and replicas alike),
    /// of which `initial` are the voters until a configuration entry chosen
    /// at slot `c` takes over from slot `c + alpha` on. The others are spare
    /// machines (learners, or unused) until a configuration makes them
    /// voters.
    pub fn with_membership(ids: usize, initial: u16, alpha: u64) -> LogObserver {
        assert!(ids <= MAX_NODES);
        assert!(
            initial != 0 && u32::from(initial) >> ids == 0,
            "the initial voters {} must be a non-empty set of the machines 0..{ids}",
            crate::fmt_set(initial)
        );
        assert!(alpha >= 1, "a configuration cannot govern its own slot");
        LogObserver {
            membership: Some(Membership {
                initial,
                alpha,
                entries: BTreeMap::new(),
                epoch: 0,
                prefix: 0,
                history: BTreeMap::from([(0, initial)]),
                chosen: BTreeMap::new(),
                prepares: BTreeMap::new(),
                deferred_votes: BTreeMap::new(),
                deferred_applies: BTreeMap::new(),
            }),
            ..LogObserver::new(ids)
        }
    }

    /// Fingerprint `entry` is a configuration entry of `epoch` (the number
    /// of changes before it, plus one) whose voters are `voters` (the
    /// absolute new set). The driver calls this when it sees
    /// the entry proposed, before any vote for it can arrive: a vote is
    /// judged when it comes, and a configuration registered after its slot
    /// was chosen would be missed. Ignored with fixed voters.
    pub fn on_config_entry(&mut self, entry: u64, epoch: u64, voters: u16) {
        if let Some(m) = &mut self.membership {
            m.entries.insert(entry, (epoch, voters));
        }
    }

    /// A candidate sent a Prepare in `ballot` asking for every slot from
    /// `from` on (M2 judges the promises by it). One `from` per ballot: the
    /// first is kept. Ignored with fixed voters.
    pub fn on_prepare_sent(&mut self, ballot: Ballot, from: Slot) {
        if let Some(m) = &mut self.membership {
            m.prepares.entry(ballot).or_insert(from);
        }
    }

    /// The voters of the configuration in force at `slot`, if the checker
    /// knows it (with fixed voters, always: `0..n`).
    pub fn config_at(&self, slot: Slot) -> Option<u16> {
        match &self.membership {
            None => Some(all(self.n)),
            Some(m) => m.config_at(slot),
        }
    }

    /// The voters whose grants a leader's lease must hold now (P7): those
    /// of the configuration in force at the first slot not yet chosen, and
    /// of the one before it (a leader learns of a change chosen a little
    /// after the checker does, and counts its lease again then). With
    /// fixed voters, both are `0..n`.
    pub fn lease_voters(&self) -> [u16; 2] {
        match &self.membership {
            None => [all(self.n); 2],
            Some(m) => {
                let now = m.in_force(m.prefix);
                let before = m
                    .history
                    .range(..=m.prefix)
                    .rev()
                    .nth(1)
                    .map_or(now, |(_, v)| *v);
                [now, before]
            }
        }
    }

    /// The voters of the latest configuration the checker knows to be in
    /// force: the one at the last slot whose configuration it knows. A
    /// configuration chosen but not in force yet is not counted, nor one
    /// chosen beyond a slot the checker has not seen chosen.
    pub fn voters_now(&self) -> u16 {
        match &self.membership {
            None => all(self.n),
            Some(m) => m.history.values().next_back().copied().unwrap_or(m.initial),
        }
    }

    /// The entry chosen at `slot`, if any (its fingerprint).
    pub fn chosen(&self, slot: Slot) -> Option<u64> {
        self.chosen.get(&slot).copied()
    }

    /// An acceptor issued the write "accept `entry` at (`ballot`, `slot`)".
    pub fn on_accept_write(&mut self, node: NodeId, ballot: Ballot, slot: Slot, entry: u64) {
        let a = &mut self.acceptors[node as usize];
        a.wrote.insert((ballot, slot), entry);
        let h = a.highest.entry(slot).or_insert(ballot);
        *h = (*h).max(ballot);
    }

    /// `node` wrote a snapshot (or a file of its whole state) covering
    /// every slot below `base`.
    pub fn on_snapshot_write(&mut self, node: NodeId, base: Slot) {
        let a = &mut self.acceptors[node as usize];
        a.base = a.base.max(base);
    }

    /// `node` sent a Prepare or an Accept in `ballot` (P6): only the ballot's
    /// owner may, and only one incarnation of it. A replica that restarted
    /// with its disk stands in a ballot above every one it used; one whose
    /// disk was lost cannot know, so only its Accepts are judged (below).
    pub fn on_ballot_sent(
        &mut self,
        at: u64,
        node: NodeId,
        ballot: Ballot,
    ) -> Result<(), Violation> {
        let (life, inc) = self.incarnation[node as usize];
        self.owners
            .sent(at, node, ballot, life, inc)
            .map_err(|detail| v(Invariant::P6, at, Some(node), detail))
    }

    /// Acceptor `to` received `Accept(ballot, slot, entry)` from `from` (P6:
    /// one entry per slot in a ballot; who may send in it is judged when it
    /// is sent, by [`LogObserver::on_ballot_sent`]).
    pub fn on_accept_received(
        &mut self,
        at: u64,
        from: NodeId,
        to: NodeId,
        ballot: Ballot,
        slot: Slot,
        entry: u64,
    ) -> Result<(), Violation> {
        self.proposals
            .arrived((ballot, slot), entry, to, at)
            .map_err(|(first, first_to, first_at)| {
                v(
                    Invariant::P6,
                    at,
                    Some(from),
                    format!(
                        "ballot {ballot} carries two entries for slot {slot}: n{to} received \
                         #{entry:016x}, but n{first_to} received #{first:016x} at {}",
                        crate::fmt_time(first_at)
                    ),
                )
            })
    }

    /// An acceptor sent `Promise(ballot)` (P5: promises never go back).
    ///
    /// In membership mode, M2 too: a node promises only if it is a voter of
    /// some configuration in force at a slot the Prepare asks for (from its
    /// `from`, see [`LogObserver::on_prepare_sent`]; a ballot whose Prepare
    /// the checker was not told of is not judged). Exactly, with the
    /// configuration entries chosen so far (beyond the slots whose
    /// configuration is known too), the promise is a violation iff
    /// - the node was never a voter: not in the initial configuration, nor
    ///   in any chosen configuration entry (a learner promising before its
    ///   promotion is chosen); or
    /// - the node's last removal — a chosen configuration entry without it,
    ///   after which no chosen configuration has it again — takes effect at
    ///   a slot `<= from` (it governs every slot the Prepare asks for).
    ///
    /// So a node removed from slot `e` on may still promise a Prepare from
    /// a slot below `e` (it votes in `[from, e)`), and a node whose
    /// promotion is chosen may promise before it is in force.
    pub fn on_promise(&mut self, at: u64, node: NodeId, ballot: Ballot) -> Result<(), Violation> {
        let a = &mut self.acceptors[node as usize];
        if ballot < a.promised {
            return Err(v(
                Invariant::P5,
                at,
                Some(node),
                format!(
                    "n{node} promised {ballot} after having promised or accepted in {}",
                    a.promised
                ),
            ));
        }
        a.promised = ballot;
        match &self.membership {
            Some(m) => m.judge_promise(at, node, ballot),
            None => Ok(()),
        }
    }

    /// An acceptor sent `Accepted(ballot, slot)`. In membership mode only
    /// voters of the slot's configuration count, and a vote from anyone else
    /// is M2; at a slot whose configuration is not known yet, the vote waits
    /// (see the module documentation).
    pub fn on_accepted(
        &mut self,
        at: u64,
        node: NodeId,
        ballot: Ballot,
        slot: Slot,
    ) -> Result<(), Violation> {
        let a = &mut self.acceptors[node as usize];
        if ballot < a.promised {
            return Err(v(
                Invariant::P5,
                at,
                Some(node),
                format!(
                    "n{node} accepted in {ballot} at slot {slot} after promising {}",
                    a.promised
                ),
            ));
        }
        a.promised = ballot;
        // A write path may fold an acceptance into a compacted file of the
        // acceptor's state, which keeps only what the acceptor must: the
        // highest acceptance per slot, and no slot below its snapshot.
        // Below the snapshot the slot is decided at this node; under a
        // higher acceptance at the slot a vote in a lower ballot is implied
        // (Paxos needs no more). Either way the ballot's one entry for the
        // slot (P6) is what it voted for.
        let folded = || {
            let superseded = || a.highest.get(&slot).is_some_and(|b| *b > ballot);
            (slot < a.base || superseded())
                .then(|| self.proposals.get(&(ballot, slot)))
                .flatten()
        };
        let Some(entry) = a.wrote.get(&(ballot, slot)).copied().or_else(folded) else {
            return Err(v(
                Invariant::P2,
                at,
                Some(node),
                format!("n{node} sent Accepted({ballot}, slot {slot}) without writing an entry"),
            ));
        };
        let voters = self
            .votes
            .entry(slot)
            .or_default()
            .entry((ballot, entry))
            .or_default();
        *voters |= 1 << node;
        let set = *voters;
        if let Some(m) = &mut self.membership {
            let judged = m.vote(
                &mut self.chosen,
                &self.votes,
                at,
                node,
                ballot,
                slot,
                entry,
                set,
            );
            self.configs_chosen = m.chosen.len() as u64;
            return judged;
        }
        if (set.count_ones() as usize) < majority(self.n) {
            return Ok(());
        }
        choose(&mut self.chosen, at, node, ballot, slot, entry).map(|_| ())
    }

    /// A replica announced itself leader of `ballot`.
    pub fn on_elected(&mut self, at: u64, node: NodeId, ballot: Ballot) -> Result<(), Violation> {
        self.elections += 1;
        if ballot.node != node {
            return Err(v(
                Invariant::P4,
                at,
                Some(node),
                format!("n{node} leads in {ballot}, a ballot of n{}", ballot.node),
            ));
        }
        if let Some(prev) = self.leaders.insert(ballot, node) {
            return Err(v(
                Invariant::P4,
                at,
                Some(node),
                format!("n{node} elected in {ballot}, already won by n{prev}"),
            ));
        }
        Ok(())
    }

    /// A replica applied `slot` with an entry of fingerprint `entry`.
    /// `submitted` says whether every command in it came from a client.
    /// In membership mode an entry that is not chosen is diagnosed (M1, M3,
    /// else P2) once the slot's configuration is known, at once if it is;
    /// the order of applies and agreement between replicas (P3) are judged
    /// at once either way.
    pub fn on_apply(
        &mut self,
        at: u64,
        node: NodeId,
        slot: Slot,
        entry: u64,
        submitted: bool,
    ) -> Result<(), Violation> {
        let r = &mut self.replicas[node as usize];
        if slot != r.next {
            return Err(v(
                Invariant::P3,
                at,
                Some(node),
                format!("n{node} applied slot {slot}, expected slot {}", r.next),
            ));
        }
        r.next = slot + 1;
        if !submitted {
            return Err(v(
                Invariant::P2,
                at,
                Some(node),
                format!("n{node} applied at slot {slot} a command no client submitted"),
            ));
        }
        match &mut self.membership {
            None => applied_chosen(&self.chosen, at, node, slot, entry)?,
            Some(m) => match m.config_at(slot) {
                Some(cfg) => {
                    m.judge_apply(&self.chosen, &self.votes, at, None, node, slot, entry, cfg)?
                }
                None => m
                    .deferred_applies
                    .entry(slot)
                    .or_default()
                    .push((at, node, entry)),
            },
        }
        match self.applied.get(&slot) {
            Some(&e) if e != entry => Err(v(
                Invariant::P3,
                at,
                Some(node),
                format!("n{node} applied #{entry:016x} at slot {slot}; another replica applied #{e:016x}"),
            )),
            Some(_) => Ok(()),
            None => {
                self.applied.insert(slot, entry);
                Ok(())
            }
        }
    }

    /// A replica replaced its state with a snapshot up to `upto`.
    pub fn on_install(&mut self, node: NodeId, upto: Slot) {
        self.replicas[node as usize].next = upto;
    }

    /// A replica restarted: it replays from its disk (snapshot, then log).
    /// A replay of the slot it was feeding the lock model must not feed it again.
    pub fn on_restart(&mut self, node: NodeId) {
        self.incarnation[node as usize].1 += 1;
        self.replicas[node as usize].next = 0;
        if self.locks.current.is_some_and(|(_, n)| n == node) {
            self.locks.current = None;
        }
    }

    /// A replica's disk was wiped or found corrupt: a new acceptor life.
    pub fn on_disk_lost(&mut self, node: NodeId) {
        self.acceptors[node as usize] = Acceptor::default();
        self.incarnation[node as usize].0 += 1;
        self.on_restart(node);
    }

    /// A client command executed (not answered from the dedup table) at `slot`.
    /// Client `client`'s command `seq` executed at `slot`, as command
    /// `index` of its batch (K2: at one place in the log only; two copies
    /// in one batch are two executions).
    pub fn on_executed(
        &mut self,
        at: u64,
        node: NodeId,
        client: u32,
        seq: u64,
        slot: Slot,
        index: u32,
    ) -> Result<(), Violation> {
        match self.executed.insert((client, seq), (slot, index)) {
            Some((s, i)) if (s, i) != (slot, index) => Err(v(
                Invariant::K2,
                at,
                Some(node),
                format!(
                    "c{client} #{seq} executed at slot {slot} #{index} by n{node}, and already at \
                     slot {s} #{i}"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether the service event of `node` at `slot` feeds the lock model:
    /// slots in increasing order, each from the first replica to reach it.
    pub fn service_turn(&mut self, node: NodeId, slot: Slot) -> bool {
        let m = &mut self.locks;
        if let Some((s, n)) = m.current {
            if s == slot {
                return n == node;
            }
        }
        if slot < m.next {
            return false;
        }
        m.current = Some((slot, node));
        m.next = slot + 1;
        true
    }

    /// The service's clock (a leader tick) reached `now`: sessions whose
    /// expiry is below it end, and their locks are free.
    pub fn on_tick(&mut self, now: u64) {
        let m = &mut self.locks;
        if now <= m.clock {
            return;
        }
        m.clock = now;
        let ended: Vec<u32> = m
            .sessions
            .iter()
            .filter(|(_, e)| **e < now)
            .map(|(c, _)| *c)
            .collect();
        for c in ended {
            m.sessions.remove(&c);
            m.holders.retain(|_, (h, _, _)| *h != c);
        }
    }

    /// `client`'s session now expires at `expiry`, or ended (`None`).
    pub fn on_session(&mut self, client: u32, expiry: Option<u64>) {
        let m = &mut self.locks;
        match expiry {
            Some(e) => {
                m.sessions.insert(client, e);
            }
            None => {
                m.sessions.remove(&client);
                m.holders.retain(|_, (h, _, _)| *h != client);
            }
        }
    }

    /// `client` released `lock` held with `token`.
    pub fn on_release(&mut self, lock: u64, client: u32, token: u64) {
        let m = &mut self.locks;
        if m.holders
            .get(&lock)
            .is_some_and(|(h, t, _)| (*h, *t) == (client, token))
        {
            m.holders.remove(&lock);
        }
    }

    /// Exclusivity, in log order: `client` was granted `lock` at `slot`; no
    /// other client may hold it then (its session live, not released).
    pub fn on_exclusive_grant(
        &mut self,
        at: u64,
        node: NodeId,
        lock: u64,
        client: u32,
        token: u64,
        slot: Slot,
    ) -> Result<(), Violation> {
        let m = &mut self.locks;
        if !m.sessions.contains_key(&client) {
            return Err(v(
                Invariant::K1,
                at,
                Some(node),
                format!(
                    "lock {lock} granted to c{client} (token {token}) at slot {slot}, but c{client} \
                     has no live session (service clock {})",
                    m.clock
                ),
            ));
        }
        if let Some(&(holder, t, since)) = m.holders.get(&lock) {
            if holder != client {
                let expiry = m.sessions.get(&holder).copied().unwrap_or(0);
                return Err(v(
                    Invariant::K1,
                    at,
                    Some(node),
                    format!(
                        "lock {lock} granted to c{client} (token {token}) at slot {slot} while c{holder} \
                         holds it (token {t} since slot {since}, session live until {expiry})"
                    ),
                ));
            }
        }
        m.holders.insert(lock, (client, token, slot));
        Ok(())
    }

    /// A lock grant executed at `slot`, as command `index` of its batch:
    /// `client` got `token` for `lock`.
    #[allow(clippy::too_many_arguments)]
    pub fn on_grant(
        &mut self,
        at: u64,
        node: NodeId,
        lock: u64,
        client: u32,
        token: u64,
        slot: Slot,
        index: u32,
    ) -> Result<(), Violation> {
        let grants = self.grants.entry(lock).or_default();
        let pos = (slot, index);
        let g = Grant {
            at: pos,
            token,
            client,
        };
        if let Some(same) = grants.get(&pos) {
            if (same.token, same.client) != (token, client) {
                return Err(v(
                    Invariant::K1,
                    at,
                    Some(node),
                    format!(
                        "lock {lock} at slot {slot} #{index}: token {token} to c{client} here, {} \
                         to c{} elsewhere",
                        same.token, same.client
                    ),
                ));
            }
            return Ok(());
        }
        let before = grants.range(..pos).next_back().map(|(_, g)| *g);
        let after = grants.range((slot, index + 1)..).next().map(|(_, g)| *g);
        for (earlier, later) in [(before, Some(g)), (Some(g), after)] {
            let (Some(e), Some(l)) = (earlier, later) else {
                continue;
            };
            let ok = l.token > e.token || (l.token == e.token && l.client == e.client);
            if !ok {
                return Err(v(
                    Invariant::K1,
                    at,
                    Some(node),
                    format!(
                        "lock {lock}: token {} to c{} at slot {} #{}, then token {} to c{} at slot \
                         {} #{}",
                        e.token, e.client, e.at.0, e.at.1, l.token, l.client, l.at.0, l.at.1
                    ),
                ));
            }
        }
        grants.insert(pos, g);
        Ok(())
    }
}

/// Every machine of `0..n`: the voters with fixed voters.
fn all(n: usize) -> u16 {
    ((1u32 << n) - 1) as u16
}

/// Whether the voters in `set` include a majority of configuration `cfg`.
/// Votes of non-voters count for nothing.
fn quorum_of(set: u16, cfg: u16) -> bool {
    (set & cfg).count_ones() as usize >= majority(cfg.count_ones() as usize)
}

/// `entry` won a quorum at (`ballot`, `slot`): it is chosen there, unless
/// another entry was (P1). Returns whether the slot is newly chosen.
fn choose(
    chosen: &mut BTreeMap<Slot, u64>,
    at: u64,
    node: NodeId,
    ballot: Ballot,
    slot: Slot,
    entry: u64,
) -> Result<bool, Violation> {
    match chosen.get(&slot) {
        None => {
            chosen.insert(slot, entry);
            Ok(true)
        }
        Some(&c) if c == entry => Ok(false),
        Some(&c) => Err(v(
            Invariant::P1,
            at,
            Some(node),
            format!(
                "slot {slot}: entry #{entry:016x} chosen in {ballot}, but #{c:016x} was chosen before"
            ),
        )),
    }
}

/// P2: a replica applied at `slot` the entry chosen there.
fn applied_chosen(
    chosen: &BTreeMap<Slot, u64>,
    at: u64,
    node: NodeId,
    slot: Slot,
    entry: u64,
) -> Result<(), Violation> {
    match chosen.get(&slot) {
        Some(&c) if c == entry => Ok(()),
        Some(&c) => Err(v(
            Invariant::P2,
            at,
            Some(node),
            format!("n{node} applied #{entry:016x} at slot {slot}, but #{c:016x} is chosen"),
        )),
        None => Err(v(
            Invariant::P2,
            at,
            Some(node),
            format!("n{node} applied #{entry:016x} at slot {slot}, which nothing chose"),
        )),
    }
}

/// When a judgement was put off: said in its report.
fn late(sent: Option<u64>) -> String {
    sent.map_or(String::new(), |t| {
        format!(
            " (at {}; judged once the slot's configuration was known)",
            crate::fmt_time(t)
        )
    })
}

impl Membership {
    /// Every slot below this one has a configuration the checker knows.
    fn known_below(&self) -> Slot {
        self.prefix.saturating_add(self.alpha)
    }

    /// The configuration in force at `slot`, as far as the history goes
    /// (right for every slot below [`Membership::known_below`]).
    fn in_force(&self, slot: Slot) -> u16 {
        self.history
            .range(..=slot)
            .next_back()
            .map_or(self.initial, |(_, voters)| *voters)
    }

    fn config_at(&self, slot: Slot) -> Option<u16> {
        (slot < self.known_below()).then(|| self.in_force(slot))
    }

    /// `node` voted at (`ballot`, `slot`) for `entry`; `set` is every node
    /// that voted for it there so far. Judged now if the slot's
    /// configuration is known, else kept until it is.
    #[allow(clippy::too_many_arguments)]
    fn vote(
        &mut self,
        chosen: &mut BTreeMap<Slot, u64>,
        votes: &Votes,
        at: u64,
        node: NodeId,
        ballot: Ballot,
        slot: Slot,
        entry: u64,
        set: u16,
    ) -> Result<(), Violation> {
        let Some(cfg) = self.config_at(slot) else {
            let deferred = self.deferred_votes.entry(slot).or_default();
            deferred.push((at, node, ballot, entry));
            return Ok(());
        };
        if self.judge_vote(chosen, at, None, node, ballot, slot, entry, set, cfg)? {
            self.advance(chosen, votes, at)
        } else {
            Ok(())
        }
    }

    /// Judges a vote at a slot of known configuration `cfg`; `set` is every
    /// node that voted for (`ballot`, `entry`) there so far. A non-voter's
    /// vote is M2 and counts for nothing (`set` is read through `cfg`); the
    /// entry is chosen once the voters of `cfg` in `set` are a majority of
    /// it (P1 if another entry was). `sent` is when a deferred vote came.
    /// Returns whether the slot is newly chosen.
    #[allow(clippy::too_many_arguments)]
    fn judge_vote(
        &mut self,
        chosen: &mut BTreeMap<Slot, u64>,
        at: u64,
        sent: Option<u64>,
        node: NodeId,
        ballot: Ballot,
        slot: Slot,
        entry: u64,
        set: u16,
        cfg: u16,
    ) -> Result<bool, Violation> {
        if cfg & (1 << node) == 0 {
            return Err(v(
                Invariant::M2,
                at,
                Some(node),
                format!(
                    "n{node} sent Accepted({ballot}, slot {slot}){}, but slot {slot}'s \
                     configuration is {}: n{node} is no voter there",
                    late(sent),
                    crate::fmt_set(cfg)
                ),
            ));
        }
        if !quorum_of(set, cfg) {
            return Ok(false);
        }
        let newly = choose(chosen, at, node, ballot, slot, entry)?;
        if newly {
            if let Some(&config) = self.entries.get(&entry) {
                self.chosen.insert(slot, config);
            }
        }
        Ok(newly)
    }

    /// A slot was newly chosen: `prefix` moves over the slots now chosen in
    /// a row, the configurations among them join the history, and what
    /// waited for the configurations that became known is judged — which
    /// may choose more slots, and so on. Everything is judged before the
    /// first violation found is returned: the state stays whole.
    fn advance(
        &mut self,
        chosen: &mut BTreeMap<Slot, u64>,
        votes: &Votes,
        at: u64,
    ) -> Result<(), Violation> {
        let mut first = Ok(());
        loop {
            while chosen.contains_key(&self.prefix) {
                if let Some(&(epoch, voters)) = self.chosen.get(&self.prefix) {
                    if epoch == self.epoch + 1 {
                        let from = self.prefix.saturating_add(self.alpha);
                        self.history.insert(from, voters);
                        self.epoch = epoch;
                    }
                }
                self.prefix += 1;
            }
            let known = self.known_below();
            let Some(next) = self
                .deferred_votes
                .first_entry()
                .filter(|e| *e.key() < known)
            else {
                break;
            };
            let (slot, deferred) = next.remove_entry();
            let cfg = self.in_force(slot);
            // Replayed in the order they came, from nothing: every vote at
            // the slot waited here, so this is the eager judgement, late.
            let mut sets = BTreeMap::<(Ballot, u64), u16>::new();
            for (sent, node, ballot, entry) in deferred {
                let set = sets.entry((ballot, entry)).or_default();
                *set |= 1 << node;
                let set = *set;
                let judged =
                    self.judge_vote(chosen, at, Some(sent), node, ballot, slot, entry, set, cfg);
                first = first.and(judged.map(|_| ()));
            }
        }
        // Applies change nothing chosen: judged once the votes are.
        let known = self.known_below();
        while let Some(next) = self
            .deferred_applies
            .first_entry()
            .filter(|e| *e.key() < known)
        {
            let (slot, applies) = next.remove_entry();
            let cfg = self.in_force(slot);
            for (sent, node, entry) in applies {
                let judged =
                    self.judge_apply(chosen, votes, at, Some(sent), node, slot, entry, cfg);
                first = first.and(judged);
            }
        }
        first
    }

    /// `node` applied `entry` at `slot`, whose configuration is `cfg`. If
    /// the entry is not the one chosen there, says why the replica may have
    /// believed it was: a majority of another configuration the checker
    /// knows of voted for it (M1: quorums taken from the wrong
    /// configuration); or it reaches a majority of `cfg` only counting
    /// votes of non-voters (M3: a removed node's or a learner's messages
    /// made a decision; each such vote was M2 when it came, so this is
    /// reached only if that went unreported); else P2, as with fixed
    /// voters. `sent` is when a deferred apply happened.
    #[allow(clippy::too_many_arguments)]
    fn judge_apply(
        &self,
        chosen: &BTreeMap<Slot, u64>,
        votes: &Votes,
        at: u64,
        sent: Option<u64>,
        node: NodeId,
        slot: Slot,
        entry: u64,
        cfg: u16,
    ) -> Result<(), Violation> {
        if chosen.get(&slot) == Some(&entry) {
            return Ok(());
        }
        let sets = || {
            votes
                .get(&slot)
                .into_iter()
                .flatten()
                .filter(move |((_, e), _)| *e == entry)
                .map(|((b, _), set)| (*b, *set))
        };
        let others = std::iter::once(self.initial)
            .chain(self.history.values().copied())
            .chain(self.chosen.values().map(|(_, v)| *v))
            .filter(|other| *other != cfg);
        for other in others {
            if let Some((ballot, set)) = sets().find(|(_, set)| quorum_of(*set, other)) {
                return Err(v(
                    Invariant::M1,
                    at,
                    Some(node),
                    format!(
                        "n{node} applied #{entry:016x} at slot {slot}{}: {} voted for it in \
                         {ballot}, a majority of configuration {}, but slot {slot} is governed \
                         by configuration {}",
                        late(sent),
                        crate::fmt_set(set & other),
                        crate::fmt_set(other),
                        crate::fmt_set(cfg)
                    ),
                ));
            }
        }
        let counting_all =
            |set: u16| set.count_ones() as usize >= majority(cfg.count_ones() as usize);
        if let Some((ballot, set)) = sets().find(|(_, set)| set & !cfg != 0 && counting_all(*set)) {
            return Err(v(
                Invariant::M3,
                at,
                Some(node),
                format!(
                    "n{node} applied #{entry:016x} at slot {slot}{}: {} voted for it in {ballot}, \
                     a majority of slot {slot}'s configuration {} only counting non-voters {}",
                    late(sent),
                    crate::fmt_set(set),
                    crate::fmt_set(cfg),
                    crate::fmt_set(set & !cfg)
                ),
            ));
        }
        applied_chosen(chosen, at, node, slot, entry).map_err(|mut e| {
            e.detail.push_str(&late(sent));
            e
        })
    }

    /// M2 for a Promise: see [`LogObserver::on_promise`].
    fn judge_promise(&self, at: u64, node: NodeId, ballot: Ballot) -> Result<(), Violation> {
        let Some(&from) = self.prepares.get(&ballot) else {
            return Ok(());
        };
        let holds = |voters: &u16| voters & (1 << node) != 0;
        if !holds(&self.initial) && !self.chosen.values().any(|(_, v)| holds(v)) {
            return Err(v(
                Invariant::M2,
                at,
                Some(node),
                format!(
                    "n{node} promised {ballot} (its Prepare asks for slots from {from} on), but \
                     it is a voter of no configuration: not of the initial {}, nor of any chosen",
                    crate::fmt_set(self.initial)
                ),
            ));
        }
        // Its last removal: in the history of configurations in force (the
        // slots below `prefix` decided them, and which took effect), the
        // first after the last that has it; unless a configuration chosen
        // since (beyond `prefix` too) has it again.
        let after = self
            .history
            .iter()
            .rev()
            .find(|(_, voters)| holds(voters))
            .map_or(0, |(s, _)| s.saturating_add(1));
        if let Some((&effective, &voters)) = self.history.range(after..).next() {
            let c = effective.saturating_sub(self.alpha);
            let back = self
                .chosen
                .range(c.saturating_add(1)..)
                .any(|(_, (_, v))| holds(v));
            if effective <= from && !back {
                return Err(v(
                    Invariant::M2,
                    at,
                    Some(node),
                    format!(
                        "n{node} promised {ballot} (its Prepare asks for slots from {from} on), \
                         but configuration {} chosen at slot {c} removed it from slot \
                         {effective} on, and no configuration chosen since has it back",
                        crate::fmt_set(voters)
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
