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

const DEFAULT_PEERS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

#[derive(Parser)]
#[command(
    name = "paxkv",
    about = "A Paxos-replicated coordination service: keys with versions, compare-and-set, sessions, ephemeral keys, locks with fencing tokens.",
    after_help = "Try it: `paxkv local` starts 3 replicas on 127.0.0.1:7001-7003; then `paxkv put 1 42`, `paxkv get 1`.\nLogs: RUST_LOG=debug for more, RUST_LOG=warn for less."
)]
struct Cli {
    /// Every replica's address, in replica-id order.
    #[arg(long, global = true, default_value = DEFAULT_PEERS, value_delimiter = ',')]
    peers: Vec<SocketAddr>,
    /// The cluster's id (decimal or 0x-hex): replicas and data directories
    /// of another cluster are refused.
    #[arg(long, global = true, default_value = "1", value_parser = parse_u64)]
    cluster_id: u64,
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
    Server(ServerArgs),
    /// Start a local cluster of server processes on 127.0.0.1 (stopped on Ctrl-C).
    Local {
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// The replicas' data directories go under this one (n0, n1, ...).
        #[arg(long, default_value = "./paxkv-data")]
        data_dir: PathBuf,
        /// Replica i listens on base-port + i.
        #[arg(long, default_value_t = 7001)]
        base_port: u16,
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
    /// This replica's id: its index in --peers.
    #[arg(long)]
    id: u8,
    /// Listen here instead of at this replica's --peers entry.
    #[arg(long)]
    listen: Option<SocketAddr>,
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
    /// isolate-leader, power-cut-minority, power-cut-leader, power-cut-all;
    /// `none` for none. Power cuts mount `forgetfs` (beside this binary)
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
    /// Linearizability search steps per key.
    #[arg(long, default_value_t = 2_000_000)]
    budget: u64,
    /// How long an fsync takes on the power-cut filesystem.
    #[arg(long, default_value_t = paxkv::jepsen::FSYNC_DELAY_MS)]
    fsync_delay_ms: u64,
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
        } => {
            init_logs("info");
            local(&cli, nodes, data_dir, base_port).await
        }
        Cmd::Jepsen(ref a) => jepsen(a).await,
        _ => {
            init_logs("warn");
            client(cli).await
        }
    }
}

async fn server(cli: &Cli, a: &ServerArgs) -> Result<(), String> {
    let mut o = Options::new(a.id, cli.peers.clone(), a.data_dir.clone(), cli.cluster_id);
    if let Some(l) = a.listen {
        o.listen = l;
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

async fn local(cli: &Cli, nodes: u8, data_dir: &std::path::Path, base_port: u16) -> ExitCode {
    use tokio::io::AsyncBufReadExt;
    if !(1..=7).contains(&nodes) {
        eprintln!("paxkv local: --nodes {nodes}: 1 to 7");
        return ExitCode::FAILURE;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("paxkv local: cannot find my own binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let peers: Vec<String> = (0..nodes as u16)
        .map(|i| format!("127.0.0.1:{}", base_port + i))
        .collect();
    // A port already taken is most often a replica of an earlier `local`
    // still running: joining it would carry on with another cluster's
    // replica (or with fewer replicas than asked). Refuse instead.
    for p in &peers {
        if let Err(e) = std::net::TcpListener::bind(p) {
            eprintln!(
                "paxkv local: {p} is taken ({e}): is a replica of an earlier `paxkv local` still running? \
                 Stop it, or choose other ports with --base-port"
            );
            return ExitCode::FAILURE;
        }
    }
    let peers = peers.join(",");
    let mut children = Vec::new();
    for i in 0..nodes {
        let dir = data_dir.join(format!("n{i}"));
        let args = [
            "server".to_string(),
            "--id".into(),
            i.to_string(),
            "--peers".into(),
            peers.clone(),
            "--cluster-id".into(),
            cli.cluster_id.to_string(),
            "--data-dir".into(),
            dir.display().to_string(),
        ];
        let mut child = match tokio::process::Command::new(&exe)
            .args(&args)
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("paxkv local: cannot start replica {i}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "replica {i}: pid {}, restart it with: paxkv {}",
            child.id().unwrap_or(0),
            args.join(" ")
        );
        if let Some(err) = child.stderr.take() {
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(err).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    println!("n{i} | {l}");
                }
            });
        }
        children.push(child);
    }
    println!(
        "a {nodes}-replica cluster on --peers {peers} (data in {}); Ctrl-C stops it",
        data_dir.display()
    );
    println!("try: paxkv put 1 42 && paxkv get 1");
    let mut waits =
        futures_util::future::select_all(children.iter_mut().map(|c| Box::pin(c.wait())));
    let mut live = nodes as usize;
    let started = std::time::Instant::now();
    let mut failed = false;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            (r, i, rest) = &mut waits, if live > 0 => {
                println!("replica {i} exited: {}", r.as_ref().map_or_else(|e| e.to_string(), |s| s.to_string()));
                live -= 1;
                // One that fails as it starts (a bad directory, a port):
                // the cluster was never whole; stop the rest and say so.
                if started.elapsed() < Duration::from_secs(3) && !r.is_ok_and(|s| s.success()) {
                    eprintln!("paxkv local: replica {i} failed to start; stopping the others");
                    failed = true;
                    break;
                }
                if rest.is_empty() {
                    break;
                }
                waits = futures_util::future::select_all(rest);
            }
        }
    }
    drop(waits);
    for c in &mut children {
        let _ = c.start_kill();
    }
    for c in &mut children {
        let _ = c.wait().await;
    }
    println!("stopped");
    match failed {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
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
    let mut c = Client::new(cli.peers.clone(), id)
        .cluster(cli.cluster_id)
        .timeout(Duration::from_millis(cli.timeout_ms));
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
            Cmd::Server(_) | Cmd::Local { .. } | Cmd::Jepsen(_) => {
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
