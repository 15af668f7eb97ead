//! The model-checked twin: every interleaving of a small configuration,
//! explored breadth-first by stateright, through the same [`Protocol`]
//! seam and the same [`Checker`] as the simulator.
//!
//! A state is every node's memory, every disk (durable records and writes
//! not yet synced), the messages in flight (a sorted multiset), the timers
//! and syncs each node waits for, the client requests not yet delivered, and
//! the checker. An action is one thing the world may do next: deliver, lose
//! or duplicate a message, fire a timer, complete a sync, crash or restart a
//! node, deliver a client request, ask a node for an operator's
//! membership change (`Scenario::check_changes`; only a leader acts on
//! one). Loss, duplication, crashes, timer firings and membership changes
//! come from a budget, which keeps the space finite. A crash loses
//! every unsynced write; with no crash allowed, a sync completes right after
//! the step that asked for it (no history could tell the difference, and a
//! send in that step that did not wait for the write still breaks D1).
//!
//! Each node has its own clock, which moves only when one of its timers
//! fires: to that timer's due time (its clock when set plus the delay,
//! jitter left out). Clocks are unrelated to each other, so any drift is
//! explored: invariants that need bounded drift (leader leases) are beyond
//! the model and stay with the simulator. Breadth-first search finds a
//! shortest path to the first state where the checker (or D1) reports a
//! violation; the engine replays it as a script ([`crate::engine::script`]).

use crate::config::RunConfig;
use crate::engine::protocol::{
    Boot, Checker, Effect, Input, MemberChange, Protocol, Scenario, Situation,
};
pub use crate::engine::protocol::{CheckReport, Search};
use crate::engine::{Asked, Disk, Script, Step};
pub use crate::nemesis::Bounds;
use checkers::Violation;
use paxos::NodeId;
use stateright::{Checker as _, Model, Property};
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Instant;

/// Declares `Explorable` with its bounds written once: the trait and the
/// blanket impl that gives it to every protocol meeting them.
macro_rules! explorable {
    ($($bounds:tt)*) => {
        /// What a protocol needs to be model-checked: states it can compare
        /// and hash, and messages it can sort (so that the network is a
        /// multiset).
        pub trait Explorable: $($bounds)* {}
        impl<P: $($bounds)*> Explorable for P {}
    };
}

explorable!(
    Protocol<
        Msg: Debug + Hash + Eq + Ord + Send + Sync,
        Write: Debug + Hash + Eq + Send + Sync,
        Timer: Eq + Ord + Send + Sync,
        Request: Debug + Eq + Send + Sync,
        Config: Send + Sync,
    > + Clone
    + Debug
    + Hash
    + Eq
    + Send
    + Sync
);

/// A state of the explored world.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MState<P: Explorable, C> {
    pub nodes: Vec<Option<P>>,
    pub disks: Vec<Disk<P::Write>>,
    /// Each node's incarnation (bumped at each crash).
    pub incs: Vec<u32>,
    /// Messages in flight, sorted: `(from, to, msg)`.
    pub net: Vec<(NodeId, NodeId, P::Msg)>,
    /// Each node's pending timers with their due times on its clock,
    /// sorted by timer (a timer set again while pending is due anew).
    pub timers: Vec<Vec<(P::Timer, u64)>>,
    /// Each node's clock: it moves only when one of its timers fires, to
    /// that timer's due time. Clocks are unrelated to each other (any rate
    /// is fair), and outlive crashes, as a machine's clock does.
    pub clocks: Vec<u64>,
    pub syncs: Vec<Vec<u64>>,
    /// Client requests not yet delivered: `(client, node, request)`.
    pub requests: Vec<(u32, NodeId, P::Request)>,
    /// Operator membership changes not yet asked.
    pub changes: Vec<MemberChange>,
    pub checker: C,
    pub violation: Option<Violation>,
    pub left: Bounds,
}

/// One thing the world may do next.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MAction<M, T> {
    Deliver(NodeId, NodeId, M),
    Lose(NodeId, NodeId, M),
    Duplicate(NodeId, NodeId, M),
    Fire(NodeId, T),
    Sync(NodeId, u64),
    Crash(NodeId),
    Restart(NodeId),
    Request(usize),
    /// Ask node `.1` for pending change `.0`.
    Reconfigure(usize, NodeId),
}

/// The model of scenario `S` under one config and bounds.
pub struct Explore<S: Scenario + 'static> {
    scenario: &'static S,
    cfg: RunConfig,
    configs: Vec<<S::P as Protocol>::Config>,
    /// The requests each node's restart adds (`Scenario::check_retries`).
    retries: Vec<Vec<Asked<S::P>>>,
    bounds: Bounds,
    /// When a time-limited search stops generating successors (stateright's
    /// own timeout is checked only between jobs, which a one-thread
    /// depth-first search never reaches).
    deadline: Option<Instant>,
}

type State<S> = MState<<S as Scenario>::P, <S as Scenario>::Checker>;
type Action<S> =
    MAction<<<S as Scenario>::P as Protocol>::Msg, <<S as Scenario>::P as Protocol>::Timer>;

impl<S> Explore<S>
where
    S: Scenario + 'static,
    S::P: Explorable,
    S::Checker: Clone + Debug + Hash + Eq + Send + Sync,
{
    fn fail(st: &mut State<S>, r: Result<(), Violation>) {
        if let Err(v) = r {
            st.violation.get_or_insert(v);
        }
    }

    /// Feeds `input` (or the start-up call) to node `id` and carries out its
    /// effects in the model.
    fn step(&self, st: &mut State<S>, id: NodeId, input: Option<Input<S::P>>) {
        self.step_with(st, id, |node, now, out| match input {
            Some(input) => node.handle(now, input, out),
            None => node.start(now, out),
        })
    }

    /// Runs `f` on node `id` at its clock and carries out its effects.
    fn step_with(
        &self,
        st: &mut State<S>,
        id: NodeId,
        f: impl FnOnce(&mut S::P, u64, &mut Vec<<S::P as Protocol>::Output>),
    ) {
        let i = id as usize;
        let mut out = Vec::new();
        let node = st.nodes[i].as_mut().expect("stepping a live node");
        f(node, st.clocks[i], &mut out);
        // Syncs this step asked for, completed once its sends have left (a
        // send that did not wait for its write still breaks D1).
        let mut now_synced = Vec::new();
        for o in out {
            let Some(e) = S::P::effect(o) else { continue };
            match e {
                Effect::Send { to, msg, after } => {
                    let synced = st.disks[i].synced;
                    let what = || S::P::summarize_msg(&msg);
                    Self::fail(
                        st,
                        checkers::check_disclosure(0, id, to, after, synced, what),
                    );
                    let r = st.checker.on_send(0, id, to, &msg);
                    Self::fail(st, r);
                    let m = (id, to, msg);
                    let at = st.net.partition_point(|x| *x < m);
                    st.net.insert(at, m);
                }
                Effect::Persist { seq, write } => {
                    let r = st.checker.on_persist(0, id, seq, &write);
                    Self::fail(st, r);
                    st.disks[i].write(seq, write);
                }
                Effect::Sync { upto } if self.bounds.crashes == 0 => now_synced.push(upto),
                Effect::Sync { upto } => st.syncs[i].push(upto),
                Effect::SetTimer {
                    timer, delay_us, ..
                } => {
                    let due = st.clocks[i] + delay_us;
                    let ts = &mut st.timers[i];
                    match ts.binary_search_by(|(t, _)| t.cmp(&timer)) {
                        Ok(k) => ts[k].1 = due,
                        Err(k) => ts.insert(k, (timer, due)),
                    }
                }
                Effect::Reply { client, reply } => {
                    let r = st.checker.on_reply(0, id, client, &reply);
                    Self::fail(st, r);
                }
                Effect::Note(note) => {
                    let r = st.checker.on_note(0, id, &note);
                    Self::fail(st, r);
                }
                // The model sends only what nodes send: nothing is refused
                // that a correct peer sent.
                Effect::Refused { .. } => {}
            }
        }
        // No crash can tell a pending write from a durable one: the sync
        // completes right after the step (one interleaving, not many).
        for upto in now_synced {
            if st.nodes[i].is_some() {
                self.sync(st, id, upto);
                self.step(st, id, Some(Input::Synced { upto }));
            }
        }
    }

    /// Writes up to `upto` on node `id` become durable (the engine's
    /// `Disk`, compacted at once: the model keeps no garbage in its states).
    fn sync(&self, st: &mut State<S>, id: NodeId, upto: u64) {
        let d = &mut st.disks[id as usize];
        let landed = d.sync(upto);
        if !landed.is_empty() {
            let r = st.checker.on_durable(0, id, &d.durable[landed]);
            Self::fail(st, r);
        }
        st.disks[id as usize].compact();
    }

    fn boot(&self, st: &mut State<S>, id: NodeId) {
        let i = id as usize;
        let durable = &mut st.disks[i].durable;
        let now = st.clocks[i];
        let (node, how) = S::P::boot(&self.configs[i], st.incs[i], durable, now);
        if let Boot::Rebuilding { .. } = how {
            st.checker.on_disk_lost(id);
        }
        st.nodes[i] = Some(node);
        st.checker.on_restart(id);
        self.step(st, id, None);
    }

    fn take(
        net: &mut Vec<(NodeId, NodeId, <S::P as Protocol>::Msg)>,
        m: &(NodeId, NodeId, <S::P as Protocol>::Msg),
    ) -> bool {
        match net.binary_search(m) {
            Ok(at) => {
                net.remove(at);
                true
            }
            Err(_) => false,
        }
    }
}

impl<S> Model for Explore<S>
where
    S: Scenario + 'static,
    S::P: Explorable,
    S::Checker: Clone + Debug + Hash + Eq + Send + Sync,
{
    type State = State<S>;
    type Action = Action<S>;

    fn init_states(&self) -> Vec<State<S>> {
        let n = self.cfg.machines() as usize;
        let mut st = MState {
            nodes: (0..n).map(|_| None).collect(),
            disks: (0..n).map(|_| Disk::default()).collect(),
            incs: vec![0; n],
            net: Vec::new(),
            timers: vec![Vec::new(); n],
            clocks: vec![0; n],
            syncs: vec![Vec::new(); n],
            requests: self.scenario.check_requests(&self.cfg),
            changes: match self.bounds.changes {
                0 => Vec::new(),
                _ => self.scenario.check_changes(&self.cfg),
            },
            checker: self.scenario.checker(&self.cfg),
            violation: None,
            left: self.bounds,
        };
        for id in 0..n {
            self.boot(&mut st, id as NodeId);
        }
        for k in 0..st.requests.len() {
            let (client, _, ref req) = st.requests[k];
            let r = st.checker.on_invoke(0, client, req);
            Self::fail(&mut st, r);
        }
        vec![st]
    }

    fn actions(&self, st: &State<S>, actions: &mut Vec<Action<S>>) {
        if st.violation.is_some() {
            return;
        }
        for (k, (from, to, msg)) in st.net.iter().enumerate() {
            if k > 0 && st.net[k - 1] == (*from, *to, msg.clone()) {
                continue; // The same message twice: one choice.
            }
            actions.push(MAction::Deliver(*from, *to, msg.clone()));
            if st.left.losses > 0 {
                actions.push(MAction::Lose(*from, *to, msg.clone()));
            }
            if st.left.duplicates > 0 {
                actions.push(MAction::Duplicate(*from, *to, msg.clone()));
            }
        }
        for (i, node) in st.nodes.iter().enumerate() {
            let id = i as NodeId;
            match node {
                Some(_) => {
                    for &upto in &st.syncs[i] {
                        actions.push(MAction::Sync(id, upto));
                    }
                    if st.left.timers > 0 {
                        for (t, _) in &st.timers[i] {
                            actions.push(MAction::Fire(id, *t));
                        }
                    }
                    if st.left.crashes > 0 {
                        actions.push(MAction::Crash(id));
                    }
                }
                None => actions.push(MAction::Restart(id)),
            }
        }
        for k in 0..st.requests.len() {
            actions.push(MAction::Request(k));
        }
        if st.left.changes > 0 {
            for k in 0..st.changes.len() {
                for (i, node) in st.nodes.iter().enumerate() {
                    if node.is_some() {
                        actions.push(MAction::Reconfigure(k, i as NodeId));
                    }
                }
            }
        }
    }

    fn next_state(&self, last: &State<S>, action: Action<S>) -> Option<State<S>> {
        let mut st = last.clone();
        match action {
            MAction::Deliver(from, to, msg) => {
                let m = (from, to, msg);
                assert!(Self::take(&mut st.net, &m));
                let (from, to, msg) = m;
                if st.nodes[to as usize].is_some() {
                    let r = st.checker.on_receive(0, from, to, &msg);
                    Self::fail(&mut st, r);
                    self.step(&mut st, to, Some(Input::Receive { from, msg }));
                }
            }
            MAction::Lose(from, to, msg) => {
                assert!(Self::take(&mut st.net, &(from, to, msg)));
                st.left.losses -= 1;
            }
            MAction::Duplicate(from, to, msg) => {
                let m = (from, to, msg);
                let at = st.net.partition_point(|x| *x < m);
                st.net.insert(at, m);
                st.left.duplicates -= 1;
            }
            MAction::Fire(id, timer) => {
                let i = id as usize;
                let k = st.timers[i]
                    .binary_search_by(|(t, _)| t.cmp(&timer))
                    .expect("a pending timer fires");
                let (_, due) = st.timers[i].remove(k);
                st.clocks[i] = st.clocks[i].max(due);
                st.left.timers -= 1;
                self.step(&mut st, id, Some(Input::Timer(timer)));
            }
            MAction::Sync(id, upto) => {
                st.syncs[id as usize].retain(|u| *u != upto);
                self.sync(&mut st, id, upto);
                self.step(&mut st, id, Some(Input::Synced { upto }));
            }
            MAction::Crash(id) => {
                let i = id as usize;
                st.nodes[i] = None;
                st.disks[i].crash(0, None); // Every unsynced write is lost.
                st.incs[i] += 1;
                st.timers[i].clear();
                st.syncs[i].clear();
                st.left.crashes -= 1;
                st.checker.on_crash(id);
            }
            MAction::Restart(id) => {
                self.boot(&mut st, id);
                st.requests
                    .extend(self.retries[id as usize].iter().cloned());
            }
            MAction::Request(k) => {
                let (client, to, req) = st.requests.remove(k);
                if st.nodes[to as usize].is_some() {
                    self.step(&mut st, to, Some(Input::Request { client, req }));
                }
            }
            MAction::Reconfigure(k, id) => {
                let change = st.changes.remove(k);
                st.left.changes -= 1;
                // The model has no partitions, and a disk is lost only by
                // the engine's faults.
                let situation = Situation::default();
                self.step_with(&mut st, id, |node, now, out| {
                    node.reconfigure(now, change, situation, out)
                });
            }
        }
        Some(st)
    }

    fn within_boundary(&self, _: &State<S>) -> bool {
        self.deadline.is_none_or(|d| Instant::now() < d)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![Property::always("no violation", |_, st: &State<S>| {
            st.violation.is_none()
        })]
    }
}

/// The engine's script step for `action` taken in state `st`.
fn step_of<P: Explorable, C>(st: &MState<P, C>, action: MAction<P::Msg, P::Timer>) -> Step {
    let msg = |m: &P::Msg| P::summarize_msg(m).to_string();
    match action {
        MAction::Deliver(from, to, m) => Step::Deliver {
            from,
            to,
            msg: msg(&m),
        },
        MAction::Lose(from, to, m) => Step::Lose {
            from,
            to,
            msg: msg(&m),
        },
        MAction::Duplicate(from, to, m) => Step::Duplicate {
            from,
            to,
            msg: msg(&m),
        },
        MAction::Fire(node, t) => Step::Fire {
            node,
            timer: format!("{t:?}"),
        },
        MAction::Sync(node, upto) => Step::Sync { node, upto },
        MAction::Crash(node) => Step::Crash { node },
        MAction::Restart(node) => Step::Restart { node },
        MAction::Request(k) => {
            let (client, node, req) = &st.requests[k];
            Step::Request {
                client: *client,
                node: *node,
                req: req.to_string(),
            }
        }
        MAction::Reconfigure(k, node) => Step::Reconfigure {
            node,
            change: st.changes[k],
        },
    }
}

/// Explores scenario `s` under `cfg` (validated; faults are the bounds')
/// as `search` says, stopping at the first violation or at its limits.
pub fn explore<S>(s: &'static S, cfg: &RunConfig, bounds: Bounds, search: Search) -> CheckReport
where
    S: Scenario + 'static,
    S::P: Explorable,
    S::Checker: Clone + Debug + Hash + Eq + Send + Sync,
{
    let model = Explore {
        scenario: s,
        configs: s.node_configs(cfg),
        retries: (0..cfg.machines())
            .map(|id| s.check_retries(cfg, id))
            .collect(),
        cfg: cfg.clone(),
        bounds,
        deadline: search.max_time.map(|t| Instant::now() + t),
    };
    let started = Instant::now();
    let builder = model.checker().target_state_count(search.max_states);
    match search.depth_first {
        false => report(builder.spawn_bfs().join(), bounds, search, started),
        true => report(builder.spawn_dfs().join(), bounds, search, started),
    }
}

/// What a finished exploration found.
fn report<S, C>(checker: C, bounds: Bounds, search: Search, started: Instant) -> CheckReport
where
    S: Scenario + 'static,
    S::P: Explorable,
    S::Checker: Clone + Debug + Hash + Eq + Send + Sync,
    C: stateright::Checker<Explore<S>>,
{
    let elapsed = started.elapsed();
    let violation = checker.discovery("no violation").map(|path| {
        let v = path
            .last_state()
            .violation
            .clone()
            .expect("a discovery breaks the property");
        let steps = path
            .into_vec()
            .into_iter()
            .filter_map(|(st, a)| Some(step_of::<S::P, _>(&st, a?)))
            .collect();
        let script = Script {
            immediate_syncs: bounds.crashes == 0,
            steps,
        };
        (v, script)
    });
    CheckReport {
        unique_states: checker.unique_state_count(),
        states: checker.state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        complete: checker.state_count() < search.max_states
            && search.max_time.is_none_or(|t| elapsed < t),
        violation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repro::Repro;
    use crate::scenarios::basic::Basic;
    use crate::trace::Keep;

    fn basic(nodes: u8, clients: u8, bug: Option<&str>) -> RunConfig {
        let mut cfg = RunConfig {
            nodes,
            clients,
            ..RunConfig::for_scenario("basic")
        };
        if let Some(b) = bug {
            cfg.enable_bug(b).unwrap();
        }
        cfg.validate().unwrap();
        cfg
    }

    const NO_TIMERS: Bounds = Bounds {
        crashes: 0,
        losses: 0,
        duplicates: 0,
        timers: 0,
        changes: 0,
    };

    /// The state count of a complete exploration is pinned: a change to the
    /// core, the checker or the model that changes it shows here.
    #[test]
    fn one_proposer_on_three_acceptors_is_explored_completely_and_passes() {
        let r = explore(
            &Basic,
            &basic(3, 1, None),
            NO_TIMERS,
            Search::states(1_000_000),
        );
        assert!(r.complete);
        assert!(r.violation.is_none(), "{:?}", r.violation);
        assert_eq!(r.unique_states, 24_436);
        assert_eq!(r.max_depth, 20);
    }

    /// Breadth-first search finds every Basic Paxos canary with a shortest
    /// history of a pinned length, and the simulator's engine, replaying
    /// that history from its repro file, breaks the same invariant.
    fn canary(
        bug: &str,
        clients: u8,
        bounds: Bounds,
        invariant: checkers::Invariant,
        steps: usize,
    ) {
        let cfg = basic(3, clients, Some(bug));
        let r = explore(&Basic, &cfg, bounds, Search::states(20_000_000));
        let (v, script) = r.violation.unwrap_or_else(|| panic!("{bug} not found"));
        assert_eq!(v.invariant, invariant, "{bug}: {v}");
        assert_eq!(script.steps.len(), steps, "{bug}: {:?}", script.steps);
        let cfg = RunConfig {
            faults: Some(crate::nemesis::Faults::NONE),
            ..cfg
        };
        let s = crate::scenario::find("basic").unwrap();
        let replayed = s.run_script(cfg, &script, Keep::Recent).unwrap();
        let again = replayed.violation.as_ref().expect("the replay fails");
        assert_eq!(again.invariant, invariant, "{bug}: replay broke {again}");
        assert_eq!(again.at_us, steps as u64, "{bug}: at the last step");
        // Through the repro file: the same run, bit for bit.
        let text = serde_json::to_string(&Repro::scripted(&replayed, script)).unwrap();
        let file = Repro::parse(&text).unwrap();
        let third = file.run(Keep::Recent).unwrap();
        assert_eq!(third.trace_hash, replayed.trace_hash, "{bug}");
        assert_eq!(third.violation, replayed.violation, "{bug}");
    }

    const SMALL: Bounds = Bounds {
        crashes: 0,
        losses: 0,
        duplicates: 1,
        timers: 1,
        changes: 0,
    };

    #[test]
    fn shared_ballots_reply_before_sync_and_minority_quorum_are_found() {
        use checkers::Invariant::*;
        canary("shared-ballots", 2, SMALL, S5, 1);
        canary("reply-before-sync", 2, SMALL, D1, 2);
        canary("minority-quorum", 2, SMALL, S3, 5);
    }

    #[test]
    fn count_duplicate_accepted_is_found() {
        canary(
            "count-duplicate-accepted",
            2,
            SMALL,
            checkers::Invariant::S3,
            9,
        );
    }

    /// A restarted proposer reusing its ballot: random search needs tens of
    /// seeds for it, the model one crash and four steps.
    #[test]
    fn volatile_round_is_found() {
        let one_crash = Bounds {
            crashes: 1,
            ..NO_TIMERS
        };
        canary("volatile-round", 1, one_crash, checkers::Invariant::S5, 4);
    }

    /// Two proposers duelling, no faults: 14 steps deep.
    #[test]
    fn accept_below_promise_is_found() {
        canary(
            "accept-below-promise",
            2,
            NO_TIMERS,
            checkers::Invariant::S2,
            14,
        );
    }

    #[test]
    fn ignore_promised_values_is_found() {
        canary(
            "ignore-promised-values",
            2,
            NO_TIMERS,
            checkers::Invariant::S2,
            14,
        );
    }

    /// A script that does not fit the protocol is refused with the step and
    /// the reason, never run loosely.
    #[test]
    fn a_script_that_does_not_fit_is_refused() {
        use crate::engine::{Script, Step};
        let s = crate::scenario::find("basic").unwrap();
        let cfg = RunConfig {
            faults: Some(crate::nemesis::Faults::NONE),
            ..basic(3, 1, None)
        };
        let script = |steps| Script {
            immediate_syncs: true,
            steps,
        };
        let ask = Step::Request {
            client: 0,
            node: 0,
            req: "100".into(),
        };
        let ghost = Step::Deliver {
            from: 1,
            to: 0,
            msg: "Promise(1.0, none)".into(),
        };
        let err = s
            .run_script(cfg.clone(), &script(vec![ask.clone(), ghost]), Keep::Recent)
            .err()
            .unwrap();
        assert!(
            err.starts_with("step 2 (deliver n1->n0 Promise(1.0, none)): no message"),
            "{err}"
        );
        let err = s
            .run_script(cfg.clone(), &script(vec![ask.clone(), ask]), Keep::Recent)
            .err()
            .unwrap();
        assert!(
            err.contains("no request 100 from c0 to n0 is pending"),
            "{err}"
        );
        let err = s
            .run_script(cfg, &script(vec![Step::Restart { node: 7 }]), Keep::Recent)
            .err()
            .unwrap();
        assert!(err.contains("there is no node n7"), "{err}");
    }
}
