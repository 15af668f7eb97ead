//! A run as a space-time diagram: one self-contained HTML file (no network,
//! no CDN) with a lane per node, messages as arrows from send to delivery
//! (dropped ones crossed, duplicated ones marked), crashes to restarts,
//! partitions and pauses as shaded spans, notes (chosen, learned, elected
//! ...), client operations as intervals, and the violation highlighted
//! with the events on its node that led to it. Zoom, filter by node,
//! event kind or message kind, click an event for its details. The page draws on a canvas
//! only what is on screen, so a run of 30,000 events stays usable.
//!
//! It reads the trace's records in the schema `paxsim-trace/1` (what
//! `--trace json` prints: [`crate::schema`]), embedded in the page with the
//! events' text form.

use crate::scenario::Report;
use crate::tracefile;

const TEMPLATE: &str = include_str!("timeline.html");

/// The page of `report`, which must hold its whole trace.
pub fn html(title: &str, summary: &str, report: &Report) -> Result<String, String> {
    let lines = report
        .trace
        .as_ref()
        .ok_or("no trace was kept for the diagram")?;
    let parse = |json: &str| -> serde_json::Value {
        serde_json::from_str(json).expect("the trace's records are JSON")
    };
    let events: Vec<serde_json::Value> = lines.iter().map(|l| parse(&l.json)).collect();
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    let data = serde_json::json!({
        "title": title,
        "summary": summary,
        "header": parse(&tracefile::header(report)),
        "events": events,
        "verdict": parse(&tracefile::verdict(report)),
        "texts": texts,
    });
    // Inside a <script> element, "</" would end it early.
    let data = data.to_string().replace("</", "<\\/");
    Ok(TEMPLATE
        .replace("__TITLE__", &escape(title))
        .replace("__DATA__", &data))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes the diagram of `report` (which must hold its whole trace) to
/// `path`.
pub fn write(report: &Report, what: &str, path: &std::path::Path) -> Result<(), String> {
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
    let page = html(&title, &summary, report)?;
    std::fs::write(path, page).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("diagram: {}", path.display());
    Ok(())
}
