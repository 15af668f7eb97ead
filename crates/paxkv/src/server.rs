//! A replica on tokio: the simulator's sans-IO [`kv::server::Server`], fed
//! by real sockets, a real clock and a real disk.
//!
//! One task (the *core loop*) owns the server and is the only thing that
//! calls it, so the core sees one input at a time, as in the simulator. What
//! it does with the core's outputs mirrors the simulator's binding
//! (`sim/src/scenarios/log.rs`):
//! - `Persist` and `Sync` go through the write path ([`kv::write_path`],
//!   as in the simulator), whose batches the writer thread carries out
//!   ([`crate::storage`]); the core hears `Synced { upto }` when the write
//!   path says so, only after the fsync of the batch that ends at `upto`;
//! - `Send { to, msg, after }` goes onto the TCP connection to `to` (or back
//!   into the loop when `to` is this replica). The core parks every message
//!   until its `after` write is synced; the loop asserts it (the simulator's
//!   D1, checked on every send here too). Client replies come from applied
//!   commands, chosen by a majority of durable acceptances, or from a lease
//!   read, which reveals no write;
//! - `SetTimer` and `SetTick` become entries of a timer heap the loop
//!   sleeps on, jitter drawn here.
//!
//! The core's `now` is microseconds since the Unix epoch at process start
//! plus a monotonic clock's elapsed time: it never goes backwards within a
//! process (the core asserts it), and it is close to the other replicas'
//! (the leader's clock readings become the state machine's time, which
//! expires sessions, so they should not restart at zero with the process).

use crate::storage::{Boot, DataDir};
use crate::tls::{BoxStream, PeerTls, ServerTls};
use crate::wire::{self, AdminRequest, Hello, PeerMsg, Response, Welcome};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use kv::server::{AdminReply, Event, LogNode, Server, ServerConfig, ServerInput};
use kv::write_path::{Batch, Step, WritePath};
use kv::{Addrs, ClientId, Command};
use multipaxos::{Input, NodeId, Output, Timer, Write};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tracing::{debug, info, warn};

/// Everything a replica needs to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub id: NodeId,
    /// The first replicas' peer addresses (where replicas dial each other),
    /// by id: the cluster's first configuration. Replicas added later are
    /// in the replicated address book.
    pub peers: Vec<SocketAddr>,
    /// The first replicas' client addresses, by id, for the address book
    /// operators see (`paxkv member list`); may be empty.
    pub endpoints: Vec<SocketAddr>,
    /// For a replica that joined a running cluster: what the cluster told
    /// it (its first configuration, α and address book), in place of
    /// `peers`.
    pub joined: Option<Joined>,
    /// Where this replica dials these replicas instead of their address in
    /// the book (a tunnel, a NAT, or the Jepsen harness's proxies).
    pub routes: BTreeMap<NodeId, SocketAddr>,
    /// Where this replica listens for its peers.
    pub peer_listen: SocketAddr,
    /// Where this replica listens for clients.
    pub client_listen: SocketAddr,
    /// Mutual TLS between peers; `None` is plain TCP, which the operator
    /// must ask for by name (`--insecure-plaintext-peers`) and the log says.
    pub peer_tls: Option<PeerTls>,
    /// TLS on the client address, if any.
    pub client_tls: Option<ServerTls>,
    pub data_dir: PathBuf,
    pub cluster: u64,
    /// Rebuild an empty data directory from the peers instead of
    /// initializing it (a replaced disk).
    pub rebuild: bool,
    pub timing: multipaxos::Timing,
    pub window: u64,
    pub batch: usize,
    pub snapshot_every: u64,
    pub tick_us: u64,
    /// Compact the WAL at a snapshot once it is larger than this.
    pub compact_bytes: u64,
    /// At most this many connections (clients, peers and strangers) at
    /// once; also kept below the descriptor limit, so that the WAL and
    /// snapshots always have descriptors left.
    pub max_conns: usize,
    /// A client connection that sends nothing for this long is closed
    /// (the client library reconnects when it needs to).
    pub client_idle: Duration,
    pub bugs: multipaxos::Bugs,
}

impl Options {
    /// The production defaults for replica `id` of the replicas at `peers`
    /// serving clients at `client_listen` (timings a few times the
    /// simulator's, for real networks and disks), peers in plain TCP until
    /// `peer_tls` is set.
    pub fn new(
        id: NodeId,
        peers: Vec<SocketAddr>,
        client_listen: SocketAddr,
        data_dir: PathBuf,
        cluster: u64,
    ) -> Options {
        let peer_listen = peers
            .get(id as usize)
            .copied()
            .unwrap_or(([0, 0, 0, 0], 0).into());
        Options {
            id,
            peers,
            endpoints: Vec::new(),
            joined: None,
            routes: BTreeMap::new(),
            peer_listen,
            client_listen,
            peer_tls: None,
            client_tls: None,
            data_dir,
            cluster,
            rebuild: false,
            timing: multipaxos::Timing {
                election_us: 500_000,
                election_jitter_us: 500_000,
                heartbeat_us: 50_000,
                lease_us: 400_000,
                drift_ppm: 100_000,
            },
            window: 16,
            batch: 64,
            snapshot_every: 1_000,
            tick_us: 500_000,
            compact_bytes: 4 << 20,
            max_conns: 4_096,
            client_idle: Duration::from_secs(60),
            bugs: multipaxos::Bugs::default(),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(j) = &self.joined {
            if !j.book.iter().any(|(id, _)| *id == self.id) {
                return Err(format!(
                    "replica {} is not in the cluster's address book: add it first (`paxkv member add {} PEER CLIENT`)",
                    self.id, self.id
                ));
            }
            // Told by a member, kept in a file: input.
            if j.book
                .iter()
                .any(|(id, _)| usize::from(*id) >= multipaxos::MAX_NODES)
            {
                return Err("the cluster's address book names a replica id out of range".into());
            }
            if j.window == 0
                || j.first == 0
                || !multipaxos::Members::first(j.first).well_formed(multipaxos::MAX_NODES as u8)
            {
                return Err("the cluster's first configuration or window is malformed".into());
            }
            return self.validate_timing();
        }
        let n = self.peers.len();
        if !(1..=multipaxos::MAX_NODES).contains(&n) {
            return Err(format!(
                "--peers names {n} replicas; a cluster has 1 to {}",
                multipaxos::MAX_NODES
            ));
        }
        if self.id as usize >= n {
            return Err(format!(
                "--id {} is not a replica of --peers (ids are 0 to {})",
                self.id,
                n - 1
            ));
        }
        self.validate_timing()
    }

    fn validate_timing(&self) -> Result<(), String> {
        let t = &self.timing;
        if t.heartbeat_us == 0 || t.heartbeat_us >= t.election_us {
            return Err("the heartbeat must be shorter than the election timeout".into());
        }
        if self.window == 0 || self.batch == 0 || self.snapshot_every == 0 || self.tick_us == 0 {
            return Err("window, batch, snapshot interval and tick must be positive".into());
        }
        Ok(())
    }

    /// The log core's config. BUGGIFY is the simulator's alone: every knob
    /// is off here, always (a test and `tests/tidy.rs` check it).
    fn log_config(&self) -> multipaxos::Config {
        multipaxos::Config {
            // Every id a replica may ever have: membership changes add
            // replicas under new ids (never reused).
            n: multipaxos::MAX_NODES as u8,
            id: self.id,
            voters: self.first_voters(),
            timing: self.timing,
            window: self.window(),
            batch: self.batch,
            slot_bytes: multipaxos::SLOT_BYTES,
            queue_bytes: multipaxos::QUEUE_BYTES,
            part_bytes: multipaxos::PART_BYTES,
            bugs: self.bugs,
            buggify: multipaxos::Buggify::OFF,
        }
    }

    /// The first configuration's voters: the cluster's constant.
    fn first_voters(&self) -> u16 {
        match &self.joined {
            Some(j) => j.first,
            None => multipaxos::Members::all(self.peers.len() as u8),
        }
    }

    /// The α-window: a constant of the cluster, as every replica must agree.
    fn window(&self) -> u64 {
        self.joined.as_ref().map_or(self.window, |j| j.window)
    }

    /// The address book this replica starts with: the first replicas' (or
    /// what the cluster told a joining replica); the log adds the rest.
    pub fn book(&self) -> BTreeMap<NodeId, Addrs> {
        if let Some(j) = &self.joined {
            return j.book.iter().cloned().collect();
        }
        let client = |i: usize| {
            self.endpoints
                .get(i)
                .map_or(String::new(), |a| a.to_string())
        };
        self.peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let addrs = Addrs {
                    peer: p.to_string(),
                    client: client(i),
                };
                (i as NodeId, addrs)
            })
            .collect()
    }

    /// The service's config, BUGGIFY off as in [`Options::log_config`].
    fn server_config(&self) -> ServerConfig {
        ServerConfig {
            snapshot_every: self.snapshot_every,
            tick_us: self.tick_us,
            lease_reads: self.timing.lease_us > 0,
            bugs: self.bugs,
            buggify: kv::server::Buggify::OFF,
        }
    }
}

/// What a replica that joined a running cluster learned from it, kept in
/// its data directory ([`crate::join::JOINED`]): at every start it comes
/// from there, never from flags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Joined {
    /// The cluster's first configuration's voters, and its α-window.
    pub first: u16,
    pub window: u64,
    /// Every replica's addresses the cluster knew when this one joined.
    pub book: Vec<(NodeId, Addrs)>,
}

/// What reaches the core loop from the network and the disk.
enum Inbound {
    Peer {
        from: NodeId,
        msg: PeerMsg,
    },
    Request {
        cmd: Command,
        conn: u64,
        tx: mpsc::Sender<Response>,
    },
    Admin {
        req: AdminRequest,
        conn: u64,
        tx: mpsc::Sender<Response>,
    },
    ConnClosed {
        conn: u64,
    },
    /// The writer finished the write path's batch that ends at `upto`.
    BatchDone {
        upto: u64,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Log(Timer),
    Tick,
}

/// Binds the listener, opens the data directory and serves until killed.
/// `Err` is a clear message for the operator (the binary prints it and
/// exits non-zero).
pub async fn run(opts: Options) -> Result<(), String> {
    opts.validate()?;
    let peer_listener = TcpListener::bind(opts.peer_listen)
        .await
        .map_err(|e| format!("cannot listen for peers on {}: {e}", opts.peer_listen))?;
    let client_listener = TcpListener::bind(opts.client_listen)
        .await
        .map_err(|e| format!("cannot listen for clients on {}: {e}", opts.client_listen))?;
    let (dir, boot) = DataDir::open(
        &opts.data_dir,
        opts.cluster,
        opts.id,
        opts.rebuild,
        opts.bugs,
    )?;
    if let Some(j) = &opts.joined {
        let json = serde_json::to_vec_pretty(j).expect("a book encodes");
        crate::join::keep_joined(&opts.data_dir, &json)?;
    }
    let book = opts.book();
    let n = book.len();
    let cfg = opts.log_config();
    let clock = Clock::new();
    let now = clock.now_us();
    // The simulator's boot (`Replica::boot`): recover from what the disk
    // holds, or rebuild from the peers before voting again.
    let file = match &boot {
        Boot::Recover(state, len) => Some((state.clone(), *len)),
        Boot::Rebuild { .. } => None,
    };
    let wp = WritePath::new(opts.cluster, opts.id, opts.compact_bytes, opts.bugs, file);
    let node = match boot {
        Boot::Recover(state, _) => {
            info!(
                id = opts.id,
                promised = %state.promised,
                base = state.base(),
                accepted = state.accepted.len(),
                chosen = state.chosen.len(),
                "recovered from disk"
            );
            LogNode::recover(cfg, state, now)
        }
        Boot::Rebuild { why } => {
            warn!(
                id = opts.id,
                "{why}: rebuilding from the peers; not voting until then"
            );
            LogNode::rebuild(cfg, now)
        }
    };
    let server = Server::new(node, opts.server_config());
    if opts.peer_tls.is_none() && n > 1 {
        warn!(
            "peers in PLAIN TCP (--insecure-plaintext-peers): anything that can reach {} can speak as a replica",
            opts.peer_listen
        );
    }
    info!(
        id = opts.id,
        peers = %opts.peer_listen,
        peer_tls = opts.peer_tls.is_some(),
        clients = %opts.client_listen,
        client_tls = opts.client_tls.is_some(),
        cluster = opts.cluster,
        replicas = n,
        data_dir = %opts.data_dir.display(),
        "serving"
    );

    let (in_tx, in_rx) = mpsc::channel::<Inbound>(8192);
    let (wal_tx, wal_rx) = std::sync::mpsc::channel::<Batch>();
    {
        let in_tx = in_tx.clone();
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer(dir, wal_rx, in_tx))
            .map_err(|e| format!("cannot start the WAL writer: {e}"))?;
    }
    let ids = Arc::new(AtomicU8::new(0));
    let ctx = ConnCtx {
        id: opts.id,
        ids: ids.clone(),
        cluster: opts.cluster,
        tx: in_tx,
        open: Arc::new(AtomicUsize::new(0)),
        max_conns: conn_budget(opts.max_conns),
        client_idle: opts.client_idle,
        peer_tls: opts.peer_tls.clone(),
        client_tls: opts.client_tls.clone(),
    };
    tokio::spawn(accept(peer_listener, ctx.clone(), Side::Peer));
    tokio::spawn(accept(client_listener, ctx, Side::Client));
    let mut core = Core {
        id: opts.id,
        server,
        clock,
        peers: BTreeMap::new(),
        book: BTreeMap::new(),
        book_seen: usize::MAX,
        ids,
        cluster: opts.cluster,
        peer_tls: opts.peer_tls.clone(),
        routes: opts.routes.clone(),
        wal: wal_tx,
        wp,
        synced: Vec::new(),
        fed: 0,
        timers: BinaryHeap::new(),
        timer_seq: 0,
        local: VecDeque::new(),
        clients: HashMap::new(),
        rng: rand::rngs::StdRng::from_entropy(),
        out: Vec::new(),
        leader: None,
        lease: false,
        rebuilding: false,
        refused: 0,
    };
    core.learn(book);
    core.run(in_rx).await;
    Ok(())
}

/// The core's clock (see the module docs).
struct Clock {
    start: Instant,
    epoch_us: u64,
}

impl Clock {
    fn new() -> Clock {
        let epoch_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Clock {
            start: Instant::now(),
            epoch_us,
        }
    }
    fn now_us(&self) -> u64 {
        self.epoch_us + self.start.elapsed().as_micros() as u64
    }
    fn instant(&self, at_us: u64) -> tokio::time::Instant {
        let since = Duration::from_micros(at_us.saturating_sub(self.epoch_us));
        tokio::time::Instant::from_std(self.start + since)
    }
}

struct Core {
    id: NodeId,
    server: Server,
    clock: Clock,
    /// The queue to each peer in the address book (a dialing task each).
    peers: BTreeMap<NodeId, PeerQueue>,
    /// The address book: the first replicas' (or a joined one's), then
    /// what the log adds ([`kv::Cmd::Peer`]).
    book: BTreeMap<NodeId, Addrs>,
    /// The size of the machine's book when last read.
    book_seen: usize,
    /// The ids below this one are the cluster's (the welcome's `n`).
    ids: Arc<AtomicU8>,
    cluster: u64,
    peer_tls: Option<PeerTls>,
    /// Dial these replicas here, whatever the book says.
    routes: BTreeMap<NodeId, SocketAddr>,
    /// The writer thread, which executes the write path's batches.
    wal: std::sync::mpsc::Sender<Batch>,
    /// The write path: group commit, when a write counts as synced.
    wp: WritePath,
    /// Syncs the write path reported, for the core once the current step
    /// is carried out.
    synced: Vec<u64>,
    /// The last sync the core was told of.
    fed: u64,
    timers: BinaryHeap<Reverse<(u64, u64, TimerKind)>>,
    timer_seq: u64,
    /// Messages to this replica itself.
    local: VecDeque<PeerMsg>,
    /// Where each client's replies go: its latest connection.
    clients: HashMap<ClientId, (u64, mpsc::Sender<Response>)>,
    rng: rand::rngs::StdRng,
    out: Vec<Event>,
    // What was last logged, to log changes only.
    leader: Option<NodeId>,
    lease: bool,
    rebuilding: bool,
    /// Peer messages the core refused (not ones a correct peer sends).
    refused: u64,
}

impl Core {
    async fn run(&mut self, mut rx: mpsc::Receiver<Inbound>) {
        let now = self.clock.now_us();
        self.rebuilding = self.server.node().is_rebuilding();
        let mut out = std::mem::take(&mut self.out);
        self.server.start(now, &mut out);
        self.out = out;
        self.carry_out(now);
        loop {
            while let Some(msg) = self.local.pop_front() {
                let from = self.id;
                self.step(ServerInput::Log(Input::Receive { from, msg }));
            }
            let due = self.timers.peek().map(|Reverse((at, _, _))| *at);
            let sleep = tokio::time::sleep_until(
                self.clock
                    .instant(due.unwrap_or(self.clock.now_us() + 3_600_000_000)),
            );
            tokio::select! {
                inbound = rx.recv() => {
                    let Some(inbound) = inbound else { return };
                    self.inbound(inbound);
                }
                _ = sleep => self.fire_timers(),
            }
        }
    }

    fn inbound(&mut self, i: Inbound) {
        match i {
            Inbound::Peer { from, msg } => {
                self.step(ServerInput::Log(Input::Receive { from, msg }));
            }
            Inbound::Request { cmd, conn, tx } => {
                self.clients.insert(cmd.client, (conn, tx));
                self.step(ServerInput::Request(cmd));
            }
            Inbound::Admin { req, conn, tx } => {
                self.clients.insert(req.client, (conn, tx));
                let (client, seq, admin) = (req.client, req.seq, req.admin);
                self.step(ServerInput::Admin { client, seq, admin });
            }
            Inbound::ConnClosed { conn } => self.clients.retain(|_, (c, _)| *c != conn),
            Inbound::BatchDone { upto } => {
                let mut steps = Vec::new();
                self.wp.done(upto, &mut steps);
                self.wal_steps(steps);
                self.feed_synced();
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = self.clock.now_us();
        while let Some(Reverse((at, _, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let input = match kind {
                TimerKind::Log(t) => ServerInput::Log(Input::Timer(t)),
                TimerKind::Tick => ServerInput::Tick,
            };
            self.step(input);
        }
    }

    fn step(&mut self, input: ServerInput) {
        let now = self.clock.now_us();
        let mut out = std::mem::take(&mut self.out);
        self.server.handle(now, input, &mut out);
        self.out = out;
        self.carry_out(now);
        self.feed_synced();
    }

    /// Carries out the write path's steps: a batch goes to the writer; a
    /// sync waits for the core (`feed_synced`).
    fn wal_steps(&mut self, steps: Vec<Step>) {
        for s in steps {
            match s {
                Step::Write(b) => {
                    // The writer exits the process on an IO error; a
                    // closed channel means it already did.
                    let _ = self.wal.send(b);
                }
                Step::Synced(upto) => self.synced.push(upto),
            }
        }
    }

    /// Tells the core what the write path reported synced.
    fn feed_synced(&mut self) {
        while !self.synced.is_empty() {
            for upto in std::mem::take(&mut self.synced) {
                self.fed = upto;
                self.step(ServerInput::Log(Input::Synced { upto }));
            }
        }
    }

    fn set_timer(&mut self, now: u64, kind: TimerKind, delay_us: u64, jitter_us: u64) {
        let jitter = if jitter_us > 0 {
            self.rng.gen_range(0..=jitter_us)
        } else {
            0
        };
        self.timer_seq += 1;
        self.timers
            .push(Reverse((now + delay_us + jitter, self.timer_seq, kind)));
    }

    /// Carries out the core's events (the simulator's `effect`, for real).
    fn carry_out(&mut self, now: u64) {
        let mut out = std::mem::take(&mut self.out);
        for e in out.drain(..) {
            match e {
                Event::Log(o) => self.log_output(now, o),
                Event::Reply {
                    client, seq, reply, ..
                } => self.respond(client, Response::Reply { seq, reply }),
                Event::Redirect {
                    client,
                    seq,
                    leader,
                } => self.respond(client, Response::Redirect { seq, leader }),
                Event::AdminReply {
                    client,
                    seq,
                    mut reply,
                } => {
                    // The whole book: the first replicas' addresses are
                    // flags, not log entries.
                    if let AdminReply::Members(v) = &mut reply {
                        v.peers = self.book.iter().map(|(i, a)| (*i, a.clone())).collect();
                    }
                    self.respond(client, Response::Admin { seq, reply })
                }
                Event::Executed { slot, cmd, .. } => {
                    debug!(slot, client = cmd.client, seq = cmd.seq, op = ?cmd.op, "executed");
                }
                // BUGGIFY is off here: the core never reports a rare path.
                Event::Ticked { .. } | Event::Buggified(_) => {}
                Event::SetTick { delay_us } => self.set_timer(now, TimerKind::Tick, delay_us, 0),
            }
        }
        self.out = out;
        self.log_changes(now);
        if self.server.machine().peers().len() != self.book_seen {
            self.book_seen = self.server.machine().peers().len();
            let added = self.server.machine().peers().clone();
            self.learn(added);
        }
    }

    /// Takes addresses into the book and dials the peers it did not know.
    /// An address that does not parse (only an operator's typo gets into
    /// the log: the leader checks lengths, not syntax) is logged and that
    /// replica stays unreachable from here.
    fn learn(&mut self, book: BTreeMap<NodeId, Addrs>) {
        for (id, addrs) in book {
            if self.book.get(&id) == Some(&addrs) {
                continue;
            }
            info!(
                replica = id,
                peer = addrs.peer,
                client = addrs.client,
                "address book"
            );
            self.book.insert(id, addrs.clone());
            if id == self.id || self.peers.contains_key(&id) {
                continue;
            }
            let route = self.routes.get(&id).copied();
            let Some(addr) = route.or_else(|| addrs.peer.parse::<SocketAddr>().ok()) else {
                warn!(
                    replica = id,
                    peer = addrs.peer,
                    "not an address: replica unreachable"
                );
                continue;
            };
            let (tx, rx) = mpsc::channel::<Bytes>(4096);
            let tx = PeerQueue {
                tx,
                bytes: Arc::new(AtomicUsize::new(0)),
            };
            let rx = (rx, tx.bytes.clone());
            let hello = Hello::Peer {
                protocol: wire::PROTOCOL,
                cluster: self.cluster,
                from: self.id,
                to: id,
            };
            tokio::spawn(dial(id, addr, hello, self.peer_tls.clone(), rx));
            self.peers.insert(id, tx);
        }
        let top = self.book.keys().next_back().map_or(0, |i| i + 1);
        self.ids.fetch_max(top, Ordering::Relaxed);
    }

    fn log_output(&mut self, now: u64, o: kv::server::LogOutput) {
        match o {
            Output::Send { to, msg, after } => {
                // D1: a message leaves only once the write it reveals is durable.
                assert!(
                    after <= self.fed,
                    "a message revealing write #{after} left before it was synced (synced: #{})",
                    self.fed
                );
                if to == self.id {
                    self.local.push_back(msg);
                } else if let Some(tx) = self.peers.get(&to) {
                    // A full queue (the peer is down or slow) drops the
                    // message, as a lossy network would: the protocol resends.
                    tx.send(wire::encode(&msg));
                }
            }
            Output::Persist { seq, write } => {
                match &write {
                    Write::Snapshot(s) => info!(upto = s.upto, "snapshot taken"),
                    Write::Rebuilt(d) => info!(base = d.base(), "writing the rebuilt state"),
                    _ => {}
                }
                let mut steps = Vec::new();
                self.wp.persist(seq, write, &mut steps);
                self.wal_steps(steps);
            }
            Output::Sync { upto } => {
                let mut steps = Vec::new();
                self.wp.sync(upto, &mut steps);
                self.wal_steps(steps);
            }
            Output::SetTimer {
                timer,
                delay_us,
                jitter_us,
            } => self.set_timer(now, TimerKind::Log(timer), delay_us, jitter_us),
            Output::Elected { ballot } => info!(%ballot, "elected leader"),
            Output::Install { snap } => info!(upto = snap.upto, "installed a snapshot"),
            Output::Rebuilt => info!("rebuilt from the peers; voting again"),
            // For the simulator's lease check; the core itself decides reads.
            Output::Lease { .. } => {}
            // A message no correct peer sends (`multipaxos::validate`):
            // nothing of it reached the core. Logged, but not every one:
            // a peer that sends nothing else must not fill the log.
            Output::Refused { from, why } => {
                self.refused += 1;
                if self.refused.is_power_of_two() {
                    warn!(from, why, total = self.refused, "refused a peer message");
                }
            }
            Output::Reconfigure { change, outcome } => match outcome {
                Ok(m) => info!(?change, ?m, "proposing a new configuration"),
                Err(why) => info!(?change, why, "membership change refused"),
            },
            Output::Apply { .. }
            | Output::NotLeader { .. }
            | Output::Busy { .. }
            | Output::Buggified(_) => {}
        }
    }

    fn respond(&mut self, client: ClientId, r: Response) {
        if let Some((_, tx)) = self.clients.get(&client) {
            // A client that stopped reading loses the reply and retries.
            let _ = tx.try_send(r);
        }
    }

    fn log_changes(&mut self, now: u64) {
        let node = self.server.node();
        let leader = node.leader();
        if leader != self.leader {
            self.leader = leader;
            match leader {
                Some(l) => info!(leader = l, ballot = %node.promised(), "leader known"),
                None => info!("no leader known"),
            }
        }
        let lease = node.lease_read_ok(now);
        if lease != self.lease {
            self.lease = lease;
            match lease {
                true => info!("holding the leader lease: reads served locally"),
                false => info!("leader lease lapsed: reads go through the log"),
            }
        }
        if self.rebuilding && !node.is_rebuilding() {
            self.rebuilding = false;
        }
    }
}

/// The writer thread: the thin shell that carries out the write path's
/// batches, one at a time, and says when each is done (durable).
fn writer(mut dir: DataDir, rx: std::sync::mpsc::Receiver<Batch>, done: mpsc::Sender<Inbound>) {
    while let Ok(b) = rx.recv() {
        dir.execute(&b);
        debug!(upto = b.upto, "batch durable");
        if done
            .blocking_send(Inbound::BatchDone { upto: b.upto })
            .is_err()
        {
            return;
        }
    }
}

/// The most bytes of messages queued for one peer: a peer that is down or
/// slow holds at most this much of our memory (plus one message), however
/// large the messages (up to a part of a state transfer, 1 MiB, or an
/// Accept of a full slot). Past it, messages are dropped, as a lossy
/// network drops them; the protocol resends what matters, and a replica
/// back after a long absence catches up by query and snapshot, not from a
/// backlog of stale Accepts.
pub const PEER_QUEUE_BYTES: usize = 32 << 20;

/// The messages waiting for one peer's connection, bounded in count and in
/// bytes ([`PEER_QUEUE_BYTES`]).
struct PeerQueue {
    tx: mpsc::Sender<Bytes>,
    /// Bytes queued; the connection's writer takes off what it wrote.
    bytes: Arc<AtomicUsize>,
}

impl PeerQueue {
    /// Queues `b`, or drops it if the queue is full.
    fn send(&self, b: Bytes) {
        let len = b.len();
        let queued = self.bytes.load(Ordering::Relaxed);
        if queued > 0 && queued + len > PEER_QUEUE_BYTES {
            return;
        }
        self.bytes.fetch_add(len, Ordering::Relaxed);
        if self.tx.try_send(b).is_err() {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

/// Keeps a connection to peer `to` open and writes its messages onto it;
/// reconnects with backoff. Messages queued while it is down wait (up to
/// the queue's bounds); the protocol tolerates their delay or loss.
async fn dial(
    to: NodeId,
    addr: SocketAddr,
    hello: Hello,
    tls: Option<PeerTls>,
    (mut rx, queued): (mpsc::Receiver<Bytes>, Arc<AtomicUsize>),
) {
    let mut backoff = Duration::from_millis(50);
    let mut logged = false;
    loop {
        match connect_peer(addr, &hello, tls.as_ref(), to).await {
            Ok(mut framed) => {
                info!(peer = to, %addr, "connected to peer");
                backoff = Duration::from_millis(50);
                logged = false;
                while let Some(b) = rx.recv().await {
                    queued.fetch_sub(b.len(), Ordering::Relaxed);
                    if let Err(e) = framed.send(b).await {
                        info!(peer = to, "lost the connection to peer: {e}");
                        break;
                    }
                }
                if rx.is_closed() {
                    return;
                }
            }
            Err(DialError::Refused(why)) => {
                warn!(peer = to, %addr, "peer refused us: {why}");
                backoff = Duration::from_secs(5);
            }
            Err(DialError::Io(e)) => {
                if !logged {
                    info!(peer = to, %addr, "cannot reach peer ({e}); retrying");
                    logged = true;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1).max(backoff));
    }
}

enum DialError {
    Io(String),
    Refused(String),
}

async fn connect_peer(
    addr: SocketAddr,
    hello: &Hello,
    tls: Option<&PeerTls>,
    to: NodeId,
) -> Result<Conn, DialError> {
    let io = |e: std::io::Error| DialError::Io(e.to_string());
    let s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .map_err(|_| DialError::Io("timed out".into()))?
        .map_err(io)?;
    s.set_nodelay(true).map_err(io)?;
    let s: BoxStream = match tls {
        None => Box::new(s),
        Some(tls) => tokio::time::timeout(Duration::from_secs(5), tls.dial(s, to))
            .await
            .map_err(|_| DialError::Io("no TLS handshake".into()))?
            .map_err(|e| match e.kind() {
                // A certificate refused, on either side.
                std::io::ErrorKind::InvalidData => DialError::Refused(format!("TLS: {e}")),
                _ => DialError::Io(format!("TLS: {e}")),
            })?,
    };
    let mut framed = Framed::new(s, wire::codec(wire::PEER_FRAME_MAX));
    framed.send(wire::encode(hello)).await.map_err(io)?;
    let answer = tokio::time::timeout(Duration::from_secs(5), framed.next())
        .await
        .map_err(|_| DialError::Io("no welcome".into()))?
        .ok_or_else(|| DialError::Io("closed before the welcome".into()))?
        .map_err(io)?;
    match wire::decode::<Welcome>(&answer).map_err(DialError::Io)? {
        Welcome::Ok { .. } => Ok(framed),
        Welcome::Refused(why) => Err(DialError::Refused(why)),
    }
}

#[derive(Clone)]
struct ConnCtx {
    id: NodeId,
    /// The ids below this one are the cluster's so far.
    ids: Arc<AtomicU8>,
    cluster: u64,
    tx: mpsc::Sender<Inbound>,
    /// Connections open now, and the most there may be.
    open: Arc<AtomicUsize>,
    max_conns: usize,
    client_idle: Duration,
    peer_tls: Option<PeerTls>,
    client_tls: Option<ServerTls>,
}

/// Which listener a connection came in on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Side {
    Peer,
    Client,
}

/// Descriptors kept for the WAL, snapshots, the peers' outgoing
/// connections and the runtime, whatever the connections take.
const FD_RESERVE: usize = 64;

/// Raises the descriptor limit to its hard limit, and returns how many
/// connections fit below it (at most `wanted`).
fn conn_budget(wanted: usize) -> usize {
    // Soft up to hard (and on macOS, to what the kernel allows).
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            warn!("cannot read the descriptor limit: {e}");
            return wanted;
        }
    };
    let fit = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_RESERVE);
    if fit < wanted {
        warn!(
            descriptors = soft,
            connections = fit,
            "the descriptor limit allows fewer connections than --max-conns"
        );
    }
    wanted.min(fit).max(1)
}

/// Counts a connection open until dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept(listener: TcpListener, ctx: ConnCtx, side: Side) {
    let mut next = 0u64;
    let mut refused = 0u64;
    loop {
        match listener.accept().await {
            Ok((s, addr)) => {
                next += 1;
                if ctx.open.fetch_add(1, Ordering::Relaxed) >= ctx.max_conns {
                    ctx.open.fetch_sub(1, Ordering::Relaxed);
                    // Closed at once: a full server answers nothing, and
                    // its descriptors stay for the WAL. Logged, but not
                    // every one.
                    refused += 1;
                    if refused.is_power_of_two() {
                        warn!(%addr, open = ctx.max_conns, refused, "too many connections; closing a new one");
                    }
                    drop(s);
                    continue;
                }
                let slot = Slot(ctx.open.clone());
                let _ = s.set_nodelay(true);
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    // The handshake and the hello come within 10 s, or the
                    // connection is closed.
                    let first = tokio::time::timeout(HELLO_WITHIN, greet(s, addr, &ctx, side));
                    match first.await {
                        Ok(Some((framed, Hello::Peer { from, .. }))) => {
                            let parts = framed.into_parts();
                            let mut framed =
                                Framed::new(parts.io, wire::codec(wire::PEER_FRAME_MAX));
                            debug!(peer = from, %addr, "peer connected");
                            peer_reader(&mut framed, from, &ctx).await;
                        }
                        Ok(Some((framed, Hello::Client { .. }))) => {
                            client_conn(framed, addr, next, ctx, false).await
                        }
                        Ok(Some((framed, Hello::Admin { .. }))) => {
                            client_conn(framed, addr, next, ctx, true).await
                        }
                        Ok(None) => {}
                        Err(_) => {
                            warn!(%addr, ?side, "no handshake and hello within {HELLO_WITHIN:?}; closing")
                        }
                    }
                    drop(slot);
                });
            }
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Replies waiting for one client connection's writer: a client that stops
/// reading holds at most this many, each at most a client frame
/// ([`wire::CLIENT_FRAME_MAX`]), beside its read buffer (one frame at most):
/// about 576 KiB per connection in all, whatever the client sends. Past
/// it, replies are dropped (the client library resends after a timeout).
pub const CLIENT_REPLIES: usize = 8;

/// How long a new connection has for its TLS handshake and its hello.
const HELLO_WITHIN: Duration = Duration::from_secs(10);

/// A new connection's TLS handshake (if its side has TLS) and hello: the
/// connection and its hello, welcomed, or `None` (refused, with a log line
/// and, where the handshake got that far, a `Welcome::Refused`).
async fn greet(s: TcpStream, addr: SocketAddr, ctx: &ConnCtx, side: Side) -> Option<(Conn, Hello)> {
    let mut cert = None;
    let s: BoxStream = match (side, &ctx.peer_tls, &ctx.client_tls) {
        (Side::Peer, Some(tls), _) => match tls.accept(s).await {
            Ok((s, c)) => {
                cert = c;
                s
            }
            Err(e) => {
                warn!(%addr, "refusing a peer connection: TLS handshake failed: {e}");
                return None;
            }
        },
        (Side::Client, _, Some(tls)) => match tls.accept(s).await {
            Ok(s) => s,
            Err(e) => {
                warn!(%addr, "refusing a client connection: TLS handshake failed: {e}");
                return None;
            }
        },
        _ => Box::new(s),
    };
    // The hello frame is small: read it under the client limit, so that a
    // stranger cannot make us buffer a peer-sized frame.
    let mut framed = Framed::new(s, wire::codec(wire::CLIENT_FRAME_MAX));
    let first = match framed.next().await {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            warn!(%addr, "bad first frame: {e}; closing");
            return None;
        }
        None => return None,
    };
    let hello = match wire::decode::<Hello>(&first) {
        Ok(h) => h,
        Err(e) => {
            refuse(&mut framed, addr, format!("its hello is not one: {e}")).await;
            return None;
        }
    };
    if let Err(why) = admit(&hello, ctx, side, cert.as_ref()) {
        refuse(&mut framed, addr, why).await;
        return None;
    }
    let welcome = Welcome::Ok {
        id: ctx.id,
        n: ctx.ids.load(Ordering::Relaxed),
    };
    framed.send(wire::encode(&welcome)).await.ok()?;
    Some((framed, hello))
}

/// Whether a hello may go on: `Err` is why not.
fn admit(
    hello: &Hello,
    ctx: &ConnCtx,
    side: Side,
    cert: Option<&rustls::pki_types::CertificateDer<'_>>,
) -> Result<(), String> {
    match *hello {
        Hello::Peer { protocol, .. }
        | Hello::Client { protocol, .. }
        | Hello::Admin { protocol, .. }
            if protocol != wire::PROTOCOL =>
        {
            Err(format!(
                "it speaks protocol {protocol}, this server {}",
                wire::PROTOCOL
            ))
        }
        Hello::Peer { .. } if side == Side::Client => Err(
            "a replica's hello on the client address: replicas dial each other's --peers addresses"
                .into(),
        ),
        Hello::Client { .. } | Hello::Admin { .. } if side == Side::Peer => Err(
            "a client's hello on the peer address: clients dial the --endpoints addresses".into(),
        ),
        Hello::Peer { cluster, .. } if cluster != ctx.cluster => Err(format!(
            "a peer of another cluster (id {cluster}, this is {})",
            ctx.cluster
        )),
        Hello::Peer { from, to, .. }
            if usize::from(from) >= multipaxos::MAX_NODES || from == ctx.id || to != ctx.id =>
        {
            Err(format!(
                "an unknown peer: it says it is replica {from} dialing replica {to}; this is replica {}",
                ctx.id
            ))
        }
        // Only a holder of replica `from`'s key speaks as replica `from`.
        Hello::Peer { from, .. } => match &ctx.peer_tls {
            Some(tls) => tls.verify_peer(cert, from),
            None => Ok(()),
        },
        Hello::Client {
            cluster: Some(c), ..
        }
        | Hello::Admin {
            cluster: Some(c), ..
        } if c != ctx.cluster => Err(format!(
            "a client of another cluster (id {c}, this is {})",
            ctx.cluster
        )),
        Hello::Client { .. } | Hello::Admin { .. } => Ok(()),
    }
}

type Conn = Framed<BoxStream, tokio_util::codec::LengthDelimitedCodec>;

async fn refuse(framed: &mut Conn, addr: SocketAddr, why: String) {
    warn!(%addr, "refusing a connection: {why}");
    let _ = framed.send(wire::encode(&Welcome::Refused(why))).await;
}

async fn peer_reader(framed: &mut Conn, from: NodeId, ctx: &ConnCtx) {
    while let Some(frame) = framed.next().await {
        let frame = match frame {
            Ok(f) => f,
            // A peer killed mid-session ends TLS without its close_notify:
            // a closed connection, as plain TCP's end is, not a bad frame.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return debug!(peer = from, "peer connection ended: {e}")
            }
            Err(e) => return warn!(peer = from, "bad frame from peer: {e}; closing"),
        };
        let msg = match wire::decode::<PeerMsg>(&frame) {
            Ok(m) => m,
            Err(e) => return warn!(peer = from, "{e} from peer; closing"),
        };
        if ctx.tx.send(Inbound::Peer { from, msg }).await.is_err() {
            return;
        }
    }
}

/// A client's connection, or an operator's (`admin`: membership requests).
async fn client_conn(framed: Conn, addr: SocketAddr, conn: u64, ctx: ConnCtx, admin: bool) {
    let (mut sink, mut stream) = framed.split();
    let (tx, mut rx) = mpsc::channel::<Response>(CLIENT_REPLIES);
    let writer = tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            let last = matches!(r, Response::Error(_));
            if sink.send(wire::encode(&r)).await.is_err() || last {
                return;
            }
        }
    });
    loop {
        let frame = match tokio::time::timeout(ctx.client_idle, stream.next()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                debug!(%addr, "an idle client connection; closing");
                break;
            }
        };
        let why = match frame.map_err(|e| e.to_string()) {
            Ok(f) if admin => match wire::decode::<AdminRequest>(&f) {
                Ok(req) => {
                    let tx = tx.clone();
                    if ctx.tx.send(Inbound::Admin { req, conn, tx }).await.is_err() {
                        break;
                    }
                    continue;
                }
                Err(e) => e,
            },
            Ok(f) => match wire::decode_command(&f) {
                Ok(cmd) => {
                    let tx = tx.clone();
                    if ctx
                        .tx
                        .send(Inbound::Request { cmd, conn, tx })
                        .await
                        .is_err()
                    {
                        break;
                    }
                    continue;
                }
                Err(e) => e,
            },
            Err(e) => e,
        };
        warn!(%addr, "bad request from a client: {why}; closing");
        let _ = tx.send(Response::Error(why)).await;
        break;
    }
    drop(tx);
    let _ = ctx.tx.send(Inbound::ConnClosed { conn }).await;
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that is down holds at most `PEER_QUEUE_BYTES` (plus one
    /// message) of our memory, however large the messages; what its
    /// connection writes frees room again.
    #[test]
    fn a_peer_queue_is_bounded_in_bytes_not_only_in_messages() {
        let (tx, mut rx) = mpsc::channel::<Bytes>(4096);
        let q = PeerQueue {
            tx,
            bytes: Arc::new(AtomicUsize::new(0)),
        };
        let mib = Bytes::from(vec![0u8; 1 << 20]);
        for _ in 0..100 {
            q.send(mib.clone());
        }
        let queued = q.bytes.load(Ordering::Relaxed);
        assert_eq!(queued, PEER_QUEUE_BYTES, "{queued} bytes queued");
        let mut taken = 0;
        while let Ok(b) = rx.try_recv() {
            q.bytes.fetch_sub(b.len(), Ordering::Relaxed);
            taken += 1;
        }
        assert_eq!(taken, PEER_QUEUE_BYTES >> 20);
        q.send(mib.clone());
        assert_eq!(q.bytes.load(Ordering::Relaxed), 1 << 20, "room again");
        // One message larger than the whole budget still goes, alone.
        let (tx, _rx) = mpsc::channel::<Bytes>(4096);
        let q = PeerQueue {
            tx,
            bytes: Arc::new(AtomicUsize::new(0)),
        };
        q.send(Bytes::from(vec![0u8; PEER_QUEUE_BYTES + 1]));
        assert_eq!(q.bytes.load(Ordering::Relaxed), PEER_QUEUE_BYTES + 1);
    }

    /// The real service never steers the cores down BUGGIFY's rare paths,
    /// whatever its options (`tests/tidy.rs` also checks that no paxkv
    /// source names a knob other than `Buggify::OFF`).
    #[test]
    fn the_real_service_runs_the_cores_with_every_buggify_knob_off() {
        let peers: Vec<SocketAddr> = (0..3).map(|i| ([127, 0, 0, 1], 7001 + i).into()).collect();
        for id in 0..3 {
            let mut o = Options::new(id, peers.clone(), peers[0], PathBuf::from("d"), 7);
            o.bugs.read_without_lease = id == 1;
            o.snapshot_every = 1 + id as u64;
            assert_eq!(o.log_config().buggify, multipaxos::Buggify::OFF);
            assert!(!o.log_config().buggify.any());
            assert_eq!(o.server_config().buggify, kv::server::Buggify::OFF);
            assert!(!o.server_config().buggify.any());
        }
    }

    /// What a joining replica was told (by a member, kept in a file) is
    /// input: an address book naming an id no cluster has, or a
    /// malformed first configuration, is refused.
    #[test]
    fn a_joined_replicas_cluster_facts_are_checked() {
        let peer: SocketAddr = ([127, 0, 0, 1], 7001).into();
        let addrs = Addrs {
            peer: peer.to_string(),
            client: peer.to_string(),
        };
        let mut o = Options::new(3, vec![], peer, PathBuf::from("d"), 7);
        let joined = |book: Vec<(NodeId, Addrs)>, first: u16| Joined {
            first,
            window: 16,
            book,
        };
        o.joined = Some(joined(vec![(3, addrs.clone())], 0b111));
        assert_eq!(o.validate(), Ok(()));
        o.joined = Some(joined(
            vec![(3, addrs.clone()), (255, addrs.clone())],
            0b111,
        ));
        assert!(o.validate().unwrap_err().contains("out of range"));
        o.joined = Some(joined(vec![(3, addrs.clone())], 0));
        assert!(o.validate().is_err());
        o.joined = Some(joined(vec![(4, addrs)], 0b111));
        assert!(o
            .validate()
            .unwrap_err()
            .contains("not in the cluster's address book"));
    }
}
