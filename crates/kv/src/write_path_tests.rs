//! Group commit, sync reporting, compaction and recovery, and the two
//! planted mistakes of the write path.

use super::*;
use multipaxos::{Ballot, Entry, Snap};
use std::sync::Arc;

const CLUSTER: u64 = 7;

fn init() -> (State, u64) {
    let bytes = WritePath::new_file(CLUSTER, 0);
    let Recovery::Recover { state, good } = recover(Some(&bytes), CLUSTER, 0, &Bugs::default())
    else {
        panic!("a new file recovers");
    };
    (state, good)
}

fn path(bugs: Bugs, compact_bytes: u64) -> WritePath {
    WritePath::new(CLUSTER, 0, compact_bytes, bugs, Some(init()))
}

fn accept(slot: u64) -> LogWrite {
    Write::Accept {
        slot,
        ballot: Ballot { round: 1, node: 0 },
        entry: Entry::Noop,
    }
}

/// Persist and sync `seq`, as the core issues a write.
fn issue(p: &mut WritePath, seq: u64, w: LogWrite) -> Vec<Step> {
    let mut steps = Vec::new();
    p.persist(seq, w, &mut steps);
    p.sync(seq, &mut steps);
    steps
}

fn batch_seqs(s: &Step) -> Option<Vec<u64>> {
    match s {
        Step::Write(Batch {
            io: BatchIo::Append(recs),
            ..
        }) => Some(recs.iter().map(|r| r.seq).collect()),
        _ => None,
    }
}

#[test]
fn writes_behind_a_batch_in_flight_share_the_next_fsync_and_nothing_is_synced_before_done() {
    let mut p = path(Bugs::default(), u64::MAX);
    let s = issue(&mut p, 1, accept(0));
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(batch_seqs(&s[0]), Some(vec![1]));
    // Two more while #1's fsync runs: queued, nothing reported.
    assert!(issue(&mut p, 2, accept(1)).is_empty());
    assert!(issue(&mut p, 3, accept(2)).is_empty());
    let mut s = Vec::new();
    p.done(1, &mut s);
    assert!(matches!(s[0], Step::Synced(1)), "{s:?}");
    assert_eq!(batch_seqs(&s[1]), Some(vec![2, 3]), "one batch, one fsync");
    let mut s = Vec::new();
    p.done(3, &mut s);
    assert!(matches!(s[..], [Step::Synced(3)]), "{s:?}");
    assert_eq!(p.state().accepted.len(), 3);
}

#[test]
fn canary_synced_before_fsync_reports_a_batch_as_it_is_handed_over() {
    let bugs = Bugs {
        synced_before_fsync: true,
        ..Bugs::default()
    };
    let mut p = path(bugs, u64::MAX);
    let s = issue(&mut p, 1, accept(0));
    assert!(matches!(s[..], [Step::Write(_), Step::Synced(1)]), "{s:?}");
}

#[test]
fn canary_pipelined_sync_reports_a_sync_the_writer_merely_has() {
    let bugs = Bugs {
        pipelined_sync: true,
        ..Bugs::default()
    };
    let mut p = path(bugs, u64::MAX);
    issue(&mut p, 1, accept(0));
    // #2 is only queued behind #1's batch, yet reported synced.
    let s = issue(&mut p, 2, accept(1));
    assert!(matches!(s[..], [Step::Synced(2)]), "{s:?}");
}

fn snapshot(upto: u64) -> LogWrite {
    Write::Snapshot(Snap {
        configs: [(0, multipaxos::Members::first(0b111))].into(),
        ..Snap::new(upto, Arc::new(crate::Machine::default()))
    })
}

#[test]
fn a_snapshot_past_the_threshold_replaces_the_file_with_one_record_of_the_same_state() {
    let mut p = path(Bugs::default(), 200);
    let mut seq = 0;
    let mut all = init().0;
    let mut file = WritePath::new_file(CLUSTER, 0);
    for slot in 0..10 {
        seq += 1;
        let w = accept(slot);
        all.apply(&w);
        let s = issue(&mut p, seq, w);
        let Some(Step::Write(Batch {
            io: BatchIo::Append(recs),
            ..
        })) = s.first()
        else {
            panic!("{s:?}")
        };
        for r in recs {
            file.extend_from_slice(&r.bytes);
        }
        p.done(seq, &mut Vec::new());
    }
    assert!(file.len() > 200);
    seq += 1;
    let w = snapshot(5);
    all.apply(&w);
    let s = issue(&mut p, seq, w);
    let Some(Step::Write(Batch {
        io: BatchIo::Replace { bytes, write },
        upto,
        len,
    })) = s.first()
    else {
        panic!("{s:?}")
    };
    assert_eq!(*upto, seq);
    assert_eq!(*len, bytes.len() as u64, "the new file's length");
    assert!(matches!(write, Write::Rebuilt(_)));
    let Recovery::Recover { state, good } = recover(Some(bytes), CLUSTER, 0, &Bugs::default())
    else {
        panic!("the new file does not load")
    };
    assert_eq!(state, all, "the compacted file loads to another state");
    assert_eq!(good, bytes.len() as u64);
    assert!(
        bytes.len() < file.len(),
        "compaction did not shrink the file"
    );
    // And the appended file, as it stood, loads to the same state too.
    let mut appended = file.clone();
    appended.extend_from_slice(&storage::encode(&snapshot(5)));
    let Recovery::Recover { state: before, .. } =
        recover(Some(&appended), CLUSTER, 0, &Bugs::default())
    else {
        panic!()
    };
    assert_eq!(before, all);
}

#[test]
fn a_rebuilding_replica_starts_its_file_with_the_rebuilt_state() {
    let mut p = WritePath::new(CLUSTER, 0, u64::MAX, Bugs::default(), None);
    let d = State {
        initialized: true,
        promised: Ballot { round: 3, node: 1 },
        ..State::default()
    };
    let s = issue(&mut p, 1, Write::Rebuilt(Box::new(d.clone())));
    let Some(Step::Write(Batch {
        io: BatchIo::Replace { bytes, .. },
        ..
    })) = s.first()
    else {
        panic!("{s:?}")
    };
    let Recovery::Recover { state, .. } = recover(Some(bytes), CLUSTER, 0, &Bugs::default()) else {
        panic!()
    };
    assert_eq!(state, d);
    p.done(1, &mut Vec::new());
    let s = issue(&mut p, 2, accept(0));
    assert_eq!(batch_seqs(&s[0]), Some(vec![2]), "appends after it");
}

#[test]
fn recovery_cuts_a_torn_tail_rebuilds_a_lost_file_and_refuses_another_clusters() {
    let mut file = WritePath::new_file(CLUSTER, 0);
    let whole = file.len();
    file.extend_from_slice(&storage::encode(&accept(0)));
    let good = file.len() as u64;
    let rec = storage::encode(&accept(1));
    file.extend_from_slice(&rec[..rec.len() - 3]);
    match recover(Some(&file), CLUSTER, 0, &Bugs::default()) {
        Recovery::Recover { state, good: g } => {
            assert_eq!(g, good);
            assert_eq!(state.accepted.len(), 1);
        }
        r => panic!("{r:?}"),
    }
    assert!(matches!(
        recover(None, CLUSTER, 0, &Bugs::default()),
        Recovery::Rebuild { corrupt: false, .. }
    ));
    assert!(matches!(
        recover(Some(&[]), CLUSTER, 0, &Bugs::default()),
        Recovery::Rebuild { corrupt: false, .. }
    ));
    let mut flipped = file[..good as usize].to_vec();
    flipped[whole + 2] ^= 0x10;
    assert!(matches!(
        recover(Some(&flipped), CLUSTER, 0, &Bugs::default()),
        Recovery::Rebuild { corrupt: true, .. }
    ));
    assert!(matches!(
        recover(Some(&file), CLUSTER + 1, 0, &Bugs::default()),
        Recovery::Refuse(_)
    ));
}

/// A last record written whole but failing its checksum is corrupt, not
/// torn: it may be a synced vote. Canary 20 takes it for torn.
#[test]
fn a_corrupt_last_record_is_not_a_torn_one_unless_the_canary_says_so() {
    let mut file = WritePath::new_file(CLUSTER, 0);
    file.extend_from_slice(&storage::encode(&accept(0)));
    let good = file.len();
    file.extend_from_slice(&storage::encode(&accept(1)));
    let mut flipped = file.clone();
    *flipped.last_mut().unwrap() ^= 0x01;
    assert!(matches!(
        recover(Some(&flipped), CLUSTER, 0, &Bugs::default()),
        Recovery::Rebuild { corrupt: true, .. }
    ));
    let mut bugs = Bugs::default();
    bugs.enable("corrupt-tail-as-torn").unwrap();
    match recover(Some(&flipped), CLUSTER, 0, &bugs) {
        Recovery::Recover { state, good: g } => {
            assert_eq!(g, good as u64, "the whole last record dropped");
            assert_eq!(state.accepted.len(), 1, "the synced vote forgotten");
        }
        r => panic!("{r:?}"),
    }
    // A flip before the last record is corrupt even for the canary.
    let mut early = file.clone();
    early[good - 1] ^= 0x01;
    assert!(matches!(
        recover(Some(&early), CLUSTER, 0, &bugs),
        Recovery::Rebuild { corrupt: true, .. }
    ));
}

/// Issue 22: a WAL names its replica; another replica's (restored from a
/// peer's files) is refused, never recovered as this one's votes.
#[test]
fn another_replicas_wal_is_refused() {
    let mut file = WritePath::new_file(CLUSTER, 1);
    file.extend_from_slice(&storage::encode(&accept(0)));
    assert_eq!(storage::replica_of(&file), Some(1));
    assert!(matches!(
        recover(Some(&file), CLUSTER, 1, &Bugs::default()),
        Recovery::Recover { .. }
    ));
    match recover(Some(&file), CLUSTER, 0, &Bugs::default()) {
        Recovery::Refuse(why) => assert!(why.contains("belongs to replica 1"), "{why}"),
        r => panic!("{r:?}"),
    }
    // A file from before replicas were named is anyone's.
    let old = storage::new_file::<Cmd, Snapshot>(CLUSTER, &Write::Init);
    assert!(matches!(
        recover(Some(&old), CLUSTER, 0, &Bugs::default()),
        Recovery::Recover { .. }
    ));
}

/// Issue 22: a file cut after it was synced (mid-file, by hand) reads like
/// a torn tail from its bytes alone. Each batch's `len` is the file's
/// length once it is durable; the driver's mark of it makes recovery
/// rebuild a file whose good bytes end before the mark, and only then: a
/// torn tail past the mark, a stale mark, a mark of another file (before a
/// compaction) or a damaged one recover as before.
#[test]
fn a_file_cut_before_its_mark_rebuilds_and_a_torn_tail_past_it_does_not() {
    let mut file = WritePath::new_file(CLUSTER, 0);
    let mut p = path(Bugs::default(), u64::MAX);
    let mut marks = Vec::new();
    for seq in 1..=4 {
        let s = issue(&mut p, seq, accept(seq - 1));
        let Some(Step::Write(b)) = s.first() else {
            panic!("{s:?}")
        };
        let BatchIo::Append(recs) = &b.io else {
            panic!("{b:?}")
        };
        for r in recs {
            file.extend_from_slice(&r.bytes);
        }
        assert_eq!(b.len, file.len() as u64, "a batch's len is the file's");
        marks.push(mark(&file, b.len));
        let mut steps = Vec::new();
        p.done(seq, &mut steps);
    }
    let bugs = Bugs::default();
    let rec = |bytes: &[u8], m: Option<&[u8]>| recover_marked(Some(bytes), m, CLUSTER, 0, &bugs);
    let last = &marks[3][..];
    // Whole: recovers.
    assert!(
        matches!(rec(&file, Some(last)), Recovery::Recover { good, .. } if good == file.len() as u64)
    );
    // A torn tail past the mark (a crash during the next append): cut off.
    let mut torn = file.clone();
    torn.extend_from_slice(&[7, 0, 0, 0, 1, 2]);
    assert!(
        matches!(rec(&torn, Some(last)), Recovery::Recover { good, .. } if good == file.len() as u64)
    );
    // Cut in the middle of the last synced record: it was synced, so
    // maybe counted; rebuild, saying why.
    let cut = &file[..file.len() - 5];
    match rec(cut, Some(last)) {
        Recovery::Rebuild { corrupt: true, why } => {
            assert!(why.contains("had been synced"), "{why}")
        }
        r => panic!("{r:?}"),
    }
    // Without a mark, or with a stale one (a power cut kept an older
    // mark), the same cut is taken for a torn tail, as before.
    assert!(matches!(rec(cut, None), Recovery::Recover { .. }));
    assert!(matches!(
        rec(cut, Some(&marks[2][..])),
        Recovery::Recover { .. }
    ));
    // A mark of another file (the one a compaction replaced) or a damaged
    // one vouches for nothing.
    let rebuilt: LogWrite = Write::Rebuilt(Box::default());
    let compacted = storage::new_file_of(CLUSTER, Some(0), &rebuilt);
    let other = mark(&compacted, u64::MAX);
    assert!(matches!(
        rec(cut, Some(&other[..])),
        Recovery::Recover { .. }
    ));
    let mut damaged = marks[3];
    damaged[0] ^= 1;
    assert!(matches!(
        rec(cut, Some(&damaged[..])),
        Recovery::Recover { .. }
    ));
    assert!(matches!(
        rec(cut, Some(&last[..10])),
        Recovery::Recover { .. }
    ));
}
