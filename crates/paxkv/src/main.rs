//! `paxkv`: the coordination service's server, a local cluster launcher and
//! a client command line, in one binary.

use clap::{Parser, Subcommand};
use paxkv::server::Options;
use paxkv::Client;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";
const DEFAULT_PEERS: &str = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103";
/// `paxkv local`'s peer addresses are its client ports plus this.
const LOCAL_PEER_OFFSET: u16 = 100;

#[derive(Parser)]
#[command(
    name = "paxkv",
    about = "A Paxos-replicated coordination service: keys with versions, compare-and-set, sessions, ephemeral keys, locks with fencing tokens.",
    after_help = "Try it: `paxkv local` starts 3 replicas serving clients on 127.0.0.1:7001-7003; then `paxkv put 1 42`, `paxkv get 1`.\nLogs: RUST_LOG=debug for more, RUST_LOG=warn for less."
)]
struct Cli {
    /// Every replica's client address, in replica-id order.
    #[arg(long, global = true, default_value = DEFAULT_ENDPOINTS, value_delimiter = ',')]
    endpoints: Vec<SocketAddr>,
    /// The cluster's id (decimal or 0x-hex): replicas and data directories
    /// of another cluster are refused. A server needs it; a client given
    /// one refuses servers of another cluster.
    #[arg(long, global = true, value_parser = parse_u64)]
    cluster_id: Option<u64>,
    /// Talk TLS to the servers, trusting this CA to sign their certificates
    /// (which must name the IP address dialed).
    #[arg(long, global = true)]
    cacert: Option<PathBuf>,
    /// Client id: sessions, ephemeral keys and locks belong to it, so reuse
    /// it across commands (default: a random one).
    #[arg(long, global = true)]
    client_id: Option<u32>,
    /// Give up on a client command after this long.
    #[arg(long, global = true, default_value_t = 10_000)]
    timeout_ms: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run replica --id of the cluster --peers.
    Server(Box<ServerArgs>),
    /// Start a local cluster of server processes on 127.0.0.1, with a
    /// throwaway CA for peer TLS; it restarts a replica that is killed and
    /// stops them all on Ctrl-C.
    Local {
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// The replicas' data directories go under this one (n0, n1, ...),
        /// with the cluster's id and certificates.
        #[arg(long, default_value = "./paxkv-data")]
        data_dir: PathBuf,
        /// Replica i serves clients on base-port + i and its peers on
        /// base-port + 100 + i.
        #[arg(long, default_value_t = 7001)]
        base_port: u16,
        /// Seconds a killed replica stays down before `local` restarts it
        /// (one restarted by hand meanwhile is left be).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=3600))]
        restart_after: u64,
    },
    /// Make a CA and a certificate and key for each replica of cluster
    /// --cluster-id (peer TLS, and client TLS for the addresses --ip), for
    /// trying out a deployment: production signs with its own CA.
    Certs {
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// Where the files go (ca.pem, replica-<i>.pem, replica-<i>.key).
        #[arg(long)]
        dir: PathBuf,
        /// The replicas' client IP addresses the certificates also name.
        #[arg(long, default_value = "127.0.0.1", value_delimiter = ',')]
        ip: Vec<std::net::IpAddr>,
    },
    /// Jepsen-style test: start a cluster of server processes on loopback,
    /// run clients against it while a nemesis kills, pauses and corrupts
    /// replicas, then check the history (exit status 1: a violation; 2:
    /// undecided).
    Jepsen(JepsenArgs),
    /// Read a key: its value and version.
    Get { key: u64 },
    /// Write a key. The value is stored as the string's bytes (at most 32 KiB).
    Put { key: u64, value: String },
    /// Delete a key.
    Delete { key: u64 },
    /// Write VALUE if the key's version is EXPECTED (0: the key is absent).
    Cas {
        key: u64,
        expected: u64,
        value: String,
    },
    /// Write a key that vanishes when this client's session ends.
    PutEphemeral { key: u64, value: String },
    /// Open, keep alive or close this client's session (use --client-id).
    Session {
        #[command(subcommand)]
        cmd: SessionCmd,
    },
    /// Acquire or release a lock (needs a session; use --client-id).
    Lock {
        #[command(subcommand)]
        cmd: LockCmd,
    },
    /// The membership: list the replicas; add, remove or replace one while
    /// the cluster serves.
    Member {
        #[command(subcommand)]
        cmd: MemberCmd,
    },
}

#[derive(Subcommand)]
enum MemberCmd {
    /// The configuration in force, the newest one, the leader and every
    /// replica's addresses, as the replica asked sees them.
    List,
    /// Add replica ID (a new id: ids are never reused) as a learner, reached
    /// at PEER by replicas and at CLIENT by clients. Start it with
    /// `paxkv server --id ID --join ...`; the leader promotes it to voter
    /// once it caught up.
    Add {
        id: u8,
        peer: SocketAddr,
        client: SocketAddr,
    },
    /// Remove replica ID for good (the leader too: it steps down). A cluster
    /// keeps one voter at least.
    Remove { id: u8 },
    /// Replace voter OLD (a machine gone for good) by the new replica NEW:
    /// NEW catches up as a learner, then one configuration makes it a voter
    /// and removes OLD.
    Replace {
        old: u8,
        new: u8,
        peer: SocketAddr,
        client: SocketAddr,
    },
}

#[derive(Subcommand)]
enum SessionCmd {
    Open {
        #[arg(long, default_value_t = 30_000)]
        ttl_ms: u64,
    },
    Keepalive,
    Close,
}

#[derive(Subcommand)]
enum LockCmd {
    /// Prints the fencing token.
    Acquire {
        lock: u64,
    },
    Release {
        lock: u64,
        token: u64,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// This replica's id: its index in --peers (or, with --join, the id
    /// an operator added with `paxkv member add`).
    #[arg(long)]
    id: u8,
    /// Join a running cluster as the new replica --id: ask the replicas at
    /// these client addresses (any of them) for the cluster's first
    /// configuration and address book, kept in the data directory
    /// (`cluster.json`), and catch up as a learner. --peers is not used.
    /// Later starts read the data directory and need no --join.
    #[arg(long, value_delimiter = ',')]
    join: Vec<SocketAddr>,
    /// Dial replica ID at ADDR instead of its address in the address book
    /// (a tunnel or proxy between this machine and that one); repeatable.
    #[arg(long = "peer-route", value_name = "ID=ADDR", value_parser = parse_route)]
    routes: Vec<(u8, SocketAddr)>,
    /// Every replica's peer address (where replicas dial each other), in
    /// replica-id order; clients use --endpoints.
    #[arg(long, default_value = DEFAULT_PEERS, value_delimiter = ',')]
    peers: Vec<SocketAddr>,
    /// Listen for peers here instead of at this replica's --peers entry.
    #[arg(long)]
    listen_peer: Option<SocketAddr>,
    /// Listen for clients here instead of at this replica's --endpoints entry.
    #[arg(long)]
    listen_client: Option<SocketAddr>,
    /// This replica's certificate for peer TLS (PEM); it must name
    /// replica-<id>.cluster-<cluster id in hex>.paxkv.
    #[arg(long)]
    peer_cert_file: Option<PathBuf>,
    /// This replica's private key for peer TLS (PEM).
    #[arg(long)]
    peer_key_file: Option<PathBuf>,
    /// The CA that signs every replica's certificate (PEM).
    #[arg(long)]
    peer_trusted_ca_file: Option<PathBuf>,
    /// Talk to peers in plain TCP, unauthenticated: anything that reaches
    /// the peer address can then speak as a replica.
    #[arg(long)]
    insecure_plaintext_peers: bool,
    /// Serve clients TLS with this certificate (PEM; with --key-file).
    #[arg(long, requires = "key_file")]
    cert_file: Option<PathBuf>,
    #[arg(long, requires = "cert_file")]
    key_file: Option<PathBuf>,
    #[arg(long)]
    data_dir: PathBuf,
    /// Rebuild an empty data directory from the peers instead of
    /// initializing it: for a replica whose disk was replaced. (A directory
    /// that held a replica and lost its WAL rebuilds by itself.)
    #[arg(long)]
    rebuild: bool,
    #[arg(long)]
    election_ms: Option<u64>,
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// Leader lease (0: reads go through the log).
    #[arg(long)]
    lease_ms: Option<u64>,
    #[arg(long)]
    snapshot_every: Option<u64>,
    /// Compact the WAL at a snapshot once it is larger than this.
    #[arg(long)]
    compact_bytes: Option<u64>,
    /// At most this many connections at once (kept below the descriptor
    /// limit, which the server raises to its hard limit at start).
    #[arg(long, default_value_t = 4_096)]
    max_conns: usize,
    /// Close a client connection that sends nothing for this long.
    #[arg(long, default_value_t = 60_000)]
    client_idle_ms: u64,
    /// Switch on a known-buggy variant of the log core (for testing tests).
    #[arg(long = "bug")]
    bugs: Vec<String>,
}

#[derive(clap::Args)]
struct JepsenArgs {
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Seconds the clients run.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// The nemesis's schedule is drawn from it (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Fault kinds (comma-separated): kill-minority, kill-leader,
    /// pause-node, pause-leader, flip-bit, truncate, isolate-node,
    /// isolate-leader, power-cut-minority, power-cut-leader, power-cut-all,
    /// stray-peer, copy-wal, truncate-mid, silent-clients, crowd,
    /// replace-node, remove-leader, add-node (membership changes: each
    /// takes a machine never used, up to 16 ids in all); `none` for none. Power cuts mount `forgetfs` (beside this binary)
    /// under each replica and are SKIPPED where FUSE is unavailable.
    #[arg(long, value_delimiter = ',')]
    faults: Option<Vec<String>>,
    /// Pass `--bug NAME` to every server (a known-buggy variant).
    #[arg(long = "bug")]
    bugs: Vec<String>,
    /// Keep the data directories, logs and history here.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A client gives up on an operation after this long (outcome unknown).
    #[arg(long, default_value_t = 4_000)]
    op_timeout_ms: u64,
    /// Every fourth client gives up after this long instead, so that some
    /// operations end with an unknown outcome (0: none does).
    #[arg(long, default_value_t = paxkv::jepsen::SHORT_TIMEOUT_MS)]
    short_timeout_ms: u64,
    /// Linearizability search steps per key.
    #[arg(long, default_value_t = paxkv::jepsen::LIN_BUDGET)]
    budget: u64,
    /// How long an fsync takes on the power-cut filesystem.
    #[arg(long, default_value_t = paxkv::jepsen::FSYNC_DELAY_MS)]
    fsync_delay_ms: u64,
}

fn parse_route(s: &str) -> Result<(u8, SocketAddr), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ID=ADDR"))?;
    let id: u8 = id.parse().map_err(|e| format!("replica id {id:?}: {e}"))?;
    if usize::from(id) >= multipaxos::MAX_NODES {
        return Err(format!(
            "replica id {id}: ids are 0 to {}",
            multipaxos::MAX_NODES - 1
        ));
    }
    let addr = addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?;
    Ok((id, addr))
}

fn parse_u64(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?}: {e}"))
}

fn init_logs(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paxkv: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    match cli.cmd {
        Cmd::Server(ref a) => {
            init_logs("info");
            match server(&cli, a).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("paxkv server: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Local {
            nodes,
            ref data_dir,
            base_port,
            restart_after,
        } => {
            init_logs("info");
            let restart = Duration::from_secs(restart_after);
            local(&cli, nodes, data_dir, base_port, restart).await
        }
        Cmd::Jepsen(ref a) => jepsen(a).await,
        Cmd::Certs {
            nodes,
            ref dir,
            ref ip,
        } => match certs(cli.cluster_id, nodes, dir, ip) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("paxkv certs: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            init_logs("warn");
            client(cli).await
        }
    }
}

async fn server(cli: &Cli, a: &ServerArgs) -> Result<(), String> {
    let cluster = cli.cluster_id.ok_or(
        "--cluster-id is required: it is written into the data directory and refuses replicas of other clusters",
    )?;
    let joined = match paxkv::join::joined(&a.data_dir)? {
        Some(j) => Some(j),
        None if !a.join.is_empty() => Some(join(cli, a, cluster).await?),
        None => None,
    };
    // A joined replica listens where the address book says.
    let mine = joined.as_ref().and_then(|j| {
        let (_, addrs) = j.book.iter().find(|(id, _)| *id == a.id)?;
        Some((
            addrs.peer.parse::<SocketAddr>().ok(),
            addrs.client.parse::<SocketAddr>().ok(),
        ))
    });
    let endpoint = match &mine {
        Some((_, client)) => *client,
        None => cli.endpoints.get(a.id as usize).copied(),
    };
    let client_listen = match (a.listen_client, endpoint) {
        (Some(l), _) | (None, Some(l)) => l,
        (None, None) => {
            return Err(format!(
                "--endpoints has no entry for replica {} (give every replica's client address, or --listen-client)",
                a.id
            ))
        }
    };
    let mut o = Options::new(
        a.id,
        a.peers.clone(),
        client_listen,
        a.data_dir.clone(),
        cluster,
    );
    o.endpoints = cli.endpoints.clone();
    if let Some((Some(peer), _)) = mine {
        o.peer_listen = peer;
    }
    o.joined = joined;
    o.routes = a.routes.iter().copied().collect();
    if let Some(l) = a.listen_peer {
        o.peer_listen = l;
    }
    o.peer_tls = match (
        &a.peer_cert_file,
        &a.peer_key_file,
        &a.peer_trusted_ca_file,
        a.insecure_plaintext_peers,
    ) {
        (Some(cert), Some(key), Some(ca), false) => {
            let files = paxkv::tls::PeerFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            };
            Some(paxkv::tls::PeerTls::load(&files, cluster, a.id)?)
        }
        (None, None, None, true) => None,
        // One replica has no peers to authenticate.
        (None, None, None, false) if a.peers.len() == 1 && o.joined.is_none() => None,
        (None, None, None, false) => {
            return Err("peers authenticate with mutual TLS: give --peer-cert-file, --peer-key-file and --peer-trusted-ca-file \
                 (`paxkv local` shows how), or ask for unauthenticated plain TCP with --insecure-plaintext-peers"
                .into())
        }
        (_, _, _, true) => {
            return Err("--insecure-plaintext-peers and the --peer-*-file flags exclude each other".into())
        }
        _ => {
            return Err(
                "peer TLS needs all three of --peer-cert-file, --peer-key-file and --peer-trusted-ca-file".into(),
            )
        }
    };
    if let (Some(cert), Some(key)) = (&a.cert_file, &a.key_file) {
        o.client_tls = Some(paxkv::tls::ServerTls::load(cert, key)?);
    }
    o.rebuild = a.rebuild;
    if let Some(ms) = a.election_ms {
        o.timing.election_us = ms * 1000;
        o.timing.election_jitter_us = ms * 1000;
    }
    if let Some(ms) = a.heartbeat_ms {
        o.timing.heartbeat_us = ms * 1000;
    }
    if let Some(ms) = a.lease_ms {
        o.timing.lease_us = ms * 1000;
    }
    if let Some(s) = a.snapshot_every {
        o.snapshot_every = s;
    }
    if let Some(b) = a.compact_bytes {
        o.compact_bytes = b;
    }
    if a.max_conns == 0 || a.client_idle_ms == 0 {
        return Err("--max-conns and --client-idle-ms must be at least 1".into());
    }
    o.max_conns = a.max_conns;
    o.client_idle = Duration::from_millis(a.client_idle_ms);
    for b in &a.bugs {
        o.bugs.enable(b)?;
    }
    let stop = async {
        shutdown_signal().await;
        tracing::info!("stopping on a signal");
    };
    tokio::select! {
        r = paxkv::server::run(o) => r,
        _ = stop => Ok(()),
    }
}

/// What the cluster at `a.join` tells a new replica (its first configuration,
/// α, the address book): the replica must be in the book already.
async fn join(cli: &Cli, a: &ServerArgs, cluster: u64) -> Result<paxkv::server::Joined, String> {
    let mut c = Client::via(a.join.clone(), rand::random())
        .cluster(cluster)
        .timeout(Duration::from_millis(cli.timeout_ms));
    if let Some(ca) = &cli.cacert {
        c = c.tls(paxkv::tls::ClientTls::load(ca)?);
    }
    // The address book reaches the replica asked a moment after the change
    // that adds this one: ask again for a while.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(cli.timeout_ms);
    let view = loop {
        let view = match c.admin(kv::server::Admin::List).await {
            Ok(kv::server::AdminReply::Members(v)) => v,
            Ok(r) => return Err(format!("--join: unexpected answer {r:?}")),
            Err(e) => return Err(format!("--join: no replica at {:?} answered: {e}", a.join)),
        };
        let listed = view.peers.iter().any(|(id, _)| *id == a.id);
        if listed || tokio::time::Instant::now() >= deadline {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if !view.peers.iter().any(|(id, _)| *id == a.id) {
        return Err(format!(
            "--join: replica {} is not in the cluster's address book: add it first \
             (`paxkv member add {} PEER CLIENT`, or `member replace`)",
            a.id, a.id
        ));
    }
    tracing::info!(
        first = view.first,
        window = view.window,
        "joining: the cluster answered"
    );
    Ok(paxkv::server::Joined {
        first: view.first,
        window: view.window,
        book: view.peers,
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn jepsen(a: &JepsenArgs) -> ExitCode {
    use paxkv::jepsen::{self, FaultKind};
    if !(1..=multipaxos::MAX_NODES).contains(&a.nodes) {
        eprintln!(
            "paxkv jepsen: --nodes {}: 1 to {}",
            a.nodes,
            multipaxos::MAX_NODES
        );
        return ExitCode::FAILURE;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("paxkv jepsen: cannot find my own binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let seed = a.seed.unwrap_or_else(rand::random);
    let mut cfg = jepsen::Config::new(exe, a.nodes, Duration::from_secs(a.duration), seed);
    cfg.clients = a.clients;
    cfg.bugs = a.bugs.clone();
    cfg.dir = a.dir.clone();
    cfg.op_timeout = Duration::from_millis(a.op_timeout_ms);
    cfg.short_timeout = Duration::from_millis(a.short_timeout_ms);
    cfg.lin_budget = a.budget;
    cfg.fsync_delay = Duration::from_millis(a.fsync_delay_ms);
    if let Some(f) = &a.faults {
        cfg.faults = Vec::new();
        for name in f.iter().filter(|n| n.as_str() != "none") {
            match FaultKind::parse(name) {
                Ok(k) => cfg.faults.push(k),
                Err(e) => {
                    eprintln!("paxkv jepsen: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    for b in &cfg.bugs {
        if let Err(e) = multipaxos::Bugs::default().enable(b) {
            eprintln!("paxkv jepsen: --bug {b}: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Ctrl-C or SIGTERM drops the run, whose cluster kills its servers.
    let summary = tokio::select! {
        s = jepsen::run(&cfg) => s,
        _ = shutdown_signal() => {
            eprintln!("paxkv jepsen: interrupted; every server it started is stopped (seed {seed})");
            return ExitCode::from(130);
        }
    };
    print!("{}", summary.render());
    if !summary.violations.is_empty() {
        ExitCode::FAILURE
    } else if !summary.passed() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

async fn local(
    cli: &Cli,
    nodes: u8,
    data_dir: &std::path::Path,
    base_port: u16,
    restart: Duration,
) -> ExitCode {
    match local_cluster(cli, nodes, data_dir, base_port, restart).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("paxkv local: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What `local` hears from the task supervising one replica.
enum Supervised {
    /// The replica failed as it started (a bad directory, a port): the
    /// cluster was never whole.
    StartFailed(u8),
    /// It exited on its own (not killed); `local` does not restart it.
    Exited,
}

async fn local_cluster(
    cli: &Cli,
    nodes: u8,
    data_dir: &std::path::Path,
    base_port: u16,
    restart: Duration,
) -> Result<ExitCode, String> {
    if !(1..=multipaxos::MAX_NODES as u8).contains(&nodes) {
        return Err(format!("--nodes {nodes}: 1 to {}", multipaxos::MAX_NODES));
    }
    if base_port as u32 + LOCAL_PEER_OFFSET as u32 + nodes as u32 > u16::MAX as u32 {
        return Err(format!(
            "--base-port {base_port} leaves no room for {nodes} replicas' ports"
        ));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let addr = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
    let endpoints: Vec<SocketAddr> = (0..nodes as u16).map(|i| addr(base_port + i)).collect();
    let peers: Vec<SocketAddr> = (0..nodes as u16)
        .map(|i| addr(base_port + LOCAL_PEER_OFFSET + i))
        .collect();
    // A port already taken is most often a replica of an earlier `local`
    // still running: joining it would carry on with another cluster's
    // replica (or with fewer replicas than asked). Refuse instead.
    for p in endpoints.iter().chain(&peers) {
        if let Err(e) = std::net::TcpListener::bind(p) {
            return Err(format!(
                "{p} is taken ({e}): is a replica of an earlier `paxkv local` still running? \
                 Stop it, or choose other ports with --base-port"
            ));
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let cluster = local_cluster_id(data_dir, cli.cluster_id)?;
    // The throwaway CA and certificates live with the data: a restarted
    // `local` on the same directory is the same cluster with the same keys.
    let tls_dir = data_dir.join("tls");
    let files = paxkv::tls::Generated::paths(&tls_dir, nodes);
    if !files
        .replicas
        .iter()
        .all(|r| r.cert.exists() && r.key.exists())
        || !files.ca.exists()
    {
        paxkv::tls::generate(&tls_dir, cluster, nodes, &[addr(0).ip()])?;
    }
    let join = |a: &[SocketAddr]| {
        a.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Supervised>(16);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for i in 0..nodes {
        let r = &files.replicas[i as usize];
        let args: Vec<String> = vec![
            "server".into(),
            "--id".into(),
            i.to_string(),
            "--endpoints".into(),
            join(&endpoints),
            "--peers".into(),
            join(&peers),
            "--cluster-id".into(),
            format!("{cluster:#x}"),
            "--data-dir".into(),
            data_dir.join(format!("n{i}")).display().to_string(),
            "--peer-cert-file".into(),
            r.cert.display().to_string(),
            "--peer-key-file".into(),
            r.key.display().to_string(),
            "--peer-trusted-ca-file".into(),
            r.ca.display().to_string(),
        ];
        tasks.push(tokio::spawn(supervise(
            i,
            data_dir.join(format!("n{i}")),
            exe.clone(),
            args,
            tx.clone(),
            stop_rx.clone(),
            restart,
        )));
    }
    drop(tx);
    println!(
        "a {nodes}-replica cluster {cluster:#x}: clients on {}, peers on {} with mutual TLS \
         (throwaway CA in {}); data in {}",
        join(&endpoints),
        join(&peers),
        tls_dir.display(),
        data_dir.display()
    );
    println!(
        "try: paxkv put 1 42 && paxkv get 1. A replica killed is restarted after {} s; Ctrl-C stops them all",
        restart.as_secs()
    );
    let mut failed = false;
    let mut live = nodes;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            ev = rx.recv() => match ev {
                Some(Supervised::StartFailed(i)) => {
                    eprintln!("paxkv local: replica {i} failed to start; stopping the others");
                    failed = true;
                    break;
                }
                Some(Supervised::Exited) => {
                    live -= 1;
                    if live == 0 {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // A replica someone restarted by hand serves this cluster's data too:
    // `local` owns the cluster, so it stops that one as well.
    for i in 0..nodes {
        let dir = data_dir.join(format!("n{i}"));
        if let Some(pid) = paxkv::lock::holder(&dir) {
            println!(
                "replica {i} (pid {pid}) was started outside `local` on {}: stopping it",
                dir.display()
            );
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            for _ in 0..50 {
                if paxkv::lock::holder(&dir).is_none() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    println!("stopped");
    Ok(match failed {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    })
}

fn certs(
    cluster: Option<u64>,
    nodes: u8,
    dir: &std::path::Path,
    ips: &[std::net::IpAddr],
) -> Result<(), String> {
    let cluster = cluster.ok_or("--cluster-id is required: the certificates name it")?;
    if !(1..=multipaxos::MAX_NODES as u8).contains(&nodes) {
        return Err(format!("--nodes {nodes}: 1 to {}", multipaxos::MAX_NODES));
    }
    // Never overwrite a key: a cluster's replicas would lose their identity.
    let g = paxkv::tls::Generated::paths(dir, nodes);
    let files = std::iter::once(&g.ca).chain(g.replicas.iter().flat_map(|r| [&r.cert, &r.key]));
    for f in files {
        if f.exists() {
            return Err(format!(
                "{} exists; remove it or choose another --dir",
                f.display()
            ));
        }
    }
    let g = paxkv::tls::generate(dir, cluster, nodes, ips)?;
    println!("CA: {}", g.ca.display());
    for (i, r) in g.replicas.iter().enumerate() {
        println!(
            "replica {i}: --peer-cert-file {} --peer-key-file {} --peer-trusted-ca-file {} \
             (names {})",
            r.cert.display(),
            r.key.display(),
            r.ca.display(),
            paxkv::tls::replica_name(cluster, i as u8)
        );
    }
    Ok(())
}

/// Runs replica `i` until `stop`: restarts it when a signal killed it,
/// reports when it failed to start or exited by itself.
async fn supervise(
    i: u8,
    dir: PathBuf,
    exe: PathBuf,
    args: Vec<String>,
    tx: tokio::sync::mpsc::Sender<Supervised>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    restart: Duration,
) {
    use std::os::unix::process::ExitStatusExt;
    use tokio::io::AsyncBufReadExt;
    loop {
        let started = std::time::Instant::now();
        let mut child = match tokio::process::Command::new(&exe)
            .args(&args)
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("paxkv local: cannot start replica {i}: {e}");
                let _ = tx.send(Supervised::StartFailed(i)).await;
                return;
            }
        };
        println!("replica {i}: pid {}", child.id().unwrap_or(0));
        if let Some(err) = child.stderr.take() {
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(err).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    println!("n{i} | {l}");
                }
            });
        }
        let status = tokio::select! {
            s = child.wait() => s,
            _ = stop.changed() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return;
            }
        };
        let shown = status
            .as_ref()
            .map_or_else(|e| e.to_string(), |s| s.to_string());
        println!("replica {i} exited: {shown}");
        let status = match status {
            Ok(s) => s,
            Err(_) => return,
        };
        if !status.success() && status.signal().is_none() && started.elapsed() < restart {
            let _ = tx.send(Supervised::StartFailed(i)).await;
            return;
        }
        if status.signal().is_none() {
            let _ = tx.send(Supervised::Exited).await;
            return;
        }
        println!("replica {i}: restarting in {} s", restart.as_secs());
        tokio::select! {
            _ = tokio::time::sleep(restart) => {}
            _ = stop.changed() => return,
        }
        // Someone restarted it by hand meanwhile: leave it be (and stop it
        // with the others at the end).
        if let Some(pid) = paxkv::lock::holder(&dir) {
            println!("replica {i} was restarted outside `local` (pid {pid}); `local` stops it at the end");
            let _ = stop.changed().await;
            return;
        }
    }
}

/// The cluster id of `local`'s data directory: the one it was made with,
/// or a fresh random one for a fresh directory (so that a replica left over
/// from a deleted cluster is refused by the new one's replicas).
fn local_cluster_id(data_dir: &std::path::Path, asked: Option<u64>) -> Result<u64, String> {
    let path = data_dir.join("cluster-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = parse_u64(text.trim())
                .map_err(|e| format!("{}: not a cluster id: {e}", path.display()))?;
            match asked {
                Some(a) if a != id => Err(format!(
                    "{} holds cluster {id:#x}, not --cluster-id {a:#x}",
                    data_dir.display()
                )),
                _ => Ok(id),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = asked.unwrap_or_else(rand::random);
            std::fs::write(&path, format!("{id:#x}\n"))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A value as a terminal may show it: text as text, but every control
/// character (an escape sequence, a carriage return) and every byte that is
/// not UTF-8 escaped, so that a stored value cannot drive the terminal.
fn printable(v: &kv::Value) -> String {
    match v.as_str() {
        Some(s) => {
            let mut out = String::with_capacity(s.len());
            for c in s.chars() {
                match c.is_control() {
                    true => out.extend(c.escape_default()),
                    false => out.push(c),
                }
            }
            out
        }
        None => v.as_bytes().escape_ascii().to_string(),
    }
}

async fn client(cli: Cli) -> ExitCode {
    let id = cli.client_id.unwrap_or_else(rand::random);
    let mut c =
        Client::new(cli.endpoints.clone(), id).timeout(Duration::from_millis(cli.timeout_ms));
    if let Some(cluster) = cli.cluster_id {
        c = c.cluster(cluster);
    }
    if let Some(ca) = &cli.cacert {
        match paxkv::tls::ClientTls::load(ca) {
            Ok(tls) => c = c.tls(tls),
            Err(e) => {
                eprintln!("paxkv: --cacert: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // Ok(true): done; Ok(false): the service said no (exit status 3).
    let r: Result<bool, paxkv::client::Error> = async {
        Ok(match cli.cmd {
            Cmd::Get { key } => match c.get(key).await? {
                Some((v, ver)) => {
                    println!("{} (version {ver})", printable(&v));
                    true
                }
                None => {
                    println!("absent");
                    false
                }
            },
            Cmd::Put { key, value } => {
                println!("ok (version {})", c.put(key, value.as_str()).await?);
                true
            }
            Cmd::Delete { key } => {
                let d = c.delete(key).await?;
                println!("{}", if d { "deleted" } else { "absent" });
                d
            }
            Cmd::Cas {
                key,
                expected,
                value,
            } => match c.cas(key, expected, value.as_str()).await? {
                Ok(v) => {
                    println!("ok (version {v})");
                    true
                }
                Err(actual) => {
                    println!("not written: the version is {actual}, not {expected}");
                    false
                }
            },
            Cmd::PutEphemeral { key, value } => match c.put_ephemeral(key, value.as_str()).await? {
                kv::Reply::Version(v) => {
                    println!("ok (version {v}, owned by client {id}'s session)");
                    true
                }
                r => {
                    println!("not written: {r:?} (open a session with the same --client-id)");
                    false
                }
            },
            Cmd::Session { ref cmd } => {
                let r = match cmd {
                    SessionCmd::Open { ttl_ms } => {
                        c.open_session(Duration::from_millis(*ttl_ms)).await?
                    }
                    SessionCmd::Keepalive => c.keep_alive().await?,
                    SessionCmd::Close => {
                        let closed = c.close_session().await?;
                        println!("{}", if closed { "closed" } else { "no live session" });
                        return Ok(closed);
                    }
                };
                match r {
                    Ok(until) => {
                        println!("session of client {id} live until service time {until} us");
                        true
                    }
                    Err(e) => {
                        println!("no session for client {id}: {e:?}");
                        false
                    }
                }
            }
            Cmd::Lock {
                cmd: LockCmd::Acquire { lock },
            } => match c.acquire(lock).await? {
                Ok(token) => {
                    println!("lock {lock} acquired by client {id}: fencing token {token}");
                    true
                }
                Err(e) => {
                    println!("lock {lock} not acquired: {e:?}");
                    false
                }
            },
            Cmd::Lock {
                cmd: LockCmd::Release { lock, token },
            } => {
                let r = c.release(lock, token).await?;
                println!(
                    "{}",
                    if r {
                        "released"
                    } else {
                        "not held under that token"
                    }
                );
                r
            }
            Cmd::Member { ref cmd } => member(&mut c, cmd).await?,
            Cmd::Server(_) | Cmd::Local { .. } | Cmd::Jepsen(_) | Cmd::Certs { .. } => {
                unreachable!("not a client command")
            }
        })
    }
    .await;
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("paxkv: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `paxkv member ...`: Ok(true) done, Ok(false) refused by the service.
async fn member(c: &mut Client, cmd: &MemberCmd) -> Result<bool, paxkv::client::Error> {
    use kv::server::{Admin, AdminReply};
    use multipaxos::{bit, Change, Members};
    let addrs = |peer: &SocketAddr, client: &SocketAddr| kv::Addrs {
        peer: peer.to_string(),
        client: client.to_string(),
    };
    let set = |s: u16| -> String {
        let ids: Vec<String> = (0..multipaxos::MAX_NODES as u8)
            .filter(|i| s & bit(*i) != 0)
            .map(|i| i.to_string())
            .collect();
        format!("{{{}}}", ids.join(","))
    };
    let show = |m: &Members| {
        let mut t = format!("epoch {}: voters {}", m.epoch, set(m.voters));
        if m.learners != 0 {
            t += &format!(", learners {}", set(m.learners));
        }
        if m.leaving != 0 {
            t += &format!(", leaving {}", set(m.leaving));
        }
        if m.gone != 0 {
            t += &format!(", removed {}", set(m.gone));
        }
        t
    };
    // Checked before anything takes them for machines of the cluster.
    let ids = match *cmd {
        MemberCmd::List => vec![],
        MemberCmd::Add { id, .. } | MemberCmd::Remove { id } => vec![id],
        MemberCmd::Replace { old, new, .. } => vec![old, new],
    };
    if let Some(id) = ids
        .iter()
        .find(|id| usize::from(**id) >= multipaxos::MAX_NODES)
    {
        println!(
            "no such replica id {id}: ids are 0 to {}",
            multipaxos::MAX_NODES - 1
        );
        return Ok(false);
    }
    let admin = match cmd {
        MemberCmd::List => Admin::List,
        MemberCmd::Add { id, peer, client } => Admin::Change {
            change: Change::Add(*id),
            addrs: vec![(*id, addrs(peer, client))],
        },
        MemberCmd::Remove { id } => Admin::Change {
            change: Change::Remove(*id),
            addrs: vec![],
        },
        MemberCmd::Replace {
            old,
            new,
            peer,
            client,
        } => Admin::Change {
            change: Change::Replace {
                old: bit(*old),
                new: bit(*new),
            },
            addrs: vec![(*new, addrs(peer, client))],
        },
    };
    match c.admin(admin).await? {
        AdminReply::Members(v) => {
            let leader = v.leader.map_or("none known".into(), |l| l.to_string());
            println!("replica {} answers; leader: {leader}", v.from);
            println!("in force: {}", show(&v.in_force));
            if v.latest != v.in_force {
                println!(
                    "next:     {} (chosen; takes effect within {} slots)",
                    show(&v.latest),
                    v.window
                );
            }
            // A server's answer is input: an id no cluster has is not shown
            // (and never taken for a set member).
            let known = v
                .peers
                .iter()
                .filter(|(id, _)| usize::from(*id) < multipaxos::MAX_NODES);
            for (id, a) in known {
                let m = v.latest;
                let role = if m.votes(*id) && m.leaving & bit(*id) != 0 {
                    "voter (leaving)"
                } else if m.votes(*id) {
                    "voter"
                } else if m.learns(*id) {
                    "learner"
                } else if m.gone & bit(*id) != 0 {
                    "removed"
                } else {
                    "not a member"
                };
                println!(
                    "  {id:>2}  {role:<15} peer {:<21} client {}",
                    a.peer, a.client
                );
            }
            Ok(true)
        }
        AdminReply::Changed(Ok(m)) => {
            println!("proposed {}", show(&m));
            Ok(true)
        }
        AdminReply::Changed(Err(why)) => {
            println!("refused: {why}");
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn a_value_printed_to_a_terminal_cannot_drive_it() {
        let v = kv::Value::from("red \u{1b}[31m\r\nend é".as_bytes());
        assert_eq!(printable(&v), "red \\u{1b}[31m\\r\\nend é");
        let bytes = kv::Value::from(&[0xff, b'a', 0x1b][..]);
        assert_eq!(printable(&bytes), "\\xffa\\x1b");
    }
}
