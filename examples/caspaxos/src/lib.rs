//! A single-register CASPaxos, tested by paxsim through its public seam only.
//!
//! Every node is an acceptor and a proposer. A client asks a node to apply
//! its change to the register; the node runs Prepare/Promise, takes the
//! accepted state with the highest ballot from a quorum (or the initial
//! state), applies the change (version + 1, written by this operation) and
//! runs Accept/Accepted; after a quorum it answers the client. Acceptors
//! answer only once their write is durable.
//!
//! The checker sees what acceptors durably accepted and what proposers
//! answered: at most one state is chosen per version, and a client is told
//! only a chosen state. The known-buggy variant `ignore-accepted` builds on
//! the proposer's own last state instead of the quorum's, and breaks both.

use checkers::{Invariant, Violation};
use paxsim::check::{Bounds, CheckReport, Search};
use paxsim::engine::{Boot, Canary, Caps, Check, Checker, Cx, DiskRecord, Effect, Input, Never};
use paxsim::engine::{Protocol, Scenario, Workload};
use paxsim::RunConfig;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

type NodeId = u8;
/// A ballot: `round << 8 | node`, unique per node.
pub type Ballot = u64;
type Out = Vec<Effect<Node>>;

/// The register: which operation (client, seq) wrote it last, at which
/// version; `(0, 0)` initially.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct State {
    pub version: u64,
    pub writer: (u32, u64),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Msg {
    Prepare(Ballot),
    Promise(Ballot, Option<(Ballot, State)>),
    Accept(Ballot, State),
    Accepted(Ballot),
    Nack(Ballot, Ballot),
}

/// A node's durable record: the whole acceptor state, and the proposer's
/// highest round (so a restarted proposer never reuses a ballot).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Record {
    pub promised: Ballot,
    pub accepted: Option<(Ballot, State)>,
    pub round: u64,
}

/// Client `client`'s operation `seq` (its change: "write me, version + 1").
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Op {
    pub client: u32,
    pub seq: u64,
}

/// The answer: operation `seq` made the register `state`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Done {
    pub seq: u64,
    pub state: State,
}

/// The trace shows these types as their `Debug` form.
macro_rules! display_as_debug {
    ($($t:ty),*) => {$(impl fmt::Display for $t {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Debug::fmt(self, f)
        }
    })*};
}
display_as_debug!(Msg, Record, Op, Done);

impl DiskRecord for Record {
    fn replaces_all(&self) -> bool {
        true
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Config {
    pub id: NodeId,
    pub n: u8,
    pub retry_us: u64,
    pub ignore_accepted: bool,
}

/// The attempt in flight: its id (for its retry timer), ballot and
/// operation, who promised, the best accepted state reported, what it
/// proposes in phase 2, and who accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Attempt {
    id: u64,
    ballot: Ballot,
    op: Op,
    promised: u16,
    best: Option<(Ballot, State)>,
    proposing: Option<State>,
    accepted: u16,
}

/// `Clone`, `Eq` and `Hash` make it model-checkable (`caspaxos check`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Node {
    cfg: Config,
    rec: Record,
    seq: u64,
    synced: u64,
    /// Messages waiting for a write to be durable: (write, to, msg).
    parked: Vec<(u64, NodeId, Msg)>,
    queue: Vec<Op>,
    attempt: Option<Attempt>,
    attempts: u64,
    /// The last state this proposer got chosen (the buggy variant's base).
    last: State,
}

impl Node {
    fn persist(&mut self, out: &mut Out) -> u64 {
        self.seq += 1;
        out.push(Effect::Persist { seq: self.seq, write: self.rec });
        out.push(Effect::Sync { upto: self.seq });
        self.seq
    }

    /// Sends `msg` to `to` once write `after` is durable.
    fn send(&mut self, after: u64, to: NodeId, msg: Msg, out: &mut Out) {
        if after <= self.synced {
            out.push(Effect::Send { to, msg, after });
        } else {
            self.parked.push((after, to, msg));
        }
    }

    fn next(&mut self, out: &mut Out) {
        if self.attempt.is_some() || self.queue.is_empty() {
            return;
        }
        let op = self.queue.remove(0);
        self.rec.round = self.rec.round.max(self.rec.promised >> 8) + 1;
        let ballot = self.rec.round << 8 | self.cfg.id as u64;
        self.attempts += 1;
        let id = self.attempts;
        self.attempt = Some(Attempt { id, ballot, op, ..Attempt::default() });
        let after = self.persist(out);
        for to in 0..self.cfg.n {
            self.send(after, to, Msg::Prepare(ballot), out);
        }
        let retry = self.cfg.retry_us;
        out.push(Effect::SetTimer { timer: id, delay_us: retry, jitter_us: retry });
    }

    fn acceptor(&mut self, from: NodeId, msg: Msg, out: &mut Out) {
        let reply = match msg {
            Msg::Prepare(b) if b > self.rec.promised => {
                self.rec.promised = b;
                Msg::Promise(b, self.rec.accepted)
            }
            Msg::Accept(b, s) if b >= self.rec.promised => {
                self.rec.promised = b;
                self.rec.accepted = Some((b, s));
                Msg::Accepted(b)
            }
            Msg::Prepare(b) | Msg::Accept(b, _) => {
                return self.send(0, from, Msg::Nack(b, self.rec.promised), out);
            }
            _ => unreachable!("not an acceptor message"),
        };
        let after = self.persist(out);
        self.send(after, from, reply, out);
    }

    fn proposer(&mut self, from: NodeId, msg: Msg, out: &mut Out) {
        let majority = self.cfg.n as u32 / 2 + 1;
        let Some(a) = self.attempt.as_mut() else { return };
        match msg {
            Msg::Promise(b, acc) if b == a.ballot && a.proposing.is_none() => {
                a.promised |= 1 << from;
                if acc.is_some_and(|(ab, _)| a.best.is_none_or(|(bb, _)| ab > bb)) {
                    a.best = acc;
                }
                if a.promised.count_ones() == majority {
                    let base = match self.cfg.ignore_accepted {
                        true => self.last,
                        false => a.best.map_or(State::default(), |(_, s)| s),
                    };
                    let writer = (a.op.client, a.op.seq);
                    let s = State { version: base.version + 1, writer };
                    a.proposing = Some(s);
                    let b = a.ballot;
                    for to in 0..self.cfg.n {
                        self.send(0, to, Msg::Accept(b, s), out);
                    }
                }
            }
            Msg::Accepted(b) if b == a.ballot => {
                a.accepted |= 1 << from;
                if a.accepted.count_ones() == majority {
                    let state = a.proposing.expect("Accepted only for a proposal");
                    let (client, seq) = (a.op.client, a.op.seq);
                    out.push(Effect::Reply { client, reply: Done { seq, state } });
                    self.last = state;
                    self.attempt = None;
                    self.next(out);
                }
            }
            Msg::Nack(_, promised) => self.rec.round = self.rec.round.max(promised >> 8),
            _ => {}
        }
    }
}

impl Protocol for Node {
    type Config = Config;
    type Msg = Msg;
    type Write = Record;
    type Timer = u64;
    type Request = Op;
    type Reply = Done;
    type Note = Never;
    type MsgSummary = Msg;
    type WriteSummary = Record;
    type NoteSummary = Never;
    type Output = Effect<Node>;

    fn boot(cfg: &Config, _inc: u32, disk: &mut Vec<Record>, _now: u64) -> (Node, Boot) {
        let rec = disk.last().copied().unwrap_or_default();
        (Node { cfg: cfg.clone(), rec, ..Node::default() }, Boot::Recovered)
    }

    fn start(&mut self, _now: u64, _out: &mut Out) {}

    fn handle(&mut self, _now: u64, input: Input<Node>, out: &mut Out) {
        match input {
            Input::Receive { from, msg: m @ (Msg::Prepare(_) | Msg::Accept(..)) } => {
                self.acceptor(from, m, out)
            }
            Input::Receive { from, msg } => self.proposer(from, msg, out),
            Input::Request { req, .. } => {
                // A resent request is queued once.
                let current = self.attempt.as_ref().map(|a| a.op);
                if current != Some(req) && !self.queue.contains(&req) {
                    self.queue.push(req);
                }
                self.next(out);
            }
            Input::Timer(id) => {
                if let Some(a) = self.attempt.take_if(|a| a.id == id) {
                    self.queue.insert(0, a.op);
                    self.next(out);
                }
            }
            Input::Synced { upto } => {
                self.synced = self.synced.max(upto);
                let (ready, wait) = self.parked.drain(..).partition(|p| p.0 <= upto);
                self.parked = wait;
                for (after, to, msg) in ready {
                    out.push(Effect::Send { to, msg, after });
                }
            }
        }
        let n = self.cfg.n as usize;
        // Each write parks at most one broadcast.
        assert!(self.parked.len() as u64 <= n as u64 * (self.seq - self.synced), "parked");
        assert!(self.queue.len() <= 64, "the queue holds one request per client");
    }

    fn effect(e: Effect<Node>) -> Option<Effect<Node>> {
        Some(e)
    }
    fn summarize_msg(msg: &Msg) -> Msg {
        *msg
    }
    fn summarize_write(w: &Record) -> Record {
        *w
    }
    fn summarize_note(n: &Never) -> Option<Never> {
        match *n {}
    }
}

/// At most one state chosen per version; clients hear only chosen states.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CasChecker {
    n: u8,
    /// Acceptors that durably accepted each (ballot, state).
    accepted: BTreeMap<(Ballot, State), u16>,
    /// The chosen state of each version: its writer.
    chosen: BTreeMap<u64, (u32, u64)>,
    nacks: u64,
}

fn safety(at_us: u64, node: NodeId, detail: String) -> Check {
    Err(Violation { invariant: Invariant::Safety, at_us, node: Some(node), detail })
}

impl Checker<Node> for CasChecker {
    fn on_send(&mut self, _now: u64, _from: NodeId, _to: NodeId, msg: &Msg) -> Check {
        self.nacks += matches!(msg, Msg::Nack(..)) as u64;
        Ok(())
    }

    fn on_durable(&mut self, now: u64, node: NodeId, writes: &[Record]) -> Check {
        for (b, s) in writes.iter().filter_map(|w| w.accepted) {
            let set = self.accepted.entry((b, s)).or_insert(0);
            *set |= 1 << node;
            if set.count_ones() != self.n as u32 / 2 + 1 {
                continue;
            }
            if let Some(w) = self.chosen.insert(s.version, s.writer).filter(|w| *w != s.writer) {
                let v = s.version;
                let d = format!("two states chosen at version {v}: by {w:?} and by {:?}", s.writer);
                return safety(now, node, d);
            }
        }
        Ok(())
    }

    fn on_reply(&mut self, now: u64, node: NodeId, client: u32, d: &Done) -> Check {
        if self.chosen.get(&d.state.version) != Some(&d.state.writer) {
            let detail = format!("c{client} was told {d}, which no majority durably accepted");
            return safety(now, node, detail);
        }
        Ok(())
    }

    fn unsettled(&self, now: u64, _cfg: &RunConfig, _nodes: &[Option<Node>]) -> Violation {
        let detail = "the cluster did not settle".into();
        Violation { invariant: Invariant::Liveness, at_us: now, node: None, detail }
    }

    fn coverage(&self) -> Vec<(&'static str, u64)> {
        vec![("competing ballots", self.nacks), ("versions chosen", self.chosen.len() as u64)]
    }
}

/// A client: ops done, the node it talks to, when its op in flight began.
#[derive(Clone, Copy)]
struct Client {
    done: u32,
    node: NodeId,
    since: Option<u64>,
}

/// Clients, one operation at a time each, resending to the next node when
/// an answer is slow.
pub struct Clients {
    ops: u32,
    n: u8,
    clients: Vec<Client>,
}

/// How long a client waits before resending to the next node.
const RESEND_US: u64 = 50_000;

impl Workload<Node> for Clients {
    fn start(&mut self, cx: &mut dyn Cx<Node>) {
        for c in 0..self.clients.len() as u32 {
            let at = cx.rng().gen_range(0..10_000);
            cx.wake(c, at, 0);
        }
    }

    /// Token 0: start the next operation; otherwise: resend `seq` if it is
    /// still in flight.
    fn on_wake(&mut self, cx: &mut dyn Cx<Node>, c: u32, seq: u64) {
        let cl = &mut self.clients[c as usize];
        let op = Op { client: c, seq: cl.done as u64 + 1 };
        match (seq, cl.since) {
            (0, None) if cl.done < self.ops => {
                cl.since = Some(cx.now());
                cx.invoke(c, cl.node, op);
            }
            (s, Some(_)) if s == op.seq => {
                cl.node = (cl.node + 1) % self.n;
                cx.retry(c, cl.node);
            }
            _ => return,
        }
        cx.send(c, cl.node, op);
        cx.wake(c, RESEND_US, op.seq);
    }

    fn on_reply(&mut self, cx: &mut dyn Cx<Node>, c: u32, from: NodeId, d: Done) {
        let cl = &mut self.clients[c as usize];
        if cl.since.is_some() && d.seq == cl.done as u64 + 1 {
            cx.complete(c, from, d);
            (cl.done, cl.since) = (cl.done + 1, None);
            let think = cx.rng().gen_range(0..5_000);
            cx.wake(c, think, 0);
        }
    }

    fn deadline(&self, quiet_at: u64, cfg: &RunConfig) -> u64 {
        let busy = self.clients.iter().filter_map(|c| c.since);
        busy.map(|t| t.max(quiet_at) + cfg.liveness_us).min().unwrap_or(u64::MAX)
    }

    fn done(&self) -> bool {
        self.clients.iter().all(|c| c.done >= self.ops)
    }

    fn stalled(&self, now: u64, _: u64, cfg: &RunConfig, _: &[Option<Node>]) -> Option<Violation> {
        let late: Vec<usize> =
            (0..self.clients.len()).filter(|&c| self.clients[c].since.is_some()).collect();
        let bound = checkers::fmt_time(cfg.liveness_us);
        let detail =
            format!("operations of clients {late:?} unanswered {bound} into the quiet period");
        Some(Violation { invariant: Invariant::Liveness, at_us: now, node: None, detail })
    }
}

/// The scenario: register it with `paxsim::cli::main` (see `main.rs`).
pub struct CasPaxos;

/// The scenario's own settings (`RunConfig::params`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// A proposer retries an attempt after this (plus up to as much jitter).
    pub retry_us: u64,
}

impl Scenario for CasPaxos {
    type P = Node;
    type Checker = CasChecker;
    type Workload = Clients;

    fn name(&self) -> &'static str {
        "caspaxos"
    }
    fn about(&self) -> &'static str {
        "single-register CASPaxos (examples/caspaxos): 3-7 nodes, clients (default 3 x 20 ops)"
    }
    fn defaults(&self) -> RunConfig {
        let mut c = RunConfig { clients: 3, ops: 20, ..RunConfig::generic() };
        c.set_params(&Params { retry_us: 20_000 });
        c
    }
    fn caps(&self, _cfg: &RunConfig) -> Caps {
        Caps::default()
    }
    fn canaries(&self) -> Vec<Canary> {
        vec![("ignore-accepted", "proposers build on their own last state, not the quorum's")]
    }
    fn validate(&self, cfg: &RunConfig) -> Result<(), String> {
        let p: Params = cfg.params()?;
        match (cfg.nodes, p.retry_us) {
            (3..=7, 1_000..=1_000_000) => Ok(()),
            (3..=7, r) => Err(format!("params.retry_us is {r}, must be 1000 to 1000000")),
            (n, _) => Err(format!("nodes is {n}, must be 3 to 7")),
        }
    }
    fn node_configs(&self, cfg: &RunConfig) -> Vec<Config> {
        let retry_us = cfg.params::<Params>().expect("validated").retry_us;
        let ignore_accepted = cfg.bug("ignore-accepted");
        (0..cfg.nodes).map(|id| Config { id, n: cfg.nodes, retry_us, ignore_accepted }).collect()
    }
    fn checker(&self, cfg: &RunConfig) -> CasChecker {
        CasChecker { n: cfg.nodes, ..CasChecker::default() }
    }
    fn workload(&self, cfg: &RunConfig, _rng: &mut ChaCha8Rng) -> Clients {
        let client = |c: u8| Client { done: 0, node: c % cfg.nodes, since: None };
        Clients { ops: cfg.ops, n: cfg.nodes, clients: (0..cfg.clients).map(client).collect() }
    }
    fn required_marks(&self, _cfg: &RunConfig) -> Vec<&'static str> {
        vec!["competing ballots", "versions chosen"]
    }
    fn check_requests(&self, cfg: &RunConfig) -> Vec<(u32, NodeId, Op)> {
        let op = |c: u32| (c, (c % cfg.nodes as u32) as NodeId, Op { client: c, seq: 1 });
        (0..cfg.clients as u32).map(op).collect()
    }
    fn explore(
        &'static self,
        cfg: &RunConfig,
        b: Bounds,
        s: Search,
    ) -> Result<CheckReport, String> {
        Ok(paxsim::check::explore(self, cfg, b, s))
    }
}
