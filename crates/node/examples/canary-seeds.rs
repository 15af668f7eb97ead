//! Seeds to the first failure of every canary, in the fast scheduler and
//! under madsim: `cargo run --release -p paxos-node --example canary-seeds
//! [-- BUDGET [KV_OPS]]`. Both columns run the same config per canary (the
//! faults `tests/log_canaries.rs` uses), each from seed 0 up to BUDGET seeds;
//! the last rows are the targeted configs `crates/node/tests/madsim_canaries.rs`
//! uses for the two canaries madsim reaches slowly under the defaults.

use paxsim::campaign::first_failure;
use paxsim::engine::Scenario;
use paxsim::scenarios::{basic::Basic, log::KV};
use paxsim::{Faults, RunConfig};

/// The faults a canary needs beyond the default swarm draw (as in
/// `tests/log_canaries.rs`).
fn faults_for(canary: &str) -> Option<Faults> {
    (canary == "lease-ignores-drift")
        .then(|| Faults::parse("leader_faults=3,clock_drift_ppm=200000").unwrap())
}

fn madsim_first<S: paxos_node::Runnable>(s: &'static S, cfg: &RunConfig, budget: u64) -> String {
    (0..budget)
        .find_map(|seed| {
            let v = paxos_node::run(s, cfg, seed).violation?;
            Some(format!("{seed} ({:?})", v.invariant))
        })
        .unwrap_or_else(|| format!("none in {budget}"))
}

fn fast_first(cfg: &RunConfig, budget: u64) -> String {
    match first_failure(cfg, 0, budget) {
        Some(r) => format!("{} ({:?})", r.seed, r.violation.unwrap().invariant),
        None => format!("none in {budget}"),
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let budget = args.first().copied().unwrap_or(500);
    let kv_ops = args.get(1).copied();
    println!("| scenario | canary | fast first seed | madsim first seed |");
    println!("|---|---|---|---|");
    for (name, _) in Basic.canaries() {
        let mut cfg = RunConfig::for_scenario("basic");
        cfg.enable_bug(name).unwrap();
        let (fast, slow) = (fast_first(&cfg, budget), madsim_first(&Basic, &cfg, budget));
        println!("| basic | {name} | {fast} | {slow} |");
    }
    for (name, _) in KV.canaries() {
        let mut cfg = RunConfig::for_scenario("kv");
        cfg.enable_bug(name).unwrap();
        cfg.faults = faults_for(name);
        if let Some(ops) = kv_ops {
            cfg.ops = ops as u32;
        }
        let (fast, slow) = (fast_first(&cfg, budget), madsim_first(&KV, &cfg, budget));
        println!("| kv (ops {}) | {name} | {fast} | {slow} |", cfg.ops);
    }
    let targeted = [
        (
            "lease-ignores-drift",
            "leader_faults=10,clock_drift_ppm=200000",
            3,
            200,
        ),
        (
            "non-atomic-chosen",
            "leader_faults=6,crashes=6,crash_in_sync_permille=50,partitions=3,loss_permille=50",
            5,
            50,
        ),
    ];
    for (name, faults, nodes, ops) in targeted {
        let mut cfg = RunConfig::for_scenario("kv");
        cfg.enable_bug(name).unwrap();
        cfg.faults = Some(Faults::parse(faults).unwrap());
        (cfg.nodes, cfg.ops) = (nodes, ops);
        let (fast, slow) = (fast_first(&cfg, budget), madsim_first(&KV, &cfg, budget));
        println!("| kv ({nodes} replicas, ops {ops}, {faults}) | {name} | {fast} | {slow} |");
    }
}
