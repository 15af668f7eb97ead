//! What a run is: a scenario, a cluster shape, a workload size, timing,
//! faults and known bugs. Together with a seed and a
//! [`Schedule`](crate::nemesis::Schedule) this fixes a run completely.
//!
//! The fields here are the ones every scenario shares; a scenario's own
//! settings (its protocol's timing, batch sizes ...) live in `params`, a
//! JSON object the scenario reads and validates. What needs the scenario
//! table (defaults, canaries, validation, the replay command) is in
//! [`crate::scenario`].

use crate::nemesis::Faults;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

/// Everything about a run except its seed and fault schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The scenario's name in the table (`paxsim scenarios`).
    pub scenario: String,
    /// Cluster size: the first configuration's voters, nodes `0..nodes`.
    pub nodes: u8,
    /// Spare machines, ids `nodes..nodes + spares`, that membership changes
    /// may add (scenarios whose [`Caps::membership`](crate::nemesis::Caps)
    /// is set). They run from the start, as idle machines waiting to join.
    #[serde(default)]
    pub spares: u8,
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
    /// BUGGIFY: whether the scenario may turn on its rare-path knobs, drawn
    /// per seed ([`Scenario::buggify`](crate::engine::Scenario::buggify));
    /// false (`--no-buggify`) keeps every knob off.
    #[serde(default = "on")]
    pub buggify: bool,
}

fn on() -> bool {
    true
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
            spares: 0,
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
            buggify: true,
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
    /// Every machine of the run: the first voters and the spares.
    pub fn machines(&self) -> u8 {
        self.nodes + self.spares
    }

    /// The fewest voters a configuration of the run may have: with
    /// membership changes, three (the log scenarios keep at least three);
    /// without, the first configuration's.
    pub fn fewest_voters(&self, membership: bool) -> u8 {
        if membership {
            self.nodes.min(3)
        } else {
            self.nodes
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

    /// Sets one of the scenario's settings from `NAME=VALUE` (`--param`):
    /// VALUE is JSON, or else a string; NAME may be dotted (`timing.lease_us`)
    /// and must name a setting the params hold already, so a typo is an
    /// error, not a new field the scenario would refuse less clearly.
    pub fn set_param(&mut self, spec: &str) -> Result<(), String> {
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| format!("--param '{spec}' is not NAME=VALUE"))?;
        let value: serde_json::Value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        let mut params = (*self.params).clone();
        let mut at = &mut params;
        for part in name.split('.') {
            let known = at.as_object().map(|o| {
                let mut k: Vec<&String> = o.keys().collect();
                k.sort();
                k.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            });
            at = match at.get_mut(part) {
                Some(v) => v,
                None => {
                    return Err(format!(
                        "--param {name}: scenario {} has no setting '{part}' here (it has: {})",
                        self.scenario,
                        known.unwrap_or_default()
                    ))
                }
            };
        }
        *at = value;
        self.params = Arc::new(params);
        Ok(())
    }

    /// The `--param` flags that turn `defaults`' params into these (each
    /// top-level setting that differs, as JSON), for a replay command;
    /// `None` if no flags can (a setting the defaults do not hold).
    pub fn param_flags(&self, defaults: &RunConfig) -> Option<Vec<String>> {
        if self.params == defaults.params {
            return Some(Vec::new());
        }
        let (mine, theirs) = (self.params.as_object()?, defaults.params.as_object()?);
        if theirs.keys().any(|k| !mine.contains_key(k)) {
            return None;
        }
        let mut keys: Vec<&String> = mine.keys().collect();
        keys.sort();
        keys.into_iter()
            .filter(|k| theirs.get(*k) != mine.get(*k))
            .map(|k| {
                theirs
                    .contains_key(k)
                    .then(|| format!("--param '{k}={}'", mine[k]))
            })
            .collect()
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

    /// Whether the canary `name` is switched on.
    pub fn bug(&self, name: &str) -> bool {
        self.bugs.iter().any(|b| b == name)
    }
}
