//! Hand-written situations, each named for what happens in it.

use checkers::Invariant;
use paxsim::scenarios::basic::value_of;
use paxsim::Faults;
use paxsim_tests::{first_learn, learned, reached, Script};

#[test]
fn basic_calm_cluster_r5_chooses_one_proposed_value_and_everyone_learns_it() {
    for seed in 0..50 {
        let r = Script::new().run_basic(seed);
        assert!(r.violation.is_none(), "seed {seed}: {:?}", r.violation);
        let l = learned(&r);
        assert_eq!(l.len(), 1, "seed {seed}: learned {l:?}");
        assert!((0..3).map(value_of).any(|v| v == l[0]));
    }
}

#[test]
fn basic_r3_whole_cluster_crashes_after_the_choice_and_still_agrees_after_restart() {
    for seed in 0..50 {
        let r = Script::new()
            .nodes(3)
            .crash(300, 0)
            .crash(300, 1)
            .crash(300, 2)
            .restart(310, 0)
            .restart(310, 1)
            .restart(310, 2)
            .run(seed);
        assert!(r.violation.is_none(), "seed {seed}: {:?}", r.violation);
        assert!(reached(&r, "recovery after restart"), "seed {seed}");
    }
}

#[test]
fn basic_r5_minority_partitioned_for_the_whole_fault_phase_learns_once_healed() {
    for seed in 0..50 {
        let s = Script::new().partition(0, &[3, 4]);
        let r = s.run_basic(seed);
        assert!(r.violation.is_none(), "seed {seed}: {:?}", r.violation);
        // The minority heard nothing during the fault phase; it learns in the quiet period.
        let first_learn_n3 = first_learn(&r, Some(3)).unwrap();
        assert!(first_learn_n3 >= s.config.fault_phase_us, "seed {seed}");
    }
}

/// Issue 21: a message that reached a paused process's host waits in its
/// socket buffer and is handed over at the resume, even if a partition
/// began meanwhile (it crossed before the cut); one that would cross after
/// the cut is dropped.
#[test]
fn a_paused_process_receives_at_resume_what_reached_it_before_a_cut() {
    use paxsim::trace::{DropReason, Kind};
    // n1 is stopped from 0 to 30 ms and cut off from 10 ms to the end of
    // the fault phase. The proposers' first messages reach it before 10 ms.
    let s = Script::new().nodes(3).pause(0, 1, 30).partition(10, &[1]);
    let mut handed_over = 0;
    for seed in 0..20 {
        let r = s.run_basic(seed);
        assert!(r.violation.is_none(), "seed {seed}: {:?}", r.violation);
        for e in r.trace.as_ref().unwrap() {
            let cut = (10_000..s.config.fault_phase_us).contains(&e.at_us);
            match &e.kind {
                Kind::Receive { link, .. } if e.node == Some(1) && link.from != 1 && cut => {
                    // Only at the resume, with what crossed before the cut.
                    assert_eq!(e.at_us, 30_000, "seed {seed}: n1 received through the cut");
                    handed_over += 1;
                }
                Kind::Drop {
                    link,
                    reason: DropReason::Partition,
                    ..
                } if link.to == 1 => {
                    assert!(e.at_us >= 10_000, "seed {seed}: dropped before the cut")
                }
                _ => {}
            }
        }
    }
    assert!(handed_over > 0, "no message waited for the resume");
}

#[test]
fn basic_r5_majority_partitioned_away_from_every_proposer_chooses_nothing_until_healed() {
    // Proposers are n0..n2; cut {n0,n1} off: n2's side {n2,n3,n4} is a majority.
    // Cut {n0,n1,n2}: the proposers' side is a majority. Cut every node alone:
    // nobody can choose anything until the quiet period.
    let mut s = Script::new();
    for n in 0..5 {
        s = s.partition(0, &[n]);
    }
    let r = s.run_basic(1);
    assert!(r.violation.is_none(), "{:?}", r.violation);
    let first = first_learn(&r, None).unwrap();
    assert!(first >= s.config.fault_phase_us);
}

#[test]
fn basic_r5_liveness_violation_is_reported_when_messages_never_arrive() {
    // With every message lost and the quiet period too short to recover,
    // nobody learns: L1 must fire (the liveness checker can fail).
    let mut s = Script::new().faults(Faults {
        loss_permille: 1000,
        ..Faults::NONE
    });
    s.config.liveness_us = 1_000;
    let r = s.run(3);
    let v = r.violation.expect("L1 should fire");
    assert_eq!(v.invariant, Invariant::L1);
    assert!(v.detail.contains("had not learned"), "{v}");
}

#[test]
fn assertion_inside_a_node_is_reported_as_a_violation_not_a_crash_of_the_harness() {
    // Under the shared-ballots canary a learner can be told two different
    // chosen values, which the core asserts against. Find a seed where a node
    // assertion or a checker fires first; either way the harness reports it.
    let cfg = {
        let mut c = paxsim::RunConfig::default();
        c.enable_bug("shared-ballots").unwrap();
        c
    };
    let r = paxsim::campaign::first_failure(&cfg, 0, 1000).expect("caught");
    assert!(r.violation.is_some());
}

/// Issue 21, section 2's canary: the classic lease bug of a pause. A
/// leader is stopped just after a heartbeat; its followers' grants reach
/// its host while it sleeps, it is cut off, and a new leader is elected
/// once the grants run out. It wakes and reads those acknowledgements:
/// timed from their arrival (`lease-from-ack`), its lease runs far past
/// the grants, and P7 says so at the resume. The correct leader times it
/// from the heartbeat's send, long over by then. The acknowledgements land
/// within a millisecond of the heartbeat, so 1 stop in 90 falls between;
/// with the old pause (the link judged at the resume, the acknowledgements
/// dropped) none did, and this test failed.
#[test]
fn a_leader_waking_from_a_pause_counts_no_lease_from_the_grants_it_slept_through() {
    use paxsim::RunConfig;
    // n`node` stops at `at` ms for 300 ms and is cut off 10 ms later.
    let script = |bug: Option<&str>, node, at| {
        let mut s = Script::new();
        s.config = RunConfig {
            faults: Some(Faults::NONE),
            buggify: false,
            ..RunConfig::for_scenario("kv")
        };
        let mut s = s.nodes(3).pause(at, node, 300).partition(at + 10, &[node]);
        if let Some(b) = bug {
            s = s.bug(b);
        }
        s
    };
    let mut caught = 0;
    // Whichever node leads, stopped at any point of a heartbeat interval
    // (30 ms): some stop it between a heartbeat and its acknowledgements.
    for node in 0..3 {
        for at in 600..630 {
            let r = script(None, node, at).run(1);
            assert!(r.violation.is_none(), "n{node} at {at}: {:?}", r.violation);
            let r = script(Some("lease-from-ack"), node, at).run(1);
            if let Some(v) = r.violation {
                assert_eq!(v.invariant, checkers::Invariant::P7, "{v}");
                assert!(v.at_us >= (at + 300) * 1000, "before the resume: {v}");
                caught += 1;
            }
        }
    }
    println!("caught in {caught} of 90 runs");
    assert!(
        caught > 0,
        "the paused leader's stale grants went unnoticed"
    );
}
