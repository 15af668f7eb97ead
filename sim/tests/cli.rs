//! The `paxsim` binary: exit codes, replay commands, and clear errors on bad
//! input (never a panic).

use std::path::PathBuf;
use std::process::{Command, Output};

mod common;
use common::{paxsim, paxsim_with, text, tmp, SHARD_VARS};

/// Bad input: exit 2, one clear line, no panic.
fn rejects(args: &[&str], says: &str) {
    let o = paxsim(args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
    assert!(t.contains(says), "{args:?} should say {says:?}: {t}");
    assert!(!t.contains("panicked"), "{args:?} panicked: {t}");
}

/// Runs `seed` of `scenario` with canary `bug`, writing repros into `dir`;
/// requires it to fail (exit 1) and returns its output text.
fn fails(scenario: &str, seed: u64, bug: &str, dir: &std::path::Path) -> String {
    let seed = seed.to_string();
    let o = paxsim(&[
        "run",
        "--scenario",
        scenario,
        "--seed",
        &seed,
        "--bug",
        bug,
        "--trace",
        "none",
        "--repro-dir",
        dir.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    t
}

#[test]
fn a_passing_seed_exits_zero_and_prints_its_trace() {
    let o = paxsim(&["run", "--scenario", "basic", "--seed", "7"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("c0 invoke"), "{out}");
    assert!(out.contains("LEARN"), "{out}");
    assert!(text(&o).contains("ok: every invariant held"));
}

#[test]
fn json_trace_is_a_header_the_events_and_a_verdict_one_per_line() {
    let o = paxsim(&["run", "--seed", "7", "--trace", "json"]);
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 10);
    let (head, rest) = lines.split_first().unwrap();
    let (verdict, events) = rest.split_last().unwrap();
    assert_eq!(head["record"], "header");
    assert_eq!(head["schema"], "paxsim-trace/1");
    assert_eq!(head["seed"], "7");
    for e in events {
        assert!(e["record"] == "event" && e.get("at_us").is_some(), "{e}");
    }
    assert_eq!(verdict["record"], "verdict");
    assert_eq!(verdict["ok"], true);
    assert_eq!(verdict["events"], events.len());
    // The schema it names is one command away.
    let schema = paxsim(&["schema"]);
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert_eq!(schema["title"], "paxsim-trace/1");
}

#[test]
fn check_determinism_runs_the_seed_twice() {
    let o = paxsim(&[
        "run",
        "--seed",
        "9",
        "--trace",
        "none",
        "--check-determinism",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("identical traces"));
}

#[test]
fn a_failure_prints_both_replay_commands_and_each_reproduces_it_exactly() {
    let dir = tmp("fail");
    let d = dir.to_str().unwrap();
    let t = fails("basic", 3, "shared-ballots", &dir);
    assert!(
        t.contains("replay: paxsim run --scenario basic --seed 3 --bug shared-ballots"),
        "{t}"
    );
    let fail_line = t
        .lines()
        .find(|l| l.starts_with("FAIL:"))
        .unwrap()
        .to_string();
    let file = dir.join("basic-seed-3.json");
    assert!(
        t.contains(&format!("replay: paxsim replay {}", file.display())),
        "{t}"
    );

    let r = paxsim(&["replay", file.to_str().unwrap(), "--trace", "none"]);
    let rt = text(&r);
    assert_eq!(r.status.code(), Some(1), "{rt}");
    assert!(
        rt.contains(&fail_line),
        "replay differs:\n{rt}\nexpected {fail_line}"
    );
    assert!(rt.contains("replay exact"), "{rt}");

    // The trace printed by `run` and by `replay` is byte-identical.
    let a = paxsim(&[
        "run",
        "--seed",
        "3",
        "--bug",
        "shared-ballots",
        "--repro-dir",
        d,
    ]);
    let b = paxsim(&["replay", file.to_str().unwrap()]);
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn a_campaign_with_a_canary_fails_and_names_each_failing_seed() {
    let dir = tmp("campaign");
    let o = paxsim(&[
        "campaign",
        "--seeds",
        "200",
        "--bug",
        "minority-quorum",
        "--quiet",
        "--jobs",
        "2",
        "--repro-dir",
        dir.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("FAIL seed"), "{t}");
    assert!(
        t.contains("replay: paxsim run --scenario basic --seed"),
        "{t}"
    );
    assert!(t.contains("faults injected:"), "{t}");
    assert!(
        std::fs::read_dir(&dir).unwrap().count() > 0,
        "no repro files written"
    );
}

#[test]
fn a_clean_campaign_exits_zero_with_a_summary() {
    let o = paxsim(&[
        "campaign",
        "--seeds",
        "300",
        "--quiet",
        "--repro-dir",
        tmp("clean").to_str().unwrap(),
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("runs 300  failures 0"), "{t}");
    assert!(t.contains("coverage (runs that reached it)"), "{t}");
}

#[test]
fn fixed_fault_intensities_are_used_and_echoed_in_the_replay_command() {
    let dir = tmp("faults");
    let d = dir.to_str().unwrap();
    // In the canonical order `Faults::spec` prints.
    let spec = "disk_jitter_us=5000,crash_in_sync_permille=50,crashes=6";
    let o = paxsim(&[
        "run",
        "--seed",
        "47",
        "--faults",
        spec,
        "--bug",
        "reply-before-sync",
        "--trace",
        "none",
        "--repro-dir",
        d,
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("crash-in-sync 50‰ crashes 6"), "{t}");
    assert!(
        t.contains(&format!("--bug reply-before-sync --faults {spec}")),
        "{t}"
    );
}

#[test]
fn bad_flags_are_refused_clearly() {
    rejects(
        &["run", "--scenario", "nope", "--seed", "1"],
        "unknown scenario 'nope'",
    );
    rejects(
        &["run", "--seed", "1", "--nodes", "12"],
        "nodes is 12, must be 3 to 9",
    );
    rejects(
        &["run", "--seed", "1", "--nodes", "2"],
        "nodes is 2, must be 3 to 9",
    );
    rejects(&["run", "--seed", "-1"], "unexpected argument");
    rejects(
        &["run", "--seed", "1", "--bug", "nope"],
        "unknown bug 'nope'",
    );
    rejects(
        &["run", "--seed", "1", "--nodes", "3", "--proposers", "4"],
        "(proposers) is 4",
    );
    rejects(&["campaign", "--seeds", "0"], "0 is not in 1..");
    rejects(&["campaign", "--jobs", "0"], "0 is not in 1..=256");
    rejects(
        &["run", "--seed", "1", "--faults", "crashes=lots"],
        "'lots' is not a valid number",
    );
    rejects(
        &["run", "--seed", "1", "--faults", "meteor=1"],
        "unknown fault 'meteor'",
    );
    rejects(
        &["run", "--seed", "1", "--faults", "all", "--calm"],
        "cannot be used with",
    );
}

#[test]
fn bad_repro_files_are_refused_clearly() {
    let dir = tmp("bad");
    rejects(
        &["replay", dir.join("missing.json").to_str().unwrap()],
        "cannot read repro file",
    );
    let good = {
        let d = dir.to_str().unwrap();
        paxsim(&[
            "run",
            "--seed",
            "3",
            "--bug",
            "shared-ballots",
            "--trace",
            "none",
            "--repro-dir",
            d,
        ]);
        std::fs::read_to_string(dir.join("basic-seed-3.json")).unwrap()
    };
    let cases: Vec<(String, &str)> = vec![
        (good[..good.len() / 2].to_string(), "not a valid repro file"),
        ("".into(), "not a valid repro file"),
        ("[]".into(), "not a valid repro file"),
        (
            good.replace("\"paxsim_repro\": 1", "\"paxsim_repro\": 99"),
            "version 99 is not supported",
        ),
        (good.replace("\"nodes\": 5", "\"nodes\": 50"), "nodes is 50"),
        (
            good.replace("\"scenario\": \"basic\"", "\"scenario\": \"kv2\""),
            "unknown scenario 'kv2'",
        ),
        (
            good.replace("\"seed\": 3", "\"seed\": \"three\""),
            "invalid value: string \"three\", expected an unsigned integer",
        ),
        (
            good.replace("\"seed\": 3", "\"seed\": [3]"),
            "invalid type: sequence, expected an unsigned integer",
        ),
        (
            good.replace("\"loss_permille\"", "\"lossy\""),
            "unknown field `lossy`",
        ),
    ];
    for (i, (body, says)) in cases.iter().enumerate() {
        let f = dir.join(format!("bad-{i}.json"));
        std::fs::write(&f, body).unwrap();
        rejects(&["replay", f.to_str().unwrap()], says);
    }
}

#[test]
fn the_log_scenarios_run_replay_and_check_determinism_from_the_cli() {
    for scenario in ["multi", "kv"] {
        let o = paxsim(&[
            "run",
            "--scenario",
            scenario,
            "--seed",
            "5",
            "--ops",
            "30",
            "--check-determinism",
        ]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(0), "{scenario}: {t}");
        assert!(t.contains("identical traces"), "{t}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("APPLY slot"), "{out}");
        assert!(out.contains("c1 invoke"), "{out}");
    }
    // A canary of the service: caught, replayed exactly from both commands.
    let dir = tmp("kvfail");
    let t = fails("kv", 1, "snapshot-without-dedup", &dir);
    assert!(
        t.contains("replay: paxsim run --scenario kv --seed 1 --bug snapshot-without-dedup"),
        "{t}"
    );
    let fail_line = t.lines().find(|l| l.starts_with("FAIL:")).unwrap();
    let file = dir.join("kv-seed-1.json");
    let r = paxsim(&["replay", file.to_str().unwrap(), "--trace", "none"]);
    let rt = text(&r);
    assert_eq!(r.status.code(), Some(1), "{rt}");
    assert!(
        rt.contains(fail_line) && rt.contains("replay exact"),
        "{rt}"
    );
}

#[test]
fn log_scenario_flags_are_checked_against_the_scenario() {
    rejects(
        &[
            "run",
            "--scenario",
            "basic",
            "--seed",
            "1",
            "--bug",
            "read-without-lease",
        ],
        "belongs to the multi and kv scenarios",
    );
    rejects(
        &[
            "run",
            "--scenario",
            "kv",
            "--seed",
            "1",
            "--bug",
            "shared-ballots",
        ],
        "belongs to the basic scenario",
    );
    rejects(
        &[
            "run",
            "--scenario",
            "basic",
            "--seed",
            "1",
            "--faults",
            "wipes=1",
        ],
        "does not apply to the basic scenario",
    );
    rejects(
        &["run", "--scenario", "basic", "--seed", "1", "--ops", "5"],
        "ops is 5: in basic each client asks once",
    );
    rejects(
        &["run", "--scenario", "kv", "--seed", "1", "--nodes", "9"],
        "nodes is 9, must be 3 to 7",
    );
    rejects(
        &[
            "run",
            "--scenario",
            "kv",
            "--seed",
            "1",
            "--bug",
            "no-such-bug",
        ],
        "unknown bug 'no-such-bug'",
    );
    rejects(
        &["run", "--scenario", "raft", "--seed", "1"],
        "unknown scenario 'raft'",
    );
    // Clocks drifting beyond what the leases assume would make stale reads
    // the model's limit, not a bug; `multi` serves no lease reads.
    let drift = ["--seed", "1", "--faults", "clock_drift_ppm=300000"];
    rejects(
        &[&["run", "--scenario", "kv"][..], &drift].concat(),
        "exceeds the 200000 ppm the kv scenario's leases assume",
    );
    let o = paxsim(&[&["run", "--scenario", "multi", "--ops", "5"][..], &drift].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_failure_shrinks_from_its_repro_file_and_the_shrunk_file_replays_exactly() {
    // (Seed 16 since issue 23: spares and membership episodes moved the
    // canary's failures; seed 11 passes now.)
    let dir = tmp("shrink");
    let d = dir.to_str().unwrap();
    let t = fails("kv", 16, "truncate-on-restart", &dir);
    let file = dir.join("kv-seed-16.json");
    assert!(
        t.contains(&format!("shrink: paxsim shrink {}", file.display())),
        "{t}"
    );
    let invariant = |t: &str| {
        let line = t.lines().find(|l| l.starts_with("FAIL:")).unwrap();
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    let caught = invariant(&t);

    let s = paxsim(&["shrink", file.to_str().unwrap(), "--repro-dir", d]);
    let st = text(&s);
    assert_eq!(s.status.code(), Some(0), "{st}");
    assert!(st.contains("cut schedule"), "{st}");
    assert_eq!(invariant(&st), caught, "{st}");
    let shrunk = dir.join("kv-seed-16-shrunk.json");
    assert!(
        st.contains(&format!("replay: paxsim replay {}", shrunk.display())),
        "{st}"
    );
    let count = |f: &PathBuf| {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        v["schedule"]["faults"].as_array().unwrap().len()
    };
    assert!(count(&shrunk) < count(&file), "{st}");
    let original = std::fs::read(&file).unwrap();

    let r = paxsim(&["replay", shrunk.to_str().unwrap(), "--trace", "none"]);
    let rt = text(&r);
    assert_eq!(r.status.code(), Some(1), "{rt}");
    assert_eq!(invariant(&rt), caught, "{rt}");
    assert!(rt.contains("replay exact"), "{rt}");
    // A replay writes no repro file: the unshrunk original is untouched.
    assert_eq!(std::fs::read(&file).unwrap(), original);
    assert!(!rt.contains(&format!("{}\n", file.display())), "{rt}");
}

#[test]
fn shrink_refuses_a_passing_run_and_a_bad_file() {
    let dir = tmp("shrinkbad");
    let d = dir.to_str().unwrap();
    // A passing run writes no repro; make one from a failing one's file by
    // switching the canary off.
    fails("basic", 1, "accept-below-promise", &dir);
    let file = dir.join("basic-seed-1.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    v["config"]["bugs"] = serde_json::json!([]);
    let fixed = dir.join("fixed.json");
    std::fs::write(&fixed, v.to_string()).unwrap();
    rejects(
        &["shrink", fixed.to_str().unwrap(), "--repro-dir", d],
        "there is no failure to shrink",
    );
    rejects(
        &["shrink", dir.join("absent.json").to_str().unwrap()],
        "cannot read repro file",
    );
    rejects(
        &["shrink", file.to_str().unwrap(), "--budget", "0"],
        "--budget",
    );
}

#[test]
fn require_coverage_fails_a_campaign_that_never_reached_a_mark() {
    // No faults: no node ever restarts, so "recovery after restart" is never
    // reached. Without the flag that is a warning; with it, a failure.
    let args = [
        "campaign", "--seeds", "3", "--calm", "--quiet", "--jobs", "1",
    ];
    let o = paxsim(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("NEVER REACHED"), "{}", text(&o));
    let mut strict = args.to_vec();
    strict.push("--require-coverage");
    let o = paxsim(&strict);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("--require-coverage: never reached: ") && t.contains("recovery after restart"),
        "{t}"
    );
    // A swarm campaign reaches every mark and passes the flag.
    let o = paxsim(&[
        "campaign",
        "--seeds",
        "300",
        "--quiet",
        "--require-coverage",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// `paxsim scenarios | head -1`: a reader that closes the pipe early ends
/// the program as a shell tool ends (status 141), with no panic message.
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_paxsim"))
        .args(["scenarios"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    drop(child.stdout.take()); // The reader is gone before anything is written.
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        matches!(status.code(), Some(141) | Some(0)),
        "{status:?}: {err}"
    );
}

/// `paxsim check` saves its shortest counterexample as a repro file; the
/// simulator replays it exactly, shrink says there is nothing to cut, and a
/// script edited out of shape is refused with the step at fault.
#[test]
fn a_model_checked_counterexample_replays_from_its_repro_file() {
    let dir = tmp("check");
    let d = dir.to_str().unwrap();
    let o = paxsim(&[
        "check",
        "--scenario",
        "basic",
        "--nodes",
        "3",
        "--clients",
        "1",
        "--bug",
        "volatile-round",
        "--crashes",
        "1",
        "--timers",
        "0",
        "--repro-dir",
        d,
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("shortest history (4 steps)"), "{t}");
    let file = dir.join("basic-check-volatile-round.json");
    assert!(
        t.contains(&format!("paxsim replay {}", file.display())),
        "{t}"
    );
    let f = file.to_str().unwrap();
    let replay = paxsim(&["replay", f]);
    let t = text(&replay);
    assert_eq!(replay.status.code(), Some(1), "{t}");
    assert!(
        t.contains("S5 violated") && t.contains("replay exact"),
        "{t}"
    );
    assert!(t.contains("n0 CRASH") && t.contains("n0 RESTART"), "{t}");
    assert!(!t.contains("shrink:"), "{t}");
    rejects(&["shrink", f, "--repro-dir", d], "nothing to shrink");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    v["script"]["steps"][2] = serde_json::json!({"do": "restart", "node": 1});
    let bad = dir.join("bad.json");
    std::fs::write(&bad, v.to_string()).unwrap();
    rejects(
        &["replay", bad.to_str().unwrap()],
        "step 3 (n1 restarts): n1 is up",
    );
    v["script"]["steps"][2] = serde_json::json!({"do": "explode", "node": 1});
    std::fs::write(&bad, v.to_string()).unwrap();
    rejects(
        &["replay", bad.to_str().unwrap()],
        "unknown variant `explode`",
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A long model check can search depth-first (memory bounded by the
/// depth) and stop on the clock; a violation found that way is "a history",
/// not claimed shortest.
#[test]
fn check_searches_depth_first_and_stops_on_the_clock() {
    let dir = tmp("dfs");
    let d = dir.to_str().unwrap();
    let args = [
        "check",
        "--scenario",
        "basic",
        "--nodes",
        "3",
        "--clients",
        "2",
        "--dfs",
    ];
    let o = paxsim(&[&args[..], &["--max-seconds", "1", "--crashes", "1"]].concat());
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "undecided: {t}");
    assert!(t.contains("not every interleaving was explored"), "{t}");
    assert!(
        t.contains("undecided") && t.contains("depth-first, down to"),
        "{t}"
    );
    let bug = ["--bug", "minority-quorum", "--repro-dir", d];
    let o = paxsim(&[&args[..], &bug[..]].concat());
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("S3 violated") && t.contains("a history ("),
        "{t}"
    );
    rejects(
        &[&args[..], &["--max-seconds", "0"]].concat(),
        "--max-seconds",
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 24: `check` with nothing but a scenario and a bug explores the
/// smallest configuration that means something (basic: 3 nodes, 2
/// proposers, no timer firing) and finds the README's canary; it says which
/// bounds it used; a search that stops before exhausting the space exits 3
/// (undecided), one that exhausts it exits 0 and says so.
#[test]
fn check_defaults_find_the_canary_and_an_incomplete_search_says_so() {
    let dir = tmp("check-defaults");
    let d = dir.to_str().unwrap();
    let o = paxsim(&[
        "check",
        "--scenario",
        "basic",
        "--bug",
        "ignore-promised-values",
        "--repro-dir",
        d,
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("3 nodes (+0 spare), 2 clients"), "{t}");
    assert!(t.contains("0 timer firings"), "{t}");
    assert!(
        t.contains("S2 violated") && t.contains("shortest history (14 steps)"),
        "{t}"
    );
    let o = paxsim(&[
        "check",
        "--scenario",
        "basic",
        "--timers",
        "1",
        "--max-states",
        "100000",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(
        t.contains("undecided") && t.contains("every history of up to"),
        "{t}"
    );
    let o = paxsim(&["check", "--scenario", "multi"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("1 timer firings") && t.contains("the space is exhausted"),
        "{t}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The summaries of a campaign's output, without its header lines and its
/// wall-time lines (what a merge must reproduce exactly).
fn summaries(out: &Output) -> String {
    let t = String::from_utf8_lossy(&out.stdout);
    let kept: Vec<&str> = t
        .lines()
        .filter(|l| {
            !l.starts_with("campaign: ") && !l.starts_with("merged ") && !l.starts_with("wall ")
        })
        .collect();
    kept.join("\n")
}

#[test]
fn four_shards_from_flags_slurm_and_kubernetes_merge_into_the_whole_campaign() {
    let dir = tmp("shards");
    let d = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let repros = d("repros");
    let campaign = [
        "campaign",
        "--all-scenarios",
        "--seeds",
        "48",
        "--quiet",
        "--jobs",
        "2",
    ];
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = campaign.to_vec();
        args.extend_from_slice(extra);
        paxsim_with(&args, env)
    };
    let whole = run(&["--repro-dir", &repros], &[]);
    assert_eq!(whole.status.code(), Some(0), "{}", text(&whole));
    let shard_repros = d("shard-repros");
    let json = |i: usize| d(&format!("shard-{i}.json"));
    let (j0, j1, j2, j3) = (json(0), json(1), json(2), json(3));
    let common = ["--repro-dir", shard_repros.as_str(), "--json"];
    // A Slurm array --array=1-4: tasks 1 and 2 are shards 0 and 1.
    let slurm = |id| {
        [
            ("SLURM_ARRAY_TASK_ID", id),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]
    };
    let shards = [
        run(&[&common[..], &[j0.as_str()]].concat(), &slurm("1")),
        run(&[&common[..], &[j1.as_str()]].concat(), &slurm("2")),
        // A Kubernetes Indexed Job's pod 2 of 4.
        run(
            &[&common[..], &[j2.as_str()]].concat(),
            &[("JOB_COMPLETION_INDEX", "2"), ("PAXSIM_SHARD_COUNT", "4")],
        ),
        run(
            &[&common[..], &[j3.as_str(), "--shard", "3/4"]].concat(),
            &[],
        ),
    ];
    let sources = [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_ID",
        "JOB_COMPLETION_INDEX",
        "--shard",
    ];
    for (i, (o, from)) in shards.iter().zip(sources).enumerate() {
        let t = text(o);
        assert_eq!(o.status.code(), Some(0), "shard {i}: {t}");
        assert!(
            t.contains(&format!(
                "shard {i}/4 (from {from}): seeds {}..{}",
                i * 12,
                i * 12 + 12
            )),
            "{t}"
        );
    }
    let merged = paxsim(&["merge", &j0, &j1, &j2, &j3, "--repro-dir", &repros]);
    let t = text(&merged);
    assert_eq!(merged.status.code(), Some(0), "{t}");
    assert!(
        t.contains("merged 4 result files: scenario kv seeds 0..48"),
        "{t}"
    );
    assert!(!t.contains("warning"), "{t}");
    assert_eq!(summaries(&merged), summaries(&whole));
    assert!(
        summaries(&whole).matches("runs 48  failures 0").count() >= 3,
        "{}",
        summaries(&whole)
    );

    // A lost shard: the merge says which seeds are missing and fails
    // unless --partial accepts that.
    let partial = paxsim(&["merge", &j0, &j1, &j3]);
    let t = text(&partial);
    assert_eq!(partial.status.code(), Some(2), "{t}");
    assert!(
        t.contains("INCOMPLETE: seeds 24..36 of scenario basic"),
        "{t}"
    );
    let o = paxsim(&["merge", &j0, &j1, &j3, "--partial", "--repro-dir", &repros]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The same shard twice would count twice.
    rejects(&["merge", &j0, &j0], "are in both");
}

#[test]
fn a_merge_of_failing_shards_exits_one_and_its_replay_commands_work() {
    let dir = tmp("failing-shards");
    let d = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let (j0, j1, repros) = (d("0.json"), d("1.json"), d("repros"));
    for (i, j) in [(0, &j0), (1, &j1)] {
        let shard = format!("{i}/2");
        let o = paxsim(&[
            "campaign",
            "--seeds",
            "200",
            "--bug",
            "minority-quorum",
            "--quiet",
            "--shard",
            &shard,
            "--json",
            j,
            "--repro-dir",
            &d("elsewhere"),
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    }
    let o = paxsim(&["merge", &j0, &j1, "--repro-dir", &repros]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("last events before the first failure"), "{t}");
    // Each failure's repro file was written here, from the shard's file,
    // and replays the failure exactly.
    let line = t
        .lines()
        .find(|l| l.contains("replay: paxsim replay"))
        .expect("a replay command");
    let file = line.split_whitespace().last().unwrap();
    assert!(file.starts_with(&repros), "{file}");
    let replay = paxsim(&["replay", file, "--trace", "none"]);
    let r = text(&replay);
    assert_eq!(replay.status.code(), Some(1), "{r}");
    assert!(r.contains("replay exact"), "{r}");
}

#[test]
fn bad_shards_and_bad_result_files_are_refused_clearly() {
    rejects(
        &["campaign", "--seeds", "4", "--shard", "4/4"],
        "not below the shard count",
    );
    rejects(
        &["campaign", "--seeds", "4", "--shard", "x"],
        "expected I/N",
    );
    let o = paxsim_with(
        &["campaign", "--seeds", "4", "--quiet"],
        &[("JOB_COMPLETION_INDEX", "1")],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("PAXSIM_SHARD_COUNT is not"), "{t}");
    let dir = tmp("bad-results");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"paxsim_campaign\": 2}").unwrap();
    rejects(
        &["merge", bad.to_str().unwrap()],
        "version 2 is not supported",
    );
    rejects(
        &["merge", dir.join("none.json").to_str().unwrap()],
        "cannot read results file",
    );
    rejects(&["merge"], "required");
    // A file of a scenario this program does not have.
    let j = dir.join("r.json");
    let o = paxsim(&[
        "campaign",
        "--seeds",
        "2",
        "--quiet",
        "--json",
        j.to_str().unwrap(),
        "--repro-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let renamed = std::fs::read_to_string(&j)
        .unwrap()
        .replace("\"scenario\": \"basic\"", "\"scenario\": \"mine\"");
    std::fs::write(&j, renamed).unwrap();
    rejects(&["merge", j.to_str().unwrap()], "merge with that program");
}

/// The shell script of a manifest's container (`args: - |` block), and the
/// manifest's text.
fn manifest_script(file: &str) -> (String, String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/k8s")
        .join(file);
    let yaml = std::fs::read_to_string(&path).unwrap();
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "- |").skip(1);
    let first = lines.next().expect("an args block");
    let indent = first.len() - first.trim_start().len();
    let mut script = vec![first.trim_start()];
    script.extend(
        lines
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
            .map(|l| l.get(indent..).unwrap_or("")),
    );
    (script.join("\n"), yaml)
}

/// The value of the first `key: value` line of a manifest.
fn manifest_field<'a>(yaml: &'a str, key: &str) -> &'a str {
    yaml.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in the manifest"))
        .trim()
        .trim_matches('"')
}

/// The Kubernetes manifests' commands, run as their pods would run them
/// (the same shell script, JOB_COMPLETION_INDEX per pod, the shared volume
/// a directory), with fewer seeds: every index writes its shard, and the
/// merge Job's command merges them into a passing summary.
#[test]
fn the_kubernetes_indexed_job_shards_a_campaign_that_the_merge_job_merges() {
    let (script, yaml) = manifest_script("campaign-job.yaml");
    let n: u64 = manifest_field(&yaml, "completions:").parse().unwrap();
    assert_eq!(manifest_field(&yaml, "parallelism:"), n.to_string());
    assert_eq!(manifest_field(&yaml, "completionMode:"), "Indexed");
    let count_at = yaml
        .find("name: PAXSIM_SHARD_COUNT")
        .expect("the shard count variable");
    assert_eq!(
        manifest_field(&yaml[count_at..], "value:"),
        n.to_string(),
        "PAXSIM_SHARD_COUNT must equal completions"
    );
    let dir = tmp("k8s");
    let results = dir.to_str().unwrap();
    // Fewer seeds than a real campaign; the rest of the command as it is.
    let at = script.find("--seeds ").expect("a seed count") + "--seeds ".len();
    let digits = script[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .count();
    let script =
        format!("{}16{}", &script[..at], &script[at + digits..]).replace("/results", results);
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_paxsim"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sh = |script: &str, index: Option<u64>| {
        let mut cmd = Command::new("/bin/sh");
        for v in SHARD_VARS {
            cmd.env_remove(v);
        }
        cmd.arg("-c").arg(script).env("PATH", &path);
        if let Some(i) = index {
            cmd.env("JOB_COMPLETION_INDEX", i.to_string())
                .env("PAXSIM_SHARD_COUNT", n.to_string());
        }
        cmd.output().unwrap()
    };
    for i in 0..n {
        let o = sh(&script, Some(i));
        assert!(o.status.success(), "pod {i}: {}", text(&o));
        assert!(text(&o).contains(&format!("shard {i}/{n} (from JOB_COMPLETION_INDEX)")));
        assert!(dir.join(format!("shard-{i}.json")).exists());
    }
    let (merge, _) = manifest_script("merge-job.yaml");
    let o = sh(&merge.replace("/results", results), None);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!("merged {n} result files: scenario kv seeds 0..16")),
        "{t}"
    );
    assert!(!t.contains("INCOMPLETE") && !t.contains("warning"), "{t}");
}

/// Issue 24: `paxsim lin FILE` on histories in each format (written here,
/// by hand): 0 linearizable, 1 not (with the failing sub-history and the
/// key named), 2 bad input (the line named), 3 undecided (the budget ran
/// out).
#[test]
fn lin_checks_histories_in_each_format_with_distinct_exit_codes() {
    let dir = tmp("lin");
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let etcd = |read: &str| {
        format!(
            "INFO  jepsen.core - Running\n\
             INFO  jepsen.util - 0\t:invoke\t:write\t3\n\
             INFO  jepsen.util - 0\t:ok\t:write\t3\n\
             INFO  jepsen.util - 1\t:invoke\t:cas\t[3 4]\n\
             INFO  jepsen.util - 1\t:ok\t:cas\t[3 4]\n\
             INFO  jepsen.util - 2\t:invoke\t:read\tnil\n\
             INFO  jepsen.util - 2\t:ok\t:read\t{read}\n"
        )
    };
    let jepsen = |read: &str| {
        format!(
            "{{:type :invoke, :f :write, :value 1, :process 0, :time 10}}\n\
             {{:type :ok, :f :write, :value 1, :process 0, :time 20}}\n\
             {{:type :invoke, :f :cas, :value [2 5], :process 1, :time 30}}\n\
             {{:type :fail, :f :cas, :value [2 5], :process 1, :time 40}}\n\
             {{:type :invoke, :f :read, :value nil, :process 2, :time 50}}\n\
             {{:type :ok, :f :read, :value {read}, :process 2, :time 60}}\n"
        )
    };
    let kv = |read: &str| {
        format!(
            "{{:process 0, :type :invoke, :f :append, :key \"k\", :value \"a\"}}\n\
             {{:process 0, :type :ok, :f :append, :key \"k\", :value \"a\"}}\n\
             {{:process 1, :type :invoke, :f :get, :key \"k\", :value nil}}\n\
             {{:process 1, :type :ok, :f :get, :key \"k\", :value \"{read}\"}}\n"
        )
    };
    for (name, good, bad, says) in [
        ("etcd.log", etcd("4"), etcd("3"), "Etcd"),
        ("history.edn", jepsen("1"), jepsen("5"), "Jepsen"),
        ("kv.txt", kv("a"), kv("ab"), "PorcupineKv"),
    ] {
        let o = paxsim(&["lin", &file(name, &good)]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(0), "{t}");
        assert!(t.contains(says) && t.contains("linearizable"), "{t}");
        let o = paxsim(&["lin", &file(name, &bad)]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(
            t.contains("NOT linearizable") && t.contains("a failing sub-history"),
            "{t}"
        );
    }
    assert!(text(&paxsim(&["lin", &file("kv.txt", &kv("ab"))])).contains("key \"k\""));
    // Undecided: a budget of one step decides nothing.
    let o = paxsim(&["lin", &file("etcd.log", &etcd("4")), "--budget", "1"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("undecided"));
    // Bad input: the line at fault, exit 2.
    let broken =
        "{:type :invoke, :f :write, :value 1, :process 0}\n{:type :ok, :f :write, :process 7}\n";
    rejects(&["lin", &file("broken.edn", broken)], "line 2");
    rejects(&["lin", &file("empty", "")], "no events");
    rejects(
        &["lin", &file("x", "hello"), "--format", "xml"],
        "unknown format",
    );
    rejects(&["lin", &dir.join("absent").to_string_lossy()], "absent");
    std::fs::remove_dir_all(&dir).ok();
}
