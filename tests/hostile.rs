//! Issue 19: what the real cluster showed and the simulator never saw,
//! found by a seed first, then fixed. Each failure is pinned as a seed of
//! the `kv` swarm with the canary that restores the code as it was (commit
//! 639c1ef): the seed breaks the named invariant with the canary on, and
//! passes with it off. The campaigns that found them ran that code itself;
//! the canaries keep the finding reproducible after the fix.

use checkers::Invariant::{self, *};
use paxsim::campaign::run_seed_watched;
use paxsim::{run_seed, Faults, Keep, RunConfig};
use std::time::Duration;

fn kv(bug: Option<&str>) -> RunConfig {
    let mut cfg = RunConfig::for_scenario("kv");
    if let Some(b) = bug {
        cfg.enable_bug(b).unwrap();
    }
    cfg
}

/// The seed breaks `inv` (its detail containing `detail`) with the canary
/// on, and passes without it.
fn pinned(bug: &str, seed: u64, inv: Invariant, detail: &str) {
    let before = run_seed_watched(seed, &kv(Some(bug)), Keep::Recent, Duration::from_secs(30));
    let v = before
        .violation
        .unwrap_or_else(|| panic!("{bug}: seed {seed} passed; it should break {inv:?}"));
    assert_eq!(v.invariant, inv, "{bug}: seed {seed}: {v}");
    assert!(v.detail.contains(detail), "{bug}: seed {seed}: {v}");
    let after = run_seed(seed, &kv(None), Keep::Recent);
    assert!(
        after.violation.is_none(),
        "seed {seed}: {:?}",
        after.violation
    );
}

/// Failure 1: every heartbeat resent every Accept in flight, and every
/// copy was appended and fsynced again (one WAL held 55 copies of a slot).
#[test]
fn failure_1_a_resent_accept_written_again_breaks_r2() {
    pinned(
        "rewrite-resent-accepts",
        0,
        R2,
        // (Issue 23 changed the run: spare machines, the α-window.)
        "made Accept(1.4, slot 4, 1 entries, #7e99) durable a second time",
    );
}

/// Failure 3: a Prepare whose ballot its sender does not own tripped the
/// acceptor's assertion (`acceptor.rs:30` then).
#[test]
fn failure_3_a_prepare_in_a_stolen_ballot_breaks_h1() {
    pinned(
        "trust-peer-messages",
        19,
        H1,
        "a forged message made the node panic: assertion `left == right` failed: a Prepare \
         carries its sender's ballot",
    );
}

/// Failure 3: an Accept at round `u32::MAX` was made durable, and the next
/// election overflowed the round (`leader.rs:64` then; wrapping, as a
/// release build does, it trips the assertion that a new ballot is above
/// every one seen).
#[test]
fn failure_3_an_accept_at_the_last_round_overflows_the_next_election() {
    pinned(
        "trust-peer-messages",
        25,
        Invariant::Assert,
        "a new ballot is above every one seen",
    );
}

/// Failure 3: a heartbeat with a commit index of 2^40 or more made a
/// follower walk every slot up to it: the run never ends, and the watchdog
/// reports it (the spinning thread is left behind; this binary's other
/// tests are short).
#[test]
fn failure_3_a_distant_commit_index_spins_a_follower() {
    let r = run_seed_watched(
        17,
        &kv(Some("walk-to-commit-index")),
        Keep::Recent,
        Duration::from_secs(20),
    );
    let v = r.violation.expect("a hang");
    assert_eq!(v.invariant, H1, "{v}");
    assert!(v.detail.contains("did not finish within 20 s"), "{v}");
    // The seed replays from its resolved config, like any failure.
    assert!(r.config.faults.is_some_and(|f| f.hostile_permille > 0));
    let after = run_seed(17, &kv(None), Keep::Recent);
    assert!(after.violation.is_none(), "{:?}", after.violation);
}

/// The nemesis is not idle: over a few seeds it forges hundreds of
/// messages, replicas refuse most, and every refusal is counted; a seed
/// whose swarm draws no hostile input forges nothing.
#[test]
fn hostile_input_is_forged_refused_and_counted() {
    let (mut forged, mut refused, mut calm) = (0, 0, 0);
    for seed in 0..40 {
        let r = run_seed(seed, &kv(None), Keep::Recent);
        assert!(r.violation.is_none(), "seed {seed}: {:?}", r.violation);
        forged += r.stats.forged;
        refused += r.stats.refused;
        if r.config.faults.unwrap().hostile_permille == 0 {
            calm += 1;
            assert_eq!(r.stats.forged, 0);
        }
    }
    assert!(forged > 300, "{forged} forged");
    assert!(refused > forged / 2, "{refused} of {forged} refused");
    assert!(
        (10..=30).contains(&calm),
        "{calm} of 40 seeds without hostile input"
    );
}

/// Hostile input at a fixed rate, as `--faults` spells it, in `multi` too.
#[test]
fn a_fixed_hostile_rate_runs_clean_in_both_log_scenarios() {
    for scenario in ["multi", "kv"] {
        let mut cfg = RunConfig::for_scenario(scenario);
        cfg.faults = Some(Faults::parse("hostile_permille=200,loss_permille=50").unwrap());
        for seed in 0..10 {
            let r = run_seed(seed, &cfg, Keep::Recent);
            assert!(
                r.violation.is_none(),
                "{scenario} seed {seed}: {:?}",
                r.violation
            );
            assert!(
                r.stats.refused > 0,
                "{scenario} seed {seed} refused nothing"
            );
        }
    }
    // Basic Paxos forges nothing: it does not face hostile input.
    let mut basic = RunConfig::for_scenario("basic");
    basic.faults = Some(Faults::parse("hostile_permille=200").unwrap());
    assert!(
        basic.validate().is_err(),
        "basic does not face hostile input"
    );
}

/// Failure 2: state that outgrows one peer frame could never be handed
/// over. With a frame limit small enough for an ordinary seed to cross
/// (600 bytes; `paxkv`'s is 64 MiB, crossed by 2,200 keys of 32,000 bytes),
/// a replica that lost its disk was sent a RebuildState over the limit,
/// which R1 catches. Now such a message travels in parts that each fit.
#[test]
fn failure_2_state_over_the_frame_limit_breaks_r1() {
    let small = |bug| {
        let mut cfg = kv(bug);
        cfg.set_param("frame_bytes=600").unwrap();
        cfg
    };
    let before = run_seed(1, &small(Some("send-state-whole")), Keep::Recent);
    let v = before.violation.expect("R1");
    assert_eq!(v.invariant, R1, "{v}");
    assert!(v.detail.contains("sent RebuildState("), "{v}");
    assert!(v.detail.contains("over the wire limit of 600"), "{v}");
    let after = run_seed(1, &small(None), Keep::Recent);
    assert!(after.violation.is_none(), "{:?}", after.violation);
    // The same replica rebuilt, from state that came in parts.
    let parts = after
        .coverage
        .iter()
        .find(|c| c.0 == "buggify: message arrived in parts");
    assert!(parts.unwrap().1 > 0, "nothing came in parts");
}
