//! `basic`: Basic (single-decree) Paxos on the engine. N acceptors, several
//! duelling proposers (nodes `0..clients`, each with its own client and
//! value), a learner on every node; checked by [`checkers::Observer`]
//! (S1–S5, L1).

use crate::config::RunConfig;
use crate::engine::{
    Boot, Canary, Caps, Check, Checker, Cx, DiskRecord, Effect, Input, Never, Protocol, Scenario,
    Workload,
};
use checkers::{Invariant, Observer, Violation};
use paxos::{Ballot, Bugs, Msg, Node, NodeId, Output, Record, Timing, Value};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The value proposer `node` proposes (distinct per proposer).
pub fn value_of(node: NodeId) -> Value {
    100 + node as Value
}

/// The value `node`'s client asks for on its `retry`-th fresh retry (0: the
/// first request). Distinct across proposers and retries.
pub fn retry_value(node: NodeId, retry: u32) -> Value {
    value_of(node) + 1000 * retry as Value
}

/// `basic`'s own settings (`RunConfig::params`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub timing: Timing,
}

/// A message as the trace shows it: `Prepare(3.1)`, `Accept(3.1, 102)`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShowMsg(pub Msg);

/// An acceptance as the trace shows it: a named pair, not a tuple.
#[derive(Serialize)]
struct Acceptance {
    ballot: Ballot,
    value: Value,
}

fn acceptance(a: Option<(Ballot, Value)>) -> Option<Acceptance> {
    a.map(|(ballot, value)| Acceptance { ballot, value })
}

/// A message in the trace's JSON: as the core's type, with its acceptance
/// named.
#[derive(Serialize)]
enum TracedMsg {
    Prepare {
        ballot: Ballot,
    },
    Promise {
        ballot: Ballot,
        accepted: Option<Acceptance>,
    },
    Accept {
        ballot: Ballot,
        value: Value,
    },
    Accepted {
        ballot: Ballot,
        value: Value,
    },
    Nack {
        ballot: Ballot,
        promised: Ballot,
    },
    Query,
    Chosen {
        value: Value,
    },
}

impl Serialize for ShowMsg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Msg::Prepare { ballot } => TracedMsg::Prepare { ballot },
            Msg::Promise { ballot, accepted } => TracedMsg::Promise {
                ballot,
                accepted: acceptance(accepted),
            },
            Msg::Accept { ballot, value } => TracedMsg::Accept { ballot, value },
            Msg::Accepted { ballot, value } => TracedMsg::Accepted { ballot, value },
            Msg::Nack { ballot, promised } => TracedMsg::Nack { ballot, promised },
            Msg::Query => TracedMsg::Query,
            Msg::Chosen { value } => TracedMsg::Chosen { value },
        }
        .serialize(s)
    }
}

impl fmt::Display for ShowMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Msg::Prepare { ballot } => write!(f, "Prepare({ballot})"),
            Msg::Promise {
                ballot,
                accepted: None,
            } => write!(f, "Promise({ballot}, none)"),
            Msg::Promise {
                ballot,
                accepted: Some((b, v)),
            } => write!(f, "Promise({ballot}, accepted {v} in {b})"),
            Msg::Accept { ballot, value } => write!(f, "Accept({ballot}, {value})"),
            Msg::Accepted { ballot, value } => write!(f, "Accepted({ballot}, {value})"),
            Msg::Nack { ballot, promised } => write!(f, "Nack({ballot}, promised {promised})"),
            Msg::Query => write!(f, "Query"),
            Msg::Chosen { value } => write!(f, "Chosen({value})"),
        }
    }
}

/// A durable record as the trace shows it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShowRecord(pub Record);

impl Serialize for ShowRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Traced {
            promised: Ballot,
            accepted: Option<Acceptance>,
            proposer_round: u32,
        }
        let r = self.0;
        Traced {
            promised: r.promised,
            accepted: acceptance(r.accepted),
            proposer_round: r.proposer_round,
        }
        .serialize(s)
    }
}

impl fmt::Display for ShowRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(f, "promised {}", r.promised)?;
        if let Some((b, v)) = r.accepted {
            write!(f, " accepted {v} in {b}")?;
        }
        write!(f, " round {}", r.proposer_round)
    }
}

/// What a Basic Paxos node reports.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Note {
    Learned(Value),
    Decided(Value),
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Learned(v) => write!(f, "LEARN {v}"),
            Note::Decided(v) => write!(f, "DECIDE {v}"),
        }
    }
}

impl DiskRecord for Record {
    fn replaces_all(&self) -> bool {
        true
    }
}

impl Protocol for Node {
    type Config = paxos::Config;
    type Msg = Msg;
    type Write = Record;
    type Timer = paxos::Timer;
    type Request = Value;
    type Reply = Never;
    type Note = Note;
    type MsgSummary = ShowMsg;
    type WriteSummary = ShowRecord;
    type NoteSummary = Note;
    type Output = Output;

    fn boot(cfg: &paxos::Config, inc: u32, disk: &mut Vec<Record>, _now: u64) -> (Node, Boot) {
        let node = if inc == 0 {
            assert!(disk.is_empty(), "a first boot finds an empty disk");
            Node::new(*cfg)
        } else {
            Node::recover(*cfg, disk.last().copied().unwrap_or_default())
        };
        (node, Boot::Recovered)
    }

    fn start(&mut self, now: u64, out: &mut Vec<Output>) {
        Node::start(self, now, out);
    }

    fn handle(&mut self, now: u64, input: Input<Node>, out: &mut Vec<Output>) {
        let input = match input {
            Input::Receive { from, msg } => paxos::Input::Receive { from, msg },
            Input::Timer(t) => paxos::Input::Timer(t),
            Input::Request { req, .. } => paxos::Input::Propose(req),
            Input::Synced { upto } => paxos::Input::Synced { upto },
        };
        Node::handle(self, now, input, out);
    }

    fn effect(o: Output) -> Option<Effect<Node>> {
        Some(match o {
            Output::Send { to, msg, after } => Effect::Send { to, msg, after },
            Output::Persist { seq, record } => Effect::Persist { seq, write: record },
            Output::Sync { upto } => Effect::Sync { upto },
            Output::SetTimer {
                timer,
                delay_us,
                jitter_us,
            } => Effect::SetTimer {
                timer,
                delay_us,
                jitter_us,
            },
            Output::Learned { value } => Effect::Note(Note::Learned(value)),
            Output::Decided { value } => Effect::Note(Note::Decided(value)),
            Output::Refused { from, why } => Effect::Refused { from, why },
        })
    }

    fn summarize_msg(msg: &Msg) -> ShowMsg {
        ShowMsg(*msg)
    }
    fn summarize_write(w: &Record) -> ShowRecord {
        ShowRecord(*w)
    }
    fn summarize_note(n: &Note) -> Option<Note> {
        Some(*n)
    }
}

/// The checker: S1–S5 from [`Observer`], and L1.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BasicChecker {
    obs: Observer,
    /// Proposers whose client asked for a value and waits for the answer.
    waiting: Vec<NodeId>,
    n: u8,
}

impl Checker<Node> for BasicChecker {
    fn on_send(&mut self, now: u64, from: NodeId, to: NodeId, msg: &Msg) -> Check {
        self.obs.on_send(now, from, to, *msg)
    }
    fn on_receive(&mut self, now: u64, from: NodeId, to: NodeId, msg: &Msg) -> Check {
        self.obs.on_receive(now, from, to, *msg)
    }
    fn on_durable(&mut self, now: u64, node: NodeId, writes: &[Record]) -> Check {
        writes
            .iter()
            .try_for_each(|w| self.obs.on_durable(now, node, *w))
    }
    fn on_note(&mut self, now: u64, node: NodeId, note: &Note) -> Check {
        match *note {
            Note::Learned(v) => self.obs.on_learned(now, node, v),
            Note::Decided(v) => self.obs.on_decided(now, node, v),
        }
    }
    fn on_invoke(&mut self, _now: u64, client: u32, value: &Value) -> Check {
        let node = client as NodeId;
        self.obs.on_propose(node, *value);
        if !self.waiting.contains(&node) {
            self.waiting.push(node);
        }
        Ok(())
    }
    fn on_crash(&mut self, node: NodeId) {
        self.obs.on_crash(node);
    }
    fn on_restart(&mut self, node: NodeId) {
        self.obs.on_restart(node);
    }
    fn settled(&self, _nodes: &[Option<Node>]) -> bool {
        self.obs.unlearned(0..self.n).is_empty()
            && self.obs.undecided(self.waiting.iter().copied()).is_empty()
    }
    fn unsettled(&self, now: u64, cfg: &RunConfig, _nodes: &[Option<Node>]) -> Violation {
        let n = self.n;
        let unlearned = self.obs.unlearned(0..n);
        let undecided = self.obs.undecided(self.waiting.iter().copied());
        assert!(
            !unlearned.is_empty() || !undecided.is_empty(),
            "L1 judged while all learned and decided"
        );
        let detail = if !unlearned.is_empty() {
            format!(
                "{} of {n} nodes had not learned {} after the quiet period began at {} (bound {}): {:?}",
                unlearned.len(),
                self.obs.chosen().map_or("anything".into(), |v| v.to_string()),
                checkers::fmt_time(cfg.fault_phase_us),
                checkers::fmt_time(cfg.liveness_us),
                unlearned,
            )
        } else {
            format!(
                "every node learned, but the proposers of {:?} never reported a decision to \
                 their clients after the quiet period began at {} (bound {})",
                undecided,
                checkers::fmt_time(cfg.fault_phase_us),
                checkers::fmt_time(cfg.liveness_us),
            )
        };
        Violation {
            invariant: Invariant::L1,
            at_us: now,
            node: unlearned.first().or(undecided.first()).copied(),
            detail,
        }
    }
    fn coverage(&self) -> Vec<(&'static str, u64)> {
        self.obs.coverage.marks().to_vec()
    }
}

/// The clients: one per proposer, each asking once (and again after its
/// proposer restarts).
pub struct BasicWorkload {
    clients: u8,
    proposed: Vec<bool>,
    retries: Vec<u32>,
    /// Whether a client whose proposer restarted retries with a fresh value
    /// (drawn per seed), as a real client retrying with a new command would.
    fresh_retries: bool,
}

impl Workload<Node> for BasicWorkload {
    fn start(&mut self, cx: &mut dyn Cx<Node>) {
        // How close together the clients propose decides how hard the
        // proposers duel: drawn per seed, from near-simultaneous to spread out.
        let phase = cx.cfg().fault_phase_us;
        let window = match cx.rng().gen_range(0..3) {
            0 => 1_000,
            1 => 20_000,
            _ => phase / 4,
        }
        .clamp(1, phase.max(1));
        for c in 0..self.clients {
            let at = cx.rng().gen_range(0..window);
            cx.wake(c as u32, at, 0);
        }
    }

    fn on_wake(&mut self, cx: &mut dyn Cx<Node>, client: u32, _token: u64) {
        let node = client as NodeId;
        self.proposed[node as usize] = true;
        let v = value_of(node);
        cx.invoke(client, node, v);
        cx.local(client, node, v);
    }

    fn on_restart(&mut self, cx: &mut dyn Cx<Node>, node: NodeId) {
        if node >= self.clients || !self.proposed[node as usize] {
            return;
        }
        // The client retries its request with the restarted proposer: in
        // some seeds with a fresh value, as a new command would be.
        let client = node as u32;
        let v = if self.fresh_retries {
            self.retries[node as usize] += 1;
            let v = retry_value(node, self.retries[node as usize]);
            cx.invoke(client, node, v);
            v
        } else {
            value_of(node)
        };
        cx.local(client, node, v);
    }

    fn deadline(&self, quiet_at: u64, cfg: &RunConfig) -> u64 {
        quiet_at + cfg.liveness_us
    }

    fn done(&self) -> bool {
        true
    }
}

/// The `basic` scenario.
pub struct Basic;

const CANARIES: [Canary; 7] = [
    (
        "reply-before-sync",
        "acceptors reply before their write is durable (D1)",
    ),
    (
        "accept-below-promise",
        "acceptors accept ballots below their promise",
    ),
    (
        "ignore-promised-values",
        "proposers ignore values reported in promises",
    ),
    (
        "count-duplicate-accepted",
        "learners count duplicate Accepted messages",
    ),
    ("minority-quorum", "quorums of n/2 instead of n/2 + 1"),
    (
        "shared-ballots",
        "proposers leave their id out of ballots (S5)",
    ),
    (
        "volatile-round",
        "a restarted proposer may reuse a ballot (S5)",
    ),
];

impl Scenario for Basic {
    type P = Node;
    type Checker = BasicChecker;
    type Workload = BasicWorkload;

    fn name(&self) -> &'static str {
        "basic"
    }
    fn about(&self) -> &'static str {
        "Basic Paxos: N acceptors (3-9, default 5), --clients proposers (default 3), learners on every node"
    }
    fn defaults(&self) -> RunConfig {
        let mut c = RunConfig {
            scenario: "basic".into(),
            ..RunConfig::generic()
        };
        c.set_params(&Params::default());
        c
    }
    fn caps(&self, _cfg: &RunConfig) -> Caps {
        Caps::default()
    }
    fn canaries(&self) -> Vec<Canary> {
        assert_eq!(CANARIES.len(), paxos::CANARIES.len());
        CANARIES.to_vec()
    }
    fn validate(&self, cfg: &RunConfig) -> Result<(), String> {
        if !(3..=9).contains(&cfg.nodes) {
            return Err(format!("nodes is {}, must be 3 to 9", cfg.nodes));
        }
        if cfg.clients == 0 || cfg.clients > cfg.nodes {
            return Err(format!(
                "clients (proposers) is {}, must be 1 to nodes ({})",
                cfg.clients, cfg.nodes
            ));
        }
        if cfg.ops != 1 {
            return Err(format!(
                "ops is {}: in basic each client asks once (and again after its proposer restarts)",
                cfg.ops
            ));
        }
        let p: Params = cfg.params()?;
        let t = &p.timing;
        for (name, v, lo, hi) in [
            ("timing.retry_us", t.retry_us, 1, 60_000_000),
            ("timing.retry_jitter_us", t.retry_jitter_us, 0, 60_000_000),
            ("timing.query_us", t.query_us, 1, 60_000_000),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(format!("{name} is {v}, must be {lo} to {hi}"));
            }
        }
        Ok(())
    }
    fn node_configs(&self, cfg: &RunConfig) -> Vec<paxos::Config> {
        let p: Params = cfg.params().expect("validated");
        let mut bugs = Bugs::default();
        for b in &cfg.bugs {
            bugs.enable(b).expect("validated");
        }
        (0..cfg.nodes)
            .map(|id| paxos::Config {
                n: cfg.nodes,
                id,
                proposer: id < cfg.clients,
                timing: p.timing,
                bugs,
            })
            .collect()
    }
    fn checker(&self, cfg: &RunConfig) -> BasicChecker {
        BasicChecker {
            obs: Observer::new(cfg.nodes as usize),
            waiting: Vec::new(),
            n: cfg.nodes,
        }
    }
    fn workload(&self, cfg: &RunConfig, rng: &mut ChaCha8Rng) -> BasicWorkload {
        BasicWorkload {
            clients: cfg.clients,
            proposed: vec![false; cfg.nodes as usize],
            retries: vec![0; cfg.nodes as usize],
            fresh_retries: rng.gen_bool(0.5),
        }
    }
    fn required_marks(&self, _cfg: &RunConfig) -> Vec<&'static str> {
        Observer::new(3)
            .coverage
            .marks()
            .iter()
            .map(|(n, _)| *n)
            .collect()
    }
    /// Two proposers on three acceptors, no timer firing: enough for every
    /// canary that needs no fault (a duel), and small (a timer firing
    /// multiplies the states by a few hundred).
    fn check_defaults(&self) -> crate::engine::CheckDefaults {
        crate::engine::CheckDefaults {
            nodes: 3,
            clients: 2,
            bounds: crate::nemesis::Bounds {
                timers: 0,
                ..Default::default()
            },
        }
    }
    /// Each client asks its own proposer once.
    fn check_requests(&self, cfg: &RunConfig) -> Vec<(u32, NodeId, Value)> {
        (0..cfg.clients)
            .map(|c| (c as u32, c as NodeId, value_of(c)))
            .collect()
    }
    /// A client whose proposer restarted asks it again (the same value, as
    /// the workload's clients do in half the seeds).
    fn check_retries(&self, cfg: &RunConfig, node: NodeId) -> Vec<(u32, NodeId, Value)> {
        match node < cfg.clients {
            true => vec![(node as u32, node, value_of(node))],
            false => Vec::new(),
        }
    }
    fn explore(
        &'static self,
        cfg: &RunConfig,
        bounds: crate::nemesis::Bounds,
        search: crate::engine::Search,
    ) -> Result<crate::engine::protocol::CheckReport, String> {
        Ok(crate::check::explore(self, cfg, bounds, search))
    }
}
