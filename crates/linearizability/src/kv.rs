//! The coordination service's key-value semantics, one key at a time.

use crate::{ClientId, History, Model, Outcome};
use serde::Serialize;
use std::fmt::Debug;
use std::hash::Hash;
use std::marker::PhantomData;

/// One key: absent, or a value with a version. A key's version is 1 when it
/// is created and goes up by one with each successful write.
///
/// Generic over the value type `V`, which the model only stores, returns and
/// compares for equality: the service's values are bytes (`kv::Value`), the
/// checker's own tests and generated histories use `u64`, the default.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvModel<V = u64>(PhantomData<V>);

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum KvOp<V = u64> {
    Get,
    Put(V),
    Delete,
    /// Write `value` if the key's version is `expected` (0: absent).
    Cas {
        expected: u64,
        value: V,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum KvRet<V = u64> {
    /// `Get`: the value and version, or absent.
    Value(Option<(V, u64)>),
    /// `Put`: the new version.
    Version(u64),
    /// `Delete`: whether the key existed.
    Deleted(bool),
    /// `Cas`: the new version, or the version that did not match.
    CasResult(Result<u64, u64>),
}

/// What a value must be for the model: stored, returned, compared.
pub trait KvValue: Clone + Debug + Eq + Hash + Serialize {}
impl<V: Clone + Debug + Eq + Hash + Serialize> KvValue for V {}

impl<V: KvValue> Model for KvModel<V> {
    type State = Option<(V, u64)>;
    type Op = KvOp<V>;
    type Ret = KvRet<V>;

    fn init() -> Self::State {
        None
    }

    fn step(s: &Self::State, op: &KvOp<V>) -> (Self::State, KvRet<V>) {
        let version = s.as_ref().map_or(0, |(_, v)| *v);
        match op {
            KvOp::Get => (s.clone(), KvRet::Value(s.clone())),
            KvOp::Put(value) => (
                Some((value.clone(), version + 1)),
                KvRet::Version(version + 1),
            ),
            KvOp::Delete => (None, KvRet::Deleted(s.is_some())),
            KvOp::Cas { expected, value } => {
                if *expected == version {
                    (
                        Some((value.clone(), version + 1)),
                        KvRet::CasResult(Ok(version + 1)),
                    )
                } else {
                    (s.clone(), KvRet::CasResult(Err(version)))
                }
            }
        }
    }

    fn may_have_written(
        writer: &KvOp<V>,
        writer_ret: Option<&KvRet<V>>,
        op: &KvOp<V>,
        ret: &KvRet<V>,
    ) -> bool {
        // The state `ret` shows: its value and version, where known. An
        // absent key needs no writer (it is how every key starts).
        let (value, version) = match (op, ret) {
            (KvOp::Get, KvRet::Value(Some((value, version)))) => (Some(value), Some(*version)),
            (KvOp::Cas { .. }, KvRet::CasResult(Err(v))) if *v > 0 => (None, Some(*v)),
            (KvOp::Put(_), KvRet::Version(v)) | (KvOp::Cas { .. }, KvRet::CasResult(Ok(v)))
                if *v > 1 =>
            {
                (None, Some(v - 1))
            }
            (KvOp::Delete, KvRet::Deleted(true)) => (None, None),
            _ => return false,
        };
        // The state `writer` made, if it wrote: its value, and its version
        // where known.
        let (made, made_version) = match (writer, writer_ret) {
            (KvOp::Put(value), Some(KvRet::Version(v))) => (value, Some(*v)),
            (KvOp::Put(value), None) => (value, None),
            (KvOp::Cas { value, .. }, Some(KvRet::CasResult(Ok(v)))) => (value, Some(*v)),
            (KvOp::Cas { expected, value }, None) => (value, Some(expected + 1)),
            _ => return false,
        };
        value.is_none_or(|v| v == made)
            && (version.is_none() || made_version.is_none() || version == made_version)
    }
}

/// xorshift64*: a tiny seeded generator, so this crate needs no RNG crate.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub(crate) fn random_op(rng: &mut Rng, values: u64) -> KvOp {
    match rng.below(4) {
        0 => KvOp::Get,
        1 => KvOp::Put(rng.below(values)),
        2 => KvOp::Delete,
        _ => KvOp::Cas {
            expected: rng.below(3),
            value: rng.below(values),
        },
    }
}

/// Generates a history by running clients against an atomic store: each
/// operation takes effect at one instant between its call and its return.
/// With `info`, each client's last operation may end with an unknown outcome
/// (it took effect or not, at random). The result is linearizable.
pub(crate) fn generate(
    n_ops: usize,
    n_keys: u64,
    n_clients: u32,
    seed: u64,
    info: bool,
) -> History<KvModel> {
    assert!(n_clients > 0 && n_keys > 0);
    let mut rng = Rng::new(seed);
    // Plan each client's operations: (client, key, op, call, effect, ret, takes_effect).
    let per_client = n_ops.div_ceil(n_clients as usize);
    let mut planned = Vec::with_capacity(n_ops);
    for c in 0..n_clients {
        let mut t = rng.below(20);
        for i in 0..per_client {
            if planned.len() >= n_ops {
                break;
            }
            let key = rng.below(n_keys);
            let op = random_op(&mut rng, 5);
            let call = t;
            let effect = call + 1 + rng.below(50);
            let ret = effect + 1 + rng.below(50);
            let last = i + 1 == per_client;
            let unknown = info && last && rng.below(3) == 0;
            let takes_effect = !unknown || rng.below(2) == 0;
            planned.push((
                c as ClientId,
                key,
                op,
                call,
                effect,
                ret,
                unknown,
                takes_effect,
            ));
            t = ret + 1 + rng.below(20); // Strictly after: one op in flight per client.
        }
    }
    // Apply in effect order to compute every response.
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&i| (planned[i].4, planned[i].0));
    let mut store = std::collections::BTreeMap::new();
    let mut rets = vec![None; planned.len()];
    for i in order {
        let (_, key, op, _, _, _, _, takes_effect) = planned[i];
        if !takes_effect {
            continue;
        }
        let s = store.entry(key).or_insert(None);
        let (next, r) = KvModel::step(s, &op);
        *s = next;
        rets[i] = Some(r);
    }
    let mut h = History::new();
    for (i, &(client, key, op, call, _, ret, unknown, _)) in planned.iter().enumerate() {
        let id = h.invoke(client, key, op, call);
        if !unknown {
            h.ok(id, rets[i].expect("a known outcome took effect"), ret);
        }
    }
    debug_assert!(h.ops.iter().all(|o| o.outcome != Outcome::Info || info));
    h
}
