//! The example's own binary gets paxsim's whole command line for its
//! protocol, without a line of `sim/` changed: run, the determinism check,
//! campaign (which catches the known-buggy variant), replay and shrink.

use std::process::{Command, Output};

fn caspaxos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caspaxos"))
        .args(args)
        .output()
        .expect("the caspaxos binary runs")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn the_scenario_is_listed_next_to_the_built_in_ones() {
    let t = text(&caspaxos(&["scenarios"]));
    for name in ["basic", "kv", "caspaxos", "ignore-accepted"] {
        assert!(t.contains(name), "{t}");
    }
}

#[test]
fn a_correct_run_passes_and_is_deterministic() {
    let o = caspaxos(&["run", "--scenario", "caspaxos", "--seed", "4", "--check-determinism"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("identical traces") && t.contains("c0 invoke"), "{t}");
}

#[test]
fn a_campaign_passes_the_correct_protocol_and_catches_the_buggy_one() {
    let dir = std::env::temp_dir().join(format!("caspaxos-cli-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let ok = caspaxos(&[
        "campaign",
        "--scenario",
        "caspaxos",
        "--seeds",
        "300",
        "--quiet",
        "--require-coverage",
        "--repro-dir",
        d,
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let bad = caspaxos(&[
        "campaign",
        "--scenario",
        "caspaxos",
        "--bug",
        "ignore-accepted",
        "--seeds",
        "50",
        "--quiet",
        "--max-failures",
        "1",
        "--repro-dir",
        d,
    ]);
    let t = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{t}");
    assert!(t.contains("Safety violated") && t.contains("two states chosen"), "{t}");
    // The first failure replays exactly and shrinks, through the same binary.
    let seed = t.split("FAIL seed ").nth(1).unwrap().split(':').next().unwrap();
    let file = dir.join(format!("caspaxos-seed-{seed}.json"));
    assert!(t.contains(&format!("caspaxos replay {}", file.display())), "{t}");
    let f = file.to_str().unwrap();
    let page = dir.join("replay.html");
    let p = page.to_str().unwrap();
    let replay = caspaxos(&["replay", f, "--trace", "none", "--html", p]);
    assert_eq!(replay.status.code(), Some(1));
    assert!(text(&replay).contains("replay exact"), "{}", text(&replay));
    // A user's protocol gets the space-time diagram through the same seam.
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("two states chosen") && html.contains("\"events\""));
    let shrunk = caspaxos(&["shrink", f, "--budget", "200", "--repro-dir", d]);
    assert_eq!(shrunk.status.code(), Some(0), "{}", text(&shrunk));
    assert!(text(&shrunk).contains("Safety violated"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_model_checker_finds_the_buggy_variant_with_a_shortest_history() {
    let dir = std::env::temp_dir().join(format!("caspaxos-check-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let args = [
        "check",
        "--scenario",
        "caspaxos",
        "--nodes",
        "3",
        "--clients",
        "2",
        "--timers",
        "0",
        "--repro-dir",
        d,
    ];
    let bad = caspaxos(&[&args[..], &["--bug", "ignore-accepted"]].concat());
    let t = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{t}");
    assert!(t.contains("two states chosen at version 1"), "{t}");
    assert!(t.contains("shortest history (14 steps)"), "{t}");
    // The counterexample replays in the simulator from its repro file.
    let file = dir.join("caspaxos-check-ignore-accepted.json");
    let replay = caspaxos(&["replay", file.to_str().unwrap(), "--trace", "none"]);
    let t = text(&replay);
    assert_eq!(replay.status.code(), Some(1), "{t}");
    assert!(t.contains("two states chosen at version 1") && t.contains("replay exact"), "{t}");
    std::fs::remove_dir_all(&dir).ok();
    let ok = caspaxos(&[&args[..], &["--max-states", "200000"]].concat());
    let t = text(&ok);
    assert_eq!(ok.status.code(), Some(3), "undecided: {t}");
    assert!(t.contains("undecided") && t.contains("stopped at --max-states"), "{t}");
}
