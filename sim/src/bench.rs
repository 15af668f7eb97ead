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
//!
//! For a scenario with BUGGIFY knobs, the swarm figure comes in a pair: the
//! campaign default (knobs drawn per seed) and `--no-buggify`, the same
//! seeds run in alternation, one with and one without, so that whatever
//! else loads the machine slows both alike; the ratio of the two is what
//! BUGGIFY costs a campaign.

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
    /// A line to print after the figures (a comparison), if any.
    pub note: Option<String>,
}

impl Figures {
    fn new(label: &str) -> Figures {
        Figures {
            label: label.into(),
            runs: 0,
            deliveries: 0,
            events: 0,
            sim_time_us: 0,
            ops: 0,
            wall: Duration::ZERO,
            note: None,
        }
    }

    /// Runs `seed` under `cfg` and adds it, timed.
    fn run(&mut self, seed: u64, cfg: &RunConfig, checked: bool) {
        let started = Instant::now();
        let r = run_seed(seed, cfg, Keep::Recent);
        self.wall += started.elapsed();
        assert!(
            r.violation.is_none(),
            "bench seed {seed} failed: {:?}",
            r.violation
        );
        self.runs += 1;
        self.deliveries += r.stats.deliveries;
        self.events += r.stats.events;
        self.sim_time_us += r.stats.sim_time_us;
        if checked {
            self.ops += cfg.clients as u64 * cfg.ops as u64;
        }
    }

    /// Schedules per second.
    pub fn rate(&self) -> f64 {
        self.runs as f64 / self.wall.as_secs_f64().max(1e-9)
    }
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
        if let Some(note) = &self.note {
            write!(f, "\n{:<34} {note}", "")?;
        }
        Ok(())
    }
}

/// Runs seeds from 0 under `cfg` on this thread until `budget` elapses.
pub fn measure(label: &str, cfg: &RunConfig, budget: Duration) -> Figures {
    let started = Instant::now();
    let mut fig = Figures::new(label);
    let checked = scenario::find(&cfg.scenario).is_ok_and(|s| s.checks_history());
    let mut seed = 0;
    while started.elapsed() < budget {
        fig.run(seed, cfg, checked);
        seed += 1;
    }
    fig.wall = started.elapsed();
    fig
}

/// What BUGGIFY costs a campaign of `cfg`: seeds from 0, each run with the
/// knobs `cfg` draws and again with every knob off, in alternation on this
/// thread until `budget` elapses for each. Returns (with, without); the
/// second carries the ratio of their speeds as its note.
pub fn buggify_cost(label: &str, cfg: &RunConfig, budget: Duration) -> (Figures, Figures) {
    let off_cfg = RunConfig {
        buggify: false,
        ..cfg.clone()
    };
    let mut on = Figures::new(label);
    let mut off = Figures::new(&format!("{}, --no-buggify", cfg.scenario));
    let checked = scenario::find(&cfg.scenario).is_ok_and(|s| s.checks_history());
    let mut seed = 0;
    while on.wall < budget || off.wall < budget {
        // Which goes first alternates too: neither always runs on a warm cache.
        if seed % 2 == 0 {
            on.run(seed, cfg, checked);
            off.run(seed, &off_cfg, checked);
        } else {
            off.run(seed, &off_cfg, checked);
            on.run(seed, cfg, checked);
        }
        seed += 1;
    }
    let per_event = |f: &Figures| f.wall.as_secs_f64() / f.events.max(1) as f64;
    off.note = Some(format!(
        "BUGGIFY on/off, the same {} seeds: schedules/s ratio {:.3}, time per event ratio {:.3}, \
         events per schedule ratio {:.3}",
        on.runs,
        on.rate() / off.rate(),
        per_event(&on) / per_event(&off),
        on.events as f64 / off.events.max(1) as f64
    ));
    (on, off)
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
        let label = format!("{name}, swarm (campaign default)");
        if swarm.buggify && s.buggify_knobs(&swarm).is_some() {
            let (on, off) = buggify_cost(&label, &swarm, budget);
            out.push(on);
            out.push(off);
        } else {
            out.push(measure(&label, &swarm, budget));
        }
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
