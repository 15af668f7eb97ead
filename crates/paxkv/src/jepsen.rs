//! Jepsen-style tests of real `paxkv` processes on loopback.
//!
//! [`run`] starts a cluster of server processes (free 127.0.0.1 ports, a
//! fresh data directory each), runs concurrent clients for a bounded time
//! while a *nemesis* injects faults, heals everything, waits, and checks
//! what the clients saw:
//!
//! - **Clients** (each its own client id, so its own exactly-once tags and
//!   session) mix get, put, cas and delete on a few keys at a time (a key
//!   retires after [`OPS_PER_KEY`] operations and a fresh one takes its
//!   place, as Jepsen's independent keys do, so that every key's history
//!   stays small enough to check), and sessions with lock acquire/release.
//!   Every value written is unique. Each operation is recorded as an
//!   invocation and an outcome: *ok* (with its result), *fail* (it
//!   definitely did not take effect: the service answered `Stale`), or
//!   *info* (indeterminate: no answer within the timeout; it may or may not
//!   have executed). A compare-and-set that found another version is an ok
//!   operation for the checker (its answer says what the version was) and is
//!   counted as `fail` in the summary, as Jepsen counts it.
//! - **The nemesis** follows a schedule drawn from the seed (same seed, same
//!   sequence of faults, targets, durations and gaps), one fault at a time,
//!   each healed before the next: `kill -9` a random minority, then restart
//!   it; `kill -9` the leader (asked from the replicas), then restart it;
//!   SIGSTOP a node or the leader for longer than the lease and the
//!   election timeout, then SIGCONT; stop a node, flip one bit of its WAL
//!   (anywhere: header, frame, payload) or truncate it to less than a
//!   header, restart it and wait until it has rebuilt from its peers; cut a
//!   node or the leader off from its peers (clients still reach it), then
//!   heal; cut the power to a minority, the leader or everyone (on
//!   `forgetfs`). And the hostile and careless hands of issue 22: a stray
//!   process at a peer address (plain TCP, garbage, another CA's
//!   certificate, another replica's key claiming a third's id, each followed
//!   by forged Accepts: every one refused, and a welcome is a violation);
//!   another replica's WAL copied over a stopped node's (it must refuse to
//!   start); a WAL cut mid-file while another replica is down (it must
//!   rebuild, not forget); 200 connections that say hello and then nothing;
//!   400 more clients writing 32 KiB values while the servers' memory is
//!   sampled. And membership changes (issue 23), through the operator's
//!   commands: a machine dies for good and a fresh process with an empty
//!   data directory replaces it under a new id (`member replace`, `server
//!   --join`); the leader is removed and stopped for good, and a fresh
//!   process added; a fresh process is added and another member removed.
//!   Each must be in force within 30 s, or it is a violation. Every change
//!   takes an id never used, so a run makes at most 16 minus the nodes;
//!   later ones are skipped and the nemesis log says so. Faults aimed at
//!   "a node" hit the members of the moment. Partitions need no privileges: replicas reach each other
//!   through one proxy per directed link in the harness ([`Links`]), which
//!   drops a cut link's connections and holds new ones unanswered. Every
//!   fourth client times out after [`SHORT_TIMEOUT_MS`], so operations of
//!   unknown outcome happen in every run with faults.
//! - **Checks**, after healing and a quiet period: every key ever written is
//!   read once more; the whole history, final reads included, must be
//!   linearizable (`crates/linearizability`, per key; a key whose search
//!   runs out of budget is reported as *undecided*, never as a pass); no
//!   acknowledged write is lost (a final read shows a value no later than
//!   every acknowledged write); fencing tokens handed out grow with real
//!   time, and one token goes to one client; no server process died on its
//!   own, none logged a panic, and the cluster answers after the heal.
//!
//! Every process [`run`] starts is killed when it returns, fails or panics
//! (the cluster's `Drop`), and when its future is dropped (Ctrl-C in the
//! `paxkv jepsen` command).

use crate::wire::{self, Hello, Response, Welcome};
use crate::Client;

#[path = "jepsen_hostile.rs"]
mod hostile;
use futures_util::{SinkExt, StreamExt};
pub use hostile::{forged_accept, rss_kb};
use kv::{Command, LockError, Op, Reply, Value};
use linearizability::{History, KvOp, KvRet, Operation, Outcome, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// The service's key-value model: values are bytes, compared as bytes.
type KvModel = linearizability::KvModel<Value>;

/// Operations on one key before it retires for a fresh one.
pub const OPS_PER_KEY: u64 = 120;
/// Keys in use at any time.
const ACTIVE_KEYS: u64 = 6;
/// How long an fsync takes on `forgetfs` by default: a disk's, not RAM's.
pub const FSYNC_DELAY_MS: u64 = 2;
/// What a server logs when it initializes an empty data directory.
const NEW_REPLICA: &str = "a new replica: initializing";
/// Locks the clients contend for.
const LOCKS: u64 = 2;
/// Every fourth client's timeout by default: a healthy cluster answers in
/// a few milliseconds, a failover takes about a second.
pub const SHORT_TIMEOUT_MS: u64 = 100;
/// Search steps per key by default. With operations of unknown outcome in
/// every run, a key can need more than a few million: the first long form
/// with them (5 nodes, 600 s) left one of 10,037 keys undecided at 2
/// million steps, linearizable at about 0.5 s of search.
pub const LIN_BUDGET: u64 = 100_000_000;
/// Connections of the silent-clients fault.
const SILENT: usize = 200;
/// Clients of the crowd fault.
const CROWD: usize = 400;
/// The client id of the final reads.
const FINAL_READER: u32 = 999_999;
/// The client id of the membership nemesis's operator.
const OPERATOR: u32 = 999_997;
/// How long a membership change may take to be proposed and take effect.
const CHANGE_WITHIN: Duration = Duration::from_secs(30);

/// One kind of fault the nemesis injects.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// `kill -9` a random minority, restart it after a while.
    KillMinority,
    /// `kill -9` the leader, restart it after a while.
    KillLeader,
    /// SIGSTOP a random node for longer than the lease, then SIGCONT.
    PauseNode,
    /// SIGSTOP the leader for longer than the lease, then SIGCONT.
    PauseLeader,
    /// Stop a node, flip one bit of its WAL, restart it.
    FlipBit,
    /// Stop a node, truncate its WAL to less than a header, restart it.
    Truncate,
    /// Cut a random node off from its peers (clients still reach it), then
    /// heal.
    IsolateNode,
    /// Cut the leader off from its peers, then heal.
    IsolateLeader,
    /// Cut the power to a random minority: `kill -9`, and what its
    /// filesystem did not make durable is gone (see `forgetfs`); restart.
    PowerCutMinority,
    /// Cut the power to the leader, restart it.
    PowerCutLeader,
    /// Cut the power to every replica at once (a data centre's outage),
    /// restart them all.
    PowerCutAll,
    /// A stray process at a node's peer address: plain TCP, garbage, a
    /// certificate of another CA, another replica's key claiming a third's
    /// id, each followed by forged Accepts. All refused, to no effect.
    StrayPeer,
    /// Stop a node, copy another replica's WAL over its own, start it: it
    /// must refuse to start; the harness puts its own WAL back.
    CopyWal,
    /// Stop a node and another, cut the first's WAL in the middle (after it
    /// was synced), restart it, and the other after a while: the first
    /// rebuilds from a majority of the others instead of forgetting votes.
    TruncateMid,
    /// 200 client connections to a node that say hello and then nothing.
    SilentClients,
    /// 400 more clients writing 32 KiB values, memory sampled.
    Crowd,
    /// A node's machine dies for good (`kill -9`, its data directory
    /// deleted); an operator replaces it by a fresh process under a new id
    /// with an empty data directory (`member replace`, `server --join`),
    /// which catches up and takes its place.
    ReplaceNode,
    /// Remove the leader from the membership (it steps down), stop it for
    /// good, then add a fresh process in its place.
    RemoveLeader,
    /// Add a fresh process (it catches up and is promoted), then remove
    /// another member for good.
    AddNode,
}

impl FaultKind {
    pub const ALL: [FaultKind; 19] = [
        FaultKind::KillMinority,
        FaultKind::KillLeader,
        FaultKind::PauseNode,
        FaultKind::PauseLeader,
        FaultKind::FlipBit,
        FaultKind::Truncate,
        FaultKind::IsolateNode,
        FaultKind::IsolateLeader,
        FaultKind::PowerCutMinority,
        FaultKind::PowerCutLeader,
        FaultKind::PowerCutAll,
        FaultKind::StrayPeer,
        FaultKind::CopyWal,
        FaultKind::TruncateMid,
        FaultKind::SilentClients,
        FaultKind::Crowd,
        FaultKind::ReplaceNode,
        FaultKind::RemoveLeader,
        FaultKind::AddNode,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillMinority => "kill-minority",
            FaultKind::KillLeader => "kill-leader",
            FaultKind::PauseNode => "pause-node",
            FaultKind::PauseLeader => "pause-leader",
            FaultKind::FlipBit => "flip-bit",
            FaultKind::Truncate => "truncate",
            FaultKind::IsolateNode => "isolate-node",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::PowerCutMinority => "power-cut-minority",
            FaultKind::PowerCutLeader => "power-cut-leader",
            FaultKind::PowerCutAll => "power-cut-all",
            FaultKind::StrayPeer => "stray-peer",
            FaultKind::CopyWal => "copy-wal",
            FaultKind::TruncateMid => "truncate-mid",
            FaultKind::SilentClients => "silent-clients",
            FaultKind::Crowd => "crowd",
            FaultKind::ReplaceNode => "replace-node",
            FaultKind::RemoveLeader => "remove-leader",
            FaultKind::AddNode => "add-node",
        }
    }

    /// A membership change: each takes a fresh machine (ids are never
    /// reused), so the run keeps spare machines ready.
    pub fn changes_membership(self) -> bool {
        matches!(
            self,
            FaultKind::ReplaceNode | FaultKind::RemoveLeader | FaultKind::AddNode
        )
    }

    /// A power cut: the replicas' data directories must live on `forgetfs`.
    pub fn cuts_power(self) -> bool {
        matches!(
            self,
            FaultKind::PowerCutMinority | FaultKind::PowerCutLeader | FaultKind::PowerCutAll
        )
    }

    /// Aimed at whoever leads.
    fn at_leader(self) -> bool {
        matches!(
            self,
            FaultKind::KillLeader
                | FaultKind::PauseLeader
                | FaultKind::IsolateLeader
                | FaultKind::PowerCutLeader
                | FaultKind::RemoveLeader
        )
    }

    pub fn parse(s: &str) -> Result<FaultKind, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault {s:?}; known: {}", names.join(", "))
            })
    }
}

/// A run's parameters.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `paxkv` binary the servers run.
    pub exe: PathBuf,
    pub nodes: usize,
    /// How long the clients run (the nemesis acts within it).
    pub duration: Duration,
    pub clients: usize,
    pub seed: u64,
    /// `--bug` names passed to every server.
    pub bugs: Vec<String>,
    /// The fault kinds the nemesis draws from (empty: none).
    pub faults: Vec<FaultKind>,
    /// Where the data directories and logs go (default: a temporary
    /// directory, removed if the run passes).
    pub dir: Option<PathBuf>,
    /// A client gives up on an operation (info) after this long.
    pub op_timeout: Duration,
    /// Every fourth client gives up after this long instead (zero: none
    /// does), so that operations of unknown outcome, the checker's hardest
    /// case, happen in every run with faults.
    pub short_timeout: Duration,
    /// Search steps per key for the linearizability checker.
    pub lin_budget: u64,
    /// Print each fault as it happens.
    pub verbose: bool,
    /// The `forgetfs` binary (default: beside `exe`), mounted under every
    /// replica's data directory when a power-cut fault is drawn.
    pub forgetfs: PathBuf,
    /// How long an fsync takes on `forgetfs` (a real disk's milliseconds).
    pub fsync_delay: Duration,
    /// How to rerun this configuration (printed on failure); `{seed}` is
    /// replaced by the seed.
    pub rerun: String,
}

impl Config {
    pub fn new(exe: PathBuf, nodes: usize, duration: Duration, seed: u64) -> Config {
        Config {
            nodes,
            duration,
            clients: 8,
            seed,
            bugs: Vec::new(),
            faults: FaultKind::ALL.to_vec(),
            dir: None,
            op_timeout: Duration::from_secs(4),
            short_timeout: Duration::from_millis(SHORT_TIMEOUT_MS),
            lin_budget: LIN_BUDGET,
            verbose: true,
            forgetfs: exe.with_file_name("forgetfs"),
            fsync_delay: Duration::from_millis(FSYNC_DELAY_MS),
            exe,
            rerun: String::new(),
        }
    }

    /// The command that reruns this configuration.
    pub fn rerun_command(&self) -> String {
        if !self.rerun.is_empty() {
            return self.rerun.replace("{seed}", &self.seed.to_string());
        }
        let mut s = format!(
            "cargo run --release -p paxkv -- jepsen --nodes {} --duration {} --clients {} --seed {}",
            self.nodes,
            self.duration.as_secs(),
            self.clients,
            self.seed
        );
        if self.faults != FaultKind::ALL {
            let f: Vec<_> = self.faults.iter().map(|k| k.name()).collect();
            let _ = write!(s, " --faults {}", f.join(","));
        }
        for b in &self.bugs {
            let _ = write!(s, " --bug {b}");
        }
        if self.short_timeout != Duration::from_millis(SHORT_TIMEOUT_MS) {
            let _ = write!(s, " --short-timeout-ms {}", self.short_timeout.as_millis());
        }
        if self.fsync_delay != Duration::from_millis(FSYNC_DELAY_MS) {
            let _ = write!(s, " --fsync-delay-ms {}", self.fsync_delay.as_millis());
        }
        s
    }
}

/// One step of the nemesis's schedule (everything drawn from the seed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// How long after the previous step healed this one starts.
    pub gap: Duration,
    pub kind: FaultKind,
    /// The nodes a random fault hits (a leader fault asks who leads, and
    /// falls back to these if no one answers).
    pub targets: Vec<usize>,
    /// How long the fault lasts before it is healed.
    pub hold: Duration,
    /// Where a flipped bit lands, as a fraction of the file (per million),
    /// and which bit; the length a truncation leaves.
    pub position: u32,
    pub bit: u8,
}

/// The nemesis's schedule for `seed`: faults (from `kinds`) one after
/// another, each healed before the next, enough for `duration`.
pub fn schedule(seed: u64, nodes: usize, kinds: &[FaultKind], duration: Duration) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut steps = Vec::new();
    if kinds.is_empty() {
        return steps;
    }
    let minority = (nodes - 1) / 2;
    let mut t = Duration::ZERO;
    while t < duration {
        let kind = kinds[rng.gen_range(0..kinds.len())];
        let gap = Duration::from_millis(rng.gen_range(1_000..3_000));
        let hold = match kind {
            // Longer than the lease (400 ms) and the election timeout
            // (500-1000 ms): the others elect a new leader meanwhile.
            FaultKind::PauseNode
            | FaultKind::PauseLeader
            | FaultKind::IsolateNode
            | FaultKind::IsolateLeader => rng.gen_range(1_200..3_000),
            _ => rng.gen_range(500..3_000),
        };
        let hold = Duration::from_millis(hold);
        let size = match kind {
            FaultKind::KillMinority | FaultKind::PowerCutMinority => {
                rng.gen_range(1..=minority.max(1))
            }
            FaultKind::PowerCutAll => nodes,
            // The node whose WAL is cut, and another one down meanwhile.
            FaultKind::TruncateMid => nodes.min(2),
            // Whose WAL is copied in, and whose is overwritten.
            FaultKind::CopyWal => nodes.min(2),
            _ => 1,
        };
        let mut all: Vec<usize> = (0..nodes).collect();
        let mut targets = Vec::new();
        for _ in 0..size {
            targets.push(all.swap_remove(rng.gen_range(0..all.len())));
        }
        // Order matters to the two-node faults (the first is the one whose
        // WAL is cut or overwritten); the rest hit them as a set.
        if !matches!(kind, FaultKind::TruncateMid | FaultKind::CopyWal) {
            targets.sort();
        }
        steps.push(Step {
            gap,
            kind,
            targets,
            hold,
            position: rng.gen_range(0..1_000_000),
            bit: rng.gen_range(0..8),
        });
        t += gap + hold;
    }
    steps
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub seed: u64,
    pub rerun: String,
    /// By operation kind: (ok, fail, info).
    pub ops: BTreeMap<&'static str, (u64, u64, u64)>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Keys checked, linearizable, undecided (budget exhausted).
    pub keys: (usize, usize, usize),
    /// Every violation found (empty: none).
    pub violations: Vec<String>,
    /// Fault kinds asked for that could not run here, and why.
    pub skipped: Vec<String>,
    /// Where the logs, the history and the nemesis's log are (kept unless
    /// the run passed).
    pub dir: PathBuf,
    pub elapsed: Duration,
}

impl Summary {
    /// No violation and every key decided.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.keys.2 == 0
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let total = self
            .ops
            .values()
            .fold((0, 0, 0), |a, v| (a.0 + v.0, a.1 + v.1, a.2 + v.2));
        let _ = writeln!(
            s,
            "paxkv jepsen: seed {}, {:.1} s: {} ops ({} ok, {} fail, {} info)",
            self.seed,
            self.elapsed.as_secs_f64(),
            total.0 + total.1 + total.2,
            total.0,
            total.1,
            total.2
        );
        for (k, (ok, fail, info)) in &self.ops {
            let _ = writeln!(s, "  {k:<10} ok {ok:>6}  fail {fail:>5}  info {info:>4}");
        }
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "  faults: {}",
            if faults.is_empty() {
                "none".into()
            } else {
                faults.join(", ")
            }
        );
        for why in &self.skipped {
            let _ = writeln!(s, "  SKIPPED: {why}");
        }
        let _ = writeln!(
            s,
            "  linearizability: {} keys, {} linearizable, {} undecided (search budget exhausted)",
            self.keys.0, self.keys.1, self.keys.2
        );
        if self.passed() {
            let _ = writeln!(
                s,
                "PASS: linearizable, no acknowledged write lost, fencing tokens monotone, no server crashed"
            );
        } else {
            for v in &self.violations {
                let _ = writeln!(s, "VIOLATION: {v}");
            }
            if self.violations.is_empty() {
                let _ = writeln!(
                    s,
                    "UNDECIDED: no violation found, but {} keys could not be checked within the budget: not a pass",
                    self.keys.2
                );
            }
            let _ = writeln!(s, "logs, history and nemesis log: {}", self.dir.display());
            let _ = writeln!(s, "seed {}; rerun: {}", self.seed, self.rerun);
        }
        s
    }
}

/// `n` loopback ports, bound. They are drawn below the kernel's ephemeral
/// range, so that no outgoing connection takes a server's port while the
/// server is down (a restart would then fail with "address in use").
pub fn bind_ports(n: usize) -> Vec<TcpListener> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768)
        .max(11_000);
    let mut rng = StdRng::from_entropy();
    let mut held = Vec::new();
    while held.len() < n {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", rng.gen_range(10_000..low))) {
            held.push(l);
        }
    }
    held
}

/// The server processes. Dropping it kills every one still running (a
/// paused one too: SIGKILL ends a stopped process).
struct Cluster {
    exe: PathBuf,
    dir: PathBuf,
    /// The first configuration's replicas: machines `0..nodes`. The others
    /// are spares the membership nemesis adds (then `--join`).
    nodes: usize,
    /// The machines in the membership now (voters or learners), in order:
    /// what a fault's drawn targets name (the k-th member).
    members: Vec<usize>,
    /// Machines that left for good (never started again).
    retired: Vec<bool>,
    /// The next spare machine (an id never used).
    next: usize,
    /// Where each replica serves clients.
    endpoints: Vec<SocketAddr>,
    /// Where each replica listens for its peers (they dial it through the
    /// proxies of `links`).
    peers: Vec<SocketAddr>,
    /// The run's throwaway CA and the replicas' certificates (peer TLS).
    tls: crate::tls::Generated,
    /// Another CA's certificates for the same replica names: a stray's.
    stray_ca: crate::tls::Generated,
    /// The links between replicas, through the harness's proxies.
    links: Arc<Links>,
    cluster: u64,
    bugs: Vec<String>,
    procs: Vec<Option<Child>>,
    /// Each replica's own `forgetfs` (a power cut is per machine), when the
    /// run cuts power; the data directory is a subdirectory of it.
    mounts: Vec<forgetfs::Mount>,
    paused: Vec<bool>,
    /// Processes that exited without the nemesis killing them.
    crashed: Vec<String>,
}

impl Cluster {
    /// Starts the proxies, and mounts a `forgetfs` per replica if
    /// `forget`. `Err`: a mount failed.
    fn new(cfg: &Config, dir: PathBuf, forget: bool) -> Result<Cluster, String> {
        // Each membership change takes a machine never used (ids are never
        // reused): every id there is, when the nemesis changes membership.
        let n = match cfg.faults.iter().any(|k| k.changes_membership()) {
            true => multipaxos::MAX_NODES.max(cfg.nodes),
            false => cfg.nodes,
        };
        let mut mounts = Vec::new();
        for i in 0..n {
            let machine = dir.join(format!("n{i}"));
            match forget {
                true => mounts.push(forgetfs::Mount::start(
                    &cfg.forgetfs,
                    &machine,
                    cfg.fsync_delay,
                )?),
                false => std::fs::create_dir_all(&machine)
                    .map_err(|e| format!("{}: {e}", machine.display()))?,
            }
        }
        let cluster = 0x7e57;
        let tls = crate::tls::generate(&dir.join("tls"), cluster, n as u8, &[])?;
        let stray_ca = crate::tls::generate(&dir.join("stray-ca"), cluster, n as u8, &[])?;
        let mut ports = bind_ports(n * n + n);
        let proxies = ports.split_off(2 * n);
        let addrs: Vec<SocketAddr> = ports
            .iter()
            .map(|l| l.local_addr().expect("addr"))
            .collect();
        let (endpoints, peers) = (addrs[..n].to_vec(), addrs[n..].to_vec());
        // The servers' ports are free again once the proxies hold theirs.
        let links = Links::start(&peers, proxies);
        drop(ports);
        Ok(Cluster {
            exe: cfg.exe.clone(),
            dir,
            nodes: cfg.nodes,
            members: (0..cfg.nodes).collect(),
            retired: vec![false; n],
            next: cfg.nodes,
            links,
            endpoints,
            peers,
            tls,
            stray_ca,
            cluster,
            bugs: cfg.bugs.clone(),
            procs: (0..n).map(|_| None).collect(),
            mounts,
            paused: vec![false; n],
            crashed: Vec::new(),
        })
    }

    fn n(&self) -> usize {
        self.peers.len()
    }

    /// Replica i's data directory: on its `forgetfs`, a directory the
    /// server creates itself (and must make durable).
    fn data(&self, i: usize) -> PathBuf {
        match self.mounts.is_empty() {
            true => self.dir.join(format!("n{i}")),
            false => self.dir.join(format!("n{i}")).join("data"),
        }
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}.log"))
    }

    fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(self.log(i)).unwrap_or_default()
    }

    fn start(&mut self, i: usize) {
        assert!(self.procs[i].is_none(), "n{i} is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .expect("open a server log");
        // Replica i reaches replica j through the proxy of link i -> j.
        let peers: Vec<String> = (0..self.nodes)
            .map(|j| match j == i {
                true => self.peers[i].to_string(),
                false => self.links.proxy[i][j].to_string(),
            })
            .collect();
        let endpoints: Vec<String> = self.endpoints.iter().map(|a| a.to_string()).collect();
        let files = &self.tls.replicas[i];
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.args(["server", "--id", &i.to_string()]);
        match i < self.nodes {
            true => cmd.args([
                "--peers",
                &peers.join(","),
                "--endpoints",
                &endpoints.join(","),
            ]),
            // A machine added later asks the members for the cluster (a
            // restart reads its data directory instead).
            false => {
                let members: Vec<String> = self
                    .members
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| self.endpoints[j].to_string())
                    .collect();
                cmd.args(["--join", &members.join(",")])
            }
        };
        // Every other machine, the added ones too, through the proxies.
        for j in (0..self.n()).filter(|&j| j != i) {
            cmd.args(["--peer-route", &format!("{j}={}", self.links.proxy[i][j])]);
        }
        cmd.args(["--cluster-id", &self.cluster.to_string()])
            .arg("--peer-cert-file")
            .arg(&files.cert)
            .arg("--peer-key-file")
            .arg(&files.key)
            .arg("--peer-trusted-ca-file")
            .arg(&files.ca)
            .arg("--data-dir")
            .arg(self.data(i))
            // Snapshots and WAL compactions happen within a short run.
            .args(["--snapshot-every", "200", "--compact-bytes", "262144"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for b in &self.bugs {
            cmd.args(["--bug", b]);
        }
        self.procs[i] = Some(cmd.spawn().expect("start a paxkv server"));
        self.paused[i] = false;
    }

    fn pid(&self, i: usize) -> Option<u32> {
        self.procs[i].as_ref().map(|c| c.id())
    }

    /// SIGKILL.
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused[i] = false;
    }

    /// Cuts the power to `targets` at once: their filesystems forget what
    /// was not made durable (an fsync in flight included) and go dark,
    /// then `kill -9`; the power is back for the restart.
    fn power_cut(&mut self, targets: &[usize]) {
        let off: Vec<_> = targets
            .iter()
            .map(|&i| self.mounts[i].power_off())
            .collect();
        for &i in targets {
            self.kill(i);
        }
        for (&i, off) in targets.iter().zip(off) {
            if let Err(e) = off.and_then(|_| self.mounts[i].power_on()) {
                self.crashed
                    .push(format!("n{i}'s forgetfs refused a power cut: {e}"));
            }
        }
    }

    fn signal(&mut self, i: usize, sig: &str) {
        if let Some(pid) = self.pid(i) {
            let ok = std::process::Command::new("kill")
                .args(["-s", sig, &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                self.paused[i] = sig == "STOP";
            }
        }
    }

    /// Waits up to `t` for replica `i`'s process to exit by itself, and
    /// takes it (so that `reap` does not count it as a crash).
    async fn await_exit(&mut self, i: usize, t: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + t;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.procs[i].as_mut().map(|c| c.try_wait()) {
                self.procs[i] = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Waits up to 30 s until replica `i`'s log, past its first `from`
    /// bytes, says one of `phrases`: what it said since, or `None` (it did
    /// not, or its process exited; `reap` notes that, with `start` the
    /// run's).
    async fn await_said(
        &mut self,
        i: usize,
        from: usize,
        phrases: &[&str],
        start: Instant,
    ) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log_text(i);
            let said = log.get(from..).unwrap_or("");
            if phrases.iter().any(|p| said.contains(p)) {
                return Some(said.to_string());
            }
            self.reap(start.elapsed());
            if Instant::now() > deadline || self.procs[i].is_none() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn running(&self, i: usize) -> bool {
        self.procs[i].is_some() && !self.paused[i]
    }

    /// Notes every process that exited on its own since the last look.
    fn reap(&mut self, at: Duration) {
        for i in 0..self.n() {
            if let Some(c) = self.procs[i].as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.crashed.push(format!(
                        "n{i} exited on its own ({status}) at {:.1} s",
                        at.as_secs_f64()
                    ));
                    self.procs[i] = None;
                    self.paused[i] = false;
                }
            }
        }
    }

    /// Continues the paused, starts the stopped, reconnects the isolated:
    /// every member runs.
    fn heal(&mut self) {
        for i in 0..self.n() {
            self.links.isolate(i, false);
            if self.paused[i] {
                self.signal(i, "CONT");
            }
            if self.procs[i].is_none() && self.members.contains(&i) {
                self.start(i);
            }
        }
    }

    /// The k-th member now (a drawn target).
    fn member(&self, k: usize) -> usize {
        self.members[k % self.members.len()]
    }

    /// A machine never used, if one is left.
    fn spare(&mut self) -> Option<usize> {
        (self.next < self.n()).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// Machine `i` left the membership for good: stopped, never restarted.
    fn retire(&mut self, i: usize) {
        self.kill(i);
        self.retired[i] = true;
        self.members.retain(|&j| j != i);
    }

    /// Where machine `i` is reached, for the address book.
    fn addrs(&self, i: usize) -> kv::Addrs {
        kv::Addrs {
            peer: self.peers[i].to_string(),
            client: self.endpoints[i].to_string(),
        }
    }

    /// A client for the operator's membership requests.
    fn operator(&self) -> Client {
        Client::new(self.endpoints.clone(), OPERATOR)
            .cluster(self.cluster)
            .timeout(Duration::from_secs(3))
    }

    fn tail(&self, i: usize, lines: usize) -> String {
        let text = self.log_text(i);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.procs.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Unmounted only now that no server holds a file on them.
        self.mounts.clear();
        if std::thread::panicking() {
            for i in 0..self.n() {
                eprintln!("---- n{i}'s log (last 40 lines) ----\n{}", self.tail(i, 40));
            }
            eprintln!("paxkv jepsen: files kept in {}", self.dir.display());
        }
    }
}

/// The network between replicas: one TCP proxy per directed link (replica
/// i dials replica j at `proxy[i][j]`, which forwards to j's port), so the
/// harness can cut links on loopback without privileges: a cut link's
/// connections are dropped and new ones are held unanswered until it heals,
/// as a partition looks to the replicas. Clients connect directly.
struct Links {
    proxy: Vec<Vec<SocketAddr>>,
    blocked: Mutex<Vec<Vec<bool>>>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Links {
    /// `ports`: n * (n - 1) bound listeners for the proxies.
    fn start(peers: &[SocketAddr], mut ports: Vec<TcpListener>) -> Arc<Links> {
        let n = peers.len();
        let mut listeners = Vec::new();
        let mut proxy = vec![vec![([127, 0, 0, 1], 0).into(); n]; n];
        for (i, row) in proxy.iter_mut().enumerate() {
            for (j, addr) in row.iter_mut().enumerate() {
                if i != j {
                    let l = ports.pop().expect("a port per link");
                    *addr = l.local_addr().expect("addr");
                    listeners.push((i, j, l));
                }
            }
        }
        let links = Arc::new(Links {
            proxy,
            blocked: Mutex::new(vec![vec![false; n]; n]),
            changed: tokio::sync::watch::channel(0).0,
        });
        for (i, j, l) in listeners {
            l.set_nonblocking(true).expect("nonblocking");
            let l = tokio::net::TcpListener::from_std(l).expect("a tokio listener");
            tokio::spawn(links.clone().serve(i, j, l, peers[j]));
        }
        links
    }

    fn is_blocked(&self, i: usize, j: usize) -> bool {
        self.blocked.lock().unwrap()[i][j]
    }

    /// Cuts (or heals) every link between `node` and the others.
    fn isolate(&self, node: usize, cut: bool) {
        {
            let mut b = self.blocked.lock().unwrap();
            for k in 0..b.len() {
                if k != node {
                    b[node][k] = cut;
                    b[k][node] = cut;
                }
            }
        }
        self.changed.send_modify(|g| *g += 1);
    }

    async fn serve(
        self: Arc<Links>,
        i: usize,
        j: usize,
        l: tokio::net::TcpListener,
        to: SocketAddr,
    ) {
        while let Ok((mut inbound, _)) = l.accept().await {
            let links = self.clone();
            tokio::spawn(async move {
                let mut changed = links.changed.subscribe();
                // Held unanswered while the link is cut.
                while links.is_blocked(i, j) {
                    if changed.changed().await.is_err() {
                        return;
                    }
                }
                let Ok(mut outbound) = TcpStream::connect(to).await else {
                    return;
                };
                let _ = outbound.set_nodelay(true);
                let _ = inbound.set_nodelay(true);
                let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                tokio::pin!(copy);
                loop {
                    tokio::select! {
                        _ = &mut copy => return,
                        r = changed.changed() => {
                            if r.is_err() || links.is_blocked(i, j) {
                                return;
                            }
                        }
                    }
                }
            });
        }
    }
}

/// Asks replica `addr` who leads: Some(itself) if it answers a read,
/// Some(l) if it redirects to `l`.
async fn ask_leader(addr: SocketAddr, id: u8, cluster: u64) -> Option<u8> {
    static PROBE: AtomicU32 = AtomicU32::new(0);
    let client = 0xF000_0000 + PROBE.fetch_add(1, Ordering::Relaxed);
    let t = Duration::from_millis(400);
    let s = tokio::time::timeout(t, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let mut f = Framed::new(s, wire::codec(wire::CLIENT_FRAME_MAX));
    let hello = Hello::Client {
        protocol: wire::PROTOCOL,
        cluster: Some(cluster),
    };
    f.send(wire::encode(&hello)).await.ok()?;
    let w = tokio::time::timeout(t, f.next()).await.ok()??.ok()?;
    if !matches!(wire::decode::<Welcome>(&w).ok()?, Welcome::Ok { .. }) {
        return None;
    }
    let cmd = Command {
        client,
        seq: 1,
        op: Op::Get { key: u64::MAX },
    };
    f.send(wire::encode(&cmd)).await.ok()?;
    let r = tokio::time::timeout(t, f.next()).await.ok()??.ok()?;
    match wire::decode::<Response>(&r).ok()? {
        Response::Reply { .. } => Some(id),
        Response::Redirect { leader, .. } => leader,
        Response::Error(_) | Response::Admin { .. } => None,
    }
}

/// Who the running replicas say leads (the one answering reads itself, or
/// the one most of them name).
async fn find_leader(c: &Cluster) -> Option<usize> {
    let mut named: BTreeMap<u8, usize> = BTreeMap::new();
    for i in c.members.clone() {
        if !c.running(i) {
            continue;
        }
        match ask_leader(c.endpoints[i], i as u8, c.cluster).await {
            Some(l) if l as usize == i => return Some(i),
            Some(l) => *named.entry(l).or_default() += 1,
            None => {}
        }
    }
    named
        .into_iter()
        .max_by_key(|(_, votes)| *votes)
        .map(|(l, _)| l as usize)
        .filter(|&l| c.running(l))
}

/// A lock grant: client `client` got `token` for `lock` between `call` and `ret`.
#[derive(Clone, Debug)]
struct Grant {
    client: u32,
    lock: u64,
    token: u64,
    call: u64,
    ret: u64,
}

/// What the clients record.
#[derive(Default)]
struct Recorder {
    history: History<KvModel>,
    grants: Vec<Grant>,
    ops: BTreeMap<&'static str, (u64, u64, u64)>,
    /// Answers of a kind the operation never returns.
    odd: Vec<String>,
}

#[derive(Copy, Clone)]
enum End {
    Ok,
    Fail,
    Info,
}

impl Recorder {
    fn count(&mut self, kind: &'static str, end: End) {
        let e = self.ops.entry(kind).or_default();
        match end {
            End::Ok => e.0 += 1,
            End::Fail => e.1 += 1,
            End::Info => e.2 += 1,
        }
    }
}

struct Shared {
    start: Instant,
    rec: Mutex<Recorder>,
    next_value: AtomicU64,
    key_ops: Vec<AtomicU64>,
    stop: AtomicBool,
}

impl Shared {
    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// A key to use: one of the active slots, each retiring its key after
    /// [`OPS_PER_KEY`] operations.
    fn key(&self, rng: &mut StdRng) -> u64 {
        let slot = rng.gen_range(0..ACTIVE_KEYS);
        let n = self.key_ops[slot as usize].fetch_add(1, Ordering::Relaxed);
        key_of(slot, n)
    }

    /// The key active slot `slot` holds now.
    fn active_key(&self, slot: u64) -> u64 {
        key_of(slot, self.key_ops[slot as usize].load(Ordering::Relaxed))
    }
}

/// The key of active slot `slot` once `n` operations were drawn on it.
fn key_of(slot: u64, n: u64) -> u64 {
    (n / OPS_PER_KEY) * ACTIVE_KEYS + slot
}

/// One client: operations until told to stop.
async fn client_loop(sh: Arc<Shared>, mut c: Client, seed: u64) {
    let id = c.id();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut versions: BTreeMap<u64, u64> = BTreeMap::new();
    let mut session = false;
    let mut held: Option<(u64, u64)> = None;
    while !sh.stop.load(Ordering::Relaxed) {
        let roll = rng.gen_range(0..100);
        if roll >= 92 {
            lock_op(&sh, &mut c, &mut rng, &mut session, &mut held).await;
            continue;
        }
        let key = sh.key(&mut rng);
        // Unique values, as their decimal digits (readable in history.json).
        let value = Value::from(sh.next_value.fetch_add(1, Ordering::Relaxed));
        let (kind, op) = match roll {
            0..=39 => ("get", KvOp::Get),
            40..=64 => ("put", KvOp::Put(value)),
            65..=87 => {
                let expected = match versions.get(&key) {
                    Some(&v) if rng.gen_bool(0.8) => v,
                    _ => rng.gen_range(0..3),
                };
                ("cas", KvOp::Cas { expected, value })
            }
            _ => ("delete", KvOp::Delete),
        };
        let call = sh.now();
        let h = sh
            .rec
            .lock()
            .unwrap()
            .history
            .invoke(id, key, op.clone(), call);
        let r = match op {
            KvOp::Get => c.call(Op::Get { key }).await,
            KvOp::Put(value) => c.call(Op::Put { key, value }).await,
            KvOp::Delete => c.call(Op::Delete { key }).await,
            KvOp::Cas { expected, value } => {
                c.call(Op::Cas {
                    key,
                    expected,
                    value,
                })
                .await
            }
        };
        let at = sh.now();
        let mut rec = sh.rec.lock().unwrap();
        let ret = match r {
            Ok(Reply::Value(v)) => {
                if let Some((_, ver)) = &v {
                    versions.insert(key, *ver);
                }
                Ok(KvRet::Value(v))
            }
            Ok(Reply::Version(v)) => {
                versions.insert(key, v);
                Ok(KvRet::Version(v))
            }
            Ok(Reply::Deleted(d)) => {
                versions.remove(&key);
                Ok(KvRet::Deleted(d))
            }
            Ok(Reply::Cas(r)) => {
                versions.insert(key, r.unwrap_or_else(|v| v));
                Ok(KvRet::CasResult(r))
            }
            Ok(Reply::Stale) => Err(End::Fail),
            Ok(other) => {
                rec.odd
                    .push(format!("c{id} {kind} of key {key} was answered {other:?}"));
                Err(End::Info)
            }
            Err(_) => Err(End::Info),
        };
        match ret {
            Ok(r) => {
                let end = match r {
                    KvRet::CasResult(Err(_)) => End::Fail,
                    _ => End::Ok,
                };
                rec.history.ok(h, r, at);
                rec.count(kind, end);
            }
            Err(End::Fail) => {
                rec.history.fail(h);
                rec.count(kind, End::Fail);
            }
            Err(_) => {
                rec.history.info(h);
                rec.count(kind, End::Info);
            }
        }
    }
}

/// A session or lock operation: open a session if there is none, release
/// the lock held, or try to take one.
async fn lock_op(
    sh: &Shared,
    c: &mut Client,
    rng: &mut StdRng,
    session: &mut bool,
    held: &mut Option<(u64, u64)>,
) {
    let id = c.id();
    if !*session {
        let r = c.open_session(Duration::from_secs(3)).await;
        let mut rec = sh.rec.lock().unwrap();
        match r {
            Ok(Ok(_)) => {
                *session = true;
                rec.count("session", End::Ok);
            }
            Ok(Err(_)) => rec.count("session", End::Fail),
            Err(_) => rec.count("session", End::Info),
        }
        return;
    }
    if let Some((lock, token)) = *held {
        let r = c.release(lock, token).await;
        let mut rec = sh.rec.lock().unwrap();
        match r {
            Ok(true) => rec.count("release", End::Ok),
            Ok(false) => rec.count("release", End::Fail),
            Err(_) => rec.count("release", End::Info),
        }
        if r.is_ok() {
            *held = None;
        }
        return;
    }
    let lock = rng.gen_range(0..LOCKS);
    let call = sh.now();
    let r = c.acquire(lock).await;
    let ret = sh.now();
    let mut rec = sh.rec.lock().unwrap();
    match r {
        Ok(Ok(token)) => {
            *held = Some((lock, token));
            rec.grants.push(Grant {
                client: id,
                lock,
                token,
                call,
                ret,
            });
            rec.count("acquire", End::Ok);
        }
        Ok(Err(e)) => {
            if e == LockError::NoSession {
                *session = false;
            }
            rec.count("acquire", End::Fail);
        }
        Err(_) => rec.count("acquire", End::Info),
    }
}

/// Runs one test: cluster, clients, nemesis, heal, checks. Every process it
/// started is stopped when it returns (or is dropped).
pub async fn run(cfg: &Config) -> Summary {
    let dir = cfg.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "paxkv-jepsen-{}-{}-{}",
            std::process::id(),
            cfg.seed,
            cfg.nodes
        ))
    });
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test directory");
    let mut summary = Summary {
        seed: cfg.seed,
        rerun: cfg.rerun_command(),
        dir: dir.clone(),
        ..Summary::default()
    };
    let mut kinds = cfg.faults.clone();
    let forget = kinds.iter().any(|k| k.cuts_power());
    let forget = match forgetfs::unavailable() {
        Some(why) if forget => {
            let cuts: Vec<_> = kinds
                .iter()
                .filter(|k| k.cuts_power())
                .map(|k| k.name())
                .collect();
            summary.skipped.push(format!(
                "{}: FUSE is unavailable here: {why}",
                cuts.join(", ")
            ));
            kinds.retain(|k| !k.cuts_power());
            false
        }
        _ => forget,
    };
    let steps = schedule(cfg.seed, cfg.nodes, &kinds, cfg.duration);
    let mut nemesis_log = String::new();
    let say = |log: &mut String, line: String| {
        if cfg.verbose {
            println!("{line}");
        }
        log.push_str(&line);
        log.push('\n');
    };
    say(
        &mut nemesis_log,
        format!(
            "paxkv jepsen: seed {}, {} nodes, {} clients, {} s, bugs {:?}; files in {}",
            cfg.seed,
            cfg.nodes,
            cfg.clients,
            cfg.duration.as_secs(),
            cfg.bugs,
            dir.display()
        ),
    );

    let mut cluster = match Cluster::new(cfg, dir.clone(), forget) {
        Ok(c) => c,
        Err(e) => {
            summary
                .violations
                .push(format!("cannot set up the machines: {e}"));
            return summary;
        }
    };
    for i in 0..cfg.nodes {
        cluster.start(i);
    }
    let sh = Arc::new(Shared {
        start: Instant::now(),
        rec: Mutex::new(Recorder::default()),
        next_value: AtomicU64::new(1),
        key_ops: (0..ACTIVE_KEYS).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
    });
    // Wait until the cluster serves before the clock starts.
    {
        let mut c = Client::new(cluster.endpoints.clone(), 999_998)
            .cluster(cluster.cluster)
            .timeout(Duration::from_secs(20));
        if let Err(e) = c.get(u64::MAX - 1).await {
            summary
                .violations
                .push(format!("the new cluster never answered: {e}"));
            return summary;
        }
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..cfg.clients {
        // Each client is bound to a node, as Jepsen's are: it asks that
        // node first, and is redirected from there.
        let timeout = match i % 4 == 3 && !cfg.short_timeout.is_zero() {
            true => cfg.short_timeout,
            false => cfg.op_timeout,
        };
        let c = Client::new(cluster.endpoints.clone(), 1 + i as u32)
            .cluster(cluster.cluster)
            .timeout(timeout)
            .home((i % cfg.nodes) as u8);
        let seed = cfg.seed.wrapping_mul(1000).wrapping_add(i as u64);
        tasks.push(tokio::spawn(client_loop(sh.clone(), c, seed)));
    }

    // The nemesis.
    let end = start + cfg.duration;
    for step in &steps {
        tokio::time::sleep(step.gap).await;
        cluster.reap(start.elapsed());
        if Instant::now() + step.hold >= end {
            break;
        }
        let t = start.elapsed().as_secs_f64();
        let leader = match step.kind.at_leader() {
            true => find_leader(&cluster).await,
            false => None,
        };
        let targets: Vec<usize> = match leader {
            Some(l) => vec![l],
            None => step.targets.iter().map(|&k| cluster.member(k)).collect(),
        };
        let who = if leader.is_some() {
            format!("leader n{}", targets[0])
        } else {
            let names: Vec<String> = targets.iter().map(|i| format!("n{i}")).collect();
            names.join(",")
        };
        *summary.faults.entry(step.kind.name()).or_default() += 1;
        match step.kind {
            FaultKind::KillMinority | FaultKind::KillLeader => {
                say(
                    &mut nemesis_log,
                    format!("{t:7.2}s kill -9 {who} for {} ms", step.hold.as_millis()),
                );
                for &i in &targets {
                    cluster.kill(i);
                }
                tokio::time::sleep(step.hold).await;
                for &i in &targets {
                    cluster.start(i);
                }
            }
            FaultKind::PowerCutMinority | FaultKind::PowerCutLeader | FaultKind::PowerCutAll => {
                say(
                    &mut nemesis_log,
                    format!(
                        "{t:7.2}s power cut to {who} (kill -9, unsynced writes dropped) for {} ms",
                        step.hold.as_millis()
                    ),
                );
                cluster.power_cut(&targets);
                tokio::time::sleep(step.hold).await;
                for &i in &targets {
                    cluster.start(i);
                }
            }
            FaultKind::PauseNode | FaultKind::PauseLeader => {
                say(
                    &mut nemesis_log,
                    format!("{t:7.2}s SIGSTOP {who} for {} ms", step.hold.as_millis()),
                );
                for &i in &targets {
                    cluster.signal(i, "STOP");
                }
                tokio::time::sleep(step.hold).await;
                for &i in &targets {
                    cluster.signal(i, "CONT");
                }
            }
            FaultKind::IsolateNode | FaultKind::IsolateLeader => {
                say(
                    &mut nemesis_log,
                    format!(
                        "{t:7.2}s isolate {who} from its peers for {} ms",
                        step.hold.as_millis()
                    ),
                );
                cluster.links.isolate(targets[0], true);
                tokio::time::sleep(step.hold).await;
                cluster.links.isolate(targets[0], false);
            }
            FaultKind::StrayPeer => {
                let i = targets[0];
                // The key the clients use in slot 0 now: a forged value
                // there would show in reads.
                let key = sh.active_key(0);
                let (what, mut v) = hostile::stray_peer(
                    &cluster.peers,
                    cluster.cluster,
                    &cluster.tls,
                    &cluster.stray_ca,
                    i,
                    key,
                )
                .await;
                say(&mut nemesis_log, format!("{t:7.2}s {what}"));
                summary.violations.append(&mut v);
                tokio::time::sleep(step.hold).await;
            }
            FaultKind::SilentClients => {
                let i = targets[0];
                let welcomed =
                    hostile::silent_clients(cluster.endpoints[i], SILENT, step.hold).await;
                say(
                    &mut nemesis_log,
                    format!(
                        "{t:7.2}s {SILENT} clients said hello to n{i} and then nothing for {} ms ({welcomed} welcomed)",
                        step.hold.as_millis()
                    ),
                );
            }
            FaultKind::Crowd => {
                let pids: Vec<u32> = (0..cluster.n()).filter_map(|i| cluster.pid(i)).collect();
                let (what, mut v) =
                    hostile::crowd(&cluster.endpoints, cluster.cluster, &pids, CROWD, step.hold)
                        .await;
                say(&mut nemesis_log, format!("{t:7.2}s {what}"));
                summary.violations.append(&mut v);
            }
            FaultKind::CopyWal => {
                let (i, from) = (targets[0], targets[targets.len() - 1]);
                if i == from {
                    say(
                        &mut nemesis_log,
                        format!("{t:7.2}s copy-wal needs two nodes"),
                    );
                    continue;
                }
                let what = format!("kill -9 n{i}, copy n{from}'s WAL over its own, start it");
                say(&mut nemesis_log, format!("{t:7.2}s {what}"));
                cluster.kill(i);
                let own = cluster.data(i).join("wal");
                let saved = cluster.dir.join(format!("n{i}-own-wal"));
                let copied = std::fs::copy(&own, &saved)
                    .and_then(|_| std::fs::copy(cluster.data(from).join("wal"), &own));
                if let Err(e) = copied {
                    say(&mut nemesis_log, format!("         cannot copy: {e}"));
                    cluster.start(i);
                    continue;
                }
                let from_len = cluster.log_text(i).len();
                cluster.start(i);
                match cluster.await_exit(i, Duration::from_secs(10)).await {
                    None => {
                        summary.violations.push(format!(
                            "n{i} started on replica {from}'s WAL copied over its own"
                        ));
                        cluster.kill(i);
                    }
                    Some(status) => {
                        let log = cluster.log_text(i);
                        let said = log.get(from_len..).unwrap_or("");
                        let why = format!("belongs to replica {from}, not to this replica {i}");
                        if !said.contains(&why) {
                            summary.violations.push(format!(
                                "n{i} on replica {from}'s WAL exited ({status}) without saying the WAL is not its own"
                            ));
                        }
                        say(
                            &mut nemesis_log,
                            format!("         n{i} refused it ({status}); its own WAL put back"),
                        );
                    }
                }
                let _ = std::fs::copy(&saved, &own);
                let _ = std::fs::remove_file(&saved);
                tokio::time::sleep(step.hold).await;
                cluster.start(i);
            }
            FaultKind::TruncateMid => {
                // The case: acknowledged writes held only by n{i}
                // and n{o} (a minority that lags is down while they are
                // made), n{i}'s WAL cut among them, n{i} back with the
                // laggards while n{o} is still down.
                let i = targets[0];
                let other = targets.get(1).copied();
                let lag: Vec<usize> = cluster
                    .members
                    .iter()
                    .copied()
                    .filter(|j| !targets.contains(j))
                    .take((cluster.members.len() - 1) / 2)
                    .collect();
                for &j in &lag {
                    cluster.kill(j);
                }
                let names: Vec<String> = lag.iter().map(|j| format!("n{j}")).collect();
                say(
                    &mut nemesis_log,
                    format!(
                        "{t:7.2}s kill -9 {} for {} ms: writes go to the others",
                        names.join(","),
                        step.hold.as_millis()
                    ),
                );
                tokio::time::sleep(step.hold).await;
                cluster.kill(i);
                if let Some(o) = other {
                    cluster.kill(o);
                }
                let wal = cluster.data(i).join("wal");
                let len = std::fs::metadata(&wal).map_or(0, |m| m.len());
                // Anywhere after the header and before the end.
                let room = len.saturating_sub(wal::HEADER_LEN as u64 + 1).max(1);
                let at = (wal::HEADER_LEN as u64 + 1 + step.position as u64 % room).min(len);
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&wal)
                    .and_then(|f| f.set_len(at));
                let down = other.map_or(String::new(), |o| {
                    format!(" with n{o} down for {} ms", step.hold.as_millis())
                });
                let t = start.elapsed().as_secs_f64();
                say(
                    &mut nemesis_log,
                    format!(
                        "{t:7.2}s kill -9 n{i}, cut its {len}-byte WAL to {at} bytes, restart it and {}{down}",
                        names.join(",")
                    ),
                );
                let from_len = cluster.log_text(i).len();
                cluster.start(i);
                for &j in &lag {
                    cluster.start(j);
                }
                tokio::time::sleep(step.hold).await;
                if let Some(o) = other {
                    cluster.start(o);
                }
                // One fault at a time: the next waits until n{i} votes
                // again (recovered, or rebuilt from the others).
                let voting = ["voting again", "recovered from disk"];
                match cluster.await_said(i, from_len, &voting, start).await {
                    Some(said) => {
                        let how = match (
                            said.contains("had been synced"),
                            said.contains("rebuilding from the peers"),
                        ) {
                            (true, _) => "rebuilds from the others: the cut fell before its mark",
                            (false, true) => {
                                "rebuilds from the others: the cut left a WAL that does not load"
                            }
                            (false, false) => "recovered: the cut fell in what it had not synced",
                        };
                        say(&mut nemesis_log, format!("         n{i} {how}"));
                    }
                    None => say(
                        &mut nemesis_log,
                        format!("         n{i} is not voting after 30 s"),
                    ),
                }
            }
            FaultKind::ReplaceNode | FaultKind::RemoveLeader | FaultKind::AddNode => {
                let other = cluster.member(step.targets[0] + 1);
                let (what, v) = membership(&mut cluster, step.kind, targets[0], other).await;
                say(&mut nemesis_log, format!("{t:7.2}s {what}"));
                summary.violations.extend(v);
            }
            FaultKind::FlipBit | FaultKind::Truncate => {
                let i = targets[0];
                cluster.kill(i);
                let wal = cluster.data(i).join("wal");
                let what = corrupt(&wal, step);
                say(
                    &mut nemesis_log,
                    format!("{t:7.2}s kill -9 n{i}, {what}, restart"),
                );
                let from_len = cluster.log_text(i).len();
                tokio::time::sleep(step.hold).await;
                cluster.start(i);
                // One fault at a time: the next waits until this replica
                // votes again (a rebuild needs the others).
                let damaged = what.starts_with("flipped") || what.starts_with("truncated");
                if damaged
                    && cluster
                        .await_said(i, from_len, &["voting again"], start)
                        .await
                        .is_none()
                    && cluster.procs[i].is_some()
                {
                    say(
                        &mut nemesis_log,
                        format!("         n{i} has not rebuilt after 30 s"),
                    );
                }
            }
        }
    }
    let remaining = end.saturating_duration_since(Instant::now());
    tokio::time::sleep(remaining).await;
    sh.stop.store(true, Ordering::Relaxed);

    // Heal, let the clients finish, then a quiet period.
    cluster.reap(start.elapsed());
    cluster.heal();
    for t in tasks {
        let _ = t.await;
    }
    let t = start.elapsed().as_secs_f64();
    say(
        &mut nemesis_log,
        format!("{t:7.2}s healed; clients done; quiet period"),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Final reads of every key written, as ordinary operations.
    let written: BTreeSet<u64> = {
        let rec = sh.rec.lock().unwrap();
        rec.history
            .ops
            .iter()
            .filter(|o| !matches!(o.op, KvOp::Get))
            .map(|o| o.key)
            .collect()
    };
    let mut reader = Client::new(cluster.endpoints.clone(), FINAL_READER)
        .cluster(cluster.cluster)
        .timeout(Duration::from_secs(10));
    let mut finals: BTreeMap<u64, Option<(Value, u64)>> = BTreeMap::new();
    for &key in &written {
        let mut got = None;
        for _ in 0..3 {
            let call = sh.now();
            let r = reader.get(key).await;
            let at = sh.now();
            if let Ok(v) = r {
                let mut rec = sh.rec.lock().unwrap();
                let h = rec.history.invoke(FINAL_READER, key, KvOp::Get, call);
                rec.history.ok(h, KvRet::Value(v.clone()), at);
                got = Some(v);
                break;
            }
        }
        match got {
            Some(v) => {
                finals.insert(key, v);
            }
            None => {
                summary.violations.push(format!(
                    "the healed cluster did not answer a read of key {key} (3 tries of 10 s)"
                ));
                break;
            }
        }
    }
    cluster.reap(start.elapsed());
    summary.elapsed = start.elapsed();
    let t = summary.elapsed.as_secs_f64();
    say(
        &mut nemesis_log,
        format!("{t:7.2}s final reads of {} keys done", finals.len()),
    );

    // Checks.
    summary.violations.append(&mut cluster.crashed);
    for i in 0..cluster.n() {
        let log = cluster.log_text(i);
        if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
            summary
                .violations
                .push(format!("n{i} panicked: {}", line.trim()));
        }
        // Initialized once; a second time means it forgot it ever was (a
        // data directory that a power cut took), and voted again as new.
        let inits = log.matches(NEW_REPLICA).count();
        if inits > 1 {
            summary.violations.push(format!(
                "n{i} started as a new replica {inits} times: its data directory did not survive a restart"
            ));
        }
    }
    for i in 0..cluster.n() {
        cluster.kill(i);
    }
    let rec = std::mem::take(&mut *sh.rec.lock().unwrap());
    summary.ops = rec.ops.clone();
    for o in &rec.odd {
        summary
            .violations
            .push(format!("an impossible answer: {o}"));
    }
    summary
        .violations
        .extend(lost_writes(&rec.history, &finals));
    summary.violations.extend(fencing(&rec.grants));
    let budget = cfg.lin_budget;
    let history = rec.history.clone();
    let (keys, lin) = tokio::task::spawn_blocking(move || linearizable(&history, budget))
        .await
        .expect("the checker does not panic");
    summary.keys = keys;
    summary.violations.extend(lin);

    // Kept on a failure, and on a pass too when the files were asked for
    // (`--dir`): a passing history is input for other checkers.
    let keep = !summary.passed() || cfg.dir.is_some();
    if keep {
        let _ = std::fs::write(dir.join("nemesis.log"), &nemesis_log);
        // What the forgetting filesystems held goes with them: keep a copy.
        if forget {
            for i in 0..cluster.n() {
                let _ = copy_dir(&cluster.data(i), &dir.join(format!("n{i}-data")));
            }
        }
        if let Ok(json) = serde_json::to_string(&rec.history) {
            let _ = std::fs::write(dir.join("history.json"), json);
        }
    }
    if !summary.passed() {
        if cfg.verbose {
            for i in 0..cluster.n() {
                println!(
                    "---- n{i}'s log (last 15 lines) ----\n{}",
                    cluster.tail(i, 15)
                );
            }
        }
    } else if !keep {
        drop(cluster);
        let _ = std::fs::remove_dir_all(&dir);
    }
    summary
}

/// One step of the membership nemesis on member `target` (and `other`, the
/// member an added node's step removes): what it did, and what went wrong
/// (a change not in force within [`CHANGE_WITHIN`] is a violation: the
/// cluster must keep changing while it serves).
async fn membership(
    c: &mut Cluster,
    kind: FaultKind,
    target: usize,
    other: usize,
) -> (String, Vec<String>) {
    use kv::server::Admin;
    use multipaxos::{bit, Change};
    let Some(new) = c.spare() else {
        return (
            format!(
                "{}: no spare machine left (ids are never reused)",
                kind.name()
            ),
            vec![],
        );
    };
    let id = |i: usize| i as u8;
    let add = |c: &Cluster, change: Change| Admin::Change {
        change,
        addrs: vec![(id(new), c.addrs(new))],
    };
    let mut problems = Vec::new();
    let remove = |i: usize| Admin::Change {
        change: Change::Remove(id(i)),
        addrs: vec![],
    };
    let gone = |i: usize| move |v: &MemberView| v.in_force.gone & bit(id(i)) != 0;
    let voter = move |v: &MemberView| v.in_force.votes(id(new));
    let what = match kind {
        FaultKind::ReplaceNode => {
            // The machine is gone for good: its process and its disk.
            c.retire(target);
            let _ = std::fs::remove_dir_all(c.data(target));
            let change = Change::Replace {
                old: bit(id(target)),
                new: bit(id(new)),
            };
            let done = move |v: &MemberView| voter(v) && gone(target)(v);
            let what = format!("replacing n{target} by n{new}");
            change_to(c, add(c, change), Some(new), done, &what, &mut problems).await;
            format!("n{target}'s machine died for good (kill -9, data deleted); replaced by a fresh n{new} (--join, empty directory)")
        }
        FaultKind::RemoveLeader => {
            let what = format!("removing leader n{target}");
            change_to(c, remove(target), None, gone(target), &what, &mut problems).await;
            c.retire(target);
            let what = format!("adding n{new}");
            let change = add(c, Change::Add(id(new)));
            change_to(c, change, Some(new), voter, &what, &mut problems).await;
            format!("removed leader n{target} (stopped for good), then added a fresh n{new}")
        }
        FaultKind::AddNode => {
            let what = format!("adding n{new}");
            let change = add(c, Change::Add(id(new)));
            change_to(c, change, Some(new), voter, &what, &mut problems).await;
            let what = format!("removing n{other}");
            change_to(c, remove(other), None, gone(other), &what, &mut problems).await;
            c.retire(other);
            format!("added a fresh n{new} (--join, promoted), then removed n{other} for good")
        }
        _ => unreachable!("not a membership change"),
    };
    (what, problems)
}

/// One change through the operator's commands: proposed, the fresh machine
/// `start` (if any) started with `--join`, then awaited in force; what
/// went wrong is noted under `what`.
async fn change_to(
    c: &mut Cluster,
    admin: kv::server::Admin,
    start: Option<usize>,
    done: impl Fn(&MemberView) -> bool + Copy,
    what: &str,
    problems: &mut Vec<String>,
) {
    if let Err(e) = propose(c, admin, done).await {
        problems.push(format!("{what}: {e}"));
    }
    if let Some(n) = start {
        c.members.push(n);
        c.start(n);
    }
    if let Err(e) = in_force(c, done).await {
        problems.push(format!("{what}: {e}"));
    }
}

type MemberView = kv::server::MemberView;

/// Asks the leader for a change until it proposes it (a change waits for
/// the one before it, and for the leader's own first entry) or `done`
/// already holds (an answer lost on the way).
async fn propose(
    c: &Cluster,
    admin: kv::server::Admin,
    done: impl Fn(&MemberView) -> bool,
) -> Result<(), String> {
    use kv::server::{Admin, AdminReply};
    let deadline = Instant::now() + CHANGE_WITHIN;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        let mut op = c.operator();
        match op.admin(admin.clone()).await {
            Ok(AdminReply::Changed(Ok(_))) => return Ok(()),
            Ok(AdminReply::Changed(Err(why))) => last = format!("refused: {why}"),
            Ok(r) => last = format!("unexpected answer {r:?}"),
            Err(e) => last = e.to_string(),
        }
        if let Ok(AdminReply::Members(v)) = op.admin(Admin::List).await {
            if done(&v) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("not proposed within {CHANGE_WITHIN:?} ({last})"))
}

/// Waits until a member's view of the configuration in force satisfies
/// `done`.
async fn in_force(c: &Cluster, done: impl Fn(&MemberView) -> bool) -> Result<MemberView, String> {
    use kv::server::{Admin, AdminReply};
    let deadline = Instant::now() + CHANGE_WITHIN;
    let mut last = String::from("no view");
    while Instant::now() < deadline {
        match c.operator().admin(Admin::List).await {
            Ok(AdminReply::Members(v)) if done(&v) => return Ok(v),
            Ok(AdminReply::Members(v)) => {
                last = format!("in force at n{}: {:?}", v.from, v.in_force)
            }
            Ok(r) => last = format!("unexpected answer {r:?}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("not in force within {CHANGE_WITHIN:?} ({last})"))
}

/// Copies the files of `from` (not its subdirectories) into `to`.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Corrupts a stopped replica's WAL as `step` says; describes what it did.
fn corrupt(wal: &Path, step: &Step) -> String {
    let Ok(mut bytes) = std::fs::read(wal) else {
        return "no WAL to corrupt".into();
    };
    if bytes.is_empty() {
        return "an empty WAL left alone".into();
    }
    match step.kind {
        FaultKind::FlipBit => {
            let at = (bytes.len() as u64 * step.position as u64 / 1_000_000) as usize;
            bytes[at] ^= 1 << step.bit;
            let _ = std::fs::write(wal, &bytes);
            format!(
                "flipped bit {} of byte {at} of its {}-byte WAL",
                step.bit,
                bytes.len()
            )
        }
        _ => {
            // Shorter than a header: the WAL reads as wiped. (A cut after
            // the header is `truncate-mid`, which the WAL's mark tells from
            // a torn write.)
            let len = (step.position as usize % wal::HEADER_LEN).min(bytes.len());
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .open(wal)
                .and_then(|f| f.set_len(len as u64));
            format!("truncated its {}-byte WAL to {len} bytes", bytes.len())
        }
    }
}

/// Writes that wrote `value` on a key: put or successful (or unknown) cas.
fn writes_value(o: &Operation<KvModel>) -> Option<&Value> {
    match (&o.op, &o.outcome) {
        (KvOp::Put(v), _) => Some(v),
        (KvOp::Cas { value, .. }, Outcome::Info)
        | (
            KvOp::Cas { value, .. },
            Outcome::Ok {
                ret: KvRet::CasResult(Ok(_)),
                ..
            },
        ) => Some(value),
        _ => None,
    }
}

/// No acknowledged write is lost: the final state of each key was made by
/// a write (or delete) that did not complete before an acknowledged write
/// to the key began, and a value read was written by someone.
fn lost_writes(h: &History<KvModel>, finals: &BTreeMap<u64, Option<(Value, u64)>>) -> Vec<String> {
    let mut out = Vec::new();
    let by_key = h.by_key();
    for (key, fin) in finals {
        let Some(ops) = by_key.get(key) else { continue };
        let ops: Vec<&Operation<KvModel>> =
            ops.iter().filter(|o| o.client != FINAL_READER).collect();
        let acked = |o: &&&Operation<KvModel>| {
            matches!(
                (&o.op, &o.outcome),
                (KvOp::Put(_), Outcome::Ok { .. })
                    | (
                        KvOp::Cas { .. },
                        Outcome::Ok {
                            ret: KvRet::CasResult(Ok(_)),
                            ..
                        }
                    )
                    | (KvOp::Delete, Outcome::Ok { .. })
            )
        };
        // The operations that may have made the final state.
        let makers: Vec<&&Operation<KvModel>> = match fin {
            Some((v, _)) => ops.iter().filter(|o| writes_value(o) == Some(v)).collect(),
            None => ops
                .iter()
                .filter(|o| matches!(o.op, KvOp::Delete))
                .collect(),
        };
        if let Some((v, ver)) = fin {
            if makers.is_empty() {
                out.push(format!(
                    "key {key}: the final read shows value {v} (version {ver}), which no one wrote"
                ));
                continue;
            }
        }
        // Lost: an acknowledged write that began after every possible maker
        // had completed, so it must come after it, yet its effect is gone.
        for w in ops.iter().filter(acked) {
            if makers.iter().any(|m| std::ptr::eq(**m, *w)) {
                continue;
            }
            if makers.iter().all(|m| m.ret_time() < w.call) {
                let desc = match &w.op {
                    KvOp::Delete => "delete".to_string(),
                    KvOp::Put(v) | KvOp::Cas { value: v, .. } => format!("write of {v}"),
                    KvOp::Get => unreachable!(),
                };
                out.push(format!(
                    "key {key}: an acknowledged {desc} by c{} (at {:.3} s) is lost: the final read shows {fin:?}",
                    w.client,
                    w.call as f64 / 1e6
                ));
                break;
            }
        }
    }
    out
}

/// Fencing tokens: one token goes to one client, and a grant that began
/// after another ended has a larger token (or the same, re-granted to the
/// same holder).
fn fencing(grants: &[Grant]) -> Vec<String> {
    let mut out = Vec::new();
    let mut by_lock: BTreeMap<u64, Vec<&Grant>> = BTreeMap::new();
    for g in grants {
        by_lock.entry(g.lock).or_default().push(g);
    }
    for (lock, gs) in by_lock {
        let mut holder: BTreeMap<u64, u32> = BTreeMap::new();
        for g in &gs {
            if let Some(&c) = holder.get(&g.token) {
                if c != g.client {
                    out.push(format!(
                        "lock {lock}: fencing token {} was handed to c{c} and to c{}",
                        g.token, g.client
                    ));
                }
            }
            holder.insert(g.token, g.client);
        }
        for a in &gs {
            for b in &gs {
                if a.ret < b.call && a.token > b.token {
                    out.push(format!(
                        "lock {lock}: c{} got token {} (ended {:.3} s), then c{} got the smaller token {} (began {:.3} s)",
                        a.client,
                        a.token,
                        a.ret as f64 / 1e6,
                        b.client,
                        b.token,
                        b.call as f64 / 1e6
                    ));
                    return out;
                }
            }
        }
    }
    out
}

/// Checks each key: ((keys, linearizable, undecided), violations).
fn linearizable(h: &History<KvModel>, budget: u64) -> ((usize, usize, usize), Vec<String>) {
    let mut keys = (0, 0, 0);
    let mut out = Vec::new();
    for (key, ops) in h.by_key() {
        keys.0 += 1;
        match linearizability::check_key::<KvModel>(&ops, budget) {
            Verdict::Linearizable => keys.1 += 1,
            Verdict::Unknown => keys.2 += 1,
            Verdict::NotLinearizable => {
                if out.len() < 3 {
                    let minimal = linearizability::shrink::<KvModel>(ops, budget);
                    out.push(format!(
                        "key {key} is not linearizable: no order of these {} operations explains their results (times in us from the start):\n{}",
                        minimal.len(),
                        linearizability::render(&minimal)
                    ));
                } else {
                    out.push(format!("key {key} is not linearizable either"));
                }
            }
        }
    }
    (keys, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let d = Duration::from_secs(60);
        let a = schedule(7, 5, &FaultKind::ALL, d);
        assert_eq!(a, schedule(7, 5, &FaultKind::ALL, d));
        assert_ne!(a, schedule(8, 5, &FaultKind::ALL, d));
        assert!(a.len() >= 10);
        // A minority of 5 at most, or everyone for a cut of all power.
        assert!(a
            .iter()
            .all(|s| s.targets.len() <= 2
                || s.kind == FaultKind::PowerCutAll && s.targets.len() == 5));
        let kinds: BTreeSet<_> = a.iter().map(|s| s.kind).collect();
        assert!(kinds.len() >= 5, "{kinds:?}");
    }

    fn grant(client: u32, token: u64, call: u64, ret: u64) -> Grant {
        Grant {
            client,
            lock: 0,
            token,
            call,
            ret,
        }
    }

    #[test]
    fn fencing_catches_reused_and_decreasing_tokens() {
        assert!(
            fencing(&[grant(1, 1, 0, 10), grant(2, 2, 20, 30), grant(2, 2, 40, 50)]).is_empty()
        );
        assert!(!fencing(&[grant(1, 1, 0, 10), grant(2, 1, 20, 30)]).is_empty());
        assert!(!fencing(&[grant(1, 2, 0, 10), grant(2, 1, 20, 30)]).is_empty());
        // Concurrent grants may come in either order.
        assert!(fencing(&[grant(1, 2, 0, 30), grant(2, 1, 20, 40)]).is_empty());
    }

    #[test]
    fn a_lost_write_is_reported() {
        let mut h = History::<KvModel>::new();
        let a = h.invoke(1, 5, KvOp::Put(Value::from(10)), 0);
        h.ok(a, KvRet::Version(1), 10);
        let b = h.invoke(2, 5, KvOp::Put(Value::from(11)), 20);
        h.ok(b, KvRet::Version(2), 30);
        let fin =
            |v: Option<(u64, u64)>| BTreeMap::from([(5, v.map(|(v, ver)| (Value::from(v), ver)))]);
        assert!(lost_writes(&h, &fin(Some((11, 2)))).is_empty());
        assert_eq!(lost_writes(&h, &fin(Some((10, 1)))).len(), 1);
        assert_eq!(lost_writes(&h, &fin(None)).len(), 1);
        assert_eq!(lost_writes(&h, &fin(Some((99, 3)))).len(), 1);
    }
}
