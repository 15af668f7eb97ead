//! Campaigns: many seeds over worker threads, and over machines.
//!
//! Each run stays single-threaded and deterministic; workers only pull seed
//! numbers from a shared counter, so the set of runs (and every run's result)
//! does not depend on the number of workers. Wall-clock time is read here, in
//! the runner, and never inside a run.
//!
//! A campaign can also be split into [`Shard`]s, one per process or machine
//! (a Kubernetes Indexed Job's pods, a Slurm job array's tasks): shard `i` of
//! `n` runs one contiguous `n`th of the seeds. Since a seed's result depends
//! on nothing else, the shards' summaries add up to the unsharded one
//! ([`crate::results`] writes and merges them).

use crate::config::RunConfig;
use crate::nemesis::Fault;
use crate::repro::Repro;
use crate::scenario::{self, run_seed, Report};
use crate::trace::{render, Keep};
use checkers::{Invariant, Violation};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Options {
    pub config: RunConfig,
    pub start: u64,
    pub seeds: u64,
    /// Run only this part of `start..start + seeds`.
    pub shard: Option<Shard>,
    pub jobs: usize,
    /// Run every seed twice and compare trace hashes.
    pub check_determinism: bool,
    /// Where failing seeds' repro files go (`None`: write none).
    pub repro_dir: Option<PathBuf>,
    /// Stop after this many failures (0: never).
    pub max_failures: usize,
    pub progress: bool,
}

#[derive(Clone, Debug)]
pub struct Failure {
    pub seed: u64,
    pub violation: Violation,
    /// Where its repro file was written, if it was.
    pub repro: Option<PathBuf>,
    /// The repro file's contents (shard results carry them inline).
    pub record: Repro,
    /// The run's last events, rendered.
    pub recent: String,
}

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub runs: u64,
    pub failures: Vec<Failure>,
    pub events: u64,
    pub deliveries: u64,
    pub sim_time_us: u64,
    pub faults: [u64; crate::nemesis::KINDS],
    /// Runs that reached each coverage mark, in the order first reported.
    pub coverage: Vec<(String, u64)>,
    pub wall: Duration,
    /// A merged summary's shards' wall times (empty for one campaign).
    pub shard_walls: Vec<Duration>,
    /// Seeds whose two runs produced different traces.
    pub nondeterministic: Vec<u64>,
    /// Runs whose end-of-run history check could not decide within its
    /// budget (`kv`: linearizability): not failures, but not proven either.
    pub unproven: u64,
    /// Hostile messages the nemesis delivered, and messages nodes refused.
    pub forged: u64,
    pub refused: u64,
}

impl Summary {
    /// Adds a worker's batch (or a shard's summary). Coverage counts stay
    /// per run: each batch already counted every run at most once per mark.
    pub fn merge(&mut self, o: Summary) {
        self.runs += o.runs;
        self.events += o.events;
        self.deliveries += o.deliveries;
        self.sim_time_us += o.sim_time_us;
        for (t, f) in self.faults.iter_mut().zip(o.faults) {
            *t += f;
        }
        for (name, n) in o.coverage {
            self.mark(&name, n);
        }
        self.failures.extend(o.failures);
        self.nondeterministic.extend(o.nondeterministic);
        self.unproven += o.unproven;
        self.forged += o.forged;
        self.refused += o.refused;
    }

    fn add(&mut self, r: &Report) {
        self.runs += 1;
        self.events += r.stats.events;
        self.deliveries += r.stats.deliveries;
        self.sim_time_us += r.stats.sim_time_us;
        for (t, f) in self.faults.iter_mut().zip(r.stats.faults) {
            *t += f;
        }
        for &(name, n) in &r.coverage {
            self.mark(name, (n > 0) as u64);
        }
        self.unproven += r.stats.unproven;
        self.forged += r.stats.forged;
        self.refused += r.stats.refused;
    }

    pub fn mark(&mut self, name: &str, runs: u64) {
        match self.coverage.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => *c += runs,
            None => self.coverage.push((name.to_string(), runs)),
        }
    }

    /// The seed of the first failure (in seed order), if any.
    pub fn first_failure(&self) -> Option<u64> {
        self.failures.iter().map(|f| f.seed).min()
    }

    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.nondeterministic.is_empty()
    }

    /// The coverage marks of `cfg`'s scenario that no run reached.
    pub fn never_reached(&self, cfg: &RunConfig) -> Vec<&'static str> {
        self.marks(cfg)
            .into_iter()
            .filter(|(_, n)| *n == 0)
            .map(|(name, _)| name)
            .collect()
    }

    /// The scenario's required marks with the runs that reached each.
    fn marks(&self, cfg: &RunConfig) -> Vec<(&'static str, u64)> {
        let Ok(s) = scenario::find(&cfg.scenario) else {
            return Vec::new();
        };
        s.required_marks(cfg)
            .into_iter()
            .map(|m| {
                let c = self.coverage.iter().find(|(n, _)| n == m);
                (m, c.map_or(0, |(_, c)| *c))
            })
            .collect()
    }

    /// The human-readable end-of-campaign summary.
    pub fn render(&self, cfg: &RunConfig) -> String {
        let mut s = String::new();
        s += &format!(
            "runs {}  failures {}  events {}  deliveries {}  simulated {:.1}s\n",
            self.runs,
            self.failures.len(),
            self.events,
            self.deliveries,
            self.sim_time_us as f64 / 1e6,
        );
        s += &self.render_wall();
        s += "faults injected:";
        // Only the kinds this scenario's protocol faces.
        let caps = scenario::find(&cfg.scenario)
            .map(|d| d.caps(cfg))
            .unwrap_or_default();
        for (i, (name, n)) in Fault::KIND_NAMES.iter().zip(self.faults).enumerate() {
            if Fault::kind_supported(i, &caps) {
                s += &format!(" {name} {n},");
            }
        }
        s.pop();
        if caps.hostile {
            s += &format!(
                "\nhostile input: {} forged messages delivered, {} messages refused",
                self.forged, self.refused
            );
        }
        s += "\ncoverage (runs that reached it):\n";
        for (name, n) in self.marks(cfg) {
            let flag = if n == 0 { "   <-- NEVER REACHED" } else { "" };
            s += &format!("  {name:<36} {n:>9}{flag}\n");
        }
        if scenario::find(&cfg.scenario).is_ok_and(|d| d.checks_history()) {
            let flag = if self.unproven > 0 {
                "   <-- NOT PROVEN (search budget spent)"
            } else {
                ""
            };
            s += &format!(
                "histories checked linearizable: {} of {} runs{flag}\n",
                self.runs - self.unproven - self.failures.len() as u64,
                self.runs
            );
        }
        let mut nondeterministic = self.nondeterministic.clone();
        nondeterministic.sort_unstable();
        for seed in nondeterministic {
            s += &format!("NONDETERMINISM: seed {seed} produced two different traces\n");
        }
        let mut failures: Vec<&Failure> = self.failures.iter().collect();
        failures.sort_by_key(|f| f.seed);
        for f in failures {
            s += &format!("FAIL seed {}: {}\n", f.seed, f.violation);
            if let Some(cmd) = cfg.run_command(f.seed) {
                s += &format!("  replay: {cmd}\n");
            }
            if let Some(p) = &f.repro {
                let prog = crate::config::program();
                s += &format!("  replay: {prog} replay {}\n", p.display());
                s += &format!("  shrink: {prog} shrink {}\n", p.display());
            }
        }
        s
    }
}

impl Summary {
    /// The one line of the summary that depends on the machine, not the
    /// seeds: wall time and speed (a merged summary's shards' in total).
    pub fn render_wall(&self) -> String {
        let secs = self.wall.as_secs_f64().max(1e-9);
        let speed = format!(
            "{:.0} runs/s, {:.0} deliveries/s",
            self.runs as f64 / secs,
            self.deliveries as f64 / secs
        );
        match self.shard_walls.iter().max() {
            None => format!("wall {secs:.1}s  ({speed})\n"),
            Some(longest) => format!(
                "wall {secs:.1}s summed over {} shards, the longest {:.1}s  ({speed} per shard-second)\n",
                self.shard_walls.len(),
                longest.as_secs_f64()
            ),
        }
    }
}

/// One of `count` equal parts of a campaign's seeds: shard `index` runs
/// the `index`th contiguous block (sizes differ by at most one seed).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

/// The environment variable that gives a Kubernetes Indexed Job's shard
/// count (Kubernetes sets only `JOB_COMPLETION_INDEX`; the manifest sets
/// this to the Job's `completions`).
pub const SHARD_COUNT_VAR: &str = "PAXSIM_SHARD_COUNT";

impl Shard {
    /// Parses `I/N` (`0 <= I < N`).
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("bad shard '{text}': expected I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        Shard::new(index, count).map_err(|e| format!("bad shard '{text}': {e}"))
    }

    pub fn new(index: u64, count: u64) -> Result<Shard, String> {
        if count == 0 {
            return Err("a campaign has at least one shard".into());
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is not below the shard count {count} (indices start at 0)"
            ));
        }
        Ok(Shard { index, count })
    }

    /// The seeds of this shard of the campaign `start..start + seeds`.
    pub fn seeds(&self, start: u64, seeds: u64) -> Range<u64> {
        let at = |i: u64| start + (seeds as u128 * i as u128 / self.count as u128) as u64;
        at(self.index)..at(self.index + 1)
    }

    /// The shard that the environment of a Slurm job array task
    /// (`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_MIN`, `SLURM_ARRAY_TASK_COUNT`)
    /// or of a Kubernetes Indexed Job's pod (`JOB_COMPLETION_INDEX` and
    /// [`SHARD_COUNT_VAR`]) names, with the variable it came from; `None`
    /// outside both. `var` reads one variable.
    pub fn from_env(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<(Shard, &'static str)>, String> {
        let num = |name: &str| -> Result<Option<u64>, String> {
            match var(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    format!("{name}={v:?} is not a whole number, so the shard is unknown")
                }),
            }
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let count = num("SLURM_ARRAY_TASK_COUNT")?.ok_or(
                "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: \
                 pass --shard I/N",
            )?;
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            if num("SLURM_ARRAY_TASK_STEP")?.is_some_and(|s| s != 1) {
                return Err("a Slurm array with a step other than 1 (--array=A-B:S) \
                     does not number its tasks 0..N: use --array=A-B, or pass --shard I/N"
                    .into());
            }
            let index = id
                .checked_sub(min)
                .ok_or("SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN")?;
            let shard = Shard::new(index, count).map_err(|e| {
                format!("the Slurm array names no shard ({e}): use a contiguous --array=A-B")
            })?;
            return Ok(Some((shard, "SLURM_ARRAY_TASK_ID")));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let count = num(SHARD_COUNT_VAR)?.ok_or_else(|| {
                format!(
                    "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but \
                     {SHARD_COUNT_VAR} is not: set it to the Job's completions, or pass --shard I/N"
                )
            })?;
            let shard = Shard::new(index, count)
                .map_err(|e| format!("JOB_COMPLETION_INDEX and {SHARD_COUNT_VAR}: {e}"))?;
            return Ok(Some((shard, "JOB_COMPLETION_INDEX")));
        }
        Ok(None)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Options {
    /// The seeds this process runs: the whole campaign, or its shard.
    pub fn range(&self) -> Range<u64> {
        match self.shard {
            Some(s) => s.seeds(self.start, self.seeds),
            None => self.start..self.start.saturating_add(self.seeds),
        }
    }
}

/// Runs a worker reports at once: one wake-up of the main thread per run
/// cost a fifth of a campaign's time in context switches.
const BATCH: u64 = 64;

/// Runs the campaign, reporting progress on stderr if asked.
pub fn run(opts: &Options) -> Summary {
    assert!(opts.jobs >= 1);
    let started = Instant::now();
    let range = opts.range();
    let next = AtomicU64::new(range.start);
    let end = range.end;
    let stop = AtomicBool::new(false);
    let bar = progress_bar(opts);
    let mut summary = Summary::default();
    let (tx, rx) = mpsc::sync_channel::<Summary>(64);
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || {
                let mut batch = Summary::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end || stop.load(Ordering::Relaxed) {
                        let _ = tx.send(batch);
                        return;
                    }
                    let r = run_seed_watched(seed, &opts.config, Keep::Recent, HANG_AFTER);
                    if opts.check_determinism {
                        let again = run_seed(seed, &opts.config, Keep::Recent);
                        if again.trace_hash != r.trace_hash {
                            batch.nondeterministic.push(seed);
                        }
                    }
                    batch.add(&r);
                    if let Some(v) = &r.violation {
                        batch.failures.push(failure(opts, &r, v));
                    }
                    let flush = batch.runs == BATCH || r.violation.is_some();
                    if flush && tx.send(std::mem::take(&mut batch)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        for batch in rx {
            let runs = batch.runs;
            summary.merge(batch);
            if opts.max_failures > 0 && summary.failures.len() >= opts.max_failures {
                stop.store(true, Ordering::Relaxed);
            }
            if let Some(bar) = &bar {
                bar.inc(runs);
                let secs = bar.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "{:.0} seeds/s, {} failures",
                    summary.runs as f64 / secs,
                    summary.failures.len()
                ));
            }
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    summary.wall = started.elapsed();
    summary
}

/// How long one seed may run, in wall time, before it is taken to hang.
/// Seeds take milliseconds (the longest profiles, seconds); a handler that
/// spins on its input never returns, and the simulated clock cannot move
/// while it runs, so only wall time can tell.
pub const HANG_AFTER: Duration = Duration::from_secs(60);

/// Runs `seed` as [`run_seed`] does, on a thread of its own, and waits up
/// to `limit` of wall time for it: a run still going then is stuck inside
/// one step (a node spinning or hanging on an input), and is reported as an
/// H1 violation with the seed's resolved config and schedule, so it replays
/// like any failure. The stuck thread cannot be stopped from outside; it is
/// left to spin until the process exits. Wall time decides only *whether* a
/// run is declared hung, never what a run does.
pub fn run_seed_watched(seed: u64, cfg: &RunConfig, keep: Keep, limit: Duration) -> Report {
    let (tx, rx) = mpsc::sync_channel(1);
    let c = cfg.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("seed {seed}"))
        .spawn(move || {
            let _ = tx.send(run_seed(seed, &c, keep));
        });
    if spawned.is_err() {
        // No thread to be had: run here, unwatched.
        return run_seed(seed, cfg, keep);
    }
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => {
            let (config, schedule) = scenario::plan(seed, cfg);
            Report {
                seed,
                config,
                schedule,
                violation: Some(Violation {
                    invariant: Invariant::H1,
                    at_us: 0,
                    node: None,
                    detail: format!(
                        "the run did not finish within {} s of wall time: a node is \
                         spinning or hanging on one input (run the seed under a \
                         debugger or `perf top` to see where)",
                        limit.as_secs_f64()
                    ),
                }),
                stats: Default::default(),
                coverage: Vec::new(),
                trace_hash: 0,
                scripted: false,
                recent: Vec::new(),
                trace: None,
            }
        }
    }
}

/// Records a failing run, writing its repro file if asked.
fn failure(opts: &Options, r: &Report, v: &Violation) -> Failure {
    let record = Repro::from_report(r);
    let repro = opts
        .repro_dir
        .as_ref()
        .and_then(|dir| record.save(dir).map_err(|e| eprintln!("warning: {e}")).ok());
    Failure {
        seed: r.seed,
        violation: v.clone(),
        repro,
        record,
        recent: render(&r.recent, false),
    }
}

fn progress_bar(opts: &Options) -> Option<indicatif::ProgressBar> {
    if !opts.progress {
        return None;
    }
    let bar = indicatif::ProgressBar::new(opts.range().count() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} seeds  {msg}  (eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    Some(bar)
}

/// Seeds until the first failure, for canary reports: runs seeds from
/// `start` one by one and returns the first failing report, if any within
/// `limit` seeds.
pub fn first_failure(cfg: &RunConfig, start: u64, limit: u64) -> Option<Report> {
    (start..start + limit)
        .map(|s| run_seed(s, cfg, Keep::Recent))
        .find(|r| r.violation.is_some())
}

/// Whether the violation is a safety one (not liveness).
pub fn is_safety(v: &Violation) -> bool {
    !matches!(
        v.invariant,
        Invariant::L1 | Invariant::L2 | Invariant::Liveness
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kv_summary_says_how_many_histories_were_proven_linearizable() {
        let kv = RunConfig::for_scenario("kv");
        let mut s = Summary {
            runs: 10,
            ..Summary::default()
        };
        assert!(s
            .render(&kv)
            .contains("histories checked linearizable: 10 of 10 runs\n"));
        s.unproven = 2;
        let text = s.render(&kv);
        assert!(
            text.contains("histories checked linearizable: 8 of 10 runs   <-- NOT PROVEN"),
            "{text}"
        );
        let basic = RunConfig::for_scenario("basic");
        assert!(!s.render(&basic).contains("linearizable"));
    }
}
