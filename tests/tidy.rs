//! A tidy check (TigerBeetle's `tidy.zig`): code the simulator runs must not
//! read a clock, draw OS randomness, spawn threads or iterate a random-state
//! hash map, and no `dbg!` is left behind. Runner code that is allowed wall
//! time and threads is listed with the reason.

use std::path::{Path, PathBuf};

const BANNED: [(&str, &str); 10] = [
    ("Instant::now", "wall clock"),
    ("SystemTime", "wall clock"),
    ("thread_rng", "OS-seeded randomness"),
    ("rand::random", "OS-seeded randomness"),
    ("OsRng", "OS randomness"),
    ("thread::spawn", "threads"),
    ("HashMap", "random-state iteration order"),
    ("HashSet", "random-state iteration order"),
    ("RandomState", "random-state hashing"),
    ("dbg!(", "leftover debugging"),
];

/// Files allowed some of the above, and why.
/// Crates that run only for real, never inside the simulator: the service,
/// and the filesystem its real processes run on (a kernel's FUSE calls).
const REAL_RUNTIME: [&str; 2] = ["crates/paxkv/", "crates/forgetfs/"];

const ALLOWED: [(&str, &[&str], &str); 8] = [
    (
        "sim/src/lin.rs",
        &["Instant::now"],
        "`paxsim lin` times the check of a file for its report; no run sees it",
    ),
    (
        "sim/src/campaign.rs",
        &["Instant::now"],
        "the campaign runner times itself; runs never see it",
    ),
    (
        "sim/src/bench.rs",
        &["Instant::now"],
        "the benchmark measures wall time by design",
    ),
    (
        "sim/src/check.rs",
        &["Instant::now"],
        "the model checker times its exploration; no state sees it",
    ),
    (
        "tests/tidy.rs",
        &[
            "Instant::now",
            "SystemTime",
            "thread_rng",
            "rand::random",
            "OsRng",
            "thread::spawn",
            "HashMap",
            "HashSet",
            "RandomState",
            "dbg!(",
        ],
        "this file lists the banned names",
    ),
    (
        "crates/node/src/sim.rs",
        &["thread_rng"],
        "madsim's thread_rng is the runtime's seeded generator under cfg(madsim)",
    ),
    (
        "crates/linearizability/src/search.rs",
        &["HashSet"],
        "the memo set uses a fixed-key FxHash and is never iterated",
    ),
    (
        "sim/src/engine/mod.rs",
        &["HashSet"],
        "R2's fact sets use a fixed-key FxHash and are never iterated",
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn simulated_code_has_no_determinism_hazards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for d in ["crates", "sim", "tests"] {
        rust_files(&root.join(d), &mut files);
    }
    assert!(files.len() > 10, "tidy found too few files: {files:?}");
    let mut problems = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        // The real runtime reads clocks, spawns tasks and does IO: that is
        // its job. Only the simulated code must not.
        if REAL_RUNTIME.iter().any(|r| rel.starts_with(r)) {
            continue;
        }
        let allowed: &[&str] = ALLOWED.iter().find(|a| a.0 == rel).map_or(&[], |a| a.1);
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for (pat, why) in BANNED {
                if code.contains(pat) && !allowed.contains(&pat) {
                    problems.push(format!("{rel}:{}: {pat} ({why})", i + 1));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "determinism hazards:\n{}",
        problems.join("\n")
    );
}

/// Campaigns are release builds, and release drops `debug_assert!` and
/// `cfg!(debug_assertions)` blocks. The protocol's invariants must hold in
/// every simulation build, so the code the simulator runs may not use them.
#[test]
fn protocol_invariants_are_never_compiled_out() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for d in [
        "crates/paxos/src",
        "crates/multipaxos/src",
        "crates/kv/src",
        "crates/checkers/src",
        "sim/src",
    ] {
        rust_files(&root.join(d), &mut files);
    }
    assert!(files.len() > 10, "tidy found too few files: {files:?}");
    let mut problems = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().to_string();
        // Only the benchmark's "this is a debug build" note may look.
        if rel.ends_with("sim/src/cli.rs") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for pat in ["debug_assert", "debug_assertions"] {
                if code.contains(pat) {
                    problems.push(format!("{rel}:{}: {pat}", i + 1));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "assertions that a release campaign would skip:\n{}",
        problems.join("\n")
    );
}

/// The seam holds: the engine knows no protocol, and the runners (campaign,
/// shrink, decode, bench, repro, the CLI) name no scenario and branch on
/// none. They reach protocols only through the scenario table.
#[test]
fn runners_and_the_engine_name_no_protocol_and_no_scenario() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    rust_files(&root.join("sim/src/engine"), &mut files);
    for f in [
        "campaign.rs",
        "check.rs",
        "shrink.rs",
        "decode.rs",
        "bench.rs",
        "repro.rs",
        "results.rs",
        "cli.rs",
        "main.rs",
        "nemesis.rs",
        "trace.rs",
    ] {
        files.push(root.join("sim/src").join(f));
    }
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        // Unit tests may name the scenarios they test.
        let text = text.split("#[cfg(test)]").next().unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for pat in [
                "\"basic\"",
                "\"multi\"",
                "\"kv\"",
                "multipaxos",
                "kv::",
                "paxos::Msg",
                "paxos::Input",
                "paxos::Output",
                "is_log",
                "scenarios::",
            ] {
                if code.contains(pat) {
                    problems.push(format!("{}:{}: {pat}", f.display(), i + 1));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "protocol knowledge outside the adapters:\n{}",
        problems.join("\n")
    );
}

/// No file of the harness imports one that imports it back (the two
/// simulator worlds once did). A `crate::a::b` path counts as an import of
/// the longest module file it names; `mod.rs` re-exporting a child counts
/// as importing the child.
#[test]
fn no_file_of_the_harness_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let src = root.join("sim/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // The module file a path names, if any: `a/b.rs`, `a/b/mod.rs`, ...
    let module = |parts: &[&str]| -> Option<PathBuf> {
        for k in (1..=parts.len()).rev() {
            let p = parts[..k].join("/");
            for f in [src.join(format!("{p}.rs")), src.join(&p).join("mod.rs")] {
                if f.exists() {
                    return Some(f);
                }
            }
        }
        None
    };
    let mut edges = std::collections::BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap();
        let here: Vec<String> = f
            .strip_prefix(&src)
            .unwrap()
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .filter(|c| c != "mod")
            .collect();
        for line in text.lines() {
            let code = line.split("//").next().unwrap();
            let mut rest = code;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + 7..];
                let path: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':' || *c == '{')
                    .collect();
                let (head, group) = match path.split_once("::{") {
                    Some((h, g)) => (h.to_string(), Some(g.to_string())),
                    None => (path.trim_end_matches(':').to_string(), None),
                };
                let parts: Vec<&str> = head.split("::").filter(|p| !p.is_empty()).collect();
                let mut targets: Vec<PathBuf> = module(&parts).into_iter().collect();
                if let Some(g) = group {
                    let items = rest.split('}').next().unwrap_or("");
                    for item in items.split(',').map(|i| i.trim().trim_start_matches('{')) {
                        let mut p = parts.clone();
                        p.push(item);
                        if let Some(m) = module(&p) {
                            targets.push(m);
                        }
                    }
                    let _ = g;
                }
                for t in targets {
                    if &t != f {
                        edges.insert((f.clone(), t));
                    }
                }
            }
            // A parent module using a child (`pub use child::...`).
            let trimmed = code.trim_start();
            for prefix in ["pub use ", "use "] {
                if let Some(r) = trimmed.strip_prefix(prefix) {
                    let first = r.split("::").next().unwrap_or("");
                    let mut p: Vec<&str> = here.iter().map(String::as_str).collect();
                    p.push(first);
                    if first != "crate" && first != "super" && first != "std" {
                        if let Some(m) = module(&p) {
                            if &m != f && m.starts_with(f.parent().unwrap()) {
                                edges.insert((f.clone(), m));
                            }
                        }
                    }
                }
            }
        }
    }
    let back: Vec<String> = edges
        .iter()
        .filter(|(a, b)| edges.contains(&(b.clone(), a.clone())) && a < b)
        .map(|(a, b)| format!("{} <-> {}", a.display(), b.display()))
        .collect();
    assert!(
        edges.len() > 20,
        "the import scan found too little: {edges:?}"
    );
    assert!(
        back.is_empty(),
        "files that import each other:\n{}",
        back.join("\n")
    );
}

/// What in `text` (one Rust file) could turn a BUGGIFY knob on: a `Buggify`
/// other than `Buggify::OFF`, a `buggify:` field set to anything else, an
/// assignment to a `.buggify` field or knob.
fn buggify_turned_on(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap();
        let mut bad = code
            .match_indices("Buggify")
            .any(|(at, _)| !code[at..].starts_with("Buggify::OFF"));
        if let Some(at) = code.find("buggify:") {
            bad |= !code[at..].contains("Buggify::OFF");
        }
        for (at, _) in code.match_indices(".buggify") {
            let rest = code[at + ".buggify".len()..]
                .trim_start_matches(|c: char| c.is_alphanumeric() || c == '_' || c == '.');
            let rest = rest.trim_start();
            bad |= rest.starts_with('=') && !rest.starts_with("==");
        }
        if bad {
            found.push((i + 1, line.trim().to_string()));
        }
    }
    found
}

/// BUGGIFY is the simulator's alone: the real service (`crates/paxkv`) names
/// no knob set but `Buggify::OFF` and assigns none, so every real build runs
/// the cores with their knobs off. (`paxkv`'s own unit test checks the
/// configs it builds.)
#[test]
fn the_real_service_never_turns_a_buggify_knob_on() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    rust_files(&root.join("crates/paxkv"), &mut files);
    assert!(files.len() > 3, "tidy found too few paxkv files: {files:?}");
    let mut problems = Vec::new();
    let mut off = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        off += text.matches("Buggify::OFF").count();
        for (line, code) in buggify_turned_on(&text) {
            problems.push(format!("{}:{line}: {code}", f.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "paxkv may only run with BUGGIFY off:\n{}",
        problems.join("\n")
    );
    assert!(off >= 2, "paxkv builds both configs with Buggify::OFF");
    // The scan has teeth.
    for bad in [
        "buggify: multipaxos::Buggify { short_lease: true, ..Buggify::OFF },",
        "buggify: knobs,",
        "cfg.buggify.short_lease = true;",
        "cfg.buggify = drawn;",
        "let k = kv::server::Buggify::default();",
    ] {
        assert_eq!(buggify_turned_on(bad).len(), 1, "{bad}");
    }
    for good in [
        "buggify: multipaxos::Buggify::OFF,",
        "assert_eq!(o.log_config().buggify, multipaxos::Buggify::OFF);",
        "assert!(!o.server_config().buggify.any());",
    ] {
        assert!(buggify_turned_on(good).is_empty(), "{good}");
    }
}

/// Lines of code: neither blank nor a comment.
fn code_lines(text: &str) -> usize {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count()
}

/// Issue 20: what decides durability order runs in the simulator
/// (`kv::write_path`); what `paxkv` keeps outside it is a shell of system
/// calls small enough to read at once, and stays so.
#[test]
fn paxkvs_durability_shell_stays_small_and_decides_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let shell = std::fs::read_to_string(root.join("crates/paxkv/src/storage.rs")).unwrap();
    let lines = code_lines(&shell);
    assert!(
        // 200 until issue 22 added the WAL's mark, a third file.
        (50..=210).contains(&lines),
        "crates/paxkv/src/storage.rs has {lines} lines of code: move decisions to kv::write_path"
    );
    // The write path encodes, loads, compacts and reports syncs; the shell
    // only moves its bytes.
    for decision in [
        "storage::load",
        "storage::encode",
        "storage::new_file",
        "Input::Synced",
        "Step::Synced",
    ] {
        assert!(
            !shell.contains(decision),
            "crates/paxkv/src/storage.rs makes a write path decision: {decision}"
        );
    }
    let server = std::fs::read_to_string(root.join("crates/paxkv/src/server.rs")).unwrap();
    let writer = server
        .split("\nfn writer(")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .expect("paxkv's writer thread");
    assert!(
        code_lines(writer) <= 12,
        "paxkv's writer thread grew: it only executes batches"
    );
    assert!(code_lines("// a\n\nlet x = 1;\n  // b\n") == 1);
}
