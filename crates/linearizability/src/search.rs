//! The Wing–Gong–Lowe search over one key's operations.

use crate::{Model, Operation, Outcome};
use std::collections::HashSet;

/// The verdict on one key.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The search took more than its budget of steps.
    Unknown,
}

/// The memo set: FxHash has fixed keys, so memo behaviour never depends on a
/// random seed (and the checker is deterministic inside the simulator).
type FxSet<T> = HashSet<T, rustc_hash::FxBuildHasher>;

const NONE: usize = usize::MAX;

/// One event of the doubly-linked list: a call or a return of `op`.
#[derive(Clone, Copy, Debug)]
struct Entry {
    op: usize,
    is_call: bool,
    /// For a call: the index of its return entry.
    ret: usize,
    prev: usize,
    next: usize,
}

/// Checks one key's operations (failed ones already removed).
pub fn check_key<M: Model>(ops: &[Operation<M>], budget: u64) -> Verdict {
    check_key_counting(ops, budget).0
}

/// [`check_key`], and the search steps it took.
pub fn check_key_counting<M: Model>(ops: &[Operation<M>], budget: u64) -> (Verdict, u64) {
    // Events in time order; at equal times calls come first, so operations
    // that touch the same instant count as concurrent (never a false alarm).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
    for (i, o) in ops.iter().enumerate() {
        assert!(!o.failed, "failed operations are dropped before the search");
        assert!(o.ret_time() >= o.call, "op returned before its call");
        events.push((o.call, true, i));
        events.push((o.ret_time(), false, i));
    }
    events.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));

    // Entry 0 is a sentinel head; events follow in order.
    let mut list: Vec<Entry> = Vec::with_capacity(events.len() + 1);
    list.push(Entry {
        op: NONE,
        is_call: false,
        ret: NONE,
        prev: NONE,
        next: NONE,
    });
    let mut ret_of = vec![NONE; ops.len()];
    for &(_, is_call, op) in events.iter() {
        let idx = list.len();
        let prev = idx - 1;
        list[prev].next = idx;
        list.push(Entry {
            op,
            is_call,
            ret: NONE,
            prev,
            next: NONE,
        });
        if !is_call {
            ret_of[op] = idx;
        }
    }
    for e in list.iter_mut().skip(1) {
        if e.is_call {
            e.ret = ret_of[e.op];
        }
    }

    // Operations that must be linearized: every completed one. Info ops may
    // be left out (they never took effect).
    let mut must = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok { .. }))
        .count();
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut memo: FxSet<(Vec<u64>, M::State)> = FxSet::default();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = M::init();
    let mut cur = list[0].next;
    let mut steps = 0u64;

    fn lift(list: &mut [Entry], call: usize) {
        let ret = list[call].ret;
        for e in [call, ret] {
            let (p, n) = (list[e].prev, list[e].next);
            list[p].next = n;
            if n != NONE {
                list[n].prev = p;
            }
        }
    }
    fn unlift(list: &mut [Entry], call: usize) {
        let ret = list[call].ret;
        for e in [ret, call] {
            let (p, n) = (list[e].prev, list[e].next);
            list[p].next = e;
            if n != NONE {
                list[n].prev = e;
            }
        }
    }

    loop {
        if must == 0 {
            return (Verdict::Linearizable, steps);
        }
        steps += 1;
        if steps > budget {
            return (Verdict::Unknown, budget);
        }
        // `cur` is never the end of the list while a completed op is pending:
        // its return entry comes first.
        debug_assert!(cur != NONE);
        let e = list[cur];
        if e.is_call {
            let o = &ops[e.op];
            // A response judged by the model; an unknown one only moves
            // the state, if the operation took effect.
            let next = match &o.outcome {
                Outcome::Info => Some(M::step(&state, &o.op).0),
                Outcome::Ok { ret, .. } => M::judge(&state, &o.op, ret),
            };
            if let Some(next_state) = next {
                let mut lin = linearized.clone();
                lin[e.op / 64] |= 1 << (e.op % 64);
                if memo.insert((lin.clone(), next_state.clone())) {
                    stack.push((cur, std::mem::replace(&mut state, next_state)));
                    linearized = lin;
                    if matches!(o.outcome, Outcome::Ok { .. }) {
                        must -= 1;
                    }
                    lift(&mut list, cur);
                    cur = list[0].next;
                    continue;
                }
            }
            cur = e.next;
        } else {
            // The return of an op we passed without linearizing: a dead end.
            // Undo the most recent choice and try the next call after it.
            let Some((call, old)) = stack.pop() else {
                return (Verdict::NotLinearizable, steps);
            };
            state = old;
            let op = list[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            if matches!(ops[op].outcome, Outcome::Ok { .. }) {
                must += 1;
            }
            unlift(&mut list, call);
            cur = list[call].next;
        }
    }
}
