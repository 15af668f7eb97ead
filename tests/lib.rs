//! Helpers for paxsim's integration tests: a small builder over the
//! simulator so a scenario test reads like the situation it sets up.
//!
//! ```text
//! let r = Script::new().nodes(3).bug("reply-before-sync")
//!     .crash(5, 0).restart(40, 0).partition(10, &[2]).heal(60)
//!     .run(7);
//! ```

use paxos::NodeId;
use paxsim::engine::Outcome;
use paxsim::scenarios::basic::{Basic, Note};
use paxsim::trace::Kind;
use paxsim::{run_schedule, Fault, Faults, Keep, Report, RunConfig, Schedule, Timed};

/// How many seeds a sweep runs: `PAXSIM_SEEDS`, else `default`.
pub fn seeds(default: u64) -> u64 {
    match std::env::var("PAXSIM_SEEDS") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("PAXSIM_SEEDS must be a number, got {s:?}")),
        Err(_) => default,
    }
}

/// A hand-written run: a config with no random faults, plus explicit ones.
#[derive(Clone, Debug)]
pub struct Script {
    pub config: RunConfig,
    pub faults: Vec<Timed>,
}

impl Default for Script {
    fn default() -> Self {
        Script::new()
    }
}

impl Script {
    pub fn new() -> Script {
        Script {
            config: RunConfig {
                faults: Some(Faults::NONE),
                ..RunConfig::default()
            },
            faults: Vec::new(),
        }
    }
    pub fn nodes(mut self, n: u8) -> Self {
        self.config.nodes = n;
        self.config.clients = self.config.clients.min(n);
        self
    }
    pub fn proposers(mut self, p: u8) -> Self {
        self.config.clients = p;
        self
    }
    pub fn bug(mut self, name: &str) -> Self {
        self.config.enable_bug(name).unwrap();
        self
    }
    pub fn faults(mut self, f: Faults) -> Self {
        self.config.faults = Some(f);
        self
    }
    fn at(mut self, ms: u64, fault: Fault) -> Self {
        self.faults.push(Timed {
            at_us: ms * 1000,
            fault,
        });
        self
    }
    pub fn crash(self, ms: u64, node: NodeId) -> Self {
        self.at(ms, Fault::Crash { node })
    }
    pub fn restart(self, ms: u64, node: NodeId) -> Self {
        self.at(ms, Fault::Restart { node })
    }
    /// Cuts `side` off from the other nodes.
    pub fn partition(self, ms: u64, side: &[NodeId]) -> Self {
        let side = side.iter().fold(0u16, |m, &n| m | 1 << n);
        self.at(ms, Fault::Partition { side })
    }
    /// Stops `node`'s process for `for_ms` (SIGSTOP, a long GC pause).
    pub fn pause(self, ms: u64, node: NodeId, for_ms: u64) -> Self {
        self.at(
            ms,
            Fault::Pause {
                node,
                us: for_ms * 1000,
            },
        )
    }
    pub fn heal(self, ms: u64) -> Self {
        self.at(ms, Fault::Heal)
    }
    pub fn schedule(&self) -> Schedule {
        let mut faults = self.faults.clone();
        faults.sort_by_key(|f| f.at_us);
        Schedule { faults }
    }
    pub fn run(&self, seed: u64) -> Report {
        run_schedule(seed, &self.config, self.schedule(), Keep::All)
    }
    /// Runs a `basic` script and returns the typed outcome, whose events
    /// tests can match on.
    pub fn run_basic(&self, seed: u64) -> Outcome<paxos::Node> {
        assert_eq!(self.config.scenario, "basic");
        paxsim::engine::run(&Basic, seed, &self.config, self.schedule(), Keep::All)
    }
}

/// The values `basic` nodes learned, in trace order, deduplicated.
pub fn learned(o: &Outcome<paxos::Node>) -> Vec<u64> {
    let mut v: Vec<u64> = o
        .trace
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|e| match e.kind {
            Kind::Note {
                note: Note::Learned(v),
            } => Some(v),
            _ => None,
        })
        .collect();
    v.dedup();
    v
}

/// The first event at which `node` (any node if `None`) learned.
pub fn first_learn(o: &Outcome<paxos::Node>, node: Option<NodeId>) -> Option<u64> {
    o.trace.as_ref().unwrap().iter().find_map(|e| match e.kind {
        Kind::Note {
            note: Note::Learned(_),
        } if node.is_none_or(|n| Some(n) == e.node) => Some(e.at_us),
        _ => None,
    })
}

/// Whether this report reached coverage mark `name`.
pub fn reached(r: &Report, name: &str) -> bool {
    r.coverage.iter().any(|(n, c)| *n == name && *c > 0)
}
