//! Shrinking a failing run: the smallest (schedule, fault intensities,
//! workload) under the same seed that still breaks the same invariant.
//!
//! A campaign's failure is a seed whose schedule may hold a dozen faults
//! under a swarm of message losses, duplicates and delays, with 5 clients
//! running 200 operations each. Most of that is noise. The shrinker reruns
//! the seed with parts taken away and keeps every cut after which the run
//! still fails *with the same invariant* (a cut that makes it fail in some
//! other way is refused, so the shrunk repro shows the bug that was found,
//! not a different one):
//!
//! 1. the schedule, delta-debugging style: drop halves, then quarters, ...
//!    then single faults;
//! 2. each per-message or per-sync fault probability: zero it, else halve it;
//! 3. the workload: fewer operations per client, fewer clients (in `basic`,
//!    fewer proposers).
//!
//! and repeats until a whole pass cuts nothing or the run budget is spent.
//! The episode counts in the config (how many crashes, partitions, ... to
//! draw) are zeroed in the result: they only drew the schedule, which is
//! explicit in the repro file.
//! Everything is deterministic: the same repro file shrinks to the same
//! result. The seed stays fixed: the scheduler draws each purpose from its
//! own stream, so taking a fault away perturbs the rest of the run little,
//! and a cut that perturbs it too much simply does not fail and is undone.

use crate::config::RunConfig;
use crate::nemesis::Schedule;
use crate::repro::Repro;
use crate::scenario::{run_schedule, Report};
use crate::trace::Keep;
use checkers::Invariant;

/// What a shrink found.
pub struct Shrunk {
    /// The shrunk run, rerun in full (trace kept): save it as a repro.
    pub report: Report,
    /// The invariant both the original and the shrunk run break.
    pub invariant: Invariant,
    /// Runs spent, the confirming ones included.
    pub runs: u32,
    /// True if the budget ran out before a pass cut nothing.
    pub budget_spent: bool,
}

/// A candidate: what the shrinker may change.
#[derive(Clone)]
struct Case {
    cfg: RunConfig,
    schedule: Schedule,
}

struct Shrinker<'a> {
    seed: u64,
    target: Invariant,
    runs: u32,
    budget: u32,
    say: &'a mut dyn FnMut(&str),
}

impl Shrinker<'_> {
    /// True if `c` still breaks the target invariant; false also once the
    /// budget is spent (so every loop winds down without another run).
    fn fails(&mut self, c: &Case) -> bool {
        if self.runs >= self.budget {
            return false;
        }
        self.runs += 1;
        let r = run_schedule(self.seed, &c.cfg, c.schedule.clone(), Keep::Recent);
        r.violation.is_some_and(|v| v.invariant == self.target)
    }

    fn spent(&self) -> bool {
        self.runs >= self.budget
    }

    /// Delta debugging over the schedule: remove chunks of decreasing size.
    fn schedule(&mut self, best: &mut Case) -> bool {
        let mut cut_any = false;
        let mut chunk = best.schedule.faults.len().div_ceil(2).max(1);
        while !best.schedule.faults.is_empty() && !self.spent() {
            let mut start = 0;
            let mut cut = false;
            while start < best.schedule.faults.len() && !self.spent() {
                let end = (start + chunk).min(best.schedule.faults.len());
                let mut c = best.clone();
                c.schedule.faults.drain(start..end);
                if self.fails(&c) {
                    let before = best.schedule.faults.len();
                    *best = c;
                    (self.say)(&format!(
                        "schedule: {before} -> {} faults",
                        best.schedule.faults.len()
                    ));
                    cut = true;
                    cut_any = true;
                } else {
                    start = end;
                }
            }
            if chunk == 1 && !cut {
                break;
            }
            if !cut {
                chunk = chunk.div_ceil(2);
            }
        }
        cut_any
    }

    /// Zeroes (else halves) each runtime fault probability.
    fn intensities(&mut self, best: &mut Case) -> bool {
        let mut cut_any = false;
        let get = |c: &Case, name: &str| c.cfg.faults.and_then(|f| f.get(name)).expect("a knob");
        for name in KNOBS {
            loop {
                let now = get(best, name);
                if now == 0 || self.spent() {
                    break;
                }
                let mut tried = None;
                for to in [0, now / 2] {
                    if to == now || Some(to) == tried {
                        continue;
                    }
                    tried = Some(to);
                    let mut c = best.clone();
                    assert!(c.cfg.faults.as_mut().expect("resolved").lower(name, to));
                    if self.fails(&c) {
                        *best = c;
                        (self.say)(&format!("{name}: {now} -> {to}"));
                        cut_any = true;
                        break;
                    }
                }
                if get(best, name) == now {
                    break;
                }
            }
        }
        cut_any
    }

    /// Fewer operations per client, then fewer clients.
    fn workload(&mut self, best: &mut Case) -> bool {
        let mut cut_any = false;
        // Operations: the fewest of a few candidates that still fail. Once the
        // first client finishes earlier than before, the run diverges, so
        // most cuts of a late failure do not reproduce; a cut that does is kept.
        while best.cfg.ops > 1 && !self.spent() {
            let now = best.cfg.ops;
            let mut cut = false;
            for to in [
                1,
                now / 8,
                now / 4,
                now / 2,
                now * 3 / 4,
                now * 7 / 8,
                now - 1,
            ] {
                if to == 0 || to >= now {
                    continue;
                }
                let mut c = best.clone();
                c.cfg.ops = to;
                if self.fails(&c) {
                    *best = c;
                    (self.say)(&format!("operations per client: {now} -> {to}"));
                    cut = true;
                    cut_any = true;
                    break;
                }
            }
            if !cut {
                break;
            }
        }
        while best.cfg.clients > 1 && !self.spent() {
            let mut c = best.clone();
            c.cfg.clients -= 1;
            if !self.fails(&c) {
                break;
            }
            (self.say)(&format!(
                "clients: {} -> {}",
                best.cfg.clients, c.cfg.clients
            ));
            *best = c;
            cut_any = true;
        }
        cut_any
    }
}

/// The runtime fault probabilities a shrink may lower (`--faults` names).
/// The episode counts in `Faults` only drew the schedule; the schedule
/// itself is shrunk.
const KNOBS: [&str; 8] = [
    "loss_permille",
    "dup_permille",
    "long_delay_permille",
    "jitter_us",
    "disk_jitter_us",
    "crash_in_sync_permille",
    "torn_permille",
    "snapshot_crash_permille",
];

/// Shrinks the failure saved in `repro`, spending at most `budget` runs,
/// reporting each accepted cut through `say`. Errors if the repro's run
/// does not fail (nothing to shrink).
pub fn shrink(repro: &Repro, budget: u32, say: &mut dyn FnMut(&str)) -> Result<Shrunk, String> {
    if repro.script.is_some() {
        return Err(
            "this repro file is a model checker's counterexample: breadth-first search \
             found it shortest already, there is nothing to shrink"
                .into(),
        );
    }
    let first = run_schedule(
        repro.seed,
        &repro.config,
        repro.schedule.clone(),
        Keep::Recent,
    );
    let Some(v) = first.violation else {
        return Err(format!(
            "seed {} passes under this repro's config and schedule: there is no failure to shrink",
            repro.seed
        ));
    };
    let mut s = Shrinker {
        seed: repro.seed,
        target: v.invariant,
        runs: 1,
        budget: budget.max(2),
        say,
    };
    let mut best = Case {
        cfg: repro.config.clone(),
        schedule: repro.schedule.clone(),
    };
    loop {
        let mut cut = s.schedule(&mut best);
        cut |= s.intensities(&mut best);
        cut |= s.workload(&mut best);
        if !cut || s.spent() {
            break;
        }
    }
    let budget_spent = s.spent();
    // The schedule is explicit now: drop the episode counts that drew it, so
    // the shrunk repro's header says what the run really had.
    best.cfg.faults = best.cfg.faults.map(|f| f.without_episodes());
    let report = run_schedule(repro.seed, &best.cfg, best.schedule, Keep::All);
    let again = report.violation.as_ref().map(|v| v.invariant);
    assert_eq!(
        again,
        Some(s.target),
        "a shrunk case failed while shrinking but not when rerun: nondeterminism"
    );
    Ok(Shrunk {
        report,
        invariant: s.target,
        runs: s.runs + 1,
        budget_spent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::run_seed;

    /// The first seed under `bug` whose swarm run fails with a schedule of
    /// at least `min_faults` faults.
    fn failing(scenario: &str, bug: &str, min_faults: usize) -> Repro {
        let mut cfg = RunConfig::for_scenario(scenario);
        cfg.enable_bug(bug).unwrap();
        (0..2_000)
            .map(|seed| run_seed(seed, &cfg, Keep::Recent))
            .find(|r| r.violation.is_some() && r.schedule.faults.len() >= min_faults)
            .map(|r| Repro::from_report(&r))
            .expect("the canary fails on some seed")
    }

    #[test]
    fn a_basic_failure_shrinks_to_fewer_faults_and_still_fails_the_same_way() {
        let repro = failing("basic", "ignore-promised-values", 6);
        let target = repro.violation.as_ref().unwrap().invariant;
        let mut said = Vec::new();
        let out = shrink(&repro, 400, &mut |s| said.push(s.to_string())).unwrap();
        assert_eq!(out.invariant, target);
        assert_eq!(out.report.violation.as_ref().unwrap().invariant, target);
        assert!(
            out.report.schedule.faults.len() < repro.schedule.faults.len(),
            "no fault cut from {:?}; said {said:?}",
            repro.schedule
        );
        assert!(!said.is_empty());
        assert!(out.runs <= 401);
        // The result is a fixed point: shrinking it again cuts nothing more
        // (unless the first shrink ran out of budget).
        if !out.budget_spent {
            let again = shrink(&Repro::from_report(&out.report), 400, &mut |_| {}).unwrap();
            assert_eq!(again.report.schedule, out.report.schedule);
            assert_eq!(again.report.config, out.report.config);
        }
    }

    #[test]
    fn a_kv_failure_shrinks_its_workload_too() {
        let repro = failing("kv", "truncate-on-restart", 1);
        let out = shrink(&repro, 300, &mut |_| {}).unwrap();
        let (was, now) = (&repro.config, &out.report.config);
        assert_eq!(
            out.report.violation.as_ref().unwrap().invariant,
            repro.violation.as_ref().unwrap().invariant
        );
        assert!(
            now.ops * u32::from(now.clients) < was.ops * u32::from(was.clients),
            "workload not cut: {} x {}",
            now.clients,
            now.ops
        );
    }

    #[test]
    fn a_passing_run_is_refused() {
        let cfg = RunConfig::for_scenario("basic");
        let r = run_seed(1, &cfg, Keep::Recent);
        assert!(r.violation.is_none());
        let err = shrink(&Repro::from_report(&r), 10, &mut |_| {})
            .err()
            .unwrap();
        assert!(err.contains("no failure to shrink"), "{err}");
    }

    #[test]
    fn the_budget_bounds_the_runs() {
        let repro = failing("basic", "ignore-promised-values", 6);
        let out = shrink(&repro, 5, &mut |_| {}).unwrap();
        assert!(out.runs <= 6, "{} runs", out.runs);
        assert!(out.budget_spent);
    }
}
