//! Unit tests of the state machine: scripted scenarios for each rule, and a
//! randomized run against a reference model of the key-value semantics.

use super::*;

/// A machine with a driver that numbers each client's commands 1, 2, ...
#[derive(Default)]
struct Driver {
    m: Machine,
    seq: BTreeMap<ClientId, u64>,
}

impl Driver {
    /// Sends `op` as `client`'s next command; it must execute.
    fn op(&mut self, client: ClientId, op: Op) -> Reply {
        let seq = self.seq.entry(client).or_insert(0);
        *seq += 1;
        let applied = self.m.apply(&Cmd::Client(Command {
            client,
            seq: *seq,
            op: op.clone(),
        }));
        let applied = applied.expect("a client command has a reply");
        assert!(
            applied.executed,
            "c{client} seq {seq}: {op:?} was not executed"
        );
        applied.reply
    }

    fn tick(&mut self, now_us: u64) {
        assert_eq!(self.m.apply(&Cmd::Tick { now_us }), None);
    }
}

/// The value `n` (its decimal digits), as the simulator's workload writes.
fn v(n: u64) -> Value {
    Value::from(n)
}

fn client(client: ClientId, seq: u64, op: Op) -> Cmd {
    Cmd::Client(Command { client, seq, op })
}

/// `linearizability::KvModel::step`, restated: the semantics every replica's
/// Get/Put/Delete/Cas must match.
fn model_step(state: &mut Option<(Value, u64)>, op: Op) -> Reply {
    let version = state.as_ref().map_or(0, |(_, v)| *v);
    match op {
        Op::Get { .. } => Reply::Value(state.clone()),
        Op::Put { value, .. } => {
            *state = Some((value, version + 1));
            Reply::Version(version + 1)
        }
        Op::Delete { .. } => Reply::Deleted(state.take().is_some()),
        Op::Cas {
            expected, value, ..
        } => {
            if expected == version {
                *state = Some((value, version + 1));
                Reply::Cas(Ok(version + 1))
            } else {
                Reply::Cas(Err(version))
            }
        }
        _ => unreachable!("not a key-value op: {op:?}"),
    }
}

#[test]
fn kv_ops_follow_the_version_model_on_a_script() {
    let mut d = Driver::default();
    let script = [
        (1, Op::Get { key: 7 }, Reply::Value(None)),
        (
            1,
            Op::Cas {
                key: 7,
                expected: 1,
                value: v(5),
            },
            Reply::Cas(Err(0)),
        ),
        (
            1,
            Op::Cas {
                key: 7,
                expected: 0,
                value: v(5),
            },
            Reply::Cas(Ok(1)),
        ),
        (
            2,
            Op::Cas {
                key: 7,
                expected: 0,
                value: v(6),
            },
            Reply::Cas(Err(1)),
        ),
        (
            2,
            Op::Put {
                key: 7,
                value: v(8),
            },
            Reply::Version(2),
        ),
        (1, Op::Get { key: 7 }, Reply::Value(Some((v(8), 2)))),
        (
            1,
            Op::Cas {
                key: 7,
                expected: 2,
                value: v(9),
            },
            Reply::Cas(Ok(3)),
        ),
        (2, Op::Get { key: 7 }, Reply::Value(Some((v(9), 3)))),
        (2, Op::Delete { key: 7 }, Reply::Deleted(true)),
        (1, Op::Delete { key: 7 }, Reply::Deleted(false)),
        (
            1,
            Op::Cas {
                key: 7,
                expected: 3,
                value: v(1),
            },
            Reply::Cas(Err(0)),
        ),
        // Re-created after a delete: back to version 1.
        (
            2,
            Op::Put {
                key: 7,
                value: v(1),
            },
            Reply::Version(1),
        ),
        (
            1,
            Op::Put {
                key: 8,
                value: v(4),
            },
            Reply::Version(1),
        ),
    ];
    let mut model = BTreeMap::new();
    for (c, op, want) in script {
        let key = match op {
            Op::Get { key } | Op::Put { key, .. } | Op::Delete { key } | Op::Cas { key, .. } => key,
            _ => unreachable!(),
        };
        assert_eq!(
            model_step(model.entry(key).or_default(), op.clone()),
            want,
            "the model disagrees with the script at {op:?}"
        );
        assert_eq!(d.op(c, op.clone()), want, "c{c}: {op:?}");
    }
    assert_eq!(d.m.read(7), Reply::Value(Some((v(1), 1))));
    assert_eq!(d.m.read(8), Reply::Value(Some((v(4), 1))));
    assert_eq!(d.m.read(9), Reply::Value(None));
}

#[test]
fn retried_put_returns_the_cached_version_and_does_not_execute_again() {
    let mut m = Machine::new();
    let put = client(
        1,
        1,
        Op::Put {
            key: 1,
            value: v(10),
        },
    );
    let first = m.apply(&put);
    assert_eq!(
        first,
        Some(Applied {
            reply: Reply::Version(1),
            executed: true
        })
    );
    for _ in 0..3 {
        // Version 1 again, not 2: the retry is answered from the table.
        assert_eq!(
            m.apply(&put),
            Some(Applied {
                reply: Reply::Version(1),
                executed: false
            })
        );
    }
    assert_eq!(m.read(1), Reply::Value(Some((v(10), 1))));
    assert_eq!(m.last_seq(1), Some(1));

    // The table is keyed by (client, seq): the same seq is a retry whatever
    // it carries, and another client's seq 1 is a different command.
    let retry = m.apply(&client(1, 1, Op::Delete { key: 1 }));
    assert_eq!(
        retry,
        Some(Applied {
            reply: Reply::Version(1),
            executed: false
        })
    );
    assert_eq!(m.read(1), Reply::Value(Some((v(10), 1))));
    let other = m.apply(&client(
        2,
        1,
        Op::Put {
            key: 1,
            value: v(20),
        },
    ));
    assert_eq!(
        other,
        Some(Applied {
            reply: Reply::Version(2),
            executed: true
        })
    );

    // The next seq executes, and then is what a retry answers with.
    let next = client(
        1,
        2,
        Op::Put {
            key: 1,
            value: v(30),
        },
    );
    assert_eq!(
        m.apply(&next),
        Some(Applied {
            reply: Reply::Version(3),
            executed: true
        })
    );
    assert_eq!(
        m.apply(&next),
        Some(Applied {
            reply: Reply::Version(3),
            executed: false
        })
    );
    assert_eq!(m.read(1), Reply::Value(Some((v(30), 3))));
}

#[test]
fn older_seq_is_stale_and_not_executed() {
    let mut m = Machine::new();
    let put = |seq, value| {
        client(
            1,
            seq,
            Op::Put {
                key: 4,
                value: v(value),
            },
        )
    };
    assert_eq!(
        m.apply(&put(5, 50)).map(|a| a.reply),
        Some(Reply::Version(1))
    );
    let before = m.clone();
    for seq in [0, 1, 4] {
        assert_eq!(
            m.apply(&put(seq, 99)),
            Some(Applied {
                reply: Reply::Stale,
                executed: false
            })
        );
    }
    assert_eq!(m, before, "a stale command changed the state");
    assert_eq!(m.last_seq(1), Some(5));
    // A retry of seq 5 still gets its own reply, not Stale.
    assert_eq!(
        m.apply(&put(5, 99)),
        Some(Applied {
            reply: Reply::Version(1),
            executed: false
        })
    );
    // Gaps are fine: clients only need increasing seqs.
    assert_eq!(
        m.apply(&put(9, 90)),
        Some(Applied {
            reply: Reply::Version(2),
            executed: true
        })
    );
    assert_eq!(m.last_seq(1), Some(9));
    assert_eq!(m.last_seq(2), None);
}

#[test]
fn session_expiring_on_a_tick_drops_its_ephemeral_keys_and_releases_its_locks() {
    let mut d = Driver::default();
    d.tick(1_000);
    assert_eq!(
        d.op(1, Op::OpenSession { ttl_us: 500 }),
        Reply::Session(Ok(1_500))
    );
    assert_eq!(
        d.op(
            1,
            Op::PutEphemeral {
                key: 9,
                value: v(1)
            }
        ),
        Reply::Version(1)
    );
    assert_eq!(
        d.op(
            1,
            Op::Put {
                key: 10,
                value: v(2)
            }
        ),
        Reply::Version(1)
    );
    assert_eq!(d.op(1, Op::Acquire { lock: 3 }), Reply::Lock(Ok(1)));
    assert_eq!(d.m.lock_holder(3), Some((1, 1)));

    // Expiry is at 1500: a tick at 1500 leaves the session live.
    d.tick(1_500);
    assert!(d.m.has_session(1));
    assert_eq!(d.m.read(9), Reply::Value(Some((v(1), 1))));

    d.tick(1_501);
    assert!(!d.m.has_session(1));
    assert_eq!(
        d.m.read(9),
        Reply::Value(None),
        "the ephemeral key outlived its session"
    );
    assert_eq!(
        d.m.read(10),
        Reply::Value(Some((v(2), 1))),
        "a persistent key went with the session"
    );
    assert_eq!(
        d.m.lock_holder(3),
        None,
        "the lock outlived its holder's session"
    );

    // Without a session, session operations are refused and change nothing.
    assert_eq!(
        d.op(1, Op::KeepAlive),
        Reply::Session(Err(SessionError::NoSession))
    );
    assert_eq!(
        d.op(
            1,
            Op::PutEphemeral {
                key: 9,
                value: v(3)
            }
        ),
        Reply::Session(Err(SessionError::NoSession))
    );
    assert_eq!(d.m.read(9), Reply::Value(None));
    assert_eq!(
        d.op(1, Op::Acquire { lock: 3 }),
        Reply::Lock(Err(LockError::NoSession))
    );
    assert_eq!(d.m.lock_holder(3), None);
    assert_eq!(d.op(1, Op::CloseSession), Reply::Closed(false));
}

#[test]
fn keepalive_extends_the_session_from_the_current_clock() {
    let mut d = Driver::default();
    assert_eq!(
        d.op(1, Op::OpenSession { ttl_us: 100 }),
        Reply::Session(Ok(100))
    );
    assert_eq!(
        d.op(
            1,
            Op::PutEphemeral {
                key: 1,
                value: v(1)
            }
        ),
        Reply::Version(1)
    );
    d.tick(80);
    assert_eq!(d.op(1, Op::KeepAlive), Reply::Session(Ok(180)));
    d.tick(150); // Past the original expiry: only the keep-alive saves it.
    assert!(d.m.has_session(1));
    assert_eq!(d.m.read(1), Reply::Value(Some((v(1), 1))));
    // A re-open keeps the session's keys and sets the new TTL.
    assert_eq!(
        d.op(1, Op::OpenSession { ttl_us: 40 }),
        Reply::Session(Ok(190))
    );
    assert_eq!(d.op(1, Op::KeepAlive), Reply::Session(Ok(190)));
    assert_eq!(d.m.read(1), Reply::Value(Some((v(1), 1))));
    d.tick(191);
    assert!(!d.m.has_session(1));
    assert_eq!(d.m.read(1), Reply::Value(None));
}

#[test]
fn a_lower_tick_is_ignored_and_the_clock_never_goes_back() {
    let mut d = Driver::default();
    d.tick(100);
    assert_eq!(d.m.clock(), 100);
    assert_eq!(
        d.op(1, Op::OpenSession { ttl_us: 10 }),
        Reply::Session(Ok(110))
    );
    d.tick(50);
    assert_eq!(d.m.clock(), 100);
    assert_eq!(d.op(1, Op::KeepAlive), Reply::Session(Ok(110)));
    d.tick(111);
    assert_eq!(d.m.clock(), 111);
    assert!(!d.m.has_session(1));
}

#[test]
fn fencing_tokens_strictly_increase_across_acquire_release_and_expiry() {
    let mut d = Driver::default();
    let lock = 7;
    d.op(1, Op::OpenSession { ttl_us: 1_000 });
    d.op(2, Op::OpenSession { ttl_us: 1_000 });

    assert_eq!(d.op(1, Op::Acquire { lock }), Reply::Lock(Ok(1)));
    assert_eq!(
        d.op(1, Op::Acquire { lock }),
        Reply::Lock(Ok(1)),
        "re-acquiring a held lock"
    );
    assert_eq!(
        d.op(2, Op::Acquire { lock }),
        Reply::Lock(Err(LockError::HeldBy(1)))
    );
    assert_eq!(
        d.op(2, Op::Release { lock, token: 1 }),
        Reply::Released(false),
        "not the holder"
    );
    assert_eq!(
        d.op(1, Op::Release { lock, token: 2 }),
        Reply::Released(false),
        "wrong token"
    );
    assert_eq!(d.m.lock_holder(lock), Some((1, 1)));
    assert_eq!(
        d.op(1, Op::Release { lock, token: 1 }),
        Reply::Released(true)
    );
    assert_eq!(
        d.op(1, Op::Release { lock, token: 1 }),
        Reply::Released(false),
        "already released"
    );

    // Released: the next grant gets a new token.
    assert_eq!(d.op(2, Op::Acquire { lock }), Reply::Lock(Ok(2)));
    assert_eq!(
        d.op(1, Op::Acquire { lock }),
        Reply::Lock(Err(LockError::HeldBy(2)))
    );

    // Client 2's session expires: its lock is free, and the token moves on.
    d.tick(900);
    d.op(1, Op::KeepAlive);
    d.tick(1_001);
    assert!(!d.m.has_session(2));
    assert_eq!(d.m.lock_holder(lock), None);
    assert_eq!(d.op(1, Op::Acquire { lock }), Reply::Lock(Ok(3)));
    // A late release by the expired holder does nothing.
    assert_eq!(
        d.op(2, Op::Release { lock, token: 2 }),
        Reply::Released(false)
    );
    assert_eq!(d.m.lock_holder(lock), Some((1, 3)));

    // Closing the session releases it too.
    assert_eq!(d.op(1, Op::CloseSession), Reply::Closed(true));
    assert_eq!(d.m.lock_holder(lock), None);
    d.op(2, Op::OpenSession { ttl_us: 1_000 });
    assert_eq!(d.op(2, Op::Acquire { lock }), Reply::Lock(Ok(4)));
    // Tokens count per lock.
    assert_eq!(d.op(2, Op::Acquire { lock: lock + 1 }), Reply::Lock(Ok(1)));
}

#[test]
fn put_makes_an_ephemeral_key_persistent_and_put_ephemeral_claims_a_key() {
    let mut d = Driver::default();
    d.op(1, Op::OpenSession { ttl_us: 1_000 });
    assert_eq!(
        d.op(
            1,
            Op::PutEphemeral {
                key: 5,
                value: v(1)
            }
        ),
        Reply::Version(1)
    );
    assert_eq!(
        d.op(
            2,
            Op::Put {
                key: 5,
                value: v(2)
            }
        ),
        Reply::Version(2)
    );
    assert_eq!(
        d.op(
            1,
            Op::PutEphemeral {
                key: 6,
                value: v(1)
            }
        ),
        Reply::Version(1)
    );
    assert_eq!(
        d.op(
            2,
            Op::Cas {
                key: 6,
                expected: 1,
                value: v(2)
            }
        ),
        Reply::Cas(Ok(2))
    );
    assert_eq!(
        d.op(
            2,
            Op::Put {
                key: 7,
                value: v(1)
            }
        ),
        Reply::Version(1)
    );
    assert_eq!(
        d.op(
            1,
            Op::PutEphemeral {
                key: 7,
                value: v(2)
            }
        ),
        Reply::Version(2)
    );
    assert_eq!(d.op(1, Op::CloseSession), Reply::Closed(true));
    assert_eq!(
        d.m.read(5),
        Reply::Value(Some((v(2), 2))),
        "Put left the key owned by the session"
    );
    assert_eq!(
        d.m.read(6),
        Reply::Value(Some((v(2), 2))),
        "Cas left the key owned by the session"
    );
    assert_eq!(
        d.m.read(7),
        Reply::Value(None),
        "PutEphemeral did not claim the key"
    );
}

#[test]
fn snapshot_keeps_the_dedup_table_while_the_canary_snapshot_reexecutes_a_retry() {
    let mut m = Machine::new();
    let put = client(
        1,
        1,
        Op::Put {
            key: 1,
            value: v(10),
        },
    );
    assert_eq!(m.apply(&put).map(|a| a.reply), Some(Reply::Version(1)));

    let mut good = m.snapshot(true);
    assert_eq!(good, m);
    assert_eq!(good.digest(), m.digest());
    assert_eq!(
        good.apply(&put),
        Some(Applied {
            reply: Reply::Version(1),
            executed: false
        })
    );
    assert_eq!(good.read(1), Reply::Value(Some((v(10), 1))));

    // The canary: a replica restored from this snapshot runs the retry again.
    let mut bad = m.snapshot(false);
    assert_ne!(
        bad.digest(),
        m.digest(),
        "the digest does not cover the dedup table"
    );
    assert_eq!(bad.last_seq(1), None);
    assert_eq!(bad.read(1), m.read(1));
    assert_eq!(
        bad.apply(&put),
        Some(Applied {
            reply: Reply::Version(2),
            executed: true
        })
    );
    assert_eq!(bad.read(1), Reply::Value(Some((v(10), 2))));
}

#[test]
fn same_commands_give_equal_digests_and_different_commands_different_ones() {
    let base = [
        Cmd::Tick { now_us: 10 },
        client(1, 1, Op::OpenSession { ttl_us: 100 }),
        client(
            1,
            2,
            Op::PutEphemeral {
                key: 1,
                value: v(1),
            },
        ),
        client(1, 3, Op::Acquire { lock: 1 }),
        client(
            2,
            1,
            Op::Put {
                key: 2,
                value: v(2),
            },
        ),
        client(
            2,
            2,
            Op::Cas {
                key: 2,
                expected: 1,
                value: v(3),
            },
        ),
    ];
    let run = |extra: &[Cmd]| {
        let mut m = Machine::new();
        for c in base.iter().chain(extra) {
            m.apply(c);
        }
        m
    };
    let a = run(&[]);
    assert_eq!(a, run(&[]));
    assert_eq!(a.digest(), run(&[]).digest());
    // A retry changes nothing, so neither does it change the digest.
    assert_eq!(a.digest(), run(&[base[5].clone()]).digest());

    // Change one part of the state at a time (the test sees the private
    // maps): the digest must notice each.
    type Edit = fn(&mut Machine);
    let edits: [(&str, Edit); 7] = [
        ("a value", |m| m.data.get_mut(&2).unwrap().value = v(77)),
        ("a key's owner", |m| {
            m.data.get_mut(&2).unwrap().owner = Some(1)
        }),
        ("a session's expiry", |m| {
            m.sessions.get_mut(&1).unwrap().expires_us += 1
        }),
        ("a lock's holder", |m| {
            m.locks.get_mut(&1).unwrap().holder = 2
        }),
        ("a lock's next token", |m| _ = m.tokens.insert(2, 1)),
        ("the dedup table", |m| m.dedup.get_mut(&2).unwrap().0 += 1),
        ("the clock", |m| m.clock_us += 1),
    ];
    let mut digests = vec![a.digest()];
    for (what, edit) in edits {
        let mut b = a.clone();
        edit(&mut b);
        let d = b.digest();
        assert!(!digests.contains(&d), "the digest does not see {what}");
        digests.push(d);
    }
    assert_ne!(
        run(&[client(
            3,
            1,
            Op::Put {
                key: 9,
                value: v(0)
            }
        )])
        .digest(),
        a.digest()
    );
    // Order matters too: Put-then-Delete and Delete-then-Put differ.
    let put = client(
        3,
        1,
        Op::Put {
            key: 2,
            value: v(5),
        },
    );
    let del = client(4, 1, Op::Delete { key: 2 });
    assert_ne!(
        run(&[put.clone(), del.clone()]).digest(),
        run(&[del, put]).digest()
    );
}

/// xorshift64*: deterministic, and enough to shuffle commands.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Persistent keys are `0..KEYS`; ephemeral ones live above `EPHEMERAL`, so
/// the reference model of the persistent ones needs no session logic.
const KEYS: u64 = 4;
const EPHEMERAL: u64 = 100;
const CLIENTS: u32 = 4;

fn random_op(rng: &mut Rng) -> Op {
    let key = rng.below(KEYS);
    let value = Value::from(rng.below(1_000));
    match rng.below(20) {
        0..=2 => Op::Get { key },
        3..=5 => Op::Put { key, value },
        6..=7 => Op::Delete { key },
        8..=10 => Op::Cas {
            key,
            expected: rng.below(4),
            value,
        },
        11 => Op::OpenSession {
            ttl_us: 100 + rng.below(900),
        },
        12..=13 => Op::KeepAlive,
        14 => Op::CloseSession,
        15 => Op::PutEphemeral {
            key: EPHEMERAL + key,
            value,
        },
        16..=17 => Op::Acquire { lock: rng.below(2) },
        _ => Op::Release {
            lock: rng.below(2),
            token: 1 + rng.below(8),
        },
    }
}

#[test]
fn random_commands_agree_with_the_reference_model() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut m = Machine::new();
    let mut model: BTreeMap<Key, Option<(Value, u64)>> = BTreeMap::new();
    // Per client: its last command and the reply it got.
    let mut last: BTreeMap<ClientId, (Command, Reply)> = BTreeMap::new();
    let mut max_token: BTreeMap<LockId, u64> = BTreeMap::new();
    let mut log = Vec::new();
    let (mut retries, mut stales, mut expiries, mut cas_ok, mut cas_err, mut held_by) =
        (0, 0, 0, 0, 0, 0);
    let mut now_us = 0;
    let mut halfway = None;

    for step in 0..2_000 {
        if step == 1_000 {
            halfway = Some(m.snapshot(true));
        }
        let c = rng.below(u64::from(CLIENTS)) as ClientId;
        let roll = rng.below(100);
        let cmd = if roll < 12 {
            // Mostly forward, sometimes behind (a slower leader's clock).
            now_us = (now_us + rng.below(200)).saturating_sub(rng.below(40));
            Cmd::Tick { now_us }
        } else if roll < 20 && last.contains_key(&c) {
            Cmd::Client(last[&c].0.clone())
        } else if roll < 24 && last.get(&c).is_some_and(|(cmd, _)| cmd.seq > 1) {
            let seq = rng.below(last[&c].0.seq);
            Cmd::Client(Command {
                client: c,
                seq,
                op: random_op(&mut rng),
            })
        } else {
            let seq = last
                .get(&c)
                .map_or(1, |(cmd, _)| cmd.seq + 1 + rng.below(2));
            Cmd::Client(Command {
                client: c,
                seq,
                op: random_op(&mut rng),
            })
        };
        log.push(cmd.clone());

        let live_before: Vec<bool> = (0..CLIENTS).map(|c| m.has_session(c)).collect();
        let clock_before = m.clock();
        let applied = m.apply(&cmd);
        assert!(
            m.clock() >= clock_before,
            "step {step}: the clock went back"
        );

        let cmd = match cmd {
            Cmd::Tick { .. } => {
                assert_eq!(applied, None);
                expiries += (0..CLIENTS)
                    .filter(|&c| live_before[c as usize] && !m.has_session(c))
                    .count();
                continue;
            }
            Cmd::Client(cmd) => cmd,
            Cmd::Peer { .. } => unreachable!("the workload adds no replica"),
        };
        let applied = applied.expect("a client command has a reply");
        match last.get(&c) {
            Some((prev, reply)) if cmd.seq == prev.seq => {
                assert_eq!(
                    applied,
                    Applied {
                        reply: reply.clone(),
                        executed: false
                    },
                    "step {step}: retry of {prev:?}"
                );
                retries += 1;
                continue;
            }
            Some((prev, _)) if cmd.seq < prev.seq => {
                assert_eq!(
                    applied,
                    Applied {
                        reply: Reply::Stale,
                        executed: false
                    },
                    "step {step}"
                );
                stales += 1;
                continue;
            }
            _ => {}
        }
        assert!(applied.executed, "step {step}: {cmd:?} was not executed");
        assert_eq!(m.last_seq(c), Some(cmd.seq));
        last.insert(c, (cmd.clone(), applied.reply.clone()));

        match (cmd.op.clone(), applied.reply) {
            (
                Op::Get { key } | Op::Put { key, .. } | Op::Delete { key } | Op::Cas { key, .. },
                reply,
            ) => {
                let want = model_step(model.entry(key).or_default(), cmd.op.clone());
                assert_eq!(reply, want, "step {step}: c{c} {:?}", cmd.op);
                cas_ok += usize::from(matches!(reply, Reply::Cas(Ok(_))));
                cas_err += usize::from(matches!(reply, Reply::Cas(Err(_))));
            }
            (Op::Acquire { lock }, Reply::Lock(Ok(token))) => {
                let max = max_token.entry(lock).or_insert(0);
                assert!(
                    token >= *max,
                    "step {step}: lock {lock} token {token} after {max}"
                );
                *max = token;
                assert_eq!(m.lock_holder(lock), Some((c, token)));
            }
            (Op::Acquire { lock }, Reply::Lock(Err(LockError::HeldBy(h)))) => {
                assert_ne!(h, c);
                assert_eq!(m.lock_holder(lock).map(|(h, _)| h), Some(h));
                held_by += 1;
            }
            (Op::OpenSession { .. } | Op::KeepAlive, Reply::Session(Ok(expires_us))) => {
                assert!(expires_us >= m.clock());
                assert!(m.has_session(c));
            }
            _ => {}
        }
        for key in 0..KEYS {
            let want = model.get(&key).cloned().flatten();
            assert_eq!(m.read(key), Reply::Value(want), "step {step}: key {key}");
        }
    }

    // "Sometimes" properties: the run reached the cases it claims to test.
    for (what, n) in [
        ("retries", retries),
        ("stale commands", stales),
        ("session expiries", expiries),
        ("successful CAS", cas_ok),
        ("failed CAS", cas_err),
        ("contended acquires", held_by),
    ] {
        assert!(n >= 5, "only {n} {what} in 2000 commands");
    }
    assert!(
        max_token.values().all(|&t| t >= 3),
        "locks were granted too rarely: {max_token:?}"
    );

    // Replicas converge: replaying the log from scratch, or the second half
    // onto the halfway snapshot, reaches the same state.
    let mut replay = Machine::new();
    log.iter().for_each(|c| _ = replay.apply(c));
    assert_eq!(replay.digest(), m.digest());
    let mut restored = halfway.expect("a snapshot at step 1000");
    log[1_000..].iter().for_each(|c| _ = restored.apply(c));
    assert_eq!(restored, m);
    assert_eq!(restored.digest(), m.digest());
}

#[test]
fn a_snapshot_and_a_batch_of_commands_read_back_from_disk_bytes() {
    use multipaxos::storage::{encode_into, load, new_file, Loaded};
    use multipaxos::{Entry, Snap, Write};
    use std::sync::Arc;
    let mut d = Driver::default();
    d.tick(1_000);
    d.op(1, Op::OpenSession { ttl_us: 500 });
    d.op(
        1,
        Op::PutEphemeral {
            key: 9,
            value: v(1),
        },
    );
    d.op(
        2,
        Op::Put {
            key: 10,
            value: v(2),
        },
    );
    d.op(1, Op::Acquire { lock: 3 });
    let cmds: Arc<[Cmd]> = vec![
        client(
            2,
            3,
            Op::Cas {
                key: 10,
                expected: 1,
                value: v(4),
            },
        ),
        Cmd::Tick { now_us: 2_000 },
    ]
    .into();
    let writes: [Write<Cmd, Arc<Machine>>; 3] = [
        Write::Init,
        Write::Snapshot(Snap {
            configs: [(0, multipaxos::Members::first(1))].into(),
            ..Snap::new(4, Arc::new(d.m.clone()))
        }),
        Write::Chosen {
            slot: 4,
            entry: Entry::Cmds(cmds.clone()),
        },
    ];
    let mut f = new_file(3, &writes[0]);
    for w in &writes[1..] {
        encode_into(w, &mut f);
    }
    let Loaded::Ok { state, torn_bytes } = load::<Cmd, Arc<Machine>>(&f, 3) else {
        panic!("the file did not load")
    };
    assert_eq!(torn_bytes, 0);
    let snap = state.snapshot.expect("the snapshot is on disk");
    assert_eq!((snap.upto, &*snap.state), (4, &d.m));
    assert_eq!(snap.state.digest(), d.m.digest());
    assert_eq!(state.chosen.get(&4), Some(&Entry::Cmds(cmds)));
}

/// Postcard's encoding of a command, pinned: commands are the payload of
/// the log's records on disk (`multipaxos::storage`), so if this changes,
/// the bytes on disk changed and the format needs a new `wal::VERSION`.
#[test]
fn a_commands_encoding_is_pinned() {
    let hex = |c: &Cmd| -> String {
        postcard::to_stdvec(c)
            .unwrap()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    let put = client(
        1,
        2,
        Op::Put {
            key: 3,
            value: Value::from("ab"),
        },
    );
    // Client, then client 1, seq 2, Put, key 3, then the value: its length
    // and its bytes.
    assert_eq!(hex(&put), "0001020103026162");
    assert_eq!(hex(&Cmd::Tick { now_us: 300 }), "01ac02");
    // An address for the book: Peer, id 3, then each address's length and
    // bytes.
    let addrs = Addrs {
        peer: "a:1".into(),
        client: "b".into(),
    };
    assert_eq!(hex(&Cmd::Peer { id: 3, addrs }), "020303613a310162");
    // A long value (held behind a pointer, not in place) is written the
    // same way and reads back.
    let long = Value::from(vec![7u8; 100]);
    let cas = client(
        1,
        3,
        Op::Cas {
            key: 3,
            expected: 1,
            value: long.clone(),
        },
    );
    let bytes = postcard::to_stdvec(&cas).unwrap();
    assert_eq!(&bytes[..7], [0, 1, 3, 3, 3, 1, 100]);
    assert_eq!(bytes.len(), 7 + 100);
    assert_eq!(postcard::from_bytes::<Cmd>(&bytes).unwrap(), cas);
}
