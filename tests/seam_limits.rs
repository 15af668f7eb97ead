//! The seam's limits on what a protocol may ask of the simulator: a timer
//! beyond `TIMER_MAX_US`, or a write numbered above 2^53, is the protocol's
//! failed assertion, reported as a violation on its node. The simulator
//! neither overflows its clock nor writes a trace number a JSON reader would
//! round, and the trace of such a run renders.

use checkers::{Invariant, Violation};
use paxos::NodeId;
use paxsim::engine::{
    self, Boot, Caps, Checker, Cx, DiskRecord, Effect, Input, Never, Protocol, Scenario, Workload,
    TIMER_MAX_US,
};
use paxsim::nemesis::{Faults, Schedule};
use paxsim::{Keep, RunConfig};

/// What a node asks for at its start, after one ordinary timer.
#[derive(Copy, Clone)]
enum Ask {
    FarTimer,
    BigWrite,
}

#[derive(Clone)]
struct Rec;

impl DiskRecord for Rec {}

struct Node(Ask);

impl Protocol for Node {
    type Config = Ask;
    type Msg = ();
    type Write = Rec;
    type Timer = u8;
    type Request = u64;
    type Reply = Never;
    type Note = ();
    type MsgSummary = u8;
    type WriteSummary = u8;
    type NoteSummary = u8;
    type Output = Effect<Node>;

    fn boot(cfg: &Ask, _: u32, _: &mut Vec<Rec>, _: u64) -> (Node, Boot) {
        (Node(*cfg), Boot::Recovered)
    }

    fn start(&mut self, _: u64, out: &mut Vec<Effect<Node>>) {
        let timer = |delay_us| Effect::SetTimer {
            timer: 0,
            delay_us,
            jitter_us: 0,
        };
        out.push(timer(1_000));
        out.push(match self.0 {
            Ask::FarTimer => timer(TIMER_MAX_US + 1),
            Ask::BigWrite => Effect::Persist {
                seq: 1 << 60,
                write: Rec,
            },
        });
    }

    fn handle(&mut self, _: u64, _: Input<Node>, _: &mut Vec<Effect<Node>>) {}

    fn effect(o: Effect<Node>) -> Option<Effect<Node>> {
        Some(o)
    }

    fn summarize_msg(_: &()) -> u8 {
        0
    }

    fn summarize_write(_: &Rec) -> u8 {
        0
    }

    fn summarize_note(_: &()) -> Option<u8> {
        None
    }
}

struct Calm;

impl Checker<Node> for Calm {
    fn unsettled(&self, now: u64, _: &RunConfig, _: &[Option<Node>]) -> Violation {
        Violation {
            invariant: Invariant::Assert,
            at_us: now,
            node: None,
            detail: "unsettled".into(),
        }
    }
}

struct Idle;

impl Workload<Node> for Idle {
    fn start(&mut self, _: &mut dyn Cx<Node>) {}
    fn deadline(&self, quiet_at: u64, _: &RunConfig) -> u64 {
        quiet_at
    }
    fn done(&self) -> bool {
        true
    }
}

struct Limits(Ask);

impl Scenario for Limits {
    type P = Node;
    type Checker = Calm;
    type Workload = Idle;

    fn name(&self) -> &'static str {
        "limits"
    }
    fn about(&self) -> &'static str {
        "a protocol that asks too much"
    }
    fn defaults(&self) -> RunConfig {
        RunConfig::for_scenario("basic")
    }
    fn caps(&self, _: &RunConfig) -> Caps {
        Caps::default()
    }
    fn node_configs(&self, cfg: &RunConfig) -> Vec<Ask> {
        vec![self.0; cfg.machines() as usize]
    }
    fn checker(&self, _: &RunConfig) -> Calm {
        Calm
    }
    fn workload(&self, _: &RunConfig, _: &mut rand_chacha::ChaCha8Rng) -> Idle {
        Idle
    }
}

fn run(ask: Ask) -> (Violation, usize) {
    let cfg = RunConfig {
        nodes: 3,
        faults: Some(Faults::NONE),
        ..RunConfig::for_scenario("basic")
    };
    let o = engine::run(&Limits(ask), 1, &cfg, Schedule::default(), Keep::All);
    let trace = o.trace.expect("kept");
    // Every event it did trace renders as a record of the schema.
    for e in &trace {
        let r: serde_json::Value = serde_json::from_str(&paxsim::schema::event(e)).unwrap();
        assert_eq!(r["record"], "event");
    }
    (o.violation.expect("a violation"), trace.len())
}

#[test]
fn a_timer_beyond_the_limit_is_the_protocols_failed_assertion() {
    let (v, events) = run(Ask::FarTimer);
    assert_eq!(v.invariant, Invariant::Assert, "{v}");
    assert_eq!(v.node, Some(0 as NodeId), "{v}");
    assert!(v.detail.contains("beyond 1099511627776 µs"), "{v}");
    // The ordinary timer was traced, the far one never scheduled.
    assert_eq!(events, 1);
}

#[test]
fn a_write_numbered_beyond_2_53_is_the_protocols_failed_assertion() {
    let (v, events) = run(Ask::BigWrite);
    assert_eq!(v.invariant, Invariant::Assert, "{v}");
    assert_eq!(v.node, Some(0 as NodeId), "{v}");
    assert!(v.detail.contains("write numbers stay below 2^53"), "{v}");
    assert_eq!(events, 1, "the write never reached the trace");
}
