//! proptest generates fault schedules, and shrinks a failing one to a
//! minimal schedule. Shown on a canary: the shrunk schedule is small and
//! still fails.

use paxsim::{Fault, Faults, Timed};
use paxsim_tests::Script;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

const NODES: u8 = 5;

/// Any fault of the scheduled kinds, at a time in the first 300 ms.
fn timed() -> impl Strategy<Value = Timed> {
    let node = 0..NODES;
    let fault = prop_oneof![
        node.clone().prop_map(|node| Fault::Crash { node }),
        node.clone().prop_map(|node| Fault::Restart { node }),
        (1u16..(1 << NODES) - 1).prop_map(|side| Fault::Partition { side }),
        (node.clone(), 1..NODES).prop_map(|(from, d)| Fault::OneWay {
            from,
            to: (from + d) % NODES
        }),
        Just(Fault::Heal),
        node.clone().prop_map(|node| Fault::Slow { node }),
        node.prop_map(|node| Fault::Fast { node }),
    ];
    (0u64..300_000, fault).prop_map(|(at_us, fault)| Timed { at_us, fault })
}

fn schedule() -> impl Strategy<Value = Vec<Timed>> {
    proptest::collection::vec(timed(), 0..16).prop_map(|mut v| {
        v.sort_by_key(|t| t.at_us);
        v
    })
}

fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

fn script(bug: Option<&str>, faults: Vec<Timed>) -> Script {
    let mut s = Script::new().nodes(NODES).faults(Faults::NONE);
    if let Some(b) = bug {
        s = s.bug(b);
    }
    s.faults = faults;
    s
}

#[test]
fn correct_protocol_survives_generated_schedules() {
    let mut runner = runner(paxsim_tests::seeds(10_000).min(100_000) as u32 / 20);
    let result = runner.run(&(0u64..1_000_000, schedule()), |(seed, faults)| {
        let r = script(None, faults).run(seed);
        prop_assert!(r.violation.is_none(), "{}", r.violation.unwrap());
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn a_failing_schedule_shrinks_to_a_small_one_that_still_fails() {
    let bug = "ignore-promised-values";
    // A seed where the canary survives without faults: any failure proptest
    // finds is due to the schedule, so the shrunk schedule cannot be empty.
    let seed = (0..1000)
        .find(|&s| script(Some(bug), vec![]).run(s).violation.is_none())
        .unwrap();

    let mut runner = runner(2_000);
    let result = runner.run(&schedule(), |faults| {
        let r = script(Some(bug), faults).run(seed);
        match r.violation {
            None => Ok(()),
            Some(v) => Err(TestCaseError::fail(v.to_string())),
        }
    });
    let Err(TestError::Fail(why, minimal)) = result else {
        panic!("proptest found no failing schedule for the {bug} canary: {result:?}");
    };
    println!("shrunk to {} faults: {minimal:?}\n  {why}", minimal.len());
    assert!(!minimal.is_empty());
    assert!(minimal.len() <= 3, "not shrunk: {minimal:?}");
    let again = script(Some(bug), minimal.clone()).run(seed);
    assert!(
        again.violation.is_some(),
        "the shrunk schedule no longer fails"
    );
}
