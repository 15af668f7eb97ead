//! A replica's durable state in files: the same record format the simulator
//! checks ([`multipaxos::storage`]), on a real disk with real fsyncs.
//!
//! A data directory holds:
//! - `wal`: the write-ahead log, a [`wal`] file (header with the cluster id
//!   and format version, then one CRC32C-framed record per [`Write`]). Writes
//!   are appended; a write that starts a file ([`Write::Rebuilt`], or a
//!   compaction) is written to `wal.tmp` in full, fsynced, renamed over
//!   `wal`, and the directory fsynced, so the file is always either the old
//!   one or the new one.
//! - `paxkv-node`: the marker naming the cluster and the replica, written
//!   once the replica first initialized. A directory with the marker but no
//!   readable `wal` lost its state: the replica rebuilds from its peers and
//!   does not vote until then (as in the simulator). An empty directory is a
//!   new replica.
//! - `wal.mark`: how long `wal` was after its last durable batch, written
//!   after each fsync and never fsynced itself ([`write_path::mark`]): a
//!   WAL found shorter than its mark was cut after it was written, and the
//!   replica rebuilds instead of forgetting what it had synced.
//! - `wal.corrupt`: the last WAL found corrupt, kept for a post-mortem.
//! - `cluster.json`: in a replica that joined a running cluster, what the
//!   cluster told it (first configuration, α, address book; `join.rs`).
//!
//! **What to write, and when it counts as durable, is not decided here.**
//! Group commit, sync reporting, compaction and what recovery makes of the
//! bytes are [`kv::write_path`], sans-IO and run by the simulator too under
//! power loss; this module is the thin shell of system calls it drives: it
//! reads the files at start-up and executes each [`Batch`] (append and
//! `fsync`, or an atomic replace as above).
//!
//! Any IO error while writing ends the process: a write that did not reach
//! the disk must never be reported synced, and a replica that cannot write
//! is better stopped (it recovers, or rebuilds, when restarted).

use crate::lock::DirLock;
use kv::server::Snapshot;
use kv::write_path::{self, Batch, BatchIo, Recovery, WritePath};
use kv::Cmd;
use multipaxos::{Bugs, NodeId, Write};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use tracing::{error, info, warn};

pub type LogWrite = Write<Cmd, Snapshot>;
pub type State = write_path::State;

const WAL: &str = "wal";
const WAL_TMP: &str = "wal.tmp";
const WAL_CORRUPT: &str = "wal.corrupt";
const MARKER: &str = "paxkv-node";
const MARK: &str = "wal.mark";
/// How a replica starts from its data directory.
pub enum Boot {
    /// The state its files hold (a new replica's is just initialized), and
    /// the WAL's length.
    Recover(State, u64),
    /// Its state is lost (`why`): rebuild from the peers before voting.
    Rebuild { why: String },
}

/// A data directory's files, open for the writer.
pub struct DataDir {
    dir: PathBuf,
    /// No other process opens the directory while this one runs.
    _lock: DirLock,
    /// The open WAL, None while a rebuilding replica has not written its
    /// rebuilt state yet.
    file: Option<File>,
    /// The WAL's first bytes (its identity, for the mark) and the mark.
    head: Vec<u8>,
    mark: File,
}

fn marker_text(cluster: u64, id: NodeId) -> String {
    format!("paxkv data directory\ncluster {cluster}\nnode {id}\n")
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, each made durable in its parent:
/// a directory that a power cut can take would boot as a new replica that
/// forgot its votes.
pub(crate) fn create_durably(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    let parent = parent.unwrap_or(Path::new("."));
    create_durably(parent)?;
    std::fs::create_dir(dir)?;
    sync_dir(parent)
}

/// Writes `bytes` to `dir/name` atomically: a temporary file written in
/// full and fsynced, renamed over `name`, then the directory fsynced.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<File> {
    let tmp = dir.join(WAL_TMP);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)?;
    Ok(f)
}

impl DataDir {
    /// Opens (or initializes) replica `id`'s directory of `cluster`. `Err`
    /// is an operator's error (another cluster's or another replica's
    /// directory, a newer format, an IO failure): the server reports it
    /// and exits, never rebuilds over it. `rebuild` forces a rebuild of an
    /// empty directory (a replaced disk) instead of initializing it.
    pub fn open(
        dir: &Path,
        cluster: u64,
        id: NodeId,
        rebuild: bool,
        bugs: Bugs,
    ) -> Result<(DataDir, Boot), String> {
        let ctx = |what: &str, e: io::Error| format!("{what} {}: {e}", dir.display());
        create_durably(dir).map_err(|e| ctx("cannot create the data directory", e))?;
        let lock = DirLock::take(dir)?;
        let mark = std::fs::read(dir.join(MARK)).ok();
        let marker = dir.join(MARKER);
        let expected = marker_text(cluster, id);
        let marked = match std::fs::read_to_string(&marker) {
            Ok(text) if text == expected => true,
            Ok(text) => {
                return Err(format!(
                    "the data directory {} belongs to another replica or cluster: its marker says {:?}, this is {:?}",
                    dir.display(),
                    text.replace('\n', " ").trim(),
                    expected.replace('\n', " ").trim()
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(ctx("cannot read the marker in", e)),
        };
        let _ = std::fs::remove_file(dir.join(WAL_TMP));
        let d = DataDir {
            dir: dir.to_path_buf(),
            _lock: lock,
            file: None,
            head: Vec::new(),
            mark: OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(MARK))
                .map_err(|e| ctx("cannot open the mark in", e))?,
        };
        let path = dir.join(WAL);
        let bytes = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(ctx("cannot read the WAL in", e)),
        };
        let why = match bytes {
            None if marked => "its WAL is missing".to_string(),
            None if rebuild => "--rebuild: a replaced disk".to_string(),
            None => {
                info!(dir = %dir.display(), "a new replica: initializing the data directory");
                let f = WritePath::new_file(cluster, id);
                write_atomic(dir, WAL, &f).map_err(|e| ctx("cannot create the WAL in", e))?;
                d.write_marker(&expected)?;
                let Recovery::Recover { state, good } =
                    write_path::recover(Some(&f), cluster, id, &bugs)
                else {
                    unreachable!("a new replica's file loads");
                };
                return d.load_wal(f, state, good);
            }
            // What the bytes say is the write path's call, as in the
            // simulator; the files are this module's.
            Some(bytes) => {
                match write_path::recover_marked(Some(&bytes), mark.as_deref(), cluster, id, &bugs)
                {
                    Recovery::Recover { state, good } => {
                        if !marked {
                            d.write_marker(&expected)?;
                        }
                        return d.load_wal(bytes, state, good);
                    }
                    Recovery::Refuse(why) => return Err(format!("{}: {why}", path.display())),
                    Recovery::Rebuild { why, .. } => {
                        std::fs::rename(&path, dir.join(WAL_CORRUPT))
                            .and_then(|_| sync_dir(dir))
                            .map_err(|e| ctx("cannot set the bad WAL aside in", e))?;
                        format!("{why}; kept as {WAL_CORRUPT}")
                    }
                }
            }
        };
        if !marked {
            d.write_marker(&expected)?;
        }
        Ok((d, Boot::Rebuild { why }))
    }

    fn write_marker(&self, text: &str) -> Result<(), String> {
        write_atomic(&self.dir, MARKER, text.as_bytes())
            .map(drop)
            .map_err(|e| format!("cannot write the marker in {}: {e}", self.dir.display()))
    }

    /// Opens the WAL whose `bytes` recovered to `state` (the write path's
    /// call, [`write_path::recover`], as in the simulator) for appending,
    /// truncating a torn tail past its first `good` bytes.
    fn load_wal(
        mut self,
        bytes: Vec<u8>,
        state: State,
        good: u64,
    ) -> Result<(DataDir, Boot), String> {
        let path = self.dir.join(WAL);
        let err = |e: io::Error| format!("{}: {e}", path.display());
        let file = OpenOptions::new().append(true).open(&path).map_err(err)?;
        if good < bytes.len() as u64 {
            // A write cut short by a crash: never synced, so never
            // acknowledged. Drop it, as etcd's WAL drops a short tail.
            warn!(
                torn_bytes = bytes.len() as u64 - good,
                "dropping the torn last record of the WAL"
            );
            file.set_len(good).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        self.file = Some(file);
        self.head = write_path::head(&bytes);
        Ok((self, Boot::Recover(state, good)))
    }

    /// Carries out one batch of the write path: append and fsync, or an
    /// atomic replace. Ends the process on an IO error: a write that did
    /// not reach the disk must never be reported synced.
    pub fn execute(&mut self, b: &Batch) {
        use std::os::unix::fs::FileExt;
        // The mark only once the batch is durable (write_path::mark).
        let mark = |d: &mut DataDir| d.mark.write_all_at(&write_path::mark(&d.head, b.len), 0);
        if let Err(e) = self.try_execute(&b.io).and_then(|()| mark(self)) {
            error!(dir = %self.dir.display(), "cannot write the WAL: {e}; stopping without acknowledging the write");
            std::process::exit(2);
        }
    }

    fn try_execute(&mut self, io: &BatchIo) -> io::Result<()> {
        match io {
            BatchIo::Append(recs) => {
                let f = self
                    .file
                    .as_mut()
                    .expect("a rebuilding replica writes its rebuilt state first");
                f.write_all(
                    &recs
                        .iter()
                        .map(|r| &r.bytes[..])
                        .collect::<Vec<_>>()
                        .concat(),
                )?;
                f.sync_data()
            }
            BatchIo::Replace { bytes, .. } => {
                let rebuilt = self.file.is_none();
                self.file = None;
                let mut f = write_atomic(&self.dir, WAL, bytes)?;
                self.head = write_path::head(bytes);
                // write_atomic leaves the offset at the end: appends go there.
                f.flush()?;
                self.file = Some(f);
                let what = ["compacted the WAL", "wrote the rebuilt state as a new WAL"];
                info!(
                    bytes = bytes.len(),
                    "{}: one record of the state", what[rebuilt as usize]
                );
                Ok(())
            }
        }
    }
}
