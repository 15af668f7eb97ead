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
//! **Keys in rounds.** Keys are searched in rounds, each key's budget four
//! times the last round's (from [`FIRST_SLICE`] up to the caller's budget),
//! so a key that needs millions of steps, or more than the budget, does not
//! hold back a violation another key shows in a few thousand: the check
//! stops at the first violation found. Each key's memo set is dropped when
//! its round ends, so memory is one key's search at a time. A key decided
//! in a round costs at most 4/3 of what it would alone.
//!
//! A failure is reported as a non-linearizable sub-history of the offending
//! key that fails for the same reason as the whole, and from which no single
//! operation can go while it does (see [`shrink`]): removing operations
//! never makes it fail for another one.

mod kv;
mod models;
mod search;

pub use kv::{KvModel, KvOp, KvRet, KvValue};
pub use models::{AppendModel, AppendOp, AppendRet, CasRegister, RegOp, RegRet};
pub use search::{check_key, check_key_counting, Verdict};

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// A sequential specification of one object (one key).
pub trait Model: Clone + fmt::Debug + PartialEq + Eq {
    type State: Clone + Eq + std::hash::Hash + fmt::Debug;
    type Op: Clone + fmt::Debug + Serialize;
    type Ret: Clone + fmt::Debug + PartialEq + Serialize;
    fn init() -> Self::State;
    /// Applies `op` to `state`: the next state and the response. An
    /// operation whose outcome is unknown takes this next state if it took
    /// effect.
    fn step(state: &Self::State, op: &Self::Op) -> (Self::State, Self::Ret);
    /// Whether `op`, applied to `state`, may have answered `ret`, and the
    /// state after it if so. The default is [`Model::step`] and equality:
    /// one correct answer. A specification that allows several (a read
    /// that may return any of a set's members, a timestamp that need only
    /// grow) judges the answer itself, as porcupine's models do.
    fn judge(state: &Self::State, op: &Self::Op, ret: &Self::Ret) -> Option<Self::State> {
        let (next, answer) = Self::step(state, op);
        (answer == *ret).then_some(next)
    }
    /// Whether `writer`, which returned `writer_ret` (`None`: unknown), may
    /// have made the state that `ret`, returned by `op`, shows (the value a
    /// read saw, the version a write started from). The shrinker never
    /// drops every writer of a response it keeps, so a value that was
    /// written is never shown as coming from nowhere. The default knows of
    /// no such link (the shrinker's other checks still apply).
    fn may_have_written(
        writer: &Self::Op,
        writer_ret: Option<&Self::Ret>,
        op: &Self::Op,
        ret: &Self::Ret,
    ) -> bool {
        let _ = (writer, writer_ret, op, ret);
        false
    }
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
    /// `minimal` is a sub-history of `key` that is still not linearizable,
    /// for the same reason as the whole, and from which no single operation
    /// can be removed while keeping that reason (see [`shrink`]).
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

/// The first round's search steps per key (see the module docs).
pub const FIRST_SLICE: u64 = 10_000;

/// Checks every key's sub-history, stopping at the first violation found.
/// `budget` bounds the search steps per key. Keys are searched in rounds
/// of growing budgets (module docs), so a key whose search runs long or out
/// of budget does not hold back another's violation; `Unknown` means none
/// failed and at least one (the first, by key) could not be decided.
pub fn check<M: Model>(history: &History<M>, budget: u64) -> Report<M> {
    check_parts(history.by_key(), budget).0
}

/// [`check`], and the search steps it took in all (shrinking left out).
pub fn check_counting<M: Model>(history: &History<M>, budget: u64) -> (Report<M>, u64) {
    check_parts(history.by_key(), budget)
}

/// [`check`] with the operations split by `part` instead of by their
/// `key`: keys of any type, or any partition the model allows (each part's
/// operations must touch only that part's state: P-compositionality). The
/// report names the part by its rank among the parts, and the part itself
/// is returned beside it.
pub fn check_by<M: Model, K: Ord + Clone>(
    ops: &[Operation<M>],
    part: impl Fn(&Operation<M>) -> K,
    budget: u64,
) -> (Report<M>, Option<K>) {
    let mut parts: BTreeMap<K, Vec<Operation<M>>> = BTreeMap::new();
    for o in ops.iter().filter(|o| !o.failed) {
        parts.entry(part(o)).or_default().push(o.clone());
    }
    let names: Vec<K> = parts.keys().cloned().collect();
    let ranked = parts
        .into_values()
        .enumerate()
        .map(|(i, ops)| (i as Key, ops))
        .collect();
    let (r, _) = check_parts(ranked, budget);
    let named = match &r {
        Report::Linearizable => None,
        Report::Unknown { key } | Report::NotLinearizable { key, .. } => {
            Some(names[*key as usize].clone())
        }
    };
    (r, named)
}

fn check_parts<M: Model>(parts: BTreeMap<Key, Vec<Operation<M>>>, budget: u64) -> (Report<M>, u64) {
    let mut open: Vec<(Key, Vec<Operation<M>>)> = parts.into_iter().collect();
    let mut slice = FIRST_SLICE.min(budget);
    let mut spent = 0u64;
    loop {
        let mut undecided = Vec::new();
        for (key, ops) in open {
            let (verdict, steps) = check_key_counting::<M>(&ops, slice);
            spent += steps;
            match verdict {
                Verdict::Linearizable => {}
                Verdict::Unknown => undecided.push((key, ops)),
                Verdict::NotLinearizable => {
                    let minimal = shrink::<M>(ops, budget);
                    return (Report::NotLinearizable { key, minimal }, spent);
                }
            }
        }
        let Some(&(first, _)) = undecided.first() else {
            return (Report::Linearizable, spent);
        };
        if slice >= budget {
            return (Report::Unknown { key: first }, spent);
        }
        slice = slice.saturating_mul(4).min(budget);
        open = undecided;
    }
}

/// Finds a small non-linearizable sub-history that fails for the same reason
/// as the whole.
///
/// Removing operations can *create* violations: drop the write a read saw and
/// the read returns a value from nowhere; drop the writes before a `Put` and
/// its version comes from nowhere. Plain "remove while it still fails" can so
/// end on a history that fails for a reason the real one does not have. So:
///
/// 1. **Cut at the first violation.** Order the completed operations by
///    return time (ties by position) and take the shortest prefix of that
///    order that fails: the operations called by then, those not yet in the
///    prefix marked unknown (which keeps every effect a completed operation
///    may have seen). Its last operation is the *culprit*: with its response
///    unknown, the prefix is linearizable (that is the prefix before it, plus
///    unknown operations). Several anomalies completing at the same instant
///    are split this way too, so a culprit always exists.
/// 2. **Classify the culprit** by two probes on the rest of the history:
///    *relaxed*, is its response given at some time if its real-time window
///    is opened to all of time; *ghost*, does the object ever hold a state in
///    which it gives that response (the response checked anywhere, without
///    its effect, the operation itself left unknown). A stale read is
///    (relaxed, ghost) = (yes, yes); two writes claiming one version is
///    (no, yes); a value or version no one wrote is (no, no).
/// 3. **Shrink** (the culprit alone, then chunks, then one at a time until
///    no single operation can go), keeping a cut only if it still fails,
///    passes with the culprit's response unknown, and gives the culprit the
///    same class, and drops no response's last possible writer
///    ([`Model::may_have_written`]; writers called after the prefix join it,
///    unknown, for a response no earlier one explains). The first two say
///    the culprit's response is the fault and every other response is
///    explained by the operations kept; the class says the culprit's
///    response is wrong in the same way; the writers say a response that
///    was written is never shown as coming from nowhere. So a stale read
///    keeps the write it read (and the writes its version counts).
///
/// **What minimal means here.** The result is 1-minimal *for its reason*:
/// no single operation can be removed while the rest still fails in the
/// same way (the three conditions above). It is not the smallest failing
/// sub-history: dropping one more operation may leave a history that still
/// fails, for another reason (porcupine's plain shrink takes that cut;
/// this one does not, so as never to show a failure the real history does
/// not have).
///
/// **Cost.** Each cut is judged by a few searches, and shrinking stops
/// cutting once it has spent [`SHRINK_STEPS_PER_OP`] search steps per
/// operation of the key (at least `budget`), returning what it has: a
/// failing sub-history for the same reason, perhaps not 1-minimal.
///
/// If the cut or a probe cannot be decided within `budget`, the history is
/// returned unshrunk rather than risk a misleading one.
pub fn shrink<M: Model>(ops: Vec<Operation<M>>, budget: u64) -> Vec<Operation<M>> {
    let spent = std::cell::Cell::new(0u64);
    let allowance = (ops.len() as u64)
        .saturating_mul(SHRINK_STEPS_PER_OP)
        .max(budget);
    let verdict = |ops: &[Operation<M>]| {
        let (v, steps) = check_key_counting::<M>(ops, budget);
        spent.set(spent.get() + steps);
        v
    };
    let exhausted = || spent.get() >= allowance;
    debug_assert_eq!(verdict(&ops), Verdict::NotLinearizable);
    let whole = ops;

    // 1. The first failing prefix, in completion order.
    let mut done: Vec<usize> = (0..whole.len())
        .filter(|&i| matches!(whole[i].outcome, Outcome::Ok { .. }))
        .collect();
    done.sort_by_key(|&i| (whole[i].ret_time(), i));
    let mut rank = vec![usize::MAX; whole.len()];
    for (r, &i) in done.iter().enumerate() {
        rank[i] = r;
    }
    // The prefix that ends with the `k`-th completion, and where that
    // operation is in it.
    let prefix = |k: usize| -> (Vec<Operation<M>>, usize) {
        let t = whole[done[k]].ret_time();
        let mut v = Vec::new();
        let mut at = 0;
        for (i, o) in whole.iter().enumerate().filter(|(_, o)| o.call <= t) {
            let mut o = o.clone();
            if rank[i] > k {
                o.outcome = Outcome::Info;
            }
            if i == done[k] {
                at = v.len();
            }
            v.push(o);
        }
        (v, at)
    };
    let ks: Vec<usize> = (0..done.len()).collect();
    let k = ks.partition_point(|&k| verdict(&prefix(k).0) != Verdict::NotLinearizable);
    if k == done.len() {
        return whole; // Undecided within the budget.
    }
    let (mut base, culprit) = prefix(k);
    // A response no operation of the prefix may have written, but one
    // called later may (a read from the future): that writer joins, unknown
    // (called after every completed operation returned, it changes no
    // verdict), so the read is not shown as a value from nowhere.
    let t = whole[done[k]].ret_time();
    let orphans: Vec<usize> = (0..base.len())
        .filter(|&i| !(0..base.len()).any(|j| j != i && wrote(&base[j], &base[i])))
        .collect();
    for w in whole.iter().filter(|w| w.call > t) {
        if orphans.iter().any(|&i| wrote(w, &base[i])) {
            let mut w = w.clone();
            w.outcome = Outcome::Info;
            base.push(w);
        }
    }
    // The possible writers of each response: a cut keeps one of them, if any.
    let writers: Vec<Vec<usize>> = (0..base.len())
        .map(|i| {
            (0..base.len())
                .filter(|&j| j != i && wrote(&base[j], &base[i]))
                .collect()
        })
        .collect();

    // 2. The culprit's class. Sub-histories are sets of indices into `base`,
    // in order.
    let pick = |keep: &[usize]| -> (Vec<Operation<M>>, usize) {
        let v = keep.iter().map(|&i| base[i].clone()).collect();
        (
            v,
            keep.iter()
                .position(|&i| i == culprit)
                .expect("the culprit is kept"),
        )
    };
    let unknown = |v: &[Operation<M>], c: usize| -> Vec<Operation<M>> {
        let mut v = v.to_vec();
        v[c].outcome = Outcome::Info;
        v
    };
    let class = |v: &[Operation<M>], c: usize| -> (Verdict, Verdict) {
        let mut relaxed = v.to_vec();
        relaxed[c].call = 0;
        if let Outcome::Ok { at, .. } = &mut relaxed[c].outcome {
            *at = u64::MAX;
        }
        (
            verdict(&relaxed),
            check_key::<Ghostly<M>>(&ghost(v, c), budget),
        )
    };
    let all: Vec<usize> = (0..base.len()).collect();
    let (v, c) = pick(&all);
    let class0 = class(&v, c);
    if verdict(&v) != Verdict::NotLinearizable
        || verdict(&unknown(&v, c)) != Verdict::Linearizable
        || class0.0 == Verdict::Unknown
        || class0.1 == Verdict::Unknown
    {
        return v; // Undecided within the budget: no cut is known safe.
    }
    // A cut is kept only if it fails for the same reason (and while the
    // shrink's allowance lasts).
    let acceptable = |keep: &[usize]| -> bool {
        if exhausted() {
            return false;
        }
        let mut kept = vec![false; base.len()];
        for &i in keep {
            kept[i] = true;
        }
        let provenance = keep
            .iter()
            .all(|&i| writers[i].is_empty() || writers[i].iter().any(|&j| kept[j]));
        if !provenance {
            return false;
        }
        let (v, c) = pick(keep);
        verdict(&v) == Verdict::NotLinearizable
            && verdict(&unknown(&v, c)) == Verdict::Linearizable
            && class(&v, c) == class0
    };

    // 3. Shrink: the culprit alone, then chunks, halving down to single
    // operations, then single operations again until none can go.
    let mut keep = all;
    if acceptable(&[culprit]) {
        keep = vec![culprit];
    }
    let mut chunk = (keep.len() / 2).max(1);
    while keep.len() > 1 {
        let mut changed = false;
        let mut i = 0;
        while i < keep.len() {
            let end = (i + chunk).min(keep.len());
            if !keep[i..end].contains(&culprit) {
                let cand: Vec<usize> = keep[..i].iter().chain(&keep[end..]).copied().collect();
                if acceptable(&cand) {
                    keep = cand;
                    changed = true;
                    continue;
                }
            }
            i += chunk;
        }
        if exhausted() {
            break;
        }
        if chunk > 1 {
            chunk /= 2;
        } else if !changed {
            break;
        }
    }
    let mut ops = pick(&keep).0;
    ops.sort_by_key(|o| (o.call, o.client));
    ops
}

/// Shrinking's search steps per operation of the failing key (see
/// [`shrink`]).
pub const SHRINK_STEPS_PER_OP: u64 = 200_000;

/// Whether `w` may have written the state `r`'s response shows.
fn wrote<M: Model>(w: &Operation<M>, r: &Operation<M>) -> bool {
    let Outcome::Ok { ret, .. } = &r.outcome else {
        return false;
    };
    let w_ret = match &w.outcome {
        Outcome::Ok { ret, .. } => Some(ret),
        Outcome::Info => None,
    };
    M::may_have_written(&w.op, w_ret, &r.op, ret)
}

/// A model whose operations may be *ghosts*: checked against the state like
/// the real operation, but without changing it. Used to ask whether the
/// object ever holds a state in which an operation gives its response.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ghostly<M>(std::marker::PhantomData<M>);

#[derive(Clone, Debug, Serialize)]
enum GhostOp<O> {
    Real(O),
    Ghost(O),
}

impl<M: Model> Model for Ghostly<M> {
    type State = M::State;
    type Op = GhostOp<M::Op>;
    type Ret = M::Ret;
    fn init() -> M::State {
        M::init()
    }
    fn step(state: &M::State, op: &Self::Op) -> (M::State, M::Ret) {
        match op {
            GhostOp::Real(op) => M::step(state, op),
            GhostOp::Ghost(op) => (state.clone(), M::step(state, op).1),
        }
    }
}

/// `ops` with operation `c` made unknown, plus a ghost of it with its
/// response and a window over all of time.
fn ghost<M: Model>(ops: &[Operation<M>], c: usize) -> Vec<Operation<Ghostly<M>>> {
    let real = |o: &Operation<M>, op: GhostOp<M::Op>| Operation::<Ghostly<M>> {
        client: o.client,
        key: o.key,
        op,
        call: o.call,
        outcome: o.outcome.clone(),
        failed: o.failed,
    };
    let mut v: Vec<Operation<Ghostly<M>>> = ops
        .iter()
        .map(|o| real(o, GhostOp::Real(o.op.clone())))
        .collect();
    v[c].outcome = Outcome::Info;
    let mut g = real(&ops[c], GhostOp::Ghost(ops[c].op.clone()));
    g.call = 0;
    if let Outcome::Ok { at, .. } = &mut g.outcome {
        *at = u64::MAX;
    }
    v.push(g);
    v
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
                "not linearizable on key {key}; a failing sub-history minimal for its reason ({} ops):\n{}",
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
