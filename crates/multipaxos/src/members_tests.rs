//! Handler tests for membership changes (`members.rs`): who votes where,
//! learners, removed replicas, the α-window, and the rules the simulator's
//! seeds taught.

use super::*;

/// A replica of a cluster of `n` machines whose first voters are
/// `0..voters`, with `configs` as the configurations it knows, `applied`
/// slots applied.
fn with(n: u8, voters: u8, id: NodeId, configs: &[(Slot, Members)], applied: Slot) -> N {
    let mut node = N::new(Config {
        voters: Members::all(voters),
        ..cfg(n, id)
    });
    if !configs.is_empty() {
        node.configs = configs.iter().copied().collect();
    }
    node.applied = applied;
    let mut out = Vec::new();
    node.start(0, &mut out);
    node
}

/// Whether `out` sends an `Accepted`: a vote.
fn accepted(out: &Out) -> bool {
    sends(out)
        .iter()
        .any(|(_, m)| matches!(m, Msg::Accepted { .. }))
}

fn members(voters: u16, learners: u16, gone: u16, epoch: u64) -> Members {
    Members {
        epoch,
        voters,
        learners,
        leaving: 0,
        gone,
    }
}

/// A candidate needs a majority of *each* configuration of its window; the
/// `union-quorum` canary takes a majority of their union.
#[test]
fn a_candidate_needs_a_majority_of_each_configuration_of_its_window() {
    // Slots from 8 on: {0,3,4} instead of {0,1,2} (two voters at once).
    let configs = [
        (0, members(0b00111, 0, 0, 0)),
        (8, members(0b11001, 0, 0b00110, 1)),
    ];
    // Applied 5, α = 4: the window [5, 9) holds both configurations.
    let node = with(5, 3, 0, &configs, 5);
    assert_eq!(node.horizon(), 5 + node.cfg.alpha());
    // {0,3,4}: a majority of the union {0..4}, one of {0,1,2} only.
    assert!(!node.elects(5, 0b11001));
    assert!(
        node.elects(5, 0b11011),
        "{{0,1}} and {{0,3}} are majorities"
    );
    // Past the change, the new voters alone.
    let later = with(5, 3, 0, &configs, 8);
    assert!(later.elects(8, 0b11001));
    assert!(!later.elects(8, 0b00111));
    let mut buggy = node.clone();
    buggy.cfg.bugs.union_quorum = true;
    assert!(
        buggy.elects(5, 0b11001),
        "the canary takes the union's majority"
    );
    // Phase 1 covers a slot only with a majority of its own voters.
    assert!(!node.phase1_covers(node.members_at(5), 0b11001));
    assert!(buggy.phase1_covers(buggy.members_at(5), 0b11001));
}

/// A learner receives the log but never votes; the `learner-votes`
/// canary votes.
#[test]
fn a_learner_learns_but_does_not_vote() {
    let configs = [(0, members(0b0111, 0b1000, 0, 1))];
    for bug in [false, true] {
        let mut l = with(4, 3, 3, &configs, 0);
        l.cfg.bugs.learner_votes = bug;
        let accept = Msg::Accept {
            ballot: b(1, 0),
            slot: 0,
            entry: cmd(7),
            commit: 0,
        };
        let out = recv(&mut l, 0, accept);
        let voted = accepted(&out);
        assert_eq!(voted, bug, "a learner voted: {out:?}");
        // No promise either.
        let prepare = Msg::Prepare {
            ballot: b(2, 0),
            from: 0,
        };
        let out = recv(&mut l, 0, prepare);
        let promised = sends(&out)
            .iter()
            .any(|(_, m)| matches!(m, Msg::Promise { .. }));
        assert_eq!(promised, bug, "a learner promised: {out:?}");
    }
}

/// Once a removal governs a replica's applied prefix, what the removed id
/// sends is refused, and a removed replica neither votes nor stands.
#[test]
fn a_removed_replica_is_refused_and_does_not_vote_or_stand() {
    // n2 removed from slot 0 on (epoch 1): {0,1,3} vote.
    let configs = [(0, members(0b1011, 0, 0b0100, 1))];
    let mut n0 = with(4, 3, 0, &configs, 0);
    let out = recv(
        &mut n0,
        2,
        Msg::Prepare {
            ballot: b(5, 2),
            from: 0,
        },
    );
    assert!(matches!(
        out.as_slice(),
        [Output::Refused {
            from: 2,
            why: "a message from a removed replica"
        }]
    ));
    let mut n2 = with(4, 3, 2, &configs, 0);
    assert!(!n2.may_stand());
    let out = step(&mut n2, Input::Timer(Timer::Election { epoch: 1 }));
    assert!(
        !out.iter().any(|o| matches!(o, Output::SetTimer { .. })),
        "a removed replica arms no election timer: {out:?}"
    );
    let accept = Msg::Accept {
        ballot: b(1, 0),
        slot: 0,
        entry: cmd(7),
        commit: 0,
    };
    let out = recv(&mut n2, 0, accept);
    assert!(!accepted(&out));
}

/// A replica votes only where it knows the configuration: at or beyond its
/// horizon it lags, and catches up from the commit index first.
#[test]
fn no_vote_beyond_the_horizon() {
    let mut f = with(3, 3, 1, &[], 0);
    let alpha = f.cfg.alpha();
    let far = Msg::Accept {
        ballot: b(1, 0),
        slot: alpha,
        entry: cmd(1),
        commit: 0,
    };
    let out = recv(&mut f, 0, far);
    assert!(!accepted(&out));
    let near = Msg::Accept {
        ballot: b(1, 0),
        slot: alpha - 1,
        entry: cmd(1),
        commit: 0,
    };
    let out = recv(&mut f, 0, near);
    assert!(sends(&out)
        .iter()
        .any(|(_, m)| matches!(m, Msg::Accepted { slot, .. } if *slot == alpha - 1)));
}

/// A chosen change governs from `slot + α`, and a snapshot carries the
/// configurations of `[upto, upto + α)`.
#[test]
fn a_change_governs_from_alpha_slots_on_and_snapshots_carry_it() {
    let mut r = with(4, 3, 0, &[], 0);
    let alpha = r.cfg.alpha();
    let m = r.latest().changed(Change::Add(3), 4).unwrap();
    let promote = m.changed(Change::Promote, 4).unwrap();
    assert_eq!(promote.epoch, 2);
    assert_eq!(promote.voters, 0b1111);
    let mut out = Vec::new();
    r.learn(0, Entry::Config(m), &mut out);
    r.learn(1, Entry::Config(promote), &mut out);
    // The second is proposed from the first's view: epoch 2 follows 1.
    assert_eq!(r.members_at(alpha - 1).voters, 0b0111);
    assert_eq!(r.members_at(alpha).learners, 0b1000);
    assert_eq!(r.members_at(alpha + 1).voters, 0b1111);
    // A stale one (computed before epoch 2) changes nothing.
    r.learn(2, Entry::Config(m), &mut out);
    assert_eq!(r.latest(), promote);
    let out = step(&mut r, Input::Snapshot(Snap::new(2, ())));
    let snap = out.iter().find_map(|o| match o {
        Output::Persist {
            write: Write::Snapshot(s),
            ..
        } => Some(s.clone()),
        _ => None,
    });
    let snap = snap.expect("the snapshot is written");
    assert_eq!(
        snap.configs.values().copied().collect::<Vec<_>>(),
        vec![Members::first(0b0111), m, promote]
    );
}

/// A leader that learns a slot chosen with another entry than it proposed
/// there was deposed: it steps down, so that its commit index never covers
/// a slot where a follower holds its own, unchosen entry.
#[test]
fn a_leader_that_learns_another_entry_chosen_steps_down() {
    let (mut l, _) = elect([vec![], vec![]]);
    assert!(l.is_leader());
    step(&mut l, Input::Submit(5));
    assert!(l.is_leader());
    // Someone answers a query: slot 0 chose another entry.
    let out = recv(
        &mut l,
        1,
        Msg::Chosen {
            slot: 0,
            entry: cmd(9),
        },
    );
    assert!(!l.is_leader(), "{out:?}");
}

/// A candidate behind a replica's snapshot gets its catch-up instead of a
/// promise the replica can no longer judge (who voted below its snapshot):
/// n2, removed from slot 12 on, compacted to 12, and a candidate that
/// stands from slot 4 (issue 23: before, it found no one to answer).
#[test]
fn a_lagging_candidate_is_helped_to_catch_up() {
    let mut r = with(3, 3, 2, &[], 0);
    let alpha = r.cfg.alpha();
    let without = r.latest().changed(Change::Remove(2), 3).unwrap();
    let mut out = Vec::new();
    let at = 12 - alpha;
    for s in 0..14 {
        let e = if s == at {
            Entry::Config(without)
        } else {
            cmd(s as u32)
        };
        r.learn(s, e, &mut out);
    }
    step(&mut r, Input::Snapshot(Snap::new(12, ())));
    assert!(!r.may_promise(4), "n2 no longer knows it voted at slot 4");
    let out = recv(
        &mut r,
        0,
        Msg::Prepare {
            ballot: b(3, 0),
            from: 4,
        },
    );
    let msgs = sends(&out);
    assert!(msgs.iter().all(|(to, _)| *to == 0));
    assert!(
        msgs.iter()
            .any(|(_, m)| matches!(m, Msg::Snapshot { snap } if snap.upto == 12)),
        "{msgs:?}"
    );
    assert!(!msgs.iter().any(|(_, m)| matches!(m, Msg::Promise { .. })));
}

/// A hand-driven cluster: every message is held until a step delivers it,
/// syncs complete at once, timers fire only when a step fires them.
struct Hand {
    nodes: Vec<N>,
    now: u64,
    wire: std::collections::VecDeque<(NodeId, NodeId, Msg<u32, ()>)>,
    /// Each node's armed election epoch.
    election: Vec<u64>,
    /// What each node applied, by slot.
    applied: Vec<BTreeMap<Slot, Entry<u32>>>,
}

impl Hand {
    fn new(machines: u8, voters: u8, bugs: Bugs) -> Hand {
        let mut h = Hand {
            nodes: (0..machines)
                .map(|id| {
                    N::new(Config {
                        voters: Members::all(voters),
                        bugs,
                        ..cfg(machines, id)
                    })
                })
                .collect(),
            now: 1,
            wire: Default::default(),
            election: vec![0; machines as usize],
            applied: vec![BTreeMap::new(); machines as usize],
        };
        for id in 0..machines {
            let mut out = Vec::new();
            h.nodes[id as usize].start(h.now, &mut out);
            h.absorb(id, out);
        }
        h
    }

    fn input(&mut self, id: NodeId, input: Input<u32, ()>) {
        self.now += 1;
        let mut out = Vec::new();
        self.nodes[id as usize].handle(self.now, input, &mut out);
        self.absorb(id, out);
    }

    fn absorb(&mut self, id: NodeId, out: Out) {
        let mut synced = Vec::new();
        for o in out {
            match o {
                Output::Send { to, msg, .. } => self.wire.push_back((id, to, msg)),
                Output::Sync { upto } => synced.push(upto),
                Output::SetTimer {
                    timer: Timer::Election { epoch },
                    ..
                } => self.election[id as usize] = epoch,
                Output::Apply { slot, entry } => {
                    self.applied[id as usize].insert(slot, entry);
                }
                _ => {}
            }
        }
        for upto in synced {
            self.input(id, Input::Synced { upto });
        }
    }

    /// Delivers the held messages `ok` lets through, oldest first, until
    /// none is left that it does; the others stay held.
    fn run(&mut self, ok: impl Fn(&Hand, NodeId, NodeId, &Msg<u32, ()>) -> bool) {
        while let Some(k) = self.wire.iter().position(|(f, t, m)| ok(self, *f, *t, m)) {
            let (from, to, msg) = self.wire.remove(k).expect("found");
            self.input(to, Input::Receive { from, msg });
        }
    }

    fn elect(&mut self, id: NodeId) {
        self.now += 10_000_000;
        let epoch = self.election[id as usize];
        self.input(id, Input::Timer(Timer::Election { epoch }));
    }

    fn heartbeat(&mut self, id: NodeId) {
        self.now += 100_000;
        self.input(id, Input::Timer(Timer::Heartbeat));
    }
}

/// The `union-quorum` canary breaks safety, shown on a hand-driven cluster
/// (the swarm has not reached this yet). n3 and n4 replace n1 and n2 (two
/// voters at once, α = 4); n3 learns the promotion and is cut off before
/// the slots where it governs. n0 fills the slots before them with n1 and
/// n2, and chooses 777 at the first slot the new voters {0,3,4} govern,
/// with n4. Then n3 stands and only n1 and n2 hear it: its promisers
/// {1,2,3} are a majority of {0,1,2} and of the union {0..4}, but one of
/// {0,3,4}. The canary elects n3; it proposes 888 at that slot, n4 (which
/// never promised it) accepts, and n3 counts {3,4}, a majority of
/// {0,3,4}: two entries chosen in one slot. The correct rule does not
/// elect n3 (it would have asked n0 and n4, who know 777).
#[test]
fn union_quorum_chooses_two_entries_in_one_slot() {
    for bug in [false, true] {
        let bugs = Bugs {
            union_quorum: bug,
            ..Bugs::default()
        };
        let mut h = Hand::new(5, 3, bugs);
        let all = |_: &Hand, _: NodeId, _: NodeId, _: &Msg<u32, ()>| true;
        h.elect(0);
        h.run(all);
        assert!(h.nodes[0].is_leader());
        for c in 1..=3 {
            h.input(0, Input::Submit(c));
        }
        h.run(all);
        let change = Change::Replace {
            old: 0b00110,
            new: 0b11000,
        };
        h.input(0, Input::Reconfigure(change));
        // n3 hears everything until it applied its promotion.
        let until_n3_knows = |h: &Hand, f: NodeId, t: NodeId, _: &Msg<u32, ()>| {
            h.nodes[3].latest().epoch < 2 || (f != 3 && t != 3)
        };
        h.run(until_n3_knows);
        for _ in 0..20 {
            if h.nodes[3].latest().epoch == 2 {
                break;
            }
            h.heartbeat(0);
            h.run(until_n3_knows);
        }
        let promoted = h.nodes[3].latest();
        assert_eq!(
            (promoted.epoch, promoted.voters),
            (2, 0b11001),
            "{promoted:?}"
        );
        let b = *h.nodes[0].configs.keys().next_back().unwrap();
        let alpha = h.nodes[0].cfg.alpha();
        let a3 = h.nodes[3].applied();
        assert!(
            a3 > b - alpha && a3 < b,
            "n3 applied {a3}: the change governs from {b}"
        );
        // n3 is cut off; n0 fills the slots before b with n1 and n2, then
        // chooses 777 at b with n4.
        h.wire.retain(|(f, t, _)| *f != 3 && *t != 3);
        let without_3 = |_: &Hand, f: NodeId, t: NodeId, _: &Msg<u32, ()>| f != 3 && t != 3;
        h.run(without_3);
        h.input(0, Input::Submit(777));
        h.run(without_3);
        assert_eq!(h.applied[0].get(&b), Some(&cmd(777)), "{:?}", h.applied[0]);
        h.wire.clear();
        // n3 stands; only n1 and n2 hear it.
        h.elect(3);
        // Phase 1 only: n3's Accepts wait, so that its window still
        // reaches back into the old configuration when 888 arrives.
        let phase1_among_1_2_3 = |_: &Hand, f: NodeId, t: NodeId, m: &Msg<u32, ()>| {
            [1, 2, 3].contains(&f)
                && [1, 2, 3].contains(&t)
                && matches!(m, Msg::Prepare { .. } | Msg::Promise { .. })
        };
        h.run(phase1_among_1_2_3);
        if !bug {
            assert!(
                !h.nodes[3].is_leader(),
                "elected without a majority of {{0,3,4}}"
            );
            continue;
        }
        assert!(h.nodes[3].is_leader(), "the canary elects n3");
        // n4, which never promised n3's ballot, hears only its Accepts.
        h.wire
            .retain(|(_, t, m)| *t != 4 || matches!(m, Msg::Accept { .. }));
        h.input(3, Input::Submit(888));
        let not_0 = |_: &Hand, f: NodeId, t: NodeId, m: &Msg<u32, ()>| {
            f != 0 && t != 0 && (t != 4 || matches!(m, Msg::Accept { .. }))
        };
        h.run(not_0);
        assert_eq!(
            h.applied[3].get(&b),
            Some(&cmd(888)),
            "n3 chose another entry at slot {b}: {:?}",
            h.applied[3]
        );
    }
}
