//! Every checker catches a real violation, and stays quiet on a correct run.

use super::*;

fn b(round: u32, node: NodeId) -> Ballot {
    Ballot { round, node }
}

fn accepted(o: &mut Observer, from: NodeId, ballot: Ballot, value: Value) -> Result<(), Violation> {
    o.on_send(0, from, 0, Msg::Accepted { ballot, value })
}

#[test]
fn a_majority_in_one_ballot_chooses_and_learners_may_learn_it() {
    let mut o = Observer::new(3);
    o.on_propose(0, 10);
    accepted(&mut o, 0, b(1, 0), 10).unwrap();
    assert_eq!(o.chosen(), None);
    assert_eq!(o.on_learned(5, 1, 10).unwrap_err().invariant, Invariant::S3);
    accepted(&mut o, 1, b(1, 0), 10).unwrap();
    assert_eq!(o.chosen(), Some(10));
    o.on_learned(6, 1, 10).unwrap();
    o.on_decided(6, 0, 10).unwrap();
    assert_eq!(o.unlearned(0..3), vec![0, 2]);
}

#[test]
fn acceptances_in_different_ballots_do_not_add_up() {
    let mut o = Observer::new(3);
    o.on_propose(0, 10);
    accepted(&mut o, 0, b(1, 0), 10).unwrap();
    accepted(&mut o, 1, b(2, 0), 10).unwrap();
    assert_eq!(o.chosen(), None);
}

#[test]
fn duplicate_accepted_from_one_acceptor_does_not_count_twice() {
    let mut o = Observer::new(3);
    o.on_propose(0, 10);
    accepted(&mut o, 0, b(1, 0), 10).unwrap();
    accepted(&mut o, 0, b(1, 0), 10).unwrap();
    assert_eq!(o.chosen(), None);
}

#[test]
fn s1_catches_an_unproposed_value_in_an_accept_and_in_a_choice() {
    let mut o = Observer::new(3);
    let e = o
        .on_send(
            1,
            0,
            1,
            Msg::Accept {
                ballot: b(1, 0),
                value: 99,
            },
        )
        .unwrap_err();
    assert_eq!(e.invariant, Invariant::S1);
    let mut o = Observer::new(3);
    accepted(&mut o, 0, b(1, 0), 99).unwrap();
    let e = accepted(&mut o, 1, b(1, 0), 99).unwrap_err();
    assert_eq!(e.invariant, Invariant::S1);
    assert!(e.detail.contains("never proposed"), "{e}");
}

#[test]
fn s2_catches_two_values_chosen_in_different_ballots() {
    let mut o = Observer::new(3);
    o.on_propose(0, 10);
    o.on_propose(1, 11);
    accepted(&mut o, 0, b(1, 0), 10).unwrap();
    accepted(&mut o, 1, b(1, 0), 10).unwrap();
    accepted(&mut o, 1, b(2, 1), 11).unwrap();
    let e = accepted(&mut o, 2, b(2, 1), 11).unwrap_err();
    assert_eq!(e.invariant, Invariant::S2);
    assert!(
        e.detail.contains("10 was already chosen in ballot 1.0"),
        "{e}"
    );
}

#[test]
fn s2_catches_two_values_chosen_in_one_shared_ballot() {
    let mut o = Observer::new(5);
    o.on_propose(0, 10);
    o.on_propose(1, 11);
    for a in 0..3 {
        accepted(&mut o, a, b(1, 0), 10).unwrap();
    }
    for a in 2..4 {
        accepted(&mut o, a, b(1, 0), 11).unwrap();
    }
    assert_eq!(
        accepted(&mut o, 4, b(1, 0), 11).unwrap_err().invariant,
        Invariant::S2
    );
}

#[test]
fn choosing_the_same_value_again_in_a_later_ballot_is_fine() {
    let mut o = Observer::new(3);
    o.on_propose(0, 10);
    for ballot in [b(1, 0), b(2, 1)] {
        accepted(&mut o, 0, ballot, 10).unwrap();
        accepted(&mut o, 1, ballot, 10).unwrap();
    }
    assert_eq!(o.chosen(), Some(10));
}

#[test]
fn durable_writes_count_as_acceptances() {
    let mut o = Observer::new(3);
    o.on_propose(0, 10);
    let rec = Record {
        promised: b(1, 0),
        accepted: Some((b(1, 0), 10)),
        proposer_round: 0,
    };
    o.on_durable(0, 0, rec).unwrap();
    o.on_durable(0, 1, rec).unwrap();
    assert_eq!(o.chosen(), Some(10));
}

#[test]
fn s4_catches_a_proposer_reporting_an_unchosen_value() {
    let mut o = Observer::new(3);
    o.on_propose(0, 10);
    accepted(&mut o, 0, b(1, 0), 10).unwrap();
    let e = o.on_decided(3, 0, 10).unwrap_err();
    assert_eq!(e.invariant, Invariant::S4);
    assert_eq!(e.node, Some(0));
}

#[test]
fn coverage_marks_record_the_hard_paths() {
    let mut o = Observer::new(3);
    o.on_propose(0, 10);
    o.on_propose(1, 11);
    o.on_send(
        0,
        1,
        0,
        Msg::Nack {
            ballot: b(1, 0),
            promised: b(2, 1),
        },
    )
    .unwrap();
    o.on_send(
        0,
        1,
        0,
        Msg::Accept {
            ballot: b(2, 1),
            value: 10,
        },
    )
    .unwrap();
    o.on_crash(2);
    o.on_restart(2);
    accepted(&mut o, 0, b(2, 1), 10).unwrap();
    accepted(&mut o, 1, b(2, 1), 10).unwrap();
    o.on_send(0, 0, 2, Msg::Chosen { value: 10 }).unwrap();
    o.on_learned(0, 2, 10).unwrap();
    let c = o.coverage;
    assert_eq!(c.competing_ballots, 1);
    assert_eq!(c.adopted_value, 1);
    assert_eq!(c.chosen_after_preemption, 1);
    assert_eq!(c.recovered_after_restart, 1);
    assert_eq!(c.learned_by_query, 1);
    let mut total = Coverage::default();
    total.add_run(&c);
    total.add_run(&Coverage::default());
    assert!(total.marks().iter().all(|(_, n)| *n == 1));
}

#[test]
fn a_crash_forgets_what_the_learner_knew() {
    let mut o = Observer::new(3);
    o.on_propose(0, 10);
    accepted(&mut o, 0, b(1, 0), 10).unwrap();
    accepted(&mut o, 1, b(1, 0), 10).unwrap();
    o.on_learned(0, 2, 10).unwrap();
    assert!(o.unlearned(2..3).is_empty());
    o.on_crash(2);
    assert_eq!(o.unlearned(2..3), vec![2]);
}
