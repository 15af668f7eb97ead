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

// ---- membership changes ----

/// A configuration entry's fingerprint in these tests.
const CFG: u64 = 0xC0;

/// Slots `slots` chosen with `entry` (given per slot) by `by`, in ballot 1.0.
fn choose_all(o: &mut LogObserver, by: &[NodeId], slots: &[(Slot, u64)]) {
    for &(slot, entry) in slots {
        for &n in by {
            accept(o, n, b(1, 0), slot, entry).unwrap();
        }
        assert_eq!(o.chosen(slot), Some(entry), "slot {slot}");
    }
}

fn err(r: Result<(), Violation>) -> Invariant {
    r.unwrap_err().invariant
}

/// `{0,1,2}` replaced by `{0,3,4}` at slot 0, α = 2: slots 0 and 1 are the
/// old configuration's, slot 2 on the new one's. A majority of the new
/// voters chooses slot 2; the removed voters' votes there are M2 and count
/// for nothing.
#[test]
fn m_a_change_governs_slots_from_c_plus_alpha() {
    let mut o = LogObserver::with_membership(5, 0b00111, 2);
    o.on_config_entry(CFG, 1, 0b11001);
    assert_eq!(o.config_at(1), Some(0b00111));
    assert_eq!(o.config_at(2), None, "slot 0 is not chosen yet");
    choose_all(&mut o, &[1, 2], &[(0, CFG), (1, 10)]);
    assert_eq!(o.configs_chosen, 1);
    assert_eq!(o.config_at(1), Some(0b00111));
    assert_eq!(o.config_at(2), Some(0b11001));
    assert_eq!(o.config_at(3), Some(0b11001));
    assert_eq!(o.config_at(4), None, "slot 2 is not chosen yet");
    assert_eq!(o.voters_now(), 0b11001);
    // The old majority {n1,n2}, both removed: M2, and nothing chosen.
    let e = accept(&mut o, 1, b(1, 0), 2, 11).unwrap_err();
    assert_eq!(e.invariant, Invariant::M2);
    assert!(e.detail.contains("{n0,n3,n4}"), "{}", e.detail);
    assert_eq!(err(accept(&mut o, 2, b(1, 0), 2, 11)), Invariant::M2);
    assert_eq!(o.chosen(2), None);
    // n0 alone is no majority of three; with n3 it is.
    accept(&mut o, 0, b(1, 0), 2, 11).unwrap();
    assert_eq!(o.chosen(2), None);
    accept(&mut o, 3, b(1, 0), 2, 11).unwrap();
    assert_eq!(o.chosen(2), Some(11));
    o.on_apply(0, 0, 0, CFG, true).unwrap();
    o.on_apply(0, 0, 1, 10, true).unwrap();
    o.on_apply(0, 0, 2, 11, true).unwrap();
}

/// A learner (not in the initial configuration) votes only once its
/// promotion governs the slot.
#[test]
fn m2_a_learner_votes_before_its_promotion() {
    let mut o = LogObserver::with_membership(4, 0b0111, 2);
    o.on_config_entry(CFG, 1, 0b1111);
    let e = accept(&mut o, 3, b(1, 0), 0, CFG).unwrap_err();
    assert_eq!(e.invariant, Invariant::M2, "{e}");
    choose_all(&mut o, &[0, 1], &[(0, CFG)]);
    // Chosen at slot 0, in force from slot 2: slot 1 is still {n0,n1,n2}'s.
    assert_eq!(err(accept(&mut o, 3, b(1, 0), 1, 10)), Invariant::M2);
    assert_eq!(o.config_at(1), Some(0b0111));
    assert_eq!(o.voters_now(), 0b1111, "slot 2's configuration is known");
    choose_all(&mut o, &[0, 1], &[(1, 10)]);
    accept(&mut o, 3, b(1, 0), 2, 11).unwrap();
    // Two of four voters are no majority; three are.
    accept(&mut o, 0, b(1, 0), 2, 11).unwrap();
    assert_eq!(o.chosen(2), None);
    accept(&mut o, 1, b(1, 0), 2, 11).unwrap();
    assert_eq!(o.chosen(2), Some(11));
}

/// Promises: a removed node is a voter of the slots before its removal
/// takes effect; a learner only once its promotion is chosen.
#[test]
fn m2_promises_by_removed_nodes_and_learners() {
    // {0,1,2} -> {0,1,3} chosen at slot 1, α = 3: n2 votes in slots 0..4.
    let mut o = LogObserver::with_membership(5, 0b00111, 3);
    o.on_config_entry(CFG, 1, 0b01011);
    o.on_prepare_sent(b(1, 0), 0);
    o.on_prepare_sent(b(2, 0), 3);
    o.on_prepare_sent(b(3, 1), 4);
    o.on_prepare_sent(b(3, 1), 0); // one `from` per ballot: the first
    o.on_prepare_sent(b(4, 1), 9);
    // Before the change is chosen: n3 is a learner, n4 one for ever.
    let e = o.on_promise(0, 3, b(1, 0)).unwrap_err();
    assert_eq!(e.invariant, Invariant::M2, "{e}");
    assert_eq!(err(o.on_promise(0, 4, b(1, 0))), Invariant::M2);
    o.on_promise(0, 2, b(1, 0)).unwrap();
    // Not removed yet, as far as anyone knows.
    o.clone().on_promise(0, 2, b(4, 1)).unwrap();
    // Chosen at slot 1 but not yet placed (slot 0 undecided): a removal
    // is judged only once the slots before it are decided.
    choose_all(&mut o, &[0, 1], &[(1, CFG)]);
    assert_eq!(o.configs_chosen, 1);
    o.clone().on_promise(0, 2, b(3, 1)).unwrap();
    choose_all(&mut o, &[0, 1], &[(0, 1)]);
    // n2's removal takes effect at slot 4: fine from slot 3, not from 4.
    let mut o2 = o.clone();
    o2.on_promise(0, 2, b(2, 0)).unwrap();
    let e = o2.on_promise(0, 2, b(3, 1)).unwrap_err();
    assert_eq!(e.invariant, Invariant::M2, "{e}");
    assert!(e.detail.contains("from slot 4"), "{}", e.detail);
    // n3's promotion is chosen (the change not in force yet): it may
    // promise.
    o.on_promise(0, 3, b(2, 0)).unwrap();
    o.on_promise(0, 3, b(4, 1)).unwrap();
    // n4 never was a voter.
    assert_eq!(err(o.on_promise(0, 4, b(4, 1))), Invariant::M2);
    assert_eq!(err(o.clone().on_promise(0, 2, b(4, 1))), Invariant::M2);
    // n2 back in at slot 5: a voter from slot 8 on, so from 9 is fine.
    o.on_config_entry(CFG + 1, 2, 0b00111);
    let log = [(0, 1), (2, 2), (3, 3), (4, 4), (5, CFG + 1)];
    choose_all(&mut o, &[0, 1], &log);
    assert_eq!(o.configs_chosen, 2);
    o.on_promise(0, 2, b(4, 1)).unwrap();
    // A ballot whose Prepare the checker was not told of is not judged.
    o.on_promise(0, 4, b(5, 4)).unwrap();
}

/// Votes at a slot whose configuration is not known yet are judged, in the
/// order they came, when the slot that decides it is chosen.
#[test]
fn m_deferred_votes_are_judged_once_the_configuration_is_known() {
    let setup = || {
        // {0,1,2} -> {0,3,4} at slot 0, α = 2.
        let mut o = LogObserver::with_membership(5, 0b00111, 2);
        o.on_config_entry(CFG, 1, 0b11001);
        o
    };
    // The new majority {n3,n4} at slot 2, before slot 0 is chosen.
    let mut o = setup();
    accept(&mut o, 3, b(1, 0), 2, 11).unwrap();
    accept(&mut o, 4, b(1, 0), 2, 11).unwrap();
    assert_eq!(o.chosen(2), None);
    // And slot 1 chosen out of order, before slot 0 too.
    choose_all(&mut o, &[1, 2], &[(1, 10)]);
    assert_eq!(o.config_at(2), None);
    accept(&mut o, 0, b(1, 0), 0, CFG).unwrap();
    accept(&mut o, 1, b(1, 0), 0, CFG).unwrap();
    assert_eq!(o.chosen(2), Some(11));
    assert_eq!(o.config_at(3), Some(0b11001));
    assert_eq!(o.config_at(4), Some(0b11001), "slot 2 chosen in turn");
    // A removed node's vote waiting there: M2 from the call that judges it,
    // and it does not count.
    let mut o = setup();
    accept(&mut o, 1, b(1, 0), 2, 11).unwrap();
    accept(&mut o, 3, b(1, 0), 2, 11).unwrap();
    accept(&mut o, 0, b(1, 0), 1, 10).unwrap();
    accept(&mut o, 2, b(1, 0), 1, 10).unwrap();
    accept(&mut o, 0, b(1, 0), 0, CFG).unwrap();
    let e = accept(&mut o, 2, b(1, 0), 0, CFG).unwrap_err();
    assert_eq!(e.invariant, Invariant::M2, "{e}");
    assert_eq!(e.node, Some(1));
    assert!(e.detail.contains("judged once"), "{}", e.detail);
    assert_eq!(o.chosen(0), Some(CFG), "the judgement left the state whole");
    assert_eq!(o.chosen(2), None, "n1's vote counts for nothing");
    // Two entries reaching a majority of the new voters, waiting: P1.
    let mut o = setup();
    accept(&mut o, 3, b(1, 0), 2, 11).unwrap();
    accept(&mut o, 4, b(1, 0), 2, 11).unwrap();
    accept(&mut o, 0, b(2, 1), 2, 12).unwrap();
    accept(&mut o, 3, b(2, 1), 2, 12).unwrap();
    choose_all(&mut o, &[1, 2], &[(1, 10)]);
    accept(&mut o, 1, b(1, 0), 0, CFG).unwrap();
    let e = accept(&mut o, 2, b(1, 0), 0, CFG).unwrap_err();
    assert_eq!(e.invariant, Invariant::P1, "{e}");
    assert_eq!(
        o.chosen(2),
        Some(11),
        "the first quorum, in the order votes came"
    );
}

#[test]
fn p1_in_membership_mode() {
    let mut o = LogObserver::with_membership(5, 0b00111, 1);
    o.on_config_entry(CFG, 1, 0b11001);
    choose_all(&mut o, &[1, 2], &[(0, CFG)]);
    choose_all(&mut o, &[0, 3], &[(1, 10)]);
    // The old voters {n1,n2}, removed: no quorum of slot 1's configuration.
    assert_eq!(err(accept(&mut o, 1, b(2, 1), 1, 12)), Invariant::M2);
    assert_eq!(err(accept(&mut o, 2, b(2, 1), 1, 12)), Invariant::M2);
    // A quorum of slot 1's own, {n0,n4}: P1.
    accept(&mut o, 0, b(2, 1), 1, 12).unwrap();
    assert_eq!(err(accept(&mut o, 4, b(2, 1), 1, 12)), Invariant::P1);
}

/// A replica applies at a slot the new configuration governs an entry that
/// only a majority of the old one voted for: quorums taken from the wrong
/// configuration. Growing {0,1,2} to {0,1,3,4,5}, the votes of n0 and n1
/// are no one's M2.
#[test]
fn m1_an_entry_decided_by_a_quorum_of_the_old_configuration() {
    let mut o = LogObserver::with_membership(6, 0b000111, 1);
    o.on_config_entry(CFG, 1, 0b111011);
    choose_all(&mut o, &[0, 1], &[(0, CFG)]);
    accept(&mut o, 0, b(1, 0), 1, 10).unwrap();
    accept(&mut o, 1, b(1, 0), 1, 10).unwrap();
    assert_eq!(o.chosen(1), None, "two of five new voters");
    o.on_apply(0, 2, 0, CFG, true).unwrap();
    let e = o.on_apply(0, 2, 1, 10, true).unwrap_err();
    assert_eq!(e.invariant, Invariant::M1, "{e}");
    assert!(e.detail.contains("{n0,n1,n2}"), "{}", e.detail);
    assert!(e.detail.contains("{n0,n1,n3,n4,n5}"), "{}", e.detail);
    // Another entry, which nothing voted for: P2 as ever.
    o.on_install(3, 1);
    assert_eq!(err(o.on_apply(0, 3, 1, 12, true)), Invariant::P2);
}

/// Votes of non-voters, reported though M2 forbids them (a driver showing
/// what a broken node would do), reaching a majority only counted with the
/// voters': M3 at the apply they led to.
#[test]
fn m3_votes_of_removed_nodes_or_learners_make_a_decision() {
    // A learner: {n0} and n3 make "two of three" of {0,1,2}.
    let mut o = LogObserver::with_membership(4, 0b0111, 1);
    accept(&mut o, 0, b(1, 0), 0, 10).unwrap();
    assert_eq!(err(accept(&mut o, 3, b(1, 0), 0, 10)), Invariant::M2);
    assert_eq!(o.chosen(0), None);
    let e = o.on_apply(0, 1, 0, 10, true).unwrap_err();
    assert_eq!(e.invariant, Invariant::M3, "{e}");
    assert!(e.detail.contains("{n3}"), "{}", e.detail);
    // A removed node: {0,1,2} -> {2,3,4} at slot 0; at slot 1, n1 (removed)
    // and n3 are a majority of neither, but count two of three.
    let mut o = LogObserver::with_membership(5, 0b00111, 1);
    o.on_config_entry(CFG, 1, 0b11100);
    choose_all(&mut o, &[0, 1], &[(0, CFG)]);
    assert_eq!(err(accept(&mut o, 1, b(1, 0), 1, 10)), Invariant::M2);
    accept(&mut o, 3, b(1, 0), 1, 10).unwrap();
    o.on_apply(0, 2, 0, CFG, true).unwrap();
    let e = o.on_apply(0, 2, 1, 10, true).unwrap_err();
    assert_eq!(e.invariant, Invariant::M3, "{e}");
    assert!(e.detail.contains("{n1}"), "{}", e.detail);
}

/// An apply at a slot whose configuration the checker does not know yet
/// (a replica that installed a snapshot) is judged once it does.
#[test]
fn m_deferred_applies_are_judged_once_the_configuration_is_known() {
    let setup = || {
        let mut o = LogObserver::with_membership(5, 0b00111, 1);
        o.on_config_entry(CFG, 1, 0b11001);
        o.on_install(4, 1);
        accept(&mut o, 3, b(1, 0), 1, 11).unwrap();
        accept(&mut o, 4, b(1, 0), 1, 11).unwrap();
        accept(&mut o, 0, b(1, 0), 0, CFG).unwrap();
        o
    };
    let mut o = setup();
    o.on_apply(0, 4, 1, 11, true).unwrap();
    accept(&mut o, 1, b(1, 0), 0, CFG).unwrap();
    assert_eq!(o.chosen(1), Some(11));
    // Applied another entry: P2, from the call that chose slot 0.
    let mut o = setup();
    o.on_apply(0, 4, 1, 12, true).unwrap();
    let e = accept(&mut o, 1, b(1, 0), 0, CFG).unwrap_err();
    assert_eq!(e.invariant, Invariant::P2, "{e}");
    assert!(e.detail.contains("judged once"), "{}", e.detail);
    // P3 is judged at once all the same.
    let mut o = setup();
    o.on_install(3, 1);
    o.on_apply(0, 4, 1, 12, true).unwrap();
    assert_eq!(err(o.on_apply(0, 3, 1, 11, true)), Invariant::P3);
}

/// Fixed voters ignore what only membership mode uses.
#[test]
fn m_fixed_voters_ignore_configurations() {
    let mut o = LogObserver::new(3);
    o.on_config_entry(CFG, 1, 0b001);
    o.on_prepare_sent(b(1, 0), 5);
    choose_all(&mut o, &[0, 1], &[(0, CFG), (1, 10)]);
    accept(&mut o, 1, b(1, 0), 2, 11).unwrap();
    accept(&mut o, 2, b(1, 0), 2, 11).unwrap();
    assert_eq!(o.chosen(2), Some(11));
    assert_eq!(o.configs_chosen, 0);
    assert_eq!(o.config_at(99), Some(0b111));
    assert_eq!(o.voters_now(), 0b111);
    o.on_promise(0, 2, b(1, 0)).unwrap();
}
