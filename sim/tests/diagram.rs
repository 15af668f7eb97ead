//! Issue 24: a run's space-time diagram, opened in a real headless browser
//! (Debian's chromium, which `deploy/chromium/install.sh` installs; `.ci/run`
//! runs it). The page must render every event of the trace (its script
//! says so on the body), show the violation in the DOM, and make a
//! screenshot; `replay`, `shrink` and `check` write it too.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{paxsim, text, tmp};

/// The browser, or why there is none (the test then says SKIPPED).
fn browser() -> Result<&'static str, String> {
    for b in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return Ok(b);
        }
    }
    Err("no chromium (deploy/chromium/install.sh installs it)".into())
}

/// Chromium, headless, on `page` with `what` (`--dump-dom`, or
/// `--screenshot=FILE`): its standard output.
fn chromium(b: &str, page: &Path, what: &str) -> String {
    let profile = page.with_extension("profile");
    let o = Command::new(b)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=10000",
            "--window-size=1400,900",
            &format!("--user-data-dir={}", profile.display()),
            what,
            &format!("file://{}", page.display()),
        ])
        .output()
        .expect("chromium runs");
    assert!(o.status.success(), "chromium failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The number of events a run traced, from its summary line.
fn events(run: &Output) -> u64 {
    let t = text(run);
    let line = t
        .lines()
        .find(|l| l.contains(" events, "))
        .expect("a summary line");
    line.split_whitespace().next().unwrap().parse().unwrap()
}

/// `multi` seed 1 with `learner-votes`: M2 on n5, its repro file in `dir`.
fn failing_run(dir: &Path, more: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "--scenario",
        "multi",
        "--seed",
        "1",
        "--bug",
        "learner-votes",
    ];
    let d = dir.to_str().unwrap();
    args.extend(["--trace", "none", "--repro-dir", d]);
    args.extend(more);
    paxsim(&args)
}

#[test]
fn a_failing_runs_diagram_renders_in_a_real_browser_with_the_violation_marked() {
    let dir = tmp("run");
    let page = dir.join("run.html");
    let repros = dir.join("repros");
    let run = failing_run(&repros, &["--html", page.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page loads nothing"
    );
    let b = match browser() {
        Ok(b) => b,
        Err(why) => return eprintln!("SKIPPED: {why}"),
    };
    let dom = chromium(b, &page, "--dump-dom");
    let n = events(&run);
    assert!(
        dom.contains(&format!("data-rendered=\"{n}\"")),
        "the page's script did not draw all {n} events"
    );
    // Filters by node, event kind and message kind.
    let kinds = dom
        .split("data-message-kinds=\"")
        .nth(1)
        .expect("message kinds");
    let kinds = kinds.split('"').next().unwrap();
    assert!(
        kinds.contains("accepted") && kinds.contains("prepare"),
        "{kinds}"
    );
    let violation = dom
        .split("id=\"violation\"")
        .nth(1)
        .expect("the violation is in the DOM");
    assert!(
        violation.contains("M2 violated") && violation.contains("data-node=\"5\""),
        "{violation:.300}"
    );
    let shot = dir.join("run.png");
    chromium(b, &page, &format!("--screenshot={}", shot.display()));
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `kv` with 30,000+ events: the page draws what is on screen, and its
/// script still gets through every event in the browser.
#[test]
fn a_kv_run_of_30000_events_renders() {
    let dir = tmp("kv");
    let page = dir.join("kv.html");
    let run = paxsim(&[
        "run",
        "--scenario",
        "kv",
        "--seed",
        "1",
        "--trace",
        "none",
        "--html",
        page.to_str().unwrap(),
        "--repro-dir",
        dir.to_str().unwrap(),
    ]);
    let n = events(&run);
    assert!(n >= 30_000, "{n} events");
    let b = match browser() {
        Ok(b) => b,
        Err(why) => return eprintln!("SKIPPED: {why}"),
    };
    let dom = chromium(b, &page, "--dump-dom");
    assert!(dom.contains(&format!("data-rendered=\"{n}\"")));
    assert!(dom.contains("id=\"ok\""), "a passing run says so");
    std::fs::remove_dir_all(&dir).ok();
}

/// `replay`, `shrink` and `check` write the diagram of what they ran.
#[test]
fn replay_shrink_and_check_write_the_diagram() {
    let dir = tmp("verbs");
    let d = dir.to_str().unwrap();
    let run = failing_run(&dir, &[]);
    let t = text(&run);
    let repro = t
        .lines()
        .find_map(|l| l.strip_prefix("replay: paxsim replay "))
        .unwrap_or_else(|| panic!("no repro file: {t}"))
        .trim()
        .to_string();
    for (args, page, says) in [
        (
            vec!["replay", &repro, "--trace", "none"],
            "replay.html",
            "M2 violated",
        ),
        (
            vec!["shrink", &repro, "--budget", "50", "--repro-dir", d],
            "shrink.html",
            "M2 violated",
        ),
        (
            vec![
                "check",
                "--scenario",
                "basic",
                "--clients",
                "1",
                "--crashes",
                "1",
                "--bug",
                "volatile-round",
                "--repro-dir",
                d,
            ],
            "check.html",
            "S5 violated",
        ),
    ] {
        let path = dir.join(page);
        let mut args: Vec<&str> = args;
        let p = path.to_str().unwrap().to_string();
        args.extend(["--html", &p]);
        let o = paxsim(&args);
        let html = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&o)));
        assert!(
            html.contains(says),
            "{args:?}: the violation is in the page"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
