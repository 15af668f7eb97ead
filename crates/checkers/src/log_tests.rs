//! Each log checker catches the violation it exists for.

use super::*;

fn b(round: u32, node: NodeId) -> Ballot {
    Ballot { round, node }
}

fn accept(
    o: &mut LogObserver,
    node: NodeId,
    ballot: Ballot,
    slot: Slot,
    e: u64,
) -> Result<(), Violation> {
    o.on_accept_write(node, ballot, slot, e);
    o.on_accepted(0, node, ballot, slot)
}

#[test]
fn p1_two_entries_chosen_in_one_slot() {
    let mut o = LogObserver::new(3);
    accept(&mut o, 0, b(1, 0), 5, 7).unwrap();
    accept(&mut o, 1, b(1, 0), 5, 7).unwrap();
    assert_eq!(o.chosen(5), Some(7));
    accept(&mut o, 1, b(2, 1), 5, 9).unwrap();
    let err = accept(&mut o, 2, b(2, 1), 5, 9).unwrap_err();
    assert_eq!(err.invariant, Invariant::P1);
    // The same entry chosen again in a higher ballot is fine.
    let mut o = LogObserver::new(3);
    for n in 0..2 {
        accept(&mut o, n, b(1, 0), 0, 7).unwrap();
    }
    for n in 1..3 {
        accept(&mut o, n, b(2, 1), 0, 7).unwrap();
    }
}

#[test]
fn p2_applying_an_unchosen_or_different_entry() {
    let mut o = LogObserver::new(3);
    let err = o.on_apply(0, 0, 0, 7, true).unwrap_err();
    assert_eq!(err.invariant, Invariant::P2, "nothing chose slot 0");
    let mut o = LogObserver::new(3);
    accept(&mut o, 0, b(1, 0), 0, 7).unwrap();
    accept(&mut o, 1, b(1, 0), 0, 7).unwrap();
    assert_eq!(
        o.on_apply(0, 2, 0, 8, true).unwrap_err().invariant,
        Invariant::P2
    );
    o.on_apply(0, 1, 0, 7, true).unwrap();
    let mut o2 = LogObserver::new(3);
    accept(&mut o2, 0, b(1, 0), 0, 7).unwrap();
    accept(&mut o2, 1, b(1, 0), 0, 7).unwrap();
    assert_eq!(
        o2.on_apply(0, 2, 0, 7, false).unwrap_err().invariant,
        Invariant::P2
    );
}

#[test]
fn p3_a_gap_in_a_replicas_applied_log() {
    let mut o = LogObserver::new(3);
    for s in 0..3 {
        accept(&mut o, 0, b(1, 0), s, s).unwrap();
        accept(&mut o, 1, b(1, 0), s, s).unwrap();
    }
    o.on_apply(0, 0, 0, 0, true).unwrap();
    assert_eq!(
        o.on_apply(0, 0, 2, 2, true).unwrap_err().invariant,
        Invariant::P3
    );
    // After a snapshot install the next slot is the snapshot's end.
    o.on_install(1, 2);
    o.on_apply(0, 1, 2, 2, true).unwrap();
}

#[test]
fn p4_two_leaders_in_one_ballot() {
    let mut o = LogObserver::new(3);
    o.on_elected(0, 1, b(3, 1)).unwrap();
    assert_eq!(
        o.on_elected(0, 1, b(3, 1)).unwrap_err().invariant,
        Invariant::P4
    );
    assert_eq!(
        o.on_elected(0, 2, b(4, 1)).unwrap_err().invariant,
        Invariant::P4
    );
}

#[test]
fn p5_promises_go_backwards_unless_the_disk_was_lost() {
    let mut o = LogObserver::new(3);
    o.on_promise(0, 0, b(5, 1)).unwrap();
    assert_eq!(
        o.on_promise(0, 0, b(4, 2)).unwrap_err().invariant,
        Invariant::P5
    );
    o.on_accept_write(0, b(3, 2), 0, 1);
    assert_eq!(
        o.on_accepted(0, 0, b(3, 2), 0).unwrap_err().invariant,
        Invariant::P5
    );
    o.on_disk_lost(0);
    o.on_promise(0, 0, b(4, 2)).unwrap();
}

/// Issue 21: a slot carries a batch. Client 2's Acquire (token 2), a tick
/// that ends client 2's session, then client 4's Acquire (token 3), all in
/// slot 106: two legitimate grants of one lock in one slot, told apart by
/// their place in the batch, on every replica that applies it. A grant of
/// another token at the very same place is still a violation.
#[test]
fn k1_two_grants_of_one_lock_in_one_slots_batch_are_legal() {
    let mut o = LogObserver::new(3);
    for node in 0..3 {
        o.on_grant(0, node, 0, 2, 2, 106, 0).unwrap();
        o.on_grant(0, node, 0, 4, 3, 106, 2).unwrap();
    }
    let v = o.on_grant(0, 1, 0, 5, 4, 106, 2).unwrap_err();
    assert_eq!(v.invariant, Invariant::K1);
    assert!(v.detail.contains("slot 106 #2"), "{}", v.detail);
    // Order within a slot counts: a lower token later in the same batch.
    let v = o.on_grant(0, 0, 0, 6, 1, 106, 3).unwrap_err();
    assert_eq!(v.invariant, Invariant::K1);
}

#[test]
fn k1_fencing_tokens_go_backwards_or_are_shared() {
    let mut o = LogObserver::new(3);
    o.on_grant(0, 0, 1, 10, 1, 5, 0).unwrap();
    o.on_grant(0, 1, 1, 10, 1, 5, 0).unwrap(); // another replica, same slot
    o.on_grant(0, 0, 1, 10, 1, 6, 0).unwrap(); // re-acquire by the holder
    assert_eq!(
        o.on_grant(0, 0, 1, 11, 1, 9, 0).unwrap_err().invariant,
        Invariant::K1
    );
    assert_eq!(
        o.on_grant(0, 2, 1, 11, 2, 5, 0).unwrap_err().invariant,
        Invariant::K1
    );
    o.on_grant(0, 0, 1, 11, 2, 9, 0).unwrap();
    assert_eq!(
        o.on_grant(0, 0, 1, 12, 2, 12, 0).unwrap_err().invariant,
        Invariant::K1
    );
}

#[test]
fn k2_a_command_executed_at_two_slots() {
    let mut o = LogObserver::new(3);
    o.on_executed(0, 0, 4, 1, 10, 0).unwrap();
    o.on_executed(0, 1, 4, 1, 10, 0).unwrap();
    // The same slot, another place in its batch: a second execution.
    assert_eq!(
        o.on_executed(0, 1, 4, 1, 10, 1).unwrap_err().invariant,
        Invariant::K2
    );
    assert_eq!(
        o.on_executed(0, 2, 4, 1, 12, 0).unwrap_err().invariant,
        Invariant::K2
    );
}

#[test]
fn k1_a_lock_granted_while_another_client_holds_it() {
    let mut o = LogObserver::new(3);
    assert!(o.service_turn(0, 1));
    o.on_session(1, Some(1_000));
    o.on_session(2, Some(1_000));
    o.on_exclusive_grant(0, 0, 7, 1, 1, 1).unwrap();
    // Another replica reaching slot 1 later does not feed the model twice,
    // nor does the same replica replaying it after a restart.
    assert!(!o.service_turn(1, 1));
    o.on_restart(0);
    assert!(!o.service_turn(0, 1));
    assert!(o.service_turn(0, 2));
    let err = o.on_exclusive_grant(0, 0, 7, 2, 2, 2).unwrap_err();
    assert_eq!(err.invariant, Invariant::K1);
    // After the holder's session expires on a tick, the grant is fine.
    let mut o = LogObserver::new(3);
    o.on_session(1, Some(1_000));
    o.on_exclusive_grant(0, 0, 7, 1, 1, 1).unwrap();
    o.on_tick(1_000);
    assert!(
        o.on_exclusive_grant(0, 0, 7, 2, 2, 2).is_err(),
        "expiry 1000 is still live at 1000"
    );
    let mut o = LogObserver::new(3);
    o.on_session(1, Some(1_000));
    o.on_session(2, Some(5_000));
    o.on_exclusive_grant(0, 0, 7, 1, 1, 1).unwrap();
    o.on_tick(1_001);
    o.on_exclusive_grant(0, 0, 7, 2, 2, 2).unwrap();
    // And after a release (client 1 opened a new session meanwhile).
    o.on_release(7, 2, 2);
    o.on_session(1, Some(6_000));
    o.on_exclusive_grant(0, 0, 7, 1, 3, 3).unwrap();
}

#[test]
fn k1_a_lock_granted_to_a_client_without_a_live_session() {
    // Never opened.
    let mut o = LogObserver::new(3);
    let err = o.on_exclusive_grant(0, 0, 7, 1, 1, 1).unwrap_err();
    assert_eq!(err.invariant, Invariant::K1);
    assert!(err.detail.contains("no live session"), "{}", err.detail);
    // Expired on a tick, in the checker's own model.
    let mut o = LogObserver::new(3);
    o.on_session(1, Some(1_000));
    o.on_exclusive_grant(0, 0, 7, 1, 1, 1).unwrap();
    o.on_tick(1_001);
    let err = o.on_exclusive_grant(0, 0, 8, 1, 1, 2).unwrap_err();
    assert_eq!(err.invariant, Invariant::K1);
    // Closed.
    let mut o = LogObserver::new(3);
    o.on_session(1, Some(1_000));
    o.on_session(1, None);
    assert!(o.on_exclusive_grant(0, 0, 7, 1, 1, 1).is_err());
}

#[test]
fn p6_a_ballot_with_two_entries_for_one_slot() {
    let mut o = LogObserver::new(3);
    o.on_accept_received(0, 1, 0, b(2, 1), 5, 7).unwrap();
    o.on_accept_received(1, 1, 2, b(2, 1), 5, 7).unwrap();
    // Another slot in the same ballot, and the same slot in another ballot.
    o.on_accept_received(1, 1, 2, b(2, 1), 6, 9).unwrap();
    o.on_accept_received(1, 2, 2, b(3, 2), 5, 9).unwrap();
    let err = o.on_accept_received(2, 1, 0, b(2, 1), 5, 8).unwrap_err();
    assert_eq!(err.invariant, Invariant::P6);
}

#[test]
fn p6_a_restarted_replica_reusing_a_ballot() {
    let mut o = LogObserver::new(3);
    o.on_ballot_sent(0, 1, b(2, 1)).unwrap();
    o.on_ballot_sent(1, 1, b(2, 1)).unwrap(); // the same incarnation, again
    assert!(o.on_ballot_sent(1, 0, b(2, 1)).is_err(), "not its ballot");
    o.on_restart(1);
    let err = o.on_ballot_sent(5, 1, b(2, 1)).unwrap_err();
    assert_eq!(err.invariant, Invariant::P6);
    o.on_ballot_sent(5, 1, b(3, 1)).unwrap();
    // A replica whose disk was lost cannot know which ballots it used.
    o.on_disk_lost(1);
    o.on_ballot_sent(9, 1, b(3, 1)).unwrap();
}

/// Issue 20: a write path may fold an acceptance into a compacted file of
/// the acceptor's state, which keeps only the highest acceptance per slot
/// and nothing below its snapshot. A vote that such a file implies counts,
/// with the ballot's one entry for the slot; a vote nothing implies is P2.
#[test]
fn p2_a_vote_needs_a_record_unless_a_compacted_file_implies_it() {
    let mut o = LogObserver::new(3);
    // Nothing written: caught.
    let err = o.on_accepted(0, 0, b(1, 1), 4).unwrap_err();
    assert_eq!(err.invariant, Invariant::P2, "{err}");
    // Folded under a higher acceptance at the slot: the vote counts, for
    // the entry ballot 1.1 carried to slot 4.
    o.on_accept_received(0, 1, 0, b(1, 1), 4, 7).unwrap();
    o.on_accept_write(0, b(2, 2), 4, 7);
    o.on_accepted(0, 0, b(1, 1), 4).unwrap();
    accept(&mut o, 1, b(1, 1), 4, 7).unwrap();
    assert_eq!(o.chosen(4), Some(7), "the folded vote counted");
    // A higher acceptance at another slot implies nothing here.
    let err = o.on_accepted(0, 0, b(1, 1), 5).unwrap_err();
    assert_eq!(err.invariant, Invariant::P2, "{err}");
    // Below the acceptor's snapshot the slot is decided there.
    o.on_accept_received(0, 1, 0, b(1, 1), 6, 8).unwrap();
    let err = o.on_accepted(0, 0, b(1, 1), 6).unwrap_err();
    assert_eq!(err.invariant, Invariant::P2, "{err}");
    o.on_snapshot_write(0, 10);
    o.on_accepted(0, 0, b(1, 1), 6).unwrap();
}
