//! Repro files: everything needed to rerun a failure exactly (seed, config
//! with its faults resolved, fault schedule), as JSON.

use crate::config::RunConfig;
use crate::engine::Script;
use crate::nemesis::Schedule;
use crate::scenario::{self, run_schedule, Report};
use crate::trace::Keep;
use checkers::Violation;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The format version this build reads and writes.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repro {
    pub paxsim_repro: u32,
    pub seed: u64,
    pub config: RunConfig,
    pub schedule: Schedule,
    /// What the run broke when it was saved (informational; replay re-checks).
    #[serde(default)]
    pub violation: Option<Violation>,
    /// The trace fingerprint of the saved run: a replay must match it.
    #[serde(default)]
    pub trace_hash: Option<u64>,
    /// A model checker's counterexample (`paxsim check`): the run follows
    /// these steps instead of the seed and the schedule (which is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<Script>,
}

impl Repro {
    pub fn from_report(r: &Report) -> Repro {
        Repro {
            paxsim_repro: VERSION,
            seed: r.seed,
            config: r.config.clone(),
            schedule: r.schedule.clone(),
            violation: r.violation.clone(),
            trace_hash: Some(r.trace_hash),
            script: None,
        }
    }

    /// The repro of a scripted run (a replayed counterexample).
    pub fn scripted(r: &Report, script: Script) -> Repro {
        Repro {
            script: Some(script),
            ..Repro::from_report(r)
        }
    }

    /// Runs the file: its script if it has one, else its seed and schedule.
    pub fn run(&self, keep: Keep) -> Result<Report, String> {
        match &self.script {
            Some(script) => {
                scenario::find(&self.config.scenario)?.run_script(self.config.clone(), script, keep)
            }
            None => Ok(run_schedule(
                self.seed,
                &self.config,
                self.schedule.clone(),
                keep,
            )),
        }
    }

    /// Parses and validates a repro file's text; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Repro, String> {
        let r: Repro =
            serde_json::from_str(text).map_err(|e| format!("not a valid repro file: {e}"))?;
        if r.paxsim_repro != VERSION {
            return Err(format!(
                "repro format version {} is not supported (this paxsim reads version {VERSION})",
                r.paxsim_repro
            ));
        }
        r.config
            .validate()
            .map_err(|e| format!("bad config in repro file: {e}"))?;
        if r.config.faults.is_none() {
            return Err("bad config in repro file: faults must be resolved (not null)".into());
        }
        r.config
            .validate_schedule(&r.schedule)
            .map_err(|e| format!("bad schedule in repro file: {e}"))?;
        if r.script.is_some() && !r.schedule.faults.is_empty() {
            return Err(
                "bad repro file: a scripted run has no fault schedule (its steps are the faults)"
                    .into(),
            );
        }
        Ok(r)
    }

    pub fn load(path: &Path) -> Result<Repro, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read repro file {}: {e}", path.display()))?;
        Repro::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes the file as `<dir>/<scenario>-seed-<seed>.json` (a scripted
    /// one as `<dir>/<scenario>-check-<bugs>.json`).
    pub fn save(&self, dir: &Path) -> Result<PathBuf, String> {
        self.save_as(dir, "")
    }

    /// Writes the file as `<dir>/<scenario>-seed-<seed><suffix>.json`.
    pub fn save_as(&self, dir: &Path, suffix: &str) -> Result<PathBuf, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create repro directory {}: {e}", dir.display()))?;
        let name = match &self.script {
            Some(_) => format!(
                "{}-check-{}",
                self.config.scenario,
                self.config.bugs.join("+")
            ),
            None => format!("{}-seed-{}", self.config.scenario, self.seed),
        };
        let path = dir.join(format!("{}{suffix}.json", name.trim_end_matches('-')));
        let text = serde_json::to_string_pretty(self).expect("repro serializes");
        std::fs::write(&path, text + "\n")
            .map_err(|e| format!("cannot write repro file {}: {e}", path.display()))?;
        Ok(path)
    }
}
