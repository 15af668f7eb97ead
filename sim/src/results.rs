//! Campaign results as files: what `paxsim campaign --json FILE` writes and
//! `paxsim merge FILES...` reads back.
//!
//! A result file holds, per scenario the campaign ran, everything its
//! summary is made of (runs, events, faults by kind, coverage marks,
//! undecided histories), every failure with its replay command and its repro
//! file inline, and what ran it (the config, the seeds, the shard, the
//! paxsim version and git revision). Merging shard files adds the counts up:
//! a seed's result depends on nothing but the seed and the config, so the
//! merge of a campaign's shards is the summary of the whole campaign, apart
//! from wall time. Merging refuses files whose seeds overlap (a shard given
//! twice would count twice), and says which seeds no file covers.

use crate::campaign::{Failure, Options, Shard, Summary};
use crate::config::RunConfig;
use crate::nemesis::{Fault, KINDS};
use crate::repro::Repro;
use checkers::Violation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The format version this build reads and writes.
pub const VERSION: u32 = 1;

/// The git revision paxsim was built from (`unknown` outside a checkout;
/// a container build passes it in as `PAXSIM_GIT_REVISION`).
pub const GIT_REVISION: &str = env!("PAXSIM_GIT_REVISION");

/// One `--json` file: one process's campaign (or shard of one), possibly
/// over several scenarios (`--all-scenarios`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultFile {
    pub paxsim_campaign: u32,
    pub paxsim_version: String,
    pub git_revision: String,
    /// The program that ran it (`paxsim`, or a user's binary with its own
    /// scenarios): merge with the same one.
    pub program: String,
    /// The shard this process ran, and where it learned it (`--shard`,
    /// `SLURM_ARRAY_TASK_ID`, `JOB_COMPLETION_INDEX`); `None`: all seeds.
    pub shard: Option<ShardOrigin>,
    pub campaigns: Vec<CampaignResult>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardOrigin {
    #[serde(flatten)]
    pub shard: Shard,
    pub from: String,
}

/// One scenario's campaign, or one shard of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignResult {
    pub config: RunConfig,
    /// The whole campaign's seeds: `start..start + seeds`.
    pub start: u64,
    pub seeds: u64,
    /// The seeds this file's process was given (its shard of the above).
    pub ran: Seeds,
    pub check_determinism: bool,
    /// It stopped at `--max-failures`: not every seed of `ran` ran.
    pub stopped_early: bool,
    pub runs: u64,
    pub events: u64,
    pub deliveries: u64,
    pub sim_time_us: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Runs that reached each coverage mark.
    pub coverage: BTreeMap<String, u64>,
    /// Runs whose history check could not decide within its budget.
    pub unproven: u64,
    /// Hostile messages delivered, and messages nodes refused.
    #[serde(default)]
    pub forged: u64,
    #[serde(default)]
    pub refused: u64,
    /// Seeds whose two runs differed (with `check_determinism`).
    pub nondeterministic: Vec<u64>,
    pub failures: Vec<FailureResult>,
    pub wall_s: f64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seeds {
    pub start: u64,
    pub end: u64,
}

impl From<Range<u64>> for Seeds {
    fn from(r: Range<u64>) -> Seeds {
        Seeds {
            start: r.start,
            end: r.end,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureResult {
    pub seed: u64,
    pub violation: Violation,
    /// The `run` command that replays it, where flags can say its config.
    pub replay: Option<String>,
    /// Where the shard wrote its repro file (on the machine it ran on).
    pub repro_file: Option<PathBuf>,
    /// The repro file itself.
    pub repro: Repro,
    /// The run's last events, rendered.
    pub recent: String,
}

impl ResultFile {
    /// A file for this process's campaigns.
    pub fn new(shard: Option<(Shard, &str)>, campaigns: Vec<CampaignResult>) -> ResultFile {
        ResultFile {
            paxsim_campaign: VERSION,
            paxsim_version: env!("CARGO_PKG_VERSION").to_string(),
            git_revision: GIT_REVISION.to_string(),
            program: crate::config::program().to_string(),
            shard: shard.map(|(shard, from)| ShardOrigin {
                shard,
                from: from.to_string(),
            }),
            campaigns,
        }
    }

    /// Writes the file whole or not at all (a temporary file renamed over
    /// it), so a killed shard leaves no half-written result to merge.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).expect("results serialize") + "\n";
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("cannot write results file {}: {e}", path.display()))
    }

    /// Reads and checks a file; the error says what is wrong with it.
    pub fn load(path: &Path) -> Result<ResultFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read results file {}: {e}", path.display()))?;
        ResultFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<ResultFile, String> {
        // The version first, so a newer file says so rather than failing on
        // a field this build does not know.
        let version = serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| format!("not a campaign results file: {e}"))?
            .get("paxsim_campaign")
            .and_then(serde_json::Value::as_u64)
            .ok_or("not a campaign results file: no paxsim_campaign version")?;
        if version != VERSION as u64 {
            return Err(format!(
                "results format version {version} is not supported (this paxsim reads version {VERSION})"
            ));
        }
        let file: ResultFile = serde_json::from_str(text)
            .map_err(|e| format!("not a valid campaign results file: {e}"))?;
        for c in &file.campaigns {
            crate::scenario::find(&c.config.scenario).map_err(|e| {
                format!(
                    "{e} (the file was written by `{}`: merge with that program)",
                    file.program
                )
            })?;
            c.config
                .validate()
                .map_err(|e| format!("bad config of scenario {}: {e}", c.config.scenario))?;
            let whole = c.start..c.start.saturating_add(c.seeds);
            if c.ran.start > c.ran.end || c.ran.start < whole.start || c.ran.end > whole.end {
                return Err(format!(
                    "scenario {}: ran seeds {}..{} outside the campaign's {}..{}",
                    c.config.scenario, c.ran.start, c.ran.end, whole.start, whole.end
                ));
            }
            c.summary()?;
        }
        Ok(file)
    }
}

impl CampaignResult {
    pub fn new(opts: &Options, s: &Summary) -> CampaignResult {
        let ran = opts.range();
        CampaignResult {
            config: opts.config.clone(),
            start: opts.start,
            seeds: opts.seeds,
            stopped_early: s.runs < ran.end - ran.start,
            ran: ran.into(),
            check_determinism: opts.check_determinism,
            runs: s.runs,
            events: s.events,
            deliveries: s.deliveries,
            sim_time_us: s.sim_time_us,
            faults: Fault::KIND_NAMES
                .iter()
                .zip(s.faults)
                .map(|(name, n)| (name.to_string(), n))
                .collect(),
            coverage: s.coverage.iter().cloned().collect(),
            unproven: s.unproven,
            forged: s.forged,
            refused: s.refused,
            nondeterministic: s.nondeterministic.clone(),
            failures: s
                .failures
                .iter()
                .map(|f| FailureResult {
                    seed: f.seed,
                    violation: f.violation.clone(),
                    replay: opts.config.run_command(f.seed),
                    repro_file: f.repro.clone(),
                    repro: f.record.clone(),
                    recent: f.recent.clone(),
                })
                .collect(),
            wall_s: s.wall.as_secs_f64(),
        }
    }

    /// The summary this result was made from (repro paths are the shard's).
    pub fn summary(&self) -> Result<Summary, String> {
        let mut faults = [0; KINDS];
        for (name, &n) in &self.faults {
            let i = Fault::KIND_NAMES
                .iter()
                .position(|k| k == name)
                .ok_or_else(|| format!("unknown fault kind '{name}' (from another paxsim?)"))?;
            faults[i] = n;
        }
        Ok(Summary {
            runs: self.runs,
            failures: self
                .failures
                .iter()
                .map(|f| Failure {
                    seed: f.seed,
                    violation: f.violation.clone(),
                    repro: f.repro_file.clone(),
                    record: f.repro.clone(),
                    recent: f.recent.clone(),
                })
                .collect(),
            events: self.events,
            deliveries: self.deliveries,
            sim_time_us: self.sim_time_us,
            faults,
            coverage: self.coverage.clone().into_iter().collect(),
            wall: Duration::try_from_secs_f64(self.wall_s)
                .map_err(|e| format!("bad wall_s {}: {e}", self.wall_s))?,
            shard_walls: Vec::new(),
            nondeterministic: self.nondeterministic.clone(),
            unproven: self.unproven,
            forged: self.forged,
            refused: self.refused,
        })
    }

    /// The campaign this result is part of: results merge only with results
    /// of the same one.
    fn same_campaign(&self, o: &CampaignResult) -> bool {
        self.config == o.config
            && self.start == o.start
            && self.seeds == o.seeds
            && self.check_determinism == o.check_determinism
    }
}

/// One campaign put together from the shard results of it.
#[derive(Debug)]
pub struct Merged {
    pub config: RunConfig,
    pub start: u64,
    pub seeds: u64,
    pub summary: Summary,
    /// The files it came from.
    pub files: Vec<PathBuf>,
    /// Seeds of the campaign that no file ran.
    pub missing: Vec<Range<u64>>,
    /// Some shard stopped at `--max-failures`.
    pub stopped_early: bool,
}

/// What merging found: the campaigns, and what the user should know.
#[derive(Debug)]
pub struct Merge {
    pub campaigns: Vec<Merged>,
    pub warnings: Vec<String>,
}

/// Merges result files, each campaign with the shards of the same campaign
/// (scenario, config, seeds), in the order the campaigns first appear.
/// Failures' repro files are written into `repro_dir`, so the replay
/// commands the summary prints work here. `Err` on files that cannot be
/// merged (overlapping seeds).
pub fn merge(files: &[(PathBuf, ResultFile)], repro_dir: &Path) -> Result<Merge, String> {
    let mut warnings = Vec::new();
    let mut builds: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (path, f) in files {
        builds
            .entry((f.paxsim_version.clone(), f.git_revision.clone()))
            .or_default()
            .push(path.display().to_string());
    }
    if builds.len() > 1 {
        let list: Vec<String> = builds
            .iter()
            .map(|((v, rev), paths)| format!("paxsim {v} at {rev}: {}", paths.join(", ")))
            .collect();
        warnings.push(format!(
            "the files come from different paxsim builds, so the same seed may not mean the same run:\n  {}",
            list.join("\n  ")
        ));
    }
    // Group the campaigns, remembering which file ran which seeds.
    let mut groups: Vec<(&CampaignResult, Vec<(&Path, &CampaignResult)>)> = Vec::new();
    for (path, f) in files {
        for c in &f.campaigns {
            match groups.iter_mut().find(|(first, _)| first.same_campaign(c)) {
                Some((_, parts)) => parts.push((path, c)),
                None => groups.push((c, vec![(path, c)])),
            }
        }
    }
    let mut merged = Vec::new();
    for (first, mut parts) in groups {
        parts.sort_by_key(|(_, c)| (c.ran.start, c.ran.end));
        for w in parts.windows(2) {
            let ((pa, a), (pb, b)) = (w[0], w[1]);
            if b.ran.start < a.ran.end {
                return Err(format!(
                    "scenario {}: seeds {}..{} are in both {} and {} (the same shard twice?): \
                     merging them would count those runs twice",
                    first.config.scenario,
                    b.ran.start,
                    a.ran.end.min(b.ran.end),
                    pa.display(),
                    pb.display()
                ));
            }
        }
        let mut missing = Vec::new();
        let mut at = first.start;
        for (_, c) in &parts {
            if c.ran.start > at {
                missing.push(at..c.ran.start);
            }
            at = at.max(c.ran.end);
        }
        let end = first.start.saturating_add(first.seeds);
        if at < end {
            missing.push(at..end);
        }
        let mut summary = Summary::default();
        for (_, c) in &parts {
            let s = c.summary()?;
            summary.wall += s.wall;
            summary.shard_walls.push(s.wall);
            summary.merge(s);
        }
        for f in &mut summary.failures {
            f.repro = f
                .record
                .save(repro_dir)
                .map_err(|e| warnings.push(format!("seed {}: {e}", f.seed)))
                .ok();
        }
        merged.push(Merged {
            config: first.config.clone(),
            start: first.start,
            seeds: first.seeds,
            summary,
            files: parts.iter().map(|(p, _)| p.to_path_buf()).collect(),
            missing,
            stopped_early: parts.iter().any(|(_, c)| c.stopped_early),
        });
    }
    // The same scenario under two configs (or seed ranges) is two campaigns:
    // each is summarised on its own, but the user meant one, most likely.
    for (i, a) in merged.iter().enumerate() {
        for b in &merged[i + 1..] {
            if a.config.scenario == b.config.scenario {
                warnings.push(format!(
                    "the files hold two different campaigns of scenario {} (config or seeds differ: \
                     {} vs {}): each is summarised on its own",
                    a.config.scenario,
                    list(&a.files),
                    list(&b.files)
                ));
            }
        }
    }
    Ok(Merge {
        campaigns: merged,
        warnings,
    })
}

fn list(files: &[PathBuf]) -> String {
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}
