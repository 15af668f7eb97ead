//! What the `paxsim` binary's test files share: running the binary, its
//! output as text, a fresh temporary directory.
#![allow(dead_code)] // Each test file uses its own share of these.

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn paxsim(args: &[&str]) -> Output {
    paxsim_with(args, &[])
}

/// The variables that make a campaign run one shard: none of the tests'
/// campaigns inherits them from wherever the tests run.
pub const SHARD_VARS: [&str; 6] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
    "PAXSIM_SHARD_COUNT",
];

/// Runs paxsim with these environment variables set.
pub fn paxsim_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paxsim"));
    for v in SHARD_VARS {
        cmd.env_remove(v);
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .output()
        .expect("runs")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("paxsim-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
