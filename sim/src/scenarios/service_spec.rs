//! K4, the service's whole meaning: every command the service executed,
//! replayed in log order on this specification, must get the reply the
//! service gave.
//!
//! K3 (linearizability) judges only the plain keys' reads and writes: an
//! ephemeral key vanishes when its owner's session ends, at a tick of the
//! service's clock, which no client history can place. This specification
//! judges everything else, and those too, one executed command at a time,
//! as the checker sees them leave the first replica to execute each slot:
//!
//! - a key holds a value and a version (the number of writes since it was
//!   last absent), and an owner if it is ephemeral; a Put or a successful
//!   Cas leaves it plain, whoever owned it; a PutEphemeral makes it the
//!   writer's (and needs a live session);
//! - a session lives until a tick moves the clock past its expiry (the
//!   clock when it was opened or kept alive, plus its TTL) or it is
//!   closed; then its ephemeral keys are gone and its locks are free;
//! - a lock's tokens increase by one with each new holder, forever; a
//!   holder asking again gets its own token back; Release needs the exact
//!   (holder, token).
//!
//! It is written from that text, not from `kv::machine`; what it finds is
//! a K4 violation, and each combination of operation and key state it
//! meets is counted, for coverage.

use kv::{LockError, Op, Reply, SessionError, Value};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    value: Value,
    version: u64,
    owner: Option<u32>,
}

/// What the specification has seen happen, for coverage marks.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seen {
    /// A Put, Cas or Delete on a key some session owned.
    PlainWriteOnEphemeral,
    /// A PutEphemeral over a key that was plain or another session's.
    EphemeralOverOther,
    /// A session ended by a tick took keys or locks with it.
    ExpiryTookState,
    /// A session closed by its client took keys or locks with it.
    CloseTookState,
    /// An operation that needs a session, without one.
    NoSession,
    /// A Cas on an absent key (never written, or deleted).
    CasOnAbsent,
}

/// The marks, in [`Seen`] order.
pub const MARKS: [&str; 6] = [
    "service: plain write on an ephemeral key",
    "service: ephemeral write over a plain or another's key",
    "service: session expiry took keys or locks",
    "service: session close took keys or locks",
    "service: operation without a session",
    "service: compare-and-set on an absent key",
];

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Spec {
    keys: BTreeMap<u64, Key>,
    /// client -> (TTL, expiry).
    sessions: BTreeMap<u32, (u64, u64)>,
    /// lock -> (holder, token).
    locks: BTreeMap<u64, (u32, u64)>,
    /// lock -> the last token it ever handed out.
    tokens: BTreeMap<u64, u64>,
    clock: u64,
    /// Per [`Seen`], how often.
    pub seen: [u64; 6],
}

impl Spec {
    fn saw(&mut self, s: Seen) {
        self.seen[s as usize] += 1;
    }

    /// A tick of the service's clock.
    pub fn tick(&mut self, now_us: u64) {
        self.clock = self.clock.max(now_us);
        let clock = self.clock;
        let over: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(_, (_, expiry))| *expiry < clock)
            .map(|(c, _)| *c)
            .collect();
        for c in over {
            if self.end(c) {
                self.saw(Seen::ExpiryTookState);
            }
        }
    }

    /// Ends `c`'s session; whether it took keys or locks with it.
    fn end(&mut self, c: u32) -> bool {
        self.sessions.remove(&c);
        let (keys, locks) = (self.keys.len(), self.locks.len());
        self.keys.retain(|_, k| k.owner != Some(c));
        self.locks.retain(|_, (holder, _)| *holder != c);
        keys + locks > self.keys.len() + self.locks.len()
    }

    fn version(&self, key: u64) -> u64 {
        self.keys.get(&key).map_or(0, |k| k.version)
    }

    fn write(&mut self, key: u64, value: &Value, owner: Option<u32>) -> u64 {
        let version = self.version(key) + 1;
        let old = self.keys.insert(
            key,
            Key {
                value: value.clone(),
                version,
                owner,
            },
        );
        let old_owner = old.and_then(|k| k.owner);
        match owner {
            None if old_owner.is_some() => self.saw(Seen::PlainWriteOnEphemeral),
            Some(o) if old_owner != Some(o) && version > 1 => self.saw(Seen::EphemeralOverOther),
            _ => {}
        }
        version
    }

    fn live(&mut self, client: u32) -> bool {
        let live = self.sessions.contains_key(&client);
        if !live {
            self.saw(Seen::NoSession);
        }
        live
    }

    /// The reply the service owes `client`'s `op`, executed now (not a
    /// retry the dedup table answers).
    pub fn execute(&mut self, client: u32, op: &Op) -> Reply {
        let clock = self.clock;
        match op {
            Op::Get { key } => {
                Reply::Value(self.keys.get(key).map(|k| (k.value.clone(), k.version)))
            }
            Op::Put { key, value } => Reply::Version(self.write(*key, value, None)),
            Op::Delete { key } => {
                if self.keys.get(key).is_some_and(|k| k.owner.is_some()) {
                    self.saw(Seen::PlainWriteOnEphemeral);
                }
                Reply::Deleted(self.keys.remove(key).is_some())
            }
            Op::Cas {
                key,
                expected,
                value,
            } => {
                let version = self.version(*key);
                if version == 0 {
                    self.saw(Seen::CasOnAbsent);
                }
                match version == *expected {
                    true => Reply::Cas(Ok(self.write(*key, value, None))),
                    false => Reply::Cas(Err(version)),
                }
            }
            Op::OpenSession { ttl_us } => {
                let expiry = clock.saturating_add(*ttl_us);
                self.sessions.insert(client, (*ttl_us, expiry));
                Reply::Session(Ok(expiry))
            }
            Op::KeepAlive => match self.sessions.get_mut(&client) {
                Some((ttl, expiry)) => {
                    *expiry = clock.saturating_add(*ttl);
                    Reply::Session(Ok(*expiry))
                }
                None => {
                    self.saw(Seen::NoSession);
                    Reply::Session(Err(SessionError::NoSession))
                }
            },
            Op::CloseSession => {
                let live = self.live(client);
                if live && self.end(client) {
                    self.saw(Seen::CloseTookState);
                }
                Reply::Closed(live)
            }
            Op::PutEphemeral { key, value } => match self.live(client) {
                true => Reply::Version(self.write(*key, value, Some(client))),
                false => Reply::Session(Err(SessionError::NoSession)),
            },
            Op::Acquire { lock } => {
                if !self.live(client) {
                    return Reply::Lock(Err(LockError::NoSession));
                }
                match self.locks.get(lock) {
                    Some((holder, token)) if *holder == client => Reply::Lock(Ok(*token)),
                    Some((holder, _)) => Reply::Lock(Err(LockError::HeldBy(*holder))),
                    None => {
                        let token = self.tokens.get(lock).copied().unwrap_or(0) + 1;
                        self.tokens.insert(*lock, token);
                        self.locks.insert(*lock, (client, token));
                        Reply::Lock(Ok(token))
                    }
                }
            }
            Op::Release { lock, token } => {
                let exact = self.locks.get(lock) == Some(&(client, *token));
                if exact {
                    self.locks.remove(lock);
                }
                Reply::Released(exact)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Value {
        Value::from(s.as_bytes().to_vec())
    }

    #[test]
    fn a_plain_write_detaches_an_ephemeral_key_and_a_session_end_takes_the_rest() {
        let mut s = Spec::default();
        let open = Op::OpenSession { ttl_us: 100 };
        assert_eq!(s.execute(1, &open), Reply::Session(Ok(100)));
        let eph = |key| Op::PutEphemeral { key, value: v("e") };
        assert_eq!(s.execute(1, &eph(7)), Reply::Version(1));
        assert_eq!(s.execute(1, &eph(8)), Reply::Version(1));
        // c2 writes key 7 plainly: it outlives c1's session.
        let put = Op::Put {
            key: 7,
            value: v("p"),
        };
        assert_eq!(s.execute(2, &put), Reply::Version(2));
        s.tick(101);
        assert_eq!(
            s.execute(2, &Op::Get { key: 7 }),
            Reply::Value(Some((v("p"), 2)))
        );
        assert_eq!(s.execute(2, &Op::Get { key: 8 }), Reply::Value(None));
        assert_eq!(s.seen[Seen::PlainWriteOnEphemeral as usize], 1);
        assert_eq!(s.seen[Seen::ExpiryTookState as usize], 1);
        // Without a session: no ephemeral write, no lock, no close.
        assert_eq!(
            s.execute(1, &eph(9)),
            Reply::Session(Err(SessionError::NoSession))
        );
        assert_eq!(
            s.execute(1, &Op::Acquire { lock: 0 }),
            Reply::Lock(Err(LockError::NoSession))
        );
        assert_eq!(s.execute(1, &Op::CloseSession), Reply::Closed(false));
        // A Cas on the absent key 8 with expected 0 creates it.
        let cas = Op::Cas {
            key: 8,
            expected: 0,
            value: v("c"),
        };
        assert_eq!(s.execute(2, &cas), Reply::Cas(Ok(1)));
        assert_eq!(s.seen[Seen::CasOnAbsent as usize], 1);
    }

    #[test]
    fn locks_hand_out_increasing_tokens_and_a_close_frees_them() {
        let mut s = Spec::default();
        for c in [1, 2] {
            s.execute(c, &Op::OpenSession { ttl_us: 1_000 });
        }
        let acquire = Op::Acquire { lock: 3 };
        assert_eq!(s.execute(1, &acquire), Reply::Lock(Ok(1)));
        assert_eq!(s.execute(1, &acquire), Reply::Lock(Ok(1)));
        assert_eq!(
            s.execute(2, &acquire),
            Reply::Lock(Err(LockError::HeldBy(1)))
        );
        assert_eq!(s.execute(1, &Op::CloseSession), Reply::Closed(true));
        assert_eq!(s.seen[Seen::CloseTookState as usize], 1);
        assert_eq!(s.execute(2, &acquire), Reply::Lock(Ok(2)));
        let wrong = Op::Release { lock: 3, token: 1 };
        assert_eq!(s.execute(2, &wrong), Reply::Released(false));
        let right = Op::Release { lock: 3, token: 2 };
        assert_eq!(s.execute(2, &right), Reply::Released(true));
        assert_eq!(
            s.execute(1, &Op::KeepAlive),
            Reply::Session(Err(SessionError::NoSession))
        );
    }
}
