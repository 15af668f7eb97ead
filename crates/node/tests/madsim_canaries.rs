//! The checkers have teeth under madsim too: every known-buggy variant of
//! Basic Paxos (7) and of the replicated log and service (22 here; the
//! hostile-input ones are the engine's, and `union-quorum`, which needs
//! aimed faults the fast scheduler's `tests/log_canaries.rs` gives it) is caught
//! within a bounded number of madsim seeds, by an invariant it breaks, and
//! its first failing seed replays to the same violation and trace.
#![cfg(madsim)]

use checkers::Invariant::{self, *};
use paxos_node::{run, Runnable};
use paxsim::scenarios::basic::Basic;
use paxsim::scenarios::log::KV;
use paxsim::{Faults, RunConfig, Scenario};

/// A canary's madsim run: faults (`None`: the swarm draws them), cluster
/// size and operations per client (`kv`), seed budget, and the invariants
/// that may catch it.
struct Case {
    name: &'static str,
    faults: Option<&'static str>,
    nodes: Option<u8>,
    ops: u32,
    budget: u64,
    expect: &'static [Invariant],
}

const fn case(name: &'static str, budget: u64, expect: &'static [Invariant]) -> Case {
    Case {
        name,
        faults: None,
        nodes: None,
        ops: 50,
        budget,
        expect,
    }
}

const BASIC: [Case; 7] = [
    case("reply-before-sync", 20, &[D1]),
    case("accept-below-promise", 100, &[S2, S3, S4]),
    case("ignore-promised-values", 100, &[S2, S3, S4]),
    case("count-duplicate-accepted", 200, &[S3]),
    case("minority-quorum", 100, &[S2, S3, S4]),
    case("shared-ballots", 20, &[S5]),
    case("volatile-round", 300, &[S5]),
];

const KV_CASES: [Case; 22] = [
    case("deposed-leader-writes", 100, &[P5, P1, P2]),
    // With membership changes (issue 23) an entry a leader took for
    // chosen may have a majority of the configuration before a change
    // only: M1 names it.
    case("assume-reported-chosen", 100, &[P2, P1, P3, M1]),
    case("commit-without-entry", 100, &[P2, K2, K3, Assert]),
    case("truncate-on-restart", 100, &[P1, P2, Assert]),
    case("read-without-lease", 100, &[K3]),
    // An isolated leader on a slow clock keeps serving reads after a
    // majority on fast clocks let its lease go. madsim's hops of at least
    // 2 ms leave less of that window for a new leader to commit in than the
    // engine's 0.5 ms: 3 replicas (one fast follower suffices) and many
    // leader isolations.
    Case {
        faults: Some("leader_faults=10,clock_drift_ppm=200000"),
        nodes: Some(3),
        ops: 200,
        // The first failure moved from within 300 seeds to seed 406 when
        // byte values, Accepts that leave at once and BUGGIFY (whose short
        // lease hides the drift in the seeds that draw it) came together,
        // and to seed 19 when heartbeats stopped resending the Accepts of
        // the last interval (issue 19); the budget stays where it was.
        // Since issue 21 the lease is also judged directly (P7).
        ..case("lease-ignores-drift", 1_000, &[K3, P7])
    },
    case("snapshot-without-dedup", 100, &[K2, K3, P3, L2]),
    case("wiped-rejoins-as-voter", 300, &[P1, P2, P3, Assert]),
    // A crash must land between the mark and the entry on a replica that
    // accepted another entry in the slot: competing leaders and crashes in
    // syncs. The stale entry it then applies is another's command (K2) or
    // the wrong one (P2). About 1 seed in 400-500 fails, with BUGGIFY or
    // without and in the fast scheduler too; single first failures moved
    // from seed 75 to 612 (BUGGIFY) and 1407 (Accepts leaving at once), so
    // the budget allows for a late one.
    Case {
        faults: Some(
            "leader_faults=6,crashes=6,crash_in_sync_permille=50,partitions=3,loss_permille=50",
        ),
        ..case("non-atomic-chosen", 2000, &[P1, P2, P3, K2, Assert])
    },
    case("prepare-before-promise", 200, &[P6]),
    case("leader-stops-proposing", 50, &[L2]),
    case("no-catch-up", 50, &[L2]),
    // Issue 20: paxkv's write path reports a write synced too early; the
    // first message that reveals it breaks D1.
    case("synced-before-fsync", 20, &[D1]),
    case("pipelined-sync", 20, &[D1]),
    // Issue 21: a lease timed from its acknowledgements (P7).
    case("lease-from-ack", 100, &[P7]),
    // Issue 21: recovery's two decisions, with bit flips aimed at them
    // (the tail; a leader's disk with its Accepts in flight).
    Case {
        ops: 200,
        ..case("corrupt-tail-as-torn", 1_000, &[P5, P6, P1, P2, R2, Assert])
    },
    Case {
        faults: Some("bit_flips=6,long_delay_permille=300"),
        nodes: Some(3),
        ops: 200,
        ..case("rebuild-without-fence", 1_000, &[P1, P2, P3])
    },
    // Issue 21: the service's specification in log order (K4).
    case("plain-write-keeps-owner", 100, &[K4]),
    // Issue 23: membership changes, the nemesis asking the leader's
    // process through its queue.
    case("config-when-received", 100, &[M2, M1, P1, P2]),
    case("learner-votes", 100, &[M2]),
    case("removed-keeps-voting", 100, &[M2]),
    Case {
        ops: 200,
        ..case("ignore-reported-config", 1_000, &[M1, P1, P2])
    },
];

fn check<S: Runnable>(s: &'static S, c: &Case) {
    let mut cfg = RunConfig::for_scenario(s.name());
    cfg.enable_bug(c.name).unwrap();
    cfg.faults = c.faults.map(|f| Faults::parse(f).unwrap());
    if s.name() == "kv" {
        cfg.ops = c.ops;
    }
    if let Some(n) = c.nodes {
        cfg.nodes = n;
    }
    let found = (0..c.budget).find_map(|seed| {
        let o = run(s, &cfg, seed);
        o.violation.map(|v| (seed, v, o.trace_hash))
    });
    let Some((seed, v, hash)) = found else {
        panic!("{} survived {} madsim seeds", c.name, c.budget);
    };
    println!("{} under madsim: first failing seed {seed}: {v}", c.name);
    assert!(c.expect.contains(&v.invariant), "{}: {v}", c.name);
    let again = run(s, &cfg, seed);
    assert_eq!(again.violation, Some(v), "{} replays", c.name);
    assert_eq!(again.trace_hash, hash, "{} replays", c.name);
}

fn basic(name: &str) {
    check(&Basic, BASIC.iter().find(|c| c.name == name).unwrap());
}

fn kv(name: &str) {
    check(&KV, KV_CASES.iter().find(|c| c.name == name).unwrap());
}

#[test]
fn every_canary_has_a_madsim_case() {
    let names = |cases: &[Case]| cases.iter().map(|c| c.name).collect::<Vec<_>>();
    let known = |s: &dyn Fn() -> Vec<(&'static str, &'static str)>| {
        s().into_iter().map(|c| c.0).collect::<Vec<_>>()
    };
    assert_eq!(names(&BASIC), known(&|| Basic.canaries()));
    let mut kv = names(&KV_CASES);
    kv.extend(ENGINE_ONLY);
    kv.extend(NOT_CAUGHT_YET);
    kv.sort();
    let mut known_kv = known(&|| KV.canaries());
    known_kv.sort();
    assert_eq!(kv, known_kv);
}

/// Canaries only the engine catches: it alone forges hostile messages
/// (`hostile_permille`), judges R2 on its disks and R1 on its sends; the madsim runner
/// plays the engine's fault schedule, not these. Each is pinned to a seed
/// in `tests/hostile.rs` and caught in `tests/log_canaries.rs`.
const ENGINE_ONLY: [&str; 4] = [
    "rewrite-resent-accepts",
    "trust-peer-messages",
    "walk-to-commit-index",
    "send-state-whole",
];

/// Canaries this runner's default swarm does not reach: `union-quorum`
/// needs a two-for-two replacement across a leader change inside the
/// α-window; `tests/log_canaries.rs` aims the fast scheduler's faults at it
/// (caught at seed 2,328), and a hand-driven history in `multipaxos` shows
/// it too.
const NOT_CAUGHT_YET: [&str; 1] = ["union-quorum"];

#[test]
fn basic_reply_before_sync() {
    basic("reply-before-sync");
}
#[test]
fn basic_accept_below_promise() {
    basic("accept-below-promise");
}
#[test]
fn basic_ignore_promised_values() {
    basic("ignore-promised-values");
}
#[test]
fn basic_count_duplicate_accepted() {
    basic("count-duplicate-accepted");
}
#[test]
fn basic_minority_quorum() {
    basic("minority-quorum");
}
#[test]
fn basic_shared_ballots() {
    basic("shared-ballots");
}
#[test]
fn basic_volatile_round() {
    basic("volatile-round");
}

#[test]
fn kv_deposed_leader_writes() {
    kv("deposed-leader-writes");
}
#[test]
fn kv_assume_reported_chosen() {
    kv("assume-reported-chosen");
}
#[test]
fn kv_commit_without_entry() {
    kv("commit-without-entry");
}
#[test]
fn kv_truncate_on_restart() {
    kv("truncate-on-restart");
}
#[test]
fn kv_read_without_lease() {
    kv("read-without-lease");
}
#[test]
fn kv_lease_ignores_drift() {
    kv("lease-ignores-drift");
}
#[test]
fn kv_snapshot_without_dedup() {
    kv("snapshot-without-dedup");
}
#[test]
fn kv_wiped_rejoins_as_voter() {
    kv("wiped-rejoins-as-voter");
}
#[test]
fn kv_non_atomic_chosen() {
    kv("non-atomic-chosen");
}
#[test]
fn kv_prepare_before_promise() {
    kv("prepare-before-promise");
}
#[test]
fn kv_leader_stops_proposing() {
    kv("leader-stops-proposing");
}
#[test]
fn kv_no_catch_up() {
    kv("no-catch-up");
}
#[test]
fn kv_synced_before_fsync() {
    kv("synced-before-fsync");
}
#[test]
fn kv_pipelined_sync() {
    kv("pipelined-sync");
}
#[test]
fn kv_corrupt_tail_as_torn() {
    kv("corrupt-tail-as-torn");
}
#[test]
fn kv_rebuild_without_fence() {
    kv("rebuild-without-fence");
}
#[test]
fn kv_plain_write_keeps_owner() {
    kv("plain-write-keeps-owner");
}
#[test]
fn kv_lease_from_ack() {
    kv("lease-from-ack");
}
#[test]
fn kv_config_when_received() {
    kv("config-when-received");
}
#[test]
fn kv_learner_votes() {
    kv("learner-votes");
}
#[test]
fn kv_removed_keeps_voting() {
    kv("removed-keeps-voting");
}
#[test]
fn kv_ignore_reported_config() {
    kv("ignore-reported-config");
}
