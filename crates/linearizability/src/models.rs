//! Two sequential specifications beyond the service's own ([`crate::KvModel`]),
//! for histories other systems record (`paxsim lin`): porcupine's
//! key-value store of strings with append, and a register of integers with
//! compare-and-set (Jepsen's `cas-register`, porcupine's etcd tests).

use crate::Model;
use serde::Serialize;

/// One key of a string store: `get` returns the string (`""` for a key never
/// written), `put` replaces it, `append` appends to it. Porcupine's
/// key-value model.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AppendModel;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum AppendOp {
    Get,
    Put(String),
    Append(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum AppendRet {
    /// `get`: the string.
    Value(String),
    /// `put`, `append`: done.
    Done,
}

impl Model for AppendModel {
    type State = String;
    type Op = AppendOp;
    type Ret = AppendRet;
    fn init() -> String {
        String::new()
    }
    fn step(s: &String, op: &AppendOp) -> (String, AppendRet) {
        match op {
            AppendOp::Get => (s.clone(), AppendRet::Value(s.clone())),
            AppendOp::Put(v) => (v.clone(), AppendRet::Done),
            AppendOp::Append(v) => (format!("{s}{v}"), AppendRet::Done),
        }
    }
}

/// A register of integers, absent at first: `read` returns its value (or
/// nothing), `write` sets it, `cas(from, to)` sets it to `to` if it holds
/// `from` and says whether it did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CasRegister;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum RegOp {
    Read,
    Write(i64),
    Cas(i64, i64),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum RegRet {
    /// `read`: the value, if any.
    Value(Option<i64>),
    /// `write`: done.
    Written,
    /// `cas`: whether it swapped.
    Swapped(bool),
}

impl Model for CasRegister {
    type State = Option<i64>;
    type Op = RegOp;
    type Ret = RegRet;
    fn init() -> Option<i64> {
        None
    }
    fn step(s: &Option<i64>, op: &RegOp) -> (Option<i64>, RegRet) {
        match *op {
            RegOp::Read => (*s, RegRet::Value(*s)),
            RegOp::Write(v) => (Some(v), RegRet::Written),
            RegOp::Cas(from, to) if *s == Some(from) => (Some(to), RegRet::Swapped(true)),
            RegOp::Cas(..) => (*s, RegRet::Swapped(false)),
        }
    }
    fn may_have_written(w: &RegOp, w_ret: Option<&RegRet>, op: &RegOp, ret: &RegRet) -> bool {
        let seen = match (op, ret) {
            (RegOp::Read, RegRet::Value(Some(v))) => *v,
            (RegOp::Cas(from, _), RegRet::Swapped(true)) => *from,
            _ => return false,
        };
        match (w, w_ret) {
            (RegOp::Write(v), _) => *v == seen,
            (RegOp::Cas(_, to), Some(RegRet::Swapped(true)) | None) => *to == seen,
            _ => false,
        }
    }
}
