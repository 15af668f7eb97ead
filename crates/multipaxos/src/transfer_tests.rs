//! Messages too large for one part: a snapshot, a rebuild state and a
//! promise each arrive in parts, pulled one at a time, through loss; a part
//! that does not add up is refused; a sender keeps its copy only until the
//! receiver has the whole.

use super::*;
use crate::tests::b;
use crate::{Ballot, Config, Durable, Entry, Input, Output, Slot, Snap, Timer, PART_HEADROOM};
use std::collections::{BTreeMap, VecDeque};

/// A state machine's state big enough to need parts: `len` numbers.
type St = Vec<u32>;
type N = Node<u32, St>;
type Out = Vec<Output<u32, St>>;

const PART: usize = 100;

/// The handler tests' replica of three, with small parts.
fn cfg(id: NodeId) -> Config {
    Config {
        part_bytes: PART,
        ..crate::tests::cfg(3, id)
    }
}

/// A snapshot of 2,000 numbers of three bytes each: about 60 parts.
fn big_snap(upto: Slot) -> Snap<St> {
    Snap {
        upto,
        state: (0..2_000).map(|i| 100_000 + i).collect(),
        configs: crate::Configs::from([(0, crate::Members::first(0b111))]),
    }
}

/// A replica that holds `snap`, promised `promised`, started at time 0.
fn holding(id: NodeId, snap: Snap<St>, promised: Ballot) -> N {
    let d = Durable {
        initialized: true,
        promised,
        accepted: BTreeMap::new(),
        chosen: BTreeMap::new(),
        snapshot: Some(snap),
    };
    let mut n = N::recover(cfg(id), d, 0);
    n.start(0, &mut Vec::new());
    n
}

fn fresh(id: NodeId) -> N {
    let mut n = N::new(cfg(id));
    n.start(0, &mut Vec::new());
    n
}

/// A few replicas and the messages between them. Writes sync at once.
struct Net {
    nodes: Vec<N>,
    now: u64,
    wire: VecDeque<(NodeId, NodeId, Msg<u32, St>)>,
    /// Every `drop_every`th message is lost (0: none).
    drop_every: usize,
    sent: usize,
    parts: usize,
    outs: Vec<Out>,
    /// Timers set: (due, node, timer). Election timers fire only if
    /// `elections` (the handler tests send heartbeats by hand).
    timers: Vec<(u64, NodeId, Timer)>,
    elections: bool,
}

impl Net {
    fn new(nodes: Vec<N>, drop_every: usize) -> Net {
        let outs = nodes.iter().map(|_| Vec::new()).collect();
        Net {
            nodes,
            now: 0,
            wire: VecDeque::new(),
            drop_every,
            sent: 0,
            parts: 0,
            outs,
            timers: Vec::new(),
            elections: false,
        }
    }

    fn input(&mut self, id: NodeId, input: Input<u32, St>) {
        let mut out = Vec::new();
        self.nodes[id as usize].handle(self.now, input, &mut out);
        self.outputs(id, out);
    }

    fn start(&mut self, id: NodeId) {
        let mut out = Vec::new();
        self.nodes[id as usize].start(self.now, &mut out);
        self.outputs(id, out);
    }

    fn outputs(&mut self, id: NodeId, mut out: Out) {
        let node = &mut self.nodes[id as usize];
        let upto = out.iter().filter_map(|o| match o {
            Output::Sync { upto } => Some(*upto),
            _ => None,
        });
        if let Some(upto) = upto.max() {
            node.handle(self.now, Input::Synced { upto }, &mut out);
        }
        for o in &out {
            if let Output::SetTimer {
                timer, delay_us, ..
            } = o
            {
                if self.elections || *timer == Timer::Pull {
                    self.timers.push((self.now + delay_us, id, *timer));
                }
            }
            if let Output::Send { to, msg, .. } = o {
                self.sent += 1;
                if self.drop_every > 0 && self.sent.is_multiple_of(self.drop_every) {
                    continue;
                }
                if matches!(msg, Msg::Part { .. }) {
                    self.parts += 1;
                    let size = postcard::experimental::serialized_size(msg).unwrap();
                    assert!(size <= PART + PART_HEADROOM, "a part of {size} bytes");
                }
                self.wire.push_back((id, *to, msg.clone()));
            }
        }
        self.outs[id as usize].extend(out);
    }

    /// Delivers everything on the wire (and what it causes) in order.
    fn pump(&mut self) {
        while let Some((from, to, msg)) = self.wire.pop_front() {
            self.input(to, Input::Receive { from, msg });
        }
    }

    /// Moves every clock on by `us`, firing the timers that come due.
    fn tick(&mut self, us: u64) {
        let until = self.now + us;
        loop {
            self.pump();
            let next = (0..self.timers.len())
                .filter(|&i| self.timers[i].0 <= until)
                .min_by_key(|&i| self.timers[i].0);
            let Some(i) = next else { break };
            let (due, id, timer) = self.timers.remove(i);
            self.now = self.now.max(due);
            self.input(id, Input::Timer(timer));
        }
        self.now = until;
    }
}

fn installed(out: &Out) -> Option<&Snap<St>> {
    out.iter().find_map(|o| match o {
        Output::Install { snap } => Some(snap),
        _ => None,
    })
}

fn refusals(out: &Out) -> Vec<&'static str> {
    out.iter()
        .filter_map(|o| match o {
            Output::Refused { why, .. } => Some(*why),
            _ => None,
        })
        .collect()
}

#[test]
fn a_snapshot_too_large_for_one_part_is_pulled_in_parts_that_each_fit() {
    let snap = big_snap(10);
    let whole =
        postcard::experimental::serialized_size(&Msg::<u32, St>::Snapshot { snap: snap.clone() })
            .unwrap();
    assert!(whole > 50 * PART, "the snapshot needs many parts");
    let mut net = Net::new(vec![holding(0, snap.clone(), b(1, 0)), fresh(1)], 0);
    // The follower hears the leader's commit index and asks.
    let hb = Msg::Heartbeat {
        ballot: b(1, 0),
        commit: 10,
        round: 1,
    };
    net.input(1, Input::Receive { from: 0, msg: hb });
    net.pump();
    assert_eq!(installed(&net.outs[1]), Some(&snap));
    assert_eq!(net.nodes[1].applied(), 10);
    // One part per PART bytes: none sent twice without loss.
    assert_eq!(net.parts, whole.div_ceil(PART));
    // The last pull told the sender to forget its copy; nothing is kept.
    assert!(net.nodes[0].outgoing.is_empty());
    assert!(net.nodes[1].incoming.is_empty());
}

#[test]
fn a_lost_part_stalls_the_transfer_and_the_next_ask_resumes_it_where_it_was() {
    let snap = big_snap(10);
    // One message in seven is lost: parts, pulls and queries alike.
    let mut net = Net::new(vec![holding(0, snap.clone(), b(1, 0)), fresh(1)], 7);
    let need =
        postcard::experimental::serialized_size(&Msg::<u32, St>::Snapshot { snap: snap.clone() })
            .unwrap()
            .div_ceil(PART);
    let hb_us = cfg(0).timing.heartbeat_us;
    for round in 1..=200 {
        let hb = Msg::Heartbeat {
            ballot: b(1, 0),
            commit: 10,
            round,
        };
        net.input(1, Input::Receive { from: 0, msg: hb });
        net.pump();
        if installed(&net.outs[1]).is_some() {
            break;
        }
        net.tick(hb_us);
    }
    assert_eq!(installed(&net.outs[1]), Some(&snap), "never installed");
    // Resumed, not restarted: about one part per part needed, plus the
    // ones lost on the way.
    assert!(
        net.parts < need + need / 3,
        "{} parts for {need}: the transfer restarted",
        net.parts
    );
}

#[test]
fn a_wiped_replica_rebuilds_from_peers_whose_state_arrives_in_parts() {
    let snap = big_snap(20);
    let rebuilding = N::rebuild(cfg(2), 0);
    let mut net = Net::new(
        vec![
            holding(0, snap.clone(), b(3, 0)),
            holding(1, snap.clone(), b(2, 1)),
            rebuilding,
        ],
        5,
    );
    // The replicas' own timers run: the rebuilding one's timeouts ask
    // again, the pull timers pull what stalled.
    net.elections = true;
    net.start(2);
    let el = cfg(2).timing.election_us;
    for _ in 0..1_000 {
        net.tick(el / 10);
        if net.outs[2].contains(&Output::Rebuilt) {
            break;
        }
    }
    if std::env::var("DROP").is_ok() {
        for o in &net.outs[2] {
            if let Output::Send { to, msg, .. } = o {
                match msg {
                    Msg::Part { offset, total, .. } => eprintln!("->{to} part {offset}/{total}"),
                    Msg::Pull { offset, .. } => eprintln!("->{to} pull {offset}"),
                    m => eprintln!("->{to} {m:?}"),
                }
            } else if let Output::Refused { .. } = o {
                eprintln!("{o:?}")
            }
        }
    }
    assert!(net.outs[2].contains(&Output::Rebuilt), "never rebuilt");
    assert_eq!(installed(&net.outs[2]), Some(&snap));
    assert!(!net.nodes[2].is_rebuilding());
    assert!(
        net.nodes[2].promised() > b(3, 0),
        "fenced above every promise"
    );
}

#[test]
fn a_candidate_behind_a_compacted_acceptor_takes_its_promise_in_parts_and_leads() {
    let snap = big_snap(30);
    let mut net = Net::new(
        vec![
            fresh(0),
            holding(1, snap.clone(), b(1, 1)),
            holding(2, snap.clone(), b(1, 1)),
        ],
        0,
    );
    // Node 0 stands: its Prepare from slot 0 reaches two compacted acceptors.
    let el = cfg(0).timing.election_us;
    for _ in 0..5 {
        net.tick(2 * el);
        let epoch = net.nodes[0].epoch;
        net.input(0, Input::Timer(Timer::Election { epoch }));
        net.pump();
        if net.nodes[0].is_leader() {
            break;
        }
    }
    assert!(net.nodes[0].is_leader(), "never elected");
    assert_eq!(installed(&net.outs[0]), Some(&snap));
    assert!(net.parts > 0, "the promise came whole");
    assert!(net.nodes[0].applied() >= 30);
}

/// Every kind of message that can grow goes in parts; the others never do.
#[test]
fn only_promises_snapshots_and_rebuild_states_are_sent_in_parts() {
    let mut n = fresh(0);
    let big = Msg::Chosen {
        slot: 1,
        entry: Entry::Cmds((0..1_000).collect::<Vec<u32>>().into()),
    };
    assert_eq!(n.whole_or_first_part(1, 0, big.clone()), big);
    let snap = Msg::Snapshot { snap: big_snap(1) };
    assert!(matches!(
        n.whole_or_first_part(1, 0, snap),
        Msg::Part { offset: 0, .. }
    ));
    let small = Msg::Snapshot {
        snap: Snap::new(2, vec![1]),
    };
    assert_eq!(n.whole_or_first_part(1, 0, small.clone()), small);
}

/// Parts are a peer's bytes: what does not add up is refused, and nothing
/// of it reaches the node.
#[test]
fn parts_that_do_not_add_up_are_refused_and_stale_ones_ignored() {
    let mut n = fresh(1);
    let recv = |n: &mut N, msg: Msg<u32, St>| {
        let mut out = Vec::new();
        n.handle(0, Input::Receive { from: 0, msg }, &mut out);
        out
    };
    let part = |id, total, offset, bytes: &[u8]| Msg::Part {
        id,
        total,
        offset,
        bytes: bytes.to_vec(),
    };
    assert_eq!(
        refusals(&recv(&mut n, part(1, 10, 8, &[0; 4]))),
        ["a part beyond its message's end"]
    );
    assert_eq!(
        refusals(&recv(&mut n, part(1, TRANSFER_MAX + 1, 0, &[0]))),
        ["a message in parts over the transfer maximum"]
    );
    assert_eq!(
        refusals(&recv(&mut n, part(1, 10, u64::MAX, &[0]))),
        ["a part beyond its message's end"]
    );
    assert_eq!(
        refusals(&recv(&mut n, part(1, 10, 0, &[]))),
        ["an empty part"]
    );
    // A later part of a transfer never begun: nothing to add it to.
    assert!(recv(&mut n, part(1, 10, 4, &[0; 4])).is_empty());
    assert!(n.incoming.is_empty());
    // Whole, but not what its name says.
    let bytes = postcard::to_stdvec(&Msg::<u32, St>::Query { from: 0 }).unwrap();
    let wrong = crc32c::crc32c(&bytes) ^ 1;
    let out = recv(&mut n, part(wrong, bytes.len() as u64, 0, &bytes));
    assert_eq!(
        refusals(&out),
        ["a message in parts whose bytes do not match its name"]
    );
    // Whole and named right, but no message, or a part inside a part.
    let junk = [0xff; 7];
    let out = recv(&mut n, part(crc32c::crc32c(&junk), 7, 0, &junk));
    assert_eq!(refusals(&out), ["a message in parts that does not decode"]);
    let inner = postcard::to_stdvec(&part(1, 1, 0, &[0])).unwrap();
    let out = recv(
        &mut n,
        part(crc32c::crc32c(&inner), inner.len() as u64, 0, &inner),
    );
    assert_eq!(refusals(&out), ["a part inside a message in parts"]);
    // An assembled message is checked like any other: a Prepare in a
    // ballot its sender does not own.
    let prep = postcard::to_stdvec(&Msg::<u32, St>::Prepare {
        ballot: b(5, 2),
        from: 0,
    })
    .unwrap();
    let out = recv(
        &mut n,
        part(crc32c::crc32c(&prep), prep.len() as u64, 0, &prep),
    );
    assert_eq!(refusals(&out), ["a ballot not owned by its sender"]);
    assert_eq!(n.promised(), Ballot::ZERO);
    assert!(n.incoming.is_empty());
}

/// The first part reveals what the whole does: a promise in parts waits for
/// its write like a whole one, and no pull is answered before it is durable.
#[test]
fn no_part_leaves_before_the_write_the_message_reveals_is_durable() {
    let mut a = holding(1, big_snap(30), b(1, 1));
    let mut out = Vec::new();
    let prepare = Msg::Prepare {
        ballot: b(2, 0),
        from: 0,
    };
    a.handle(
        0,
        Input::Receive {
            from: 0,
            msg: prepare,
        },
        &mut out,
    );
    assert!(
        !out.iter().any(|o| matches!(o, Output::Send { .. })),
        "a part before its promise was durable"
    );
    let Some(o) = a.outgoing.get(&0) else {
        panic!("the promise is kept in parts")
    };
    let id = o.id;
    let pull = |a: &mut N, id: u32, offset: u64| {
        let mut out = Vec::new();
        let msg = Msg::Pull { id, offset };
        a.handle(0, Input::Receive { from: 0, msg }, &mut out);
        out
    };
    assert!(
        pull(&mut a, id, 100).is_empty(),
        "a pull answered before the write was durable"
    );
    let seq = a.persist_seq;
    let mut out = Vec::new();
    a.handle(0, Input::Synced { upto: seq }, &mut out);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Send {
            msg: Msg::Part { offset: 0, .. },
            after,
            ..
        } if *after == seq
    )));
    assert!(matches!(
        &pull(&mut a, id, 100)[..],
        [Output::Send {
            msg: Msg::Part { offset: 100, .. },
            ..
        }]
    ));
    // A pull for another transfer gets nothing; one at the end frees it.
    assert!(pull(&mut a, id ^ 1, 0).is_empty());
    let total = a.outgoing[&0].bytes.len() as u64;
    pull(&mut a, id, total);
    assert!(a.outgoing.is_empty());
}

/// A sender that crashed mid-transfer lost its copy: the follower's next
/// query is answered with the same snapshot's first part, which has the same
/// name, and the follower pulls on from where it was. A transfer nobody
/// answers any more is dropped after [`GIVE_UP_TIMEOUTS`].
#[test]
fn a_transfer_resumes_across_its_senders_crash_and_is_dropped_when_nobody_answers() {
    let snap = big_snap(10);
    let mut net = Net::new(vec![holding(0, snap.clone(), b(1, 0)), fresh(1)], 0);
    let hb = |round| Msg::Heartbeat {
        ballot: b(1, 0),
        commit: 10,
        round,
    };
    net.input(
        1,
        Input::Receive {
            from: 0,
            msg: hb(1),
        },
    );
    // Three parts arrive, then the sender crashes (its copy is gone).
    for _ in 0..6 {
        let (from, to, msg) = net.wire.pop_front().unwrap();
        net.input(to, Input::Receive { from, msg });
    }
    net.wire.clear();
    net.nodes[0] = holding(0, snap.clone(), b(1, 0));
    let have = net.nodes[1].incoming[&0].bytes.len();
    assert_eq!(have, 3 * PART);
    let t = cfg(1).timing;
    // The pull timer pulls again: unanswered (the copy is gone).
    let sent = net.sent;
    net.tick(t.heartbeat_us);
    assert!(net.sent > sent, "no pull again");
    // The leader's next word: the follower asks again, the first part
    // comes back under the same name, and the rest is pulled from `have`.
    let parts = net.parts;
    net.input(
        1,
        Input::Receive {
            from: 0,
            msg: hb(2),
        },
    );
    net.pump();
    assert_eq!(installed(&net.outs[1]), Some(&snap));
    let whole =
        postcard::experimental::serialized_size(&Msg::<u32, St>::Snapshot { snap: snap.clone() })
            .unwrap();
    assert_eq!(net.parts - parts, whole.div_ceil(PART) - 3 + 1, "restarted");
    // A transfer from a peer that never answers again is dropped.
    let mut lone = Net::new(vec![holding(0, snap.clone(), b(1, 0)), fresh(1)], 0);
    lone.input(
        1,
        Input::Receive {
            from: 0,
            msg: hb(1),
        },
    );
    let (from, to, msg) = lone.wire.pop_front().unwrap();
    lone.input(to, Input::Receive { from, msg });
    let (from, to, msg) = lone.wire.pop_front().unwrap();
    lone.input(to, Input::Receive { from, msg });
    lone.wire.clear();
    assert!(!lone.nodes[1].incoming.is_empty());
    lone.drop_every = 1; // Nothing gets through any more.
    lone.tick(GIVE_UP_TIMEOUTS * t.election_us + 2 * t.heartbeat_us);
    assert!(lone.nodes[1].incoming.is_empty(), "kept a dead transfer");
    assert!(
        !lone.nodes[1].pull_armed,
        "a pull timer with nothing to pull"
    );
}
