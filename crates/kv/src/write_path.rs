//! A replica's write path, between the log core and its write-ahead log:
//! group commit, when a write counts as synced, WAL compaction, and what
//! recovery makes of the file's bytes. Sans-IO, and shared: `paxkv` runs it
//! on real files (its writer thread only executes the [`Batch`]es), and the
//! simulator's `kv` and `multi` replicas run it on the simulated disk, whose
//! power loss drops what was not synced. So the code that decides
//! durability order in the real server is the code the simulator checks.
//!
//! **Group commit.** The core issues each write with its sync
//! ([`multipaxos::Output::Persist`], [`multipaxos::Output::Sync`]). The
//! write path queues them and keeps one [`Batch`] in flight: every write
//! queued since the last one, appended with one write and made durable with
//! one fsync. Only when the driver reports the batch done
//! ([`WritePath::done`]) does the core hear [`Step::Synced`] for it, and
//! with it release the messages (and so the client replies) that waited. A
//! write queued behind a batch in flight waits for the next one: under load
//! many writes share an fsync.
//!
//! **Compaction.** A snapshot record drops the log below it in the loaded
//! state, but the file keeps the bytes. When a batch holds a snapshot and
//! the file would pass `compact_bytes`, the batch instead replaces the whole
//! file with one record of the state it loads to ([`BatchIo::Replace`]:
//! written to a new file, fsynced, renamed over the WAL and the directory
//! fsynced, so a power loss leaves the old file or the new one). A rebuilt
//! state starts a new file the same way.
//!
//! **Recovery** ([`recover`]): the file's bytes decide whether the replica
//! recovers (a torn tail cut off), rebuilds from its peers (no file, or one
//! wiped or corrupt), or refuses to start (another cluster's file, another
//! format: an operator's error).
//!
//! **The mark** ([`mark`], [`recover_marked`]; issue 22). A torn last
//! record, from a crash during an append, was never synced, so never
//! acknowledged: recovery cuts it off. A file cut short *after* it was
//! synced (truncated mid-file by hand, restored from an old copy) looks the
//! same from its bytes alone, and cutting it off forgets votes a quorum
//! counted. So after every batch is durable the driver records, in a small
//! side file it never fsyncs, how long the file then was, with the identity
//! of the file (its first record's frame: a compaction or rebuild starts a
//! new file, and an old mark does not vouch for it). The mark is written
//! only after the fsync, so on any disk, after any crash or power loss, a
//! mark that names the file vouches for no more than the file durably
//! held: a file whose good bytes end before its mark lost what it had
//! synced, and the replica rebuilds from a majority of the others before it
//! votes again (Protocol-Aware Recovery, FAST '18, for the case a crash
//! cannot cause). A mark that is lost, stale or torn vouches for less, and
//! recovery is as without it. The simulator's replicas lose their page
//! cache at every crash (every crash is a power loss there), so an unsynced
//! mark never survives one and the simulator runs [`recover`] alone.
//!
//! Two canaries (issue 20) plant the mistakes this code exists to rule out:
//! `synced-before-fsync` (a batch reported durable as soon as it is handed
//! to the disk, before its fsync) and `pipelined-sync` (a sync counted done
//! once the writer has the writes). A process crash keeps the page cache,
//! so neither loses a write under `kill -9`; a power loss does.

use crate::machine::Cmd;
use crate::server::Snapshot;
use multipaxos::storage::{self, Loaded};
use multipaxos::{Bugs, Durable, NodeId, Write};

pub type LogWrite = Write<Cmd, Snapshot>;
pub type State = Durable<Cmd, Snapshot>;

/// One write of a batch: its sequence number, the write and its record's
/// bytes (what appending it adds to the file).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rec {
    pub seq: u64,
    pub write: LogWrite,
    pub bytes: Vec<u8>,
}

/// What one batch does to the file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BatchIo {
    /// Append these records' bytes with one write, then fsync the file.
    Append(Vec<Rec>),
    /// Replace the file by `bytes` (a header and one record, `write`, of
    /// the whole state), atomically: a new file written and fsynced,
    /// renamed over the WAL, the directory fsynced. Appends go to the new
    /// file from then on.
    Replace { write: LogWrite, bytes: Vec<u8> },
}

/// A batch for the driver: do `io`, then call [`WritePath::done`] with
/// `upto`, its last write's number. `len` is the file's length once the
/// batch is durable (what the driver's [`mark`] vouches for).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Batch {
    pub upto: u64,
    pub io: BatchIo,
    pub len: u64,
}

/// Bytes in a mark: the length it vouches for (8), the file's identity
/// (its first record's frame, 12), and a CRC32C of those (4).
pub const MARK_LEN: usize = 24;

/// Where a file's identity is: its first record's frame.
const IDENTITY: std::ops::Range<usize> =
    storage::HEADER_LEN..storage::HEADER_LEN + storage::FRAME_LEN;

/// The first bytes of a file that [`mark`] needs: its header and its first
/// record's frame ([`IDENTITY`]), or as much of them as the file has.
pub fn head(file: &[u8]) -> Vec<u8> {
    file[..file.len().min(IDENTITY.end)].to_vec()
}

/// The mark of a file that starts with `head` ([`head`]) once `len` of its
/// bytes are durable.
pub fn mark(head: &[u8], len: u64) -> [u8; MARK_LEN] {
    let mut m = [0u8; MARK_LEN];
    m[..8].copy_from_slice(&len.to_le_bytes());
    if let Some(id) = head.get(IDENTITY) {
        m[8..20].copy_from_slice(id);
    }
    let crc = crc32c::crc32c(&m[..20]);
    m[20..].copy_from_slice(&crc.to_le_bytes());
    m
}

/// The length `mark` vouches for, if it is intact and names the file whose
/// bytes are `bytes`.
fn marked_len(mark: &[u8], bytes: &[u8]) -> Option<u64> {
    let m: &[u8; MARK_LEN] = mark.try_into().ok()?;
    let crc = u32::from_le_bytes(m[20..].try_into().expect("4 bytes"));
    let id = bytes.get(IDENTITY)?;
    (crc == crc32c::crc32c(&m[..20]) && m[8..20] == *id)
        .then(|| u64::from_le_bytes(m[..8].try_into().expect("8 bytes")))
}

/// [`recover`], and a file whose good bytes end before what its mark
/// vouches for was synced (`mark`: the side file's bytes, if any) rebuilds:
/// it was cut or damaged after it was written, and what it lost may have
/// been counted in a quorum.
pub fn recover_marked(
    bytes: Option<&[u8]>,
    mark: Option<&[u8]>,
    cluster: u64,
    replica: NodeId,
    bugs: &Bugs,
) -> Recovery {
    let vouched = bytes.zip(mark).and_then(|(b, m)| marked_len(m, b));
    match recover(bytes, cluster, replica, bugs) {
        Recovery::Recover { good, .. } if vouched.is_some_and(|v| good < v) => {
            Recovery::Rebuild {
                corrupt: true,
                why: format!(
                    "its WAL holds {good} good bytes, but {} had been synced: it was cut or damaged after it was written",
                    vouched.expect("checked")
                ),
            }
        }
        r => r,
    }
}

/// What the driver must do next, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Execute this batch (one at a time: the next comes from `done`).
    Write(Batch),
    /// Tell the core every write up to `upto` is durable
    /// ([`multipaxos::Input::Synced`]).
    Synced(u64),
}

/// The write path of one replica incarnation. (`Eq` and `Hash`: the model
/// checker keeps replicas in its states.)
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WritePath {
    cluster: u64,
    /// The replica whose file it is (named in every file it starts).
    replica: NodeId,
    compact_bytes: u64,
    bugs: Bugs,
    /// Writes issued by the core and not yet in a batch.
    queued: Vec<(u64, LogWrite)>,
    /// The last write of the batch in flight.
    in_flight: Option<u64>,
    /// The last write handed to a batch.
    taken: u64,
    /// The last write reported synced to the core.
    reported: u64,
    /// What the file loads to once every batch so far is durable.
    state: State,
    /// The file's length once every batch so far is durable.
    len: u64,
    /// Whether the file exists: not while a rebuilding replica has not
    /// written its rebuilt state.
    open: bool,
}

/// What a replica's WAL bytes say about how it starts.
#[derive(Clone, Debug)]
pub enum Recovery {
    /// Recover this state; the file's first `good` bytes hold it (the rest
    /// is a torn last record, never synced, so never acknowledged: cut it
    /// off, as etcd's WAL does).
    Recover { state: State, good: u64 },
    /// The state is lost (`corrupt`: a checksum failed, or a record does
    /// not fit; otherwise wiped): rebuild from the peers before voting.
    Rebuild { corrupt: bool, why: String },
    /// Not this cluster's file, or another format: an operator's error,
    /// never rebuilt over.
    Refuse(String),
}

/// Reads a replica's WAL bytes (`None`: no file) as recovery must.
pub fn recover(bytes: Option<&[u8]>, cluster: u64, replica: NodeId, bugs: &Bugs) -> Recovery {
    let Some(bytes) = bytes else {
        return Recovery::Rebuild {
            corrupt: false,
            why: "its WAL is missing".into(),
        };
    };
    // Another replica's file (restored from a peer's backup, copied by
    // mistake) holds votes this replica never cast: an operator's error.
    if let Some(owner) = storage::replica_of(bytes).filter(|o| *o != replica) {
        return Recovery::Refuse(format!(
            "the WAL belongs to replica {owner}, not to this replica {replica} (restored from another replica's files?)"
        ));
    }
    match storage::load::<Cmd, Snapshot>(bytes, cluster) {
        Loaded::Ok { state, torn_bytes } => Recovery::Recover {
            state,
            good: (bytes.len() - torn_bytes) as u64,
        },
        l @ Loaded::Wiped => Recovery::Rebuild {
            corrupt: false,
            why: format!("its WAL is unusable ({l})"),
        },
        Loaded::Corrupt { at, .. } if bugs.corrupt_tail_as_torn && reaches_the_end(bytes, at) => {
            // BUG (canary 20): a last record that fails its checksum is
            // taken for a torn write and dropped, though it was written in
            // full, so synced, so maybe acknowledged.
            match storage::load::<Cmd, Snapshot>(&bytes[..at], cluster) {
                Loaded::Ok { state, torn_bytes } => Recovery::Recover {
                    state,
                    good: (at - torn_bytes) as u64,
                },
                l => Recovery::Rebuild {
                    corrupt: true,
                    why: format!("its WAL is unusable ({l})"),
                },
            }
        }
        l @ Loaded::Corrupt { .. } => Recovery::Rebuild {
            corrupt: true,
            why: format!("its WAL is unusable ({l})"),
        },
        l @ (Loaded::OtherCluster { .. }
        | Loaded::NewerFormat { .. }
        | Loaded::OlderFormat { .. }) => Recovery::Refuse(l.to_string()),
    }
}

/// Whether the record at `at` reaches the end of the file (by its length
/// field, whatever its checksums say): canary 20's idea of a torn write.
fn reaches_the_end(bytes: &[u8], at: usize) -> bool {
    let Some(len) = bytes.get(at..at + 4) else {
        return true;
    };
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    at.saturating_add(storage::FRAME_LEN).saturating_add(len) >= bytes.len()
}

impl WritePath {
    /// The write path of a replica whose WAL holds `file` (its state and
    /// length), or none yet (`None`: a rebuilding replica, whose rebuilt
    /// state starts the file). A new replica's file holds just `Init`
    /// ([`WritePath::new_file`]).
    pub fn new(
        cluster: u64,
        replica: NodeId,
        compact_bytes: u64,
        bugs: Bugs,
        file: Option<(State, u64)>,
    ) -> Self {
        let open = file.is_some();
        let (state, len) = file.unwrap_or_default();
        WritePath {
            cluster,
            replica,
            compact_bytes,
            bugs,
            queued: Vec::new(),
            in_flight: None,
            taken: 0,
            reported: 0,
            state,
            len,
            open,
        }
    }

    /// A new replica's WAL: the header (naming it) and `Init`.
    pub fn new_file(cluster: u64, replica: NodeId) -> Vec<u8> {
        storage::new_file_of::<Cmd, Snapshot>(cluster, Some(replica), &Write::Init)
    }

    /// What the file loads to once every batch issued so far is durable.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The last write the core issued.
    fn last_issued(&self) -> u64 {
        self.queued.last().map_or(self.taken, |(s, _)| *s)
    }

    /// The core issued write `seq`.
    pub fn persist(&mut self, seq: u64, write: LogWrite, steps: &mut Vec<Step>) {
        let last = self.last_issued();
        assert!(
            seq > last,
            "write #{seq} after #{last}: writes arrive in order"
        );
        self.queued.push((seq, write));
        self.pump(steps);
    }

    /// The core asks for every write up to `upto` to be made durable. They
    /// are queued or in a batch already: the answer comes when their
    /// batch is done.
    pub fn sync(&mut self, upto: u64, steps: &mut Vec<Step>) {
        assert!(
            upto <= self.last_issued(),
            "a sync of write #{upto}, never issued"
        );
        if self.bugs.pipelined_sync && upto > self.reported {
            // BUG (canary 18): the writer has the writes, so count them
            // synced now: in the page cache at best, not on the disk.
            self.report(upto, steps);
        }
    }

    /// The driver finished the batch that ends at `upto`: its writes are
    /// durable. Reports them to the core and starts the next batch.
    pub fn done(&mut self, upto: u64, steps: &mut Vec<Step>) {
        assert_eq!(
            self.in_flight,
            Some(upto),
            "done with a batch not in flight"
        );
        self.in_flight = None;
        if upto > self.reported {
            self.report(upto, steps);
        }
        self.pump(steps);
    }

    fn report(&mut self, upto: u64, steps: &mut Vec<Step>) {
        assert!(upto > self.reported, "syncs are reported in order");
        self.reported = upto;
        steps.push(Step::Synced(upto));
    }

    /// Starts a batch of everything queued, unless one is in flight.
    fn pump(&mut self, steps: &mut Vec<Step>) {
        if self.in_flight.is_some() || self.queued.is_empty() {
            return;
        }
        let writes = std::mem::take(&mut self.queued);
        let upto = writes.last().expect("not empty").0;
        let io = self.batch(writes);
        self.taken = upto;
        self.in_flight = Some(upto);
        steps.push(Step::Write(Batch {
            upto,
            io,
            len: self.len,
        }));
        if self.bugs.synced_before_fsync {
            // BUG (canary 17): the batch is handed to the disk, so report
            // it durable before its fsync has even started.
            self.report(upto, steps);
        }
    }

    /// The file operation for `writes`: appended, or (a rebuilt state, or
    /// a snapshot past the compaction threshold) a new file of the state.
    fn batch(&mut self, writes: Vec<(u64, LogWrite)>) -> BatchIo {
        let mut recs = Vec::with_capacity(writes.len());
        let mut added = 0u64;
        let mut replace = false;
        let mut snapshot = false;
        for (seq, w) in writes {
            if storage::starts_file(&w) {
                assert!(matches!(w, Write::Rebuilt(_)), "the core never writes Init");
                // Whatever came before a rebuilt state is superseded (and
                // applying it below replaces the whole state).
                recs.clear();
                added = 0;
                replace = true;
            } else {
                assert!(
                    self.open || replace,
                    "a rebuilding replica writes its rebuilt state first"
                );
                snapshot |= matches!(w, Write::Snapshot(_));
            }
            self.state.apply(&w);
            if replace {
                // The batch becomes one record of the state: no record of
                // its own to encode.
                continue;
            }
            let bytes = storage::encode(&w);
            added += bytes.len() as u64;
            recs.push(Rec {
                seq,
                write: w,
                bytes,
            });
        }
        let compact = snapshot && self.len + added > self.compact_bytes;
        if !replace && !compact {
            self.len += added;
            return BatchIo::Append(recs);
        }
        // One record of the whole state: what the file loads to, every
        // write of this batch included.
        self.open = true;
        let write = Write::Rebuilt(Box::new(self.state.clone()));
        let bytes = storage::new_file_of(self.cluster, Some(self.replica), &write);
        // The new file must load to exactly the state it replaces.
        assert!(
            matches!(
                storage::load::<Cmd, Snapshot>(&bytes, self.cluster),
                Loaded::Ok { ref state, torn_bytes: 0 } if *state == self.state
            ),
            "a compacted WAL loads to another state"
        );
        self.len = bytes.len() as u64;
        BatchIo::Replace { write, bytes }
    }
}

#[cfg(test)]
#[path = "write_path_tests.rs"]
mod tests;
