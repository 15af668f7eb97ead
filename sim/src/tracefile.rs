//! A run's trace as a file in the schema `paxsim-trace/1` ([`schema`]):
//! its header record (what ran), its event records, its verdict record
//! (how it ended). `--trace json` prints it; the diagram embeds it.

use crate::nemesis::Schedule;
use crate::scenario::Report;
use crate::schema::{self, encode, Obj, MAX_SAFE};
use std::fmt::Write;

/// The header record of `report`'s trace.
pub fn header(report: &Report) -> String {
    let c = &report.config;
    let mut o = Obj::record("header");
    o.str("schema", schema::ID);
    o.str("paxsim", env!("CARGO_PKG_VERSION"));
    o.str("scenario", &c.scenario);
    o.str("seed", &report.seed.to_string());
    o.num("nodes", c.nodes.into());
    o.num("spares", c.spares.into());
    o.num("machines", c.machines().into());
    o.num("clients", c.clients.into());
    o.bool("scripted", report.scripted);
    o.val("bugs", &c.bugs);
    match c.buggify_knobs() {
        Some(k) => o.str("buggify", &k),
        None => o.raw("buggify", "null"),
    }
    o.raw(
        "config",
        &serde_json::to_string(c).expect("a config serializes"),
    );
    o.raw("schedule", &schedule(&report.schedule));
    o.end()
}

fn schedule(s: &Schedule) -> String {
    let mut out = String::from("[");
    for (i, t) in s.faults.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        assert!(t.at_us <= MAX_SAFE);
        let _ = write!(
            out,
            "{{\"at_us\":{},\"fault\":{}}}",
            t.at_us,
            encode(&t.fault)
        );
    }
    out.push(']');
    out
}

/// The verdict record of `report`.
pub fn verdict(report: &Report) -> String {
    let s = &report.stats;
    let mut o = Obj::record("verdict");
    o.bool("ok", report.violation.is_none());
    match &report.violation {
        None => o.raw("violation", "null"),
        Some(v) => {
            let v = serde_json::json!({
                "invariant": format!("{:?}", v.invariant),
                "description": v.invariant.describe(),
                "at_us": v.at_us,
                "node": v.node,
                "detail": v.detail,
                "text": v.to_string(),
            });
            o.raw("violation", &v.to_string());
        }
    }
    o.num("events", s.events);
    o.num("deliveries", s.deliveries);
    o.num("drops", s.drops);
    o.num("duplicates", s.duplicates);
    o.num("forged", s.forged);
    o.num("refused", s.refused);
    o.num("sim_time_us", s.sim_time_us);
    o.bool("unproven", s.unproven > 0);
    o.str("trace_hash", &format!("{:016x}", report.trace_hash));
    o.end()
}

/// `report`'s whole trace in the schema: its header, its events (those it
/// kept) and its verdict, one record per line.
pub fn records(report: &Report) -> String {
    let events = report.trace.as_deref().unwrap_or_default();
    let mut s = String::with_capacity(events.len() * 128 + 1024);
    s += &header(report);
    s.push('\n');
    for l in events {
        s += &l.json;
        s.push('\n');
    }
    s += &verdict(report);
    s.push('\n');
    s
}
