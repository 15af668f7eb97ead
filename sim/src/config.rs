//! What a run is: a scenario, a cluster shape, a workload size, timing,
//! faults and known bugs. Together with a seed and a
//! [`Schedule`](crate::nemesis::Schedule) this fixes a run completely.
//!
//! The fields here are the ones every scenario shares; a scenario's own
//! settings (its protocol's timing, batch sizes ...) live in `params`, a
//! JSON object the scenario reads and validates.

use crate::nemesis::{Fault, Faults, Schedule};
use crate::scenario;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

/// Everything about a run except its seed and fault schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The scenario's name in the table (`paxsim scenarios`).
    pub scenario: String,
    /// Cluster size.
    pub nodes: u8,
    /// Concurrent clients (`basic`: the proposers, nodes `0..clients`).
    pub clients: u8,
    /// Operations per client (where the workload has a length).
    pub ops: u32,
    /// Fault intensities; `None` draws them from the seed (swarm testing).
    pub faults: Option<Faults>,
    /// Known-buggy variants switched on, by name (all off by default).
    #[serde(default)]
    pub bugs: Vec<String>,
    /// Length of the fault phase; the quiet period starts here.
    pub fault_phase_us: u64,
    /// The liveness bound after the quiet period starts (what it bounds is
    /// the scenario's: learning, convergence after the last operation ...).
    pub liveness_us: u64,
    /// One-way network latency before jitter.
    pub latency_us: u64,
    /// Time a disk sync takes.
    pub disk_us: u64,
    /// The upper bound of a long delay.
    pub long_delay_us_max: u64,
    /// How many times slower a slow node's messages and disk are.
    pub slow_factor: u64,
    /// The scenario's own settings (shared: cloning a config per run copies
    /// no JSON).
    #[serde(default)]
    pub params: Arc<serde_json::Value>,
}

impl Default for RunConfig {
    /// The default scenario's (`basic`) defaults.
    fn default() -> Self {
        RunConfig::for_scenario("basic")
    }
}

impl RunConfig {
    /// The defaults of the fields every scenario shares, with no scenario
    /// named yet: what a [`Scenario::defaults`](crate::engine::Scenario::defaults)
    /// starts from.
    pub fn generic() -> Self {
        RunConfig {
            scenario: String::new(),
            nodes: 5,
            clients: 3,
            ops: 1,
            faults: None,
            bugs: Vec::new(),
            fault_phase_us: 1_000_000,
            liveness_us: 5_000_000,
            latency_us: 500,
            disk_us: 200,
            long_delay_us_max: 300_000,
            slow_factor: 10,
            params: Arc::new(serde_json::Value::Null),
        }
    }
}

/// The name of the program, for replay commands (`paxsim`, or the binary
/// of a user's own scenario).
pub fn program() -> &'static str {
    PROGRAM.get().map_or("paxsim", |s| s.as_str())
}

static PROGRAM: OnceLock<String> = OnceLock::new();

/// Sets the program name replay commands use (once; later calls are ignored).
pub fn set_program(name: &str) {
    let _ = PROGRAM.set(name.to_string());
}

impl RunConfig {
    /// The default configuration of the scenario named `name`.
    pub fn for_scenario(name: &str) -> RunConfig {
        match scenario::find(name) {
            Ok(s) => s.defaults(),
            Err(e) => panic!("{e}"),
        }
    }

    /// The scenario's settings, typed.
    pub fn params<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        T::deserialize(&*self.params)
            .map_err(|e| format!("bad params for scenario {}: {e}", self.scenario))
    }

    /// Replaces the scenario's settings.
    pub fn set_params<T: Serialize>(&mut self, p: &T) {
        self.params = Arc::new(serde_json::to_value(p).expect("params serialize"));
    }

    /// Edits the scenario's settings in place.
    pub fn edit_params<T: Serialize + serde::de::DeserializeOwned>(
        &mut self,
        f: impl FnOnce(&mut T),
    ) {
        let mut p: T = self.params().expect("params of this scenario");
        f(&mut p);
        self.set_params(&p);
    }

    /// Switches on the canary `name` of this config's scenario; the error
    /// says which scenario it belongs to if not this one.
    pub fn enable_bug(&mut self, name: &str) -> Result<(), String> {
        let s = scenario::find(&self.scenario)?;
        if s.canaries().iter().any(|(n, _)| *n == name) {
            if !self.bugs.iter().any(|b| b == name) {
                self.bugs.push(name.to_string());
                self.bugs.sort();
            }
            return Ok(());
        }
        let owners: Vec<&str> = scenario::all()
            .into_iter()
            .filter(|o| o.canaries().iter().any(|(n, _)| *n == name))
            .map(|o| o.name())
            .collect();
        if owners.is_empty() {
            let known: Vec<&str> = s.canaries().iter().map(|(n, _)| *n).collect();
            Err(format!(
                "unknown bug '{name}' for scenario {}; known: {}",
                self.scenario,
                known.join(", ")
            ))
        } else {
            Err(format!(
                "bug '{name}' belongs to the {} scenario{}, not {}",
                owners.join(" and "),
                if owners.len() > 1 { "s" } else { "" },
                self.scenario
            ))
        }
    }

    /// Whether the canary `name` is switched on.
    pub fn bug(&self, name: &str) -> bool {
        self.bugs.iter().any(|b| b == name)
    }

    /// Rejects configurations the harness cannot run meaningfully.
    pub fn validate(&self) -> Result<(), String> {
        let s = scenario::find(&self.scenario)?;
        if !(1..=paxos::MAX_NODES as u8).contains(&self.nodes) {
            return Err(format!(
                "nodes is {}, must be 1 to {}",
                self.nodes,
                paxos::MAX_NODES
            ));
        }
        for b in &self.bugs {
            self.clone().enable_bug(b)?;
        }
        for (name, v, lo, hi) in [
            ("fault_phase_us", self.fault_phase_us, 1, 600_000_000),
            ("liveness_us", self.liveness_us, 1_000, 600_000_000),
            ("latency_us", self.latency_us, 1, 10_000_000),
            ("disk_us", self.disk_us, 1, 10_000_000),
            ("long_delay_us_max", self.long_delay_us_max, 0, 60_000_000),
            ("slow_factor", self.slow_factor, 1, 1_000),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(format!("{name} is {v}, must be {lo} to {hi}"));
            }
        }
        s.validate(self)?;
        if let Some(f) = &self.faults {
            f.validate()?;
            let caps = s.caps(self);
            if let Some(kind) = f.unsupported(&caps) {
                return Err(format!(
                    "fault '{kind}' does not apply to the {} scenario",
                    self.scenario
                ));
            }
            self.check_drift(&caps, f.clock_drift_ppm)?;
        }
        Ok(())
    }

    /// Clocks may drift only as far as the protocol is configured to
    /// tolerate (leases): beyond, a checker would report the model's limit
    /// as a bug.
    fn check_drift(&self, caps: &crate::engine::Caps, ppm: u64) -> Result<(), String> {
        match caps.drift_bound_ppm {
            Some(bound) if ppm > bound => Err(format!(
                "clock drift of {ppm} ppm exceeds the {bound} ppm the {} scenario's leases \
                 assume: stale lease reads would be expected there, not bugs",
                self.scenario
            )),
            _ => Ok(()),
        }
    }

    /// Checks a schedule fits this config (cluster size; fault kinds the
    /// scenario supports; clock rates within the drift it tolerates).
    pub fn validate_schedule(&self, s: &Schedule) -> Result<(), String> {
        s.validate(self.nodes)?;
        let caps = scenario::find(&self.scenario)?.caps(self);
        for t in &s.faults {
            if let Fault::Clock { rate_ppm, .. } = t.fault {
                self.check_drift(&caps, rate_ppm.unsigned_abs().into())?;
            }
            if !t.fault.supported(&caps) {
                return Err(format!(
                    "fault '{}' does not apply to the {} scenario",
                    t.fault, self.scenario
                ));
            }
        }
        Ok(())
    }

    /// The command that reproduces `seed` under this config, or `None` if
    /// the config has settings no flag expresses (timing, latencies,
    /// params: use the repro file).
    pub fn run_command(&self, seed: u64) -> Option<String> {
        let d = scenario::find(&self.scenario).ok()?.defaults();
        let mut cmd = format!(
            "{} run --scenario {} --seed {seed}",
            program(),
            self.scenario
        );
        if self.nodes != d.nodes {
            cmd += &format!(" --nodes {}", self.nodes);
        }
        if self.clients != d.clients {
            cmd += &format!(" --clients {}", self.clients);
        }
        if self.ops != d.ops {
            cmd += &format!(" --ops {}", self.ops);
        }
        for bug in &self.bugs {
            cmd += &format!(" --bug {bug}");
        }
        if let Some(f) = self.faults {
            cmd += &format!(" --faults {}", f.spec());
        }
        let rest = RunConfig {
            nodes: d.nodes,
            clients: d.clients,
            ops: d.ops,
            bugs: d.bugs.clone(),
            faults: d.faults,
            ..self.clone()
        };
        (rest == d).then_some(cmd)
    }
}
