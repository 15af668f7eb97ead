//! The service's replicated state machine: a pure function from the log to a
//! state, applied by every replica in log order. Nothing here reads a clock,
//! draws a random number or iterates a hash map, so replicas that applied the
//! same prefix of the log hold equal states (and equal [`Machine::digest`]s).
//!
//! - **Keys** hold a value and a version: 1 at creation, +1 per successful
//!   write. Compare-and-set names the version it expects (0: absent). A delete
//!   forgets the key, so a later put creates it afresh at version 1. This is
//!   exactly `linearizability::KvModel`, one key at a time.
//! - **Time comes from the log.** The leader proposes its clock reading as
//!   [`Cmd::Tick`]; the machine's clock is the highest tick applied (a lower
//!   one, from a deposed leader with a slower clock, is ignored). Sessions
//!   expire only on ticks, so every replica expires the same sessions at the
//!   same log position, whatever its own clock says.
//! - **Sessions** belong to clients, with a TTL renewed by `KeepAlive`. When
//!   one expires or closes, its ephemeral keys vanish and its locks are
//!   released, in the same step.
//! - **Locks are fenced** (Chubby's sequencers): each grant of a lock hands
//!   out a token one higher than any token that lock ever had, so a resource
//!   that has seen token `t` can reject a delayed request from a holder whose
//!   session expired meanwhile (it carries a token below `t`).
//! - **Exactly once**: the dedup table keeps each client's last executed
//!   `seq` and its reply. Clients have one request outstanding at a time, so
//!   a command with that `seq` is a retry (of a command that may have been
//!   proposed twice, by two leaders) and gets the stored reply without
//!   executing again; an older one is [`Reply::Stale`]. The table is part of
//!   the state: a snapshot without it (the canary `snapshot-without-dedup`)
//!   lets a replica restored from it execute a retry twice.

use rustc_hash::FxHasher;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

pub use crate::value::{Value, VALUE_MAX};

pub type ClientId = u32;
pub type Key = u64;
pub type LockId = u64;

/// A client's operation. Not `Copy`: values are bytes (cloning one copies
/// a pointer).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Op {
    Get {
        key: Key,
    },
    Put {
        key: Key,
        value: Value,
    },
    Delete {
        key: Key,
    },
    /// Write `value` if the key's version is `expected` (0 = key absent).
    Cas {
        key: Key,
        expected: u64,
        value: Value,
    },
    /// Open (or re-open) this client's session with a TTL in microseconds.
    OpenSession {
        ttl_us: u64,
    },
    KeepAlive,
    CloseSession,
    /// Put a key owned by the client's live session: it vanishes when the
    /// session ends.
    PutEphemeral {
        key: Key,
        value: Value,
    },
    /// Take lock `lock` for this client's live session; returns a fencing
    /// token.
    Acquire {
        lock: LockId,
    },
    Release {
        lock: LockId,
        token: u64,
    },
}

impl Op {
    /// The value the operation writes, if it writes one.
    pub fn value(&self) -> Option<&Value> {
        match self {
            Op::Put { value, .. } | Op::Cas { value, .. } | Op::PutEphemeral { value, .. } => {
                Some(value)
            }
            _ => None,
        }
    }
}

/// A client command, tagged (client, seq) for exactly-once execution.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Command {
    pub client: ClientId,
    pub seq: u64,
    pub op: Op,
}

/// What the log carries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Cmd {
    Client(Command),
    /// The leader's clock reading (its local time in microseconds), proposed
    /// periodically: the machine's notion of time. Sessions expire on ticks.
    Tick {
        now_us: u64,
    },
    /// An operator added replica `id` (a membership change): where its
    /// peers and clients reach it. The replicated address book, so that
    /// every replica, and a replica that joins later, learns it from the
    /// log rather than from its own flags. Proposed only by a leader, with
    /// the configuration that adds `id`.
    Peer {
        id: u8,
        addrs: Addrs,
    },
}

/// Where a replica is reached: its peer address and its client address, as
/// the operator gave them (the service stores them; the real server parses
/// them, and the leader refuses one longer than [`ADDR_MAX`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Addrs {
    pub peer: String,
    pub client: String,
}

/// The longest address the service stores.
pub const ADDR_MAX: usize = 128;

/// A command's weight for the leader's byte budgets: its value's bytes,
/// plus a fixed allowance for the rest of it (ids, key, version, tags).
impl multipaxos::Weight for Cmd {
    fn weight(&self) -> usize {
        match self {
            Cmd::Client(c) => 32 + c.op.value().map_or(0, |v| v.len()),
            Cmd::Tick { .. } => 16,
            Cmd::Peer { addrs, .. } => 16 + addrs.peer.len() + addrs.client.len(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reply {
    /// Get: (value, version), or absent.
    Value(Option<(Value, u64)>),
    /// Put / PutEphemeral: the new version.
    Version(u64),
    /// Delete: whether the key existed.
    Deleted(bool),
    /// Cas: Ok(new version) or Err(actual version).
    Cas(Result<u64, u64>),
    /// OpenSession / KeepAlive: Ok(machine time at which the session expires
    /// if not kept alive).
    Session(Result<u64, SessionError>),
    /// CloseSession: whether a live session was closed.
    Closed(bool),
    /// Acquire: Ok(fencing token) or why not.
    Lock(Result<u64, LockError>),
    /// Release: whether (lock, token) named the current holding and it was
    /// released.
    Released(bool),
    /// The command's seq is older than the client's last executed seq: not
    /// executed.
    Stale,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SessionError {
    NoSession,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LockError {
    NoSession,
    HeldBy(ClientId),
}

/// The result of applying one log command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub reply: Reply,
    /// False when the dedup table answered (a retry of an executed command,
    /// or `Stale`).
    pub executed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Item {
    value: Value,
    /// ≥ 1 while the key exists.
    version: u64,
    /// The session owning an ephemeral key; `None` for a persistent one.
    owner: Option<ClientId>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Session {
    ttl_us: u64,
    /// Machine time after which the next tick ends the session.
    expires_us: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Holding {
    holder: ClientId,
    token: u64,
}

/// The coordination service's state. Every map is a `BTreeMap`, so the
/// derived `Hash` (and [`Machine::digest`]) visits entries in key order and
/// does not depend on insertion order or allocation. (`Ord` is only for the
/// model checker, which keeps messages, snapshots included, sorted.) Its
/// serde encoding is a snapshot's payload on disk (`multipaxos::storage`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Machine {
    data: BTreeMap<Key, Item>,
    sessions: BTreeMap<ClientId, Session>,
    locks: BTreeMap<LockId, Holding>,
    /// The last token each lock ever handed out: kept after release and
    /// expiry, so tokens are never reused.
    tokens: BTreeMap<LockId, u64>,
    /// client -> (last executed seq, its reply).
    dedup: BTreeMap<ClientId, (u64, Reply)>,
    clock_us: u64,
    /// The address book: replicas added by a membership change, by id (the
    /// first replicas' addresses are their servers' flags).
    peers: BTreeMap<u8, Addrs>,
}

impl Machine {
    pub fn new() -> Machine {
        Machine::default()
    }

    /// Applies one log command: a tick advances the clock and an address
    /// goes into the book (both return `None`); a client command goes through the dedup table first.
    pub fn apply(&mut self, cmd: &Cmd) -> Option<Applied> {
        self.apply_with(cmd, false)
    }

    /// [`Machine::apply`], or with `keep_owner` canary 22
    /// (`plain-write-keeps-owner`): a Put or Cas on an ephemeral key keeps
    /// its owner, so the key still vanishes with that session.
    pub fn apply_with(&mut self, cmd: &Cmd, keep_owner: bool) -> Option<Applied> {
        let applied = match cmd {
            Cmd::Tick { now_us } => {
                self.tick(*now_us);
                None
            }
            Cmd::Client(c) => Some(self.client(c, keep_owner)),
            Cmd::Peer { id, addrs } => {
                self.peers.insert(*id, addrs.clone());
                None
            }
        };
        self.check_invariants();
        applied
    }

    /// A `Get` against the current state, with no dedup and no change: what
    /// a leader answers from its lease.
    pub fn read(&self, key: Key) -> Reply {
        Reply::Value(self.data.get(&key).map(|i| (i.value.clone(), i.version)))
    }

    /// The address book: the replicas added by membership changes.
    pub fn peers(&self) -> &BTreeMap<u8, Addrs> {
        &self.peers
    }

    /// The machine's clock: the highest tick applied.
    pub fn clock(&self) -> u64 {
        self.clock_us
    }

    /// A copy to store as a snapshot. `keep_dedup = false` is the canary
    /// `snapshot-without-dedup`: the copy forgets which commands ran, so a
    /// retry applied after restoring it executes a second time.
    pub fn snapshot(&self, keep_dedup: bool) -> Machine {
        let mut m = self.clone();
        if !keep_dedup {
            m.dedup.clear();
        }
        m
    }

    /// A fingerprint of the whole state (data, sessions, locks, tokens, the
    /// dedup table, the clock), for convergence checks between replicas.
    /// FxHasher has a fixed key, so the digest is the same in every process.
    pub fn digest(&self) -> u64 {
        let mut h = FxHasher::default();
        self.hash(&mut h);
        h.finish()
    }

    /// The last executed seq of `client`.
    pub fn last_seq(&self, client: ClientId) -> Option<u64> {
        self.dedup.get(&client).map(|&(seq, _)| seq)
    }

    /// The current holder of `lock` and its fencing token.
    pub fn lock_holder(&self, lock: LockId) -> Option<(ClientId, u64)> {
        self.locks.get(&lock).map(|h| (h.holder, h.token))
    }

    /// Whether `client` has a live session.
    pub fn has_session(&self, client: ClientId) -> bool {
        self.sessions.contains_key(&client)
    }

    fn client(&mut self, c: &Command, keep_owner: bool) -> Applied {
        if let Some((last, reply)) = self.dedup.get(&c.client) {
            let last = *last;
            if c.seq == last {
                return Applied {
                    reply: reply.clone(),
                    executed: false,
                };
            }
            if c.seq < last {
                return Applied {
                    reply: Reply::Stale,
                    executed: false,
                };
            }
            assert!(c.seq > last);
        }
        let reply = self.execute(c.client, &c.op, keep_owner);
        assert_ne!(reply, Reply::Stale, "only the dedup table answers Stale");
        self.dedup.insert(c.client, (c.seq, reply.clone()));
        Applied {
            reply,
            executed: true,
        }
    }

    fn execute(&mut self, client: ClientId, op: &Op, keep_owner: bool) -> Reply {
        // BUG (canary 22): a plain write leaves an ephemeral key's owner.
        let plain = |m: &Machine, key: Key| match keep_owner {
            true => m.data.get(&key).and_then(|i| i.owner),
            false => None,
        };
        match *op {
            Op::Get { key } => self.read(key),
            Op::Put { key, ref value } => Reply::Version(self.write(key, value, plain(self, key))),
            Op::Delete { key } => Reply::Deleted(self.data.remove(&key).is_some()),
            Op::Cas {
                key,
                expected,
                ref value,
            } => {
                let version = self.version(key);
                if version == expected {
                    // Like Put: a successful Cas leaves a persistent key (as
                    // an etcd txn put without a lease detaches the key).
                    Reply::Cas(Ok(self.write(key, value, plain(self, key))))
                } else {
                    Reply::Cas(Err(version))
                }
            }
            Op::OpenSession { ttl_us } => {
                // A re-open keeps the session (its keys and locks) and sets a
                // new TTL. Saturating: a huge TTL means "never expires".
                let expires_us = self.clock_us.saturating_add(ttl_us);
                self.sessions.insert(client, Session { ttl_us, expires_us });
                Reply::Session(Ok(expires_us))
            }
            Op::KeepAlive => {
                let clock_us = self.clock_us;
                match self.sessions.get_mut(&client) {
                    Some(s) => {
                        let expires_us = clock_us.saturating_add(s.ttl_us);
                        // The clock is monotone and the TTL unchanged, so a
                        // keep-alive never shortens the session.
                        assert!(expires_us >= s.expires_us);
                        s.expires_us = expires_us;
                        Reply::Session(Ok(expires_us))
                    }
                    None => Reply::Session(Err(SessionError::NoSession)),
                }
            }
            Op::CloseSession => Reply::Closed(self.end_session(client)),
            Op::PutEphemeral { key, ref value } => {
                if !self.has_session(client) {
                    return Reply::Session(Err(SessionError::NoSession));
                }
                Reply::Version(self.write(key, value, Some(client)))
            }
            Op::Acquire { lock } => Reply::Lock(self.acquire(client, lock)),
            Op::Release { lock, token } => {
                let named = Holding {
                    holder: client,
                    token,
                };
                if self.locks.get(&lock) == Some(&named) {
                    self.locks.remove(&lock);
                    Reply::Released(true)
                } else {
                    Reply::Released(false)
                }
            }
        }
    }

    /// The key's version, 0 when absent.
    fn version(&self, key: Key) -> u64 {
        self.data.get(&key).map_or(0, |i| i.version)
    }

    /// Writes `key` (owned by `owner`'s session if ephemeral) and returns
    /// its new version.
    fn write(&mut self, key: Key, value: &Value, owner: Option<ClientId>) -> u64 {
        if let Some(o) = owner {
            assert!(
                self.has_session(o),
                "ephemeral key {key} for c{o} without a session"
            );
        }
        let version = self.version(key) + 1;
        assert!(version >= 1);
        self.data.insert(
            key,
            Item {
                value: value.clone(),
                version,
                owner,
            },
        );
        version
    }

    fn acquire(&mut self, client: ClientId, lock: LockId) -> Result<u64, LockError> {
        if !self.has_session(client) {
            return Err(LockError::NoSession);
        }
        if let Some(h) = self.locks.get(&lock) {
            return if h.holder == client {
                Ok(h.token)
            } else {
                Err(LockError::HeldBy(h.holder))
            };
        }
        let last = self.tokens.entry(lock).or_insert(0);
        let token = *last + 1;
        assert!(token > *last, "fencing tokens of lock {lock} must increase");
        *last = token;
        self.locks.insert(
            lock,
            Holding {
                holder: client,
                token,
            },
        );
        Ok(token)
    }

    /// Advances the clock to `now_us` and ends every session that expired
    /// before it.
    fn tick(&mut self, now_us: u64) {
        let before_us = self.clock_us;
        // A tick below the clock comes from a leader whose clock is behind a
        // predecessor's: time never goes back, so it changes nothing.
        self.clock_us = self.clock_us.max(now_us);
        assert!(self.clock_us >= before_us, "the clock went back");
        let expired: Vec<ClientId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expires_us < self.clock_us)
            .map(|(&c, _)| c)
            .collect();
        for c in expired {
            let ended = self.end_session(c);
            assert!(ended);
        }
    }

    /// Ends `client`'s session, if live: its ephemeral keys and its locks go
    /// with it. Tokens stay in `tokens`, so the next grant is higher.
    fn end_session(&mut self, client: ClientId) -> bool {
        if self.sessions.remove(&client).is_none() {
            return false;
        }
        self.data.retain(|_, i| i.owner != Some(client));
        self.locks.retain(|_, h| h.holder != client);
        true
    }

    /// The invariants tying the maps together: a full scan after every
    /// command, on in every build (release campaigns included), as
    /// TigerBeetle keeps its assertions on in production.
    fn check_invariants(&self) {
        for (k, i) in &self.data {
            assert!(i.version >= 1, "key {k} present at version 0");
            if let Some(o) = i.owner {
                assert!(
                    self.has_session(o),
                    "ephemeral key {k} outlived c{o}'s session"
                );
            }
        }
        for (s, session) in &self.sessions {
            // A tick ends every session that expired before the clock.
            assert!(
                session.expires_us >= self.clock_us,
                "c{s}'s session outlived its expiry"
            );
        }
        for (l, h) in &self.locks {
            assert!(
                self.has_session(h.holder),
                "lock {l} held by c{} without a session",
                h.holder
            );
            assert!(h.token >= 1, "lock {l} held with token 0");
            // The holding is the lock's latest grant: no later token exists.
            assert_eq!(
                self.tokens.get(l),
                Some(&h.token),
                "lock {l} held with a stale token"
            );
        }
        for (c, (_, reply)) in &self.dedup {
            assert_ne!(*reply, Reply::Stale, "c{c}: Stale is never recorded");
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
