//! The trace as JSON Lines, schema `paxsim-trace/1`: what `--trace json`
//! prints, the diagram reads and other tools may rely on. The contract is
//! `sim/schema/paxsim-trace-1.json` (a JSON Schema, draft 2020-12, which
//! `paxsim schema` prints); a test validates every event kind of every
//! scenario against it.
//!
//! A trace is a `header` record (the schema's id, the seed, the scenario,
//! the cluster, the whole config and the fault schedule), then one `event`
//! record per event, then a `verdict` record (the violation or none, the
//! run's counts and its trace hash).
//!
//! One encoding for every value, whatever protocol it comes from, computed
//! from the serde data model ([`encode`]):
//! - an enum value is an object whose `kind` is the variant's name in
//!   snake_case: a struct variant's fields (or a newtype variant's struct's
//!   fields) are its other members; a newtype variant of anything else holds
//!   it in `value`, a tuple variant its values in `values`; a unit variant
//!   is `{"kind": ...}` alone;
//! - a struct is an object, a newtype struct its content, a unit struct and
//!   `()` null, `None` null and `Some(x)` as `x`, a sequence or tuple an
//!   array, bytes a lowercase hex string, a map an object (keys as strings);
//! - integers of 64 bits or more are decimal strings (a JSON number is exact
//!   only below 2^53 in JavaScript and jq 1.6), those of 32 bits or fewer
//!   numbers: the Rust type decides, never the value.
//!
//! The envelope's own integers (`at_us`, `id`, `seq`, `upto`, counts) are
//! numbers: the simulator makes them, and asserts they stay below 2^53.

use crate::engine::protocol::Protocol;
use crate::trace::{Event, Kind, Line, Link};
use serde::Serialize;
use serde_content::{Data, Number, Value};
use std::fmt::Write;

/// The schema's id, in every header.
pub const ID: &str = "paxsim-trace/1";

/// The schema itself (JSON Schema, draft 2020-12).
pub const SCHEMA: &str = include_str!("../schema/paxsim-trace-1.json");

/// The largest integer written as a JSON number: 2^53 - 1.
pub const MAX_SAFE: u64 = (1 << 53) - 1;

/// `v` in the trace's one encoding, as JSON text.
///
/// # Panics
/// If `v`'s type cannot be encoded: a map key that is not a string, number
/// or unit variant, or a variant whose fields include one named `kind`
/// (the tag's name). Both are properties of a protocol's summary types,
/// which the protocol's author fixes.
pub fn encode<T: Serialize + ?Sized>(v: &T) -> String {
    let value = serde_content::Serializer::new()
        .human_readable()
        .serialize(v)
        .unwrap_or_else(|e| panic!("a traced value does not serialize: {e}"));
    let mut out = String::new();
    write_value(&mut out, &value)
        .unwrap_or_else(|e| panic!("a traced value does not fit the trace's encoding: {e}"));
    out
}

fn write_value(out: &mut String, v: &Value) -> Result<(), String> {
    match v {
        Value::Unit | Value::Option(None) => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::Char(c) => write_str(out, c.encode_utf8(&mut [0; 4])),
        Value::String(s) => write_str(out, s),
        Value::Bytes(b) => {
            out.push('"');
            for x in b.iter() {
                let _ = write!(out, "{x:02x}");
            }
            out.push('"');
        }
        Value::Seq(vs) | Value::Tuple(vs) => write_array(out, vs)?,
        Value::Map(kvs) => {
            out.push('{');
            for (i, (k, v)) in kvs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, &map_key(k)?);
                out.push(':');
                write_value(out, v)?;
            }
            out.push('}');
        }
        Value::Option(Some(v)) => write_value(out, v)?,
        Value::Struct(s) => match &s.data {
            Data::Unit => out.push_str("null"),
            Data::NewType { value } => write_value(out, value)?,
            Data::Tuple { values } => write_array(out, values)?,
            Data::Struct { fields } => {
                out.push('{');
                write_fields(out, fields, false)?;
                out.push('}');
            }
        },
        Value::Enum(e) => {
            out.push_str("{\"kind\":");
            write_str(out, &snake_case(&e.variant));
            match &e.data {
                Data::Unit => {}
                Data::NewType { value } => match fields_of(value) {
                    Some(fields) => write_fields(out, fields, true).map_err(|err| named(err, e))?,
                    None => {
                        out.push_str(",\"value\":");
                        write_value(out, value)?;
                    }
                },
                Data::Tuple { values } => {
                    out.push_str(",\"values\":");
                    write_array(out, values)?;
                }
                Data::Struct { fields } => {
                    write_fields(out, fields, true).map_err(|err| named(err, e))?
                }
            }
            out.push('}');
        }
    }
    Ok(())
}

/// The fields of `v` if it is a struct with named fields (seen through
/// newtype structs).
fn fields_of<'a>(v: &'a Value<'a>) -> Option<&'a [(std::borrow::Cow<'static, str>, Value<'a>)]> {
    match v {
        Value::Struct(s) => match &s.data {
            Data::Struct { fields } => Some(fields),
            Data::NewType { value } => fields_of(value),
            _ => None,
        },
        _ => None,
    }
}

/// `err` about variant `e`, naming it.
fn named(err: String, e: &serde_content::Enum) -> String {
    format!("{}::{}: {err}", e.name, e.variant)
}

fn write_fields(
    out: &mut String,
    fields: &[(std::borrow::Cow<'static, str>, Value)],
    after_kind: bool,
) -> Result<(), String> {
    for (i, (name, v)) in fields.iter().enumerate() {
        if after_kind && name == "kind" {
            return Err("a variant has a field named `kind`, the tag's name".into());
        }
        if after_kind || i > 0 {
            out.push(',');
        }
        write_str(out, name);
        out.push(':');
        write_value(out, v)?;
    }
    Ok(())
}

fn write_array(out: &mut String, vs: &[Value]) -> Result<(), String> {
    out.push('[');
    for (i, v) in vs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(out, v)?;
    }
    out.push(']');
    Ok(())
}

fn write_number(out: &mut String, n: &Number) {
    let _ = match *n {
        Number::I8(x) => write!(out, "{x}"),
        Number::U8(x) => write!(out, "{x}"),
        Number::I16(x) => write!(out, "{x}"),
        Number::U16(x) => write!(out, "{x}"),
        Number::I32(x) => write!(out, "{x}"),
        Number::U32(x) => write!(out, "{x}"),
        Number::I64(x) => write!(out, "\"{x}\""),
        Number::U64(x) => write!(out, "\"{x}\""),
        Number::I128(x) => write!(out, "\"{x}\""),
        Number::U128(x) => write!(out, "\"{x}\""),
        Number::F32(x) => write_float(out, f64::from(x)),
        Number::F64(x) => write_float(out, x),
        // A kind of number serde may add: as its text, a string.
        ref other => write!(out, "\"{other:?}\""),
    };
}

fn write_float(out: &mut String, x: f64) -> std::fmt::Result {
    match serde_json::Number::from_f64(x) {
        Some(n) => write!(out, "{n}"),
        None => write!(out, "null"),
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

fn map_key(k: &Value) -> Result<String, String> {
    Ok(match k {
        Value::String(s) => s.to_string(),
        Value::Char(c) => c.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            let mut s = String::new();
            write_number(&mut s, n);
            s.trim_matches('"').to_string()
        }
        Value::Enum(e) if matches!(e.data, Data::Unit) => snake_case(&e.variant),
        Value::Struct(s) => match &s.data {
            Data::NewType { value } => map_key(value)?,
            _ => return Err("a map key that is a struct".into()),
        },
        _ => return Err("a map key that is not a string, number or unit variant".into()),
    })
}

/// `RebuildQuery` → `rebuild_query`, `HTTPServer` → `http_server`; any
/// character but a letter or digit becomes `_`.
pub fn snake_case(name: &str) -> String {
    let cs: Vec<char> = name.chars().collect();
    let mut s = String::with_capacity(name.len() + 4);
    for (i, &c) in cs.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|j| cs[j]);
            let next = cs.get(i + 1);
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary && !s.ends_with('_') {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            s.push(c);
        } else {
            s.push('_');
        }
    }
    s
}

/// A JSON object written in field order.
pub(crate) struct Obj(String);

impl Obj {
    pub(crate) fn record(kind: &str) -> Obj {
        let mut o = Obj(String::with_capacity(128));
        o.0.push_str("{\"record\":");
        write_str(&mut o.0, kind);
        o
    }
    pub(crate) fn key(&mut self, k: &str) -> &mut String {
        self.0.push_str(",\"");
        self.0.push_str(k);
        self.0.push_str("\":");
        &mut self.0
    }
    pub(crate) fn num(&mut self, k: &str, v: u64) {
        assert!(v <= MAX_SAFE, "the trace's {k} {v} is beyond 2^53");
        let _ = write!(self.key(k), "{v}");
    }
    pub(crate) fn opt_num(&mut self, k: &str, v: Option<u64>) {
        match v {
            Some(v) => self.num(k, v),
            None => self.key(k).push_str("null"),
        }
    }
    pub(crate) fn bool(&mut self, k: &str, v: bool) {
        self.key(k).push_str(if v { "true" } else { "false" });
    }
    pub(crate) fn str(&mut self, k: &str, v: &str) {
        write_str(self.key(k), v);
    }
    pub(crate) fn val<T: Serialize + ?Sized>(&mut self, k: &str, v: &T) {
        let v = encode(v);
        self.key(k).push_str(&v);
    }
    pub(crate) fn raw(&mut self, k: &str, json: &str) {
        self.key(k).push_str(json);
    }
    fn link(&mut self, l: &Link) {
        self.num("from", l.from.into());
        self.num("to", l.to.into());
        self.num("id", l.id);
    }
    pub(crate) fn end(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// An event, rendered: its text and its record.
pub fn line<P: Protocol>(ev: &Event<P>) -> Line {
    Line {
        at_us: ev.at_us,
        node: ev.node,
        text: ev.to_string(),
        json: event(ev),
    }
}

/// An event's record.
pub fn event<P: Protocol>(ev: &Event<P>) -> String {
    let node = ev.node.map(u64::from);
    let mut o = Obj::record("event");
    o.num("at_us", ev.at_us);
    o.opt_num("node", node);
    o.opt_num("inc", ev.node.map(|_| u64::from(ev.inc)));
    o.str("event", ev.kind.name());
    match &ev.kind {
        Kind::Send { link, msg } | Kind::Receive { link, msg } | Kind::Duplicate { link, msg } => {
            o.link(link);
            o.val("msg", msg);
        }
        Kind::Drop { link, msg, reason } => {
            o.link(link);
            o.val("msg", msg);
            o.str("reason", reason.as_str());
        }
        Kind::Forged { from, msg } => {
            o.num("from", (*from).into());
            o.opt_num("to", node);
            o.val("msg", msg);
        }
        Kind::Refused { from, why } => {
            o.num("from", (*from).into());
            o.str("why", why);
        }
        Kind::TimerSet {
            timer,
            delay_us,
            jitter_us,
            due_us,
        } => {
            o.val("timer", timer);
            o.num("delay_us", *delay_us);
            o.num("jitter_us", *jitter_us);
            o.opt_num("due_us", *due_us);
        }
        Kind::Timer { timer } => o.val("timer", timer),
        Kind::Persist { seq, write } => {
            o.num("seq", *seq);
            o.val("write", write);
        }
        Kind::SyncRequest { upto } | Kind::Sync { upto } => o.num("upto", *upto),
        Kind::Crash { lost_writes, cause } => {
            o.num("lost_writes", (*lost_writes).into());
            o.str("cause", cause.as_str());
        }
        Kind::Restart | Kind::Quiet => {}
        Kind::Rebuilding { corrupt } => o.bool("corrupt", *corrupt),
        Kind::Fault { fault } => o.val("fault", fault),
        Kind::Note { note } => o.val("note", note),
        Kind::Invoke { client, req } | Kind::Request { client, req } => {
            o.num("client", (*client).into());
            o.val("req", req);
        }
        Kind::Reply { client, reply } => {
            o.num("client", (*client).into());
            o.val("reply", reply);
        }
        Kind::Complete {
            client,
            from,
            reply,
        } => {
            o.num("client", (*client).into());
            o.num("from", (*from).into());
            o.val("reply", reply);
        }
        Kind::Retry { client } => o.num("client", (*client).into()),
        Kind::RequestLost { client, to, reason } => {
            o.num("client", (*client).into());
            o.num("to", (*to).into());
            o.str("reason", reason.as_str());
        }
        Kind::RequestDuplicated { client, to } => {
            o.num("client", (*client).into());
            o.num("to", (*to).into());
        }
        Kind::ReplyLost { client, from } => {
            o.num("client", (*client).into());
            o.num("from", (*from).into());
        }
    }
    o.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Ballot {
        round: u32,
        node: u8,
    }

    #[derive(Serialize)]
    enum Msg {
        Prepare { ballot: Ballot },
        Accepted(Ballot, u64),
        Learned(u64),
        Wrapped(Ballot),
        Query,
        RebuildQuery { digest: u64, slot: Option<u64> },
    }

    #[test]
    fn one_encoding_for_every_enum_and_wide_integers_as_strings() {
        let b = || Ballot { round: 1, node: 2 };
        let cases = [
            (
                encode(&Msg::Prepare { ballot: b() }),
                r#"{"kind":"prepare","ballot":{"round":1,"node":2}}"#,
            ),
            (
                encode(&Msg::Accepted(b(), 7)),
                r#"{"kind":"accepted","values":[{"round":1,"node":2},"7"]}"#,
            ),
            (
                encode(&Msg::Learned(u64::MAX)),
                r#"{"kind":"learned","value":"18446744073709551615"}"#,
            ),
            (
                encode(&Msg::Wrapped(b())),
                r#"{"kind":"wrapped","round":1,"node":2}"#,
            ),
            (encode(&Msg::Query), r#"{"kind":"query"}"#),
            (
                encode(&Msg::RebuildQuery {
                    digest: 1 << 60,
                    slot: None,
                }),
                r#"{"kind":"rebuild_query","digest":"1152921504606846976","slot":null}"#,
            ),
            (encode(&Some(3u8)), "3"),
            (encode(&(1u32, "a\"b")), r#"[1,"a\"b"]"#),
            (encode(&serde_bytes_like()), r#"{"1":"x"}"#),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
            serde_json::from_str::<serde_json::Value>(&got).expect("valid JSON");
        }
    }

    fn serde_bytes_like() -> std::collections::BTreeMap<u64, &'static str> {
        [(1, "x")].into_iter().collect()
    }

    #[test]
    #[should_panic(expected = "E::A: a variant has a field named `kind`")]
    fn a_variant_field_named_kind_is_refused() {
        #[derive(Serialize)]
        enum E {
            A { kind: u8 },
        }
        encode(&E::A { kind: 1 });
    }

    #[test]
    fn snake_case_names() {
        for (a, b) in [
            ("Prepare", "prepare"),
            ("RebuildQuery", "rebuild_query"),
            ("HTTPServer", "http_server"),
            ("already_snake", "already_snake"),
            ("V2Beta", "v2_beta"),
            ("a-b", "a_b"),
        ] {
            assert_eq!(snake_case(a), b);
        }
    }
}
