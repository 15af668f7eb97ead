//! Records the git revision paxsim is built from, for campaign result files
//! (`paxsim merge` warns when shards ran different builds). A build outside a
//! git checkout (a container build without `.git`) can pass it in as
//! `PAXSIM_GIT_REVISION`; otherwise it is `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=PAXSIM_GIT_REVISION");
    let given = std::env::var("PAXSIM_GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty());
    let rev = given.or_else(|| {
        let rev = git(&["rev-parse", "HEAD"])?;
        // Build again when HEAD moves: a commit, a checkout. Only files that
        // exist are named (cargo reruns on every build for a missing one).
        for file in ["HEAD", "packed-refs"] {
            rerun_if(git(&["rev-parse", "--git-path", file]));
        }
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            rerun_if(git(&["rev-parse", "--git-path", &branch]));
        }
        Some(rev)
    });
    println!(
        "cargo:rustc-env=PAXSIM_GIT_REVISION={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
}

fn rerun_if(path: Option<String>) {
    if let Some(p) = path.filter(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={p}");
    }
}
