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

#[test]
fn s5_a_ballot_with_two_values_a_foreign_owner_or_a_restarted_owner() {
    let mut o = Observer::new(3);
    o.on_propose(1, 10);
    o.on_propose(1, 11);
    let accept = |ballot, value| Msg::Accept { ballot, value };
    // Received: the first value of a ballot sticks.
    o.on_receive(0, 1, 0, accept(b(1, 1), 10)).unwrap();
    o.on_receive(1, 1, 2, accept(b(1, 1), 10)).unwrap();
    o.on_receive(1, 1, 2, accept(b(2, 1), 11)).unwrap();
    let err = o.on_receive(2, 1, 0, accept(b(1, 1), 11)).unwrap_err();
    assert_eq!(err.invariant, Invariant::S5);
    let err = o.on_send(2, 0, 2, accept(b(3, 1), 10)).unwrap_err();
    assert_eq!(err.invariant, Invariant::S5, "n0 sent in n1's ballot");
    // Sent: a restarted proposer must not use a ballot again, not even in
    // a Prepare; its previous life may have sent Accepts in it.
    let mut o = Observer::new(3);
    o.on_send(0, 1, 0, Msg::Prepare { ballot: b(1, 1) })
        .unwrap();
    o.on_send(0, 1, 2, Msg::Prepare { ballot: b(1, 1) })
        .unwrap();
    assert!(o
        .on_send(0, 0, 2, Msg::Prepare { ballot: b(1, 1) })
        .is_err());
    o.on_crash(1);
    o.on_restart(1);
    let err = o
        .on_send(9, 1, 0, Msg::Prepare { ballot: b(1, 1) })
        .unwrap_err();
    assert_eq!(err.invariant, Invariant::S5);
    o.on_send(9, 1, 0, Msg::Prepare { ballot: b(2, 1) })
        .unwrap();
}

#[test]
fn l1_a_proposer_that_never_reports_its_decision() {
    let mut o = Observer::new(3);
    o.on_propose(0, 10);
    for n in 0..2 {
        accepted(&mut o, n, b(1, 0), 10).unwrap();
    }
    for n in 0..3 {
        o.on_learned(5, n, 10).unwrap();
    }
    assert!(o.unlearned(0..3).is_empty());
    assert_eq!(o.undecided(0..2), vec![0, 1]);
    o.on_decided(6, 0, 10).unwrap();
    assert_eq!(o.undecided(0..2), vec![1]);
    // A restarted proposer owes its client a new answer.
    o.on_crash(0);
    assert_eq!(o.undecided(0..1), vec![0]);
}

#[test]
fn s4_a_decision_no_client_asked_for() {
    let mut o = Observer::new(3);
    o.on_propose(0, 10);
    for n in 0..2 {
        accepted(&mut o, n, b(1, 0), 10).unwrap();
    }
    o.on_decided(5, 0, 10).unwrap();
    let err = o.on_decided(5, 2, 10).unwrap_err();
    assert_eq!(err.invariant, Invariant::S4, "n2 runs no proposal");
}

#[test]
fn d1_flags_a_message_that_reveals_a_write_not_yet_durable() {
    assert!(crate::check_disclosure(5, 1, 2, 3, 3, || "Promise").is_ok());
    assert!(crate::check_disclosure(5, 1, 2, 0, 0, || "Query").is_ok());
    let v = crate::check_disclosure(5, 1, 2, 4, 3, || "Promise(1.1)").unwrap_err();
    assert_eq!(v.invariant, Invariant::D1);
    assert!(
        v.detail
            .contains("n1 sent Promise(1.1) to n2, revealing write #4"),
        "{v}"
    );
}
