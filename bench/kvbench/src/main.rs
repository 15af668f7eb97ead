//! kvbench: the load generator of `bench/etcd-vs-paxkv.sh`.
//!
//! `kvbench run` measures one cell: `--clients` closed-loop clients (each
//! with its own connection, one request outstanding, the next sent as soon
//! as the last is answered) doing one kind of operation against one
//! cluster, etcd or paxkv, for a warm-up and then a measuring window. Keys
//! are drawn uniformly from `--keys`, values are `--value-bytes` long, and
//! every client talks to the leader (etcd: the endpoint whose status names
//! itself leader; paxkv: the replica its client library was redirected
//! to). Gets are linearizable in both: etcd's default (serializable =
//! false: a ReadIndex round through the leader), paxkv's default (the
//! leader answers under its lease, or through the log). Before a get cell,
//! every key is written once.
//!
//! Operations that complete inside the window count: throughput is their
//! number over the window's length, and their latencies (call to answer)
//! go into an HDR histogram (microseconds, 3 significant digits). Each
//! server process's CPU (utime + stime from /proc/PID/stat) and the load
//! generator's own are read at the window's start and end. The result is
//! one JSON line on stdout.
//!
//! `kvbench table FILES` reads such lines (several runs of each cell) and
//! prints one Markdown table: per label, operation and client count, the
//! median over runs of each figure. A cell's label names what was measured:
//! the system (`etcd`, `paxkv`) by default, or what `run --label` says,
//! e.g. the script's `paxkv@6e57de4` for a paxkv built at another revision
//! beside the current one; lines written before labels count under their
//! system. `kvbench wait` waits until a cluster takes a write (the script's
//! readiness check).

use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Closed-loop load generator for the etcd-vs-paxkv benchmark")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure one cell and print it as a JSON line.
    Run(RunArgs),
    /// Wait until the cluster takes a write.
    Wait {
        #[arg(long)]
        system: System,
        /// host:port of every member, by id.
        #[arg(long, value_delimiter = ',', required = true)]
        endpoints: Vec<SocketAddr>,
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
    /// Print the Markdown table of the cells in these JSON-lines files
    /// (the median over runs of each figure).
    Table { files: Vec<PathBuf> },
    /// Time `count` fdatasyncs of 200-byte appends to a file in `dir` (what
    /// a WAL does per group commit) and print their p50/p90/p99.
    FsyncProbe {
        dir: PathBuf,
        #[arg(long, default_value_t = 300)]
        count: usize,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum System {
    Etcd,
    Paxkv,
}

impl System {
    /// Its name on the command line, and its cells' default label.
    fn name(self) -> &'static str {
        match self {
            System::Etcd => "etcd",
            System::Paxkv => "paxkv",
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Put,
    Get,
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long)]
    system: System,
    /// host:port of every member's client port, by id.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<SocketAddr>,
    /// Every member's process id, in the order of --endpoints (for CPU).
    #[arg(long, value_delimiter = ',', required = true)]
    pids: Vec<u32>,
    #[arg(long)]
    op: Op,
    #[arg(long, default_value_t = 1)]
    clients: usize,
    #[arg(long, default_value_t = 3.0)]
    warmup_secs: f64,
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// A label copied into the output (the run number).
    #[arg(long, default_value_t = 0)]
    run: u32,
    /// The name the table shows this cell under (default: the system's,
    /// `etcd` or `paxkv`), to tell apart two builds of one system: the
    /// script's `paxkv@<commit>` for paxkv built at another revision.
    #[arg(long)]
    label: Option<String>,
}

/// One cell's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cell {
    system: System,
    /// What the table shows the cell under (`run --label`, by default the
    /// system's name); absent from lines written before labels.
    #[serde(default)]
    label: Option<String>,
    op: Op,
    clients: usize,
    run: u32,
    secs: f64,
    ops: u64,
    errors: u64,
    ops_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    /// The member the clients ended up talking to (index into endpoints).
    leader: usize,
    /// CPU of each member's process over the window, in cores, by id.
    cpu_members: Vec<f64>,
    /// CPU of this load generator over the window, in cores.
    cpu_client: f64,
    /// etcd only: WAL fsyncs by the leader during the window (from its
    /// /metrics), and puts per fsync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    leader_fsyncs: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let r = match cli.cmd {
        Cmd::Run(a) => rt.block_on(run(a)).map(|cell| {
            println!(
                "{}",
                serde_json::to_string(&cell).expect("a cell serializes")
            )
        }),
        Cmd::Wait {
            system,
            endpoints,
            timeout_secs,
        } => rt.block_on(wait(system, &endpoints, Duration::from_secs(timeout_secs))),
        Cmd::Table { files } => table(&files),
        Cmd::FsyncProbe { dir, count } => fsync_probe(&dir, count),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvbench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A client of either system.
enum Conn {
    Etcd(etcd_client::KvClient),
    Paxkv(paxkv::Client),
}

/// What all clients share: keys (etcd's as strings of bytes) and the value.
struct Load {
    etcd_keys: Vec<Vec<u8>>,
    value: Vec<u8>,
}

impl Conn {
    async fn put(&mut self, load: &Load, key: u64) -> Result<(), String> {
        match self {
            Conn::Etcd(c) => c
                .put(
                    load.etcd_keys[key as usize].clone(),
                    load.value.clone(),
                    None,
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Conn::Paxkv(c) => c
                .put(key, &load.value[..])
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    async fn get(&mut self, load: &Load, key: u64) -> Result<(), String> {
        match self {
            Conn::Etcd(c) => {
                let r = c
                    .get(load.etcd_keys[key as usize].clone(), None)
                    .await
                    .map_err(|e| e.to_string())?;
                match r.kvs().first() {
                    Some(kv) if kv.value().len() == load.value.len() => Ok(()),
                    other => Err(format!("key {key}: read {other:?}")),
                }
            }
            Conn::Paxkv(c) => match c.get(key).await.map_err(|e| e.to_string())? {
                Some((v, _)) if v.len() == load.value.len() => Ok(()),
                other => Err(format!("key {key}: read {other:?}")),
            },
        }
    }
}

/// The etcd member that leads, by asking each for its status.
async fn etcd_leader(endpoints: &[SocketAddr]) -> Result<usize, String> {
    let mut ids = Vec::new();
    let mut leader = None;
    for e in endpoints {
        let mut c = etcd_client::Client::connect([format!("http://{e}")], None)
            .await
            .map_err(|err| format!("cannot reach etcd at {e}: {err}"))?;
        let s = c
            .status()
            .await
            .map_err(|err| format!("etcd at {e}: {err}"))?;
        let me = s.header().map_or(0, |h| h.member_id());
        ids.push(me);
        leader = Some(s.leader());
    }
    let leader = leader.ok_or("no endpoints")?;
    ids.iter()
        .position(|&id| id == leader)
        .ok_or_else(|| format!("no endpoint is the leader {leader:x} (members {ids:x?})"))
}

async fn connect(
    system: System,
    endpoints: &[SocketAddr],
    leader: usize,
    id: u32,
) -> Result<Conn, String> {
    match system {
        System::Etcd => {
            let url = format!("http://{}", endpoints[leader]);
            let c = etcd_client::Client::connect([url], None)
                .await
                .map_err(|e| format!("cannot reach etcd: {e}"))?;
            Ok(Conn::Etcd(c.kv_client()))
        }
        System::Paxkv => Ok(Conn::Paxkv(
            paxkv::Client::new(endpoints.to_vec(), id).timeout(Duration::from_secs(10)),
        )),
    }
}

/// Total CPU time (user + system) of a process so far, in seconds.
fn cpu_secs(pid: &str) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')').ok_or("a malformed stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().map_err(|e| e.to_string())?
        + f[12].parse::<u64>().map_err(|e| e.to_string())?;
    Ok(ticks as f64 / clock_ticks())
}

/// USER_HZ: the unit of /proc's times (100 on every Linux we know of; the
/// script passes `getconf CLK_TCK` if it differs).
fn clock_ticks() -> f64 {
    std::env::var("CLK_TCK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100.0)
}

/// etcd's WAL fsync count, from a member's Prometheus metrics.
fn etcd_fsyncs(endpoint: SocketAddr) -> Option<u64> {
    let mut s = TcpStream::connect_timeout(&endpoint, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find(|l| l.starts_with("etcd_disk_wal_fsync_duration_seconds_count"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<f64>().ok())
        .map(|n| n as u64)
}

/// xorshift64*: each client's key sequence, seeded by its number.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

struct Tally {
    hist: Histogram<u64>,
    ops: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn run(a: RunArgs) -> Result<Cell, String> {
    if a.pids.len() != a.endpoints.len() {
        return Err("--pids needs one process id per endpoint".into());
    }
    if a.clients == 0 || a.keys == 0 || a.secs <= 0.0 {
        return Err("--clients, --keys and --secs must be positive".into());
    }
    if a.label.as_deref().is_some_and(|l| l.trim().is_empty()) {
        return Err("--label must not be empty".into());
    }
    let leader = match a.system {
        System::Etcd => etcd_leader(&a.endpoints).await?,
        System::Paxkv => 0, // learned from the clients below
    };
    let load = Arc::new(Load {
        etcd_keys: (0..a.keys)
            .map(|k| format!("key{k:08}").into_bytes())
            .collect(),
        value: (0..a.value_bytes).map(|i| b'a' + (i % 26) as u8).collect(),
    });
    let mut conns = Vec::new();
    for i in 0..a.clients {
        // paxkv client ids: one per client, apart from any other run's
        // (their request numbers start at the wall clock anyway).
        let id = 1_000_000 + i as u32;
        conns.push(connect(a.system, &a.endpoints, leader, id).await?);
    }
    if a.op == Op::Get {
        // Every key exists before it is read: the clients write them all.
        let per = a.keys.div_ceil(a.clients as u64);
        let mut tasks = Vec::new();
        for (i, mut c) in conns.into_iter().enumerate() {
            let load = load.clone();
            let keys = (i as u64 * per)..((i as u64 + 1) * per).min(a.keys);
            tasks.push(tokio::spawn(async move {
                for k in keys {
                    c.put(&load, k).await?;
                }
                Ok::<Conn, String>(c)
            }));
        }
        conns = Vec::new();
        for t in tasks {
            conns.push(t.await.map_err(|e| e.to_string())??);
        }
    }

    let start = Instant::now();
    let from = start + Duration::from_secs_f64(a.warmup_secs);
    let until = from + Duration::from_secs_f64(a.secs);
    let mut tasks = Vec::new();
    for (i, mut c) in conns.into_iter().enumerate() {
        let load = load.clone();
        let op = a.op;
        let keys = a.keys;
        tasks.push(tokio::spawn(async move {
            let mut rng =
                Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
            let mut t = Tally {
                hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
                ops: 0,
                errors: 0,
                first_error: None,
            };
            loop {
                let key = rng.below(keys);
                let t0 = Instant::now();
                if t0 >= until {
                    break;
                }
                let r = match op {
                    Op::Put => c.put(&load, key).await,
                    Op::Get => c.get(&load, key).await,
                };
                let t1 = Instant::now();
                if t1 < from || t1 >= until {
                    continue;
                }
                match r {
                    Ok(()) => {
                        t.ops += 1;
                        let us = (t1 - t0).as_micros().max(1) as u64;
                        t.hist.saturating_record(us);
                    }
                    Err(e) => {
                        t.errors += 1;
                        t.first_error.get_or_insert(e);
                    }
                }
            }
            (c, t)
        }));
    }

    // CPU over the window: sampled at its start and end.
    tokio::time::sleep_until(from.into()).await;
    let pids: Vec<String> = a.pids.iter().map(|p| p.to_string()).collect();
    let cpu0: Vec<f64> = pids.iter().map(|p| cpu_secs(p)).collect::<Result<_, _>>()?;
    let me0 = cpu_secs("self")?;
    let fs0 = (a.system == System::Etcd).then(|| etcd_fsyncs(a.endpoints[leader]));
    let w0 = Instant::now();
    tokio::time::sleep_until(until.into()).await;
    let cpu1: Vec<f64> = pids.iter().map(|p| cpu_secs(p)).collect::<Result<_, _>>()?;
    let me1 = cpu_secs("self")?;
    let fs1 = (a.system == System::Etcd).then(|| etcd_fsyncs(a.endpoints[leader]));
    let window = w0.elapsed().as_secs_f64();

    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let (mut ops, mut errors, mut first_error) = (0, 0, None);
    let mut targets = BTreeMap::new();
    for t in tasks {
        let (c, tally) = t.await.map_err(|e| e.to_string())?;
        hist.add(&tally.hist).map_err(|e| e.to_string())?;
        ops += tally.ops;
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
        if let Conn::Paxkv(c) = &c {
            *targets.entry(c.target() as usize).or_insert(0) += 1;
        }
    }
    if let Some(e) = &first_error {
        eprintln!("kvbench: {errors} errors; the first: {e}");
    }
    if ops == 0 {
        return Err(format!(
            "no operation completed in the window ({errors} errors)"
        ));
    }
    let leader = match a.system {
        System::Etcd => leader,
        // Where the clients' last answers came from.
        System::Paxkv => targets
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map_or(0, |(t, _)| t),
    };
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let leader_fsyncs = match (fs0, fs1) {
        (Some(Some(a)), Some(Some(b))) => Some(b.saturating_sub(a)),
        _ => None,
    };
    Ok(Cell {
        system: a.system,
        label: Some(a.label.unwrap_or_else(|| a.system.name().to_string())),
        op: a.op,
        clients: a.clients,
        run: a.run,
        secs: a.secs,
        ops,
        errors,
        ops_per_s: ops as f64 / a.secs,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: hist.max() as f64 / 1000.0,
        leader,
        cpu_members: cpu0
            .iter()
            .zip(&cpu1)
            .map(|(a, b)| (b - a) / window)
            .collect(),
        cpu_client: (me1 - me0) / window,
        leader_fsyncs,
    })
}

async fn wait(system: System, endpoints: &[SocketAddr], timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let load = Load {
        etcd_keys: vec![b"kvbench-ready".to_vec()],
        value: b"1".to_vec(),
    };
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = async {
            let leader = match system {
                System::Etcd => etcd_leader(endpoints).await?,
                System::Paxkv => 0,
            };
            let mut c = match connect(system, endpoints, leader, 999_999).await? {
                Conn::Paxkv(c) => Conn::Paxkv(c.timeout(Duration::from_secs(2))),
                c => c,
            };
            c.put(&load, 0).await
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => last = "no answer in 5 s".into(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "the {system:?} cluster took no write within {timeout:?}: {last}"
    ))
}

fn fsync_probe(dir: &std::path::Path, count: usize) -> Result<(), String> {
    let path = dir.join("kvbench-fsync-probe");
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(err)?;
    let mut lat = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        f.write_all(&[b'x'; 200]).map_err(err)?;
        let t = Instant::now();
        f.sync_data().map_err(err)?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(f);
    std::fs::remove_file(&path).map_err(err)?;
    lat.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    println!(
        "fdatasync of a 200-byte append: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms ({} syncs)",
        q(0.5),
        q(0.9),
        q(0.99),
        lat.len()
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A row's system as the table shows it: `None` for the system's default
/// label (or none, in a line from before labels), shown as the system's
/// name as it always was; else the label given to `run --label`. The
/// default sorts first, so the current build's row stays above the others.
fn shown_label(c: &Cell) -> Option<String> {
    c.label.clone().filter(|l| l != c.system.name())
}

fn table(files: &[PathBuf]) -> Result<(), String> {
    type Key = (Op, usize, System, Option<String>);
    let mut cells: BTreeMap<Key, Vec<Cell>> = BTreeMap::new();
    for f in files {
        let file = std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| e.to_string())?;
            if line.trim().is_empty() {
                continue;
            }
            let c: Cell =
                serde_json::from_str(&line).map_err(|e| format!("{}: {e}: {line}", f.display()))?;
            cells
                .entry((c.op, c.clients, c.system, shown_label(&c)))
                .or_default()
                .push(c);
        }
    }
    let name = |system: &System, label: &Option<String>| {
        label.clone().unwrap_or_else(|| format!("{system:?}"))
    };
    println!(
        "| op | clients | system | ops/s | p50 ms | p99 ms | p99.9 ms | CPU leader | CPU followers | CPU load gen | runs |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ((op, clients, system, label), cs) in &cells {
        let m = |f: &dyn Fn(&Cell) -> f64| median(cs.iter().map(f).collect());
        let lead = m(&|c: &Cell| c.cpu_members[c.leader]);
        // The followers' CPU, busier first.
        let followers = |k: usize| {
            m(&|c: &Cell| {
                let mut f: Vec<f64> = (0..c.cpu_members.len())
                    .filter(|&i| i != c.leader)
                    .map(|i| c.cpu_members[i])
                    .collect();
                f.sort_by(|a, b| b.total_cmp(a));
                f.get(k).copied().unwrap_or(0.0)
            })
        };
        let errors: u64 = cs.iter().map(|c| c.errors).sum();
        println!(
            "| {op:?} | {clients} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} + {:.2} | {:.2} | {}{} |",
            name(system, label),
            m(&|c: &Cell| c.ops_per_s),
            m(&|c: &Cell| c.p50_ms),
            m(&|c: &Cell| c.p99_ms),
            m(&|c: &Cell| c.p999_ms),
            lead,
            followers(0),
            followers(1),
            m(&|c: &Cell| c.cpu_client),
            cs.len(),
            if errors > 0 {
                format!(" ({errors} errors)")
            } else {
                String::new()
            },
        );
    }
    // etcd's group commit, for the record.
    let mut fsyncs = Vec::new();
    for ((op, clients, system, label), cs) in &cells {
        if *system != System::Etcd || *op != Op::Put {
            continue;
        }
        let per: Vec<f64> = cs
            .iter()
            .filter_map(|c| c.leader_fsyncs.map(|f| c.ops as f64 / f.max(1) as f64))
            .collect();
        if !per.is_empty() {
            fsyncs.push(format!(
                "{} {clients} clients: {:.1}",
                name(system, label),
                median(per)
            ));
        }
    }
    if !fsyncs.is_empty() {
        println!(
            "\netcd puts per leader WAL fsync (from its /metrics, median): {}",
            fsyncs.join(", ")
        );
    }
    // With a labelled build beside (the script's --paxkv-base), each
    // non-etcd row against etcd's in the same cell, label by label: the
    // ratios to compare, since the runs' machine moves under all of them.
    let labelled = cells
        .keys()
        .any(|(_, _, system, label)| *system != System::Etcd && label.is_some());
    if labelled {
        let med = |cs: &[Cell], f: fn(&Cell) -> f64| median(cs.iter().map(f).collect());
        let mut lines: BTreeMap<(System, Option<String>), Vec<String>> = BTreeMap::new();
        for ((op, clients, system, label), cs) in &cells {
            if *system == System::Etcd {
                continue;
            }
            // etcd's row of the same cell and the same peer TLS (the
            // script labels a TLS run `<system>+tls`).
            let tls = |l: &Option<String>| l.as_deref().is_some_and(|l| l.ends_with("+tls"));
            let Some(etcd) = cells
                .range((*op, *clients, System::Etcd, None)..)
                .take_while(|((o, n, s, _), _)| (o, n, s) == (op, clients, &System::Etcd))
                .find(|((_, _, _, l), _)| tls(l) == tls(label))
                .map(|(_, cs)| cs)
            else {
                continue;
            };
            lines
                .entry((*system, label.clone()))
                .or_default()
                .push(format!(
                    "{op:?} {clients}: {:.2}x ops/s, {:.2}x p99",
                    med(cs, |c| c.ops_per_s) / med(etcd, |c| c.ops_per_s),
                    med(cs, |c| c.p99_ms) / med(etcd, |c| c.p99_ms),
                ));
        }
        if !lines.is_empty() {
            println!("\nagainst etcd in the same cell (median over median):");
            for ((system, label), cells) in &lines {
                println!("{}: {}", name(system, label), cells.join("; "));
            }
        }
    }
    Ok(())
}
