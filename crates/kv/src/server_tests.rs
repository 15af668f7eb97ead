//! The service's BUGGIFY knobs, on a one-replica cluster driven by hand:
//! messages to itself loop back, syncs complete at once.

use super::*;
use crate::machine::Op;
use multipaxos::{Config, Durable, Timer, Timing, Write};

/// The log core's config: one replica, no knobs of its own.
fn log_cfg() -> Config {
    Config {
        n: 1,
        id: 0,
        voters: 1,
        timing: Timing::default(),
        window: 8,
        batch: 8,
        slot_bytes: multipaxos::SLOT_BYTES,
        queue_bytes: multipaxos::QUEUE_BYTES,
        part_bytes: multipaxos::PART_BYTES,
        bugs: Bugs::default(),
        buggify: multipaxos::Buggify::OFF,
    }
}

/// A one-replica server under `knobs`, snapshots every 64 slots, elected.
fn leader(knobs: Buggify) -> (Server, Vec<Event>) {
    let cfg = ServerConfig {
        snapshot_every: 64,
        tick_us: 1_000_000,
        lease_reads: false,
        bugs: Bugs::default(),
        buggify: knobs,
    };
    let mut s = Server::new(LogNode::new(log_cfg()), cfg);
    let mut out = Vec::new();
    s.start(0, &mut out);
    let out = run(
        &mut s,
        ServerInput::Log(Input::Timer(Timer::Election { epoch: 1 })),
    );
    assert!(s.node().is_leader());
    (s, out)
}

/// Handles `input` at 1 s (past any election timeout), then everything the replica sends itself and every
/// sync it asks for, until it is quiet. Returns every event.
fn run(s: &mut Server, input: ServerInput) -> Vec<Event> {
    let mut all = Vec::new();
    let mut todo = vec![input];
    while let Some(i) = todo.pop() {
        let mut out = Vec::new();
        s.handle(1_000_000, i, &mut out);
        for e in &out {
            match e {
                Event::Log(Output::Send { to: 0, msg, .. }) => {
                    todo.push(ServerInput::Log(Input::Receive {
                        from: 0,
                        msg: msg.clone(),
                    }))
                }
                Event::Log(Output::Sync { upto }) => {
                    todo.push(ServerInput::Log(Input::Synced { upto: *upto }))
                }
                _ => {}
            }
        }
        all.extend(out);
    }
    all
}

fn put(seq: u64) -> ServerInput {
    ServerInput::Request(Command {
        client: 1,
        seq,
        op: Op::Put {
            key: 1,
            value: seq.into(),
        },
    })
}

fn replies(out: &[Event]) -> Vec<u64> {
    out.iter()
        .filter_map(|e| match e {
            Event::Reply { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

fn buggified(out: &[Event]) -> Vec<Buggified> {
    out.iter()
        .filter_map(|e| match e {
            Event::Buggified(b) => Some(*b),
            _ => None,
        })
        .collect()
}

#[test]
fn buggify_withholds_every_16th_reply_once_and_the_retry_is_answered_by_the_dedup_table() {
    for knob in [false, true] {
        let knobs = Buggify {
            withhold_replies: knob,
            ..Buggify::OFF
        };
        let (mut s, _) = leader(knobs);
        let mut answered = Vec::new();
        let mut withheld = 0;
        for seq in 1..=32 {
            let out = run(&mut s, put(seq));
            answered.extend(replies(&out));
            withheld += buggified(&out).len();
        }
        if !knob {
            assert_eq!(answered, (1..=32).collect::<Vec<_>>());
            assert_eq!(withheld, 0);
            continue;
        }
        assert_eq!(withheld, 2, "seq 16 and 32");
        assert!(!answered.contains(&16) && !answered.contains(&32));
        assert_eq!(answered.len(), 30);
        // The client resends 32: the dedup table answers, with the reply
        // the first execution stored, and nothing executes again.
        let out = run(&mut s, put(32));
        assert_eq!(replies(&out), [32]);
        assert!(buggified(&out).is_empty());
        assert!(out.iter().any(|e| matches!(
            e,
            Event::Executed { applied, .. } if !applied.executed
        )));
    }
}

#[test]
fn buggify_snapshots_every_few_slots_and_reports_an_install() {
    let knobs = Buggify {
        snapshot_every: 2,
        ..Buggify::OFF
    };
    let (mut s, _) = leader(knobs);
    let mut snaps = Vec::new();
    for seq in 1..=5 {
        for e in run(&mut s, put(seq)) {
            if let Event::Log(Output::Persist {
                write: Write::Snapshot(snap),
                ..
            }) = e
            {
                snaps.push(snap.upto);
            }
        }
    }
    // Nothing before them (no earlier leader, no tick yet): the puts fill
    // slots 0 to 4, and a snapshot follows every second slot.
    assert_eq!(snaps, [2, 4]);
    // A restart from that disk installs the snapshot: reported, as the
    // knob made it happen early.
    let durable = Durable {
        initialized: true,
        snapshot: Some(Snap {
            configs: [(0, multipaxos::Members::first(1))].into(),
            ..Snap::new(4, Arc::new(s.machine().clone()))
        }),
        ..Durable::default()
    };
    let cfg = s.cfg;
    let node = LogNode::recover(log_cfg(), durable.clone(), 0);
    let mut again = Server::new(node, cfg);
    let mut out = Vec::new();
    again.start(0, &mut out);
    assert_eq!(buggified(&out), [Buggified::EarlySnapshotInstalled]);
    // The same restart with the knob off reports nothing.
    let off = ServerConfig {
        buggify: Buggify::OFF,
        ..cfg
    };
    let node = LogNode::recover(log_cfg(), durable, 0);
    let mut out = Vec::new();
    Server::new(node, off).start(0, &mut out);
    assert!(buggified(&out).is_empty());
}

/// A one-voter cluster with a spare machine (id 1), replica 0 elected.
fn leader_with_spare() -> Server {
    let cfg = ServerConfig {
        snapshot_every: 64,
        tick_us: 1_000_000,
        lease_reads: false,
        bugs: Bugs::default(),
        buggify: Buggify::OFF,
    };
    let log = Config { n: 2, ..log_cfg() };
    let mut s = Server::new(LogNode::new(log), cfg);
    s.start(0, &mut Vec::new());
    run(
        &mut s,
        ServerInput::Log(Input::Timer(Timer::Election { epoch: 1 })),
    );
    assert!(s.node().is_leader());
    s
}

fn admin(seq: u64, admin: Admin) -> ServerInput {
    ServerInput::Admin {
        client: 9,
        seq,
        admin,
    }
}

fn admin_reply(events: &[Event]) -> &AdminReply {
    let replies: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::AdminReply {
                client: 9, reply, ..
            } => Some(reply),
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), 1, "one answer to one request: {events:?}");
    replies[0]
}

fn addrs(i: u8) -> Addrs {
    Addrs {
        peer: format!("10.0.0.{i}:7100"),
        client: format!("10.0.0.{i}:7000"),
    }
}

/// Issue 23: an operator's change goes to the leader, which proposes the
/// configuration and the added replica's addresses; the address book is
/// replicated state every replica applies, and the view shows both.
#[test]
fn an_added_replica_and_its_addresses_go_through_the_log() {
    let mut s = leader_with_spare();
    let out = run(&mut s, admin(1, Admin::List));
    let AdminReply::Members(v) = admin_reply(&out) else {
        panic!("not a view: {out:?}")
    };
    assert_eq!((v.from, v.leader, v.first, v.window), (0, Some(0), 1, 8));
    assert_eq!((v.in_force.voters, v.latest.learners), (1, 0));
    assert!(v.peers.is_empty());

    let change = Change::Add(1);
    let out = run(
        &mut s,
        admin(
            2,
            Admin::Change {
                change,
                addrs: vec![(1, addrs(1))],
            },
        ),
    );
    let AdminReply::Changed(Ok(m)) = admin_reply(&out) else {
        panic!("not proposed: {out:?}")
    };
    assert_eq!((m.epoch, m.voters, m.learners), (1, 1, 2));
    assert_eq!(s.machine().peers().get(&1), Some(&addrs(1)), "applied");
    let applied_peer = out.iter().any(|e| {
        matches!(e, Event::Log(Output::Apply { entry: multipaxos::Entry::Cmds(c), .. })
            if c.iter().any(|c| matches!(c, Cmd::Peer { id: 1, .. })))
    });
    assert!(applied_peer, "the address is a log entry");
    let out = run(&mut s, admin(3, Admin::List));
    let AdminReply::Members(v) = admin_reply(&out) else {
        panic!("not a view")
    };
    assert_eq!(v.latest.learners, 2);
    assert_eq!(v.peers, vec![(1, addrs(1))]);
}

/// A change without the added replica's address, with one for a replica
/// it does not add, or with an address past the limit is refused before
/// anything is proposed; a replica that does not lead redirects.
#[test]
fn a_change_with_wrong_addresses_is_refused_and_a_follower_redirects() {
    let mut s = leader_with_spare();
    let long = Addrs {
        peer: "x".repeat(ADDR_MAX + 1),
        client: String::new(),
    };
    let wrong = [
        vec![],
        vec![(0, addrs(0))],
        vec![(1, addrs(1)), (1, addrs(1))],
        vec![(1, long)],
        vec![(200, addrs(1))],
    ];
    for (seq, addrs) in wrong.into_iter().enumerate() {
        let change = Change::Add(1);
        let out = run(&mut s, admin(seq as u64, Admin::Change { change, addrs }));
        assert!(
            matches!(admin_reply(&out), AdminReply::Changed(Err(_))),
            "{out:?}"
        );
        assert!(!out
            .iter()
            .any(|e| matches!(e, Event::Log(Output::Apply { .. }))));
    }
    // Ids out of range (bytes from a client, not the CLI) are refused, not
    // asserted on.
    for change in [Change::Add(200), Change::Remove(16)] {
        let out = run(
            &mut s,
            admin(
                90,
                Admin::Change {
                    change,
                    addrs: vec![],
                },
            ),
        );
        assert!(
            matches!(admin_reply(&out), AdminReply::Changed(Err(why)) if why.contains("out of range")),
            "{out:?}"
        );
    }
    assert_eq!(s.node().latest().learners, 0);
    assert!(s.machine().peers().is_empty());

    let cfg = s.cfg;
    let log = Config {
        n: 2,
        id: 1,
        ..log_cfg()
    };
    let mut follower = Server::new(LogNode::new(log), cfg);
    follower.start(0, &mut Vec::new());
    let mut out = Vec::new();
    let change = Change::Remove(0);
    follower.handle(
        0,
        admin(
            1,
            Admin::Change {
                change,
                addrs: vec![],
            },
        ),
        &mut out,
    );
    assert!(
        matches!(
            out[..],
            [Event::Redirect {
                client: 9,
                seq: 1,
                ..
            }]
        ),
        "{out:?}"
    );
}
