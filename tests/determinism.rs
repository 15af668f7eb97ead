//! Same seed ⇒ byte-identical trace; different seeds ⇒ different runs; and
//! golden trace hashes catch nondeterminism a toolchain or dependency
//! upgrade brings in.

use paxsim::campaign::{self, Options};
use paxsim::trace::render;
use paxsim::{run_seed, Keep, RunConfig};

#[test]
fn the_same_seed_twice_gives_the_same_trace_hash() {
    let cfg = RunConfig::default();
    for seed in 0..paxsim_tests::seeds(500) {
        let a = run_seed(seed, &cfg, Keep::Recent);
        let b = run_seed(seed, &cfg, Keep::Recent);
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "seed {seed} is nondeterministic"
        );
        assert_eq!(a.stats, b.stats, "seed {seed}");
    }
}

#[test]
fn the_same_seed_twice_gives_byte_identical_traces_in_both_formats() {
    let cfg = RunConfig::default();
    for seed in 0..20 {
        let a = run_seed(seed, &cfg, Keep::All).trace.unwrap();
        let b = run_seed(seed, &cfg, Keep::All).trace.unwrap();
        assert_eq!(render(&a, false), render(&b, false), "seed {seed}");
        assert_eq!(render(&a, true), render(&b, true), "seed {seed}");
    }
}

#[test]
fn different_seeds_give_different_runs() {
    let cfg = RunConfig::default();
    let mut hashes: Vec<u64> = (0..200)
        .map(|s| run_seed(s, &cfg, Keep::Recent).trace_hash)
        .collect();
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 200, "two seeds produced the same trace");
}

#[test]
fn a_campaign_finds_the_same_results_with_one_worker_or_two() {
    let opts = |jobs| Options {
        config: {
            let mut c = paxsim::RunConfig::default();
            c.enable_bug("shared-ballots").unwrap();
            c
        },
        start: 0,
        seeds: 300,
        shard: None,
        jobs,
        check_determinism: true,
        repro_dir: None,
        max_failures: 0,
        progress: false,
    };
    let one = campaign::run(&opts(1));
    let two = campaign::run(&opts(2));
    assert!(one.nondeterministic.is_empty() && two.nondeterministic.is_empty());
    assert!(
        !one.failures.is_empty(),
        "the canary should fail somewhere in 300 seeds"
    );
    let seeds = |s: &campaign::Summary| {
        let mut v: Vec<(u64, String)> = s
            .failures
            .iter()
            .map(|f| (f.seed, f.violation.to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(seeds(&one), seeds(&two));
    assert_eq!(
        (one.events, one.deliveries, one.faults),
        (two.events, two.deliveries, two.faults)
    );
}

/// Golden hashes: if this snapshot changes, behaviour changed. Review the
/// diff: a protocol or harness change explains it, or nondeterminism crept in.
#[test]
fn golden_trace_hashes() {
    let cfg = RunConfig::default();
    let lines: Vec<String> = (0..8)
        .map(|seed| {
            let r = run_seed(seed, &cfg, Keep::Recent);
            format!(
                "seed {seed}: hash {:016x} events {} deliveries {} outcome {}",
                r.trace_hash,
                r.stats.events,
                r.stats.deliveries,
                r.violation.map_or("ok".to_string(), |v| v.to_string())
            )
        })
        .collect();
    insta::assert_snapshot!(lines.join("\n"));
}

/// The full trace of one fixed seed, so behaviour changes show in review.
#[test]
fn golden_trace_of_seed_42() {
    let r = run_seed(42, &RunConfig::default(), Keep::All);
    let header = format!(
        "faults: {:?}\nschedule: {:?}\n",
        r.config.faults.unwrap(),
        r.schedule.faults
    );
    insta::assert_snapshot!(header + &render(&r.trace.unwrap(), false));
}
