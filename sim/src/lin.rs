//! `paxsim lin FILE`: the linearizability checker on a history someone else's
//! system recorded. Three formats, told apart by their first line:
//!
//! - **porcupine's key-value logs**: one EDN map per line,
//!   `{:process 0, :type :invoke, :f :get, :key "6", :value nil}`, with
//!   `:ok` completions; `get`, `put` and `append` on string keys
//!   ([`AppendModel`], one key at a time);
//! - **etcd logs** (Jepsen's etcd test, as porcupine's tests read them):
//!   `INFO  jepsen.util - 2 :invoke :cas [1 4]`, tab-separated; `read`, `write` and `cas`
//!   on one register ([`CasRegister`]); a `:fail` cas returned false (the
//!   register did not hold its first value), a `:fail :read :timed-out` has
//!   an unknown outcome;
//! - **Jepsen histories** (`history.edn`) of a `register` or `cas-register`:
//!   EDN maps, one per line or in one vector, `{:type :invoke, :f :cas,
//!   :value [1 2], :process 3, :time 1234}`; `:ok`, `:fail` (did not take
//!   effect: dropped, as Knossos does) and `:info` (unknown outcome)
//!   completions; `:time` in nanoseconds where every event has one (else
//!   the file's order); the nemesis's events are skipped.
//!
//! Without `:time`, an event's position in the file is its time, so two
//! operations overlap exactly when one was invoked before the other
//! completed. An invocation with no completion has an unknown outcome.

use clojure_reader::edn::{self, Edn as Read};
use linearizability::{check, AppendModel, AppendOp, AppendRet, CasRegister, History, Model};
use linearizability::{RegOp, RegRet, Report};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

/// A history format `paxsim lin` reads.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Format {
    PorcupineKv,
    Etcd,
    Jepsen,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "porcupine-kv" => Ok(Format::PorcupineKv),
            "etcd" => Ok(Format::Etcd),
            "jepsen" => Ok(Format::Jepsen),
            _ => Err(format!(
                "unknown format {s:?}; known: porcupine-kv, etcd, jepsen"
            )),
        }
    }

    /// The format of `text`, from its first event.
    pub fn detect(text: &str) -> Result<Format, String> {
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or("the file holds no events")?;
        // A log: its events are the `jepsen.util` lines among others.
        if first.starts_with("INFO") && text.contains("jepsen.util - ") {
            return Ok(Format::Etcd);
        }
        if first.starts_with('{') || first.starts_with('[') {
            let kv = [":f :get", ":f :put", ":f :append"];
            return Ok(
                match kv.iter().any(|f| text.contains(f)) && text.contains(":key") {
                    true => Format::PorcupineKv,
                    false => Format::Jepsen,
                },
            );
        }
        Err(format!(
            "cannot tell the format from the first line ({first:?}): give --format porcupine-kv, etcd or jepsen"
        ))
    }
}

/// A history read from a file, with its model.
pub enum Loaded {
    /// Keys by name (their index is the history's key).
    Kv(History<AppendModel>, Vec<String>),
    Register(History<CasRegister>),
}

impl Loaded {
    pub fn ops(&self) -> usize {
        match self {
            Loaded::Kv(h, _) => h.ops.len(),
            Loaded::Register(h) => h.ops.len(),
        }
    }
}

/// Reads `text` in `format`: `Err` names the line at fault.
pub fn load(text: &str, format: Format) -> Result<Loaded, String> {
    match format {
        Format::Etcd => etcd(text).map(Loaded::Register),
        Format::PorcupineKv => porcupine_kv(text),
        Format::Jepsen => jepsen(text).map(Loaded::Register),
    }
}

/// Pairs invocations with completions, per process.
struct Pairing<M: Model> {
    h: History<M>,
    open: BTreeMap<i64, usize>,
}

impl<M: Model> Pairing<M> {
    fn new() -> Self {
        Pairing {
            h: History::new(),
            open: BTreeMap::new(),
        }
    }
    fn invoke(
        &mut self,
        line: usize,
        process: i64,
        key: u64,
        op: M::Op,
        at: u64,
    ) -> Result<(), String> {
        if self.open.contains_key(&process) {
            return Err(format!(
                "line {line}: process {process} invokes again before its last operation completed"
            ));
        }
        let client = u32::try_from(process.rem_euclid(1 << 31)).expect("in range");
        let id = self.h.invoke(client, key, op, at);
        self.open.insert(process, id);
        Ok(())
    }
    /// The open operation of `process`, which completes now.
    fn complete(&mut self, line: usize, process: i64) -> Result<usize, String> {
        self.open.remove(&process).ok_or_else(|| {
            format!("line {line}: process {process} completes an operation it never invoked")
        })
    }
    fn ok(&mut self, line: usize, process: i64, ret: M::Ret, at: u64) -> Result<(), String> {
        let id = self.complete(line, process)?;
        if at < self.h.ops[id].call {
            return Err(format!("line {line}: a completion before its invocation"));
        }
        self.h.ok(id, ret, at);
        Ok(())
    }
}

fn int(s: &str, line: usize) -> Result<i64, String> {
    s.parse()
        .map_err(|_| format!("line {line}: {s:?} is not an integer"))
}

/// Jepsen's etcd logs, as porcupine's tests read them: tab-separated
/// `process :type :f value` after a log prefix.
fn etcd(text: &str) -> Result<History<CasRegister>, String> {
    let mut p = Pairing::<CasRegister>::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let at = line as u64;
        let Some((_, rest)) = raw.split_once("jepsen.util - ") else {
            continue; // Other log lines.
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let [proc_, kind, op, value @ ..] = f.as_slice() else {
            return Err(format!(
                "line {line}: expected `process :type :f value`: {raw:?}"
            ));
        };
        let Ok(process) = proc_.parse::<i64>() else {
            continue; // The nemesis's lines (`:nemesis`).
        };
        let value = value.join(" ");
        let cas = || -> Result<(i64, i64), String> {
            let v = value.trim_start_matches('[').trim_end_matches(']');
            let (a, b) = v
                .split_once(' ')
                .ok_or_else(|| format!("line {line}: a cas takes [from to]: {value:?}"))?;
            Ok((int(a, line)?, int(b.trim(), line)?))
        };
        match (*kind, *op) {
            (":invoke", ":read") => p.invoke(line, process, 0, RegOp::Read, at)?,
            (":invoke", ":write") => {
                p.invoke(line, process, 0, RegOp::Write(int(&value, line)?), at)?
            }
            (":invoke", ":cas") => {
                let (a, b) = cas()?;
                p.invoke(line, process, 0, RegOp::Cas(a, b), at)?
            }
            (":ok", ":read") => {
                let v = match value.as_str() {
                    "nil" => None,
                    v => Some(int(v, line)?),
                };
                p.ok(line, process, RegRet::Value(v), at)?
            }
            (":ok", ":write") => p.ok(line, process, RegRet::Written, at)?,
            (":ok", ":cas") => p.ok(line, process, RegRet::Swapped(true), at)?,
            (":fail", ":cas") => p.ok(line, process, RegRet::Swapped(false), at)?,
            // Timed out, crashed: the outcome is unknown (left open).
            (":fail" | ":info", _) => {
                p.complete(line, process)?;
            }
            _ => return Err(format!("line {line}: unknown event {kind} {op}")),
        }
    }
    Ok(p.h)
}

/// An EDN value as the events use it (keyword map keys without their
/// colon).
#[derive(Clone, Debug, PartialEq)]
enum Edn {
    Key(String),
    Str(String),
    Int(i64),
    Nil,
    Vector(Vec<Edn>),
    Map(BTreeMap<String, Edn>),
    /// Anything else, as EDN text.
    Other(String),
}

impl std::fmt::Display for Edn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Edn::Key(k) => write!(f, ":{k}"),
            Edn::Str(s) => write!(f, "{s:?}"),
            Edn::Int(i) => write!(f, "{i}"),
            Edn::Nil => write!(f, "nil"),
            Edn::Vector(v) => {
                let items: Vec<String> = v.iter().map(|e| e.to_string()).collect();
                write!(f, "[{}]", items.join(" "))
            }
            Edn::Map(_) => write!(f, "{{...}}"),
            Edn::Other(s) => write!(f, "{s}"),
        }
    }
}

/// The reader's value as ours: map keys must be keywords.
fn own(e: &Read<'_>, line: usize) -> Result<Edn, String> {
    Ok(match e {
        Read::Key(k) => Edn::Key(k.trim_start_matches(':').to_string()),
        Read::Str(s) => Edn::Str(s.to_string()),
        Read::Int(i) => Edn::Int(*i),
        Read::Nil => Edn::Nil,
        Read::Vector(v) | Read::List(v) => {
            Edn::Vector(v.iter().map(|e| own(e, line)).collect::<Result<_, _>>()?)
        }
        Read::Map(m) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let Read::Key(k) = k else {
                    return Err(format!("line {line}: event keys are keywords, not {k}"));
                };
                out.insert(k.trim_start_matches(':').to_string(), own(v, line)?);
            }
            Edn::Map(out)
        }
        other => Edn::Other(other.to_string()),
    })
}

/// An event of an EDN history: its line (or place in the vector) and its map.
type Event = (usize, BTreeMap<String, Edn>);

/// The EDN maps of a file: one vector of them, or one per line.
fn edn_maps(text: &str) -> Result<Vec<Event>, String> {
    let whole = text.trim_start();
    let mut values = Vec::new();
    if whole.starts_with('[') {
        let read = edn::read_string(whole).map_err(|e| format!("not EDN: {e:?}"))?;
        match own(&read, 1)? {
            Edn::Vector(v) => values.extend(v.into_iter().enumerate().map(|(i, e)| (i + 1, e))),
            other => return Err(format!("a history is a vector of events, not {other}")),
        }
    } else {
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let read =
                edn::read_string(l).map_err(|e| format!("line {}: not EDN: {e:?}", i + 1))?;
            values.push((i + 1, own(&read, i + 1)?));
        }
    }
    values
        .into_iter()
        .map(|(line, e)| match e {
            Edn::Map(m) => Ok((line, m)),
            other => Err(format!("line {line}: an event is a map, not {other}")),
        })
        .collect()
}

fn keyword<'a>(m: &'a BTreeMap<String, Edn>, k: &str, line: usize) -> Result<&'a str, String> {
    match m.get(k) {
        Some(Edn::Key(s)) => Ok(s),
        other => Err(format!(
            "line {line}: :{k} must be a keyword, not {other:?}"
        )),
    }
}

fn number(e: Option<&Edn>, what: &str, line: usize) -> Result<i64, String> {
    match e {
        Some(Edn::Int(i)) => Ok(*i),
        other => Err(format!(
            "line {line}: {what} must be an integer, not {other:?}"
        )),
    }
}

/// The process of an event, or `None` for the nemesis's.
fn process(m: &BTreeMap<String, Edn>, line: usize) -> Result<Option<i64>, String> {
    match m.get("process") {
        Some(Edn::Int(p)) => Ok(Some(*p)),
        Some(Edn::Key(_)) => Ok(None),
        other => Err(format!(
            "line {line}: :process must be an integer, not {other:?}"
        )),
    }
}

/// Each event's time: `:time` where every event has one, else its position.
fn times(maps: &[Event]) -> Vec<u64> {
    let stamped: Option<Vec<u64>> = maps
        .iter()
        .map(|(_, m)| match m.get("time") {
            Some(Edn::Int(t)) if *t >= 0 => Some(*t as u64),
            _ => None,
        })
        .collect();
    stamped.unwrap_or_else(|| (1..=maps.len() as u64).collect())
}

fn porcupine_kv(text: &str) -> Result<Loaded, String> {
    let maps = edn_maps(text)?;
    let at = times(&maps);
    let mut p = Pairing::<AppendModel>::new();
    let mut keys: BTreeMap<String, u64> = BTreeMap::new();
    let mut names = Vec::new();
    for ((line, m), at) in maps.iter().zip(at) {
        let line = *line;
        let Some(process) = process(m, line)? else {
            continue;
        };
        let string = |k: &str| -> Result<String, String> {
            match m.get(k) {
                Some(Edn::Str(s)) => Ok(s.to_string()),
                other => Err(format!("line {line}: :{k} must be a string, not {other:?}")),
            }
        };
        let (kind, f) = (keyword(m, "type", line)?, keyword(m, "f", line)?);
        match kind {
            "invoke" => {
                let name = string("key")?;
                let key = *keys.entry(name.clone()).or_insert_with(|| {
                    names.push(name);
                    names.len() as u64 - 1
                });
                let op = match f {
                    "get" => AppendOp::Get,
                    "put" => AppendOp::Put(string("value")?),
                    "append" => AppendOp::Append(string("value")?),
                    _ => return Err(format!("line {line}: unknown :f :{f}")),
                };
                p.invoke(line, process, key, op, at)?;
            }
            "ok" => {
                let ret = match f {
                    "get" => AppendRet::Value(string("value")?),
                    _ => AppendRet::Done,
                };
                p.ok(line, process, ret, at)?;
            }
            "fail" => {
                let id = p.complete(line, process)?;
                p.h.fail(id);
            }
            "info" => {
                p.complete(line, process)?;
            }
            _ => return Err(format!("line {line}: unknown :type :{kind}")),
        }
    }
    Ok(Loaded::Kv(p.h, names))
}

fn jepsen(text: &str) -> Result<History<CasRegister>, String> {
    let maps = edn_maps(text)?;
    let at = times(&maps);
    let mut p = Pairing::<CasRegister>::new();
    for ((line, m), at) in maps.iter().zip(at) {
        let line = *line;
        let Some(process) = process(m, line)? else {
            continue;
        };
        let (kind, f) = (keyword(m, "type", line)?, keyword(m, "f", line)?);
        let value = m.get("value");
        let pair = || -> Result<(i64, i64), String> {
            match value {
                Some(Edn::Vector(v)) if v.len() == 2 => Ok((
                    number(v.first(), "a cas's from", line)?,
                    number(v.get(1), "a cas's to", line)?,
                )),
                other => Err(format!(
                    "line {line}: a cas's :value is [from to], not {other:?}"
                )),
            }
        };
        match (kind, f) {
            ("invoke", "read") => p.invoke(line, process, 0, RegOp::Read, at)?,
            ("invoke", "write") => p.invoke(
                line,
                process,
                0,
                RegOp::Write(number(value, ":value", line)?),
                at,
            )?,
            ("invoke", "cas") => {
                let (a, b) = pair()?;
                p.invoke(line, process, 0, RegOp::Cas(a, b), at)?
            }
            ("ok", "read") => {
                let v = match value {
                    None | Some(Edn::Nil) => None,
                    v => Some(number(v, ":value", line)?),
                };
                p.ok(line, process, RegRet::Value(v), at)?
            }
            ("ok", "write") => p.ok(line, process, RegRet::Written, at)?,
            ("ok", "cas") => p.ok(line, process, RegRet::Swapped(true), at)?,
            ("fail", _) => {
                let id = p.complete(line, process)?;
                p.h.fail(id);
            }
            ("info", _) => {
                p.complete(line, process)?;
            }
            _ => return Err(format!("line {line}: unknown event :{kind} :{f}")),
        }
    }
    Ok(p.h)
}

/// `paxsim lin`: prints the verdict, the time it took and a failing
/// sub-history; 0 linearizable, 1 not, 3 undecided (`Err`: bad input, 2).
pub fn run(
    path: &std::path::Path,
    format: Option<Format>,
    budget: u64,
) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let format = match format {
        Some(f) => f,
        None => Format::detect(&text).map_err(|e| format!("{}: {e}", path.display()))?,
    };
    let loaded = load(&text, format).map_err(|e| format!("{}: {e}", path.display()))?;
    let started = Instant::now();
    let (verdict, keys) = match &loaded {
        Loaded::Kv(h, names) => {
            let name = |k: u64| format!("{:?}", names[k as usize]);
            (describe(check(h, budget), name), names.len())
        }
        Loaded::Register(h) => (describe(check(h, budget), |_| "the register".into()), 1),
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    println!(
        "{}: {format:?}, {} operations on {keys} key(s); checked in {ms:.1} ms",
        path.display(),
        loaded.ops()
    );
    println!("{}", verdict.1);
    Ok(ExitCode::from(verdict.0))
}

fn describe<M: Model>(r: Report<M>, name: impl Fn(u64) -> String) -> (u8, String) {
    match r {
        Report::Linearizable => (0, "linearizable".into()),
        Report::Unknown { key } => (
            3,
            format!("undecided: the search ran out of budget on key {} (raise --budget)", name(key)),
        ),
        Report::NotLinearizable { key, minimal } => (
            1,
            format!(
                "NOT linearizable on key {}; a failing sub-history ({} operations, no one of which can go while it fails for the same reason):\n{}",
                name(key),
                minimal.len(),
                linearizability::render::<M>(&minimal)
            ),
        ),
    }
}

#[cfg(test)]
#[path = "lin_tests.rs"]
mod tests;
