//! Handler-level tests: one input at a time, asserting the exact effects.

use super::*;

fn cfg(n: u8, id: NodeId) -> Config {
    Config {
        n,
        id,
        proposer: true,
        timing: Timing::default(),
        bugs: Bugs::default(),
    }
}

fn b(round: u32, node: NodeId) -> Ballot {
    Ballot { round, node }
}

fn step(node: &mut Node, input: Input) -> Vec<Output> {
    let mut out = Vec::new();
    let now = node.now;
    node.handle(now, input, &mut out);
    out
}

fn recv(node: &mut Node, from: NodeId, msg: Msg) -> Vec<Output> {
    step(node, Input::Receive { from, msg })
}

fn sends(out: &[Output]) -> Vec<(NodeId, Msg)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to, msg, .. } => Some((*to, *msg)),
            _ => None,
        })
        .collect()
}

fn persists(out: &[Output]) -> Vec<(u64, Record)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Persist { seq, record } => Some((*seq, *record)),
            _ => None,
        })
        .collect()
}

/// Completes every sync in `out`, returning what that released.
fn sync_all(node: &mut Node, out: &[Output]) -> Vec<Output> {
    let upto = out
        .iter()
        .filter_map(|o| match o {
            Output::Sync { upto } => Some(*upto),
            _ => None,
        })
        .max()
        .expect("a sync was requested");
    step(node, Input::Synced { upto })
}

#[test]
fn ballots_order_by_round_then_node() {
    assert!(b(1, 4) < b(2, 0));
    assert!(b(2, 0) < b(2, 1));
    assert!(Ballot::ZERO < b(1, 0));
}

#[test]
fn prepare_is_promised_only_after_the_promise_is_durable() {
    let mut a = Node::new(cfg(3, 0));
    let out = recv(&mut a, 1, Msg::Prepare { ballot: b(1, 1) });
    assert_eq!(sends(&out), vec![], "no reply before the sync");
    assert_eq!(persists(&out).len(), 1);
    assert_eq!(persists(&out)[0].1.promised, b(1, 1));
    let released = sync_all(&mut a, &out);
    assert_eq!(
        sends(&released),
        vec![(
            1,
            Msg::Promise {
                ballot: b(1, 1),
                accepted: None
            }
        )]
    );
}

#[test]
fn stale_prepare_is_nacked_with_the_promise() {
    let mut a = Node::new(cfg(3, 0));
    let out = recv(&mut a, 1, Msg::Prepare { ballot: b(3, 1) });
    sync_all(&mut a, &out);
    let out = recv(&mut a, 2, Msg::Prepare { ballot: b(2, 2) });
    assert_eq!(
        sends(&out),
        vec![(
            2,
            Msg::Nack {
                ballot: b(2, 2),
                promised: b(3, 1)
            }
        )]
    );
    assert!(persists(&out).is_empty(), "a rejection writes nothing");
}

#[test]
fn duplicate_prepare_at_the_promised_ballot_is_answered_without_a_new_write() {
    let mut a = Node::new(cfg(3, 0));
    let out = recv(&mut a, 1, Msg::Prepare { ballot: b(1, 1) });
    sync_all(&mut a, &out);
    let out = recv(&mut a, 1, Msg::Prepare { ballot: b(1, 1) });
    assert!(persists(&out).is_empty());
    assert_eq!(sends(&out).len(), 1, "the promise is repeated");
}

#[test]
fn duplicate_prepare_before_the_sync_waits_for_it() {
    let mut a = Node::new(cfg(3, 0));
    let first = recv(&mut a, 1, Msg::Prepare { ballot: b(1, 1) });
    let dup = recv(&mut a, 1, Msg::Prepare { ballot: b(1, 1) });
    assert!(sends(&dup).is_empty(), "still not durable");
    let released = sync_all(&mut a, &first);
    assert_eq!(sends(&released).len(), 2);
}

#[test]
fn accept_at_or_above_the_promise_is_accepted_and_announced_to_all() {
    let mut a = Node::new(cfg(3, 0));
    let out = recv(&mut a, 1, Msg::Prepare { ballot: b(1, 1) });
    sync_all(&mut a, &out);
    let out = recv(
        &mut a,
        1,
        Msg::Accept {
            ballot: b(1, 1),
            value: 7,
        },
    );
    assert!(sends(&out).is_empty());
    assert_eq!(persists(&out)[0].1.accepted, Some((b(1, 1), 7)));
    let released = sync_all(&mut a, &out);
    let to: Vec<NodeId> = sends(&released).iter().map(|(t, _)| *t).collect();
    assert_eq!(to, vec![0, 1, 2]);
    // An Accept above the promise also raises the promise.
    let out = recv(
        &mut a,
        2,
        Msg::Accept {
            ballot: b(2, 2),
            value: 9,
        },
    );
    assert_eq!(persists(&out)[0].1.promised, b(2, 2));
}

#[test]
fn accept_below_the_promise_is_rejected() {
    let mut a = Node::new(cfg(3, 0));
    let out = recv(&mut a, 2, Msg::Prepare { ballot: b(2, 2) });
    sync_all(&mut a, &out);
    let out = recv(
        &mut a,
        1,
        Msg::Accept {
            ballot: b(1, 1),
            value: 7,
        },
    );
    assert_eq!(
        sends(&out),
        vec![(
            1,
            Msg::Nack {
                ballot: b(1, 1),
                promised: b(2, 2)
            }
        )]
    );
    assert_eq!(a.record().accepted, None);
}

#[test]
fn canary_accept_below_promise_accepts_it() {
    let mut c = cfg(3, 0);
    c.bugs.accept_below_promise = true;
    let mut a = Node::new(c);
    let out = recv(&mut a, 2, Msg::Prepare { ballot: b(2, 2) });
    sync_all(&mut a, &out);
    recv(
        &mut a,
        1,
        Msg::Accept {
            ballot: b(1, 1),
            value: 7,
        },
    );
    assert_eq!(a.record().accepted, Some((b(1, 1), 7)));
}

#[test]
fn canary_reply_before_sync_replies_at_once() {
    let mut c = cfg(3, 0);
    c.bugs.reply_before_sync = true;
    let mut a = Node::new(c);
    let out = recv(&mut a, 1, Msg::Prepare { ballot: b(1, 1) });
    assert_eq!(sends(&out).len(), 1);
}

#[test]
fn promise_reports_the_previous_acceptance() {
    let mut a = Node::new(cfg(3, 0));
    let out = recv(
        &mut a,
        1,
        Msg::Accept {
            ballot: b(1, 1),
            value: 7,
        },
    );
    sync_all(&mut a, &out);
    let out = recv(&mut a, 2, Msg::Prepare { ballot: b(2, 2) });
    let released = sync_all(&mut a, &out);
    assert_eq!(
        sends(&released),
        vec![(
            2,
            Msg::Promise {
                ballot: b(2, 2),
                accepted: Some((b(1, 1), 7))
            }
        )]
    );
}

/// Drives a proposer through phase 1 with the given promises.
fn proposer_after_promises(
    bugs: Bugs,
    promises: &[(NodeId, Option<(Ballot, Value)>)],
) -> (Node, Vec<Output>) {
    let mut c = cfg(3, 0);
    c.bugs = bugs;
    let mut p = Node::new(c);
    let out = step(&mut p, Input::Propose(100));
    // The round is written and synced before any Prepare leaves.
    assert_eq!(persists(&out)[0].1.proposer_round, 1);
    assert!(sends(&out).is_empty());
    let released = sync_all(&mut p, &out);
    assert_eq!(sends(&released).len(), 3, "Prepare to every acceptor");
    let ballot = b(1, 0);
    let mut last = Vec::new();
    for (from, accepted) in promises {
        last = recv(
            &mut p,
            *from,
            Msg::Promise {
                ballot,
                accepted: *accepted,
            },
        );
    }
    (p, last)
}

#[test]
fn proposer_with_a_quorum_of_empty_promises_proposes_its_own_value() {
    let (_, out) = proposer_after_promises(Bugs::default(), &[(1, None), (2, None)]);
    let s = sends(&out);
    assert_eq!(s.len(), 3);
    assert!(s.iter().all(|(_, m)| *m
        == Msg::Accept {
            ballot: b(1, 0),
            value: 100
        }));
}

#[test]
fn proposer_adopts_the_highest_accepted_value() {
    let (_, out) = proposer_after_promises(
        Bugs::default(),
        &[(1, Some((Ballot::ZERO, 5))), (2, Some((Ballot::ZERO, 5)))],
    );
    assert!(sends(&out)
        .iter()
        .all(|(_, m)| matches!(m, Msg::Accept { value: 5, .. })));
    let mut p = Node::new(cfg(5, 0));
    let out = step(&mut p, Input::Propose(100));
    sync_all(&mut p, &out);
    let ballot = b(1, 0);
    recv(
        &mut p,
        1,
        Msg::Promise {
            ballot,
            accepted: Some((b(0, 3), 1)),
        },
    );
    recv(
        &mut p,
        2,
        Msg::Promise {
            ballot,
            accepted: Some((b(0, 4), 2)),
        },
    );
    let out = recv(
        &mut p,
        3,
        Msg::Promise {
            ballot,
            accepted: None,
        },
    );
    assert!(sends(&out)
        .iter()
        .all(|(_, m)| matches!(m, Msg::Accept { value: 2, .. })));
}

#[test]
fn canary_ignore_promised_values_proposes_its_own() {
    let bugs = Bugs {
        ignore_promised_values: true,
        ..Bugs::default()
    };
    let (_, out) = proposer_after_promises(
        bugs,
        &[(1, Some((Ballot::ZERO, 5))), (2, Some((Ballot::ZERO, 5)))],
    );
    assert!(sends(&out)
        .iter()
        .all(|(_, m)| matches!(m, Msg::Accept { value: 100, .. })));
}

#[test]
fn duplicate_promises_from_one_acceptor_are_not_a_quorum() {
    let (_, out) = proposer_after_promises(Bugs::default(), &[(1, None), (1, None)]);
    assert!(sends(&out).is_empty());
}

#[test]
fn stale_promises_are_ignored() {
    let (mut p, _) = proposer_after_promises(Bugs::default(), &[(1, None)]);
    let out = recv(
        &mut p,
        2,
        Msg::Promise {
            ballot: b(0, 0),
            accepted: None,
        },
    );
    assert!(sends(&out).is_empty());
}

#[test]
fn proposer_decides_on_a_quorum_of_accepted_and_only_once() {
    let (mut p, _) = proposer_after_promises(Bugs::default(), &[(1, None), (2, None)]);
    let acc = Msg::Accepted {
        ballot: b(1, 0),
        value: 100,
    };
    assert!(!recv(&mut p, 1, acc).contains(&Output::Decided { value: 100 }));
    assert!(
        !p.decided(),
        "one Accepted of a quorum of two decides nothing"
    );
    let out = recv(&mut p, 2, acc);
    assert!(out.contains(&Output::Decided { value: 100 }));
    assert!(out.contains(&Output::Learned { value: 100 }));
    assert!(p.decided());
    assert!(!recv(&mut p, 0, acc).contains(&Output::Decided { value: 100 }));
}

#[test]
fn nack_makes_the_retry_jump_past_the_promise() {
    let (mut p, _) = proposer_after_promises(Bugs::default(), &[(1, None)]);
    recv(
        &mut p,
        2,
        Msg::Nack {
            ballot: b(1, 0),
            promised: b(7, 2),
        },
    );
    let out = step(&mut p, Input::Timer(Timer::Retry { attempt: 1 }));
    assert_eq!(persists(&out)[0].1.proposer_round, 8);
    let released = sync_all(&mut p, &out);
    assert!(sends(&released)
        .iter()
        .all(|(_, m)| *m == Msg::Prepare { ballot: b(8, 0) }));
}

#[test]
fn a_nacked_ballot_is_abandoned_until_the_retry_timer() {
    // Pre-empted after one promise: a late quorum of promises in the same
    // ballot sends no Accept (the retry timer starts a higher ballot).
    let (mut p, _) = proposer_after_promises(Bugs::default(), &[(1, None)]);
    let nack = Msg::Nack {
        ballot: b(1, 0),
        promised: b(3, 2),
    };
    recv(&mut p, 2, nack);
    let promise = Msg::Promise {
        ballot: b(1, 0),
        accepted: None,
    };
    assert!(sends(&recv(&mut p, 0, promise)).is_empty());
}

#[test]
fn a_late_nack_of_an_older_ballot_does_not_abandon_the_current_one() {
    let (mut p, _) = proposer_after_promises(Bugs::default(), &[(1, None)]);
    let out = step(&mut p, Input::Timer(Timer::Retry { attempt: 1 }));
    sync_all(&mut p, &out);
    // A delayed Nack of ballot 1.0 arrives while ballot 2.0 collects promises.
    let nack = Msg::Nack {
        ballot: b(1, 0),
        promised: b(1, 2),
    };
    recv(&mut p, 2, nack);
    for from in [1, 2] {
        let promise = Msg::Promise {
            ballot: b(2, 0),
            accepted: None,
        };
        let out = recv(&mut p, from, promise);
        if from == 2 {
            assert!(sends(&out).contains(&(
                1,
                Msg::Accept {
                    ballot: b(2, 0),
                    value: 100
                }
            )));
        }
    }
}

#[test]
fn an_idle_learner_asks_every_query_period_with_half_a_period_of_jitter() {
    let mut n = Node::new(cfg(3, 0));
    let mut out = Vec::new();
    n.start(0, &mut out);
    let query = Output::SetTimer {
        timer: Timer::Query,
        delay_us: 50_000,
        jitter_us: 25_000,
    };
    assert_eq!(out, vec![query]);
    let out = step(&mut n, Input::Timer(Timer::Query));
    assert_eq!(sends(&out).len(), 3);
    assert!(out.contains(&query), "re-armed: {out:?}");
}

#[test]
fn stale_retry_timers_are_ignored() {
    let (mut p, _) = proposer_after_promises(Bugs::default(), &[(1, None)]);
    let out = step(&mut p, Input::Timer(Timer::Retry { attempt: 0 }));
    assert!(out.is_empty());
}

#[test]
fn canary_shared_ballots_drops_the_node_id() {
    let mut c = cfg(3, 2);
    c.bugs.shared_ballots = true;
    let mut p = Node::new(c);
    let out = step(&mut p, Input::Propose(1));
    let released = sync_all(&mut p, &out);
    assert!(sends(&released)
        .iter()
        .all(|(_, m)| *m == Msg::Prepare { ballot: b(1, 0) }));
}

#[test]
fn learner_needs_distinct_acceptors_in_one_ballot() {
    let mut l = Node::new(cfg(3, 0));
    let m = |r| Msg::Accepted {
        ballot: b(r, 1),
        value: 4,
    };
    assert!(recv(&mut l, 1, m(1)).is_empty());
    assert!(recv(&mut l, 1, m(1)).is_empty(), "duplicate does not count");
    assert!(
        recv(&mut l, 2, m(2)).is_empty(),
        "other ballot does not count"
    );
    assert_eq!(recv(&mut l, 2, m(1)), vec![Output::Learned { value: 4 }]);
    assert_eq!(l.learned(), Some(4));
}

#[test]
fn canary_count_duplicate_accepted_learns_from_one_acceptor() {
    let mut c = cfg(3, 0);
    c.bugs.count_duplicate_accepted = true;
    let mut l = Node::new(c);
    let m = Msg::Accepted {
        ballot: b(1, 1),
        value: 4,
    };
    recv(&mut l, 1, m);
    assert_eq!(recv(&mut l, 1, m), vec![Output::Learned { value: 4 }]);
}

#[test]
fn canary_minority_quorum_is_half() {
    let mut c = cfg(4, 0);
    assert_eq!(c.quorum(), 3);
    c.bugs.minority_quorum = true;
    assert_eq!(c.quorum(), 2);
}

#[test]
fn query_is_answered_with_the_chosen_value_or_the_acceptance() {
    let mut a = Node::new(cfg(3, 0));
    assert!(recv(&mut a, 1, Msg::Query).is_empty(), "nothing to say");
    let out = recv(
        &mut a,
        1,
        Msg::Accept {
            ballot: b(1, 1),
            value: 7,
        },
    );
    let q = recv(&mut a, 2, Msg::Query);
    assert!(sends(&q).is_empty(), "acceptance not durable yet");
    let released = sync_all(&mut a, &out);
    assert!(sends(&released).contains(&(
        2,
        Msg::Accepted {
            ballot: b(1, 1),
            value: 7
        }
    )));
    recv(&mut a, 1, Msg::Chosen { value: 7 });
    assert_eq!(
        sends(&recv(&mut a, 2, Msg::Query)),
        vec![(2, Msg::Chosen { value: 7 })]
    );
}

#[test]
fn query_timer_asks_everyone_until_something_is_learned() {
    let mut l = Node::new(cfg(3, 1));
    let mut out = Vec::new();
    l.start(0, &mut out);
    assert!(matches!(
        out[..],
        [Output::SetTimer {
            timer: Timer::Query,
            ..
        }]
    ));
    let out = step(&mut l, Input::Timer(Timer::Query));
    assert_eq!(sends(&out).len(), 3);
    recv(&mut l, 0, Msg::Chosen { value: 1 });
    assert!(step(&mut l, Input::Timer(Timer::Query)).is_empty());
}

#[test]
fn restart_keeps_the_durable_record_and_never_reuses_a_round() {
    let mut a = Node::new(cfg(3, 0));
    let out = step(&mut a, Input::Propose(100));
    let (_, durable) = persists(&out)[0];
    // Crash here: the node comes back from its durable record.
    let mut a = Node::recover(*a.config(), durable);
    assert_eq!(a.record(), durable);
    assert_eq!(a.learned(), None, "learner state is volatile");
    let out = step(&mut a, Input::Propose(100));
    assert_eq!(persists(&out)[0].1.proposer_round, 2);
}

#[test]
fn restart_from_a_promise_still_rejects_lower_ballots() {
    let mut a = Node::new(cfg(3, 0));
    let out = recv(&mut a, 2, Msg::Prepare { ballot: b(5, 2) });
    let (_, durable) = persists(&out)[0];
    let mut a = Node::recover(*a.config(), durable);
    let out = recv(&mut a, 1, Msg::Prepare { ballot: b(4, 1) });
    assert!(matches!(sends(&out)[..], [(1, Msg::Nack { .. })]));
}

#[test]
fn syncs_overtaken_by_later_ones_are_harmless() {
    let mut a = Node::new(cfg(3, 0));
    recv(&mut a, 1, Msg::Prepare { ballot: b(1, 1) });
    recv(&mut a, 2, Msg::Prepare { ballot: b(2, 2) });
    let out = step(&mut a, Input::Synced { upto: 2 });
    assert_eq!(sends(&out).len(), 2);
    assert!(step(&mut a, Input::Synced { upto: 1 }).is_empty());
}

#[test]
fn bug_names_round_trip() {
    for (name, _) in CANARIES {
        let mut bugs = Bugs::default();
        bugs.enable(name).unwrap();
        assert_eq!(bugs.names(), vec![name]);
        assert!(bugs.any());
    }
    assert!(Bugs::default().names().is_empty());
    let err = Bugs::default().enable("nope").unwrap_err();
    assert!(err.contains("reply-before-sync"), "{err}");
}

#[test]
#[should_panic(expected = "node id out of range")]
fn config_with_an_id_outside_the_cluster_is_refused() {
    Node::new(cfg(3, 3));
}

// ------------------------------------------------------------ hostile input

#[test]
fn messages_no_correct_peer_sends_are_refused_and_change_nothing() {
    let cases: [(Msg, &str); 7] = [
        (Msg::Prepare { ballot: b(0, 1) }, "round zero"),
        (
            Msg::Accept {
                ballot: b(u32::MAX, 1),
                value: 7,
            },
            "above the maximum",
        ),
        (Msg::Prepare { ballot: b(3, 9) }, "outside the cluster"),
        (
            Msg::Nack {
                ballot: b(5, 0),
                promised: b(2, 1),
            },
            "no higher promise",
        ),
        (
            Msg::Nack {
                ballot: b(1, 0),
                promised: b(ROUND_MAX, 1),
            },
            "far above",
        ),
        (
            Msg::Promise {
                ballot: b(1, 0),
                accepted: Some((b(4, 2), 9)),
            },
            "above its ballot",
        ),
        (Msg::Chosen { value: 99 }, "contradicts"),
    ];
    for (msg, why) in cases {
        let mut n = Node::new(cfg(3, 0));
        n.learner.learned = Some(5);
        let before = n.clone();
        let out = recv(&mut n, 1, msg);
        match out.as_slice() {
            [Output::Refused { from: 1, why: w }] => assert!(w.contains(why), "{msg:?}: {w}"),
            _ => panic!("{msg:?} not refused: {out:?}"),
        }
        assert_eq!(n, before, "{msg:?} changed the node");
    }
}

#[test]
fn exhausted_rounds_are_a_refusal_not_an_overflow() {
    let mut n = Node::new(cfg(3, 0));
    n.proposer.seen_round = u32::MAX;
    let out = step(&mut n, Input::Propose(7));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Refused { from: 0, why } if why.contains("exhausted"))),
        "{out:?}"
    );
    assert!(sends(&out).is_empty());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// No sequence of messages of any shape, from any sender, makes a node
    /// panic: a proposer mid-proposal, an acceptor and a learner at once.
    #[test]
    fn no_message_makes_a_node_panic(
        msgs in proptest::collection::vec(
            (0..3u8, 0..7u8, proptest::prelude::any::<(u32, u8, u32, u8, u64)>()),
            1..60,
        ),
    ) {
        let mut n = Node::new(cfg(3, 0));
        n.start(0, &mut Vec::new());
        let out = step(&mut n, Input::Propose(7));
        sync_all(&mut n, &out);
        let edge = |r: u32| [0, 1, 2, ROUND_MAX, u32::MAX][r as usize % 5];
        for (from, kind, (r1, n1, r2, n2, v)) in msgs {
            let (x, y) = (b(edge(r1), n1 % 5), b(edge(r2), n2 % 5));
            let msg = match kind {
                0 => Msg::Prepare { ballot: x },
                1 => Msg::Promise { ballot: x, accepted: (v % 2 == 0).then_some((y, v % 4)) },
                2 => Msg::Accept { ballot: x, value: v % 4 },
                3 => Msg::Accepted { ballot: x, value: v % 4 },
                4 => Msg::Nack { ballot: x, promised: y },
                5 => Msg::Query,
                _ => Msg::Chosen { value: v % 4 },
            };
            let out = recv(&mut n, from, msg);
            if out.iter().any(|o| matches!(o, Output::Sync { .. })) {
                sync_all(&mut n, &out);
            }
        }
    }
}
