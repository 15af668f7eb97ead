//! Hostile input and resources: every message no correct peer sends is
//! refused without touching the node; resent Accepts and repeated Prepares
//! cost no second record; a distant commit index costs no walk; exhausted
//! rounds are a refusal, not an overflow; and no message at all, from any
//! state reached, makes a node panic.

use super::*;
use crate::tests::b;
use crate::{Config, Durable, Entry, Input, Output, Snap, Timer, Timing};
use proptest::prelude::*;

type N = Node<u32, ()>;
type Out = Vec<Output<u32, ()>>;

fn cfg(id: NodeId, lease_us: u64) -> Config {
    Config {
        timing: Timing {
            lease_us,
            ..Timing::default()
        },
        batch: 2,
        ..crate::tests::cfg(3, id)
    }
}

fn cmd(c: u32) -> Entry<u32> {
    Entry::Cmds(vec![c].into())
}

/// Feeds `input` at the node's own time and completes every sync it asks for.
fn step(node: &mut N, input: Input<u32, ()>) -> Out {
    let mut out = Vec::new();
    let now = node.now;
    node.handle(now, input, &mut out);
    let upto = out.iter().filter_map(|o| match o {
        Output::Sync { upto } => Some(*upto),
        _ => None,
    });
    if let Some(upto) = upto.max() {
        node.handle(now, Input::Synced { upto }, &mut out);
    }
    out
}

fn recv(node: &mut N, from: NodeId, msg: Msg<u32, ()>) -> Out {
    step(node, Input::Receive { from, msg })
}

fn writes(out: &Out) -> usize {
    out.iter()
        .filter(|o| matches!(o, Output::Persist { .. }))
        .count()
}

/// Node 1 of 3, following leader 0 at ballot 1.0, with slots 0-1 accepted
/// and slot 0 chosen.
fn follower() -> N {
    let mut n = N::new(cfg(1, 0));
    n.start(0, &mut Vec::new());
    for slot in 0..2 {
        let accept = Msg::Accept {
            ballot: b(1, 0),
            slot,
            entry: cmd(slot as u32 + 10),
            commit: slot,
        };
        recv(&mut n, 0, accept);
    }
    assert_eq!(n.applied(), 1);
    n
}

#[test]
fn every_message_no_correct_peer_sends_is_refused_and_changes_nothing() {
    let hostile: Vec<(NodeId, Msg<u32, ()>, &str)> = vec![
        (
            2,
            Msg::Prepare {
                ballot: b(5, 0),
                from: 0,
            },
            "not owned",
        ),
        (
            2,
            Msg::Prepare {
                ballot: b(0, 2),
                from: 0,
            },
            "ballot zero",
        ),
        (
            2,
            Msg::Prepare {
                ballot: b(5, 7),
                from: 0,
            },
            "outside the cluster",
        ),
        (
            2,
            Msg::Prepare {
                ballot: b(u32::MAX, 2),
                from: 0,
            },
            "maximum",
        ),
        (
            2,
            Msg::Prepare {
                ballot: b(5, 2),
                from: SLOT_MAX + 1,
            },
            "beyond",
        ),
        (
            2,
            Msg::Prepare {
                ballot: b(ROUND_JUMP_MAX + 2, 2),
                from: 0,
            },
            "far above any seen",
        ),
        (
            0,
            Msg::Nack {
                ballot: b(1, 1),
                promised: b(ROUND_MAX, 0),
            },
            "far above",
        ),
        (
            0,
            Msg::Accept {
                ballot: b(u32::MAX, 0),
                slot: 2,
                entry: cmd(1),
                commit: 0,
            },
            "maximum",
        ),
        (
            0,
            Msg::Accept {
                ballot: b(0, 0),
                slot: 2,
                entry: cmd(1),
                commit: 0,
            },
            "zero",
        ),
        (
            2,
            Msg::Accept {
                ballot: b(1, 0),
                slot: 2,
                entry: cmd(1),
                commit: 0,
            },
            "not owned",
        ),
        (
            0,
            Msg::Accept {
                ballot: b(1, 0),
                slot: u64::MAX,
                entry: cmd(1),
                commit: 0,
            },
            "beyond",
        ),
        (
            0,
            Msg::Heartbeat {
                ballot: b(1, 0),
                commit: 1 << 62,
                round: 1,
            },
            "beyond",
        ),
        (
            1,
            Msg::Heartbeat {
                ballot: b(1, 1),
                commit: 0,
                round: 1,
            },
            "itself",
        ),
        (
            0,
            Msg::Promise {
                ballot: b(3, 2),
                accepted: vec![],
                snapshot: None,
            },
            "not ours",
        ),
        (
            0,
            Msg::Promise {
                ballot: b(3, 1),
                accepted: vec![(4, b(9, 0), cmd(1))],
                snapshot: None,
            },
            "above its ballot",
        ),
        (
            0,
            Msg::Promise {
                ballot: b(3, 1),
                accepted: vec![(4, b(1, 0), cmd(1)), (3, b(1, 0), cmd(1))],
                snapshot: None,
            },
            "out of order",
        ),
        (
            0,
            Msg::Accepted {
                ballot: b(1, 0),
                slot: 1,
            },
            "not ours",
        ),
        (
            0,
            Msg::Nack {
                ballot: b(4, 1),
                promised: b(2, 0),
            },
            "no higher promise",
        ),
        (
            0,
            Msg::Nack {
                ballot: b(4, 0),
                promised: b(9, 0),
            },
            "not ours",
        ),
        (
            0,
            Msg::HeartbeatAck {
                ballot: b(1, 1),
                round: 1,
            },
            "leases off",
        ),
        (0, Msg::Query { from: u64::MAX }, "beyond"),
        (
            0,
            Msg::Chosen {
                slot: 0,
                entry: Entry::Noop,
            },
            "contradicts",
        ),
        (
            0,
            Msg::Snapshot {
                snap: Snap::new(0, ()),
            },
            "no slot",
        ),
        (
            0,
            Msg::Snapshot {
                snap: Snap::new(3, ()),
            },
            "without its configuration",
        ),
        (
            0,
            Msg::Snapshot {
                snap: Snap {
                    configs: [
                        (0, crate::Members::first(0b111)),
                        (1, crate::Members::first(0b11)),
                    ]
                    .into(),
                    ..Snap::new(3, ())
                },
            },
            "do not follow each other",
        ),
        (
            0,
            Msg::Snapshot {
                snap: Snap {
                    configs: [
                        (0, crate::Members::first(0b111)),
                        (
                            1 << 40,
                            crate::Members {
                                epoch: 1,
                                ..crate::Members::first(0b11)
                            },
                        ),
                    ]
                    .into(),
                    ..Snap::new(3, ())
                },
            },
            "beyond its reach",
        ),
        (
            0,
            Msg::Accept {
                ballot: b(1, 0),
                slot: 0,
                entry: Entry::Config(crate::Members::first(0b1000)),
                commit: 0,
            },
            "out of shape",
        ),
        (
            0,
            Msg::Chosen {
                slot: 5,
                entry: Entry::Config(crate::Members::default()),
            },
            "out of shape",
        ),
        (0, Msg::RebuildQuery { fence: b(4, 2) }, "not owned"),
        (
            0,
            Msg::RebuildState {
                state: Box::new(Durable::default()),
            },
            "never initialized",
        ),
        (
            0,
            Msg::RebuildState {
                state: Box::new(Durable {
                    initialized: true,
                    accepted: [(0, (b(2, 0), cmd(1)))].into(),
                    ..Durable::default()
                }),
            },
            "above its promise",
        ),
    ];
    for (from, msg, why) in hostile {
        let mut n = follower();
        let before = n.clone();
        let out = recv(&mut n, from, msg.clone());
        match out.as_slice() {
            [Output::Refused { from: f, why: w }] => {
                assert_eq!(*f, from);
                assert!(w.contains(why), "{msg:?}: refused for '{w}', not '{why}'");
            }
            _ => panic!("{msg:?} from n{from} was not refused: {out:?}"),
        }
        assert_eq!(n, before, "{msg:?} changed the node");
    }
}

#[test]
fn a_resent_accept_costs_no_second_record_and_is_still_answered() {
    let mut n = follower();
    let again = Msg::Accept {
        ballot: b(1, 0),
        slot: 1,
        entry: cmd(11),
        commit: 1,
    };
    let out = recv(&mut n, 0, again);
    assert_eq!(writes(&out), 0, "{out:?}");
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Send {
            to: 0,
            msg: Msg::Accepted { slot: 1, .. },
            ..
        }
    )));
    // The same slot in a new ballot is a new acceptance, written.
    let newer = Msg::Accept {
        ballot: b(2, 0),
        slot: 1,
        entry: cmd(11),
        commit: 1,
    };
    assert_eq!(
        writes(&recv(&mut n, 0, newer)),
        2,
        "the promise, the acceptance"
    );
    // The canary writes every copy again.
    let mut c = cfg(1, 0);
    c.bugs.rewrite_resent_accepts = true;
    let mut n = N::new(c);
    n.start(0, &mut Vec::new());
    let a = Msg::Accept {
        ballot: b(1, 0),
        slot: 0,
        entry: cmd(1),
        commit: 0,
    };
    recv(&mut n, 0, a.clone());
    assert_eq!(writes(&recv(&mut n, 0, a)), 1);
}

#[test]
fn a_repeated_prepare_costs_no_second_promise_record_but_waits_for_the_first() {
    let mut n = N::new(cfg(1, 0));
    n.start(0, &mut Vec::new());
    let p = Msg::Prepare {
        ballot: b(3, 2),
        from: 0,
    };
    // The first promise's write is issued, not yet synced.
    let mut out = Vec::new();
    n.handle(
        0,
        Input::Receive {
            from: 2,
            msg: p.clone(),
        },
        &mut out,
    );
    assert_eq!(writes(&out), 1);
    let mut again = Vec::new();
    n.handle(0, Input::Receive { from: 2, msg: p }, &mut again);
    assert_eq!(writes(&again), 0);
    assert!(
        !again.iter().any(|o| matches!(o, Output::Send { .. })),
        "the second answer waits for the first write too: {again:?}"
    );
    let mut synced = Vec::new();
    n.handle(0, Input::Synced { upto: 1 }, &mut synced);
    let promises = synced
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Send {
                    msg: Msg::Promise { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(promises, 2, "both answered once durable");
}

#[test]
fn a_distant_commit_index_costs_no_walk() {
    let mut n = follower();
    // 2^55 slots: a walk to it would never end.
    let far = 1u64 << 55;
    let out = recv(
        &mut n,
        0,
        Msg::Heartbeat {
            ballot: b(1, 0),
            commit: far,
            round: 1,
        },
    );
    // Slot 1 is held in the leader's ballot: learned. Then it asks for the rest.
    assert_eq!(n.applied(), 2);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Send {
            to: 0,
            msg: Msg::Query { from: 2 },
            ..
        }
    )));
}

#[test]
fn exhausted_rounds_are_a_refusal_not_an_overflow() {
    // A replica that promised the last round there is (no single message
    // takes it there: a round far above any seen is refused).
    let d = Durable {
        initialized: true,
        promised: b(ROUND_MAX, 2),
        ..Durable::default()
    };
    let mut n = N::recover(cfg(1, 0), d, 0);
    n.start(0, &mut Vec::new());
    assert_eq!(n.promised(), b(ROUND_MAX, 2));
    let mut out = Vec::new();
    let epoch = n.epoch;
    let later = n.now + 10 * n.cfg.timing.election_us;
    n.handle(later, Input::Timer(Timer::Election { epoch }), &mut out);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Refused { from: 1, why } if why.contains("exhausted"))),
        "{out:?}"
    );
    assert!(!out.iter().any(|o| matches!(o, Output::Send { .. })));
    assert_eq!(n.promised(), b(ROUND_MAX, 2));
}

/// A message of any shape, with fields from the edges of their ranges.
fn any_msg() -> impl Strategy<Value = Msg<u32, ()>> {
    let round = prop_oneof![0..4u32, Just(ROUND_MAX), Just(u32::MAX)];
    let ballot = (round, 0..5u8).prop_map(|(round, node)| Ballot { round, node });
    // Slots near the log, and at the edges (a walk to them would never end).
    let slot = prop_oneof![0..6u64, Just(1 << 40), Just(SLOT_MAX), Just(u64::MAX)];
    let entry = prop_oneof![Just(Entry::Noop), (0..3u32).prop_map(cmd)];
    let small = 0..6u64; // slots a Promise reports (see ARCHITECTURE: lies)
    prop_oneof![
        (ballot.clone(), slot.clone()).prop_map(|(ballot, from)| Msg::Prepare { ballot, from }),
        (
            ballot.clone(),
            proptest::collection::vec((small, ballot.clone(), entry.clone()), 0..3),
            proptest::option::of(1..6u64),
        )
            .prop_map(|(ballot, mut accepted, snap)| {
                accepted.sort_by_key(|a| a.0);
                accepted.dedup_by_key(|a| a.0);
                Msg::Promise {
                    ballot,
                    accepted,
                    snapshot: snap.map(|upto| Snap::new(upto, ())),
                }
            }),
        (ballot.clone(), slot.clone(), entry.clone(), slot.clone()).prop_map(
            |(ballot, slot, entry, commit)| Msg::Accept {
                ballot,
                slot,
                entry,
                commit
            }
        ),
        (ballot.clone(), slot.clone()).prop_map(|(ballot, slot)| Msg::Accepted { ballot, slot }),
        (ballot.clone(), ballot.clone())
            .prop_map(|(ballot, promised)| Msg::Nack { ballot, promised }),
        (ballot.clone(), slot.clone(), any::<u64>()).prop_map(|(ballot, commit, round)| {
            Msg::Heartbeat {
                ballot,
                commit,
                round,
            }
        }),
        (ballot.clone(), any::<u64>())
            .prop_map(|(ballot, round)| Msg::HeartbeatAck { ballot, round }),
        slot.clone().prop_map(|from| Msg::Query { from }),
        (0..6u64, entry).prop_map(|(slot, entry)| Msg::Chosen { slot, entry }),
        (1..6u64).prop_map(|upto| Msg::Snapshot {
            snap: Snap::new(upto, ())
        }),
        ballot.prop_map(|fence| Msg::RebuildQuery { fence }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No sequence of messages, from any sender, makes a replica panic or
    /// walk an unbounded range, whatever role it is in (a follower, a
    /// leader, with leases on or off).
    #[test]
    fn no_message_makes_a_replica_panic(
        lease in prop_oneof![Just(0u64), Just(300_000u64)],
        lead in any::<bool>(),
        msgs in proptest::collection::vec((0..3u8, any_msg()), 1..40),
    ) {
        let mut n = N::new(cfg(1, lease));
        n.start(0, &mut Vec::new());
        if lead {
            let t = n.epoch;
            let mut out = Vec::new();
            n.handle(n.cfg.timing.election_us * 2, Input::Timer(Timer::Election { epoch: t }), &mut out);
            for from in [0u8, 2] {
                let ballot = n.promised();
                recv(&mut n, from, Msg::Promise { ballot, accepted: vec![], snapshot: None });
            }
            prop_assert!(n.is_leader());
            step(&mut n, Input::Submit(7));
        }
        for (from, msg) in msgs {
            recv(&mut n, from, msg);
        }
    }
}
