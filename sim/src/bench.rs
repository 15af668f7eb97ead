//! `paxsim bench`: the speed figures README quotes, measured, not guessed.
//!
//! Runs each registered scenario under its default config (`basic` with 5
//! acceptors and 3 proposers; `kv` with 5 replicas and 5 clients x 200
//! operations; `multi`; your own) seed after seed on one thread for a fixed
//! wall-clock budget, with every checker on (linearizability included):
//! with every fault it faces on, with faults drawn per seed (what a campaign
//! runs) and with none. It reports schedules, deliveries, events and
//! checked client operations per second per core, and simulated seconds per
//! wall second. Build with `--release`.

use crate::config::RunConfig;
use crate::nemesis::Faults;
use crate::scenario::{self, run_seed};
use crate::trace::Keep;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Figures {
    pub label: String,
    pub runs: u64,
    pub deliveries: u64,
    pub events: u64,
    pub sim_time_us: u64,
    /// Client operations run and checked (log scenarios).
    pub ops: u64,
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
        )?;
        if self.ops > 0 {
            write!(
                f,
                "\n{:<34} {:>8.0} linearizability-checked client ops/s",
                "",
                self.ops as f64 / s
            )?;
        }
        Ok(())
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
        ops: 0,
        wall: Duration::ZERO,
    };
    let checked = scenario::find(&cfg.scenario).is_ok_and(|s| s.checks_history());
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
        if checked {
            fig.ops += cfg.clients as u64 * cfg.ops as u64;
        }
        seed += 1;
    }
    fig.wall = started.elapsed();
    fig
}

/// The standard set of measurements: every scenario named in `names` (all
/// registered ones if empty) with all its faults on, swarm, and calm.
pub fn standard(budget: Duration, names: &[String]) -> Result<Vec<Figures>, String> {
    let scenarios = if names.is_empty() {
        scenario::all()
    } else {
        names
            .iter()
            .map(|n| scenario::find(n))
            .collect::<Result<_, _>>()?
    };
    let mut out = Vec::new();
    for s in scenarios {
        let swarm = s.defaults();
        let all = RunConfig {
            faults: Some(Faults::ALL_LOG.only(&s.caps(&swarm))),
            ..swarm.clone()
        };
        let calm = RunConfig {
            faults: Some(Faults::NONE),
            ..swarm.clone()
        };
        let name = s.name();
        out.push(measure(&format!("{name}, all faults on"), &all, budget));
        out.push(measure(
            &format!("{name}, swarm (campaign default)"),
            &swarm,
            budget,
        ));
        out.push(measure(&format!("{name}, no faults"), &calm, budget));
    }
    Ok(out)
}

/// Times the linearizability checker on generated histories: the issue's
/// reference point (10,000 operations, 10 keys, 5 clients), then how the time
/// grows with history length and with concurrency. Each row is the best of
/// three runs.
pub fn linearizability() -> Vec<String> {
    use linearizability::{bench_history, check, Report};
    // A bound on search steps, so a pathological row reports itself instead
    // of running for minutes (the search is exponential in concurrency).
    const BUDGET: u64 = 20_000_000;
    let mut rows = Vec::new();
    let mut row = |ops: usize, keys: u64, clients: u32| {
        let h = bench_history(ops, keys, clients, 1);
        let mut best = Duration::MAX;
        let mut verdict = String::new();
        for _ in 0..3 {
            let t = Instant::now();
            let r = check(&h, BUDGET);
            best = best.min(t.elapsed());
            verdict = match r {
                Report::Linearizable => "linearizable".into(),
                Report::Unknown { .. } => format!("search budget ({BUDGET} steps) exhausted"),
                Report::NotLinearizable { .. } => panic!("generated histories are linearizable"),
            };
        }
        rows.push(format!(
            "{ops:>7} ops, {keys:>2} keys, {clients:>2} clients {:>10.2} ms  {verdict}",
            best.as_secs_f64() * 1e3
        ));
    };
    for ops in [1_000, 10_000, 100_000] {
        row(ops, 10, 5);
    }
    for clients in [2, 5, 10, 20] {
        row(10_000, 10, clients);
    }
    for clients in [2, 5, 10] {
        row(10_000, 1, clients);
    }
    rows
}
