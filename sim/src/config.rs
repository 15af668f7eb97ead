//! What a run is: a scenario, a cluster shape, timing, faults and bugs.
//! Together with a seed and a [`Schedule`](crate::nemesis::Schedule) this
//! fixes a run completely.

use crate::nemesis::Faults;
use paxos::{Bugs, Timing};
use serde::{Deserialize, Serialize};

/// The scenarios paxsim knows.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Basic (single-decree) Paxos: N acceptors, several duelling proposers,
    /// a learner on every node.
    Basic,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Basic => "basic",
        }
    }
}

/// Everything about a run except its seed and fault schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub scenario: Scenario,
    /// Cluster size; every node is an acceptor and a learner (3–9).
    pub nodes: u8,
    /// Nodes `0..proposers` run a proposer, each with its own value.
    pub proposers: u8,
    /// Fault intensities; `None` draws them from the seed (swarm testing).
    pub faults: Option<Faults>,
    /// Known-buggy variants switched on (all off by default).
    pub bugs: Bugs,
    pub timing: Timing,
    /// Length of the fault phase; the quiet period starts here.
    pub fault_phase_us: u64,
    /// After the quiet period starts, every live node must learn within this.
    pub liveness_us: u64,
    /// One-way network latency before jitter.
    pub latency_us: u64,
    /// Time a disk sync takes.
    pub disk_us: u64,
    /// The upper bound of a long delay.
    pub long_delay_us_max: u64,
    /// How many times slower a slow node's messages and disk are.
    pub slow_factor: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            scenario: Scenario::Basic,
            nodes: 5,
            proposers: 3,
            faults: None,
            bugs: Bugs::default(),
            timing: Timing::default(),
            fault_phase_us: 1_000_000,
            liveness_us: 5_000_000,
            latency_us: 500,
            disk_us: 200,
            long_delay_us_max: 300_000,
            slow_factor: 10,
        }
    }
}

impl RunConfig {
    /// Rejects configurations the harness cannot run meaningfully.
    pub fn validate(&self) -> Result<(), String> {
        if !(3..=9).contains(&self.nodes) {
            return Err(format!("nodes is {}, must be 3 to 9", self.nodes));
        }
        if self.proposers == 0 || self.proposers > self.nodes {
            return Err(format!(
                "proposers is {}, must be 1 to nodes ({})",
                self.proposers, self.nodes
            ));
        }
        if let Some(f) = &self.faults {
            f.validate()?;
        }
        let t = &self.timing;
        for (name, v, lo, hi) in [
            ("fault_phase_us", self.fault_phase_us, 1, 600_000_000),
            ("liveness_us", self.liveness_us, 1_000, 600_000_000),
            ("latency_us", self.latency_us, 1, 10_000_000),
            ("disk_us", self.disk_us, 1, 10_000_000),
            ("long_delay_us_max", self.long_delay_us_max, 0, 60_000_000),
            ("slow_factor", self.slow_factor, 1, 1_000),
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

    /// The `paxsim run` command that reproduces `seed` under this config, or
    /// `None` if the config has settings no flag expresses (timing, latencies:
    /// use the repro file).
    pub fn run_command(&self, seed: u64) -> Option<String> {
        let d = RunConfig::default();
        let mut cmd = format!(
            "paxsim run --scenario {} --seed {seed}",
            self.scenario.name()
        );
        if self.nodes != d.nodes {
            cmd += &format!(" --nodes {}", self.nodes);
        }
        if self.proposers != d.proposers {
            cmd += &format!(" --proposers {}", self.proposers);
        }
        for bug in self.bugs.names() {
            cmd += &format!(" --bug {bug}");
        }
        if let Some(f) = self.faults {
            cmd += &format!(" --faults {}", f.spec());
        }
        let rest = RunConfig {
            nodes: d.nodes,
            proposers: d.proposers,
            bugs: d.bugs,
            faults: None,
            ..self.clone()
        };
        (rest == d).then_some(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_valid_and_out_of_range_values_are_named() {
        RunConfig::default().validate().unwrap();
        let bad = [
            (
                RunConfig {
                    nodes: 2,
                    ..Default::default()
                },
                "nodes is 2",
            ),
            (
                RunConfig {
                    nodes: 10,
                    ..Default::default()
                },
                "nodes is 10",
            ),
            (
                RunConfig {
                    proposers: 0,
                    ..Default::default()
                },
                "proposers is 0",
            ),
            (
                RunConfig {
                    proposers: 6,
                    ..Default::default()
                },
                "proposers is 6",
            ),
            (
                RunConfig {
                    slow_factor: 0,
                    ..Default::default()
                },
                "slow_factor is 0",
            ),
            (
                RunConfig {
                    liveness_us: 5,
                    ..Default::default()
                },
                "liveness_us is 5",
            ),
        ];
        for (cfg, says) in bad {
            let err = cfg.validate().unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn run_command_names_every_flag_that_differs_from_the_default() {
        let mut cfg = RunConfig {
            nodes: 3,
            proposers: 2,
            faults: Some(Faults::NONE),
            ..Default::default()
        };
        cfg.bugs.enable("minority-quorum").unwrap();
        assert_eq!(
            cfg.run_command(9).unwrap(),
            "paxsim run --scenario basic --seed 9 --nodes 3 --proposers 2 --bug minority-quorum --faults none"
        );
        assert_eq!(
            RunConfig::default().run_command(1).unwrap(),
            "paxsim run --scenario basic --seed 1"
        );
        // Settings no flag expresses: only the repro file can reproduce the run.
        let odd = RunConfig {
            latency_us: 7,
            ..Default::default()
        };
        assert_eq!(odd.run_command(1), None);
        // Fixed intensities are spelled out, so the command reproduces them.
        let fixed = RunConfig {
            faults: Some(Faults {
                crashes: 4,
                loss_permille: 30,
                ..Faults::NONE
            }),
            ..Default::default()
        };
        assert_eq!(
            fixed.run_command(1).unwrap(),
            "paxsim run --scenario basic --seed 1 --faults loss_permille=30,crashes=4"
        );
    }
}
