//! The scenarios of the seam on madsim's runtime: `basic`, `multi` and the
//! full `kv` service, with their own checkers and workloads, calm and under
//! every fault kind, deterministic per seed.
#![cfg(madsim)]

use paxos_node::{run, Outcome};
use paxsim::nemesis::KINDS;
use paxsim::scenarios::basic::Basic;
use paxsim::scenarios::log::{Replica, KV, MULTI};
use paxsim::{Fault, Faults, RunConfig};

fn config(scenario: &str, faults: Option<Faults>) -> RunConfig {
    let mut cfg = RunConfig::for_scenario(scenario);
    cfg.faults = faults;
    cfg
}

/// A log scenario with a shorter workload, so that hundreds of seeds fit in
/// the test budget.
fn log_config(scenario: &str, faults: Option<Faults>, ops: u32) -> RunConfig {
    let mut cfg = config(scenario, faults);
    cfg.clients = 3;
    cfg.ops = ops;
    cfg
}

fn assert_ok<P>(what: &str, seed: u64, o: &Outcome<P>) {
    if let Some(v) = &o.violation {
        panic!("{what}, seed {seed}: {v}");
    }
}

/// Every replica of the newest configuration is up, at the same applied
/// slot and the same state, and has applied something (spare machines that
/// never joined are idle).
fn assert_converged(what: &str, seed: u64, o: &Outcome<Replica>) {
    let newest = o
        .nodes
        .iter()
        .flatten()
        .map(|r| r.server().node().latest())
        .max_by_key(|m| m.epoch)
        .expect("a replica is up");
    let states: Vec<(u64, u64)> = o
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| newest.reach() & (1 << i) != 0)
        .map(|(_, r)| {
            let r = r.as_ref().unwrap_or_else(|| panic!("{what} {seed}: down"));
            (r.server().node().applied(), r.server().machine().digest())
        })
        .collect();
    assert!(states[0].0 > 0, "{what} {seed}: nothing applied");
    assert!(
        states.iter().all(|s| *s == states[0]),
        "{what} {seed}: replicas differ: {states:?}"
    );
}

fn mark(o_coverage: &[(&'static str, u64)], name: &str) -> u64 {
    let m = o_coverage.iter().find(|(n, _)| *n == name);
    m.unwrap_or_else(|| panic!("no mark {name}")).1
}

#[test]
fn calm_basic_runs_choose_one_value_and_every_node_learns_it() {
    let cfg = config("basic", Some(Faults::NONE));
    for seed in 0..50 {
        let o = run(&Basic, &cfg, seed);
        assert_ok("basic", seed, &o);
        assert!(o.messages > 0);
        let learned: Vec<_> = o
            .nodes
            .iter()
            .map(|n| n.as_ref().unwrap().learned())
            .collect();
        let first = learned[0].unwrap_or_else(|| panic!("seed {seed}: n0 learned nothing"));
        assert!(learned.iter().all(|l| *l == Some(first)), "{learned:?}");
        assert!([100, 101, 102].contains(&first), "seed {seed}: {first}");
        assert_eq!(o.faults, [0; KINDS], "a calm run has no faults");
    }
}

#[test]
fn calm_multi_runs_apply_every_command_on_every_replica() {
    let cfg = log_config("multi", Some(Faults::NONE), 30);
    for seed in 0..10 {
        let o = run(&MULTI, &cfg, seed);
        assert_ok("multi", seed, &o);
        assert_eq!(o.completed, 3 * 30, "seed {seed}");
        assert_converged("multi", seed, &o);
    }
}

/// The whole service: sessions, locks, leases and the linearizability check
/// of every client's history, not a reduced state machine.
#[test]
fn calm_kv_runs_serve_every_operation_linearizably_with_lease_reads() {
    let cfg = config("kv", Some(Faults::NONE));
    for seed in 0..3 {
        let o = run(&KV, &cfg, seed);
        assert_ok("kv", seed, &o);
        assert_eq!(o.completed, 5 * 200, "seed {seed}");
        assert!(o.history_checked, "seed {seed}: no linearizability verdict");
        assert!(mark(&o.coverage, "read served under a lease") > 0);
        assert_converged("kv", seed, &o);
    }
}

/// Runs `seeds` swarm-drawn (or fixed) faulty seeds and sums the faults that
/// took effect.
fn sweep<S: paxos_node::Runnable>(
    s: &'static S,
    cfg: &RunConfig,
    seeds: std::ops::Range<u64>,
    mut each: impl FnMut(u64, &Outcome<S::P>),
) -> [u64; KINDS] {
    let mut faults = [0; KINDS];
    for seed in seeds {
        let o = run(s, cfg, seed);
        assert_ok(&cfg.scenario, seed, &o);
        each(seed, &o);
        for (sum, n) in faults.iter_mut().zip(o.faults) {
            *sum += n;
        }
    }
    faults
}

fn kind(name: &str) -> usize {
    Fault::KIND_NAMES.iter().position(|k| *k == name).unwrap()
}

#[test]
fn faulty_basic_runs_stay_safe_and_live() {
    let swarm = sweep(&Basic, &config("basic", None), 0..300, |_, _| {});
    let all = sweep(
        &Basic,
        &config("basic", Some(Faults::ALL)),
        0..100,
        |_, _| {},
    );
    for k in ["crash", "restart", "partition", "one-way cut", "slow node"] {
        assert!(swarm[kind(k)] + all[kind(k)] > 20, "{k}: {swarm:?} {all:?}");
    }
}

#[test]
fn faulty_multi_runs_stay_safe_and_live() {
    let mut snapshots = 0;
    let mut each = |seed, o: &Outcome<Replica>| {
        // 3 x 20 operations, shared by the seed's clients (BUGGIFY's scale
        // plays more of them, each an equal share, rounded down).
        assert!(
            (40..=60).contains(&o.completed),
            "seed {seed}: {}",
            o.completed
        );
        snapshots += mark(&o.coverage, "snapshot installed");
    };
    let swarm = sweep(&MULTI, &log_config("multi", None, 20), 0..150, &mut each);
    let all = Some(Faults::ALL_LOG);
    let hard = sweep(&MULTI, &log_config("multi", all, 20), 0..50, &mut each);
    // Every kind the log scenarios face happened, many times.
    for k in Fault::KIND_NAMES {
        assert!(
            swarm[kind(k)] + hard[kind(k)] >= 10,
            "{k}: {swarm:?} {hard:?}"
        );
    }
    assert!(snapshots > 10, "{snapshots} snapshot installs");
}

#[test]
fn faulty_kv_runs_stay_safe_live_and_linearizable() {
    let (mut proven, mut runs, mut rebuilt, mut leader_changes) = (0, 0, 0, 0);
    let mut each = |_, o: &Outcome<Replica>| {
        runs += 1;
        proven += o.history_checked as u64;
        rebuilt += mark(&o.coverage, "replica rebuilt from peers");
        leader_changes += mark(&o.coverage, "leader change");
    };
    let swarm = sweep(&KV, &log_config("kv", None, 20), 0..150, &mut each);
    let all = Some(Faults::ALL_LOG);
    let hard = sweep(&KV, &log_config("kv", all, 20), 0..50, &mut each);
    for k in ["leader crash", "leader isolation", "disk wipe", "bit flip"] {
        assert!(
            swarm[kind(k)] + hard[kind(k)] >= 10,
            "{k}: {swarm:?} {hard:?}"
        );
    }
    assert!(
        proven * 10 >= runs * 9,
        "{proven} of {runs} histories proven"
    );
    assert!(
        rebuilt > 10 && leader_changes > 50,
        "{rebuilt} {leader_changes}"
    );
}

#[test]
fn the_same_seed_gives_the_same_run_and_different_seeds_differ() {
    fn hashes<S: paxos_node::Runnable>(s: &'static S, cfg: &RunConfig) -> Vec<u64> {
        let mut hashes: Vec<u64> = (0..8)
            .map(|seed| {
                let (a, b) = (run(s, cfg, seed), run(s, cfg, seed));
                assert_eq!(a.trace_hash, b.trace_hash, "{} seed {seed}", cfg.scenario);
                assert_eq!((a.messages, a.faults), (b.messages, b.faults));
                a.trace_hash
            })
            .collect();
        hashes.sort();
        hashes.dedup();
        hashes
    }
    assert_eq!(hashes(&Basic, &config("basic", Some(Faults::ALL))).len(), 8);
    let all = Some(Faults::ALL_LOG);
    assert_eq!(hashes(&MULTI, &log_config("multi", all, 10)).len(), 8);
    assert_eq!(hashes(&KV, &log_config("kv", all, 10)).len(), 8);
}
