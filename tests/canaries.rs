//! The harness has teeth: every known-buggy variant is caught within a
//! bounded number of seeds, by the invariant that variant breaks, and its
//! failure replays exactly — from the seed and from the repro file.

use checkers::Invariant;
use paxsim::campaign::first_failure;
use paxsim::repro::Repro;
use paxsim::{run_schedule, run_seed, Keep, RunConfig};

/// (canary, seed bound, invariants it may be caught by).
const CANARIES: [(&str, u64, &[Invariant]); 7] = [
    // Caught when the reply leaves, not when a crash later makes it matter.
    ("reply-before-sync", 20, &[Invariant::D1]),
    (
        "accept-below-promise",
        500,
        &[Invariant::S2, Invariant::S3, Invariant::S4],
    ),
    (
        "ignore-promised-values",
        500,
        &[Invariant::S2, Invariant::S3, Invariant::S4],
    ),
    ("count-duplicate-accepted", 500, &[Invariant::S3]),
    (
        "minority-quorum",
        500,
        &[Invariant::S2, Invariant::S3, Invariant::S4],
    ),
    // Two proposers in one ballot: caught by its first foreign Accept.
    ("shared-ballots", 50, &[Invariant::S5]),
    // A restarted proposer reuses a ballot: caught when it does.
    ("volatile-round", 500, &[Invariant::S5]),
];

fn config(bug: &str) -> RunConfig {
    let mut cfg = RunConfig::default();
    cfg.enable_bug(bug).unwrap();
    cfg
}

fn check_canary(name: &str) {
    let (_, bound, expected) = CANARIES.iter().find(|c| c.0 == name).unwrap();
    let cfg = config(name);
    let Some(report) = first_failure(&cfg, 0, *bound) else {
        panic!("canary {name} survived {bound} seeds: the harness missed it");
    };
    let v = report.violation.clone().unwrap();
    println!(
        "canary {name}: caught at seed {} (seeds to first failure: {}): {v}",
        report.seed,
        report.seed + 1
    );
    assert!(
        expected.contains(&v.invariant),
        "{name} caught by the wrong invariant: {v}"
    );

    // Replay from the seed: the same violation and the same trace.
    let again = run_seed(report.seed, &cfg, Keep::Recent);
    assert_eq!(again.violation, report.violation);
    assert_eq!(again.trace_hash, report.trace_hash);

    // Replay from the repro file, through its JSON text.
    let text = serde_json::to_string_pretty(&Repro::from_report(&report)).unwrap();
    let repro = Repro::parse(&text).unwrap();
    let replayed = run_schedule(repro.seed, &repro.config, repro.schedule, Keep::Recent);
    assert_eq!(replayed.violation, report.violation);
    assert_eq!(Some(replayed.trace_hash), repro.trace_hash);

    // And the printed command names the canary, so it reproduces too.
    let cmd = cfg.run_command(report.seed).unwrap();
    assert!(cmd.contains(&format!("--bug {name}")), "{cmd}");
}

#[test]
fn canary_reply_before_sync_is_caught() {
    check_canary("reply-before-sync");
}
#[test]
fn canary_accept_below_promise_is_caught() {
    check_canary("accept-below-promise");
}
#[test]
fn canary_ignore_promised_values_is_caught() {
    check_canary("ignore-promised-values");
}
#[test]
fn canary_count_duplicate_accepted_is_caught() {
    check_canary("count-duplicate-accepted");
}
#[test]
fn canary_minority_quorum_is_caught() {
    check_canary("minority-quorum");
}
#[test]
fn canary_shared_ballots_is_caught() {
    check_canary("shared-ballots");
}

#[test]
fn canary_volatile_round_is_caught() {
    check_canary("volatile-round");
}

#[test]
fn every_canary_has_a_test() {
    let tested: Vec<&str> = CANARIES.iter().map(|c| c.0).collect();
    let known: Vec<&str> = paxos::CANARIES.iter().map(|c| c.0).collect();
    assert_eq!(tested, known);
}
