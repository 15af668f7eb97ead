//! Omniscient safety and liveness checkers for Basic Paxos runs.
//!
//! The [`Observer`] sits outside the nodes. The simulator tells it what
//! actually happened — a client proposed a value, an acceptor's message left
//! it, an acceptor's write became durable, a node reported it learned or
//! decided — and the observer decides for itself what is *chosen*: a value
//! is chosen once a true majority of acceptors accepted it in the same ballot,
//! where "accepted" means the acceptor sent `Accepted(b, v)` or durably wrote
//! it. It never asks a node what it believes, and it never uses the nodes'
//! quorum size (a canary may have broken that).
//!
//! Invariants, checked on every observation:
//! - **S1** only a proposed value is ever chosen (and only proposed values are
//!   ever sent in an Accept);
//! - **S2** at most one value is ever chosen, across all ballots;
//! - **S3** a learner learns only a value that is chosen at that moment;
//! - **S4** a proposer reports success only for the chosen value, and only
//!   to a client that asked it;
//! - **S5** every ballot has one owner and carries one value: judged from
//!   the Accepts acceptors actually receive, across crashes (a restarted
//!   proposer that reuses a ballot with another value breaks it at once, long
//!   before two values are ever chosen);
//! - **L1** after the quiet period begins, every live node learns and every
//!   live proposer reports its decision to its client within a bounded
//!   simulated time (checked by the simulator through [`Observer::unlearned`]
//!   and [`Observer::undecided`]).
//!
//! **D1** (durability before disclosure) is checked by the simulator itself,
//! which alone knows what the disk holds: a message leaves only once the write
//! it reveals is durable.
//!
//! The observer also keeps *coverage marks* — situations a good run sometimes
//! reaches (two ballots competed, a proposer adopted an accepted value, a node
//! recovered after a restart) — so a campaign can say which it never reached.

use paxos::{majority, Ballot, Msg, NodeId, Record, Value, MAX_NODES};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

mod ballots;
pub mod lease;
pub mod log;

/// Which invariant a violation broke.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Invariant {
    /// Only a proposed value is chosen.
    S1,
    /// At most one value is chosen.
    S2,
    /// A learner learns only a chosen value.
    S3,
    /// A proposer reports success only for the chosen value.
    S4,
    /// Every ballot has one owner and carries at most one value.
    S5,
    /// A message that reveals state leaves only after the write holding that
    /// state is durable.
    D1,
    /// Every live node learns within the bound after faults heal.
    L1,
    /// A node's own assertion failed (an invariant asserted in the code).
    Assert,
    // ---- the replicated log and the service ----
    /// At most one entry is chosen per slot (and a chosen entry never changes).
    P1,
    /// A replica applies only the chosen entry of a slot, and only commands a
    /// client submitted.
    P2,
    /// Every replica's applied log is a gap-free prefix of one log.
    P3,
    /// At most one leader per ballot, and only the ballot's owner.
    P4,
    /// An acceptor's promises never go backwards, across crashes.
    P5,
    /// Every ballot has one owner and carries one entry per slot.
    P6,
    /// A leader counts on its lease only while a quorum's grants, each on
    /// its granter's own clock, still hold in real time.
    P7,
    // ---- membership changes (the α-window) ----
    /// A slot is decided only by a quorum of the configuration in force for it.
    M1,
    /// A node votes only in a configuration it is a voter of.
    M2,
    /// A removed node's messages change no decision.
    M3,
    /// Fencing tokens increase per lock; one holder per token.
    K1,
    /// No client command is executed twice.
    K2,
    /// The client history is linearizable.
    K3,
    /// Every command the service executed got the reply its specification
    /// gives, replayed in log order (sessions, ephemeral keys, locks).
    K4,
    /// After faults heal, every client operation completes within the bound
    /// and the replicas converge.
    L2,
    // ---- resources and hostile input (any protocol that declares them) ----
    /// A message's encoded size stays within the wire limit its protocol
    /// declares.
    R1,
    /// A node never makes the same fact durable twice (its disk holds each
    /// promise, acceptance, chosen entry and snapshot once): what a node
    /// keeps stays bounded by its live state.
    R2,
    /// Nothing from the network makes a node panic, hang or spin: a message
    /// no correct peer sends is refused.
    H1,
    // ---- protocols brought by users (the detail names the property) ----
    /// A safety property of a user's scenario.
    Safety,
    /// A liveness property of a user's scenario.
    Liveness,
}

impl Invariant {
    pub fn describe(self) -> &'static str {
        match self {
            Invariant::S1 => "only a proposed value is ever chosen",
            Invariant::S2 => "at most one value is ever chosen",
            Invariant::S3 => "a learner learns only a chosen value",
            Invariant::S4 => "a proposer reports success only for the chosen value",
            Invariant::S5 => "every ballot has one owner and carries one value",
            Invariant::D1 => "a message reveals only durable state",
            Invariant::L1 => {
                "after faults heal, every node learns and every proposer reports its decision"
            }
            Invariant::Assert => "a protocol assertion held",
            Invariant::P1 => "at most one entry is ever chosen per slot",
            Invariant::P2 => "replicas apply only chosen entries of submitted commands",
            Invariant::P3 => "applied logs are gap-free prefixes of one log",
            Invariant::P4 => "at most one leader per ballot",
            Invariant::P5 => "promises are monotone per acceptor across crashes",
            Invariant::P6 => "every ballot has one owner and one entry per slot",
            Invariant::P7 => "a leader's lease ends before a quorum's grants do",
            Invariant::M1 => {
                "a slot is decided only by a quorum of the configuration in force for it"
            }
            Invariant::M2 => "a node votes only in a configuration it is a voter of",
            Invariant::M3 => "a removed node's messages change no decision",
            Invariant::K1 => "fencing tokens are monotone and lock holders exclusive",
            Invariant::K2 => "no command is applied twice",
            Invariant::K3 => "the client history is linearizable",
            Invariant::K4 => {
                "every executed command got the reply the service's specification gives"
            }
            Invariant::L2 => "after faults heal, operations complete and replicas converge",
            Invariant::R1 => "every message fits the protocol's wire limit",
            Invariant::R2 => "no fact is made durable twice",
            Invariant::H1 => "nothing from the network makes a node panic, hang or spin",
            Invariant::Safety => "the scenario's safety property held",
            Invariant::Liveness => "the scenario's liveness property held",
        }
    }
}

/// A broken invariant: which, when, where, and what exactly.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Violation {
    pub invariant: Invariant,
    pub at_us: u64,
    pub node: Option<NodeId>,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} violated ({}) at {}",
            self.invariant,
            self.invariant.describe(),
            fmt_time(self.at_us)
        )?;
        if let Some(n) = self.node {
            write!(f, " on n{n}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// D1, durability before disclosure: `node` sent a message to `to` that
/// reveals its write number `after` (0: none), while its writes up to
/// `synced` are durable on the simulator's disk. `msg` describes the message,
/// for the report only.
pub fn check_disclosure<D: fmt::Display>(
    at_us: u64,
    node: NodeId,
    to: NodeId,
    after: u64,
    synced: u64,
    msg: impl FnOnce() -> D,
) -> Result<(), Violation> {
    if after <= synced {
        return Ok(());
    }
    Err(Violation {
        invariant: Invariant::D1,
        at_us,
        node: Some(node),
        detail: format!(
            "n{node} sent {} to n{to}, revealing write #{after}, but only writes up to \
             #{synced} are durable",
            msg()
        ),
    })
}

/// Formats simulated microseconds as milliseconds.
pub fn fmt_time(us: u64) -> String {
    format!("{}.{:03}ms", us / 1000, us % 1000)
}

/// Situations a campaign should reach; each counts runs (or events) that did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Coverage {
    /// An acceptor rejected a ballot because it had promised a higher one.
    pub competing_ballots: u64,
    /// A proposer sent an Accept for a value other than its own.
    pub adopted_value: u64,
    /// A node that restarted later learned the value.
    pub recovered_after_restart: u64,
    /// A value became chosen in a ballot above the first one that reached a
    /// majority of promises elsewhere, i.e. after at least one pre-emption.
    pub chosen_after_preemption: u64,
    /// A learner learned through a Query reply rather than live traffic.
    pub learned_by_query: u64,
    // ---- the log scenarios ----
    /// A second leader was elected (a leader change).
    #[serde(default)]
    pub leader_changes: u64,
    /// A replica installed a snapshot from a peer or its disk.
    #[serde(default)]
    pub snapshot_installs: u64,
    /// A replica rebuilt a wiped or corrupt disk from its peers.
    #[serde(default)]
    pub rebuilds: u64,
    /// A leader answered a read under its lease.
    #[serde(default)]
    pub lease_reads: u64,
    /// The dedup table answered a retried command.
    #[serde(default)]
    pub dedup_hits: u64,
}

impl Coverage {
    /// `(name, count)` for every Basic Paxos mark, in a fixed order.
    pub fn marks(&self) -> [(&'static str, u64); 5] {
        [
            ("competing ballots", self.competing_ballots),
            ("proposer adopted an accepted value", self.adopted_value),
            ("recovery after restart", self.recovered_after_restart),
            ("chosen after a pre-emption", self.chosen_after_preemption),
            ("learned by query", self.learned_by_query),
        ]
    }

    /// `(name, count)` for every mark of the log scenarios.
    pub fn log_marks(&self) -> [(&'static str, u64); 5] {
        [
            ("leader change", self.leader_changes),
            ("snapshot installed", self.snapshot_installs),
            ("replica rebuilt from peers", self.rebuilds),
            ("read served under a lease", self.lease_reads),
            ("retry answered by the dedup table", self.dedup_hits),
        ]
    }

    fn fields(&mut self) -> [&mut u64; 10] {
        [
            &mut self.competing_ballots,
            &mut self.adopted_value,
            &mut self.recovered_after_restart,
            &mut self.chosen_after_preemption,
            &mut self.learned_by_query,
            &mut self.leader_changes,
            &mut self.snapshot_installs,
            &mut self.rebuilds,
            &mut self.lease_reads,
            &mut self.dedup_hits,
        ]
    }

    /// Adds counts that are already per run (merging campaign batches).
    pub fn merge(&mut self, other: &Coverage) {
        let mut o = *other;
        for (a, b) in self.fields().into_iter().zip(o.fields()) {
            *a += *b;
        }
    }

    /// Adds `other`'s marks, counting each run at most once per mark.
    pub fn add_run(&mut self, other: &Coverage) {
        let mut o = *other;
        for (a, b) in self.fields().into_iter().zip(o.fields()) {
            *a += (*b > 0) as u64;
        }
    }
}

/// The omniscient observer of one run (`Eq` and `Hash`: a model checker
/// keeps it in each state it visits).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Observer {
    n: usize,
    /// Values clients proposed, and by which node.
    proposed: BTreeMap<Value, NodeId>,
    /// Acceptors that accepted each (ballot, value), as a bitmask.
    accepted: BTreeMap<(Ballot, Value), u16>,
    /// Values chosen so far, in the order they became chosen.
    chosen: Vec<(Value, Ballot)>,
    learned: [Option<Value>; MAX_NODES],
    /// Whether each node's proposer reported a decision since it last started.
    decided: [bool; MAX_NODES],
    /// The value of the first Accept an acceptor received in each ballot.
    /// Kept across crashes: a ballot is never reused.
    ballots: ballots::FirstValues<Ballot>,
    /// Which incarnation of its owner first used each ballot.
    owners: ballots::Owners,
    /// Each node's incarnation: bumped at every restart.
    incarnation: [u32; MAX_NODES],
    restarted: [bool; MAX_NODES],
    /// Whether each node's last Chosen or re-announced Accepted came from a query.
    queried: [bool; MAX_NODES],
    /// Highest ballot any acceptor rejected something for (pre-emption seen).
    preempted: bool,
    pub coverage: Coverage,
}

impl Observer {
    pub fn new(n: usize) -> Observer {
        assert!((1..=MAX_NODES).contains(&n));
        Observer {
            n,
            proposed: BTreeMap::new(),
            accepted: BTreeMap::new(),
            chosen: Vec::new(),
            learned: [None; MAX_NODES],
            decided: [false; MAX_NODES],
            ballots: ballots::FirstValues::default(),
            owners: ballots::Owners::default(),
            incarnation: [0; MAX_NODES],
            restarted: [false; MAX_NODES],
            queried: [false; MAX_NODES],
            preempted: false,
            coverage: Coverage::default(),
        }
    }

    /// The value chosen so far, if any (the first, if S2 was broken).
    pub fn chosen(&self) -> Option<Value> {
        self.chosen.first().map(|(v, _)| *v)
    }

    /// A client asked `node`'s proposer to get `value` chosen.
    pub fn on_propose(&mut self, node: NodeId, value: Value) {
        let prev = self.proposed.insert(value, node);
        assert!(
            prev.is_none_or(|p| p == node),
            "the harness gave one value to two proposers"
        );
    }

    /// `from` put `msg` on the wire to `to` (whether or not it arrives).
    pub fn on_send(
        &mut self,
        at_us: u64,
        from: NodeId,
        to: NodeId,
        msg: Msg,
    ) -> Result<(), Violation> {
        match msg {
            Msg::Prepare { ballot } => self.use_ballot(at_us, from, ballot),
            Msg::Accepted { ballot, value } => self.accept(at_us, from, ballot, value),
            Msg::Accept { value, ballot } => {
                self.use_ballot(at_us, from, ballot)?;
                let Some(&owner) = self.proposed.get(&value) else {
                    return Err(Violation {
                        invariant: Invariant::S1,
                        at_us,
                        node: Some(from),
                        detail: format!(
                            "n{from} sent Accept({ballot}, {value}) to n{to}, \
                             but {value} was never proposed"
                        ),
                    });
                };
                if owner != from {
                    self.coverage.adopted_value += 1;
                }
                Ok(())
            }
            Msg::Nack { .. } => {
                self.coverage.competing_ballots += 1;
                self.preempted = true;
                Ok(())
            }
            Msg::Chosen { .. } => {
                self.queried[to as usize] = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Acceptor `to` received `msg` from `from` (S5: one value per ballot,
    /// judged from the Accepts that actually arrive; who may send in a ballot
    /// is judged when it is sent).
    pub fn on_receive(
        &mut self,
        at_us: u64,
        from: NodeId,
        to: NodeId,
        msg: Msg,
    ) -> Result<(), Violation> {
        let Msg::Accept { ballot, value } = msg else {
            return Ok(());
        };
        self.ballots
            .arrived(ballot, value, to, at_us)
            .map_err(|(first, first_to, first_at)| Violation {
                invariant: Invariant::S5,
                at_us,
                node: Some(from),
                detail: format!(
                    "ballot {ballot} carries two values: n{to} received Accept({ballot}, {value}), \
                     but n{first_to} received Accept({ballot}, {first}) at {}",
                    fmt_time(first_at)
                ),
            })
    }

    /// S5's first half, from what proposers send: a ballot is used only by
    /// its owner, and only by one incarnation of it (a restarted proposer that
    /// lost its round would otherwise reuse a ballot it may already have used
    /// with another value).
    fn use_ballot(&mut self, at_us: u64, from: NodeId, ballot: Ballot) -> Result<(), Violation> {
        // No disk is ever lost in Basic Paxos: one disk life.
        let inc = self.incarnation[from as usize];
        self.owners
            .sent(at_us, from, ballot, 0, inc)
            .map_err(|detail| Violation {
                invariant: Invariant::S5,
                at_us,
                node: Some(from),
                detail,
            })
    }

    /// `node`'s write of `record` became durable.
    pub fn on_durable(
        &mut self,
        at_us: u64,
        node: NodeId,
        record: Record,
    ) -> Result<(), Violation> {
        match record.accepted {
            Some((ballot, value)) => self.accept(at_us, node, ballot, value),
            None => Ok(()),
        }
    }

    fn accept(
        &mut self,
        at_us: u64,
        acceptor: NodeId,
        ballot: Ballot,
        value: Value,
    ) -> Result<(), Violation> {
        let set = self.accepted.entry((ballot, value)).or_insert(0);
        let before = *set;
        *set |= 1 << acceptor;
        if *set == before || (set.count_ones() as usize) != majority(self.n) {
            return Ok(()); // Not the acceptance that completes a majority.
        }
        if !self.proposed.contains_key(&value) {
            return Err(Violation {
                invariant: Invariant::S1,
                at_us,
                node: Some(acceptor),
                detail: format!(
                    "{value} became chosen in ballot {ballot} (acceptors {}) \
                     but was never proposed",
                    fmt_set(*set)
                ),
            });
        }
        if self.preempted {
            self.coverage.chosen_after_preemption += 1;
        }
        let set = *set;
        if let Some(&(first, first_ballot)) = self.chosen.iter().find(|(v, _)| *v != value) {
            let first_set = self
                .accepted
                .iter()
                .find(|((b, v), s)| {
                    *b == first_ballot && *v == first && s.count_ones() as usize >= majority(self.n)
                })
                .map_or(0, |(_, s)| *s);
            self.chosen.push((value, ballot));
            return Err(Violation {
                invariant: Invariant::S2,
                at_us,
                node: Some(acceptor),
                detail: format!(
                    "{value} became chosen in ballot {ballot} (acceptors {}), \
                     but {first} was already chosen in ballot {first_ballot} (acceptors {})",
                    fmt_set(set),
                    fmt_set(first_set)
                ),
            });
        }
        self.chosen.push((value, ballot));
        Ok(())
    }

    /// `node`'s learner reported that `value` is chosen.
    pub fn on_learned(&mut self, at_us: u64, node: NodeId, value: Value) -> Result<(), Violation> {
        if !self.chosen.iter().any(|(v, _)| *v == value) {
            return Err(Violation {
                invariant: Invariant::S3,
                at_us,
                node: Some(node),
                detail: format!(
                    "n{node} learned {value}, which is not chosen (chosen: {})",
                    self.fmt_chosen()
                ),
            });
        }
        let i = node as usize;
        self.learned[i] = Some(value);
        if self.restarted[i] {
            self.coverage.recovered_after_restart += 1;
        }
        if self.queried[i] {
            self.coverage.learned_by_query += 1;
        }
        Ok(())
    }

    /// `node`'s proposer reported success with `value`.
    pub fn on_decided(&mut self, at_us: u64, node: NodeId, value: Value) -> Result<(), Violation> {
        if !self.proposed.values().any(|&p| p == node) {
            return Err(Violation {
                invariant: Invariant::S4,
                at_us,
                node: Some(node),
                detail: format!("n{node} reported a decision ({value}), but no client asked it"),
            });
        }
        if self.chosen.iter().any(|(v, _)| *v == value) {
            self.decided[node as usize] = true;
            return Ok(());
        }
        Err(Violation {
            invariant: Invariant::S4,
            at_us,
            node: Some(node),
            detail: format!(
                "n{node}'s proposer reported {value} as chosen (chosen: {})",
                self.fmt_chosen()
            ),
        })
    }

    /// `node` crashed: its learner's memory is gone.
    pub fn on_crash(&mut self, node: NodeId) {
        self.learned[node as usize] = None;
        self.decided[node as usize] = false;
        self.queried[node as usize] = false;
    }

    /// `node` restarted from its durable state.
    pub fn on_restart(&mut self, node: NodeId) {
        self.restarted[node as usize] = true;
        self.incarnation[node as usize] += 1;
    }

    /// The nodes among `live` whose learner has not learned yet (for L1).
    pub fn unlearned(&self, live: impl Iterator<Item = NodeId>) -> Vec<NodeId> {
        live.filter(|&i| self.learned[i as usize].is_none())
            .collect()
    }

    /// The proposers among `live` that have not reported a decision to their
    /// client since they last started (for L1; the caller names the nodes
    /// whose client is waiting).
    pub fn undecided(&self, live: impl Iterator<Item = NodeId>) -> Vec<NodeId> {
        live.filter(|&i| !self.decided[i as usize]).collect()
    }

    fn fmt_chosen(&self) -> String {
        if self.chosen.is_empty() {
            return "nothing".into();
        }
        let v: Vec<String> = self
            .chosen
            .iter()
            .map(|(v, b)| format!("{v} in ballot {b}"))
            .collect();
        v.join(", ")
    }
}

pub fn fmt_set(set: u16) -> String {
    let ids: Vec<String> = (0..MAX_NODES)
        .filter(|i| set & (1 << i) != 0)
        .map(|i| format!("n{i}"))
        .collect();
    format!("{{{}}}", ids.join(","))
}

#[cfg(test)]
mod tests;
