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
//! - `wal.corrupt`: the last WAL found corrupt, kept for a post-mortem.
//!
//! **Group commit.** One writer thread owns the file. It takes every request
//! queued since its last fsync, writes them with one `write`, issues one
//! `fsync` (`File::sync_data`), and only then reports the highest sequence
//! number written as synced: the core releases the messages (and so,
//! eventually, the client replies) that waited on any of them. Under load,
//! requests pile up while an fsync runs, so many writes share the next one.
//!
//! **Compaction.** A snapshot record drops the log below it (in the loaded
//! state), but the file keeps the bytes. When the file has grown past a
//! threshold, the writer rewrites it as the smallest file that loads to the
//! same state (Init, the promise, the snapshot, the accepted and chosen
//! entries above it), atomically as above.
//!
//! Any IO error while writing ends the process: a write that did not reach
//! the disk must never be reported synced, and a replica that cannot write
//! is better stopped (it recovers, or rebuilds, when restarted).

use kv::server::Snapshot;
use kv::Cmd;
use multipaxos::storage::{self, Loaded};
use multipaxos::{Ballot, Durable, NodeId, Write};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use tracing::{error, info, warn};

pub type LogWrite = Write<Cmd, Snapshot>;
pub type State = Durable<Cmd, Snapshot>;

const WAL: &str = "wal";
const WAL_TMP: &str = "wal.tmp";
const WAL_CORRUPT: &str = "wal.corrupt";
const MARKER: &str = "paxkv-node";

/// How a replica starts from its data directory.
pub enum Boot {
    /// The state its files hold (a new replica's is just initialized).
    Recover(State),
    /// Its state is lost (`why`): rebuild from the peers before voting.
    Rebuild { why: String },
}

/// A data directory's files, open for the writer.
pub struct DataDir {
    dir: PathBuf,
    cluster: u64,
    /// The open WAL, None while a rebuilding replica has not written its
    /// rebuilt state yet.
    file: Option<File>,
    len: u64,
    /// What the WAL loads to, kept to write a compacted copy.
    state: State,
    compact_bytes: u64,
}

fn marker_text(cluster: u64, id: NodeId) -> String {
    format!("paxkv data directory\ncluster {cluster}\nnode {id}\n")
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dir/name` atomically: a temporary file written in
/// full and fsynced, renamed over `name`, then the directory fsynced.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<File> {
    let tmp = dir.join(WAL_TMP);
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)?;
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
        compact_bytes: u64,
    ) -> Result<(DataDir, Boot), String> {
        let ctx = |what: &str, e: io::Error| format!("{what} {}: {e}", dir.display());
        std::fs::create_dir_all(dir).map_err(|e| ctx("cannot create the data directory", e))?;
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
            cluster,
            file: None,
            len: 0,
            state: State::default(),
            compact_bytes,
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
                let f = storage::new_file::<Cmd, Snapshot>(cluster, &Write::Init);
                write_atomic(dir, WAL, &f).map_err(|e| ctx("cannot create the WAL in", e))?;
                d.write_marker(&expected)?;
                return d.load_wal();
            }
            Some(bytes) => match storage::load::<Cmd, Snapshot>(&bytes, cluster) {
                Loaded::Ok { .. } => {
                    if !marked {
                        d.write_marker(&expected)?;
                    }
                    return d.load_wal();
                }
                l @ (Loaded::OtherCluster { .. }
                | Loaded::NewerFormat { .. }
                | Loaded::OlderFormat { .. }) => {
                    return Err(format!("{}: {l}", path.display()));
                }
                l @ (Loaded::Wiped | Loaded::Corrupt { .. }) => {
                    std::fs::rename(&path, dir.join(WAL_CORRUPT))
                        .and_then(|_| sync_dir(dir))
                        .map_err(|e| ctx("cannot set the bad WAL aside in", e))?;
                    format!("its WAL is unusable ({l}); kept as {WAL_CORRUPT}")
                }
            },
        };
        if !marked {
            d.write_marker(&expected)?;
        }
        Ok((d, Boot::Rebuild { why }))
    }

    fn write_marker(&self, text: &str) -> Result<(), String> {
        let tmp = self.dir.join("paxkv-node.tmp");
        let r = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.dir.join(MARKER))?;
            sync_dir(&self.dir)
        })();
        r.map_err(|e| format!("cannot write the marker in {}: {e}", self.dir.display()))
    }

    /// Loads the WAL the simulator's way ([`storage::load`]), truncating a
    /// torn tail, and opens it for appending.
    fn load_wal(mut self) -> Result<(DataDir, Boot), String> {
        let path = self.dir.join(WAL);
        let err = |e: io::Error| format!("{}: {e}", path.display());
        let bytes = std::fs::read(&path).map_err(err)?;
        let Loaded::Ok { state, torn_bytes } = storage::load::<Cmd, Snapshot>(&bytes, self.cluster)
        else {
            unreachable!("load_wal is called on a file that loaded");
        };
        let file = OpenOptions::new().append(true).open(&path).map_err(err)?;
        let len = (bytes.len() - torn_bytes) as u64;
        if torn_bytes > 0 {
            // A write cut short by a crash: never synced, so never
            // acknowledged. Drop it, as etcd's WAL drops a short tail.
            warn!(torn_bytes, "dropping the torn last record of the WAL");
            file.set_len(len).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        self.file = Some(file);
        self.len = len;
        self.state = state.clone();
        Ok((self, Boot::Recover(state)))
    }

    /// Makes `writes` (each with its sequence number) durable, appended in
    /// order; one fsync for all of them. Ends the process on an IO error.
    pub fn write(&mut self, writes: Vec<LogWrite>) {
        if let Err(e) = self.try_write(writes) {
            error!(dir = %self.dir.display(), "cannot write the WAL: {e}; stopping without acknowledging the write");
            std::process::exit(2);
        }
    }

    fn try_write(&mut self, writes: Vec<LogWrite>) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut compact = false;
        for w in writes {
            if storage::starts_file(&w) {
                // Only a rebuilt state starts a file (Init is written at
                // initialization); whatever was buffered before it is
                // superseded.
                assert!(matches!(w, Write::Rebuilt(_)), "the core never writes Init");
                buf.clear();
                let bytes = storage::new_file(self.cluster, &w);
                self.replace(&bytes)?;
                self.state = State::default();
                self.state.apply(&w);
                info!(bytes = bytes.len(), "wrote the rebuilt state as a new WAL");
                continue;
            }
            assert!(
                self.file.is_some(),
                "a rebuilding replica writes its rebuilt state first"
            );
            storage::encode_into(&w, &mut buf);
            if matches!(w, Write::Snapshot(_)) {
                compact = true;
            }
            self.state.apply(&w);
        }
        if compact && self.len + buf.len() as u64 > self.compact_bytes {
            // Every buffered write is in `state`: the compacted file holds them.
            return self.compact();
        }
        let f = self.file.as_mut().expect("checked above");
        f.write_all(&buf)?;
        self.len += buf.len() as u64;
        f.sync_data()
    }

    /// Replaces the WAL with `bytes`, atomically, and appends there from now on.
    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file = None;
        let mut f = write_atomic(&self.dir, WAL, bytes)?;
        // write_atomic leaves the offset at the end: appends go there.
        f.flush()?;
        self.file = Some(f);
        self.len = bytes.len() as u64;
        Ok(())
    }

    fn compact(&mut self) -> io::Result<()> {
        let s = &self.state;
        let mut bytes = storage::new_file::<Cmd, Snapshot>(self.cluster, &Write::Init);
        if s.promised != Ballot::ZERO {
            storage::encode_into(&LogWrite::Promise(s.promised), &mut bytes);
        }
        if let Some(snap) = &s.snapshot {
            storage::encode_into(&LogWrite::Snapshot(snap.clone()), &mut bytes);
        }
        for (slot, (ballot, entry)) in &s.accepted {
            let w = LogWrite::Accept {
                slot: *slot,
                ballot: *ballot,
                entry: entry.clone(),
            };
            storage::encode_into(&w, &mut bytes);
        }
        for (slot, entry) in &s.chosen {
            let w = LogWrite::Chosen {
                slot: *slot,
                entry: entry.clone(),
            };
            storage::encode_into(&w, &mut bytes);
        }
        // The compacted file must load to exactly the state it replaces.
        match storage::load::<Cmd, Snapshot>(&bytes, self.cluster) {
            Loaded::Ok { state, torn_bytes } => {
                assert_eq!(torn_bytes, 0);
                assert!(
                    state == self.state,
                    "a compacted WAL loads to another state"
                );
            }
            l => panic!("a compacted WAL does not load: {l}"),
        }
        let was = self.len;
        self.replace(&bytes)?;
        info!(
            from_bytes = was,
            to_bytes = bytes.len(),
            base = self.state.base(),
            "compacted the WAL at a snapshot"
        );
        Ok(())
    }
}
