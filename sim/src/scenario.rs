//! The scenario table: every protocol paxsim can run, by name, behind one
//! type-erased interface. Campaigns, shrinking, replay, fuzz decoding, the
//! benchmark and the CLI go through it and never name a protocol.
//!
//! The built-in scenarios (`basic`, `multi`, `kv`) are registered first; a
//! program that uses paxsim as a library adds its own with [`register`]
//! (or by passing them to [`crate::cli::main`]).

use crate::config::RunConfig;
use crate::engine::{self, Canary, Caps, Engine, Outcome, Protocol, Scenario, Stats, Stream};
use crate::nemesis::{Faults, Schedule};
use crate::trace::{Keep, Line};
use checkers::Violation;
use std::sync::{OnceLock, RwLock};

/// The result of one run, protocol-independent.
pub struct Report {
    pub seed: u64,
    /// The config with its faults resolved.
    pub config: RunConfig,
    pub schedule: Schedule,
    pub violation: Option<Violation>,
    pub stats: Stats,
    /// Coverage marks reached in this run: `(name, count)`.
    pub coverage: Vec<(&'static str, u64)>,
    pub trace_hash: u64,
    /// The last events before the end, rendered if the run failed or kept
    /// its whole trace (campaigns do not pay to render passing runs).
    pub recent: Vec<Line>,
    pub trace: Option<Vec<Line>>,
}

impl Report {
    fn of<P: Protocol>(seed: u64, o: Outcome<P>) -> Report {
        Report {
            seed,
            config: o.config,
            schedule: o.schedule,
            violation: o.violation,
            stats: o.stats,
            coverage: o.coverage,
            trace_hash: o.trace_hash,
            recent: o.recent.iter().map(Line::of).collect(),
            trace: o.trace.map(|t| t.iter().map(Line::of).collect()),
        }
    }
}

/// A registered scenario, type-erased.
pub trait Dyn: Sync {
    fn name(&self) -> &'static str;
    fn about(&self) -> &'static str;
    fn defaults(&self) -> RunConfig;
    fn caps(&self, cfg: &RunConfig) -> Caps;
    fn canaries(&self) -> Vec<Canary>;
    fn validate(&self, cfg: &RunConfig) -> Result<(), String>;
    fn required_marks(&self, cfg: &RunConfig) -> Vec<&'static str>;
    fn checks_history(&self) -> bool;
    /// Runs a validated config (faults resolved) with an explicit schedule.
    fn run(&self, seed: u64, cfg: RunConfig, schedule: Schedule, keep: Keep) -> Report;
}

impl<S: Scenario> Dyn for S {
    fn name(&self) -> &'static str {
        Scenario::name(self)
    }
    fn about(&self) -> &'static str {
        Scenario::about(self)
    }
    fn defaults(&self) -> RunConfig {
        let mut c = Scenario::defaults(self);
        c.scenario = Scenario::name(self).to_string();
        c
    }
    fn caps(&self, cfg: &RunConfig) -> Caps {
        Scenario::caps(self, cfg)
    }
    fn canaries(&self) -> Vec<Canary> {
        Scenario::canaries(self)
    }
    fn validate(&self, cfg: &RunConfig) -> Result<(), String> {
        Scenario::validate(self, cfg)
    }
    fn required_marks(&self, cfg: &RunConfig) -> Vec<&'static str> {
        Scenario::required_marks(self, cfg)
    }
    fn checks_history(&self) -> bool {
        Scenario::checks_history(self)
    }
    fn run(&self, seed: u64, cfg: RunConfig, schedule: Schedule, keep: Keep) -> Report {
        Report::of(seed, Engine::new(self, seed, cfg, schedule, keep).run())
    }
}

fn table() -> &'static RwLock<Vec<&'static dyn Dyn>> {
    static TABLE: OnceLock<RwLock<Vec<&'static dyn Dyn>>> = OnceLock::new();
    TABLE.get_or_init(|| RwLock::new(crate::scenarios::builtin()))
}

/// Adds a scenario to the table (a second one with a taken name is refused).
pub fn register(s: &'static dyn Dyn) -> Result<(), String> {
    let mut t = table().write().expect("scenario table");
    if t.iter().any(|x| x.name() == s.name()) {
        return Err(format!(
            "a scenario named '{}' is registered already",
            s.name()
        ));
    }
    t.push(s);
    Ok(())
}

/// Every registered scenario, built-ins first.
pub fn all() -> Vec<&'static dyn Dyn> {
    table().read().expect("scenario table").clone()
}

/// The scenario named `name`; the error lists the known ones.
pub fn find(name: &str) -> Result<&'static dyn Dyn, String> {
    let t = table().read().expect("scenario table");
    t.iter().find(|s| s.name() == name).copied().ok_or_else(|| {
        let names: Vec<&str> = t.iter().map(|s| s.name()).collect();
        format!("unknown scenario '{name}'; known: {}", names.join(", "))
    })
}

/// Resolves a config for a seed: draws the faults if the config leaves them
/// to the swarm, and generates the schedule.
pub fn plan(seed: u64, cfg: &RunConfig) -> (RunConfig, Schedule) {
    let s = find(&cfg.scenario).expect("config validated by the caller");
    let mut resolved = cfg.clone();
    let faults = cfg
        .faults
        .unwrap_or_else(|| Faults::draw(&mut engine::rng(seed, Stream::Swarm), &s.caps(cfg)));
    resolved.faults = Some(faults);
    let schedule = Schedule::generate(
        &mut engine::rng(seed, Stream::Schedule),
        cfg.nodes,
        &faults,
        cfg.fault_phase_us,
    );
    (resolved, schedule)
}

/// Plans and runs `seed` under `cfg` (validated).
pub fn run_seed(seed: u64, cfg: &RunConfig, keep: Keep) -> Report {
    let (resolved, schedule) = plan(seed, cfg);
    let s = find(&resolved.scenario).expect("config validated by the caller");
    s.run(seed, resolved, schedule, keep)
}

/// Runs `seed` with an explicit schedule (replays, shrinking, fuzzing).
/// `cfg` must be validated with its faults resolved (`Some`), and the
/// schedule must fit it.
pub fn run_schedule(seed: u64, cfg: &RunConfig, schedule: Schedule, keep: Keep) -> Report {
    let s = find(&cfg.scenario).expect("config validated by the caller");
    s.run(seed, cfg.clone(), schedule, keep)
}
