//! The scenario table: every protocol paxsim can run, by name, behind one
//! type-erased interface. Campaigns, shrinking, replay, fuzz decoding, the
//! benchmark and the CLI go through it and never name a protocol.
//!
//! The built-in scenarios (`basic`, `multi`, `kv`) are registered first; a
//! program that uses paxsim as a library adds its own with [`register`]
//! (or by passing them to [`crate::cli::main`]).

use crate::config::program;
use crate::config::RunConfig;
use crate::engine::{self, Canary, Caps, Engine, Outcome, Protocol, Scenario, Stats, Stream};
use crate::nemesis::{Fault, Faults, Schedule};
use crate::schema;
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
    /// A model checker's counterexample replayed step by step: time is the
    /// step's number, not microseconds.
    pub scripted: bool,
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
            scripted: false,
            recent: o.recent.iter().map(schema::line).collect(),
            trace: o.trace.map(|t| t.iter().map(schema::line).collect()),
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
    fn check_defaults(&self) -> engine::CheckDefaults;
    fn checks_history(&self) -> bool;
    fn buggify(&self, cfg: &mut RunConfig, rng: &mut rand_chacha::ChaCha8Rng);
    fn buggify_knobs(&self, cfg: &RunConfig) -> Option<String>;
    /// Runs a validated config (faults resolved) with an explicit schedule.
    fn run(&self, seed: u64, cfg: RunConfig, schedule: Schedule, keep: Keep) -> Report;
    /// Replays a model checker's counterexample under a validated config
    /// (faults resolved); `Err` if the script does not fit.
    fn run_script(
        &self,
        cfg: RunConfig,
        script: &engine::Script,
        keep: Keep,
    ) -> Result<Report, String>;
    /// Model-checks a validated config (`paxsim check`).
    fn explore(
        &'static self,
        cfg: &RunConfig,
        bounds: crate::nemesis::Bounds,
        search: engine::Search,
    ) -> Result<crate::engine::protocol::CheckReport, String>;
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
    fn check_defaults(&self) -> engine::CheckDefaults {
        Scenario::check_defaults(self)
    }
    fn required_marks(&self, cfg: &RunConfig) -> Vec<&'static str> {
        Scenario::required_marks(self, cfg)
    }
    fn checks_history(&self) -> bool {
        Scenario::checks_history(self)
    }
    fn buggify(&self, cfg: &mut RunConfig, rng: &mut rand_chacha::ChaCha8Rng) {
        Scenario::buggify(self, cfg, rng)
    }
    fn buggify_knobs(&self, cfg: &RunConfig) -> Option<String> {
        Scenario::buggify_knobs(self, cfg)
    }
    fn run(&self, seed: u64, cfg: RunConfig, schedule: Schedule, keep: Keep) -> Report {
        Report::of(seed, Engine::new(self, seed, cfg, schedule, keep).run())
    }
    fn run_script(
        &self,
        cfg: RunConfig,
        script: &engine::Script,
        keep: Keep,
    ) -> Result<Report, String> {
        let requests = Scenario::check_requests(self, &cfg);
        let retries = (0..cfg.machines())
            .map(|id| Scenario::check_retries(self, &cfg, id))
            .collect();
        let engine = Engine::new(self, 0, cfg, Schedule::default(), keep);
        let report = Report::of(0, engine.run_script(script, requests, retries)?);
        Ok(Report {
            scripted: true,
            ..report
        })
    }
    fn explore(
        &'static self,
        cfg: &RunConfig,
        bounds: crate::nemesis::Bounds,
        search: engine::Search,
    ) -> Result<crate::engine::protocol::CheckReport, String> {
        Scenario::explore(self, cfg, bounds, search)
    }
}

fn table() -> &'static RwLock<Vec<&'static dyn Dyn>> {
    static TABLE: OnceLock<RwLock<Vec<&'static dyn Dyn>>> = OnceLock::new();
    TABLE.get_or_init(|| RwLock::new(builtin()))
}

/// The built-in scenarios, in `--all-scenarios` order.
fn builtin() -> Vec<&'static dyn Dyn> {
    use crate::scenarios::{basic, log};
    vec![&basic::Basic, &log::MULTI, &log::KV]
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
    plan_for(
        find(&cfg.scenario).expect("config validated by the caller"),
        seed,
        cfg,
    )
}

fn plan_for(s: &dyn Dyn, seed: u64, cfg: &RunConfig) -> (RunConfig, Schedule) {
    let mut resolved = cfg.clone();
    let faults = cfg
        .faults
        .unwrap_or_else(|| Faults::draw(&mut engine::rng(seed, Stream::Swarm), &s.caps(cfg)));
    resolved.faults = Some(faults);
    buggify_for(s, seed, &mut resolved);
    let schedule = Schedule::generate_with(
        &mut engine::rng(seed, Stream::Schedule),
        cfg.machines(),
        cfg.nodes,
        &faults,
        cfg.fault_phase_us,
    );
    (resolved, schedule)
}

/// Draws `seed`'s BUGGIFY knobs into `cfg` from their own stream, unless
/// `cfg.buggify` is off (what [`plan`] does; for callers that build a
/// schedule of their own, as fuzz decoding does).
pub fn draw_buggify(seed: u64, cfg: &mut RunConfig) {
    buggify_for(
        find(&cfg.scenario).expect("config validated by the caller"),
        seed,
        cfg,
    );
}

fn buggify_for(s: &dyn Dyn, seed: u64, cfg: &mut RunConfig) {
    if cfg.buggify {
        s.buggify(cfg, &mut engine::rng(seed, Stream::Buggify));
    }
}

/// Plans and runs `seed` under `cfg` (validated).
pub fn run_seed(seed: u64, cfg: &RunConfig, keep: Keep) -> Report {
    let s = find(&cfg.scenario).expect("config validated by the caller");
    let (resolved, schedule) = plan_for(s, seed, cfg);
    s.run(seed, resolved, schedule, keep)
}

/// Runs `seed` with an explicit schedule (replays, shrinking, fuzzing).
/// `cfg` must be validated with its faults resolved (`Some`), and the
/// schedule must fit it.
pub fn run_schedule(seed: u64, cfg: &RunConfig, schedule: Schedule, keep: Keep) -> Report {
    let s = find(&cfg.scenario).expect("config validated by the caller");
    s.run(seed, cfg.clone(), schedule, keep)
}

/// What a config needs the table for.
impl RunConfig {
    /// The default configuration of the scenario named `name`.
    pub fn for_scenario(name: &str) -> RunConfig {
        match find(name) {
            Ok(s) => s.defaults(),
            Err(e) => panic!("{e}"),
        }
    }

    /// Switches on the canary `name` of this config's scenario; the error
    /// says which scenario it belongs to if not this one.
    pub fn enable_bug(&mut self, name: &str) -> Result<(), String> {
        let s = find(&self.scenario)?;
        if s.canaries().iter().any(|(n, _)| *n == name) {
            if !self.bugs.iter().any(|b| b == name) {
                self.bugs.push(name.to_string());
                self.bugs.sort();
            }
            return Ok(());
        }
        let owners: Vec<&str> = all()
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

    /// Rejects configurations the harness cannot run meaningfully.
    pub fn validate(&self) -> Result<(), String> {
        let s = find(&self.scenario)?;
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
        if self.machines() as usize > paxos::MAX_NODES {
            return Err(format!(
                "nodes and spares are {} machines, at most {}",
                self.machines(),
                paxos::MAX_NODES
            ));
        }
        s.validate(self)?;
        if self.spares > 0 && !s.caps(self).membership {
            return Err(format!(
                "spares is {}, but the {} scenario has no membership changes",
                self.spares, self.scenario
            ));
        }
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
        s.validate(self.machines())?;
        let caps = find(&self.scenario)?.caps(self);
        for (i, t) in s.faults.iter().enumerate() {
            // At the phase's end faults heal and the liveness clock starts:
            // a fault after it would make a liveness verdict meaningless.
            if t.at_us >= self.fault_phase_us {
                return Err(format!(
                    "fault #{i} at {} us is not in the fault phase (0 to {} us, fault_phase_us): \
                     faults heal when it ends",
                    t.at_us, self.fault_phase_us
                ));
            }
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

    /// The BUGGIFY knobs this config's seed drew, as text; `None` if its
    /// scenario has none.
    pub fn buggify_knobs(&self) -> Option<String> {
        find(&self.scenario).ok()?.buggify_knobs(self)
    }

    /// The command that reproduces `seed` under this config, or `None` if
    /// the config has settings no flag expresses (timing, latencies,
    /// params: use the repro file).
    pub fn run_command(&self, seed: u64) -> Option<String> {
        let d = find(&self.scenario).ok()?.defaults();
        let mut cmd = format!(
            "{} run --scenario {} --seed {seed}",
            program(),
            self.scenario
        );
        if self.nodes != d.nodes {
            cmd += &format!(" --nodes {}", self.nodes);
        }
        if self.spares != d.spares {
            cmd += &format!(" --spares {}", self.spares);
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
        if !self.buggify {
            cmd += " --no-buggify";
        }
        for p in self.param_flags(&d)? {
            cmd += &format!(" {p}");
        }
        let rest = RunConfig {
            nodes: d.nodes,
            spares: d.spares,
            clients: d.clients,
            ops: d.ops,
            bugs: d.bugs.clone(),
            faults: d.faults,
            buggify: d.buggify,
            params: d.params.clone(),
            ..self.clone()
        };
        (rest == d).then_some(cmd)
    }
}
