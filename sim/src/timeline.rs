//! A run as a space-time diagram: one self-contained HTML file (no network,
//! no CDN) with a lane per node, messages as arrows from send to delivery
//! (dropped ones crossed, duplicated ones marked), crashes to restarts,
//! partitions and pauses as shaded spans, notes (chosen, learned, elected
//! ...), client operations as intervals, and the violation highlighted
//! with the events on its node that led to it. Zoom, filter by node,
//! event kind or message kind, click an event for its details. The page draws on a canvas
//! only what is on screen, so a run of 30,000 events stays usable.
//!
//! It reads the trace's JSON events (`--trace json`, one object per event),
//! embedded in the page with their text form.

use crate::scenario::Report;
use crate::trace::Line;
use checkers::Violation;

const TEMPLATE: &str = include_str!("timeline.html");

/// The page for `lines` (a whole trace) of a run with `nodes` nodes.
pub fn html(
    title: &str,
    summary: &str,
    nodes: u8,
    violation: Option<&Violation>,
    lines: &[Line],
) -> String {
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(&l.json).expect("the trace's JSON is JSON"))
        .collect();
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    let violation = violation.map(|v| {
        serde_json::json!({
            "at_us": v.at_us,
            "node": v.node.map_or(-1, i64::from),
            "text": v.to_string(),
        })
    });
    let data = serde_json::json!({
        "title": title,
        "summary": summary,
        "nodes": nodes,
        "violation": violation,
        "events": events,
        "texts": texts,
    });
    // Inside a <script> element, "</" would end it early.
    let data = data.to_string().replace("</", "<\\/");
    TEMPLATE
        .replace("__TITLE__", &escape(title))
        .replace("__DATA__", &data)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes the diagram of `report` (which must hold its whole trace) to
/// `path`.
pub fn write(report: &Report, what: &str, path: &std::path::Path) -> Result<(), String> {
    let lines = report
        .trace
        .as_ref()
        .ok_or("no trace was kept for the diagram")?;
    let c = &report.config;
    let title = format!("{} seed {} ({what})", c.scenario, report.seed);
    let summary = format!(
        "{} nodes{}, {} clients, bugs [{}]; {} events, simulated {}, trace hash {:016x}",
        c.nodes,
        match c.spares {
            0 => String::new(),
            s => format!(" (+{s} spares)"),
        },
        c.clients,
        c.bugs.join(", "),
        report.stats.events,
        checkers::fmt_time(report.stats.sim_time_us),
        report.trace_hash
    );
    let page = html(
        &title,
        &summary,
        c.machines(),
        report.violation.as_ref(),
        lines,
    );
    std::fs::write(path, page).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("diagram: {}", path.display());
    Ok(())
}
