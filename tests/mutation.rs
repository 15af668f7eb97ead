//! The oracle `cargo mutants` runs against each mutant of the protocol crates
//! (see README, "Mutation score"): campaigns of the *correct* configuration,
//! judged only by the invariants, the protocol's own assertions and the
//! coverage marks. A mutant is killed when any run fails or a coverage mark
//! (a hard path) is never reached. Ignored in the ordinary `cargo test`,
//! whose sweeps cover the same ground with more seeds; `cargo mutants` runs
//! it with `--include-ignored` (`.cargo/mutants.toml`).

use paxsim::campaign::{self, Options};
use paxsim::RunConfig;

/// Runs `seeds` seeds of `config` on one worker; panics on any failure or
/// unreached coverage mark, with the summary.
fn campaign(config: RunConfig, seeds: u64) {
    let summary = campaign::run(&Options {
        config: config.clone(),
        start: 0,
        seeds,
        shard: None,
        jobs: 1,
        check_determinism: false,
        repro_dir: None,
        max_failures: 1,
        progress: false,
    });
    let unreached = summary.never_reached(&config);
    assert!(
        summary.failures.is_empty() && unreached.is_empty(),
        "unreached: {unreached:?}\n{}",
        summary.render(&config)
    );
}

#[test]
#[ignore = "the mutation-testing oracle; run by cargo mutants"]
fn basic_paxos_campaigns() {
    campaign(RunConfig::default(), 20_000);
    for nodes in [3, 7] {
        let cfg = RunConfig {
            nodes,
            ..RunConfig::default()
        };
        campaign(cfg, 3_000);
    }
}

#[test]
#[ignore = "the mutation-testing oracle; run by cargo mutants"]
fn multi_paxos_campaign() {
    campaign(RunConfig::for_scenario("multi"), 1_000);
}

#[test]
#[ignore = "the mutation-testing oracle; run by cargo mutants"]
fn kv_campaign() {
    campaign(RunConfig::for_scenario("kv"), 1_000);
}
