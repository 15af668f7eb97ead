//! Helpers for paxsim's integration tests: a small builder over the
//! simulator so a scenario test reads like the situation it sets up.
//!
//! ```text
//! let r = Script::new().nodes(3).bug("reply-before-sync")
//!     .crash(5, 0).restart(40, 0).partition(10, &[2]).heal(60)
//!     .run(7);
//! ```

use paxos::{Bugs, NodeId};
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
        self.config.proposers = self.config.proposers.min(n);
        self
    }
    pub fn proposers(mut self, p: u8) -> Self {
        self.config.proposers = p;
        self
    }
    pub fn bug(mut self, name: &str) -> Self {
        self.config.bugs.enable(name).unwrap();
        self
    }
    pub fn bugs(mut self, bugs: Bugs) -> Self {
        self.config.bugs = bugs;
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
}
