//! Handler tests for the hazards the issue names, then a small seeded
//! cluster simulation (random delivery order, loss, crash and restart from
//! durable state) that checks agreement and liveness.

use super::*;

type N = Node<u32, ()>;
type Out = Vec<Output<u32, ()>>;

pub(crate) fn cfg(n: u8, id: NodeId) -> Config {
    Config {
        n,
        id,
        voters: Members::all(n),
        timing: Timing::default(),
        window: 4,
        batch: 1,
        slot_bytes: crate::SLOT_BYTES,
        queue_bytes: crate::QUEUE_BYTES,
        part_bytes: crate::PART_BYTES,
        bugs: Bugs::default(),
        buggify: Buggify::OFF,
    }
}

/// A snapshot at `upto` as a node of the first three voters takes it.
pub(crate) fn snap_at(upto: Slot) -> Snap<()> {
    Snap {
        configs: Configs::from([(0, Members::first(0b111))]),
        ..Snap::new(upto, ())
    }
}

/// The time to deliver `input` at: the node's clock, moved past the
/// election timeout when the input is an election timer (the handler tests
/// do not model time otherwise).
fn when(node: &N, input: &Input<u32, ()>) -> u64 {
    match input {
        Input::Timer(Timer::Election { .. }) => node.now + node.cfg.timing.election_us,
        Input::Timer(Timer::Pull) => node.now + node.cfg.timing.heartbeat_us,
        _ => node.now,
    }
}

fn cmd(c: u32) -> Entry<u32> {
    Entry::Cmds(vec![c].into())
}

pub(crate) fn b(round: u32, node: NodeId) -> Ballot {
    Ballot { round, node }
}

fn step(node: &mut N, input: Input<u32, ()>) -> Out {
    let mut out = Vec::new();
    let now = when(node, &input);
    node.handle(now, input, &mut out);
    // Complete every sync at once (durability is tested in the simulation).
    let upto = out
        .iter()
        .filter_map(|o| {
            if let Output::Sync { upto } = o {
                Some(*upto)
            } else {
                None
            }
        })
        .max();
    if let Some(upto) = upto {
        node.handle(node.now, Input::Synced { upto }, &mut out);
    }
    out
}

fn recv(node: &mut N, from: NodeId, msg: Msg<u32, ()>) -> Out {
    step(node, Input::Receive { from, msg })
}

fn sends(out: &Out) -> Vec<(NodeId, Msg<u32, ()>)> {
    out.iter()
        .filter_map(|o| {
            if let Output::Send { to, msg, .. } = o {
                Some((*to, msg.clone()))
            } else {
                None
            }
        })
        .collect()
}

/// Makes node 0 of 3 leader at ballot 1.0 with the given promises from 1 and 2.
fn elect(promises: [Vec<(Slot, Ballot, Entry<u32>)>; 2]) -> (N, Out) {
    let mut l = N::new(cfg(3, 0));
    let mut start = Vec::new();
    l.start(0, &mut start);
    let out = step(&mut l, Input::Timer(Timer::Election { epoch: 0 }));
    assert!(out.is_empty(), "a stale election timer is ignored");
    let out = step(&mut l, Input::Timer(Timer::Election { epoch: 1 }));
    let prepares: Vec<_> = sends(&out);
    assert_eq!(prepares.len(), 3);
    assert!(prepares.iter().all(|(_, m)| *m
        == Msg::Prepare {
            ballot: b(1, 0),
            from: 0
        }));
    let [p1, p2] = promises;
    recv(
        &mut l,
        1,
        Msg::Promise {
            ballot: b(1, 0),
            accepted: p1,
            snapshot: None,
        },
    );
    let out = recv(
        &mut l,
        2,
        Msg::Promise {
            ballot: b(1, 0),
            accepted: p2,
            snapshot: None,
        },
    );
    (l, out)
}

#[test]
fn a_new_leader_re_proposes_reported_slots_under_its_ballot_and_fills_gaps_with_noops() {
    // Slot 0 reported at two ballots (the higher wins), slot 2 once, slot 1 nowhere.
    let (l, out) = elect([
        vec![(0, b(0, 1), cmd(7)), (2, b(0, 2), cmd(9))],
        vec![(0, b(0, 2), cmd(8))],
    ]);
    assert!(l.is_leader());
    assert!(out.contains(&Output::Elected { ballot: b(1, 0) }));
    let accepts: Vec<(Slot, Entry<u32>)> = sends(&out)
        .into_iter()
        .filter(|(to, _)| *to == 1)
        .filter_map(|(_, m)| {
            if let Msg::Accept {
                ballot,
                slot,
                entry,
                ..
            } = m
            {
                assert_eq!(ballot, b(1, 0));
                Some((slot, entry))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(accepts, vec![(0, cmd(8)), (1, Entry::Noop), (2, cmd(9))]);
}

#[test]
fn a_deposed_leader_cannot_write() {
    let mut a = N::new(cfg(3, 1));
    recv(
        &mut a,
        2,
        Msg::Prepare {
            ballot: b(5, 2),
            from: 0,
        },
    );
    let out = recv(
        &mut a,
        0,
        Msg::Accept {
            ballot: b(1, 0),
            slot: 0,
            entry: cmd(1),
            commit: 0,
        },
    );
    assert_eq!(
        sends(&out),
        vec![(
            0,
            Msg::Nack {
                ballot: b(1, 0),
                promised: b(5, 2)
            }
        )]
    );
    // The leader that gets the Nack steps down and refuses commands.
    let (mut l, _) = elect([vec![], vec![]]);
    recv(
        &mut l,
        1,
        Msg::Nack {
            ballot: b(1, 0),
            promised: b(5, 2),
        },
    );
    assert!(!l.is_leader());
    let out = step(&mut l, Input::Submit(3));
    assert!(matches!(out[..], [Output::NotLeader { cmd: 3, .. }]));
}

#[test]
fn a_follower_marks_chosen_from_the_commit_index_only_what_it_holds_in_the_leaders_ballot() {
    let mut f = N::new(cfg(3, 1));
    // Slot 0 accepted under an old ballot, slot 1 under the leader's.
    recv(
        &mut f,
        2,
        Msg::Accept {
            ballot: b(1, 2),
            slot: 0,
            entry: cmd(5),
            commit: 0,
        },
    );
    recv(
        &mut f,
        0,
        Msg::Accept {
            ballot: b(2, 0),
            slot: 1,
            entry: cmd(6),
            commit: 0,
        },
    );
    let out = recv(
        &mut f,
        0,
        Msg::Heartbeat {
            ballot: b(2, 0),
            commit: 2,
            round: 0,
        },
    );
    assert_eq!(
        f.chosen(0),
        None,
        "an entry from an older ballot may not be what was chosen"
    );
    assert_eq!(f.chosen(1), Some(&cmd(6)));
    assert_eq!(f.applied(), 0, "slot 1 waits for slot 0");
    assert!(sends(&out).contains(&(0, Msg::Query { from: 0 })));
    let out = recv(
        &mut f,
        0,
        Msg::Chosen {
            slot: 0,
            entry: cmd(4),
        },
    );
    let applied: Vec<_> = out
        .iter()
        .filter_map(|o| {
            if let Output::Apply { slot, entry } = o {
                Some((*slot, entry.clone()))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(applied, vec![(0, cmd(4)), (1, cmd(6))]);
}

#[test]
fn the_leader_pipelines_up_to_its_window_and_applies_in_order() {
    let (mut l, _) = elect([vec![], vec![]]);
    let mut accepts = 0;
    for c in 0..6 {
        let out = step(&mut l, Input::Submit(c));
        accepts += sends(&out)
            .iter()
            .filter(|(to, m)| *to == 1 && matches!(m, Msg::Accept { .. }))
            .count();
    }
    assert_eq!(accepts, 4, "window of 4 slots in flight");
    // A quorum (the leader's own acceptor and node 1) for slot 1 before slot
    // 0: nothing applies until slot 0 is chosen.
    let ack = |l: &mut N, from: NodeId, slot: Slot| {
        recv(
            l,
            from,
            Msg::Accepted {
                ballot: b(1, 0),
                slot,
            },
        )
    };
    ack(&mut l, 0, 1);
    let first = ack(&mut l, 1, 1);
    assert!(!first.iter().any(|o| matches!(o, Output::Apply { .. })));
    ack(&mut l, 0, 0);
    let out = ack(&mut l, 1, 0);
    let applied: Vec<Slot> = out
        .iter()
        .filter_map(|o| {
            if let Output::Apply { slot, .. } = o {
                Some(*slot)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(applied, vec![0, 1]);
    // Each slot freed lets one queued command go out.
    let next: Vec<Slot> = sends(&first)
        .into_iter()
        .chain(sends(&out))
        .filter(|(to, _)| *to == 1)
        .filter_map(|(_, m)| {
            if let Msg::Accept { slot, .. } = m {
                Some(slot)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(next, vec![4, 5]);
}

#[test]
fn a_candidate_makes_its_own_promise_durable_before_any_prepare_leaves() {
    let mut c = N::new(cfg(3, 0));
    let mut out = Vec::new();
    c.start(0, &mut out);
    let mut out = Vec::new();
    let input = Input::Timer(Timer::Election { epoch: 1 });
    c.handle(when(&c, &input), input, &mut out);
    assert!(out.contains(&Output::Persist {
        seq: 1,
        write: Write::Promise(b(1, 0))
    }));
    assert!(sends(&out).is_empty(), "Prepare waits for the sync");
    // Restarted from that durable promise, it stands with a higher ballot.
    let mut d = Durable::default();
    d.apply(&Write::<u32, ()>::Init);
    d.apply(&Write::<u32, ()>::Promise(b(1, 0)));
    let mut c = N::recover(cfg(3, 0), d, 0);
    let mut out = Vec::new();
    c.start(0, &mut out);
    let out = step(&mut c, Input::Timer(Timer::Election { epoch: 1 }));
    assert!(sends(&out).iter().all(|(_, m)| *m
        == Msg::Prepare {
            ballot: b(2, 0),
            from: 0
        }));
}

// ------------------------------------------------------ seeded mini cluster

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Replica {
    node: Option<N>,
    durable: Durable<u32, ()>,
    unsynced: Vec<(u64, Write<u32, ()>)>,
    applied: Vec<Entry<u32>>,
}

/// Runs a cluster of `n` for `steps` events: messages delivered in random
/// order (some lost), timers fired at random, clients submitting commands,
/// random crashes. Then heals and requires every replica to apply every
/// submitted command. Returns the applied logs.
fn simulate(
    seed: u64,
    n: u8,
    lossy: bool,
    knobs: Buggify,
    part_bytes: usize,
) -> Vec<Vec<Entry<u32>>> {
    simulate_members(seed, n, 0, lossy, knobs, part_bytes).0
}

/// [`simulate`] with `spares` more machines than the `n` first voters, and
/// operators asking for membership changes (add, remove, replace) at
/// random nodes. Returns the applied logs and every configuration applied.
fn simulate_members(
    seed: u64,
    n: u8,
    spares: u8,
    lossy: bool,
    knobs: Buggify,
    part_bytes: usize,
) -> (Vec<Vec<Entry<u32>>>, Vec<Members>) {
    let voters = Members::all(n);
    let n = n + spares;
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // Every replica starts down and boots through the restart path below.
    let mut reps: Vec<Replica> = (0..n)
        .map(|_| Replica {
            node: None,
            durable: Durable {
                initialized: true,
                ..Durable::default()
            },
            unsynced: Vec::new(),
            applied: Vec::new(),
        })
        .collect();
    // In flight: (to, input). Timers are inputs too.
    let mut net: Vec<(NodeId, Input<u32, ()>)> = Vec::new();
    let mut submitted = 0u32;
    let deliver = |reps: &mut Vec<Replica>,
                   net: &mut Vec<(NodeId, Input<u32, ()>)>,
                   id: NodeId,
                   input: Input<u32, ()>| {
        let r = &mut reps[id as usize];
        let Some(node) = r.node.as_mut() else { return };
        let mut out = Vec::new();
        let now = when(node, &input);
        node.handle(now, input, &mut out);
        for o in out {
            match o {
                Output::Send { to, msg, .. } => net.push((to, Input::Receive { from: id, msg })),
                Output::Persist { seq, write } => r.unsynced.push((seq, write)),
                Output::Sync { upto } => net.push((id, Input::Synced { upto })),
                Output::SetTimer { timer, .. } => net.push((id, Input::Timer(timer))),
                Output::Apply { slot, entry } => {
                    assert_eq!(slot as usize, r.applied.len(), "applied out of order");
                    r.applied.push(entry);
                }
                // The client retries at the leader the node names, or the next node.
                Output::NotLeader { cmd, leader } => {
                    let to = leader.unwrap_or((id + 1) % n);
                    net.push((to, Input::Submit(cmd)));
                }
                // A full queue: the client retries later, at the same node.
                Output::Busy { cmd } => net.push((id, Input::Submit(cmd))),
                Output::Elected { .. }
                | Output::Install { .. }
                | Output::Rebuilt
                | Output::Lease { .. }
                | Output::Reconfigure { .. }
                | Output::Buggified(_) => {}
                // A removed replica that does not know it yet still talks.
                Output::Refused {
                    why: "a message from a removed replica",
                    ..
                } => {}
                Output::Refused { from, why } => {
                    panic!("n{id} refused a correct peer's message from n{from}: {why}")
                }
            }
        }
    };
    let total = 3_000;
    for i in 0..total + 200_000 {
        let healing = i >= total;
        if !healing && rng.below(20) == 0 {
            let to = rng.below(n as u64) as NodeId;
            submitted += 1;
            net.push((to, Input::Submit(submitted)));
        }
        if spares > 0 && !healing && rng.below(40) == 0 {
            // An operator's change, at any node (only the leader takes it).
            let id = rng.below(n as u64) as NodeId;
            let other = rng.below(n as u64) as NodeId;
            let change = match rng.below(3) {
                0 => Change::Add(other),
                1 => Change::Remove(other),
                _ => Change::Replace {
                    old: bit(id),
                    new: bit(other),
                },
            };
            net.push((id, Input::Reconfigure(change)));
        }
        if !healing && rng.below(200) == 0 {
            // Crash: memory and unsynced writes gone; back later.
            let id = rng.below(n as u64) as usize;
            if reps[id].node.take().is_some() {
                reps[id].unsynced.clear();
                net.retain(|(to, i)| {
                    *to != id as NodeId || matches!(i, Input::Receive { .. } | Input::Submit(_))
                });
            }
        }
        for (id, r) in reps.iter_mut().enumerate() {
            if r.node.is_none() && (i == 0 || healing || rng.below(50) == 0) {
                // Boot from the durable state; the chosen prefix replays.
                let c = Config {
                    buggify: knobs,
                    part_bytes,
                    voters,
                    ..cfg(n, id as NodeId)
                };
                let mut node = N::recover(c, r.durable.clone(), 0);
                let mut out = Vec::new();
                node.start(0, &mut out);
                r.applied.clear();
                for o in out {
                    match o {
                        Output::Apply { entry, .. } => r.applied.push(entry),
                        Output::SetTimer { timer, .. } => {
                            net.push((id as NodeId, Input::Timer(timer)))
                        }
                        _ => {}
                    }
                }
                r.node = Some(node);
            }
        }
        if net.is_empty() {
            if healing {
                break;
            }
            continue; // Everyone may be down: wait for restarts.
        }
        let k = rng.below(net.len() as u64) as usize;
        // Who the newest configuration has: its lowest voter stands alone
        // once healing; the members must converge.
        let newest = reps
            .iter()
            .filter_map(|r| r.node.as_ref())
            .max_by_key(|n| n.applied())
            .map(|n| n.latest())
            .unwrap_or(Members::first(voters));
        // (A voter that knows it: a learner that has not applied its
        // promotion does not stand yet.)
        let knows = reps.iter().enumerate().find(|(id, r)| {
            r.node
                .as_ref()
                .is_some_and(|n| n.latest() == newest && newest.votes(*id as NodeId))
        });
        let first = knows.map_or(newest.voters.trailing_zeros() as NodeId, |(id, _)| {
            id as NodeId
        });
        // Timeouts are long next to message delays: an election timer fires
        // only now and then, and once healing only the first voter's does
        // (standing in for randomized timeouts that let one candidate win).
        if let (_, Input::Timer(Timer::Election { .. })) = &net[k] {
            let to = net[k].0;
            if (healing && to != first) || rng.below(30) != 0 {
                if healing && to != first && spares == 0 {
                    net.swap_remove(k);
                }
                // (With membership changes the first voter may change: the
                // others' timers wait.)
                continue;
            }
        }
        let (to, input) = net.swap_remove(k);
        if let Input::Synced { upto } = input {
            let r = &mut reps[to as usize];
            let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut r.unsynced)
                .into_iter()
                .partition(|(s, _)| *s <= upto);
            r.unsynced = rest;
            for (_, w) in &done {
                r.durable.apply(w);
            }
        }
        if lossy && !healing && matches!(input, Input::Receive { .. }) && rng.below(10) == 0 {
            continue;
        }
        // Re-arm timers that fire: a timer input re-enters via the node.
        deliver(&mut reps, &mut net, to, input);
        // Agreement: every applied log is a prefix of the longest.
        let longest = (0..reps.len())
            .max_by_key(|&k| reps[k].applied.len())
            .unwrap();
        for r in &reps {
            let l = &reps[longest].applied;
            assert_eq!(
                r.applied[..],
                l[..r.applied.len()],
                "seed {seed}: replicas disagree"
            );
        }
        // Converged: every member up, equal logs, no client work left
        // anywhere, no learner left to promote.
        let converged = reps.iter().enumerate().all(|(id, r)| {
            newest.reach() & bit(id as NodeId) == 0
                || r.node.as_ref().is_some_and(|n| n.pending() == 0)
                    && r.applied.len() == reps[longest].applied.len()
        }) && newest.learners == 0
            && !net.iter().any(|(_, i)| matches!(i, Input::Submit(_)));
        if healing && converged {
            break;
        }
    }
    // The configurations that took effect: each of the next epoch (a stale
    // one, computed from an older view, changes nothing).
    let mut configs: Vec<Members> = Vec::new();
    if let Some(r) = reps.iter().max_by_key(|r| r.applied.len()) {
        for e in &r.applied {
            if let Entry::Config(m) = e {
                if m.epoch == configs.last().map_or(0, |c| c.epoch) + 1 {
                    configs.push(*m);
                }
            }
        }
    }
    let logs = reps
        .into_iter()
        .enumerate()
        .filter(|(id, _)| {
            spares == 0
                || configs.last().map_or(voters, |m: &Members| m.reach()) & bit(*id as NodeId) != 0
        })
        .map(|(_, r)| r.applied)
        .collect();
    (logs, configs)
}

#[test]
fn a_seeded_cluster_agrees_on_the_log_through_loss_reordering_and_crashes() {
    agree_and_converge(Buggify::OFF, crate::PART_BYTES);
}

/// Parts of 16 bytes: nearly every promise travels in parts, through the
/// same loss, reordering and crashes; the cluster still agrees and converges.
#[test]
fn a_seeded_cluster_whose_promises_travel_in_tiny_parts_still_agrees_and_converges() {
    agree_and_converge(Buggify::OFF, 16);
}

/// BUGGIFY's knobs pick legal behaviour: the same cluster, every knob on,
/// still agrees and converges.
#[test]
fn a_seeded_cluster_with_every_buggify_knob_on_still_agrees_and_converges() {
    agree_and_converge(
        Buggify {
            window_of_one: true,
            batch_of_one: true,
            tight_elections: true,
            short_lease: true,
            catch_up_by_one: true,
        },
        crate::PART_BYTES,
    );
}

fn agree_and_converge(knobs: Buggify, part_bytes: usize) {
    for seed in 0..200 {
        let logs = simulate(
            seed,
            3 + (seed % 3) as u8 * 2,
            seed % 2 == 0,
            knobs,
            part_bytes,
        );
        let longest = logs.iter().max_by_key(|l| l.len()).unwrap();
        // No command applied twice.
        let mut cmds: Vec<u32> = longest
            .iter()
            .flat_map(|e| {
                if let Entry::Cmds(c) = e {
                    c.to_vec()
                } else {
                    vec![]
                }
            })
            .collect();
        let len = cmds.len();
        cmds.sort();
        cmds.dedup();
        assert_eq!(cmds.len(), len, "seed {seed}: a command applied twice");
        assert!(!longest.is_empty(), "seed {seed}: nothing was ever applied");
        // Liveness: after healing every replica caught up with the longest log.
        for (i, l) in logs.iter().enumerate() {
            assert_eq!(
                l.len(),
                longest.len(),
                "seed {seed}: replica {i} did not converge"
            );
        }
    }
}

/// Membership changes under the same loss, reordering and crashes: seven
/// machines, three or five first voters, operators adding, removing and
/// replacing at random nodes. The cluster agrees, changes, and every member
/// of the final configuration converges.
#[test]
fn a_seeded_cluster_that_changes_its_membership_agrees_and_converges() {
    let mut changed = 0;
    let mut promoted = 0;
    for seed in std::env::var("MP_SEED").map_or(
        0..std::env::var("MP_SEEDS").map_or(200, |s| s.parse().unwrap()),
        |s| {
            let s: u64 = s.parse().unwrap();
            s..s + 1
        },
    ) {
        let n = 3 + (seed % 2) as u8 * 2;
        let (logs, configs) = simulate_members(
            seed,
            n,
            7 - n,
            seed % 2 == 0,
            Buggify::OFF,
            crate::PART_BYTES,
        );
        let longest = logs.iter().max_by_key(|l| l.len()).unwrap();
        for (i, l) in logs.iter().enumerate() {
            assert_eq!(
                l.len(),
                longest.len(),
                "seed {seed}: member {i} did not converge"
            );
        }
        changed += usize::from(!configs.is_empty());
        let first = Members::first(Members::all(n));
        promoted += usize::from(configs.iter().any(|m| m.voters & !first.voters != 0));
        // Ids are never reused: once gone, never back.
        for w in configs.windows(2) {
            assert_eq!(w[0].gone & !w[1].gone, 0, "seed {seed}: an id came back");
        }
    }
    assert!(
        changed > 150,
        "only {changed} of 200 runs changed membership"
    );
    assert!(
        promoted > 100,
        "only {promoted} of 200 runs promoted a learner"
    );
}

// ---------------------------------------------- rebuild, leases, snapshots

fn lease_cfg(n: u8, id: NodeId) -> Config {
    let mut c = cfg(n, id);
    c.timing.lease_us = 100_000;
    c.timing.drift_ppm = 100_000;
    c
}

fn at(node: &mut N, now: u64, input: Input<u32, ()>) -> Out {
    let mut out = Vec::new();
    node.handle(now, input, &mut out);
    out
}

#[test]
fn a_rebuilding_replica_does_not_vote_until_a_majority_of_the_others_answered() {
    for bug in [false, true] {
        let mut c = cfg(3, 0);
        c.bugs.wiped_rejoins_as_voter = bug;
        let mut r = N::rebuild(c, 0);
        let mut out = Vec::new();
        r.start(0, &mut out);
        if bug {
            // The canary: a wiped replica votes at once, with empty state.
            let out = recv(
                &mut r,
                1,
                Msg::Prepare {
                    ballot: b(1, 1),
                    from: 0,
                },
            );
            assert!(sends(&out)
                .iter()
                .any(|(_, m)| matches!(m, Msg::Promise { .. })));
            continue;
        }
        let queries = |out: &Out, fence: Ballot| {
            sends(out)
                .iter()
                .filter(|(_, m)| *m == Msg::RebuildQuery { fence })
                .count()
        };
        assert_eq!(queries(&out, Ballot::ZERO), 2, "first, promises");
        let out = recv(
            &mut r,
            1,
            Msg::Prepare {
                ballot: b(1, 1),
                from: 0,
            },
        );
        assert!(sends(&out).is_empty(), "no promise while rebuilding");
        // n1 holds an older acceptance of slot 0 than n2 will report: the
        // merge keeps the highest ballot, whichever order they arrive in.
        let mut older = Durable::<u32, ()> {
            initialized: true,
            promised: b(3, 1),
            ..Default::default()
        };
        older.accepted.insert(0, (b(3, 1), cmd(9)));
        let mut newer = Durable::<u32, ()> {
            initialized: true,
            promised: b(5, 1),
            ..Default::default()
        };
        newer.accepted.insert(0, (b(5, 1), cmd(7)));
        let state = |d: &Durable<u32, ()>| Msg::RebuildState {
            state: Box::new(d.clone()),
        };
        // Phase one: a majority of the others report their promises.
        let out = recv(&mut r, 1, state(&older));
        assert!(
            r.is_rebuilding(),
            "one peer is not a majority of the others"
        );
        assert_eq!(queries(&out, Ballot::ZERO) + queries(&out, b(6, 0)), 0);
        // A duplicate from the same peer does not count twice.
        let out = recv(&mut r, 1, state(&older));
        assert!(sends(&out).is_empty());
        let out = recv(&mut r, 2, state(&newer));
        assert!(r.is_rebuilding(), "promises only: nothing merged yet");
        let fence = b(6, 0);
        assert_eq!(queries(&out, fence), 2, "then the fence, above them all");
        // A late first-phase answer (below the fence) is not merged.
        let out = recv(&mut r, 1, state(&older));
        assert!(r.is_rebuilding() && !out.contains(&Output::Rebuilt));
        // Phase two: the others promised the fence and report their state.
        older.promised = fence;
        newer.promised = fence;
        let out = recv(&mut r, 1, state(&older));
        assert!(r.is_rebuilding());
        assert!(!out.contains(&Output::Rebuilt));
        let out = recv(&mut r, 2, state(&newer));
        assert!(out.contains(&Output::Rebuilt));
        assert!(!r.is_rebuilding());
        assert_eq!(r.promised(), fence, "the fence, the highest promise");
        // It votes again, and remembers what the others promised.
        let out = recv(
            &mut r,
            2,
            Msg::Prepare {
                ballot: b(4, 2),
                from: 0,
            },
        );
        assert!(sends(&out)
            .iter()
            .any(|(_, m)| matches!(m, Msg::Nack { .. })));
        let out = recv(
            &mut r,
            2,
            Msg::Prepare {
                ballot: b(6, 2),
                from: 0,
            },
        );
        let promise = sends(&out).into_iter().find_map(|(_, m)| match m {
            Msg::Promise { accepted, .. } => Some(accepted),
            _ => None,
        });
        assert_eq!(
            promise,
            Some(vec![(0, b(5, 1), cmd(7))]),
            "reports adopted acceptances"
        );
    }
}

#[test]
fn a_fenced_peer_refuses_the_accepts_the_wiped_replica_sent_before_its_disk_was_lost() {
    // n0 led in ballot 2.0 and lost its disk; its Accept in 2.0 is still
    // in flight to n1. n1 answers the rebuild's fence (3.0) first.
    let mut y = N::new(cfg(3, 1));
    let mut out = Vec::new();
    y.start(0, &mut out);
    recv(
        &mut y,
        0,
        Msg::Prepare {
            ballot: b(2, 0),
            from: 0,
        },
    );
    let out = recv(&mut y, 0, Msg::RebuildQuery { fence: b(3, 0) });
    assert_eq!(y.promised(), b(3, 0), "the fence is promised");
    assert!(
        out.iter().any(
            |o| matches!(o, Output::Persist { write: Write::Promise(f), .. } if *f == b(3, 0))
        ),
        "and made durable before the state leaves"
    );
    let out = recv(
        &mut y,
        0,
        Msg::Accept {
            ballot: b(2, 0),
            slot: 0,
            entry: cmd(1),
            commit: 0,
        },
    );
    assert!(
        sends(&out)
            .iter()
            .any(|(_, m)| matches!(m, Msg::Nack { .. })),
        "the lost incarnation's Accept is refused"
    );
    assert!(y.chosen(0).is_none());
}

#[test]
fn an_acceptor_that_granted_a_lease_refuses_other_candidates_until_it_ends() {
    let fresh = N::new(lease_cfg(3, 1));
    assert!(
        !fresh.lease_forbids(2),
        "a brand-new replica granted nothing"
    );
    let restarted = Durable {
        initialized: true,
        ..Durable::default()
    };
    let mut f = N::recover(lease_cfg(3, 1), restarted, 0);
    let mut out = Vec::new();
    f.start(0, &mut out);
    // Restarted: it may have granted a lease it forgot. No promises.
    let out = at(
        &mut f,
        50_000,
        Input::Receive {
            from: 2,
            msg: Msg::Prepare {
                ballot: b(1, 2),
                from: 0,
            },
        },
    );
    assert!(sends(&out).is_empty());
    // A leader's heartbeat: granted, and acknowledged for the leader's lease.
    let hb = Msg::Heartbeat {
        ballot: b(1, 0),
        commit: 0,
        round: 1,
    };
    let out = at(&mut f, 200_000, Input::Receive { from: 0, msg: hb });
    assert!(sends(&out).contains(&(
        0,
        Msg::HeartbeatAck {
            ballot: b(1, 0),
            round: 1
        }
    )));
    let prepare = Msg::Prepare {
        ballot: b(2, 2),
        from: 0,
    };
    let out = at(
        &mut f,
        290_000,
        Input::Receive {
            from: 2,
            msg: prepare.clone(),
        },
    );
    assert!(sends(&out).is_empty(), "the lease to n0 runs until 300 ms");
    let out = at(
        &mut f,
        300_001,
        Input::Receive {
            from: 2,
            msg: prepare,
        },
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Persist {
            write: Write::Promise(_),
            ..
        }
    )));
}

#[test]
fn the_leaders_lease_is_shortened_for_drift_unless_the_canary_ignores_it() {
    let n = N::new(lease_cfg(3, 0));
    // 100 ms at ±10% drift: 100 * 0.9 / 1.1 = 81.8 ms.
    assert_eq!(n.lease_span(), 81_818);
    let mut c = lease_cfg(3, 0);
    c.bugs.lease_ignores_drift = true;
    assert_eq!(N::new(c).lease_span(), 100_000);
}

#[test]
fn a_lagging_replica_catches_up_past_the_compaction_point_by_snapshot() {
    // n0 has chosen slots 0..4 and snapshots at 3.
    let mut a = N::new(cfg(3, 0));
    let mut out = Vec::new();
    a.start(0, &mut out);
    for s in 0..4 {
        recv(
            &mut a,
            1,
            Msg::Chosen {
                slot: s,
                entry: cmd(s as u32),
            },
        );
    }
    assert_eq!(a.applied(), 4);
    let out = step(&mut a, Input::Snapshot(Snap::new(3, ())));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Persist {
            write: Write::Snapshot(_),
            ..
        }
    )));
    assert_eq!(a.base(), 3);
    assert_eq!(a.chosen(1), None, "compacted");
    // n2 knows nothing and asks from slot 0: snapshot, then what follows.
    let out = recv(&mut a, 2, Msg::Query { from: 0 });
    let msgs: Vec<_> = sends(&out).into_iter().map(|(_, m)| m).collect();
    assert_eq!(
        msgs,
        vec![
            Msg::Snapshot { snap: snap_at(3) },
            Msg::Chosen {
                slot: 3,
                entry: cmd(3)
            }
        ]
    );
    let mut c = N::new(cfg(3, 2));
    let mut out = Vec::new();
    c.start(0, &mut out);
    let mut out = Vec::new();
    for m in msgs {
        out.extend(recv(&mut c, 0, m));
    }
    assert!(out.contains(&Output::Install { snap: snap_at(3) }));
    assert!(out.contains(&Output::Apply {
        slot: 3,
        entry: cmd(3)
    }));
    assert_eq!(c.applied(), 4);
}

#[test]
fn accessors_report_identity_leader_and_pending_work() {
    assert_eq!(N::new(cfg(3, 2)).id(), 2);
    // A follower learns the leader from its Accept and names it when it
    // refuses a command.
    let mut f = N::new(cfg(3, 1));
    let accept = Msg::Accept {
        ballot: b(1, 0),
        slot: 0,
        entry: cmd(7),
        commit: 0,
    };
    recv(&mut f, 0, accept);
    assert_eq!(f.leader(), Some(0));
    assert_eq!(f.pending(), 0);
    let out = step(&mut f, Input::Submit(8));
    assert!(out.contains(&Output::NotLeader {
        cmd: 8,
        leader: Some(0)
    }));
    // A leader with a window of 4: four in flight, two queued.
    let (mut l, _) = elect([vec![], vec![]]);
    for c in 0..6 {
        step(&mut l, Input::Submit(c));
    }
    assert_eq!(l.pending(), 6);
}

#[test]
fn a_duplicate_prepare_is_promised_again_and_a_higher_one_deposes_the_leader() {
    let mut a = N::new(cfg(3, 1));
    let prepare = Msg::Prepare {
        ballot: b(1, 0),
        from: 0,
    };
    let first = recv(&mut a, 0, prepare.clone());
    let again = recv(&mut a, 0, prepare);
    let promise = |out: &Out| {
        sends(out)
            .iter()
            .any(|(to, m)| *to == 0 && matches!(m, Msg::Promise { .. }))
    };
    assert!(promise(&first), "{first:?}");
    assert!(promise(&again), "{again:?}");
    assert!(
        !again.iter().any(|o| matches!(o, Output::SetTimer { .. })),
        "a duplicate is only answered, it resets no timer"
    );
    let (mut l, _) = elect([vec![], vec![]]);
    assert!(l.is_leader());
    recv(
        &mut l,
        1,
        Msg::Prepare {
            ballot: b(2, 1),
            from: 0,
        },
    );
    assert!(
        !l.is_leader(),
        "promising a higher ballot deposes the leader"
    );
}

#[test]
fn a_follower_that_heard_the_leader_rearms_its_election_timer_for_the_rest_of_the_timeout() {
    let mut f = N::new(cfg(3, 1));
    let mut out = Vec::new();
    f.start(0, &mut out);
    let hb = Msg::Heartbeat {
        ballot: b(1, 0),
        commit: 0,
        round: 1,
    };
    at(&mut f, 100_000, Input::Receive { from: 0, msg: hb });
    let out = at(&mut f, 150_000, Input::Timer(Timer::Election { epoch: 1 }));
    let t = Timing::default();
    assert_eq!(
        out,
        vec![Output::SetTimer {
            timer: Timer::Election { epoch: 2 },
            delay_us: 100_000 + t.election_us - 150_000,
            jitter_us: t.election_jitter_us,
        }]
    );
}

#[test]
fn a_replica_barred_by_its_own_lease_stands_again_right_after_it_ends() {
    let mut c = cfg(3, 1);
    c.timing.lease_us = 300_000;
    let restarted = Durable {
        initialized: true,
        ..Durable::default()
    };
    let mut n = N::recover(c, restarted, 0);
    let mut out = Vec::new();
    n.start(0, &mut out);
    // The election timeout passed, but the lease it may have granted before
    // the restart runs until 300 ms: no Prepare, a timer just past it.
    let out = at(&mut n, 200_000, Input::Timer(Timer::Election { epoch: 1 }));
    assert_eq!(
        out,
        vec![Output::SetTimer {
            timer: Timer::Election { epoch: 2 },
            delay_us: 100_001,
            jitter_us: c.timing.election_jitter_us / 16,
        }]
    );
}

/// Node 0 of 3 with leases, elected in ballot 1.0 at 150 ms (its election
/// heartbeat, round 1, leaves then).
fn leader_with_leases() -> N {
    leader_with_leases_and(Bugs::default())
}

fn leader_with_leases_and(bugs: Bugs) -> N {
    let mut l = N::new(Config {
        bugs,
        ..lease_cfg(3, 0)
    });
    let mut out = Vec::new();
    l.start(0, &mut out);
    at(&mut l, 150_000, Input::Timer(Timer::Election { epoch: 1 }));
    for from in [1, 2] {
        let promise = Msg::Promise {
            ballot: b(1, 0),
            accepted: vec![],
            snapshot: None,
        };
        at(&mut l, 150_000, Input::Receive { from, msg: promise });
    }
    assert!(l.is_leader());
    l
}

#[test]
fn a_lease_read_is_allowed_strictly_before_the_lease_ends() {
    let mut l = leader_with_leases();
    assert!(!l.lease_read_ok(150_000), "no lease before a quorum acks");
    let ack = Msg::HeartbeatAck {
        ballot: b(1, 0),
        round: 1,
    };
    at(&mut l, 151_000, Input::Receive { from: 1, msg: ack });
    // Counted from the heartbeat's send time, shortened for drift.
    let end = 150_000 + l.lease_span();
    assert!(l.lease_read_ok(end - 1));
    assert!(!l.lease_read_ok(end));
}

#[test]
fn a_leader_with_leases_refuses_other_candidates_while_its_own_lease_runs() {
    let mut l = leader_with_leases();
    // Its election heartbeat counts its own vote for 100 ms: silent.
    let prepare = Msg::Prepare {
        ballot: b(2, 2),
        from: 0,
    };
    let out = at(
        &mut l,
        249_999,
        Input::Receive {
            from: 2,
            msg: prepare.clone(),
        },
    );
    assert!(out.is_empty(), "{out:?}");
    assert!(l.is_leader());
    let out = at(
        &mut l,
        250_000,
        Input::Receive {
            from: 2,
            msg: prepare,
        },
    );
    assert!(
        out.contains(&Output::Persist {
            seq: 2,
            write: Write::Promise(b(2, 2))
        }),
        "the lease it granted itself ended: {out:?}"
    );
    assert!(!l.is_leader());
}

#[test]
fn a_lease_counts_from_the_send_time_of_the_heartbeat_a_quorum_acknowledged() {
    let elected = || {
        let mut l = leader_with_leases();
        // Round 1 left at 150 ms (the election), round 2 at 180 ms.
        let out = at(&mut l, 180_000, Input::Timer(Timer::Heartbeat));
        assert!(sends(&out).contains(&(
            1,
            Msg::Heartbeat {
                ballot: b(1, 0),
                commit: 0,
                round: 2
            }
        )));
        l
    };
    // A late ack of round 1 proves a grant from 150 ms on, not from 180;
    // an ack of round 2 extends it from 180 ms.
    for (round, sent) in [(1, 150_000), (2, 180_000)] {
        let mut l = elected();
        let msg = Msg::HeartbeatAck {
            ballot: b(1, 0),
            round,
        };
        let out = at(&mut l, 181_000, Input::Receive { from: 1, msg });
        let end = sent + l.lease_span();
        assert!(l.lease_read_ok(end - 1), "round {round}");
        assert!(!l.lease_read_ok(end), "round {round}");
        // The harness's lease check (P7) hears what the leader counts on.
        let lease = Output::Lease {
            ballot: b(1, 0),
            until: end,
        };
        assert!(out.contains(&lease), "round {round}: {out:?}");
    }
    // Canary 19 counts from the ack's arrival: past what was granted.
    let mut l = {
        let mut bugs = Bugs::default();
        bugs.enable("lease-from-ack").unwrap();
        let mut l = leader_with_leases_and(bugs);
        at(&mut l, 180_000, Input::Timer(Timer::Heartbeat));
        l
    };
    let msg = Msg::HeartbeatAck {
        ballot: b(1, 0),
        round: 1,
    };
    at(&mut l, 181_000, Input::Receive { from: 1, msg });
    assert!(l.lease_read_ok(150_000 + l.lease_span()));
    // An ack of another ballot counts for nothing.
    let mut l = elected();
    let other = Msg::HeartbeatAck {
        ballot: b(0, 1),
        round: 2,
    };
    at(
        &mut l,
        181_000,
        Input::Receive {
            from: 1,
            msg: other,
        },
    );
    assert!(!l.lease_read_ok(181_000));
}

#[test]
fn a_candidate_or_leader_that_hears_a_higher_leader_steps_down() {
    // n1 stands in ballot 1.1, then hears n0 lead in 2.0.
    let mut c = N::new(cfg(3, 1));
    let mut out = Vec::new();
    c.start(0, &mut out);
    step(&mut c, Input::Timer(Timer::Election { epoch: 1 }));
    let hb = Msg::Heartbeat {
        ballot: b(2, 0),
        commit: 0,
        round: 1,
    };
    recv(&mut c, 0, hb);
    assert_eq!(c.leader(), Some(0));
    // Late promises for its old ballot no longer elect it.
    for from in [0, 2] {
        let promise = Msg::Promise {
            ballot: b(1, 1),
            accepted: vec![],
            snapshot: None,
        };
        let out = recv(&mut c, from, promise);
        assert!(!out.iter().any(|o| matches!(o, Output::Elected { .. })));
    }
    assert!(!c.is_leader());
}

#[test]
fn a_follower_grants_no_second_lease_while_one_runs() {
    let mut f = N::new(lease_cfg(3, 1));
    let hb = |ballot, round| Msg::Heartbeat {
        ballot,
        commit: 0,
        round,
    };
    let acked = |out: &Out, to| {
        sends(out)
            .iter()
            .any(|(t, m)| *t == to && matches!(m, Msg::HeartbeatAck { .. }))
    };
    let out = at(
        &mut f,
        10_000,
        Input::Receive {
            from: 0,
            msg: hb(b(1, 0), 1),
        },
    );
    assert!(acked(&out, 0), "granted to n0 until 110 ms");
    // n2 leads in a higher ballot (elected without n1): n1 follows it but
    // acknowledges nothing until the lease it granted n0 has ended.
    let out = at(
        &mut f,
        50_000,
        Input::Receive {
            from: 2,
            msg: hb(b(2, 2), 1),
        },
    );
    assert!(!acked(&out, 2), "{out:?}");
    let out = at(
        &mut f,
        110_000,
        Input::Receive {
            from: 2,
            msg: hb(b(2, 2), 2),
        },
    );
    assert!(acked(&out, 2));
}

#[test]
fn a_leader_never_queries_itself() {
    let (mut l, _) = elect([vec![], vec![]]);
    // Its own Accept names a commit index above slots it does not hold.
    let accept = Msg::Accept {
        ballot: b(1, 0),
        slot: 5,
        entry: cmd(7),
        commit: 5,
    };
    let out = recv(&mut l, 0, accept);
    assert!(
        !sends(&out)
            .iter()
            .any(|(_, m)| matches!(m, Msg::Query { .. })),
        "{out:?}"
    );
}

#[test]
fn a_nack_deposes_a_leader_only_with_a_promise_above_its_own() {
    let (mut l, _) = elect([vec![], vec![]]);
    // A late Nack of an older attempt, carrying the leader's own ballot.
    let nack = Msg::Nack {
        ballot: b(0, 0),
        promised: b(1, 0),
    };
    recv(&mut l, 1, nack);
    assert!(l.is_leader());
    let nack = Msg::Nack {
        ballot: b(1, 0),
        promised: b(2, 2),
    };
    recv(&mut l, 1, nack);
    assert!(!l.is_leader());
}

#[test]
fn a_leader_whose_queue_is_full_refuses_commands_with_busy() {
    let (mut l, _) = elect([vec![], vec![]]);
    // No Accepted arrives: the window of 4 fills, then the queue behind it.
    let window = l.cfg.window as usize;
    for c in 0..(window + QUEUE_MAX) as u32 {
        let out = step(&mut l, Input::Submit(c));
        assert!(!out.iter().any(|o| matches!(o, Output::Busy { .. })), "{c}");
    }
    assert_eq!(l.pending(), window + QUEUE_MAX);
    // One more overflows: refused, and nothing proposed, written or sent.
    let overflow = (window + QUEUE_MAX) as u32;
    let out = step(&mut l, Input::Submit(overflow));
    assert_eq!(out, vec![Output::Busy { cmd: overflow }]);
    assert_eq!(l.pending(), window + QUEUE_MAX, "the queue stays bounded");
    assert!(l.is_leader());
    // A slot chosen frees one place in the window: one queued command goes
    // out, which frees one place in the queue.
    for from in [0, 1] {
        let ack = Msg::Accepted {
            ballot: b(1, 0),
            slot: 0,
        };
        recv(&mut l, from, ack);
    }
    assert_eq!(l.applied(), 1);
    assert_eq!(l.pending(), window + QUEUE_MAX - 1);
    let out = step(&mut l, Input::Submit(overflow + 1));
    assert!(out.is_empty(), "queued again: {out:?}");
    let out = step(&mut l, Input::Submit(overflow + 2));
    assert_eq!(out, vec![Output::Busy { cmd: overflow + 2 }]);
    // Deposed, the leader refuses every queued command, no more than the bound.
    let nack = Msg::Nack {
        ballot: b(1, 0),
        promised: b(2, 2),
    };
    let out = recv(&mut l, 1, nack);
    let refused = out
        .iter()
        .filter(|o| matches!(o, Output::NotLeader { .. }))
        .count();
    assert_eq!(refused, QUEUE_MAX);
}

// ------------------------------------------------------------------ BUGGIFY

fn buggified(out: &Out) -> Vec<Buggified> {
    out.iter()
        .filter_map(|o| match o {
            Output::Buggified(b) => Some(*b),
            _ => None,
        })
        .collect()
}

/// The Accepts node 1 receives in `out`: (slot, commands).
fn accepts_to_1(out: &Out) -> Vec<(Slot, usize)> {
    sends(out)
        .into_iter()
        .filter_map(|(to, m)| match m {
            Msg::Accept {
                slot,
                entry: Entry::Cmds(c),
                ..
            } if to == 1 => Some((slot, c.len())),
            _ => None,
        })
        .collect()
}

/// Node 0 of 3, leader in ballot 1.0, with a window of 4, batches of up to
/// 8 and the knobs `knobs`.
fn leader_with(knobs: Buggify) -> N {
    let mut c = cfg(3, 0);
    c.batch = 8;
    c.buggify = knobs;
    let mut l = N::new(c);
    let mut out = Vec::new();
    l.start(0, &mut out);
    step(&mut l, Input::Timer(Timer::Election { epoch: 1 }));
    for from in [1, 2] {
        let msg = Msg::Promise {
            ballot: b(1, 0),
            accepted: vec![],
            snapshot: None,
        };
        recv(&mut l, from, msg);
    }
    assert!(l.is_leader());
    l
}

fn chosen_by_1(l: &mut N, slot: Slot) -> Out {
    let mut out = recv(
        l,
        0,
        Msg::Accepted {
            ballot: b(1, 0),
            slot,
        },
    );
    out.extend(recv(
        l,
        1,
        Msg::Accepted {
            ballot: b(1, 0),
            slot,
        },
    ));
    out
}

#[test]
fn buggify_window_of_one_queues_commands_behind_one_slot_and_they_travel_as_a_batch() {
    // Off: four commands take four slots at once, and nothing is reported.
    let mut l = leader_with(Buggify::OFF);
    let mut out = Vec::new();
    for c in 0..4 {
        out.extend(step(&mut l, Input::Submit(c)));
    }
    assert_eq!(accepts_to_1(&out), [(0, 1), (1, 1), (2, 1), (3, 1)]);
    assert!(buggified(&out).is_empty());
    // On: one slot in flight; the other three wait (reported) and then go
    // out together when it is chosen.
    let knobs = Buggify {
        window_of_one: true,
        ..Buggify::OFF
    };
    let mut l = leader_with(knobs);
    let mut out = Vec::new();
    for c in 0..4 {
        out.extend(step(&mut l, Input::Submit(c)));
    }
    assert_eq!(accepts_to_1(&out), [(0, 1)]);
    assert_eq!(buggified(&out), [Buggified::QueuedBehindWindow; 3]);
    assert_eq!(l.pending(), 4);
    let out = chosen_by_1(&mut l, 0);
    assert_eq!(accepts_to_1(&out), [(1, 3)], "the queue, batched");
    assert!(buggified(&out).is_empty(), "nothing waits now: {out:?}");
}

#[test]
fn buggify_batch_of_one_drains_a_queue_one_command_per_slot() {
    let knobs = Buggify {
        window_of_one: true,
        batch_of_one: true,
        ..Buggify::OFF
    };
    let mut l = leader_with(knobs);
    for c in 0..3 {
        step(&mut l, Input::Submit(c));
    }
    // Slot 0 holds command 0; commands 1 and 2 wait. Each slot chosen lets
    // one more go, alone, while another still waits (reported).
    let out = chosen_by_1(&mut l, 0);
    assert_eq!(accepts_to_1(&out), [(1, 1)]);
    assert!(buggified(&out).contains(&Buggified::BatchCut), "{out:?}");
    let out = chosen_by_1(&mut l, 1);
    assert_eq!(accepts_to_1(&out), [(2, 1)]);
    assert!(
        !buggified(&out).contains(&Buggified::BatchCut),
        "one waited"
    );
    assert_eq!(l.pending(), 1);
}

#[test]
fn buggify_tight_elections_cut_the_jitter_and_report_a_candidacy_lost_to_a_rival() {
    let knobs = Buggify {
        tight_elections: true,
        ..Buggify::OFF
    };
    let c = Config {
        buggify: knobs,
        ..cfg(3, 1)
    };
    let mut n = N::new(c);
    let mut out = Vec::new();
    n.start(0, &mut out);
    let t = Timing::default();
    assert_eq!(
        out,
        vec![Output::SetTimer {
            timer: Timer::Election { epoch: 1 },
            delay_us: t.election_us,
            jitter_us: t.election_jitter_us / 16,
        }]
    );
    // It stands in 1.1; a rival's higher Prepare ends the candidacy.
    let out = step(&mut n, Input::Timer(Timer::Election { epoch: 1 }));
    assert!(buggified(&out).is_empty());
    let rival = Msg::Prepare {
        ballot: b(2, 2),
        from: 0,
    };
    let out = recv(&mut n, 2, rival.clone());
    assert_eq!(buggified(&out), [Buggified::CandidacyLost]);
    // Without the knob the same duel is not reported.
    let mut n = N::new(cfg(3, 1));
    let mut out = Vec::new();
    n.start(0, &mut out);
    step(&mut n, Input::Timer(Timer::Election { epoch: 1 }));
    assert!(buggified(&recv(&mut n, 2, rival)).is_empty());
}

#[test]
fn buggify_short_lease_lasts_one_heartbeat_interval_and_reports_it_lapsing() {
    let mut l = leader_with_leases();
    let full = l.lease_span();
    let beat = l.cfg.timing.heartbeat_us;
    assert!(beat < full, "{beat} {full}");
    l.cfg.buggify.short_lease = true;
    assert_eq!(l.lease_span(), beat);
    let ack = Msg::HeartbeatAck {
        ballot: b(1, 0),
        round: 1,
    };
    at(&mut l, 151_000, Input::Receive { from: 1, msg: ack });
    let end = 150_000 + beat;
    assert!(l.lease_read_ok(end - 1));
    assert!(!l.lease_read_ok(end), "over after one interval");
    // A heartbeat while the lease still runs reports nothing; the next one,
    // due just as it runs out, reports the lapse.
    let out = at(&mut l, end - 1, Input::Timer(Timer::Heartbeat));
    assert!(buggified(&out).is_empty());
    let out = at(&mut l, end, Input::Timer(Timer::Heartbeat));
    assert_eq!(buggified(&out), [Buggified::LeaseLapsed]);
}

#[test]
fn buggify_catch_up_by_one_answers_a_query_with_one_entry() {
    for (knob, expect) in [(false, 3), (true, 1)] {
        let c = Config {
            buggify: Buggify {
                catch_up_by_one: knob,
                ..Buggify::OFF
            },
            ..cfg(3, 0)
        };
        let mut a = N::new(c);
        let mut out = Vec::new();
        a.start(0, &mut out);
        for s in 0..3 {
            let msg = Msg::Chosen {
                slot: s,
                entry: cmd(s as u32),
            };
            recv(&mut a, 1, msg);
        }
        let out = recv(&mut a, 2, Msg::Query { from: 0 });
        let chosen = sends(&out)
            .iter()
            .filter(|(_, m)| matches!(m, Msg::Chosen { .. }))
            .count();
        assert_eq!(chosen, expect, "knob {knob}");
        let cut = buggified(&out) == [Buggified::CatchUpCut];
        assert_eq!(cut, knob);
        // Asked for the last slot, one entry is all there is: no cut.
        let out = recv(&mut a, 2, Msg::Query { from: 2 });
        assert!(buggified(&out).is_empty());
    }
}

#[test]
fn a_retry_of_a_command_still_queued_is_not_queued_again() {
    // A window of one (BUGGIFY) keeps commands waiting; clients that time
    // out come back with the same commands.
    let mut l = leader_with(Buggify {
        window_of_one: true,
        batch_of_one: true,
        ..Buggify::OFF
    });
    for c in [0, 1, 2] {
        step(&mut l, Input::Submit(c));
    }
    assert_eq!(l.pending(), 3);
    for c in [1, 2, 1, 2] {
        let out = step(&mut l, Input::Submit(c));
        assert!(
            sends(&out).is_empty() && buggified(&out).is_empty(),
            "{out:?}"
        );
    }
    assert_eq!(l.pending(), 3, "each waits once");
    // The one in flight is not in the queue: its retry waits behind it (it
    // may have to be proposed again if this slot is lost with the leader).
    step(&mut l, Input::Submit(0));
    assert_eq!(l.pending(), 4);
    // Each is proposed once: slots 1, 2 and 3 carry 1, 2 and 0.
    let mut proposed = Vec::new();
    for slot in 0..3 {
        for (to, m) in sends(&chosen_by_1(&mut l, slot)) {
            if let (1, Msg::Accept { entry, .. }) = (to, m) {
                proposed.push(entry);
            }
        }
    }
    assert_eq!(proposed, [cmd(1), cmd(2), cmd(0)]);
    assert_eq!(l.pending(), 1);
}

#[path = "members_tests.rs"]
mod members;
