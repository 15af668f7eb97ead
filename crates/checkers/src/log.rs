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
    locks: LockModel,
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
            locks: LockModel::default(),
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

    /// An acceptor sent `Promise(ballot)`.
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
        Ok(())
    }

    /// An acceptor sent `Accepted(ballot, slot)`.
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
        if (voters.count_ones() as usize) < majority(self.n) {
            return Ok(());
        }
        match self.chosen.get(&slot) {
            None => {
                self.chosen.insert(slot, entry);
                Ok(())
            }
            Some(&c) if c == entry => Ok(()),
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
        match self.chosen.get(&slot) {
            Some(&c) if c == entry => {}
            Some(&c) => {
                return Err(v(
                    Invariant::P2,
                    at,
                    Some(node),
                    format!(
                        "n{node} applied #{entry:016x} at slot {slot}, but #{c:016x} is chosen"
                    ),
                ))
            }
            None => {
                return Err(v(
                    Invariant::P2,
                    at,
                    Some(node),
                    format!("n{node} applied #{entry:016x} at slot {slot}, which nothing chose"),
                ))
            }
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

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
