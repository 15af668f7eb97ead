//! The whole command line (`run`, `campaign`, `merge`, `replay`, `shrink`,
//! `bench`, `check`, `scenarios`), for `paxsim` and for any program that registers scenarios
//! of its own: call [`main`] with them. Exit status: 0 all runs passed, 1 an
//! invariant broke (or a run was nondeterministic), 2 bad input.

use crate::campaign::{self, Options, Shard, Summary};
use crate::config::{program, set_program};
use crate::repro::Repro;
use crate::results::{self, CampaignResult, ResultFile};
use crate::scenario::{self, run_schedule, Dyn, Report};
use crate::trace::render;
use crate::{Faults, Keep, RunConfig};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "paxsim",
    version,
    about = "Deterministic simulation testing for Paxos (and your own protocol)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one seed and print its trace.
    Run {
        #[command(flatten)]
        setup: Setup,
        #[arg(long)]
        seed: u64,
        #[command(flatten)]
        out: Output,
        /// Run the seed twice and require byte-identical traces.
        #[arg(long)]
        check_determinism: bool,
    },
    /// Rerun a saved failure exactly, from its repro file (which it leaves
    /// as it is: a replay writes no repro file).
    Replay {
        file: PathBuf,
        /// How to print the trace.
        #[arg(long, value_enum, default_value = "human")]
        trace: TraceFormat,
        /// Also write the run as a space-time diagram: one self-contained
        /// HTML file.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Cut a saved failure down to the fewest faults, the lowest fault
    /// probabilities and the smallest workload (clients, operations) under which the
    /// same seed still breaks the same invariant; save it as a new repro
    /// file. Exits 0 when it wrote the shrunk repro.
    Shrink {
        file: PathBuf,
        /// At most this many runs.
        #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
        budget: u32,
        /// Also write the shrunk run as a space-time diagram (HTML).
        #[arg(long)]
        html: Option<PathBuf>,
        /// Where to write the shrunk repro file (`<scenario>-seed-<seed>-shrunk.json`).
        #[arg(long, default_value = "paxsim-repros")]
        repro_dir: PathBuf,
    },
    /// Run many seeds in parallel and summarise.
    Campaign {
        #[command(flatten)]
        setup: Setup,
        /// How many seeds to run.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Worker threads (default: the number of cores).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: Option<u16>,
        /// Run every seed twice and compare trace hashes.
        #[arg(long)]
        check_determinism: bool,
        /// Where to write failing seeds' repro files.
        #[arg(long, default_value = "paxsim-repros")]
        repro_dir: PathBuf,
        /// Stop after this many failures (0: never stop early).
        #[arg(long, default_value_t = 0)]
        max_failures: usize,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Fail (exit 1) if any coverage mark was never reached: a path the
        /// campaign was meant to exercise went untested.
        #[arg(long)]
        require_coverage: bool,
        /// Run the campaign on every scenario in turn (`paxsim scenarios`),
        /// each with these seeds; exits 1 if any failed.
        #[arg(long, conflicts_with_all = ["scenario", "bugs", "clients", "ops", "nodes"])]
        all_scenarios: bool,
        /// Run only shard I of N (`I/N`, 0 <= I < N): the Ith of N
        /// contiguous blocks of the seeds. Without it, a Slurm array task
        /// (SLURM_ARRAY_TASK_ID, _MIN, _COUNT) or a Kubernetes Indexed Job
        /// pod (JOB_COMPLETION_INDEX, with PAXSIM_SHARD_COUNT set to the
        /// Job's completions) runs the shard its environment names.
        #[arg(long, value_parser = Shard::parse)]
        shard: Option<Shard>,
        /// Also write the results as JSON (for `merge`): counts, coverage,
        /// failures with their replay commands and repro files inline,
        /// config, seeds, shard, paxsim version and git revision.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Combine the `--json` results of a campaign's shards into the summary
    /// the whole campaign prints (one per scenario), writing the failures'
    /// repro files here. Exits 1 if any run failed, 2 if the files are bad,
    /// overlap, or leave seeds uncovered (unless --partial).
    Merge {
        /// Result files written by `campaign --json`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to write the failing seeds' repro files.
        #[arg(long, default_value = "paxsim-repros")]
        repro_dir: PathBuf,
        /// Fail (exit 1) if any coverage mark was never reached.
        #[arg(long)]
        require_coverage: bool,
        /// Accept files that leave some of the campaign's seeds uncovered
        /// (a shard still running or lost): still warn.
        #[arg(long)]
        partial: bool,
    },
    /// Measure simulation speed (build with --release).
    Bench {
        /// Wall-clock seconds per measurement.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        /// Only these scenarios (repeatable; default: all).
        #[arg(long = "scenario")]
        scenarios: Vec<String>,
        /// Skip the linearizability checker's figures.
        #[arg(long)]
        no_linearizability: bool,
    },
    /// Model-check: explore every interleaving of a small configuration
    /// (breadth-first; a violation comes with a shortest history). Unless
    /// given, the configuration and bounds are the scenario's smallest
    /// that mean something (basic: 3 nodes, 2 proposers, no timer firing;
    /// multi: 3 replicas, 1 client, 1 firing; kv: 4 firings). Exit status:
    /// 0 every interleaving within the bounds passed, 1 a violation, 2 bad
    /// input, 3 undecided (stopped at --max-states or --max-seconds first).
    Check {
        #[command(flatten)]
        setup: Setup,
        /// Crashes allowed in one history (each loses the node's unsynced
        /// writes; default 0).
        #[arg(long)]
        crashes: Option<u8>,
        /// Messages that may be lost in one history (default 0).
        #[arg(long)]
        losses: Option<u8>,
        /// Messages that may be duplicated in one history (default 0).
        #[arg(long)]
        duplicates: Option<u8>,
        /// Timer firings (retries, queries, elections) in one history
        /// (default: the scenario's).
        #[arg(long)]
        timers: Option<u8>,
        /// Operator membership changes in one history (the scenario's:
        /// `multi` and `kv` replace the last voter by the first spare, so
        /// give `--spares 1`), each asked of any live node at any moment
        /// (default 0).
        #[arg(long)]
        changes: Option<u8>,
        /// Stop after visiting this many states (breadth-first search keeps
        /// about 3 KB per state of its frontier: 5 M visited is a few GB).
        #[arg(long, default_value_t = 5_000_000)]
        max_states: usize,
        /// Stop after this many seconds (default: no limit).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        max_seconds: Option<u64>,
        /// Search depth-first: memory grows with the depth, not with the
        /// breadth-first frontier (for long runs), but a violation's
        /// history is then not the shortest.
        #[arg(long)]
        dfs: bool,
        /// Where to write the counterexample's repro file
        /// (`<scenario>-check-<bugs>.json`).
        #[arg(long, default_value = "paxsim-repros")]
        repro_dir: PathBuf,
        /// Also write the counterexample, replayed, as a space-time diagram
        /// (HTML).
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Check a history another system recorded for linearizability:
    /// porcupine's key-value logs, Jepsen's etcd logs, or a Jepsen
    /// `history.edn` of a register or cas-register (told apart by their
    /// first event). Prints the verdict, the time and a failing
    /// sub-history. Exit status: 0 linearizable, 1 not, 2 bad input, 3
    /// undecided (the search budget ran out on some key).
    Lin {
        /// The history file.
        file: PathBuf,
        /// porcupine-kv, etcd or jepsen (default: from the first event).
        #[arg(long, value_parser = crate::lin::Format::parse)]
        format: Option<crate::lin::Format>,
        /// Search steps per key at most.
        #[arg(long, default_value_t = 100_000_000, value_parser = clap::value_parser!(u64).range(1..))]
        budget: u64,
    },
    /// List the scenarios and the known-buggy variants.
    Scenarios,
    /// Print the JSON Schema of `--trace json` (`paxsim-trace/1`): a
    /// header record, one record per event, a verdict record.
    Schema,
}

#[derive(Args, Clone)]
struct Setup {
    /// The scenario (`scenarios` lists them; default: the first).
    #[arg(long)]
    scenario: Option<String>,
    /// Cluster size (basic: 3-9, default 5; multi and kv: 3-7, default 5).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
    nodes: Option<u8>,
    /// Spare machines beyond the first voters, that membership changes may
    /// add (multi and kv: 0-4, default 2; `check`: 0 unless given).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=15))]
    spares: Option<u8>,
    /// Concurrent clients (basic: the proposers, default 3; multi and kv:
    /// default 5).
    #[arg(long, visible_alias = "proposers", value_parser = clap::value_parser!(u8).range(1..=16))]
    clients: Option<u8>,
    /// Operations per client (multi 100, kv 200 by default).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    ops: Option<u32>,
    /// Switch on a known-buggy variant (repeatable); see `scenarios`.
    #[arg(long = "bug")]
    bugs: Vec<String>,
    /// No faults at all (the same as `--faults none`).
    #[arg(long, conflicts_with = "faults")]
    calm: bool,
    /// Fixed fault intensities instead of drawing them per seed (swarm):
    /// `none`, `all`, or `name=value,...`, e.g. `crashes=5,loss_permille=100`.
    /// Names: loss_permille dup_permille long_delay_permille jitter_us
    /// disk_jitter_us crash_in_sync_permille crashes partitions slow_nodes;
    /// where the protocol faces them (multi, kv): leader_faults
    /// clock_drift_ppm clock_skew_us pauses torn_permille bit_flips wipes
    /// snapshot_crash_permille hostile_permille members (`all-log`: all).
    #[arg(long, value_parser = Faults::parse)]
    faults: Option<Faults>,
    /// Keep every BUGGIFY knob off (by default each seed draws its own).
    #[arg(long)]
    no_buggify: bool,
    /// Set one of the scenario's own settings (repeatable): `NAME=VALUE`,
    /// VALUE in JSON (a bare word is a string), NAME dotted for a nested
    /// one, e.g. `--param scale_one_in=1` (kv: the big-state profile) or
    /// `--param timing.lease_us=0`. `scenarios` shows each scenario's.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
}

impl Setup {
    /// The scenario named, or the first.
    fn scenario(&self) -> Result<&'static dyn scenario::Dyn, String> {
        match &self.scenario {
            Some(name) => scenario::find(name),
            None => Ok(scenario::all()[0]),
        }
    }

    fn config(&self) -> Result<RunConfig, String> {
        let base = self.scenario()?.defaults();
        let mut cfg = RunConfig {
            nodes: self.nodes.unwrap_or(base.nodes),
            spares: self.spares.unwrap_or(base.spares),
            clients: self.clients.unwrap_or(base.clients),
            ops: self.ops.unwrap_or(base.ops),
            faults: if self.calm {
                Some(Faults::NONE)
            } else {
                self.faults
            },
            buggify: !self.no_buggify,
            ..base
        };
        for b in &self.bugs {
            cfg.enable_bug(b)?;
        }
        for p in &self.params {
            cfg.set_param(p)?;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[derive(Args)]
struct Output {
    /// How to print the trace.
    #[arg(long, value_enum, default_value = "human")]
    trace: TraceFormat,
    /// Where to write a repro file if the run fails.
    #[arg(long, default_value = "paxsim-repros")]
    repro_dir: PathBuf,
    /// Also write the run as a space-time diagram: one self-contained HTML
    /// file (a lane per node, messages as arrows, faults as spans, the
    /// violation marked).
    #[arg(long)]
    html: Option<PathBuf>,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum TraceFormat {
    /// One line of text per event.
    Human,
    /// JSON Lines in the schema `paxsim-trace/1` (`paxsim schema`): a
    /// header record, one record per event, a verdict record.
    Json,
    None,
}

/// Runs the command line of `paxsim`: the built-in scenarios plus
/// `extra`, under the program name `name` (what replay commands print).
/// A program of your own calls this from its `main` with its scenarios.
pub fn main(name: &'static str, extra: &[&'static dyn Dyn]) -> ExitCode {
    set_program(name);
    quiet_broken_pipe();
    for s in extra {
        if let Err(e) = scenario::register(*s) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    let matches = Cli::command().name(name).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match dispatch(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<ExitCode, String> {
    match cmd {
        Cmd::Run {
            setup,
            seed,
            out,
            check_determinism,
        } => {
            let cfg = setup.config()?;
            let (resolved, schedule) = scenario::plan(seed, &cfg);
            // The whole trace only for what shows it (the recent events,
            // which a failure prints, are kept either way).
            let keep = match out.trace == TraceFormat::None && out.html.is_none() {
                true if !check_determinism => Keep::Recent,
                _ => Keep::All,
            };
            // Watched: a node spinning on an input is reported (H1), not waited on.
            let report = campaign::run_seed_watched(seed, &cfg, keep, campaign::HANG_AFTER);
            if check_determinism {
                let again = run_schedule(seed, &resolved, schedule, Keep::All);
                if again.trace_hash != report.trace_hash || again.trace != report.trace {
                    eprintln!("NONDETERMINISM: seed {seed} produced two different traces");
                    return Ok(ExitCode::from(1));
                }
                eprintln!(
                    "determinism: two runs, identical traces (hash {:016x})",
                    report.trace_hash
                );
            }
            let save = Save::Into {
                dir: &out.repro_dir,
                command: cfg.run_command(seed),
            };
            if let Some(path) = &out.html {
                crate::timeline::write(&report, "run", path)?;
            }
            finish(&report, out.trace, save)
        }
        Cmd::Replay { file, trace, html } => {
            let repro = Repro::load(&file)?;
            let report = repro.run(Keep::All)?;
            if let Some(path) = &html {
                crate::timeline::write(&report, "replay", path)?;
            }
            let save = match &repro.script {
                Some(script) => {
                    eprintln!(
                        "scripted run: a model checker's counterexample of {} steps; nothing is \
                         random, and the time column counts steps (1us each)",
                        script.steps.len()
                    );
                    Save::Script(&file)
                }
                None => Save::Already(&file),
            };
            let code = finish(&report, trace, save)?;
            match repro.trace_hash {
                Some(h) if h != report.trace_hash => {
                    eprintln!(
                        "warning: trace hash {:016x} differs from the saved {h:016x}: \
                         the code changed since this file was written, so the replay is not exact",
                        report.trace_hash
                    );
                }
                Some(_) => eprintln!(
                    "replay exact: trace hash {:016x} matches the repro file",
                    report.trace_hash
                ),
                None => {}
            }
            Ok(code)
        }
        Cmd::Shrink {
            file,
            budget,
            repro_dir,
            html,
        } => shrink(&file, budget, &repro_dir, html.as_deref()),
        Cmd::Campaign {
            setup,
            seeds,
            start,
            jobs,
            check_determinism,
            repro_dir,
            max_failures,
            quiet,
            require_coverage,
            all_scenarios,
            shard,
            json,
        } => {
            let shard = match shard {
                Some(s) => Some((s, "--shard")),
                None => Shard::from_env(|v| std::env::var(v).ok())?,
            };
            let scenarios: Vec<String> = if all_scenarios {
                scenario::all()
                    .iter()
                    .map(|s| s.name().to_string())
                    .collect()
            } else {
                vec![setup.scenario.clone().unwrap_or_default()]
            };
            let jobs = jobs
                .map(usize::from)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let mut ok = true;
            let mut results = Vec::new();
            for scenario in scenarios {
                let config = Setup {
                    scenario: (!scenario.is_empty()).then_some(scenario),
                    ..setup.clone()
                }
                .config()?;
                let opts = Options {
                    config,
                    start,
                    seeds,
                    shard: shard.map(|(s, _)| s),
                    jobs,
                    check_determinism,
                    repro_dir: Some(repro_dir.clone()),
                    max_failures,
                    progress: !quiet,
                };
                let mut header = format!(
                    "campaign: scenario {} seeds {}..{}",
                    opts.config.scenario,
                    opts.start,
                    opts.start.saturating_add(opts.seeds)
                );
                if let Some((s, from)) = shard {
                    let r = opts.range();
                    header += &format!(" shard {s} (from {from}): seeds {}..{}", r.start, r.end);
                }
                println!("{header} on {jobs} workers, {}", describe(&opts.config));
                let summary = campaign::run(&opts);
                ok &= print_summary(&summary, &opts.config, require_coverage);
                if json.is_some() {
                    results.push(CampaignResult::new(&opts, &summary));
                }
            }
            if let Some(path) = json {
                ResultFile::new(shard, results).save(&path)?;
                eprintln!("results written to {}", path.display());
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Merge {
            files,
            repro_dir,
            require_coverage,
            partial,
        } => merge(&files, &repro_dir, require_coverage, partial),
        Cmd::Bench {
            seconds,
            scenarios,
            no_linearizability,
        } => {
            if cfg!(debug_assertions) {
                eprintln!("note: this is a debug build; use `cargo run --release -- bench` for real figures");
            }
            for fig in crate::bench::standard(Duration::from_secs(seconds), &scenarios)? {
                println!("{fig}");
            }
            if !no_linearizability {
                println!("linearizability checker (best of 3):");
                for row in crate::bench::linearizability() {
                    println!("  {row}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check {
            setup,
            crashes,
            losses,
            duplicates,
            timers,
            changes,
            max_states,
            max_seconds,
            dfs,
            repro_dir,
            html,
        } => {
            let s = setup.scenario()?;
            let d = s.check_defaults();
            let sized = Setup {
                nodes: setup.nodes.or(Some(d.nodes)),
                clients: setup.clients.or(Some(d.clients)),
                ..setup.clone()
            };
            let mut cfg = sized.config()?;
            if setup.spares.is_none() {
                // Idle spare machines would only multiply the states: none
                // unless asked for (a membership change needs them).
                cfg.spares = 0;
            }
            let search = crate::engine::Search {
                max_states,
                max_time: max_seconds.map(Duration::from_secs),
                depth_first: dfs,
            };
            let bounds = crate::nemesis::Bounds {
                crashes: crashes.unwrap_or(d.bounds.crashes),
                losses: losses.unwrap_or(d.bounds.losses),
                duplicates: duplicates.unwrap_or(d.bounds.duplicates),
                timers: timers.unwrap_or(d.bounds.timers),
                changes: changes.unwrap_or(d.bounds.changes),
            };
            let b = bounds;
            eprintln!(
                "checking {} with {} nodes (+{} spare), {} clients, bugs [{}]; bounds per history: \
                 {} crashes, {} losses, {} duplicates, {} timer firings, {} membership changes; \
                 at most {max_states} states{}",
                cfg.scenario,
                cfg.nodes,
                cfg.spares,
                cfg.clients,
                cfg.bugs.join(", "),
                b.crashes,
                b.losses,
                b.duplicates,
                b.timers,
                b.changes,
                max_seconds.map_or(String::new(), |s| format!(" or {s} s"))
            );
            let r = s.explore(&cfg, bounds, search)?;
            let secs = r.elapsed.as_secs_f64().max(1e-9);
            println!(
                "{} unique states ({} visited, depth {}) in {:.1}s: {:.0} states/s{}",
                r.unique_states,
                r.states,
                r.max_depth,
                secs,
                r.unique_states as f64 / secs,
                if r.complete || r.violation.is_some() {
                    ""
                } else {
                    " (stopped at --max-states or --max-seconds: not every interleaving was explored)"
                }
            );
            match r.violation {
                None if r.complete => {
                    println!(
                        "ok: every invariant held in every history within these bounds \
                         (the space is exhausted: {} states, the longest history {} steps)",
                        r.unique_states, r.max_depth
                    );
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    // Breadth-first, every state one step short of the
                    // deepest seen was generated and judged.
                    let covered = match dfs {
                        true => format!("depth-first, down to {} steps", r.max_depth),
                        false => format!(
                            "every history of up to {} steps, some longer",
                            r.max_depth.saturating_sub(1)
                        ),
                    };
                    println!(
                        "undecided: no violation in the {} states explored ({covered}), but the \
                         search stopped before it exhausted the space; raise --max-states or \
                         --max-seconds{}, or narrow the bounds",
                        r.unique_states,
                        if dfs {
                            ""
                        } else {
                            " (or --dfs for bounded memory)"
                        }
                    );
                    Ok(ExitCode::from(3))
                }
                Some((v, script)) => {
                    println!("FAIL: {v}");
                    let which = if dfs { "a history" } else { "shortest history" };
                    println!("{which} ({} steps):", script.steps.len());
                    for (i, step) in script.steps.iter().enumerate() {
                        println!("  {:>3}. {step}", i + 1);
                    }
                    // The same history through the simulator's engine: it
                    // must break the same invariant, or the model and the
                    // engine disagree (a harness bug, reported as such).
                    cfg.faults = Some(crate::nemesis::Faults::NONE);
                    let keep = if html.is_some() {
                        Keep::All
                    } else {
                        Keep::Recent
                    };
                    let replayed = s.run_script(cfg, &script, keep)?;
                    if let Some(path) = &html {
                        crate::timeline::write(&replayed, "model checker's counterexample", path)?;
                    }
                    let Some(again) = &replayed.violation else {
                        return Err(format!(
                            "harness bug: the simulator replayed the model's counterexample \
                             and found no violation (the model found: {v})"
                        ));
                    };
                    if again.invariant != v.invariant {
                        return Err(format!(
                            "harness bug: the simulator's replay broke {:?} where the model \
                             broke {:?} ({v})",
                            again.invariant, v.invariant
                        ));
                    }
                    let path = Repro::scripted(&replayed, script).save(&repro_dir)?;
                    eprintln!("replay: {} replay {}", program(), path.display());
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::Lin {
            file,
            format,
            budget,
        } => crate::lin::run(&file, format, budget),
        Cmd::Scenarios => {
            println!("scenarios (--scenario NAME):");
            for s in scenario::all() {
                println!("  {:<8} {}", s.name(), s.about());
            }
            for s in scenario::all() {
                println!("{} bugs (--bug NAME, never on by default):", s.name());
                for (name, about) in s.canaries() {
                    println!("  {name:<26} {about}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Schema => {
            print!("{}", crate::schema::SCHEMA);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `paxsim scenarios | head` closes stdout early: exit as a shell tool does
/// (status 141, SIGPIPE's) instead of printing a panic.
fn quiet_broken_pipe() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        previous(info);
    }));
}

/// A campaign's bugs and faults, for its header line.
fn describe(cfg: &RunConfig) -> String {
    format!(
        "bugs [{}], faults {}{}",
        cfg.bugs.join(", "),
        match cfg.faults {
            Some(f) => format!("fixed ({})", f.spec()),
            None => "drawn per seed (swarm)".into(),
        },
        if cfg.buggify { "" } else { ", buggify off" }
    )
}

/// Prints a campaign's summary (and the first failure's last events); true
/// if every seed passed (and, if required, every coverage mark was reached).
fn print_summary(summary: &Summary, cfg: &RunConfig, require_coverage: bool) -> bool {
    print!("{}", summary.render(cfg));
    if let Some(first) = summary.failures.iter().min_by_key(|f| f.seed) {
        println!(
            "\nlast events before the first failure (seed {}):\n{}",
            first.seed, first.recent
        );
    }
    let unreached = summary.never_reached(cfg);
    if require_coverage && !unreached.is_empty() {
        println!(
            "FAIL: --require-coverage: never reached: {}",
            unreached.join(", ")
        );
        return false;
    }
    summary.ok()
}

/// `paxsim merge`: the shards' results, summarised as one campaign each.
fn merge(
    files: &[PathBuf],
    repro_dir: &std::path::Path,
    require_coverage: bool,
    partial: bool,
) -> Result<ExitCode, String> {
    let loaded = files
        .iter()
        .map(|p| ResultFile::load(p).map(|f| (p.clone(), f)))
        .collect::<Result<Vec<_>, _>>()?;
    let m = results::merge(&loaded, repro_dir)?;
    for w in &m.warnings {
        eprintln!("warning: {w}");
    }
    let (mut ok, mut complete) = (true, true);
    for c in &m.campaigns {
        println!(
            "merged {} result files: scenario {} seeds {}..{}, {}",
            c.files.len(),
            c.config.scenario,
            c.start,
            c.start.saturating_add(c.seeds),
            describe(&c.config)
        );
        ok &= print_summary(&c.summary, &c.config, require_coverage);
        if c.stopped_early {
            println!("note: a shard stopped at --max-failures, so not every seed ran");
        }
        for r in &c.missing {
            complete = false;
            println!(
                "INCOMPLETE: seeds {}..{} of scenario {} are in no file (a shard missing?)",
                r.start, r.end, c.config.scenario
            );
        }
    }
    Ok(if !ok {
        ExitCode::from(1)
    } else if !complete && !partial {
        eprintln!(
            "error: the files do not cover every seed of the campaign (--partial accepts that)"
        );
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Where a failing run's repro file is.
enum Save<'a> {
    /// Write it into this directory; `command` is the `paxsim run` that
    /// reproduces the run, if flags can express its config.
    Into {
        dir: &'a std::path::Path,
        command: Option<String>,
    },
    /// The run is a replay of this file.
    Already(&'a std::path::Path),
    /// The run is a replay of this model checker's counterexample (already
    /// shortest: nothing to shrink).
    Script(&'a std::path::Path),
}

/// Prints a run's header, trace and verdict; saves a repro on failure.
fn finish(report: &Report, trace: TraceFormat, save: Save) -> Result<ExitCode, String> {
    let c = &report.config;
    let f = c.faults.expect("resolved");
    eprintln!(
        "seed {} scenario {} nodes {}{} clients {} x {} ops bugs [{}]",
        report.seed,
        c.scenario,
        c.nodes,
        match c.spares {
            0 => String::new(),
            s => format!(" (+{s} spares)"),
        },
        c.clients,
        c.ops,
        c.bugs.join(", ")
    );
    eprintln!(
        "faults: loss {}‰ dup {}‰ long-delay {}‰ jitter {}us disk-jitter {}us crash-in-sync {}‰ crashes {} partitions {} slow {}; schedule of {}",
        f.loss_permille,
        f.dup_permille,
        f.long_delay_permille,
        f.jitter_us,
        f.disk_jitter_us,
        f.crash_in_sync_permille,
        f.crashes,
        f.partitions,
        f.slow_nodes,
        report.schedule.faults.len()
    );
    if f.unsupported(&crate::engine::Caps::default()).is_some() {
        eprintln!(
            "more faults: leader {} clock drift ±{}ppm skew {}us pauses {} torn {}‰ bit flips {} wipes {} snapshot-crash {}‰ hostile {}‰ membership {}",
            f.leader_faults,
            f.clock_drift_ppm,
            f.clock_skew_us,
            f.pauses,
            f.torn_permille,
            f.bit_flips,
            f.wipes,
            f.snapshot_crash_permille,
            f.hostile_permille,
            f.members
        );
    }
    if let Some(knobs) = c.buggify_knobs() {
        eprintln!("buggify: {knobs}");
    }
    match trace {
        TraceFormat::Json => print!("{}", crate::tracefile::records(report)),
        TraceFormat::Human => {
            if let Some(events) = &report.trace {
                print!("{}", render(events, false));
            }
        }
        TraceFormat::None => {}
    }
    eprintln!(
        "{} events, {} deliveries, simulated {}, trace hash {:016x}",
        report.stats.events,
        report.stats.deliveries,
        checkers::fmt_time(report.stats.sim_time_us),
        report.trace_hash
    );
    if report.stats.forged + report.stats.refused > 0 {
        eprintln!(
            "hostile input: {} forged messages delivered, {} messages refused",
            report.stats.forged, report.stats.refused
        );
    }
    if report.stats.unproven > 0 {
        eprintln!(
            "warning: the end-of-run history check ran out of budget: \
             this history is not proven (linearizable)"
        );
    }
    match &report.violation {
        None => {
            eprintln!("ok: every invariant held");
            Ok(ExitCode::SUCCESS)
        }
        Some(v) => {
            eprintln!("FAIL: {v}");
            let path = match save {
                Save::Into { dir, command } => {
                    let path = Repro::from_report(report).save(dir)?;
                    if let Some(cmd) = command {
                        eprintln!("replay: {cmd}");
                    }
                    path
                }
                Save::Already(file) => file.to_path_buf(),
                Save::Script(file) => {
                    eprintln!("replay: {} replay {}", program(), file.display());
                    return Ok(ExitCode::from(1));
                }
            };
            eprintln!("replay: {} replay {}", program(), path.display());
            eprintln!("shrink: {} shrink {}", program(), path.display());
            Ok(ExitCode::from(1))
        }
    }
}

/// `paxsim shrink`: shrinks a repro file's failure and saves the result.
fn shrink(
    file: &std::path::Path,
    budget: u32,
    dir: &std::path::Path,
    html: Option<&std::path::Path>,
) -> Result<ExitCode, String> {
    let repro = Repro::load(file)?;
    let (cfg, sched) = (&repro.config, &repro.schedule);
    eprintln!(
        "shrinking seed {} ({}): {} scheduled faults, {} clients x {} ops, at most {budget} runs",
        repro.seed,
        cfg.scenario,
        sched.faults.len(),
        cfg.clients,
        cfg.ops
    );
    let out = crate::shrink::shrink(&repro, budget, &mut |step| eprintln!("  cut {step}"))?;
    let r = &out.report;
    eprintln!(
        "shrunk in {} runs{}: {} -> {} scheduled faults, {} x {} -> {} x {} client ops",
        out.runs,
        if out.budget_spent {
            " (budget spent; shrinking the result again may cut more)"
        } else {
            ""
        },
        sched.faults.len(),
        r.schedule.faults.len(),
        cfg.clients,
        cfg.ops,
        r.config.clients,
        r.config.ops
    );
    let f = r.config.faults.expect("resolved");
    eprintln!("remaining fault intensities: {}", f.spec());
    eprintln!("remaining schedule:");
    for t in &r.schedule.faults {
        eprintln!("  {:>12}  {}", checkers::fmt_time(t.at_us), t.fault);
    }
    let v = r.violation.as_ref().expect("a shrunk run fails");
    eprintln!("FAIL: {v}");
    let shrunk = Repro::from_report(r);
    let path = shrunk.save_as(dir, "-shrunk")?;
    eprintln!("replay: {} replay {}", program(), path.display());
    if let Some(html) = html {
        crate::timeline::write(&shrunk.run(Keep::All)?, "shrunk", html)?;
    }
    Ok(ExitCode::SUCCESS)
}
