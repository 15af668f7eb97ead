//! `paxsim check` on the log scenarios `multi` and `kv` (replicas on the
//! model's free-running clocks, see [`crate::check`]). State counts of
//! complete explorations are pinned (a change to the core, the checker or
//! the model shows here), and so are the shortest histories breadth-first
//! search finds for the log canaries within reach; the simulator's engine
//! replays each of those and breaks the same invariant.

use crate::check::{Bounds, CheckReport};
use crate::config::RunConfig;
use crate::trace::Keep;
use checkers::Invariant;

fn config(scenario: &str, clients: u8, bug: Option<&str>) -> RunConfig {
    let mut cfg = RunConfig {
        nodes: 3,
        // As `paxsim check` runs by default: no spare machines.
        spares: 0,
        clients,
        ..RunConfig::for_scenario(scenario)
    };
    if let Some(b) = bug {
        cfg.enable_bug(b).unwrap();
    }
    cfg.validate().unwrap();
    cfg
}

fn explore(scenario: &str, clients: u8, bug: Option<&str>, b: Bounds, max: usize) -> CheckReport {
    let cfg = config(scenario, clients, bug);
    let s = crate::scenario::find(scenario).unwrap();
    s.explore(&cfg, b, crate::check::Search::states(max))
        .unwrap()
}

const fn bounds(crashes: u8, losses: u8, timers: u8) -> Bounds {
    Bounds {
        crashes,
        losses,
        duplicates: 0,
        timers,
        changes: 0,
    }
}

/// Three replicas, two clients writing through n0 and n1, one timer firing
/// (one election) and one lost message: every interleaving, no violation.
#[test]
fn multi_two_commands_one_loss_is_explored_completely_and_passes() {
    let r = explore("multi", 2, None, bounds(0, 1, 1), 1_000_000);
    assert!(r.complete);
    assert!(r.violation.is_none(), "{:?}", r.violation);
    // Issue 19: 44,160 before; a repeated Prepare or a resent Accept no
    // longer writes a second record (fewer writes and syncs to interleave).
    // Issue 23: 37,716 before; a leader now records who promised its
    // ballot, late promises included (a configuration with new voters
    // needs them), so a late promise makes a state of its own.
    assert_eq!((r.unique_states, r.max_depth), (41_376, 18));
}

/// One command, one election, one crash (which loses the unsynced writes:
/// syncs are steps of their own then): every interleaving, no violation.
#[test]
fn multi_one_command_one_crash_is_explored_completely_and_passes() {
    let r = explore("multi", 1, None, bounds(1, 0, 1), 2_000_000);
    assert!(r.complete);
    assert!(r.violation.is_none(), "{:?}", r.violation);
    // Issue 19: 314,522 and depth 28 before; a repeated Prepare or a
    // resent Accept no longer writes a second record (the candidate's own
    // Prepare to itself was one), so fewer writes and syncs interleave.
    // Issue 20: 189,314 before; the replicas' writes go through paxkv's
    // write path, whose group commit keeps one sync in flight per replica
    // (the writes behind it share the next), so a crash has fewer
    // half-synced prefixes to choose from.
    // Issue 23: 131,718 before; late promises count (see above).
    assert_eq!((r.unique_states, r.max_depth), (134_714, 26));
}

/// The bounds that find `prepare-before-promise` in four steps find nothing
/// in the correct protocol (a restarted candidate stands in a new ballot:
/// its promise was durable before its Prepares left). Not complete: a
/// bounded prefix of breadth-first order, the shallow histories.
#[test]
fn multi_restart_and_reelection_raise_no_false_alarm() {
    let r = explore("multi", 1, None, bounds(1, 0, 2), 300_000);
    assert!(r.violation.is_none(), "{:?}", r.violation);
    assert!(r.max_depth >= 8, "depth {}", r.max_depth);
}

/// The log canaries within reach of a tiny configuration (3 replicas, one
/// command), each found with a shortest history of pinned length. The
/// others were not found within 3 M states; worked out by hand they need
/// more: `truncate-on-restart` two commands, a crash and two elections,
/// `commit-without-entry` two commands and a third timer firing,
/// `non-atomic-chosen` a crash after a follower learned;
/// `wiped-rejoins-as-voter` a wiped disk, which the model has no action for.
#[test]
fn multi_canaries_are_found_with_shortest_histories() {
    for (bug, b, invariant, steps) in [
        // Crash before the promise is durable, restart, stand again in
        // the same ballot.
        ("prepare-before-promise", bounds(1, 0, 2), Invariant::P6, 4),
        // n1 promised n1's ballot, then accepted n0's older one.
        ("deposed-leader-writes", bounds(0, 0, 2), Invariant::P5, 9),
        // n1 is elected on n0's promise reporting slot 0, accepted by n0
        // alone, and applies it as chosen.
        ("assume-reported-chosen", bounds(0, 0, 2), Invariant::P2, 12),
    ] {
        let r = explore("multi", 1, Some(bug), b, 3_000_000);
        let (v, script) = r.violation.unwrap_or_else(|| panic!("{bug} not found"));
        assert_eq!(v.invariant, invariant, "{bug}: {v}");
        assert_eq!(script.steps.len(), steps, "{bug}: {:?}", script.steps);
        let cfg = RunConfig {
            faults: Some(crate::nemesis::Faults::NONE),
            ..config("multi", 1, Some(bug))
        };
        let s = crate::scenario::find("multi").unwrap();
        let replayed = s.run_script(cfg, &script, Keep::Recent).unwrap();
        let again = replayed.violation.expect("the replay fails");
        assert_eq!(
            again.invariant, invariant,
            "{bug}: the replay broke {again}"
        );
    }
}

/// `kv` is explorable too. Under leases every replica boots refusing to
/// promise for `lease_us` on its own clock (longer than an election
/// timeout), so a first election takes four timer firings: two replicas'
/// clocks must each pass `lease_us`, which takes two firings apiece.
#[test]
fn kv_one_read_is_explored_completely_and_passes() {
    let r = explore("kv", 1, None, bounds(0, 0, 4), 1_000_000);
    assert!(r.complete);
    assert!(r.violation.is_none(), "{:?}", r.violation);
    // Issue 19: 61,460 before (no second record for a repeated promise).
    assert_eq!((r.unique_states, r.max_depth), (49_940, 20));
}

/// Issue 23: one complete exploration of one membership change on the
/// smallest configuration where it means something: three voters and a
/// spare, α (the window) of 1, one command, one election, and the
/// operator's one change (the spare replaces the last voter), asked of any
/// live node at any moment. The change is chosen and applied in the
/// explored space (15 steps: elect, choose the command, ask the leader,
/// choose the configuration); every interleaving passes, M1-M3 included.
#[test]
fn multi_one_membership_change_is_explored_completely_and_passes() {
    let cfg = one_change_config(None);
    let s = crate::scenario::find("multi").unwrap();
    let b = Bounds {
        changes: 1,
        ..bounds(0, 0, 1)
    };
    let r = s
        .explore(&cfg, b, crate::check::Search::states(2_000_000))
        .unwrap();
    assert!(r.complete);
    assert!(r.violation.is_none(), "{:?}", r.violation);
    assert_eq!((r.unique_states, r.max_depth), (155_976, 26));
    // The change itself is what makes the space: without it, 2,870.
    let none = s
        .explore(
            &cfg,
            bounds(0, 0, 1),
            crate::check::Search::states(2_000_000),
        )
        .unwrap();
    assert_eq!(none.unique_states, 2_870);
}

fn one_change_config(bug: Option<&str>) -> RunConfig {
    let mut cfg = RunConfig {
        spares: 1,
        ..config("multi", 1, bug)
    };
    cfg.set_param("window=1").unwrap();
    cfg.validate().unwrap();
    cfg
}

/// The model's operator step replays in the engine: the 15-step history
/// that chooses the change, as a script, applies it at the leader (the
/// trace shows the operator's request and the new configuration applied)
/// and breaks nothing; a script naming a node that is down is refused.
#[test]
fn an_operator_step_replays_in_the_engine() {
    use crate::engine::protocol::MemberChange;
    use crate::engine::{Script, Step};
    let msg = |from, to, msg: &str| Step::Deliver {
        from,
        to,
        msg: msg.to_string(),
    };
    let replace = Step::Reconfigure {
        node: 0,
        change: MemberChange::Replace { old: 4, new: 8 },
    };
    let steps = vec![
        Step::Fire {
            node: 0,
            timer: "Log(Election { epoch: 1 })".into(),
        },
        msg(0, 0, "Prepare(1.0, slot 0, #515e)"),
        msg(0, 0, "Promise(1.0, #ea2e)"),
        msg(0, 1, "Prepare(1.0, slot 0, #515e)"),
        msg(1, 0, "Promise(1.0, #ea2e)"),
        Step::Request {
            client: 0,
            node: 0,
            req: "#1 Put { key: 0, value: \"100\" }".into(),
        },
        msg(0, 0, "Accept(1.0, slot 0, 1 entries, #d80f)"),
        msg(0, 0, "Accepted(1.0, slot 0, #25bc)"),
        msg(0, 1, "Accept(1.0, slot 0, 1 entries, #d80f)"),
        msg(1, 0, "Accepted(1.0, slot 0, #25bc)"),
        replace.clone(),
        msg(0, 0, "Accept(1.0, slot 1, 1 entries, #2b04)"),
        msg(0, 0, "Accepted(1.0, slot 1, #fba7)"),
        msg(0, 1, "Accept(1.0, slot 1, 1 entries, #2b04)"),
        msg(1, 0, "Accepted(1.0, slot 1, #fba7)"),
    ];
    let cfg = RunConfig {
        faults: Some(crate::nemesis::Faults::NONE),
        ..one_change_config(None)
    };
    let s = crate::scenario::find("multi").unwrap();
    let script = Script {
        immediate_syncs: true,
        steps: steps.clone(),
    };
    let r = s.run_script(cfg.clone(), &script, Keep::All).unwrap();
    assert!(r.violation.is_none(), "{:?}", r.violation);
    let trace: Vec<String> = r.trace.unwrap().iter().map(|l| l.text.clone()).collect();
    let asked = trace.iter().position(|l| l.contains("replace n2 by n3"));
    let proposed = trace
        .iter()
        .position(|l| l.contains("RECONFIGURE to epoch 1: voters {n0,n1,n2}, learners {n3}"));
    let applied = trace.iter().position(|l| l.contains("n0 APPLY slot 1"));
    assert!(
        proposed > asked,
        "the leader proposed it:\n{}",
        trace.join("\n")
    );
    assert!(
        asked.is_some(),
        "the operator's step is traced:\n{}",
        trace.join("\n")
    );
    assert!(
        applied > asked,
        "the change was chosen after it was asked:\n{}",
        trace.join("\n")
    );
    let mut down = steps;
    down.insert(0, Step::Crash { node: 0 });
    down.truncate(1);
    down.push(replace);
    let script = Script {
        immediate_syncs: true,
        steps: down,
    };
    match s.run_script(cfg, &script, Keep::Recent) {
        Err(e) => assert!(e.contains("n0 is down"), "{e}"),
        Ok(_) => panic!("a step asking a node that is down was accepted"),
    }
}
