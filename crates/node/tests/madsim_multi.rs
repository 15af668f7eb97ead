//! The Multi-Paxos log on madsim's runtime: the same core and the same
//! `LogObserver` as the `multi` scenario, driven by madsim's seeded
//! scheduler, network, clog and kill/restart.
#![cfg(madsim)]

use checkers::Invariant;
use paxos_node::multi::{run_multi, Coverage, MultiRun};

/// The fault settings the safety and canary tests use: every episode kind,
/// disk wipes, and madsim's packet loss.
fn faulty(seed: u64, replicas: u8, episodes: u32) -> MultiRun {
    MultiRun {
        replicas,
        episodes,
        wipes: true,
        loss: 0.05,
        ..MultiRun::new(seed)
    }
}

#[test]
fn calm_runs_commit_every_command_and_converge() {
    for seed in 0..30 {
        let o = run_multi(&MultiRun::new(seed));
        assert!(o.violation.is_none(), "seed {seed}: {:?}", o.violation);
        // 3 clients × 20 commands, at most 8 per slot.
        assert!(o.applied >= 60 / 8, "seed {seed}: {} slots", o.applied);
        assert_eq!(o.coverage.crashes + o.coverage.isolations, 0);
    }
}

#[test]
fn runs_with_crashes_isolation_wipes_and_loss_stay_safe_and_live() {
    let mut seen = Coverage::default();
    for (replicas, episodes) in [(3, 10), (5, 10)] {
        for seed in 0..500 {
            let o = run_multi(&faulty(seed, replicas, episodes));
            assert!(
                o.violation.is_none(),
                "{replicas} replicas, seed {seed}: {}",
                o.violation.unwrap()
            );
            let c = o.coverage;
            seen.crashes += c.crashes;
            seen.isolations += c.isolations;
            seen.wipes += c.wipes;
            seen.rebuilds += c.rebuilds;
            seen.snapshots += c.snapshots;
            seen.installs += c.installs;
        }
    }
    println!("{seen:?}");
    // The runs reached every kind of fault and recovery.
    assert!(seen.crashes > 100 && seen.isolations > 100, "{seen:?}");
    assert!(seen.wipes > 20 && seen.rebuilds > 20, "{seen:?}");
    assert!(seen.snapshots > 100 && seen.installs > 20, "{seen:?}");
}

#[test]
fn the_same_seed_gives_the_same_run_and_different_seeds_differ() {
    let mut hashes = Vec::new();
    for seed in 0..10 {
        let a = run_multi(&faulty(seed, 5, 6));
        let b = run_multi(&faulty(seed, 5, 6));
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "seed {seed} is nondeterministic"
        );
        assert_eq!((a.messages, a.applied), (b.messages, b.applied));
        hashes.push(a.trace_hash);
    }
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 10, "seeds barely change the run");
}

/// The log-level canaries (the lease and read ones belong to the service,
/// and `non-atomic-chosen` needs thousands of seeds even in the fast
/// scheduler). Each is caught within the budget, by the invariant it breaks,
/// and its seed replays to the same violation.
#[test]
fn log_canaries_are_caught_under_madsim_too() {
    let table: [(&str, u8, u32, &[Invariant]); 6] = [
        (
            "deposed-leader-writes",
            5,
            10,
            &[Invariant::P5, Invariant::P1],
        ),
        (
            "assume-reported-chosen",
            5,
            10,
            &[Invariant::P2, Invariant::P1],
        ),
        (
            "commit-without-entry",
            5,
            10,
            &[Invariant::P2, Invariant::P3],
        ),
        (
            "truncate-on-restart",
            3,
            10,
            &[Invariant::P1, Invariant::P2],
        ),
        ("snapshot-without-dedup", 5, 10, &[Invariant::K2]),
        (
            "wiped-rejoins-as-voter",
            3,
            4,
            &[Invariant::P1, Invariant::P2],
        ),
    ];
    for (name, replicas, episodes, expect) in table {
        let mut bugs = multipaxos::Bugs::default();
        bugs.enable(name).unwrap();
        let run = |seed| MultiRun {
            bugs,
            ..faulty(seed, replicas, episodes)
        };
        let (seed, first) = (0..400)
            .find_map(|seed| run_multi(&run(seed)).violation.map(|v| (seed, v)))
            .unwrap_or_else(|| panic!("{name} survived 400 madsim seeds"));
        println!("{name}: caught at seed {seed} ({replicas} replicas): {first}");
        assert!(expect.contains(&first.invariant), "{name}: {first}");
        let again = run_multi(&run(seed)).violation.expect("replay");
        assert_eq!(again.to_string(), first.to_string(), "{name} replays");
    }
}
