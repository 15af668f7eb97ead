//! `multi` and `kv`: replicas of the coordination service ([`kv::Server`],
//! the Multi-Paxos core underneath) on the engine, and the clients that use
//! it. Both scenarios share the protocol adapter ([`Replica`]) and the
//! checker ([`LogChecker`]: P1–P6, K1, K2 from
//! [`checkers::log::LogObserver`]); they differ in the workload: `multi`
//! sends blind writes to any replica, `kv` mixes reads, writes,
//! compare-and-sets, deletes, sessions, ephemeral keys and locks, served
//! under leader leases, and checks the history for linearizability (K3).
//!
//! Clients sit outside the replicas' partitions (they reach an isolated
//! leader, which is what makes stale reads possible), but their messages are
//! lost, duplicated and delayed like any other.
//!
//! **BUGGIFY.** Each seed draws [`Knobs`] for the cores (from its own
//! stream, `Stream::Buggify`): in half the seeds BUGGIFY is on, and then
//! each knob is on with probability 1/4, as FoundationDB's simulator
//! activates each `BUGGIFY` site. The knobs live in the resolved config's
//! params (a repro file holds them); the cores only read them, and report
//! each rare path a knob steered them down, which becomes a coverage mark.

use super::service_spec::{self, Spec};
use crate::config::RunConfig;
use crate::engine::{
    Boot, Canary, Caps, Check, Checker, Clock, Cx, DiskRecord, Effect, Input, MemberChange,
    Protocol, Scenario, Situation, Workload,
};
use checkers::lease::LeaseObserver;
use checkers::log::LogObserver;
use checkers::{Invariant, Violation};
use kv::client::{Client, ClientOut};
use kv::server::{Event as SEvent, LogNode, Server, ServerConfig, ServerInput, Snapshot};
use kv::write_path::{self, Batch, BatchIo, Recovery, Step, WritePath};
use kv::{Cmd, Command, Op, Reply, Value};
use linearizability::{History, KvModel, KvOp, KvRet, OpId};
use multipaxos::storage::{self, load, Loaded};
use multipaxos::{Entry, Members, Msg, Write};
use paxos::{Ballot, NodeId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHasher;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

pub type LMsgFull = Msg<Cmd, Snapshot>;

/// The cluster id every simulated replica's file header names. The
/// simulator runs one cluster, so a file of another cluster (or of a newer
/// format) never turns up in a run; boot treats one as a bug.
pub const CLUSTER: u64 = 0x7061_7873_696d_0001;

/// Persistent keys the workload uses (checked for linearizability).
const KEYS: u64 = 5;
/// Ephemeral keys live above this (one per client); not in the history.
const EPHEMERAL_BASE: u64 = 1 << 32;
const LOCKS: u64 = 2;
/// Linearizability search budget per key.
const LIN_BUDGET: u64 = 2_000_000;

fn digest<T: Hash>(t: &T) -> u64 {
    let mut h = FxHasher::default();
    t.hash(&mut h);
    h.finish()
}

/// Settings of the log scenarios (`RunConfig::params`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    pub timing: multipaxos::Timing,
    /// Slots a leader keeps in flight.
    pub window: u64,
    /// Commands per slot at most.
    pub batch: usize,
    /// A replica snapshots its state machine every this many slots.
    pub snapshot_every: u64,
    /// How often the leader proposes its clock reading (session expiry).
    pub tick_us: u64,
    pub session_ttl_us: u64,
    /// A client resends to another replica after this long without a reply.
    pub client_retry_us: u64,
    /// After the quiet period starts, every client operation must complete
    /// within this of its invocation (or of the quiet period's start).
    pub op_bound_us: u64,
    /// The largest peer message, encoded, in bytes: `paxkv`'s peer frame
    /// limit by default (64 MiB). Every send is checked against it (R1).
    #[serde(default = "frame_bytes")]
    pub frame_bytes: usize,
    /// The write path compacts a replica's WAL at a snapshot once it is
    /// larger than this (`paxkv --compact-bytes`; small here, so that runs
    /// compact).
    #[serde(default = "compact_bytes")]
    pub compact_bytes: u64,
    /// Of the seeds that draw BUGGIFY knobs, one in this many also draws a
    /// scale (values up to `kv::VALUE_MAX`, up to 200 keys); 0: none. Each
    /// such seed costs about ten ordinary ones, so the default keeps the
    /// main job's speed; `--param scale_one_in=1` is the big-state profile.
    #[serde(default = "scale_one_in")]
    pub scale_one_in: u32,
    /// This run's BUGGIFY knobs: drawn per seed by `plan` unless set here
    /// (or unless the config's `buggify` is off, which keeps them all off).
    /// Absent, as in a repro file from before BUGGIFY: all off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buggify: Option<Knobs>,
}

fn scale_one_in() -> u32 {
    64
}

fn frame_bytes() -> usize {
    64 << 20
}

fn compact_bytes() -> u64 {
    32 << 10
}

/// The BUGGIFY knobs of both cores of a replica, and of the run's scale.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    pub log: multipaxos::Buggify,
    pub server: kv::server::Buggify,
    /// Limits are knobs: byte budgets small enough that an ordinary seed
    /// crosses the boundaries a real cluster reaches only with gigabytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Scale is in the swarm: values up to the service's limit, and more
    /// keys (`kv`; the seed's clients play it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
}

/// A seed's small byte budgets ([`multipaxos::Config`]'s).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Bytes a leader packs into one slot at most.
    pub slot_bytes: usize,
    /// Bytes a leader queues behind its window at most (then: Busy).
    pub queue_bytes: usize,
    /// The seed's peer frame limit (R1), raised to what its largest Accept
    /// needs ([`Limits::frame_for`]); messages over it travel in parts.
    /// 0 (as in a repro file from before parts): the params' frame.
    #[serde(default)]
    pub frame_bytes: usize,
}

impl Limits {
    /// The frame limit these limits give a run whose largest value is
    /// `value_bytes`: the drawn one, but never below one Accept of a full
    /// slot plus one command of two such values (a compare-and-set), which
    /// no part can carry; and never above the params' `frame`.
    pub fn frame_for(&self, value_bytes: usize, frame: usize) -> usize {
        if self.frame_bytes == 0 {
            return frame;
        }
        let accept = self.slot_bytes + 2 * value_bytes + 256;
        self.frame_bytes.max(accept).min(frame)
    }
}

/// A seed's scale: the largest value its clients write, and its keys.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// Values are this long at most (up to `kv::VALUE_MAX`).
    pub value_bytes: u32,
    /// Keys the clients use (the default is 5).
    pub keys: u64,
    /// Clients at once, if more than the config's, sharing its operations
    /// (0, as in a repro file from before: the config's).
    #[serde(default)]
    pub clients: u8,
}

impl Knobs {
    pub const OFF: Knobs = Knobs {
        log: multipaxos::Buggify::OFF,
        server: kv::server::Buggify::OFF,
        limits: None,
        scale: None,
    };

    /// A seed's draw: BUGGIFY on in half the seeds, then each knob on with
    /// probability 1/4 (a snapshot every 1 to 3 slots, at most every
    /// `snapshot_every`). `None`: every knob off. The lease knob is drawn
    /// in every seed, so the draws that follow it stay in step, but kept
    /// off without leases (it would change nothing).
    pub fn draw(
        rng: &mut ChaCha8Rng,
        leases: bool,
        snapshot_every: u64,
        scale_one_in: u32,
    ) -> Option<Knobs> {
        if !rng.gen_ratio(1, 2) {
            return None;
        }
        let mut on = || rng.gen_ratio(1, 4);
        let window_of_one = on();
        let batch_of_one = on();
        let tight_elections = on();
        let short_lease = on() && leases;
        let catch_up_by_one = on();
        let early_snapshots = on();
        let withhold_replies = on();
        let snapshots = rng.gen_range(1..=3u64).min(snapshot_every);
        // Drawn after every older knob, so those stay as they were.
        let small = rng.gen_ratio(1, 4);
        let mut limits = small.then(|| Limits {
            slot_bytes: rng.gen_range(40..=400),
            queue_bytes: rng.gen_range(40..=2_000),
            frame_bytes: 0,
        });
        let mut scale = (scale_one_in > 0 && rng.gen_ratio(1, scale_one_in)).then(|| Scale {
            value_bytes: rng.gen_range(1_000..=kv::VALUE_MAX as u32),
            keys: rng.gen_range(5..=200),
            clients: 0,
        });
        // Drawn after the scale, so that it stays as it was.
        if let Some(l) = &mut limits {
            l.frame_bytes = rng.gen_range(300..=2_000);
        }
        // Many clients writing large values at once: failure 1's shape.
        if let Some(sc) = &mut scale {
            sc.clients = rng.gen_range(5..=16);
        }
        let k = Knobs {
            log: multipaxos::Buggify {
                window_of_one,
                batch_of_one,
                tight_elections,
                short_lease,
                catch_up_by_one,
            },
            server: kv::server::Buggify {
                snapshot_every: if early_snapshots { snapshots } else { 0 },
                withhold_replies,
            },
            limits,
            scale,
        };
        (k != Knobs::OFF).then_some(k)
    }

    /// The knobs that are on, by name.
    pub fn names(&self) -> Vec<String> {
        let (l, s) = (self.log, self.server);
        let mut v: Vec<String> = [
            (l.window_of_one, "window_of_one"),
            (l.batch_of_one, "batch_of_one"),
            (l.tight_elections, "tight_elections"),
            (l.short_lease, "short_lease"),
            (l.catch_up_by_one, "catch_up_by_one"),
            (s.withhold_replies, "withhold_replies"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_string())
        .collect();
        if s.snapshot_every > 0 {
            v.push(format!("snapshot_every={}", s.snapshot_every));
        }
        if let Some(l) = self.limits {
            v.push(format!(
                "slot_bytes={},queue_bytes={},frame_bytes={}",
                l.slot_bytes, l.queue_bytes, l.frame_bytes
            ));
        }
        if let Some(sc) = self.scale {
            v.push(format!(
                "values<={}B,keys={},clients={}",
                sc.value_bytes, sc.keys, sc.clients
            ));
        }
        v
    }
}

impl Default for LogParams {
    fn default() -> Self {
        LogParams {
            timing: multipaxos::Timing {
                election_us: 100_000,
                election_jitter_us: 100_000,
                heartbeat_us: 30_000,
                lease_us: 0,
                drift_ppm: 0,
            },
            window: 8,
            batch: 8,
            snapshot_every: 64,
            tick_us: 100_000,
            session_ttl_us: 1_000_000,
            client_retry_us: 20_000,
            op_bound_us: 3_000_000,
            scale_one_in: scale_one_in(),
            frame_bytes: frame_bytes(),
            compact_bytes: compact_bytes(),
            buggify: None,
        }
    }
}

/// A log-scenario message or write, summarized for the trace: its kind, the
/// ballot and slot it names, how many entries it carries and a fingerprint of
/// its whole content (so the trace hash covers every byte that was sent).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct LMsg {
    /// The message's type, as the text shows it (`Prepare`); the JSON's
    /// `kind` is in snake_case (`prepare`), as every enum's.
    #[serde(serialize_with = "snake_kind")]
    pub kind: &'static str,
    pub ballot: Option<Ballot>,
    pub slot: Option<u64>,
    pub len: u32,
    pub digest: u64,
}

fn snake_kind<S: serde::Serializer>(kind: &&'static str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::schema::snake_case(kind))
}

impl fmt::Display for LMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.kind)?;
        let mut sep = "";
        if let Some(b) = self.ballot {
            write!(f, "{b}")?;
            sep = ", ";
        }
        if let Some(s) = self.slot {
            write!(f, "{sep}slot {s}")?;
            sep = ", ";
        }
        if self.len > 0 {
            write!(f, "{sep}{} entries", self.len)?;
            sep = ", ";
        }
        write!(f, "{sep}#{:04x})", self.digest & 0xffff)
    }
}

/// A message summary for the trace; the digest covers the whole content.
pub fn summarize(m: &LMsgFull) -> LMsg {
    let (kind, ballot, slot, len) = match m {
        Msg::Prepare { ballot, from } => ("Prepare", Some(*ballot), Some(*from), 0),
        Msg::Promise {
            ballot, accepted, ..
        } => ("Promise", Some(*ballot), None, accepted.len() as u32),
        Msg::Accept {
            ballot,
            slot,
            entry,
            ..
        } => ("Accept", Some(*ballot), Some(*slot), entry_len(entry)),
        Msg::Accepted { ballot, slot } => ("Accepted", Some(*ballot), Some(*slot), 0),
        Msg::Nack { promised, .. } => ("Nack", Some(*promised), None, 0),
        Msg::Heartbeat { ballot, commit, .. } => ("Heartbeat", Some(*ballot), Some(*commit), 0),
        Msg::HeartbeatAck { ballot, .. } => ("HeartbeatAck", Some(*ballot), None, 0),
        Msg::Query { from } => ("Query", None, Some(*from), 0),
        Msg::Progress { applied } => ("Progress", None, Some(*applied), 0),
        Msg::Chosen { slot, entry } => ("Chosen", None, Some(*slot), entry_len(entry)),
        Msg::Snapshot { snap } => ("Snapshot", None, Some(snap.upto), 0),
        Msg::RebuildQuery { fence } => ("RebuildQuery", Some(*fence), None, 0),
        Msg::RebuildState { state } => (
            "RebuildState",
            Some(state.promised),
            None,
            state.accepted.len() as u32,
        ),
        // `slot`: the part's offset; `len`: its bytes.
        Msg::Part { offset, bytes, .. } => ("Part", None, Some(*offset), bytes.len() as u32),
        Msg::Pull { offset, .. } => ("Pull", None, Some(*offset), 0),
    };
    LMsg {
        kind,
        ballot,
        slot,
        len,
        digest: msg_digest(m),
    }
}

fn entry_len(e: &Entry<Cmd>) -> u32 {
    match e {
        Entry::Noop => 0,
        Entry::Cmds(c) => c.len() as u32,
        Entry::Config(_) => 1,
    }
}

/// Fingerprints a message. Snapshots are fingerprinted by position only (a
/// snapshot's content follows from the log it summarizes).
fn msg_digest(m: &LMsgFull) -> u64 {
    let mut h = FxHasher::default();
    match m {
        Msg::Promise {
            ballot,
            accepted,
            snapshot,
        } => {
            ballot.hash(&mut h);
            accepted.hash(&mut h);
            snapshot.as_ref().map(|s| s.upto).hash(&mut h);
        }
        Msg::Snapshot { snap } => snap.upto.hash(&mut h),
        Msg::RebuildState { state } => {
            state.promised.hash(&mut h);
            state.accepted.hash(&mut h);
            state.chosen.hash(&mut h);
        }
        Msg::Prepare { ballot, from } => (0u8, ballot, from).hash(&mut h),
        Msg::Accept {
            ballot,
            slot,
            entry,
            commit,
        } => (1u8, ballot, slot, entry, commit).hash(&mut h),
        Msg::Accepted { ballot, slot } => (2u8, ballot, slot).hash(&mut h),
        Msg::Nack { ballot, promised } => (3u8, ballot, promised).hash(&mut h),
        Msg::Heartbeat {
            ballot,
            commit,
            round,
        } => (4u8, ballot, commit, round).hash(&mut h),
        Msg::HeartbeatAck { ballot, round } => (5u8, ballot, round).hash(&mut h),
        Msg::Query { from } => (6u8, from).hash(&mut h),
        Msg::Chosen { slot, entry } => (7u8, slot, entry).hash(&mut h),
        Msg::RebuildQuery { fence } => (8u8, fence).hash(&mut h),
        Msg::Part {
            id,
            total,
            offset,
            bytes,
        } => (9u8, id, total, offset, bytes).hash(&mut h),
        Msg::Pull { id, offset } => (10u8, id, offset).hash(&mut h),
        Msg::Progress { applied } => (11u8, applied).hash(&mut h),
    }
    h.finish()
}

fn summarize_write(w: &Write<Cmd, Snapshot>) -> LMsg {
    let (kind, ballot, slot, len, digest) = match w {
        Write::Init => ("Init", None, None, 0, 0),
        Write::Promise(b) => ("Promise", Some(*b), None, 0, 0),
        Write::Accept {
            slot,
            ballot,
            entry,
        } => (
            "Accept",
            Some(*ballot),
            Some(*slot),
            entry_len(entry),
            digest(entry),
        ),
        Write::Chosen { slot, entry } => {
            ("Chosen", None, Some(*slot), entry_len(entry), digest(entry))
        }
        Write::ChosenMark { slot } => ("ChosenMark", None, Some(*slot), 0, 0),
        Write::Snapshot(s) => ("Snapshot", None, Some(s.upto), 0, 0),
        Write::Rebuilt(d) => (
            "Rebuilt",
            Some(d.promised),
            None,
            d.accepted.len() as u32,
            0,
        ),
    };
    LMsg {
        kind,
        ballot,
        slot,
        len,
        digest,
    }
}

/// One record as it lies on a replica's disk: the bytes that appending the
/// write adds to its file ([`multipaxos::storage`]; a file's first record,
/// Init or Rebuilt, holds the file header too), so the records of a disk,
/// concatenated, are the file. Faults act on the bytes: a flip lands on any
/// bit, a tear cuts anywhere. **Recovery reads only `bytes`.** `write` is
/// what the node asked to write, summarized: honest metadata of the request
/// for the trace, the checker ([`LogChecker::on_persist`]) and the nemesis
/// ([`DiskRecord::is_snapshot`]), never read back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    /// A plain `Vec`: the encoder's buffer becomes the record with no copy
    /// (an `Arc` would cost a second allocation per write).
    pub bytes: Vec<u8>,
    pub write: LMsg,
}

impl Record {
    /// The first record of replica `id`'s file: `w` ([`Write::Init`]) with
    /// the file header naming the replica.
    pub fn first(id: NodeId, w: &Write<Cmd, Snapshot>) -> Record {
        Record {
            bytes: storage::new_file_of(CLUSTER, Some(id), w),
            write: summarize_write(w),
        }
    }

    /// The record of `w`, encoded as [`storage`] lays it on disk.
    pub fn of(w: &Write<Cmd, Snapshot>) -> Record {
        let bytes = if storage::starts_file(w) {
            storage::new_file(CLUSTER, w)
        } else {
            storage::encode(w)
        };
        Record {
            bytes,
            write: summarize_write(w),
        }
    }
}

/// A disk's file: its records' bytes, in order.
fn file(disk: &[Record]) -> Vec<u8> {
    let mut f = Vec::with_capacity(disk.iter().map(|r| r.bytes.len()).sum());
    for r in disk {
        f.extend_from_slice(&r.bytes);
    }
    f
}

/// Drops the records past the file's first `good` bytes (a torn tail), as
/// recovery truncates the file there.
fn truncate(disk: &mut Vec<Record>, good: usize) {
    let mut len: usize = disk.iter().map(|r| r.bytes.len()).sum();
    while len > good || disk.last().is_some_and(|r| r.bytes.is_empty()) {
        let r = disk.pop().expect("the file is longer than its good part");
        len -= r.bytes.len();
    }
    assert_eq!(len, good, "a torn tail is one whole (cut) record");
}

impl DiskRecord for Record {
    fn tear(&mut self, cut: u32) {
        assert!(!self.bytes.is_empty(), "every record has a frame");
        if self.replaces_all() {
            // A new file, written beside the WAL and renamed over it only
            // once fsynced (`kv::write_path`): cut short, it was never the
            // WAL, and recovery never reads it.
            self.bytes.clear();
            return;
        }
        let keep = cut as usize % self.bytes.len();
        self.bytes.truncate(keep);
    }
    /// A rebuilt state, or a WAL compacted to one record of the state:
    /// a file of its own, which replaces the WAL once durable.
    fn replaces_all(&self) -> bool {
        self.write.kind == "Rebuilt"
    }
    fn flip_bit(&mut self, bit: u32) {
        // A record a crash cut to nothing has no bit to flip.
        if self.bytes.is_empty() {
            return;
        }
        let bit = bit as usize % (8 * self.bytes.len());
        self.bytes[bit / 8] ^= 1 << (bit % 8);
    }
    fn is_snapshot(&self) -> bool {
        matches!(self.write.kind, "Snapshot" | "Rebuilt")
    }
    /// A promise of a ballot, an acceptance (ballot, slot, entry), a chosen
    /// entry, a chosen mark, a snapshot's position: each belongs on a
    /// replica's disk once. The header records (Init, Rebuilt) state none.
    fn fact(&self) -> Option<u64> {
        let w = &self.write;
        match w.kind {
            "Init" | "Rebuilt" => None,
            _ => Some(digest(&(w.kind, w.ballot, w.slot, w.digest))),
        }
    }
}

/// A replica's timers: the log core's, and the service's tick.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Timer {
    Log(multipaxos::Timer),
    Tick,
}

/// A client request as the trace shows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Req(pub Command);

impl fmt::Display for Req {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {:?}", self.0.seq, self.0.op)
    }
}

/// A replica's answer to a client.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resp {
    Reply {
        seq: u64,
        reply: Reply,
        /// Served from the leader's state under its lease.
        local: bool,
    },
    Redirect {
        seq: u64,
        leader: Option<NodeId>,
    },
}

impl fmt::Display for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resp::Reply { seq, reply, local } => write!(
                f,
                "#{seq} {reply:?}{}",
                if *local { " (lease read)" } else { "" }
            ),
            Resp::Redirect { seq, leader } => write!(f, "#{seq} redirect to {leader:?}"),
        }
    }
}

/// What a replica reports.
#[derive(Debug)]
pub enum Note {
    Apply {
        slot: u64,
        entry: Entry<Cmd>,
    },
    Install {
        upto: u64,
    },
    Elected {
        ballot: Ballot,
    },
    Rebuilt,
    Executed {
        slot: u64,
        /// The command's place in the slot's batch.
        index: u32,
        cmd: Command,
        applied: kv::Applied,
    },
    Ticked {
        slot: u64,
        now_us: u64,
    },
    /// A BUGGIFY knob steered the replica down the rare path of coverage
    /// mark `BUGGIFY_MARKS[i]` (not traced).
    Buggified(usize),
    /// The leader counts on its lease until its local time `until` (not
    /// traced: one per heartbeat round; for P7).
    Lease {
        until: u64,
    },
    /// The leader took an operator's membership change: it proposes
    /// `members` (`situation`: what else was going on).
    Reconfigure {
        members: Members,
        situation: Situation,
    },
}

/// The traced part of a [`Note`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LNote {
    /// A replica applied `slot` (`digest` fingerprints the entry).
    Apply {
        slot: u64,
        cmds: u32,
        digest: u64,
    },
    /// A replica installed a snapshot up to `upto`.
    Install {
        upto: u64,
    },
    Elected {
        ballot: Ballot,
    },
    Rebuilt,
    /// The leader proposes a new configuration.
    Reconfigure {
        epoch: u64,
        voters: u16,
        learners: u16,
    },
}

impl fmt::Display for LNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LNote::Apply { slot, cmds, digest } => write!(
                f,
                "APPLY slot {slot} ({cmds} cmds, #{:04x})",
                digest & 0xffff
            ),
            LNote::Install { upto } => write!(f, "INSTALL snapshot up to slot {upto}"),
            LNote::Elected { ballot } => write!(f, "ELECTED leader in {ballot}"),
            LNote::Rebuilt => write!(f, "REBUILT from peers, voting again"),
            LNote::Reconfigure {
                epoch,
                voters,
                learners,
            } => write!(
                f,
                "RECONFIGURE to epoch {epoch}: voters {}, learners {}",
                checkers::fmt_set(*voters),
                checkers::fmt_set(*learners)
            ),
        }
    }
}

/// A replica of the service, as the engine drives it. `Clone`, `Eq` and
/// `Hash` (every field) make it model-checkable (`paxsim check`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Replica {
    server: Server,
    /// `paxkv`'s write path to the WAL (`kv::write_path`): the core's
    /// writes reach the disk in its batches, and the core hears a write is
    /// synced when the write path says so.
    wp: WritePath,
    /// Buffers reused across inputs (empty between them: not state).
    scratch: Scratch,
}

/// A replica's reusable buffers: empty between inputs, so every replica's
/// are equal and hash to nothing (they are not state).
#[derive(Debug, Default)]
struct Scratch {
    ev: Vec<SEvent>,
    steps: Vec<Step>,
}

impl Clone for Scratch {
    fn clone(&self) -> Self {
        Scratch::default()
    }
}
impl PartialEq for Scratch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Scratch {}
impl std::hash::Hash for Scratch {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl Replica {
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// `n{i} applied A digest D`, for liveness reports.
    fn describe(i: usize, r: &Option<Replica>) -> String {
        match r {
            None => format!("n{i} down"),
            Some(r) if r.server.node().is_rebuilding() => format!("n{i} rebuilding"),
            Some(r) => {
                let node = r.server.node();
                let m = node.latest();
                let role = match (
                    node.is_leader(),
                    m.votes(i as NodeId),
                    m.learns(i as NodeId),
                ) {
                    (true, _, _) => "leader",
                    (_, true, _) => "voter",
                    (_, _, true) => "learner",
                    _ => "no member",
                };
                format!(
                    "n{i} applied {} digest {:04x} ({role} of epoch {} as it knows, promised {})",
                    node.applied(),
                    r.server.machine().digest() & 0xffff,
                    m.epoch,
                    node.promised()
                )
            }
        }
    }
}

fn divergence(nodes: &[Option<Replica>]) -> String {
    let reach = members_of(nodes);
    nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| reach & (1 << i) != 0)
        .map(|(i, r)| Replica::describe(i, r))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The members (voters and learners) of the newest configuration any live
/// replica knows: the replicas that must converge. Ids are never reused,
/// so the newest is the one of the highest epoch.
fn members_of(nodes: &[Option<Replica>]) -> u16 {
    nodes
        .iter()
        .flatten()
        .map(|r| r.server.node().latest())
        .max_by_key(|m| m.epoch)
        .map_or(0, |m| m.reach())
}

/// Per-node configuration of a replica.
#[derive(Clone)]
pub struct ReplicaConfig {
    pub log: multipaxos::Config,
    pub server: ServerConfig,
    /// The largest peer message, encoded, the transport carries (R1).
    pub frame_bytes: usize,
    /// The write path compacts the WAL at a snapshot past this size.
    pub compact_bytes: u64,
}

/// What a replica emits: the service's events, and the disk writes its
/// write path made of the core's.
#[derive(Debug)]
pub enum ROut {
    Event(SEvent),
    Write { seq: u64, record: Record },
    Note(Note),
}

impl Replica {
    /// The reusable buffers, empty.
    fn buffers(&mut self) -> (Vec<SEvent>, Vec<Step>) {
        let s = std::mem::take(&mut self.scratch);
        assert!(s.ev.is_empty() && s.steps.is_empty());
        (s.ev, s.steps)
    }

    /// Carries out the service's events `ev`, routing the core's writes
    /// and syncs through the write path as `paxkv` does: each batch becomes
    /// the disk's writes (appended records, or one record of the whole
    /// state) and one sync, and each sync the write path reports is fed
    /// back to the core, whose events go the same way. `steps` are the
    /// write path's, already due.
    fn through_write_path(
        &mut self,
        now: u64,
        mut ev: Vec<SEvent>,
        mut steps: Vec<Step>,
        out: &mut Vec<ROut>,
    ) {
        loop {
            for e in ev.drain(..) {
                match e {
                    SEvent::Log(multipaxos::Output::Persist { seq, write }) => {
                        self.wp.persist(seq, write, &mut steps)
                    }
                    SEvent::Log(multipaxos::Output::Sync { upto }) => {
                        self.wp.sync(upto, &mut steps)
                    }
                    e => out.push(ROut::Event(e)),
                }
            }
            let mut synced = Vec::new();
            for s in steps.drain(..) {
                match s {
                    Step::Write(b) => batch_effects(b, out),
                    Step::Synced(upto) => synced.push(upto),
                }
            }
            if synced.is_empty() {
                // Hand the (empty) buffers back for the next input.
                self.scratch = Scratch { ev, steps };
                return;
            }
            for upto in synced {
                let input = ServerInput::Log(multipaxos::Input::Synced { upto });
                self.server.handle(now, input, &mut ev);
            }
        }
    }
}

/// The disk's writes for one batch of the write path: its records (or the
/// one record of a replaced file), then one sync for all of them.
fn batch_effects(b: Batch, out: &mut Vec<ROut>) {
    match b.io {
        BatchIo::Append(recs) => {
            for r in recs {
                let record = Record {
                    write: summarize_write(&r.write),
                    bytes: r.bytes,
                };
                out.push(ROut::Write { seq: r.seq, record });
            }
        }
        BatchIo::Replace { write, bytes } => {
            let write = summarize_write(&write);
            let record = Record { bytes, write };
            out.push(ROut::Write {
                seq: b.upto,
                record,
            });
        }
    }
    let sync = multipaxos::Output::Sync { upto: b.upto };
    out.push(ROut::Event(SEvent::Log(sync)));
}

impl Protocol for Replica {
    type Config = ReplicaConfig;
    type Msg = LMsgFull;
    type Write = Record;
    type Timer = Timer;
    type Request = Req;
    type Reply = Resp;
    type Note = Note;
    type MsgSummary = LMsg;
    type WriteSummary = LMsg;
    type NoteSummary = LNote;
    type Output = ROut;

    fn boot(cfg: &ReplicaConfig, inc: u32, disk: &mut Vec<Record>, now: u64) -> (Replica, Boot) {
        if inc == 0 {
            assert!(disk.is_empty(), "a first boot finds an empty disk");
            let id = cfg.log.id;
            disk.push(Record::first(id, &Write::Init));
        }
        let file = file(disk);
        // What the bytes say is `paxkv`'s own call (`write_path::recover`).
        let bugs = &cfg.server.bugs;
        let (node, how, wal) = match write_path::recover(Some(&file), CLUSTER, cfg.log.id, bugs) {
            Recovery::Recover { state, good } => {
                // Recovery repairs a torn tail, as a WAL truncates it.
                truncate(disk, good as usize);
                let wal = Some((state.clone(), good));
                (LogNode::recover(cfg.log, state, now), Boot::Recovered, wal)
            }
            Recovery::Rebuild { corrupt, .. } => {
                disk.clear();
                let b = Boot::Rebuilding { corrupt };
                (LogNode::rebuild(cfg.log, now), b, None)
            }
            // An operator's error in production; here, a bug: every file
            // is written by this build for `CLUSTER`, and flips fail the
            // header's checksum before its fields are read.
            Recovery::Refuse(why) => {
                panic!("n{}: the disk cannot be read: {why}", cfg.log.id)
            }
        };
        let r = Replica {
            server: Server::new(node, cfg.server),
            wp: WritePath::new(CLUSTER, cfg.log.id, cfg.compact_bytes, cfg.server.bugs, wal),
            scratch: Scratch::default(),
        };
        (r, how)
    }

    fn start(&mut self, now: u64, out: &mut Vec<ROut>) {
        let (mut ev, steps) = self.buffers();
        self.server.start(now, &mut ev);
        self.through_write_path(now, ev, steps, out);
    }

    fn handle(&mut self, now: u64, input: Input<Replica>, out: &mut Vec<ROut>) {
        let input = match input {
            Input::Receive { from, msg } => {
                ServerInput::Log(multipaxos::Input::Receive { from, msg })
            }
            Input::Timer(Timer::Log(t)) => ServerInput::Log(multipaxos::Input::Timer(t)),
            Input::Timer(Timer::Tick) => ServerInput::Tick,
            Input::Request { req, .. } => ServerInput::Request(req.0),
            // The disk finished a batch: the write path decides what the
            // core hears.
            Input::Synced { upto } => {
                let (ev, mut steps) = self.buffers();
                self.wp.done(upto, &mut steps);
                return self.through_write_path(now, ev, steps, out);
            }
        };
        let (mut ev, steps) = self.buffers();
        self.server.handle(now, input, &mut ev);
        self.through_write_path(now, ev, steps, out);
    }

    fn effect(e: ROut) -> Option<Effect<Replica>> {
        let e = match e {
            ROut::Write { seq, record } => return Some(Effect::Persist { seq, write: record }),
            ROut::Note(n) => return Some(Effect::Note(n)),
            ROut::Event(e) => e,
        };
        Some(match e {
            SEvent::Log(o) => match o {
                multipaxos::Output::Send { to, msg, after } => Effect::Send { to, msg, after },
                multipaxos::Output::Persist { .. } => {
                    unreachable!("the core's writes go through the write path")
                }
                multipaxos::Output::Sync { upto } => Effect::Sync { upto },
                multipaxos::Output::SetTimer {
                    timer,
                    delay_us,
                    jitter_us,
                } => Effect::SetTimer {
                    timer: Timer::Log(timer),
                    delay_us,
                    jitter_us,
                },
                multipaxos::Output::Apply { slot, entry } => {
                    Effect::Note(Note::Apply { slot, entry })
                }
                multipaxos::Output::Install { snap } => {
                    Effect::Note(Note::Install { upto: snap.upto })
                }
                multipaxos::Output::Elected { ballot } => Effect::Note(Note::Elected { ballot }),
                multipaxos::Output::Lease { until, .. } => Effect::Note(Note::Lease { until }),
                multipaxos::Output::Rebuilt => Effect::Note(Note::Rebuilt),
                multipaxos::Output::Refused { from, why } => Effect::Refused { from, why },
                // Load shedding, which only the small byte budgets reach.
                multipaxos::Output::Busy { .. } => Effect::Note(Note::Buggified(7)),
                multipaxos::Output::Buggified(b) => {
                    use multipaxos::Buggified as B;
                    Effect::Note(Note::Buggified(match b {
                        B::QueuedBehindWindow => 0,
                        B::BatchCut => 1,
                        B::CandidacyLost => 2,
                        B::LeaseLapsed => 3,
                        B::CatchUpCut => 4,
                    }))
                }
                // The server turned these into redirects (or dropped them).
                _ => return None,
            },
            SEvent::Reply {
                client,
                seq,
                reply,
                local,
            } => Effect::Reply {
                client,
                reply: Resp::Reply { seq, reply, local },
            },
            SEvent::Redirect {
                client,
                seq,
                leader,
            } => Effect::Reply {
                client,
                reply: Resp::Redirect { seq, leader },
            },
            SEvent::Executed {
                slot,
                index,
                cmd,
                applied,
            } => Effect::Note(Note::Executed {
                slot,
                index,
                cmd,
                applied,
            }),
            SEvent::Ticked { slot, now_us } => Effect::Note(Note::Ticked { slot, now_us }),
            // The simulated operator asks the leader's core directly
            // (`Protocol::reconfigure`), never through the service's requests.
            SEvent::AdminReply { .. } => return None,
            SEvent::Buggified(b) => Effect::Note(Note::Buggified(match b {
                kv::server::Buggified::EarlySnapshotInstalled => 5,
                kv::server::Buggified::ReplyWithheld => 6,
            })),
            SEvent::SetTick { delay_us } => Effect::SetTimer {
                timer: Timer::Tick,
                delay_us,
                jitter_us: 0,
            },
        })
    }

    fn summarize_msg(msg: &LMsgFull) -> LMsg {
        summarize(msg)
    }
    fn summarize_write(w: &Record) -> LMsg {
        w.write
    }
    fn summarize_note(n: &Note) -> Option<LNote> {
        Some(match n {
            Note::Apply { slot, entry } => LNote::Apply {
                slot: *slot,
                cmds: entry_len(entry),
                digest: digest(entry),
            },
            Note::Install { upto } => LNote::Install { upto: *upto },
            Note::Elected { ballot } => LNote::Elected { ballot: *ballot },
            Note::Rebuilt => LNote::Rebuilt,
            Note::Reconfigure { members: m, .. } => LNote::Reconfigure {
                epoch: m.epoch,
                voters: m.voters,
                learners: m.learners,
            },
            Note::Executed { .. }
            | Note::Ticked { .. }
            | Note::Buggified(_)
            | Note::Lease { .. } => return None,
        })
    }

    fn leader_rank(&self) -> Option<u64> {
        let n = self.server.node();
        n.is_leader().then(|| {
            let b = n.promised();
            (b.round as u64) << 8 | b.node as u64
        })
    }
    fn disk_lost(&self) -> bool {
        self.server.node().is_rebuilding()
    }
    fn disk_intact(disk: &[Record]) -> bool {
        // Whether boot would recover from it: the write path's call (a
        // correct one's: the nemesis counts lost disks by it), as its own
        // replica (the file names it).
        let file = file(disk);
        let owner = storage::replica_of(&file).unwrap_or(0);
        matches!(
            write_path::recover(Some(&file), CLUSTER, owner, &multipaxos::Bugs::default()),
            Recovery::Recover { .. }
        )
    }

    fn forge(&self, from: NodeId, rng: &mut ChaCha8Rng) -> Option<LMsgFull> {
        forge(self.server.node(), from, rng)
    }

    /// The postcard encoding's size, as `paxkv`'s peer frames carry it.
    /// Only the kinds that carry entries or state can grow: the others are a
    /// few dozen bytes by construction, and are not measured.
    fn wire_size(msg: &LMsgFull) -> usize {
        match msg {
            Msg::Promise { .. }
            | Msg::Accept { .. }
            | Msg::Chosen { .. }
            | Msg::Snapshot { .. }
            | Msg::RebuildState { .. }
            | Msg::Part { .. } => {
                postcard::experimental::serialized_size(msg).expect("messages encode")
            }
            _ => 0,
        }
    }

    fn wire_limit(cfg: &ReplicaConfig) -> Option<usize> {
        Some(cfg.frame_bytes)
    }

    /// The operator's change, as `paxkv member` asks it of the leader,
    /// within the scenarios' cluster sizes: a configuration keeps 3 to 7
    /// voters once its learners are promoted and its leaving voters gone.
    fn reconfigure(
        &mut self,
        now: u64,
        change: MemberChange,
        situation: Situation,
        out: &mut Vec<ROut>,
    ) {
        // Voters now, and once the learners are promoted and the leaving
        // voters gone: both stay within the scenarios' sizes (fewer than 3
        // voters could not keep their data through a lost disk).
        let latest = self.server.node().latest();
        let eventual = (latest.voters & !latest.leaving) | latest.learners;
        let size = |set: u16| set.count_ones() as usize;
        let (change, voters_now, after) = match change {
            MemberChange::Add(id) => (
                multipaxos::Change::Add(id),
                size(latest.voters),
                size(eventual) + 1,
            ),
            MemberChange::Remove(id) => (
                multipaxos::Change::Remove(id),
                size(latest.voters & !(1 << id)),
                size(eventual & !(1 << id)),
            ),
            MemberChange::Replace { old, new } => (
                multipaxos::Change::Replace { old, new },
                size(latest.voters),
                size(eventual & !old) + size(new),
            ),
        };
        let sizes = MIN_VOTERS..=MAX_VOTERS;
        if !sizes.contains(&voters_now) || !sizes.contains(&after) {
            return;
        }
        let (mut ev, steps) = self.buffers();
        let input = ServerInput::Log(multipaxos::Input::Reconfigure(change));
        self.server.handle(now, input, &mut ev);
        for e in &ev {
            if let SEvent::Log(multipaxos::Output::Reconfigure {
                outcome: Ok(members),
                ..
            }) = e
            {
                out.push(ROut::Note(Note::Reconfigure {
                    members: *members,
                    situation,
                }));
            }
        }
        self.through_write_path(now, ev, steps, out);
    }
}

/// The fewest and most voters a configuration of the log scenarios has.
const MIN_VOTERS: usize = 3;
const MAX_VOTERS: usize = 7;

/// The log core's hostile input: messages from `from` to `to` that no
/// correct peer sends, aimed just past what `to` knows. Each is either one
/// a validating replica can tell from a correct peer's (a ballot its sender
/// does not own, a round or slot out of range, an answer to a ballot the
/// receiver never used, a Nack without a higher promise, a lease grant with
/// leases off, a chosen entry that contradicts the receiver's, a rebuild
/// state that breaks its own rules), or one that is legal but extreme (a
/// commit index far beyond any slot, from a ballot above everything the
/// receiver has seen, so it follows, learns nothing, and must not spin).
/// Nothing here lies plausibly (see `Protocol::forge`).
pub fn forge(to: &LogNode, from: NodeId, rng: &mut ChaCha8Rng) -> Option<LMsgFull> {
    let n = to.config().n;
    let me = to.id();
    let seen = to.promised().round.max(1);
    // A node that is neither the sender nor the receiver (n >= 3): its
    // ballots are the sender's to steal and never the receiver's to be
    // answered in (an answer in the receiver's own ballot would be a
    // plausible lie, a vote never cast, which no validation can tell).
    let third = (0..n)
        .filter(|i| *i != from && *i != me)
        .nth(rng.gen_range(0..n as usize - 2))
        .expect("three nodes at least");
    let stolen = Ballot {
        round: seen + rng.gen_range(0..3),
        node: third,
    };
    let own = |round| Ballot { round, node: from };
    let slot = to.applied() + rng.gen_range(0..4);
    let far = [1u64 << 40, 1 << 56, 1 << 62, u64::MAX][rng.gen_range(0..4)];
    let entry = || Entry::Cmds(vec![Cmd::Tick { now_us: 1 }].into());
    Some(match rng.gen_range(0..12) {
        // A Prepare in a ballot its sender does not own.
        0 => Msg::Prepare {
            ballot: stolen,
            from: slot,
        },
        // An Accept past the highest round there is (after which any
        // election overflowed), at the highest (which would leave no round
        // to stand in), or in ballot zero.
        1 => Msg::Accept {
            ballot: own([u32::MAX, multipaxos::ROUND_MAX, 0][rng.gen_range(0..3)]),
            slot,
            entry: entry(),
            commit: to.applied(),
        },
        // An Accept in a ballot not owned by its sender.
        2 => Msg::Accept {
            ballot: stolen,
            slot,
            entry: entry(),
            commit: 0,
        },
        // A heartbeat from a ballot above anything seen, with a commit index
        // far beyond any slot: legal in form (it is just a very new leader
        // that is very far ahead), so the receiver follows it; it holds
        // nothing accepted in that ballot, so it learns nothing.
        3 => Msg::Heartbeat {
            ballot: own(seen + 1_000),
            commit: far,
            round: 1,
        },
        // Answers to a ballot the receiver never stood in.
        4 => Msg::Promise {
            ballot: stolen,
            accepted: Vec::new(),
            snapshot: None,
        },
        5 => Msg::Accepted {
            ballot: stolen,
            slot,
        },
        // A Nack that promises nothing higher.
        6 => Msg::Nack {
            ballot: Ballot {
                round: seen + 5,
                node: me,
            },
            promised: Ballot { round: 1, node: me },
        },
        // A lease grant for a ballot that is not the receiver's (and, with
        // leases off, a grant at all).
        7 => Msg::HeartbeatAck {
            ballot: stolen,
            round: rng.gen(),
        },
        // A slot far out of range; at the farthest, a part past the end
        // of its message (whose end would overflow).
        8 if far == u64::MAX => Msg::Part {
            id: rng.gen(),
            total: 1 << 20,
            offset: far,
            bytes: vec![0; 16],
        },
        8 => Msg::Query { from: far },
        // A rebuild fence in a ballot the sender does not own.
        9 => Msg::RebuildQuery { fence: stolen },
        // A promise that reports an acceptance above its own ballot.
        10 => Msg::Promise {
            ballot: Ballot {
                round: seen,
                node: me,
            },
            accepted: vec![(slot, own(u32::MAX), entry())],
            snapshot: None,
        },
        // A chosen entry where the receiver has another chosen.
        _ => {
            let s = to.applied().checked_sub(1)?;
            let mine = to.chosen(s)?;
            let e = match mine {
                Entry::Noop => entry(),
                Entry::Cmds(_) | Entry::Config(_) => Entry::Noop,
            };
            Msg::Chosen { slot: s, entry: e }
        }
    })
}

/// Fuzzing the core with arbitrary peer messages (`fuzz/fuzz_targets/peer.rs`,
/// and a proptest in this crate): `data` is a replica's inbox, read as a
/// byte naming the sender and then a message as `paxkv`'s peer frames carry
/// it (postcard), again and again until the bytes no longer decode. The
/// first byte sets the stage: replica 0 of 3 of the `kv` service, leases on,
/// a follower, or (its low bit) the leader, elected before the messages
/// come. Every sync completes at once and the clock moves 1 ms a message.
/// Returns how many messages it took and how many it refused; panics, or
/// hangs, only if the core does (H1).
pub fn feed_peer_bytes(data: &[u8]) -> (usize, usize) {
    let Some((&stage, mut rest)) = data.split_first() else {
        return (0, 0);
    };
    let three = RunConfig {
        nodes: 3,
        ..RunConfig::for_scenario("kv")
    };
    let cfg = KV.node_configs(&three)[0].clone();
    let mut disk = Vec::new();
    let (mut r, _) = Replica::boot(&cfg, 0, &mut disk, 0);
    let mut out = Vec::new();
    let mut now = 0;
    r.start(now, &mut out);
    let mut refused = 0;
    // Steps `r` with `input`, completing its syncs; counts its refusals.
    let step = |r: &mut Replica, now: u64, input: Input<Replica>, refused: &mut usize| {
        let mut out = Vec::new();
        r.handle(now, input, &mut out);
        while !out.is_empty() {
            let mut synced = None;
            for e in out.drain(..).filter_map(Replica::effect) {
                match e {
                    Effect::Sync { upto } => synced = Some(upto),
                    Effect::Refused { .. } => *refused += 1,
                    _ => {}
                }
            }
            if let Some(upto) = synced {
                r.handle(now, Input::Synced { upto }, &mut out);
            }
        }
    };
    if stage & 1 == 1 {
        let t = cfg.log.timing;
        now += t.election_us + t.election_jitter_us + t.lease_us + 1;
        let epochs = out.iter().filter_map(|o| match o {
            ROut::Event(SEvent::Log(multipaxos::Output::SetTimer {
                timer: multipaxos::Timer::Election { epoch },
                ..
            })) => Some(*epoch),
            _ => None,
        });
        let epoch = epochs.max().expect("a follower arms its election timer");
        let timer = Input::Timer(Timer::Log(multipaxos::Timer::Election { epoch }));
        step(&mut r, now, timer, &mut refused);
        let ballot = r.server.node().promised();
        for from in [1, 2] {
            let msg = Msg::Promise {
                ballot,
                accepted: Vec::new(),
                snapshot: None,
            };
            step(&mut r, now, Input::Receive { from, msg }, &mut refused);
        }
        assert!(r.server.node().is_leader(), "elected before the messages");
    }
    let mut taken = 0;
    while let Some((&from, bytes)) = rest.split_first() {
        let Ok((msg, tail)) = postcard::take_from_bytes::<LMsgFull>(bytes) else {
            break;
        };
        rest = tail;
        now += 1_000;
        let from = from % cfg.log.n;
        step(&mut r, now, Input::Receive { from, msg }, &mut refused);
        taken += 1;
    }
    (taken, refused)
}

/// Coverage marks of the log scenarios.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Marks {
    leader_changes: u64,
    snapshot_installs: u64,
    rebuilds: u64,
    lease_reads: u64,
    dedup_hits: u64,
    /// Per BUGGIFY mark, in [`BUGGIFY_MARKS`] order.
    buggified: [u64; 10],
    /// Per membership mark, in [`MEMBER_MARKS`] order.
    members: [u64; 5],
}

/// What membership changes reached (their own marks: a run reaches them
/// only with spare machines and membership episodes).
pub const MEMBER_MARKS: [&str; 5] = [
    "member: leader removed",
    "member: learner promoted",
    "member: change during a partition",
    "member: change while a replica rebuilt",
    "member: added replica served a read",
];

/// What the checker follows of membership, for coverage: the changes the
/// leaders took (by epoch, with what else was going on), the newest
/// configuration applied, and who leads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct MemberCoverage {
    asked: BTreeMap<u64, (bool, bool)>,
    epoch: u64,
    voters: u16,
    first: u16,
    leader: Option<NodeId>,
}

const MARKS: [&str; 5] = [
    "leader change",
    "snapshot installed",
    "replica rebuilt from peers",
    "read served under a lease",
    "retry answered by the dedup table",
];

/// Whether a knob is on.
type KnobOn = fn(&Knobs) -> bool;

/// The rare path each BUGGIFY knob steers down, as a coverage mark, with the
/// knob: a run reaches it only with its knob on.
const BUGGIFY_MARKS: [(&str, KnobOn); 10] = [
    ("buggify: queued behind window of 1", |k| {
        k.log.window_of_one
    }),
    ("buggify: batch cut to 1 command", |k| k.log.batch_of_one),
    ("buggify: duel lost, tight timeouts", |k| {
        k.log.tight_elections
    }),
    ("buggify: short lease lapsed", |k| k.log.short_lease),
    ("buggify: catch-up by 1 entry", |k| k.log.catch_up_by_one),
    ("buggify: early snapshot installed", |k| {
        k.server.snapshot_every > 0
    }),
    ("buggify: reply withheld, retried", |k| {
        k.server.withhold_replies
    }),
    ("buggify: queue over its bytes, Busy", |k| {
        k.limits.is_some()
    }),
    ("buggify: large value written", |k| k.scale.is_some()),
    // A small frame, or state at scale over the 1 MiB part.
    ("buggify: message arrived in parts", |k| {
        k.limits.is_some() || k.scale.is_some()
    }),
];

/// A value is "large" (coverage) from this many bytes.
const LARGE_VALUE: usize = 1_000;

/// The checker: [`LogObserver`] fed what replicas sent, received, wrote,
/// applied and executed, plus the service's lock model. `Clone`, `Eq` and
/// `Hash` (every field) for the model checker, which keeps it in its states.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogChecker {
    obs: LogObserver,
    /// P7, with each node's true clock and the lease its grants last (on
    /// the granter's clock). Off until the engine tells the clocks (the
    /// model checker never does: its clocks are not real time).
    lease: LeaseObserver,
    clocks: Vec<Option<Clock>>,
    lease_us: u64,
    /// K4: the service's specification, fed what it executed in log order.
    spec: Spec,
    /// Every command a client sent: (client, seq) -> op.
    submitted: BTreeMap<(u32, u64), Op>,
    marks: Marks,
    members: MemberCoverage,
}

impl LogChecker {
    /// A configuration applied (by the first replica to apply it): count
    /// what the change did.
    fn on_config_applied(&mut self, m: &Members) {
        let c = &mut self.members;
        if m.epoch != c.epoch + 1 {
            return; // Applied already, or stale (it changes nothing).
        }
        let marks = &mut self.marks.members;
        if m.voters & !c.voters != 0 {
            marks[1] += 1;
        }
        if c.leader
            .is_some_and(|l| c.voters & (1 << l) != 0 && m.voters & (1 << l) == 0)
        {
            marks[0] += 1;
        }
        if let Some((partitioned, rebuilding)) = c.asked.remove(&m.epoch) {
            marks[2] += u64::from(partitioned);
            marks[3] += u64::from(rebuilding);
        }
        c.epoch = m.epoch;
        c.voters = m.voters;
    }

    /// `granter` grants `leader` a lease now, for `lease_us` of its clock.
    fn grant(&mut self, now: u64, granter: NodeId, leader: NodeId) {
        if let Some(clock) = self.clocks[granter as usize] {
            if self.lease_us > 0 {
                let end = now + clock.real(self.lease_us);
                self.lease.on_grant(granter, leader, end);
            }
        }
    }

    /// Feeds one executed command, in log order, to the checker's model of
    /// sessions and lock holders.
    fn lock_model(
        &mut self,
        now: u64,
        id: NodeId,
        slot: u64,
        cmd: &Command,
        reply: &Reply,
    ) -> Check {
        match (&cmd.op, reply) {
            (Op::OpenSession { .. } | Op::KeepAlive, Reply::Session(Ok(expiry))) => {
                self.obs.on_session(cmd.client, Some(*expiry));
            }
            (Op::CloseSession, Reply::Closed(true)) => self.obs.on_session(cmd.client, None),
            (Op::Release { lock, token }, Reply::Released(true)) => {
                self.obs.on_release(*lock, cmd.client, *token)
            }
            (Op::Acquire { lock }, Reply::Lock(Ok(token))) => {
                return self
                    .obs
                    .on_exclusive_grant(now, id, *lock, cmd.client, *token, slot);
            }
            _ => {}
        }
        Ok(())
    }
}

impl Checker<Replica> for LogChecker {
    fn on_send(&mut self, now: u64, from: NodeId, to: NodeId, msg: &LMsgFull) -> Check {
        match msg {
            // A follower acknowledges a heartbeat only with a grant just
            // made or renewed; a leader grants itself as it sends one.
            Msg::HeartbeatAck { .. } => {
                self.grant(now, from, to);
                Ok(())
            }
            Msg::Heartbeat { .. } => {
                self.grant(now, from, from);
                Ok(())
            }
            Msg::Prepare { ballot, from: slot } => {
                self.obs.on_prepare_sent(*ballot, *slot);
                self.obs.on_ballot_sent(now, from, *ballot)
            }
            Msg::Accept { ballot, entry, .. } => {
                if let Entry::Config(m) = entry {
                    // Before any vote for it: M1-M3 judge by its voters.
                    self.obs.on_config_entry(digest(entry), m.epoch, m.voters);
                }
                self.obs.on_ballot_sent(now, from, *ballot)
            }
            Msg::Promise { ballot, .. } => self.obs.on_promise(now, from, *ballot),
            Msg::Accepted { ballot, slot } => self.obs.on_accepted(now, from, *ballot, *slot),
            _ => Ok(()),
        }
    }

    fn on_receive(&mut self, now: u64, from: NodeId, to: NodeId, msg: &LMsgFull) -> Check {
        if let Msg::Part {
            total,
            offset,
            bytes,
            ..
        } = msg
        {
            // The last of two or more parts.
            if *offset > 0 && *offset + bytes.len() as u64 == *total {
                self.marks.buggified[9] += 1;
            }
        }
        if let Msg::Accept {
            ballot,
            slot,
            entry,
            ..
        } = msg
        {
            let d = digest(entry);
            return self
                .obs
                .on_accept_received(now, from, to, *ballot, *slot, d);
        }
        Ok(())
    }

    fn on_persist(&mut self, _now: u64, node: NodeId, _seq: u64, w: &Record) -> Check {
        if w.write.kind == "Rebuilt" {
            // A rebuilt replica's acceptances are its own from here on (a
            // resent Accept of one is answered without a second record),
            // and so are those of a WAL compacted to one record of its
            // state: read them from the record's bytes, a file of its own.
            if let Loaded::Ok { state, .. } = load::<Cmd, Snapshot>(&w.bytes, CLUSTER) {
                for (slot, (ballot, entry)) in &state.accepted {
                    self.obs
                        .on_accept_write(node, *ballot, *slot, digest(entry));
                }
                self.obs.on_snapshot_write(node, state.base());
            }
            return Ok(());
        }
        if let LMsg {
            kind: "Snapshot",
            slot: Some(upto),
            ..
        } = w.write
        {
            self.obs.on_snapshot_write(node, upto);
        }
        // The summary of an Accept names its ballot, slot and entry digest.
        if let LMsg {
            kind: "Accept",
            ballot: Some(ballot),
            slot: Some(slot),
            digest,
            ..
        } = w.write
        {
            self.obs.on_accept_write(node, ballot, slot, digest);
        }
        Ok(())
    }

    fn on_note(&mut self, now: u64, id: NodeId, note: &Note) -> Check {
        match note {
            Note::Apply { slot, entry } => {
                if let Entry::Config(m) = entry {
                    self.on_config_applied(m);
                }
                let submitted = match entry {
                    Entry::Noop | Entry::Config(_) => true,
                    Entry::Cmds(cmds) => cmds.iter().all(|c| match c {
                        Cmd::Client(c) => self.submitted.get(&(c.client, c.seq)) == Some(&c.op),
                        Cmd::Tick { .. } => true,
                        // Only a service request puts one in the log, and
                        // the simulated operator makes none.
                        Cmd::Peer { .. } => false,
                    }),
                };
                self.obs.on_apply(now, id, *slot, digest(entry), submitted)
            }
            Note::Install { upto } => {
                self.marks.snapshot_installs += 1;
                self.obs.on_install(id, *upto);
                Ok(())
            }
            Note::Elected { ballot } => {
                if self.obs.elections > 0 {
                    self.marks.leader_changes += 1;
                }
                self.members.leader = Some(id);
                self.obs.on_elected(now, id, *ballot)
            }
            Note::Reconfigure { members, situation } => {
                let s = (situation.partitioned, situation.rebuilding);
                self.members.asked.insert(members.epoch, s);
                Ok(())
            }
            Note::Rebuilt => {
                self.marks.rebuilds += 1;
                Ok(())
            }
            Note::Executed {
                slot,
                index,
                cmd,
                applied,
            } => {
                let slot = *slot;
                if cmd.op.value().is_some_and(|v| v.len() >= LARGE_VALUE) {
                    self.marks.buggified[8] += 1;
                }
                if !applied.executed {
                    self.marks.dedup_hits += 1;
                    return Ok(());
                }
                let index = *index;
                self.obs
                    .on_executed(now, id, cmd.client, cmd.seq, slot, index)?;
                if self.obs.service_turn(id, slot) {
                    let owed = self.spec.execute(cmd.client, &cmd.op);
                    if owed != applied.reply {
                        return Err(Violation {
                            invariant: Invariant::K4,
                            at_us: now,
                            node: Some(id),
                            detail: format!(
                                "c{} #{} {:?} at slot {slot} #{index} got {:?}; the specification gives {owed:?}",
                                cmd.client, cmd.seq, cmd.op, applied.reply
                            ),
                        });
                    }
                    self.lock_model(now, id, slot, cmd, &applied.reply)?;
                }
                if let (Op::Acquire { lock }, Reply::Lock(Ok(token))) = (&cmd.op, &applied.reply) {
                    return self
                        .obs
                        .on_grant(now, id, *lock, cmd.client, *token, slot, index);
                }
                Ok(())
            }
            Note::Ticked { slot, now_us } => {
                if self.obs.service_turn(id, *slot) {
                    self.obs.on_tick(*now_us);
                    self.spec.tick(*now_us);
                }
                Ok(())
            }
            Note::Buggified(i) => {
                self.marks.buggified[*i] += 1;
                Ok(())
            }
            Note::Lease { until } => {
                let Some(clock) = self.clocks[id as usize] else {
                    return Ok(());
                };
                let local = clock.local(now);
                if *until <= local {
                    return Ok(());
                }
                let voters = self.obs.lease_voters();
                self.lease
                    .on_lease_among(now, id, now + clock.real(*until - local), &voters)
            }
        }
    }

    fn on_clock(&mut self, node: NodeId, clock: Clock) {
        self.clocks[node as usize] = Some(clock);
    }

    fn on_reply(&mut self, _now: u64, node: NodeId, _client: u32, reply: &Resp) -> Check {
        if let Resp::Reply { local: true, .. } = reply {
            self.marks.lease_reads += 1;
        }
        if let Resp::Reply {
            reply: Reply::Value(_),
            ..
        } = reply
        {
            if self.members.first & (1 << node) == 0 {
                self.marks.members[4] += 1;
            }
        }
        Ok(())
    }

    fn on_invoke(&mut self, _now: u64, client: u32, req: &Req) -> Check {
        self.submitted.insert((client, req.0.seq), req.0.op.clone());
        Ok(())
    }

    fn on_restart(&mut self, node: NodeId) {
        self.obs.on_restart(node);
    }

    fn on_disk_lost(&mut self, node: NodeId) {
        self.obs.on_disk_lost(node);
    }

    /// Every member of the newest configuration up, none rebuilding, all
    /// at the same state (spares and removed replicas may lag).
    fn settled(&self, nodes: &[Option<Replica>]) -> bool {
        let mut state = None;
        let reach = members_of(nodes);
        if reach == 0 {
            return false; // Everyone is down.
        }
        for (i, r) in nodes.iter().enumerate() {
            if reach & (1 << i) == 0 {
                continue;
            }
            let Some(r) = r else { return false };
            let node = r.server.node();
            if node.is_rebuilding() {
                return false;
            }
            let s = (node.applied(), r.server.machine().digest());
            if *state.get_or_insert(s) != s {
                return false;
            }
        }
        true
    }

    fn unsettled(&self, now: u64, cfg: &RunConfig, nodes: &[Option<Replica>]) -> Violation {
        Violation {
            invariant: Invariant::L2,
            at_us: now,
            node: None,
            detail: format!(
                "replicas did not converge within {}: {}",
                checkers::fmt_time(cfg.liveness_us),
                divergence(nodes)
            ),
        }
    }

    fn coverage(&self) -> Vec<(&'static str, u64)> {
        let m = &self.marks;
        let counts = [
            m.leader_changes,
            m.snapshot_installs,
            m.rebuilds,
            m.lease_reads,
            m.dedup_hits,
        ];
        let buggify = BUGGIFY_MARKS.iter().map(|(name, _)| *name);
        MARKS
            .into_iter()
            .zip(counts)
            .chain(buggify.zip(m.buggified))
            .chain(service_spec::MARKS.into_iter().zip(self.spec.seen))
            .chain(MEMBER_MARKS.into_iter().zip(m.members))
            .collect()
    }
}

/// What a client is doing.
struct Cl {
    client: Client,
    done: u32,
    /// The history entry of the operation in flight, if it is checked.
    op: Option<(Option<OpId>, u64)>,
    invoked_at: u64,
    token: BTreeMap<u64, u64>,
    has_session: bool,
}

/// The token of the "next operation" wake-up (client retry timers use
/// their epoch, which never gets this large).
const NEXT: u64 = u64::MAX;

/// The clients of the service and their history.
pub struct LogWorkload {
    kv: bool,
    params: LogParams,
    ops: u32,
    n: u8,
    /// The first configuration's size (`n` counts the spares too).
    first: u8,
    clients: Vec<Cl>,
    n_clients: u8,
    /// When the last client operation completed.
    last_done: u64,
    history: History<KvModel<Value>>,
    buf: Vec<ClientOut>,
    /// The seed's scale (BUGGIFY), if it draws one.
    scale: Option<Scale>,
}

impl LogWorkload {
    /// A value to write: `n`'s decimal digits, and with a scale, padded to
    /// a length drawn up to its largest value (the bytes are shared, so a
    /// large value costs one allocation however often it is copied).
    fn value(&self, cx: &mut dyn Cx<Replica>, n: u64) -> Value {
        let Some(sc) = self.scale else {
            return n.into();
        };
        let mut bytes = n.to_string().into_bytes();
        let len = cx.rng().gen_range(8..=sc.value_bytes as usize);
        bytes.resize(len.max(bytes.len()), b'.');
        Value::from(bytes)
    }

    /// When client `c`'s operation in flight must have completed: within
    /// `op_bound_us` of its invocation, or of the quiet period's start if it
    /// was invoked before.
    fn op_deadline(&self, c: &Cl, quiet_at: u64) -> u64 {
        c.invoked_at.max(quiet_at) + self.params.op_bound_us
    }

    fn out(&mut self, cx: &mut dyn Cx<Replica>, client: u32) {
        let mut buf = std::mem::take(&mut self.buf);
        for o in buf.drain(..) {
            match o {
                ClientOut::Send { to, cmd } => cx.send(client, to, Req(cmd)),
                ClientOut::SetTimer { delay_us, epoch } => {
                    assert!(epoch != NEXT);
                    cx.wake(client, delay_us, epoch)
                }
            }
        }
        self.buf = buf;
    }

    /// The workload: the next operation of `client`.
    fn next_op(&mut self, cx: &mut dyn Cx<Replica>, client: u32) -> Op {
        let keys = self.scale.map_or(KEYS, |s| s.keys);
        let key = cx.rng().gen_range(0..keys);
        // A unique-enough small value, written as its decimal digits so the
        // trace stays readable; the bytes are made only if the op writes.
        let value = cx.rng().gen_range(1..1_000_000u64);
        if !self.kv {
            let value = self.value(cx, value);
            return Op::Put { key, value };
        }
        // Client 0 only reads, and sticks to the replica that answered it:
        // a monitoring client, the one that would see a stale lease read.
        if client == 0 && self.n_clients > 1 {
            return Op::Get { key };
        }
        let n_clients = self.n_clients.max(1) as u64;
        let cl = &self.clients[client as usize];
        if !cl.has_session {
            // Mostly a new session; sometimes what needs one, without it
            // (a session that expired or was closed under the client).
            return match cx.rng().gen_range(0..10) {
                0 => Op::KeepAlive,
                1 => Op::Acquire {
                    lock: cx.rng().gen_range(0..LOCKS),
                },
                _ => Op::OpenSession {
                    ttl_us: self.params.session_ttl_us,
                },
            };
        }
        let held = cl.token.iter().next().map(|(l, t)| (*l, *t));
        let pick = cx.rng().gen_range(0..100);
        // Only a write draws its value's length (with a scale), after the
        // draws every seed makes.
        let value = match pick {
            35..=66 | 80..=84 => self.value(cx, value),
            _ => Value::from(value),
        };
        let rng = cx.rng();
        // A plain operation hits an ephemeral key one time in eight (K4
        // judges it; the history keeps to the plain keys); an ephemeral
        // write goes to another client's key half the time.
        let ephemeral = |rng: &mut ChaCha8Rng, own: bool| match own {
            true => EPHEMERAL_BASE + client as u64,
            false => EPHEMERAL_BASE + rng.gen_range(0..n_clients),
        };
        let key = match pick {
            0..=71 if rng.gen_range(0..8) == 0 => ephemeral(rng, false),
            _ => key,
        };
        match pick {
            0..=34 => Op::Get { key },
            35..=54 => Op::Put { key, value },
            55..=66 => {
                let expected = rng.gen_range(0..4);
                Op::Cas {
                    key,
                    expected,
                    value,
                }
            }
            67..=71 => Op::Delete { key },
            72..=77 => Op::KeepAlive,
            78..=79 => Op::CloseSession,
            80..=84 => {
                let own = rng.gen_bool(0.5);
                Op::PutEphemeral {
                    key: ephemeral(rng, own),
                    value,
                }
            }
            85..=92 => Op::Acquire {
                lock: rng.gen_range(0..LOCKS),
            },
            _ => match held {
                Some((lock, token)) => Op::Release { lock, token },
                None => Op::Get { key },
            },
        }
    }

    fn next(&mut self, cx: &mut dyn Cx<Replica>, client: u32) {
        if self.clients[client as usize].done >= self.ops {
            return;
        }
        let op = self.next_op(cx, client);
        let now = cx.now();
        let mut buf = std::mem::take(&mut self.buf);
        let kop = match &op {
            // Ephemeral keys vanish with sessions, at ticks no history can
            // place: K4 judges those, K3 the plain keys.
            Op::Get { key } | Op::Put { key, .. } | Op::Delete { key } | Op::Cas { key, .. }
                if *key >= EPHEMERAL_BASE =>
            {
                None
            }
            Op::Get { key } => Some((*key, KvOp::Get)),
            Op::Put { key, value } => Some((*key, KvOp::Put(value.clone()))),
            Op::Delete { key } => Some((*key, KvOp::Delete)),
            Op::Cas {
                key,
                expected,
                value,
            } => Some((
                *key,
                KvOp::Cas {
                    expected: *expected,
                    value: value.clone(),
                },
            )),
            _ => None,
        };
        let cmd = self.clients[client as usize].client.invoke(op, &mut buf);
        let id = kop.map(|(key, op)| self.history.invoke(client, key, op, now));
        let cl = &mut self.clients[client as usize];
        cl.op = Some((id, cmd.seq));
        cl.invoked_at = now;
        let to = match buf.first() {
            Some(ClientOut::Send { to, .. }) => *to,
            _ => 0,
        };
        self.buf = buf;
        cx.invoke(client, to, Req(cmd));
        self.out(cx, client);
    }
}

impl Workload<Replica> for LogWorkload {
    fn start(&mut self, cx: &mut dyn Cx<Replica>) {
        let retry = self.params.client_retry_us;
        for c in 0..self.n_clients {
            // The first configuration's replicas, as a client configured
            // with the cluster's addresses knows them; it learns of others
            // by redirects, and tries them in turn when none names a leader.
            let target = cx.rng().gen_range(0..self.first);
            self.clients.push(Cl {
                client: Client::new(c as u32, self.n, target, retry),
                done: 0,
                op: None,
                invoked_at: 0,
                token: BTreeMap::new(),
                has_session: false,
            });
            let at = cx.rng().gen_range(0..20_000);
            cx.wake(c as u32, at, NEXT);
        }
    }

    fn on_wake(&mut self, cx: &mut dyn Cx<Replica>, client: u32, token: u64) {
        if token == NEXT {
            return self.next(cx, client);
        }
        let cl = &mut self.clients[client as usize];
        cl.client.on_timer(token, &mut self.buf);
        if !self.buf.is_empty() {
            cx.retry(client, 0);
        }
        self.out(cx, client);
    }

    fn on_reply(&mut self, cx: &mut dyn Cx<Replica>, client: u32, from: NodeId, resp: Resp) {
        let (seq, reply) = match &resp {
            Resp::Redirect { seq, leader } => {
                self.clients[client as usize]
                    .client
                    .on_redirect(*seq, *leader, &mut self.buf);
                return self.out(cx, client);
            }
            Resp::Reply { seq, reply, .. } => (*seq, reply.clone()),
        };
        let now = cx.now();
        let cl = &mut self.clients[client as usize];
        let Some((cmd, reply)) = cl.client.on_reply(from, seq, reply) else {
            return;
        };
        let (id, s) = cl.op.take().expect("an operation in flight");
        assert_eq!(s, cmd.seq);
        cl.done += 1;
        self.last_done = now;
        match (&cmd.op, &reply) {
            (Op::OpenSession { .. }, Reply::Session(Ok(_))) => cl.has_session = true,
            (Op::CloseSession, _)
            | (_, Reply::Session(Err(_)))
            | (_, Reply::Lock(Err(kv::LockError::NoSession))) => {
                cl.has_session = false;
                cl.token.clear();
            }
            (Op::Acquire { lock }, Reply::Lock(Ok(t))) => {
                cl.token.insert(*lock, *t);
            }
            (Op::Release { lock, .. }, _) => {
                cl.token.remove(lock);
            }
            _ => {}
        }
        if let Some(id) = id {
            let ret = match reply.clone() {
                Reply::Value(v) => Some(KvRet::Value(v)),
                Reply::Version(v) => Some(KvRet::Version(v)),
                Reply::Deleted(d) => Some(KvRet::Deleted(d)),
                Reply::Cas(r) => Some(KvRet::CasResult(r)),
                _ => None,
            };
            match ret {
                Some(r) => self.history.ok(id, r, now),
                None => {
                    let detail = format!("c{client} #{seq} {:?} got {reply:?}", cmd.op);
                    cx.fail(Invariant::K3, Some(from), detail);
                    self.history.info(id);
                }
            }
        }
        cx.complete(client, from, resp);
        if let Some(quiet_at) = cx.quiet_at() {
            let start = self.clients[client as usize].invoked_at.max(quiet_at);
            let bound = self.params.op_bound_us;
            if now - start > bound {
                let detail = format!(
                    "c{client} #{seq} took {} after the quiet period (bound {})",
                    checkers::fmt_time(now - start),
                    checkers::fmt_time(bound)
                );
                cx.fail(Invariant::L2, None, detail);
            }
        }
        let think = cx.rng().gen_range(0..2_000);
        cx.wake(client, think, NEXT);
    }

    /// L2's bound, which scales with the workload rather than the run: the
    /// earliest deadline of an operation in flight; once every client is done,
    /// `liveness_us` after the last completion for the replicas to converge.
    fn deadline(&self, quiet_at: u64, cfg: &RunConfig) -> u64 {
        let ops = self.clients.iter().filter(|c| c.op.is_some());
        let mut d = ops
            .map(|c| self.op_deadline(c, quiet_at))
            .min()
            .unwrap_or(u64::MAX);
        if self.done() {
            d = d.min(self.last_done.max(quiet_at) + cfg.liveness_us);
        }
        d
    }

    fn done(&self) -> bool {
        self.clients.iter().all(|c| c.done >= self.ops)
    }

    fn stalled(
        &self,
        now: u64,
        quiet_at: u64,
        cfg: &RunConfig,
        nodes: &[Option<Replica>],
    ) -> Option<Violation> {
        let late: Vec<String> = self
            .clients
            .iter()
            .filter(|c| c.op.is_some() && self.op_deadline(c, quiet_at) <= now)
            .map(|c| {
                format!(
                    "c{} op {} of {} (invoked at {})",
                    c.client.id,
                    c.done + 1,
                    self.ops,
                    checkers::fmt_time(c.invoked_at)
                )
            })
            .collect();
        let detail = if !late.is_empty() {
            format!(
                "operations unanswered {} after their invocation or the quiet period's start \
                 ({}): {}; replicas: {}",
                checkers::fmt_time(self.params.op_bound_us),
                checkers::fmt_time(quiet_at),
                late.join(", "),
                divergence(nodes)
            )
        } else if !self.done() {
            format!(
                "the run stalled with clients unfinished: {}",
                divergence(nodes)
            )
        } else {
            format!(
                "replicas did not converge within {} of the last completion at {}: {}",
                checkers::fmt_time(cfg.liveness_us),
                checkers::fmt_time(self.last_done),
                divergence(nodes)
            )
        };
        Some(Violation {
            invariant: Invariant::L2,
            at_us: now,
            node: None,
            detail,
        })
    }

    fn finish(&mut self) -> Result<bool, Violation> {
        match linearizability::check(&self.history, LIN_BUDGET) {
            linearizability::Report::Linearizable => Ok(true),
            linearizability::Report::NotLinearizable { key, minimal } => Err(Violation {
                invariant: Invariant::K3,
                at_us: self.last_done,
                node: None,
                detail: format!(
                    "key {key}: no order of these {} operations explains their results:\n{}",
                    minimal.len(),
                    linearizability::render(&minimal)
                ),
            }),
            // Not a verdict either way: counted and reported by the campaign
            // and `paxsim run`, not a failure.
            linearizability::Report::Unknown { .. } => Ok(false),
        }
    }
}

const CANARIES: [Canary; 27] = [
    (
        "deposed-leader-writes",
        "acceptors check the ballot only on Prepare",
    ),
    (
        "assume-reported-chosen",
        "a new leader treats reported slots as chosen",
    ),
    (
        "commit-without-entry",
        "followers mark chosen whatever entry they hold",
    ),
    (
        "truncate-on-restart",
        "a restarted replica forgets acceptances",
    ),
    ("read-without-lease", "kv: the leader reads without a lease"),
    ("lease-ignores-drift", "kv: leases ignore clock drift"),
    (
        "snapshot-without-dedup",
        "kv: snapshots leave out the dedup table",
    ),
    (
        "wiped-rejoins-as-voter",
        "a wiped replica votes with empty state",
    ),
    (
        "non-atomic-chosen",
        "a learned slot is persisted as two records",
    ),
    (
        "prepare-before-promise",
        "Prepares leave before the promise is durable (P6)",
    ),
    (
        "leader-stops-proposing",
        "(liveness) a leader stops proposing, keeps heartbeating",
    ),
    (
        "no-catch-up",
        "(liveness) a lagging follower never catches up",
    ),
    (
        "rewrite-resent-accepts",
        "(resources) every resent Accept is written and fsynced again (R2)",
    ),
    (
        "trust-peer-messages",
        "(hostile input) peer messages reach the handlers unvalidated (H1)",
    ),
    (
        "walk-to-commit-index",
        "(hostile input) a follower walks every slot to the commit index (H1: spins)",
    ),
    (
        "send-state-whole",
        "(resources) state goes whole, over the frame limit (R1)",
    ),
    (
        "synced-before-fsync",
        "(durability, paxkv's write path) a batch reported durable before its fsync (D1)",
    ),
    (
        "pipelined-sync",
        "(durability, paxkv's write path) a sync counted done once the writer has the writes (D1)",
    ),
    (
        "lease-from-ack",
        "a lease timed from its acknowledgements, not the heartbeat",
    ),
    (
        "corrupt-tail-as-torn",
        "(recovery) a corrupt last record taken for a torn one and dropped",
    ),
    (
        "rebuild-without-fence",
        "(recovery) a rebuild takes the first majority's state, unfenced",
    ),
    (
        "plain-write-keeps-owner",
        "kv: a Put or Cas on an ephemeral key keeps its owner",
    ),
    (
        "config-when-received",
        "(membership) a configuration takes effect when accepted, not when chosen",
    ),
    (
        "ignore-reported-config",
        "(membership) a new leader counts quorums in the configuration it was elected in",
    ),
    (
        "learner-votes",
        "(membership) a learner votes before it is promoted (M2)",
    ),
    (
        "removed-keeps-voting",
        "(membership) a removed replica keeps voting and standing (M2)",
    ),
    (
        "union-quorum",
        "(membership) a candidate counts a majority of the union of configurations",
    ),
];

/// The knobs the cores run with: the params' (drawn by `plan`), all off if
/// there are none or the config's `buggify` is off.
fn knobs(cfg: &RunConfig, p: &LogParams) -> Knobs {
    match p.buggify {
        Some(k) if cfg.buggify => k,
        _ => Knobs::OFF,
    }
}

/// The log scenarios: `multi` (`kv: false`) and `kv`.
pub struct Log {
    pub kv: bool,
}

/// `multi`.
pub const MULTI: Log = Log { kv: false };
/// `kv`.
pub const KV: Log = Log { kv: true };

impl Scenario for Log {
    type P = Replica;
    type Checker = LogChecker;
    type Workload = LogWorkload;

    fn name(&self) -> &'static str {
        if self.kv {
            "kv"
        } else {
            "multi"
        }
    }
    fn about(&self) -> &'static str {
        if self.kv {
            "coordination service: 3-7 replicas and 2 spares, clients (default 5 x 200 ops) \
             mixing reads, writes, CAS, sessions, ephemeral keys and locks; leases serve reads; \
             membership changes; linearizability checked"
        } else {
            "Multi-Paxos log: 3-7 replicas and 2 spares, clients (default 5 x 100 ops) writing \
             through any replica; membership changes"
        }
    }
    fn defaults(&self) -> RunConfig {
        let mut c = RunConfig {
            scenario: self.name().into(),
            clients: 5,
            ops: 100,
            // Machines a membership change may add (replacements included).
            spares: 2,
            ..RunConfig::generic()
        };
        let mut p = LogParams::default();
        if self.kv {
            c.ops = 200;
            p.timing.lease_us = 150_000;
            p.timing.drift_ppm = 200_000;
            c.fault_phase_us = 2_000_000;
        }
        c.set_params(&p);
        c
    }
    fn caps(&self, cfg: &RunConfig) -> Caps {
        let p: LogParams = cfg.params().unwrap_or_default();
        Caps {
            leader: true,
            clocks: true,
            pauses: true,
            disk_loss: true,
            // Leases assume |rate| <= drift_ppm; without leases any rate is fair.
            drift_bound_ppm: (p.timing.lease_us > 0).then_some(p.timing.drift_ppm),
            hostile: true,
            // With spare machines to add: without, only removals would be
            // left, which only shrink the cluster.
            membership: cfg.spares > 0,
        }
    }
    fn canaries(&self) -> Vec<Canary> {
        assert_eq!(CANARIES.len(), multipaxos::CANARIES.len());
        CANARIES.to_vec()
    }
    fn validate(&self, cfg: &RunConfig) -> Result<(), String> {
        if !(3..=7).contains(&cfg.nodes) {
            return Err(format!("nodes is {}, must be 3 to 7", cfg.nodes));
        }
        if cfg.spares > 4 {
            return Err(format!("spares is {}, must be 0 to 4", cfg.spares));
        }
        if !(1..=16).contains(&cfg.clients) {
            return Err(format!("clients is {}, must be 1 to 16", cfg.clients));
        }
        if !(1..=100_000).contains(&cfg.ops) {
            return Err(format!("ops is {}, must be 1 to 100000", cfg.ops));
        }
        let l: LogParams = cfg.params()?;
        let t = &l.timing;
        for (name, v, lo, hi) in [
            ("timing.election_us", t.election_us, 1_000, 60_000_000),
            (
                "timing.election_jitter_us",
                t.election_jitter_us,
                1,
                60_000_000,
            ),
            ("timing.heartbeat_us", t.heartbeat_us, 100, 60_000_000),
            ("timing.lease_us", t.lease_us, 0, 60_000_000),
            ("timing.drift_ppm", t.drift_ppm, 0, 500_000),
            ("window", l.window, 1, 1_000),
            ("batch", l.batch as u64, 1, 1_000),
            ("snapshot_every", l.snapshot_every, 1, 1_000_000),
            ("tick_us", l.tick_us, 1_000, 60_000_000),
            ("session_ttl_us", l.session_ttl_us, 1_000, 600_000_000),
            ("client_retry_us", l.client_retry_us, 100, 60_000_000),
            ("op_bound_us", l.op_bound_us, 1_000, 600_000_000),
            ("scale_one_in", l.scale_one_in as u64, 0, 1_000_000),
            ("frame_bytes", l.frame_bytes as u64, 256, 1 << 30),
            ("compact_bytes", l.compact_bytes, 0, 1 << 40),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(format!("params.{name} is {v}, must be {lo} to {hi}"));
            }
        }
        if t.heartbeat_us >= t.election_us {
            return Err("params.timing.heartbeat_us must be below election_us".into());
        }
        if let Some(k) = l.buggify {
            if k.server.snapshot_every > l.snapshot_every {
                return Err(format!(
                    "params.buggify.server.snapshot_every is {}, must be 0 (off) to \
                     snapshot_every ({}): BUGGIFY snapshots earlier, never later",
                    k.server.snapshot_every, l.snapshot_every
                ));
            }
        }
        Ok(())
    }
    fn node_configs(&self, cfg: &RunConfig) -> Vec<ReplicaConfig> {
        let p: LogParams = cfg.params().expect("validated");
        let mut bugs = multipaxos::Bugs::default();
        for b in &cfg.bugs {
            bugs.enable(b).expect("validated");
        }
        let knobs = knobs(cfg, &p);
        // The run's frame limit; a message over it (less a part's header)
        // travels in parts.
        // Without a scale a value is a number's decimal digits.
        let values = knobs.scale.map_or(16, |s| s.value_bytes as usize);
        let frame = knobs
            .limits
            .map_or(p.frame_bytes, |l| l.frame_for(values, p.frame_bytes));
        let part_bytes = frame
            .saturating_sub(multipaxos::PART_HEADROOM)
            .min(multipaxos::PART_BYTES);
        (0..cfg.machines())
            .map(|id| ReplicaConfig {
                log: multipaxos::Config {
                    n: cfg.machines(),
                    id,
                    voters: Members::all(cfg.nodes),
                    timing: p.timing,
                    window: p.window,
                    batch: p.batch,
                    slot_bytes: knobs
                        .limits
                        .map_or(multipaxos::SLOT_BYTES, |l| l.slot_bytes),
                    queue_bytes: knobs
                        .limits
                        .map_or(multipaxos::QUEUE_BYTES, |l| l.queue_bytes),
                    part_bytes,
                    bugs,
                    buggify: knobs.log,
                },
                server: ServerConfig {
                    snapshot_every: p.snapshot_every,
                    tick_us: p.tick_us,
                    lease_reads: p.timing.lease_us > 0,
                    bugs,
                    buggify: knobs.server,
                },
                frame_bytes: frame,
                compact_bytes: p.compact_bytes,
            })
            .collect()
    }
    fn checker(&self, cfg: &RunConfig) -> LogChecker {
        let p: LogParams = cfg.params().expect("validated");
        let (machines, first) = (cfg.machines(), Members::all(cfg.nodes));
        let obs = match cfg.spares {
            // Fixed voters: the hot path of every campaign without spares.
            0 => LogObserver::new(cfg.nodes as usize),
            _ => LogObserver::with_membership(machines as usize, first, p.window),
        };
        LogChecker {
            obs,
            lease: LeaseObserver::new(machines as usize),
            clocks: vec![None; machines as usize],
            spec: Spec::default(),
            lease_us: p.timing.lease_us,
            submitted: BTreeMap::new(),
            marks: Marks::default(),
            members: MemberCoverage {
                voters: first,
                first,
                ..MemberCoverage::default()
            },
        }
    }
    fn workload(&self, cfg: &RunConfig, _rng: &mut ChaCha8Rng) -> LogWorkload {
        let scale = {
            let p: LogParams = cfg.params().expect("validated");
            knobs(cfg, &p).scale
        };
        let n_clients = cfg.clients.max(scale.map_or(0, |s| s.clients));
        LogWorkload {
            kv: self.kv,
            params: cfg.params().expect("validated"),
            // More clients at once, the same operations in all: the load's
            // shape changes, not its size.
            ops: (cfg.ops * cfg.clients as u32 / n_clients as u32).max(1),
            n: cfg.machines(),
            first: cfg.nodes,
            clients: Vec::new(),
            n_clients,
            last_done: 0,
            history: History::new(),
            buf: Vec::new(),
            scale,
        }
    }
    /// The marks a campaign of `cfg` can reach: the lease marks only with
    /// leases; each BUGGIFY mark only if its knob may be on (drawn per seed,
    /// or set on in the params), never with `buggify` off.
    fn required_marks(&self, cfg: &RunConfig) -> Vec<&'static str> {
        let Ok(p) = cfg.params::<LogParams>() else {
            return MARKS.to_vec();
        };
        let leases = p.timing.lease_us > 0;
        let buggify = BUGGIFY_MARKS
            .into_iter()
            .filter(|(_, on)| cfg.buggify && p.buggify.is_none_or(|k| on(&k)))
            .map(|(name, _)| name);
        // The service's marks: only `kv`'s workload uses sessions.
        let service = service_spec::MARKS.into_iter().filter(|_| self.kv);
        // Membership: with spares, and episodes drawn or asked for; only
        // `kv`'s clients read.
        let changes = cfg.spares > 0 && cfg.faults.is_none_or(|f| f.members > 0);
        let members = MEMBER_MARKS
            .into_iter()
            .filter(move |m| changes && (self.kv || !m.contains("read")));
        MARKS
            .into_iter()
            .chain(buggify)
            .filter(|m| leases || !m.contains("lease"))
            .chain(service)
            .chain(members)
            .collect()
    }
    /// Draws the seed's knobs into the params, unless they are set there.
    fn buggify(&self, cfg: &mut RunConfig, rng: &mut ChaCha8Rng) {
        let p: LogParams = cfg.params().expect("validated");
        if p.buggify.is_none() {
            let leases = p.timing.lease_us > 0;
            if let Some(k) = Knobs::draw(rng, leases, p.snapshot_every, p.scale_one_in) {
                cfg.edit_params(|p: &mut LogParams| p.buggify = Some(k));
            }
        }
    }
    fn buggify_knobs(&self, cfg: &RunConfig) -> Option<String> {
        let p: LogParams = cfg.params().ok()?;
        let names = knobs(cfg, &p).names();
        Some(if !cfg.buggify {
            "off (--no-buggify)".into()
        } else if names.is_empty() {
            "off in this seed".into()
        } else {
            format!("on: {}", names.join(", "))
        })
    }
    fn checks_history(&self) -> bool {
        self.kv
    }
    /// One command per client, each sent to replica `client % nodes` (the
    /// first `ops` only matters to the simulator): a blind write of its own
    /// value to key 0 under `multi`; under `kv`, client 0 reads key 0 and
    /// the others write it, so a read may be served under a lease.
    fn check_requests(&self, cfg: &RunConfig) -> Vec<(u32, NodeId, Req)> {
        (0..cfg.clients as u32)
            .map(|client| {
                let op = if self.kv && client == 0 {
                    Op::Get { key: 0 }
                } else {
                    Op::Put {
                        key: 0,
                        value: (100 + client as u64).into(),
                    }
                };
                let cmd = Command { client, seq: 1, op };
                (client, (client % cfg.nodes as u32) as NodeId, Req(cmd))
            })
            .collect()
    }
    /// Three replicas, one client, and the timer firings a first election
    /// needs (one; `kv`'s replicas boot refusing promises for a lease, so
    /// two clocks must pass it: four).
    fn check_defaults(&self) -> crate::engine::CheckDefaults {
        crate::engine::CheckDefaults {
            nodes: 3,
            clients: 1,
            bounds: crate::nemesis::Bounds {
                timers: if self.kv { 4 } else { 1 },
                ..Default::default()
            },
        }
    }
    /// With a spare machine, the operator's one change: the first spare
    /// replaces the last voter (it joins as a learner, catches up, and one
    /// configuration promotes it and removes the voter).
    fn check_changes(&self, cfg: &RunConfig) -> Vec<MemberChange> {
        match cfg.spares {
            0 => Vec::new(),
            _ => vec![MemberChange::Replace {
                old: 1 << (cfg.nodes - 1),
                new: 1 << cfg.nodes,
            }],
        }
    }
    /// The checker judges P1-P6, K1 and K2 (not K3: leases assume bounded
    /// drift, which the model's free clocks do not keep, and the clients'
    /// history is the simulator's).
    fn explore(
        &'static self,
        cfg: &RunConfig,
        bounds: crate::nemesis::Bounds,
        search: crate::engine::Search,
    ) -> Result<crate::engine::CheckReport, String> {
        Ok(crate::check::explore(self, cfg, bounds, search))
    }
}

#[cfg(test)]
#[path = "log_check_tests.rs"]
mod check_tests;

/// BUGGIFY in the log scenarios: drawn per seed from its own stream, held
/// by the resolved config, off with `buggify: false` and in old configs.
#[cfg(test)]
mod buggify_tests {
    use super::*;
    use crate::repro::Repro;
    use crate::scenario::{plan, run_schedule, run_seed};
    use crate::trace::Keep;

    fn drawn(seed: u64, cfg: &RunConfig) -> Option<Knobs> {
        let p: LogParams = plan(seed, cfg).0.params().unwrap();
        p.buggify
    }

    fn short(scenario: &str) -> RunConfig {
        RunConfig {
            ops: 30,
            ..RunConfig::for_scenario(scenario)
        }
    }

    #[test]
    fn each_seed_draws_its_own_knobs_and_about_half_the_seeds_draw_none() {
        let kv = RunConfig::for_scenario("kv");
        let knobs: Vec<Option<Knobs>> = (0..800).map(|s| drawn(s, &kv)).collect();
        let again: Vec<Option<Knobs>> = (0..800).map(|s| drawn(s, &kv)).collect();
        assert_eq!(knobs, again, "the same seed draws the same knobs");
        // On in half the seeds, and then at least one of seven knobs (each
        // 1/4): 800 * 1/2 * (1 - (3/4)^7) = 346 expected.
        let on: Vec<Knobs> = knobs.iter().flatten().copied().collect();
        assert!((290..=400).contains(&on.len()), "{}", on.len());
        // Each knob: 800 * 1/2 * 1/4 = 100 expected; the scale 1/32: 12.5.
        for (mark, knob) in BUGGIFY_MARKS {
            let n = on.iter().filter(|k| knob(k)).count();
            let expect = if mark.contains("large value") {
                4..=25
            } else {
                60..=140
            };
            assert!(expect.contains(&n), "{mark}: {n}");
        }
        for every in 1..=3 {
            assert!(on.iter().any(|k| k.server.snapshot_every == every));
        }
        // Without leases the lease knob would change nothing: never drawn on.
        let multi = RunConfig::for_scenario("multi");
        let on: Vec<Knobs> = (0..400).filter_map(|s| drawn(s, &multi)).collect();
        assert!(on.len() > 100);
        assert!(on.iter().all(|k| !k.log.short_lease));
        assert!(on.iter().any(|k| k.log.tight_elections));
    }

    #[test]
    fn no_buggify_keeps_every_knob_off_and_knobs_off_leave_the_run_as_it_was() {
        let cfg = short("kv");
        let off = RunConfig {
            buggify: false,
            ..cfg.clone()
        };
        let (mut same, mut changed) = (0, 0);
        for seed in 0..24 {
            assert_eq!(drawn(seed, &off), None);
            let (resolved, _) = plan(seed, &off);
            for c in KV.node_configs(&resolved) {
                assert!(!c.log.buggify.any() && !c.server.buggify.any());
            }
            let with = run_seed(seed, &cfg, Keep::Recent);
            let without = run_seed(seed, &off, Keep::Recent);
            assert!(with.violation.is_none() && without.violation.is_none());
            // Knobs have a stream of their own: a seed that draws none runs
            // exactly as with BUGGIFY off.
            if drawn(seed, &cfg).is_none() {
                assert_eq!(with.trace_hash, without.trace_hash, "seed {seed}");
                same += 1;
            } else if with.trace_hash != without.trace_hash {
                changed += 1;
            }
        }
        assert!(same >= 5 && changed >= 5, "{same} same, {changed} changed");
    }

    #[test]
    fn knobs_set_in_the_params_are_kept_and_no_buggify_overrides_them() {
        let mut cfg = short("multi");
        let k = Knobs {
            log: multipaxos::Buggify {
                window_of_one: true,
                ..multipaxos::Buggify::OFF
            },
            ..Knobs::OFF
        };
        cfg.edit_params(|p: &mut LogParams| p.buggify = Some(k));
        for seed in 0..8 {
            assert_eq!(drawn(seed, &cfg), Some(k));
        }
        assert!(MULTI.node_configs(&cfg)[0].log.buggify.window_of_one);
        let no_lease: Vec<&str> = MARKS.into_iter().filter(|m| !m.contains("lease")).collect();
        // With spares and membership episodes drawn: `multi`'s clients
        // never read.
        let members: Vec<&str> = MEMBER_MARKS
            .into_iter()
            .filter(|m| !m.contains("read"))
            .collect();
        assert_eq!(
            MULTI.required_marks(&cfg),
            [&no_lease[..], &[BUGGIFY_MARKS[0].0], &members[..]].concat(),
            "the marks of the knobs on (and no lease mark)"
        );
        cfg.buggify = false;
        assert!(!MULTI.node_configs(&cfg)[0].log.buggify.any());
        assert_eq!(
            MULTI.required_marks(&cfg),
            [&no_lease[..], &members[..]].concat()
        );
        cfg.spares = 0;
        assert_eq!(MULTI.required_marks(&cfg), no_lease);
        assert_eq!(
            MULTI.buggify_knobs(&cfg).as_deref(),
            Some("off (--no-buggify)")
        );
        // A snapshot knob past the configured interval is refused.
        let mut bad = short("kv");
        bad.edit_params(|p: &mut LogParams| {
            p.buggify = Some(Knobs {
                server: kv::server::Buggify {
                    snapshot_every: 65,
                    withhold_replies: false,
                },
                ..Knobs::OFF
            })
        });
        let e = bad.validate().unwrap_err();
        assert!(e.contains("snapshot_every"), "{e}");
    }

    #[test]
    fn the_header_names_the_seeds_knobs() {
        let kv = RunConfig::for_scenario("kv");
        let line = |seed| KV.buggify_knobs(&plan(seed, &kv).0).unwrap();
        let lines: Vec<String> = (0..40).map(line).collect();
        assert!(lines.iter().any(|l| l == "off in this seed"));
        assert!(lines.iter().any(|l| l.starts_with("on: ")));
        let seed = (0..40).find(|s| drawn(*s, &kv).is_some()).unwrap();
        let k = drawn(seed, &kv).unwrap();
        assert_eq!(line(seed), format!("on: {}", k.names().join(", ")));
    }

    #[test]
    fn a_repro_file_replays_its_knobs_and_one_from_before_buggify_runs_with_none() {
        let cfg = short("kv");
        let seed = (0..40).find(|s| drawn(*s, &cfg).is_some()).unwrap();
        let r = run_seed(seed, &cfg, Keep::Recent);
        let text = serde_json::to_string(&Repro::from_report(&r)).unwrap();
        assert!(text.contains("\"buggify\":{"), "the knobs are in the file");
        let back = Repro::parse(&text).unwrap();
        assert_eq!(back.run(Keep::Recent).unwrap().trace_hash, r.trace_hash);
        // The same file as a build before BUGGIFY wrote it: no knobs in the
        // params, no `buggify` in the config. It loads, and runs knobs off,
        // as it ran then.
        let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
        let config = old["config"].as_object_mut().unwrap();
        config.remove("buggify");
        config["params"].as_object_mut().unwrap().remove("buggify");
        let old = Repro::parse(&old.to_string()).unwrap();
        assert!(old.config.buggify);
        assert!(KV
            .node_configs(&old.config)
            .iter()
            .all(|c| !c.log.buggify.any()));
        let off = RunConfig {
            buggify: false,
            ..r.config.clone()
        };
        let expect = run_schedule(seed, &off, r.schedule.clone(), Keep::Recent);
        assert_eq!(old.run(Keep::Recent).unwrap().trace_hash, expect.trace_hash);
    }

    /// Each knob alone (the batch knob with the window's, which it needs
    /// to matter) reaches its own mark within a few swarm seeds, and no
    /// other knob's.
    #[test]
    fn each_knob_reaches_its_own_mark_and_no_other() {
        for (i, (mark, _)) in BUGGIFY_MARKS.iter().enumerate() {
            let mut k = Knobs::OFF;
            match i {
                0 => k.log.window_of_one = true,
                1 => (k.log.window_of_one, k.log.batch_of_one) = (true, true),
                2 => k.log.tight_elections = true,
                3 => k.log.short_lease = true,
                4 => k.log.catch_up_by_one = true,
                5 => k.server.snapshot_every = 2,
                6 => k.server.withhold_replies = true,
                // Parts: checked with the limits and with the scale.
                9 => continue,
                7 => {
                    k.limits = Some(Limits {
                        slot_bytes: 60,
                        queue_bytes: 40,
                        frame_bytes: 300,
                    })
                }
                _ => {
                    k.scale = Some(Scale {
                        value_bytes: 20_000,
                        keys: 50,
                        clients: 12,
                    })
                }
            }
            let mut cfg = short("kv");
            cfg.edit_params(|p: &mut LogParams| p.buggify = Some(k));
            let mut reached = [0; 10];
            for seed in 0..30 {
                let r = run_seed(seed, &cfg, Keep::Recent);
                assert!(r.violation.is_none(), "{mark} seed {seed}");
                for (j, (m, _)) in BUGGIFY_MARKS.iter().enumerate() {
                    let n = r.coverage.iter().find(|c| c.0 == *m).unwrap().1;
                    reached[j] += (n > 0) as u32;
                }
            }
            for (j, (m, on)) in BUGGIFY_MARKS.iter().enumerate() {
                if on(&k) {
                    assert!(reached[j] > 0, "{m} never reached with {k:?}");
                } else {
                    assert_eq!(reached[j], 0, "{m} reached with {k:?}");
                }
            }
        }
    }

    #[test]
    fn model_checking_runs_with_every_knob_off() {
        // `paxsim check` explores the defaults, which hold no knobs.
        for s in [&KV, &MULTI] {
            for c in s.node_configs(&s.defaults()) {
                assert!(!c.log.buggify.any() && !c.server.buggify.any());
            }
        }
    }
}

/// The adapter's recovery on bytes: a torn tail is truncated, a flipped bit
/// anywhere is corruption, a lost first record is a wipe.
#[cfg(test)]
mod disk_tests {
    use super::*;
    use std::sync::Arc;

    fn cfg() -> ReplicaConfig {
        KV.node_configs(&RunConfig::for_scenario("kv"))[0].clone()
    }

    fn records() -> Vec<Record> {
        let b = Ballot { round: 1, node: 0 };
        let entry = Entry::Cmds(vec![Cmd::Tick { now_us: 5 }].into());
        [
            Write::Init,
            Write::Promise(b),
            Write::Accept {
                slot: 0,
                ballot: b,
                entry: entry.clone(),
            },
            Write::Chosen { slot: 0, entry },
            Write::Snapshot(multipaxos::Snap {
                configs: [(0, multipaxos::Members::first(0b111))].into(),
                ..multipaxos::Snap::new(1, Arc::new(kv::Machine::new()))
            }),
        ]
        .iter()
        .map(Record::of)
        .collect()
    }

    fn boot(disk: &mut Vec<Record>) -> Boot {
        Replica::boot(&cfg(), 1, disk, 0).1
    }

    #[test]
    fn a_first_boot_writes_the_header_and_init() {
        let mut disk = Vec::new();
        assert_eq!(Replica::boot(&cfg(), 0, &mut disk, 0).1, Boot::Recovered);
        assert_eq!(disk, [Record::first(cfg().log.id, &Write::Init)]);
        assert!(disk[0].bytes.starts_with(b"PAXSIMWL"), "the file header");
        assert_eq!(
            storage::replica_of(&disk[0].bytes),
            Some(cfg().log.id),
            "named"
        );
    }

    #[test]
    fn a_write_cut_anywhere_is_dropped_and_the_rest_recovers() {
        let all = records();
        for last in 1..all.len() {
            for cut in 0..all[last].bytes.len() as u32 {
                let mut disk = all[..=last].to_vec();
                disk[last].tear(cut);
                assert_eq!(
                    boot(&mut disk),
                    Boot::Recovered,
                    "record {last} cut at {cut}"
                );
                assert_eq!(disk, all[..last], "record {last} cut at {cut}");
            }
        }
        // The first record (header and Init) cut: the file was never made.
        for cut in 0..all[0].bytes.len() as u32 {
            let mut disk = all[..1].to_vec();
            disk[0].tear(cut);
            assert_eq!(boot(&mut disk), Boot::Rebuilding { corrupt: false });
            assert!(disk.is_empty());
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_is_corruption_and_an_empty_disk_a_wipe() {
        let all = records();
        for i in 0..all.len() {
            for bit in 0..8 * all[i].bytes.len() as u32 {
                let mut disk = all.clone();
                disk[i].flip_bit(bit);
                assert!(!Replica::disk_intact(&disk));
                assert_eq!(
                    boot(&mut disk),
                    Boot::Rebuilding { corrupt: true },
                    "record {i} bit {bit}"
                );
                assert!(disk.is_empty());
            }
        }
        assert!(Replica::disk_intact(&all));
        assert_eq!(boot(&mut Vec::new()), Boot::Rebuilding { corrupt: false });
    }
}

/// Arbitrary peer messages into a replica (what `fuzz/fuzz_targets/peer.rs`
/// fuzzes with libFuzzer), here in every `cargo test`: random bytes under
/// proptest, and the nemesis' own forgeries encoded as `paxkv` frames them.
#[cfg(test)]
mod peer_fuzz_tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_make_a_replica_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            feed_peer_bytes(&data);
        }
    }

    /// Every message `forge` makes, framed and fed through the fuzz entry
    /// point to a follower and to a leader: each decodes, is taken, and
    /// most are refused.
    #[test]
    fn forged_frames_are_taken_and_refused() {
        let three = RunConfig {
            nodes: 3,
            ..RunConfig::for_scenario("kv")
        };
        let node = LogNode::new(KV.node_configs(&three)[0].log);
        let mut rng = ChaCha8Rng::seed_from_u64(19);
        for stage in [0u8, 1] {
            let mut data = vec![stage];
            let mut n = 0;
            while n < 300 {
                let from = rand::Rng::gen_range(&mut rng, 1..3);
                let Some(m) = forge(&node, from, &mut rng) else {
                    continue;
                };
                data.push(from);
                data.extend(postcard::to_stdvec(&m).unwrap());
                n += 1;
            }
            let (taken, refused) = feed_peer_bytes(&data);
            assert_eq!(taken, 300, "stage {stage}");
            assert!(refused >= 200, "stage {stage}: {refused} of 300 refused");
        }
    }
}
