//! `paxsim bench`: the speed figures README quotes, measured, not guessed.
//!
//! Runs `basic` (5 acceptors, 3 proposers, every fault on) seed after seed
//! on one thread for a fixed wall-clock budget, with every checker on, and
//! reports deliveries per second per core, schedules per second and simulated
//! seconds per wall second. Build with `--release`.

use crate::config::RunConfig;
use crate::nemesis::Faults;
use crate::trace::Keep;
use crate::world::run_seed;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Figures {
    pub label: String,
    pub runs: u64,
    pub deliveries: u64,
    pub events: u64,
    pub sim_time_us: u64,
    pub wall: Duration,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.wall.as_secs_f64().max(1e-9);
        write!(
            f,
            "{:<34} {:>8.0} schedules/s  {:>10.0} deliveries/s  {:>10.0} events/s  {:>8.0} sim-s/wall-s  ({} runs, {} deliveries/run)",
            self.label,
            self.runs as f64 / s,
            self.deliveries as f64 / s,
            self.events as f64 / s,
            self.sim_time_us as f64 / 1e6 / s,
            self.runs,
            self.deliveries / self.runs.max(1),
        )
    }
}

/// Runs seeds from 0 under `cfg` on this thread until `budget` elapses.
pub fn measure(label: &str, cfg: &RunConfig, budget: Duration) -> Figures {
    let started = Instant::now();
    let mut fig = Figures {
        label: label.into(),
        runs: 0,
        deliveries: 0,
        events: 0,
        sim_time_us: 0,
        wall: Duration::ZERO,
    };
    let mut seed = 0;
    while started.elapsed() < budget {
        let r = run_seed(seed, cfg, Keep::Recent);
        assert!(
            r.violation.is_none(),
            "bench seed {seed} failed: {:?}",
            r.violation
        );
        fig.runs += 1;
        fig.deliveries += r.stats.deliveries;
        fig.events += r.stats.events;
        fig.sim_time_us += r.stats.sim_time_us;
        seed += 1;
    }
    fig.wall = started.elapsed();
    fig
}

/// The standard set of measurements.
pub fn standard(budget: Duration) -> Vec<Figures> {
    let all = RunConfig {
        faults: Some(Faults::ALL),
        ..RunConfig::default()
    };
    let calm = RunConfig {
        faults: Some(Faults::NONE),
        ..RunConfig::default()
    };
    vec![
        measure("basic, all faults on", &all, budget),
        measure(
            "basic, swarm (campaign default)",
            &RunConfig::default(),
            budget,
        ),
        measure("basic, no faults", &calm, budget),
    ]
}
