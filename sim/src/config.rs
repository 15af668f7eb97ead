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
    /// The Multi-Paxos log under concurrent proposals: clients submit blind
    /// writes to any replica (most are not the leader and redirect).
    Multi,
    /// The coordination service: clients issue a random mix of reads,
    /// writes, compare-and-sets, deletes, session, ephemeral-key and lock
    /// operations; leader leases serve reads; the history is checked for
    /// linearizability.
    Kv,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Basic => "basic",
            Scenario::Multi => "multi",
            Scenario::Kv => "kv",
        }
    }

    /// Whether this scenario runs the replicated log (`multi`, `kv`).
    pub fn is_log(self) -> bool {
        self != Scenario::Basic
    }
}

/// Settings of the log scenarios (`multi`, `kv`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    pub timing: multipaxos::Timing,
    /// Slots a leader keeps in flight.
    pub window: u64,
    /// Commands per slot at most.
    pub batch: usize,
    /// A replica snapshots its state machine every this many slots.
    pub snapshot_every: u64,
    /// How often the leader proposes its clock reading (session expiry).
    pub tick_us: u64,
    pub session_ttl_us: u64,
    /// A client resends to another replica after this long without a reply.
    pub client_retry_us: u64,
    /// After the quiet period starts, every client operation must complete
    /// within this of its invocation (or of the quiet period's start).
    pub op_bound_us: u64,
}

impl Default for LogParams {
    fn default() -> Self {
        LogParams {
            timing: multipaxos::Timing {
                election_us: 100_000,
                election_jitter_us: 100_000,
                heartbeat_us: 30_000,
                lease_us: 0,
                drift_ppm: 0,
            },
            window: 8,
            batch: 8,
            snapshot_every: 64,
            tick_us: 100_000,
            session_ttl_us: 1_000_000,
            client_retry_us: 20_000,
            op_bound_us: 3_000_000,
        }
    }
}

fn default_clients() -> u8 {
    5
}
fn default_ops() -> u32 {
    200
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
    /// `basic`: after the quiet period starts, every live node must learn
    /// (and every proposer decide) within this. `multi`/`kv`: the replicas
    /// must converge within this of the last operation's completion.
    pub liveness_us: u64,
    /// One-way network latency before jitter.
    pub latency_us: u64,
    /// Time a disk sync takes.
    pub disk_us: u64,
    /// The upper bound of a long delay.
    pub long_delay_us_max: u64,
    /// How many times slower a slow node's messages and disk are.
    pub slow_factor: u64,
    /// Log scenarios: concurrent clients.
    #[serde(default = "default_clients")]
    pub clients: u8,
    /// Log scenarios: operations per client.
    #[serde(default = "default_ops")]
    pub ops: u32,
    /// Log scenarios: known-buggy variants switched on.
    #[serde(default)]
    pub log_bugs: multipaxos::Bugs,
    #[serde(default)]
    pub log: LogParams,
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
            clients: default_clients(),
            ops: default_ops(),
            log_bugs: multipaxos::Bugs::default(),
            log: LogParams::default(),
        }
    }
}

impl RunConfig {
    /// The default configuration of a scenario.
    pub fn for_scenario(scenario: Scenario) -> RunConfig {
        let mut c = RunConfig {
            scenario,
            ..RunConfig::default()
        };
        match scenario {
            Scenario::Basic => {}
            Scenario::Multi => c.ops = 100,
            Scenario::Kv => {
                c.log.timing.lease_us = 150_000;
                c.log.timing.drift_ppm = 200_000;
                c.fault_phase_us = 2_000_000;
            }
        }
        c
    }

    /// The names of the canaries switched on, whichever scenario.
    pub fn bug_names(&self) -> Vec<&'static str> {
        if self.scenario.is_log() {
            self.log_bugs.names()
        } else {
            self.bugs.names()
        }
    }

    /// Switches on the canary `name` of this config's scenario.
    pub fn enable_bug(&mut self, name: &str) -> Result<(), String> {
        if self.scenario.is_log() {
            self.log_bugs.enable(name).map_err(|e| {
                if self.bugs.enable(name).is_ok() {
                    format!(
                        "bug '{name}' belongs to the basic scenario, not {}",
                        self.scenario.name()
                    )
                } else {
                    e
                }
            })
        } else {
            let mut probe = multipaxos::Bugs::default();
            self.bugs.enable(name).map_err(|e| {
                if probe.enable(name).is_ok() {
                    format!("bug '{name}' belongs to the multi and kv scenarios, not basic")
                } else {
                    e
                }
            })
        }
    }

    /// Rejects configurations the harness cannot run meaningfully.
    pub fn validate(&self) -> Result<(), String> {
        if self.scenario.is_log() {
            return self.validate_log();
        }
        if let Some(kind) = self.faults.as_ref().and_then(|f| f.log_only()) {
            return Err(format!(
                "fault '{kind}' applies only to the multi and kv scenarios"
            ));
        }
        if self.log_bugs.any() {
            return Err("log-scenario bugs are set on a basic run".into());
        }
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

    fn validate_log(&self) -> Result<(), String> {
        if !(3..=7).contains(&self.nodes) {
            return Err(format!("nodes is {}, must be 3 to 7", self.nodes));
        }
        if !(1..=16).contains(&self.clients) {
            return Err(format!("clients is {}, must be 1 to 16", self.clients));
        }
        if !(1..=100_000).contains(&self.ops) {
            return Err(format!("ops is {}, must be 1 to 100000", self.ops));
        }
        if self.bugs.any() {
            return Err("basic-scenario bugs are set on a log run".into());
        }
        if let Some(f) = &self.faults {
            f.validate()?;
        }
        let l = &self.log;
        let t = &l.timing;
        for (name, v, lo, hi) in [
            ("fault_phase_us", self.fault_phase_us, 1, 600_000_000),
            ("liveness_us", self.liveness_us, 1_000, 600_000_000),
            ("latency_us", self.latency_us, 1, 10_000_000),
            ("disk_us", self.disk_us, 1, 10_000_000),
            ("long_delay_us_max", self.long_delay_us_max, 0, 60_000_000),
            ("slow_factor", self.slow_factor, 1, 1_000),
            ("log.timing.election_us", t.election_us, 1_000, 60_000_000),
            (
                "log.timing.election_jitter_us",
                t.election_jitter_us,
                1,
                60_000_000,
            ),
            ("log.timing.heartbeat_us", t.heartbeat_us, 100, 60_000_000),
            ("log.timing.lease_us", t.lease_us, 0, 60_000_000),
            ("log.timing.drift_ppm", t.drift_ppm, 0, 500_000),
            ("log.window", l.window, 1, 1_000),
            ("log.batch", l.batch as u64, 1, 1_000),
            ("log.snapshot_every", l.snapshot_every, 1, 1_000_000),
            ("log.tick_us", l.tick_us, 1_000, 60_000_000),
            ("log.session_ttl_us", l.session_ttl_us, 1_000, 600_000_000),
            ("log.client_retry_us", l.client_retry_us, 100, 60_000_000),
            ("log.op_bound_us", l.op_bound_us, 1_000, 600_000_000),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(format!("{name} is {v}, must be {lo} to {hi}"));
            }
        }
        if t.heartbeat_us >= t.election_us {
            return Err("log.timing.heartbeat_us must be below election_us".into());
        }
        if let Some(f) = &self.faults {
            self.check_drift(f.clock_drift_ppm)?;
        }
        Ok(())
    }

    /// Leases are safe only while every clock's rate stays within the drift
    /// bound the protocol assumes: clocks drifting further would break them
    /// by design, and a checker would report the model's limit as a bug.
    fn check_drift(&self, ppm: u64) -> Result<(), String> {
        let t = &self.log.timing;
        if t.lease_us > 0 && ppm > t.drift_ppm {
            return Err(format!(
                "clock drift of {ppm} ppm exceeds the {} ppm the leases assume \
                 (log.timing.drift_ppm): stale lease reads would be expected there, not bugs",
                t.drift_ppm
            ));
        }
        Ok(())
    }

    /// Checks a schedule fits this config (cluster size; no log-only fault
    /// kinds in `basic`; clock rates within the drift the leases assume).
    pub fn validate_schedule(&self, s: &crate::nemesis::Schedule) -> Result<(), String> {
        s.validate(self.nodes)?;
        for t in &s.faults {
            if let crate::nemesis::Fault::Clock { rate_ppm, .. } = t.fault {
                self.check_drift(rate_ppm.unsigned_abs().into())?;
            }
        }
        if !self.scenario.is_log() {
            if let Some(f) = s.faults.iter().find(|t| t.fault.log_only()) {
                return Err(format!(
                    "fault '{}' applies only to the multi and kv scenarios",
                    f.fault
                ));
            }
        }
        Ok(())
    }

    /// The `paxsim run` command that reproduces `seed` under this config, or
    /// `None` if the config has settings no flag expresses (timing, latencies:
    /// use the repro file).
    pub fn run_command(&self, seed: u64) -> Option<String> {
        let d = RunConfig::for_scenario(self.scenario);
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
        if self.clients != d.clients {
            cmd += &format!(" --clients {}", self.clients);
        }
        if self.ops != d.ops {
            cmd += &format!(" --ops {}", self.ops);
        }
        for bug in self.bug_names() {
            cmd += &format!(" --bug {bug}");
        }
        if let Some(f) = self.faults {
            cmd += &format!(" --faults {}", f.spec());
        }
        let rest = RunConfig {
            nodes: d.nodes,
            proposers: d.proposers,
            clients: d.clients,
            ops: d.ops,
            bugs: d.bugs,
            log_bugs: d.log_bugs,
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
    fn clocks_may_not_drift_beyond_what_the_leases_assume() {
        use crate::nemesis::{Fault, Schedule, Timed};
        let kv = RunConfig::for_scenario(Scenario::Kv);
        let clock = |rate_ppm| Schedule {
            faults: vec![Timed {
                at_us: 0,
                fault: Fault::Clock {
                    node: 1,
                    skew_us: 0,
                    rate_ppm,
                },
            }],
        };
        kv.validate_schedule(&clock(-200_000)).unwrap();
        let err = kv.validate_schedule(&clock(-200_001)).unwrap_err();
        assert!(err.contains("200001 ppm exceeds the 200000"), "{err}");
        // Without leases, drift only slows or hastens timeouts.
        let multi = RunConfig::for_scenario(Scenario::Multi);
        multi.validate_schedule(&clock(-400_000)).unwrap();
        let drifty = RunConfig {
            faults: Some(Faults {
                clock_drift_ppm: 250_000,
                ..Faults::NONE
            }),
            ..kv
        };
        assert!(drifty
            .validate()
            .unwrap_err()
            .contains("250000 ppm exceeds"));
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
