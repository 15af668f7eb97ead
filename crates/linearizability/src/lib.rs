//! A linearizability checker for client histories: the Wing–Gong–Lowe search
//! with memoization, split per key, as porcupine does.
//!
//! A history is a set of operations, each with an invocation time and a
//! response. It is *linearizable* if every operation can be given a single
//! instant between its invocation and its response, such that running the
//! operations one at a time in that order through a sequential model gives
//! exactly the responses the clients saw.
//!
//! **Wing & Gong** search that order depth first. Keep the events (calls and
//! returns) in a time-ordered list. Walk it from the front: at a call, try
//! linearizing that operation now (the model must give its recorded
//! response), remove it from the list and start again from the front. At a
//! return, the operation it belongs to should have been linearized already, so
//! backtrack and undo the last choice. **Lowe's** improvement memoizes each
//! (set of linearized operations, model state) visited: the same
//! configuration reached by another path cannot succeed either.
//!
//! **Per-key split** (P-compositionality): linearizability is local. A history
//! over many independent keys is linearizable exactly when each key's
//! sub-history is, so each key is checked on its own. That turns one
//! exponential search into many small ones.
//!
//! **Unknown outcomes.** A client that timed out does not know if its
//! operation took effect. Such an operation is recorded as `Info`: its return
//! time is +∞ and its response is unconstrained. The search may linearize it
//! anywhere after its call, or never (it did not take effect). A `Fail`ed
//! operation definitely did not take effect and is dropped.
//!
//! A failure is reported as the smallest non-linearizable sub-history of the
//! offending key, found by removing operations while the rest still fails.

mod kv;
mod search;

pub use kv::{KvModel, KvOp, KvRet};
pub use search::{check_key, Verdict};

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// A sequential specification of one object (one key).
pub trait Model: Clone + fmt::Debug + PartialEq + Eq {
    type State: Clone + Eq + std::hash::Hash + fmt::Debug;
    type Op: Clone + fmt::Debug + Serialize;
    type Ret: Clone + fmt::Debug + PartialEq + Serialize;
    fn init() -> Self::State;
    /// Applies `op` to `state`: the next state and the response.
    fn step(state: &Self::State, op: &Self::Op) -> (Self::State, Self::Ret);
}

pub type OpId = usize;
pub type ClientId = u32;
pub type Key = u64;

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Outcome<R> {
    /// Still running when the history ended, or timed out: it may or may not
    /// have taken effect.
    Info,
    /// Completed at `at` with response `ret`.
    Ok { at: u64, ret: R },
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(bound = "")]
pub struct Operation<M: Model> {
    pub client: ClientId,
    pub key: Key,
    pub op: M::Op,
    pub call: u64,
    pub outcome: Outcome<M::Ret>,
    /// Definitely did not take effect (dropped from checking).
    pub failed: bool,
}

impl<M: Model> Operation<M> {
    /// The return time (+∞ for an unknown outcome).
    pub fn ret_time(&self) -> u64 {
        match self.outcome {
            Outcome::Info => u64::MAX,
            Outcome::Ok { at, .. } => at,
        }
    }
}

/// A client history, built as the simulation runs.
#[derive(Clone, Debug, Serialize)]
#[serde(bound = "")]
pub struct History<M: Model> {
    pub ops: Vec<Operation<M>>,
}

impl<M: Model> Default for History<M> {
    fn default() -> Self {
        History { ops: Vec::new() }
    }
}

impl<M: Model> History<M> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A client invokes `op` on `key` at time `now`.
    pub fn invoke(&mut self, client: ClientId, key: Key, op: M::Op, now: u64) -> OpId {
        self.ops.push(Operation {
            client,
            key,
            op,
            call: now,
            outcome: Outcome::Info,
            failed: false,
        });
        self.ops.len() - 1
    }

    /// The operation completed with `ret`.
    pub fn ok(&mut self, id: OpId, ret: M::Ret, now: u64) {
        let o = &mut self.ops[id];
        assert!(
            o.outcome == Outcome::Info && !o.failed,
            "op {id} ended twice"
        );
        assert!(now >= o.call, "op {id} returned before it was called");
        o.outcome = Outcome::Ok { at: now, ret };
    }

    /// The operation definitely did not take effect.
    pub fn fail(&mut self, id: OpId) {
        let o = &mut self.ops[id];
        assert!(
            o.outcome == Outcome::Info && !o.failed,
            "op {id} ended twice"
        );
        o.failed = true;
    }

    /// The outcome is unknown (e.g. a timeout). This is also what an op that
    /// never ended is taken to be.
    pub fn info(&mut self, id: OpId) {
        let o = &self.ops[id];
        assert!(
            o.outcome == Outcome::Info && !o.failed,
            "op {id} ended twice"
        );
    }

    /// The sub-histories of each key (failed operations left out), by key.
    pub fn by_key(&self) -> BTreeMap<Key, Vec<Operation<M>>> {
        let mut m: BTreeMap<Key, Vec<Operation<M>>> = BTreeMap::new();
        for o in self.ops.iter().filter(|o| !o.failed) {
            m.entry(o.key).or_default().push(o.clone());
        }
        m
    }
}

/// The result of checking a whole history.
#[derive(Clone, Debug)]
pub enum Report<M: Model> {
    Linearizable,
    /// `minimal` is a smallest sub-history of `key` that is still not
    /// linearizable (no single operation can be removed from it).
    NotLinearizable {
        key: Key,
        minimal: Vec<Operation<M>>,
    },
    /// No key failed, but the search exceeded its budget on `key` (the
    /// first such key), so the history is not proven linearizable.
    Unknown {
        key: Key,
    },
}

/// Checks every key's sub-history, stopping at the first that fails.
/// `budget` bounds the search steps per key. A key whose search runs out of
/// budget does not stop the check: the others are still checked, and any
/// of them failing is reported; `Unknown` means none failed and at least
/// one (the first) could not be decided.
pub fn check<M: Model>(history: &History<M>, budget: u64) -> Report<M> {
    let mut undecided = None;
    for (key, ops) in history.by_key() {
        match check_key::<M>(&ops, budget) {
            Verdict::Linearizable => {}
            Verdict::Unknown => {
                undecided.get_or_insert(key);
            }
            Verdict::NotLinearizable => {
                return Report::NotLinearizable {
                    key,
                    minimal: shrink::<M>(ops, budget),
                }
            }
        }
    }
    match undecided {
        Some(key) => Report::Unknown { key },
        None => Report::Linearizable,
    }
}

/// Finds a small non-linearizable sub-history that shows the real fault.
///
/// Removing operations can *create* violations (drop the write that a later
/// read saw, and the read looks impossible), so plain "remove while it still
/// fails" can end on a misleading history. Instead, first find a *culprit*:
/// an operation whose removal makes the history linearizable. Then remove
/// others (chunks first, then one at a time) only while the rest still fails
/// *and* still passes without the culprit (and, for a stale read, still
/// explains the culprit's result at *some* time). The result is the culprit plus the
/// context that makes it impossible. If no single culprit exists, fall back
/// to plain shrinking.
pub fn shrink<M: Model>(ops: Vec<Operation<M>>, budget: u64) -> Vec<Operation<M>> {
    let verdict = |ops: &[Operation<M>]| check_key::<M>(ops, budget);
    debug_assert_eq!(verdict(&ops), Verdict::NotLinearizable);
    let without = |ops: &[Operation<M>], i: usize| -> Vec<Operation<M>> {
        ops.iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, o)| o.clone())
            .collect()
    };
    // First cut the history at the earliest time it is already broken: the
    // operations called by then, those still running marked unknown (which
    // keeps every effect a completed operation may have seen). With several
    // anomalies in one history, this isolates the first.
    let prefix_at = |t: u64| -> Vec<Operation<M>> {
        ops.iter()
            .filter(|o| o.call <= t)
            .map(|o| {
                let mut o = o.clone();
                if o.ret_time() > t {
                    o.outcome = Outcome::Info;
                }
                o
            })
            .collect()
    };
    let mut times: Vec<u64> = ops
        .iter()
        .filter_map(|o| match o.outcome {
            Outcome::Ok { at, .. } => Some(at),
            Outcome::Info => None,
        })
        .collect();
    times.sort_unstable();
    times.dedup();
    let first_bad = times.partition_point(|&t| verdict(&prefix_at(t)) != Verdict::NotLinearizable);
    let ops = match times.get(first_bad) {
        Some(&t) => prefix_at(t),
        None => ops,
    };
    let removable: Vec<usize> = (0..ops.len())
        .rev()
        .filter(|&i| verdict(&without(&ops, i)) == Verdict::Linearizable)
        .collect();
    // The culprit with its real-time window opened back to the start: if
    // that explains its result, the fault is *when* it saw what it saw (a
    // stale read), and the ops that produced its result must stay, or the
    // shrunk history would fail for another reason (a value from nowhere).
    let relaxed = |ops: &[Operation<M>], c: usize| -> Vec<Operation<M>> {
        let mut v = ops.to_vec();
        v[c].call = 0;
        v
    };
    // Several operations may each be removable (an operation of unknown
    // outcome can paper over one anomaly); prefer a stale read among them,
    // since it names the fault.
    let stale_one = removable
        .iter()
        .copied()
        .find(|&c| verdict(&relaxed(&ops, c)) == Verdict::Linearizable);
    let stale = stale_one.is_some();
    let culprit = stale_one.or(removable.first().copied());
    let mut ops = ops;
    let mut culprit_at = culprit;
    // Keeps `candidate` if it still fails for the same reason; tracks where
    // the culprit moved to.
    let acceptable = |cand: &[Operation<M>], c: Option<usize>| -> bool {
        if verdict(cand) != Verdict::NotLinearizable {
            return false;
        }
        match c {
            Some(c) => {
                verdict(&without(cand, c)) == Verdict::Linearizable
                    && (!stale || verdict(&relaxed(cand, c)) == Verdict::Linearizable)
            }
            None => true,
        }
    };
    // The big cuts first: the culprit alone, then without everything called
    // after the culprit returned (which cannot be what makes it impossible,
    // though the check decides).
    if let Some(c) = culprit_at {
        let alone = vec![ops[c].clone()];
        if acceptable(&alone, Some(0)) {
            return alone;
        }
        let end = ops[c].ret_time();
        let keep: Vec<usize> = (0..ops.len())
            .filter(|&i| i == c || ops[i].call <= end)
            .collect();
        let cand: Vec<Operation<M>> = keep.iter().map(|&i| ops[i].clone()).collect();
        let c2 = keep.iter().position(|&i| i == c);
        if acceptable(&cand, c2) {
            ops = cand;
            culprit_at = c2;
        }
    }
    let mut chunk = ops.len() / 2;
    while chunk >= 1 {
        let mut i = 0;
        while i < ops.len() {
            let end = (i + chunk).min(ops.len());
            let keeps_culprit = culprit_at.is_none_or(|c| c < i || c >= end);
            if keeps_culprit {
                let cand: Vec<Operation<M>> = ops[..i].iter().chain(&ops[end..]).cloned().collect();
                let c = culprit_at.map(|c| if c >= end { c - (end - i) } else { c });
                if !cand.is_empty() && acceptable(&cand, c) {
                    ops = cand;
                    culprit_at = c;
                    continue;
                }
            }
            i += chunk;
        }
        chunk /= 2;
    }
    ops.sort_by_key(|o| (o.call, o.client));
    ops
}

/// Renders operations one per line, in call order:
/// `client 2  [  10 ..   35]  Put(3) -> Version(4)`.
pub fn render<M: Model>(ops: &[Operation<M>]) -> String {
    let mut v: Vec<&Operation<M>> = ops.iter().collect();
    v.sort_by_key(|o| (o.call, o.client));
    let mut s = String::new();
    for o in v {
        let (end, ret) = match &o.outcome {
            Outcome::Ok { at, ret } => (at.to_string(), format!("{ret:?}")),
            Outcome::Info => ("?".into(), "unknown (info)".into()),
        };
        s += &format!(
            "client {:<3} [{:>8} .. {:>8}]  {:?} -> {}\n",
            o.client, o.call, end, o.op, ret
        );
    }
    s
}

impl<M: Model> fmt::Display for Report<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Linearizable => write!(f, "linearizable"),
            Report::Unknown { key } => write!(f, "unknown: the search budget ran out on key {key}"),
            Report::NotLinearizable { key, minimal } => write!(
                f,
                "not linearizable on key {key}; smallest failing sub-history ({} ops):\n{}",
                minimal.len(),
                render::<M>(minimal)
            ),
        }
    }
}

/// A seeded generator of large linearizable histories, for benchmarks: `n_ops`
/// operations over `n_keys` keys by `n_clients` concurrent clients, produced
/// by a simulated atomic store (so they are linearizable by construction).
pub fn bench_history(n_ops: usize, n_keys: u64, n_clients: u32, seed: u64) -> History<KvModel> {
    kv::generate(n_ops, n_keys, n_clients, seed, false)
}

#[cfg(test)]
mod tests;
