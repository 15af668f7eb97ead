//! Basic Paxos on madsim's runtime: the same core and the same observer as
//! the fast scheduler, driven by madsim's seeded scheduler, network and
//! kill/restart.
#![cfg(madsim)]

use checkers::Invariant;
use paxos_node::{run_basic, BasicRun};

fn assert_all_learned_one_value(seed: u64, o: &paxos_node::Outcome) {
    assert!(o.violation.is_none(), "seed {seed}: {:?}", o.violation);
    let first = o.learned[0].unwrap_or_else(|| panic!("seed {seed}: n0 learned nothing"));
    assert!(
        o.learned.iter().all(|l| *l == Some(first)),
        "seed {seed}: {:?}",
        o.learned
    );
    assert!(
        [100, 101, 102].contains(&first),
        "seed {seed}: learned {first}"
    );
}

#[test]
fn calm_runs_choose_one_value_and_every_node_learns_it() {
    for seed in 0..50 {
        let o = run_basic(&BasicRun::new(seed));
        assert_all_learned_one_value(seed, &o);
        assert!(o.messages > 0);
    }
}

#[test]
fn runs_with_crashes_and_packet_loss_stay_safe_and_live() {
    for seed in 0..50 {
        let run = BasicRun {
            crashes: true,
            loss: 0.05,
            ..BasicRun::new(seed)
        };
        let o = run_basic(&run);
        assert_all_learned_one_value(seed, &o);
    }
}

#[test]
fn the_same_seed_gives_the_same_run_and_different_seeds_differ() {
    let mut hashes = Vec::new();
    for seed in 0..10 {
        let run = BasicRun {
            crashes: true,
            loss: 0.05,
            ..BasicRun::new(seed)
        };
        let a = run_basic(&run);
        let b = run_basic(&run);
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "seed {seed} is nondeterministic under madsim"
        );
        assert_eq!(a.messages, b.messages);
        hashes.push(a.trace_hash);
    }
    hashes.sort();
    hashes.dedup();
    assert!(hashes.len() > 5, "seeds barely change the run: {hashes:?}");
}

#[test]
fn a_canary_is_caught_under_madsim_too() {
    let mut bugs = paxos::Bugs::default();
    bugs.enable("ignore-promised-values").unwrap();
    let first = (0..200).find_map(|seed| {
        let run = BasicRun {
            bugs,
            crashes: true,
            ..BasicRun::new(seed)
        };
        run_basic(&run).violation.map(|v| (seed, v))
    });
    let (seed, v) = first.expect("ignore-promised-values survived 200 madsim seeds");
    println!("ignore-promised-values under madsim: caught at seed {seed}: {v}");
    assert!(
        matches!(v.invariant, Invariant::S2 | Invariant::S3 | Invariant::S4),
        "{v}"
    );
}
