//! Real `paxkv` processes on loopback: a 3-replica cluster serving every
//! operation, replicas killed with SIGKILL and restarted from their disks, a
//! corrupted WAL rebuilt from the peers, and the operator's mistakes refused
//! (another cluster's data directory, a newer or older format, a port in use, a
//! stranger on the peer port). Every process a test starts is killed when
//! the test ends, passed or failed ([`Cluster`]'s `Drop`).

use kv::Value;
use paxkv::wire::{self, Hello, Welcome};
use paxkv::Client;
use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_paxkv");

/// Loopback ports nobody listens on right now, below the kernel's
/// ephemeral range (so no outgoing connection takes a stopped server's port).
fn free_ports(n: usize) -> Vec<SocketAddr> {
    let ls = paxkv::jepsen::bind_ports(n);
    ls.iter().map(|l| l.local_addr().expect("addr")).collect()
}

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "paxkv-test-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A cluster of server processes; dropping it kills them all and, if the
/// test passed, removes their files (on failure it prints their logs).
struct Cluster {
    dir: PathBuf,
    /// Each replica's client address.
    endpoints: Vec<SocketAddr>,
    /// Each replica's peer address.
    peers: Vec<SocketAddr>,
    /// The cluster's throwaway CA and the replicas' certificates.
    tls: paxkv::tls::Generated,
    cluster: u64,
    procs: Vec<Option<Child>>,
    /// Snapshot and compaction settings (small by default, so tests cross them).
    storage: [&'static str; 4],
    /// More flags for every server.
    extra: Vec<String>,
    /// The first configuration's replicas (`--peers`): `0..first`; the
    /// others are machines an operator adds later (they start with `--join`).
    first: usize,
}

impl Cluster {
    fn new(name: &str, n: usize) -> Cluster {
        let dir = temp_dir(name);
        let mut ports = free_ports(2 * n);
        let peers = ports.split_off(n);
        let tls = paxkv::tls::generate(
            &dir.join("tls"),
            0xc1,
            n as u8,
            &["127.0.0.1".parse().unwrap()],
        )
        .expect("certificates");
        let c = Cluster {
            dir,
            endpoints: ports,
            peers,
            tls,
            cluster: 0xc1,
            procs: (0..n).map(|_| None).collect(),
            storage: ["--snapshot-every", "16", "--compact-bytes", "0"],
            extra: Vec::new(),
            first: n,
        };
        for i in 0..n {
            std::fs::create_dir_all(c.data(i)).expect("data dir");
        }
        c
    }

    fn data(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}"))
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}.log"))
    }

    fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(self.log(i)).unwrap_or_default()
    }

    fn peers_arg(&self) -> String {
        let p: Vec<String> = self.peers[..self.first]
            .iter()
            .map(|a| a.to_string())
            .collect();
        p.join(",")
    }

    fn endpoints_arg(&self) -> String {
        let p: Vec<String> = self.endpoints.iter().map(|a| a.to_string()).collect();
        p.join(",")
    }

    /// Replica `i`'s peer TLS flags.
    fn tls_args(&self, i: usize) -> Vec<String> {
        let f = &self.tls.replicas[i];
        let path = |p: &Path| p.display().to_string();
        vec![
            "--peer-cert-file".into(),
            path(&f.cert),
            "--peer-key-file".into(),
            path(&f.key),
            "--peer-trusted-ca-file".into(),
            path(&f.ca),
        ]
    }

    fn command(&self, i: usize, cluster: u64) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .expect("log file");
        let mut cmd = Command::new(EXE);
        cmd.args(["server", "--id", &i.to_string()]);
        if i < self.first {
            cmd.args(["--peers", &self.peers_arg()]);
            cmd.args(["--endpoints", &self.endpoints_arg()]);
        } else {
            // An added replica asks the first two replicas for the
            // cluster (a restart reads its data directory instead).
            let join = format!("{},{}", self.endpoints[0], self.endpoints[1]);
            cmd.args(["--join", &join]);
        }
        // A lone replica has no peers to authenticate.
        cmd.args(match self.peers.len() {
            1 => Vec::new(),
            _ => self.tls_args(i),
        })
        .args(["--cluster-id", &cluster.to_string()])
        .arg("--data-dir")
        .arg(self.data(i))
        .args(self.storage)
        .args(&self.extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log);
        cmd
    }

    fn start(&mut self, i: usize) {
        assert!(self.procs[i].is_none(), "n{i} is running");
        let child = self.command(i, self.cluster).spawn().expect("spawn paxkv");
        self.procs[i] = Some(child);
    }

    fn start_all(&mut self) {
        for i in 0..self.first {
            self.start(i);
        }
    }

    /// SIGKILL: no chance to flush or say goodbye.
    fn kill(&mut self, i: usize) {
        let mut c = self.procs[i].take().expect("n{i} is not running");
        c.kill().expect("kill");
        c.wait().expect("wait");
    }

    fn client(&self, id: u32) -> Client {
        Client::new(self.endpoints.clone(), id)
            .cluster(self.cluster)
            .timeout(Duration::from_secs(15))
    }

    /// Waits until replica `i`'s log says `what`.
    fn await_log(&self, i: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log_text(i).contains(what) {
            assert!(
                Instant::now() < deadline,
                "n{i} never logged {what:?}:\n{}",
                self.log_text(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.procs.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for i in 0..self.peers.len() {
                eprintln!("---- n{i}'s log ----\n{}", self.log_text(i));
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs a server that must refuse to start; returns its exit status and
/// what it printed.
fn run_refused(mut cmd: Command) -> (std::process::ExitStatus, String) {
    let out = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn")
        .wait_with_output()
        .expect("wait");
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_serves_every_operation_and_survives_sigkill_of_each_replica() {
    let mut c = Cluster::new("ops", 3);
    c.start_all();
    let mut a = c.client(1);
    let mut b = c.client(2);
    assert_eq!(a.put(1, 10).await, Ok(1));
    assert_eq!(a.get(1).await, Ok(Some((Value::from(10), 1))));
    assert_eq!(b.cas(1, 1, 11).await, Ok(Ok(2)));
    assert_eq!(a.cas(1, 1, 12).await, Ok(Err(2)), "a stale cas fails");
    assert_eq!(a.delete(1).await, Ok(true));
    assert_eq!(a.get(1).await, Ok(None));

    // Sessions, ephemeral keys, locks with fencing tokens.
    assert!(a
        .open_session(Duration::from_secs(30))
        .await
        .unwrap()
        .is_ok());
    let t1 = a.acquire(7).await.unwrap().expect("a takes the lock");
    assert_eq!(b.acquire(7).await, Ok(Err(kv::LockError::NoSession)));
    assert!(b
        .open_session(Duration::from_secs(30))
        .await
        .unwrap()
        .is_ok());
    assert_eq!(b.acquire(7).await, Ok(Err(kv::LockError::HeldBy(1))));
    assert_eq!(
        a.put_ephemeral(50, 5).await,
        Ok(kv::Reply::Version(1)),
        "a's session owns key 50"
    );
    assert_eq!(a.release(7, t1).await, Ok(true));
    let t2 = b.acquire(7).await.unwrap().expect("b takes the lock");
    assert!(t2 > t1, "fencing tokens grow: {t1} then {t2}");
    assert_eq!(a.close_session().await, Ok(true));
    assert_eq!(
        b.get(50).await,
        Ok(None),
        "the ephemeral key went with a's session"
    );

    // Kill each replica in turn (so the leader too, at some point), write
    // while it is down, restart it, then kill its neighbour: the restarted
    // one must be in every quorum now, so it recovered from its disk and
    // caught up.
    let mut acked: Vec<(u64, u64)> = Vec::new();
    for i in 0..3 {
        c.kill(i);
        for k in 0..5 {
            let key = 100 + 10 * i as u64 + k;
            a.put(key, key * 2).await.expect("a majority is up");
            acked.push((key, key * 2));
        }
        c.start(i);
        let j = (i + 1) % 3;
        c.kill(j);
        let key = 200 + i as u64;
        a.put(key, 1)
            .await
            .expect("the restarted replica makes a quorum");
        acked.push((key, 1));
        for (k, v) in &acked {
            assert_eq!(a.get(*k).await, Ok(Some((Value::from(*v), 1))), "key {k}");
        }
        c.start(j);
    }
    let elected: usize = (0..3)
        .map(|i| c.log_text(i).matches("elected leader").count())
        .sum();
    assert!(elected >= 2, "the leader was killed at least once");
    assert!(
        (0..3).any(|i| c.log_text(i).contains("compacted the WAL")),
        "snapshots compacted a WAL"
    );
}

/// Flips one byte in the middle of `path`.
fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read wal");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).expect("write wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_wal_is_rebuilt_from_the_peers_and_no_acknowledged_write_is_lost() {
    let mut c = Cluster::new("corrupt", 3);
    c.start_all();
    let mut a = c.client(1);
    for k in 0..40 {
        a.put(k, k + 1000).await.expect("put");
    }
    c.kill(0);
    flip_a_byte(&c.data(0).join("wal"));
    c.start(0);
    c.await_log(0, "rebuilding from the peers");
    c.await_log(0, "rebuilt from the peers; voting again");
    assert!(
        c.data(0).join("wal.corrupt").exists(),
        "the bad WAL is kept"
    );
    // Now the rebuilt replica must be part of every quorum.
    c.kill(1);
    a.put(99, 1)
        .await
        .expect("the rebuilt replica makes a quorum");
    for k in 0..40 {
        assert_eq!(
            a.get(k).await,
            Ok(Some((Value::from(k + 1000), 1))),
            "key {k}"
        );
    }
    // And it restarts from its rebuilt WAL like any replica.
    c.kill(0);
    c.start(1);
    c.start(0);
    c.await_log(0, "recovered from disk");
    c.kill(2);
    assert_eq!(a.get(99).await, Ok(Some((Value::from(1), 1))));
}

#[test]
fn another_clusters_or_another_formats_data_directory_is_refused() {
    let mut c = Cluster::new("other", 1);
    c.start(0);
    c.await_log(0, "serving");
    c.kill(0);
    let (status, text) = run_refused(c.command(0, 0xbad));
    assert!(!status.success());
    assert!(
        text.contains("belongs to another replica or cluster"),
        "{text}"
    );
    // Another cluster's WAL without the marker: the WAL's header says so.
    std::fs::remove_file(c.data(0).join("paxkv-node")).unwrap();
    let (status, text) = run_refused(c.command(0, 0xbad));
    assert!(!status.success());
    assert!(text.contains("belongs to cluster 0xc1"), "{text}");
    // A newer format version.
    let wal = c.data(0).join("wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[8..12].copy_from_slice(&(wal::VERSION + 1).to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&wal, bytes).unwrap();
    let (status, text) = run_refused(c.command(0, c.cluster));
    assert!(!status.success());
    assert!(text.contains("newer than this build reads"), "{text}");
    // An older one (version 1 held the service's values as u64s).
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[8..12].copy_from_slice(&(wal::VERSION - 1).to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&wal, bytes).unwrap();
    let (status, text) = run_refused(c.command(0, c.cluster));
    assert!(!status.success());
    assert!(text.contains("older than this build reads"), "{text}");
}

#[test]
fn a_port_in_use_is_refused() {
    let c = Cluster::new("port", 1);
    let squatter = TcpListener::bind(c.peers[0]).expect("bind");
    let (status, text) = run_refused(c.command(0, c.cluster));
    assert!(!status.success());
    assert!(text.contains("cannot listen for peers on"), "{text}");
    assert!(text.contains("in use"), "{text}");
    drop(squatter);
    let _squatter = TcpListener::bind(c.endpoints[0]).expect("bind");
    let (status, text) = run_refused(c.command(0, c.cluster));
    assert!(!status.success());
    assert!(text.contains("cannot listen for clients on"), "{text}");
}

/// Sends one frame and reads the answer, as a stranger would.
fn hello_and_answer(addr: SocketAddr, payload: &[u8]) -> Option<Welcome> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&(payload.len() as u32).to_be_bytes()).unwrap();
    s.write_all(payload).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    wire::decode(&buf).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_on_the_port_are_refused_and_the_cluster_keeps_serving() {
    let mut c = Cluster::new("strangers", 3);
    c.start_all();
    let addr = c.endpoints[0];
    let peer = |cluster, from, to| {
        wire::encode(&Hello::Peer {
            protocol: wire::PROTOCOL,
            cluster,
            from,
            to,
        })
    };
    let refused = |w: Option<Welcome>, what: &str| match w {
        Some(Welcome::Refused(why)) => assert!(why.contains(what), "{why}"),
        w => panic!("not refused: {w:?}"),
    };
    c.await_log(0, "serving");
    // A replica's hello on the client address: replicas have their own.
    refused(
        hello_and_answer(addr, &peer(c.cluster, 1, 0)),
        "a replica's hello on the client address",
    );
    refused(
        hello_and_answer(addr, b"\xff\xfe garbage"),
        "hello is not one",
    );
    // On the peer address, plain TCP gets no further than the TLS
    // handshake: no welcome, whatever it says.
    assert_eq!(hello_and_answer(c.peers[0], &peer(c.cluster, 1, 0)), None);
    // A frame longer than the limit: closed without an answer.
    {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&u32::MAX.to_be_bytes()).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap_or(0), 0, "closed");
    }
    let mut other = Client::new(c.endpoints.clone(), 9)
        .cluster(0xbad)
        .timeout(Duration::from_secs(5));
    match other.put(1, 1).await {
        Err(paxkv::client::Error::Refused(why)) => assert!(why.contains("another cluster")),
        r => panic!("a client of another cluster was served: {r:?}"),
    }
    let log = c.log_text(0);
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(log.contains("frame size too big"), "{log}");
    let mut a = c.client(1);
    assert_eq!(a.put(1, 1).await, Ok(1));
    // Values: the largest goes through and reads back; one byte more is
    // refused by the client library before sending, and by the server from
    // a client that sends it anyway.
    let max = vec![b'x'; kv::VALUE_MAX];
    assert_eq!(a.put(2, max.clone()).await, Ok(1));
    assert_eq!(a.get(2).await, Ok(Some((Value::from(max), 1))));
    let over = vec![b'x'; kv::VALUE_MAX + 1];
    assert_eq!(
        a.put(3, over.clone()).await,
        Err(paxkv::client::Error::ValueTooLarge {
            len: kv::VALUE_MAX + 1
        })
    );
    let answer = command_and_answer(
        c.endpoints[0],
        &kv::Command {
            client: 77,
            seq: 1,
            op: kv::Op::Put {
                key: 3,
                value: Value::from(over),
            },
        },
    );
    match answer {
        Some(wire::Response::Error(why)) => {
            assert!(why.contains("larger than the service takes"), "{why}")
        }
        r => panic!("an oversized value was not refused: {r:?}"),
    }
    assert_eq!(a.get(3).await, Ok(None));
}

/// Issue 22: a connection that says hello as a client and then nothing
/// used to stay open for good, and about 1,010 of them took every
/// descriptor of the common soft limit: the leader refused every new
/// client and exited at its next compaction. Now connections are capped
/// below the descriptor limit (which the server raises to its hard limit),
/// one over the cap is closed at once, and a silent client is closed after
/// `--client-idle-ms`; the cluster serves throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_capped_and_closed_and_the_cluster_keeps_serving() {
    let mut c = Cluster::new("silent", 3);
    c.extra = ["--max-conns", "40", "--client-idle-ms", "1500"]
        .map(String::from)
        .to_vec();
    c.start_all();
    c.await_log(0, "serving");
    let hello = wire::encode(&Hello::Client {
        protocol: wire::PROTOCOL,
        cluster: Some(c.cluster),
    });
    let mut welcomed = Vec::new();
    let mut closed = 0;
    for _ in 0..60 {
        let mut s = TcpStream::connect(c.endpoints[0]).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(&(hello.len() as u32).to_be_bytes());
        let _ = s.write_all(&hello);
        let mut len = [0u8; 4];
        match s.read_exact(&mut len) {
            Ok(()) => welcomed.push(s),
            Err(_) => closed += 1,
        }
    }
    assert!(
        !welcomed.is_empty() && welcomed.len() <= 40,
        "{} of 60 silent clients welcomed with a cap of 40",
        welcomed.len()
    );
    assert_eq!(welcomed.len() + closed, 60);
    // Served while the silent ones hold their places: the client library
    // goes to another replica, or here once they are gone.
    let mut a = c.client(1);
    assert_eq!(a.put(1, 1).await, Ok(1));
    // The idle timeout closes every silent one.
    std::thread::sleep(Duration::from_millis(2_500));
    for mut s in welcomed {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap_or(0), 0, "a silent client kept open");
    }
    // Room again at n0, and the cluster serves.
    match hello_and_answer(c.endpoints[0], &hello) {
        Some(Welcome::Ok { id: 0, .. }) => {}
        w => panic!("n0 did not welcome a client once the silent ones were gone: {w:?}"),
    }
    assert_eq!(
        c.client(2).get(1).await.map(|v| v.map(|(_, ver)| ver)),
        Ok(Some(1))
    );
    assert!(c.log_text(0).contains("too many connections"));
    for i in 0..3 {
        assert!(alive(&mut c, i), "n{i} stopped");
    }
}

/// Issue 22: restoring a replica from a peer's files (its WAL copied in,
/// the marker absent) was accepted silently, and with one other replica
/// down every acknowledged put could be lost. The WAL names its replica
/// now: the copy is refused, with a clear error, before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replicas_wal_copied_in_is_refused() {
    let mut c = Cluster::new("copied", 3);
    c.start_all();
    let mut a = c.client(1);
    for k in 0..20 {
        assert_eq!(a.put(k, k).await, Ok(1));
    }
    c.kill(0);
    c.kill(1);
    let d0 = c.data(0);
    std::fs::remove_file(d0.join("paxkv-node")).unwrap();
    std::fs::copy(c.data(1).join("wal"), d0.join("wal")).unwrap();
    let (status, text) = run_refused(c.command(0, c.cluster));
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("the WAL belongs to replica 1, not to this replica 0"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

/// Issue 22: a client given one replica's address of three timed out
/// (its redirects named replicas it could not reach). The server's welcome
/// says how many replicas there are and which one it is: a list that does
/// not match is refused at once, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_given_part_of_the_cluster_says_why_instead_of_timing_out() {
    let mut c = Cluster::new("partial", 3);
    c.start_all();
    c.await_log(0, "serving");
    let mut one = Client::new(vec![c.endpoints[0]], 5)
        .cluster(c.cluster)
        .timeout(Duration::from_secs(10));
    match one.put(1, 1).await {
        Err(paxkv::client::Error::Refused(why)) => {
            assert!(why.contains("a cluster of 3"), "{why}");
            assert!(why.contains("give every replica's address"), "{why}");
        }
        r => panic!("not refused: {r:?}"),
    }
    // The same addresses out of order.
    let swapped = vec![c.endpoints[1], c.endpoints[0], c.endpoints[2]];
    let mut wrong = Client::new(swapped, 6)
        .cluster(c.cluster)
        .timeout(Duration::from_secs(10));
    match wrong.put(1, 1).await {
        Err(paxkv::client::Error::Refused(why)) => assert!(why.contains("in id order"), "{why}"),
        r => panic!("not refused: {r:?}"),
    }
    assert_eq!(c.client(7).put(1, 1).await, Ok(1));
}

/// Issue 22: with replica 0 down, every CLI command first waited out the
/// retry interval on it. An unreachable replica is passed at once now:
/// with a retry interval longer than the whole timeout, a command still
/// succeeds through the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_passes_a_dead_replica_at_once() {
    let mut c = Cluster::new("dead0", 3);
    c.start_all();
    assert_eq!(c.client(1).put(1, 1).await, Ok(1));
    c.kill(0);
    // Served again (a new leader, if n0 led) before the client under test
    // starts: a redirect that names no leader yet waits for the retry.
    assert_eq!(
        c.client(2).get(1).await.map(|v| v.map(|(_, ver)| ver)),
        Ok(Some(1))
    );
    let mut a = Client::new(c.endpoints.clone(), 8)
        .cluster(c.cluster)
        .retry(Duration::from_secs(30))
        .timeout(Duration::from_secs(10));
    assert_eq!(a.put(1, 2).await, Ok(2));
    assert_eq!(a.get(1).await.map(|v| v.map(|(_, ver)| ver)), Ok(Some(2)));
}

/// Issue 22: two servers on one data directory both ran and appended to
/// one WAL. The directory is locked now: a second process is refused with
/// a clear error while the first runs, and the lock goes with the first
/// (here by `kill -9`), so a restart is not refused.
#[test]
fn a_second_process_on_a_data_directory_is_refused() {
    let mut c = Cluster::new("lock", 3);
    c.start(0);
    c.await_log(0, "serving");
    let mut second = Command::new(EXE);
    second
        .args(["server", "--id", "1", "--peers", &c.peers_arg()])
        .args(["--endpoints", &c.endpoints_arg()])
        .args(c.tls_args(1))
        .args(["--cluster-id", &c.cluster.to_string()])
        .arg("--data-dir")
        .arg(c.data(0));
    let (status, text) = run_refused(second);
    assert!(!status.success(), "{text}");
    assert!(text.contains("another paxkv process"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    c.kill(0);
    c.start(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.log_text(0).matches("serving").count() < 2 {
        assert!(Instant::now() < deadline, "{}", c.log_text(0));
        assert!(alive(&mut c, 0), "the restart was refused");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Says hello as a client, sends `cmd` and reads the answer.
fn command_and_answer(addr: SocketAddr, cmd: &kv::Command) -> Option<wire::Response> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut frame = |payload: &[u8]| -> Option<Vec<u8>> {
        s.write_all(&(payload.len() as u32).to_be_bytes()).ok()?;
        s.write_all(payload).ok()?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len).ok()?;
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).ok()?;
        Some(buf)
    };
    let hello = wire::encode(&Hello::Client {
        protocol: wire::PROTOCOL,
        cluster: None,
    });
    let welcome = frame(&hello)?;
    assert!(matches!(wire::decode(&welcome), Ok(Welcome::Ok { .. })));
    wire::decode(&frame(&wire::encode(cmd))?).ok()
}

/// A small tmpfs mounted over a replica's data directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` where this process may not mount (not root, no CAP_SYS_ADMIN).
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn grow(&self, size: &str) {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("mount");
        assert!(s.success(), "remount of {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk (a 64 KiB tmpfs under one replica) stops that replica with
/// a clear error instead of acknowledging what it could not make durable;
/// the others go on, no acknowledged write is lost, and once the disk has
/// room again the replica recovers and serves in every quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_replica_and_loses_no_acknowledged_write() {
    let mut c = Cluster::new("fulldisk", 3);
    let Some(disk) = Tmpfs::mount(&c.data(0), "64k") else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the full-disk case is untested"
        );
        return;
    };
    c.start_all();
    let mut a = c.client(1);
    let mut acked = Vec::new();
    let mut stopped = None;
    // Distinct keys: the state (and so each snapshot) outgrows the disk.
    for k in 0..20_000u64 {
        a.put(k, k).await.expect("a majority is up");
        acked.push((k, k));
        if let Some(status) = c.procs[0].as_mut().unwrap().try_wait().expect("wait") {
            stopped = Some(status);
            break;
        }
    }
    let status = stopped.expect("n0 never filled its 64 KiB disk");
    assert!(!status.success(), "n0 exited {status} on a full disk");
    let log = c.log_text(0);
    assert!(
        log.to_lowercase().contains("no space left"),
        "n0's last words:\n{log}"
    );
    c.procs[0] = None;
    // Every acknowledged write is there (a sample and the last hundred).
    let n = acked.len();
    let check: Vec<(u64, u64)> = acked
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 25 == 0 || *i + 100 >= n)
        .map(|(_, kv)| *kv)
        .collect();
    for (k, v) in &check {
        assert_eq!(
            a.get(*k).await.map(|r| r.map(|(v, _)| v)),
            Ok(Some(Value::from(*v))),
            "key {k}"
        );
    }
    // Room again: n0 recovers (a torn tail at most) and must be in every
    // quorum once n1 is down.
    disk.grow("64m");
    c.start(0);
    c.kill(1);
    a.put(9_999, 1).await.expect("n0 and n2 make a quorum");
    for (k, v) in check.iter().rev().take(50) {
        assert_eq!(
            a.get(*k).await.map(|r| r.map(|(v, _)| v)),
            Ok(Some(Value::from(*v))),
            "key {k}"
        );
    }
}

/// Whether replica `i`'s process is still running (it did not die on its own).
fn alive(c: &mut Cluster, i: usize) -> bool {
    let p = c.procs[i].as_mut().expect("started");
    p.try_wait().expect("try_wait").is_none()
}

type PeerConn =
    tokio_util::codec::Framed<paxkv::tls::BoxStream, tokio_util::codec::LengthDelimitedCodec>;

/// Dials replica `to`'s peer address over TLS, presenting the certificate
/// and key of `files`, says hello as replica `from` and returns the answer
/// with the connection (`Err`: the handshake failed, or the connection was
/// closed without an answer).
async fn peer_hello(
    c: &Cluster,
    (files, named): (&paxkv::tls::PeerFiles, u8),
    from: u8,
    to: usize,
) -> Result<(Welcome, PeerConn), String> {
    use futures_util::{SinkExt, StreamExt};
    // Loaded as the replica the certificate names, whatever the hello says.
    let tls = paxkv::tls::PeerTls::load(files, c.cluster, named)?;
    let tcp = tokio::net::TcpStream::connect(c.peers[to])
        .await
        .map_err(|e| e.to_string())?;
    let s = tls
        .dial(tcp, to as u8)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let mut f = tokio_util::codec::Framed::new(s, wire::codec(wire::PEER_FRAME_MAX));
    let hello = Hello::Peer {
        protocol: wire::PROTOCOL,
        cluster: c.cluster,
        from,
        to: to as u8,
    };
    f.send(wire::encode(&hello))
        .await
        .map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(Duration::from_secs(5), f.next())
        .await
        .map_err(|_| "no answer")?
        .ok_or("closed without an answer")?
        .map_err(|e| e.to_string())?;
    Ok((wire::decode(&answer)?, f))
}

/// Dials replica `to` as replica `from`, with `from`'s own credentials,
/// and returns the connection once welcomed: what a buggy peer of the
/// cluster can do.
async fn dial_as_peer(c: &Cluster, from: u8, to: usize) -> PeerConn {
    match peer_hello(c, (&c.tls.replicas[from as usize], from), from, to).await {
        Ok((Welcome::Ok { .. }, f)) => f,
        Ok((w, _)) => panic!("not welcomed as a peer: {w:?}"),
        Err(e) => panic!("not welcomed as a peer: {e}"),
    }
}

async fn send_peer_msg(s: &mut PeerConn, m: &wire::PeerMsg) {
    use futures_util::SinkExt;
    s.send(wire::encode(m)).await.expect("send");
}

/// A peer message of any shape with fields from the edges of their ranges,
/// drawn from `rng`: well-formed, decodable, and mostly nonsense.
fn random_peer_msg(rng: &mut rand::rngs::StdRng) -> wire::PeerMsg {
    use multipaxos::{Ballot, Entry, Msg};
    use rand::Rng;
    fn ballot(rng: &mut rand::rngs::StdRng) -> Ballot {
        Ballot {
            round: [0, 1, 2, 7, u32::MAX - 1, u32::MAX][rng.gen_range(0..6)],
            node: rng.gen_range(0..5),
        }
    }
    fn slot(rng: &mut rand::rngs::StdRng) -> u64 {
        [0, 1, 3, 40, 1 << 40, 1 << 56, 1 << 62, u64::MAX][rng.gen_range(0..8)]
    }
    fn entry(rng: &mut rand::rngs::StdRng) -> Entry<kv::Cmd> {
        match rng.gen_range(0..2) {
            0 => Entry::Noop,
            _ => Entry::Cmds(vec![kv::Cmd::Tick { now_us: rng.gen() }].into()),
        }
    }
    match rng.gen_range(0..9) {
        0 => Msg::Prepare {
            ballot: ballot(rng),
            from: slot(rng),
        },
        1 => Msg::Promise {
            ballot: ballot(rng),
            accepted: vec![(rng.gen_range(0..4), ballot(rng), entry(rng))],
            snapshot: None,
        },
        2 => Msg::Accept {
            ballot: ballot(rng),
            slot: slot(rng),
            entry: entry(rng),
            commit: slot(rng),
        },
        3 => Msg::Accepted {
            ballot: ballot(rng),
            slot: slot(rng),
        },
        4 => Msg::Nack {
            ballot: ballot(rng),
            promised: ballot(rng),
        },
        5 => Msg::Heartbeat {
            ballot: ballot(rng),
            commit: slot(rng),
            round: rng.gen(),
        },
        6 => Msg::HeartbeatAck {
            ballot: ballot(rng),
            round: rng.gen(),
        },
        7 => Msg::Query { from: slot(rng) },
        _ => Msg::RebuildQuery { fence: ballot(rng) },
    }
}

/// Issue 19, failure 3, against real processes: the messages that stopped
/// a replica at commit 639c1ef (a Prepare in a ballot its sender does not
/// own, a heartbeat with a commit index of 2^62 or 2^50, an Accept at round
/// `u32::MAX` that later overflowed every election, and random well-formed
/// messages, which panicked a replica within 25) are refused: every replica
/// keeps running, logs the refusals, and the cluster keeps serving, through
/// an election and a restart of every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peer_messages_are_refused_and_no_replica_stops() {
    use multipaxos::{Ballot, Entry, Msg};
    use rand::SeedableRng;
    let mut c = Cluster::new("hostile", 3);
    c.start_all();
    let mut a = c.client(1);
    assert_eq!(a.put(1, 10).await, Ok(1));
    let named: Vec<wire::PeerMsg> = vec![
        Msg::Prepare {
            ballot: Ballot { round: 50, node: 2 },
            from: 0,
        },
        Msg::Heartbeat {
            ballot: Ballot { round: 60, node: 1 },
            commit: 1 << 62,
            round: 1,
        },
        Msg::Heartbeat {
            ballot: Ballot { round: 70, node: 1 },
            commit: 1 << 50,
            round: 1,
        },
        Msg::Accept {
            ballot: Ballot {
                round: u32::MAX,
                node: 1,
            },
            slot: 1,
            entry: Entry::Noop,
            commit: 0,
        },
    ];
    for i in 0..3 {
        let from = ((i + 1) % 3) as u8;
        let mut s = dial_as_peer(&c, from, i).await;
        for m in &named {
            let mut m = m.clone();
            // Each in the sender's own ballot where the message needs one.
            match &mut m {
                Msg::Heartbeat { ballot, .. } | Msg::Accept { ballot, .. } => ballot.node = from,
                Msg::Prepare { ballot, .. } => ballot.node = (from + 1) % 3,
                _ => {}
            }
            send_peer_msg(&mut s, &m).await;
        }
    }
    // Random well-formed messages, seeded, to replica 0 as replica 1.
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let mut s = dial_as_peer(&c, 1, 0).await;
    for _ in 0..2_000 {
        send_peer_msg(&mut s, &random_peer_msg(&mut rng)).await;
    }
    drop(s);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..3 {
        assert!(alive(&mut c, i), "n{i} died:\n{}", c.log_text(i));
        let log = c.log_text(i);
        assert!(log.contains("refused a peer message"), "n{i}:\n{log}");
        assert!(!log.contains("panicked"), "n{i}:\n{log}");
    }
    assert_eq!(a.put(1, 11).await, Ok(2));
    // An election (the round-MAX Accept made it overflow then), and a
    // restart of every replica (it then overflowed on every boot).
    for i in 0..3 {
        c.kill(i);
    }
    c.start_all();
    assert_eq!(a.get(1).await, Ok(Some((Value::from(11), 2))));
    assert_eq!(a.put(2, 1).await, Ok(1));
    for i in 0..3 {
        assert!(
            alive(&mut c, i),
            "n{i} died after the restart:\n{}",
            c.log_text(i)
        );
    }
}

/// Issue 19, failure 1, and issue 22, against real processes: 400 clients
/// each putting 32 KiB values at once (200 until issue 22). At commit 639c1ef, 400 such clients got 117 puts
/// acknowledged and then none; the WALs grew to gigabytes (every heartbeat
/// resent every Accept in flight and every copy was written and fsynced
/// again) and the processes' memory with them. Now acknowledgements keep
/// coming to the end, and the WALs and memory stay within a small multiple
/// of what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_under_load_keep_the_cluster_serving_within_bounded_bytes() {
    let mut c = Cluster::new("large", 3);
    c.storage = ["--snapshot-every", "1000", "--compact-bytes", "67108864"];
    c.start_all();
    let mut warm = c.client(1_000);
    assert_eq!(warm.put(0, 0).await, Ok(1));
    let clients = 400u32;
    let value = vec![b'v'; kv::VALUE_MAX];
    let start = Instant::now();
    let run = Duration::from_secs(8);
    let tasks: Vec<_> = (0..clients)
        .map(|id| {
            let mut cl = c.client(id + 1);
            let value = value.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut n = 0u64;
                while start.elapsed() < run {
                    let key = id as u64 * 1_000 + n % 4;
                    if cl.put(key, value.clone()).await.is_ok() {
                        acked.push(start.elapsed());
                    }
                    n += 1;
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("client task"));
    }
    let late = acked.iter().filter(|t| **t >= run / 2).count();
    println!(
        "{} puts of {} B acknowledged in {:?}, {late} in the second half",
        acked.len(),
        kv::VALUE_MAX,
        run
    );
    assert!(acked.len() >= 400, "only {} puts acknowledged", acked.len());
    assert!(
        late >= 100,
        "the cluster seized: {late} puts in the second half"
    );
    let written = acked.len() as u64 * kv::VALUE_MAX as u64;
    for i in 0..3 {
        assert!(alive(&mut c, i), "n{i} died:\n{}", c.log_text(i));
        let wal = std::fs::metadata(c.data(i).join("wal")).map_or(0, |m| m.len());
        // Each command is in its Accept record and its chosen record, and
        // a few in flight or retried more: a WAL of many copies of the
        // same acceptance was the failure.
        assert!(
            wal <= 3 * written + (64 << 20),
            "n{i}'s WAL is {wal} bytes for {written} bytes acknowledged"
        );
        let rss_kb = rss_kb(&c, i);
        println!("n{i}: WAL {wal} B, RSS {rss_kb} kB");
        assert!(rss_kb < 1_500_000, "n{i} holds {rss_kb} kB");
    }
}

impl Cluster {
    /// Waits up to `secs` until replica `i`'s log says `what` `times` times.
    fn await_log_n(&self, i: usize, what: &str, times: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.log_text(i).matches(what).count() < times {
            assert!(
                Instant::now() < deadline,
                "n{i} never logged {what:?} {times} times:\n{}",
                self.log_text(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Writes `keys` keys of `value` from `clients` clients at once.
async fn fill(c: &Cluster, keys: u64, clients: u64, value: &Value) {
    let tasks: Vec<_> = (0..clients)
        .map(|id| {
            let mut cl = c.client(id as u32 + 1);
            let value = value.clone();
            tokio::spawn(async move {
                for k in (id..keys).step_by(clients as usize) {
                    cl.put(k, value.clone()).await.expect("put");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
}

/// Every key reads back as `value`, through whichever replicas are up.
async fn every_key_reads(c: &Cluster, keys: u64, value: &Value) {
    let mut cl = c.client(900);
    for k in 0..keys {
        let got = cl.get(k).await.expect("get");
        assert_eq!(got.map(|g| g.0), Some(value.clone()), "key {k}");
    }
}

/// Issue 19, failure 2, on the real cluster: 2,200 keys of 32,000 bytes,
/// about 70 MB of state, more than one 64 MiB peer frame. A replica that
/// was down while the others snapshotted catches up by that snapshot, and
/// a replica whose WAL was lost rebuilds from its peers; in both the state
/// travels in parts, and then, with another replica down, the cluster
/// still takes writes and every key reads back (before, the leader logged
/// "frame size too big" forever and the cluster stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_larger_than_a_peer_frame_is_caught_up_and_rebuilt_in_parts() {
    const KEYS: u64 = 2_200;
    let mut c = Cluster::new("frame", 3);
    c.storage = ["--snapshot-every", "1000", "--compact-bytes", "67108864"];
    c.start_all();
    let value = Value::from(vec![b'x'; 32_000]);
    let mut first = c.client(1_000);
    assert_eq!(first.put(KEYS, 1u64).await, Ok(1));
    // n2 misses every write, and the others snapshot past it.
    c.kill(2);
    fill(&c, KEYS, 16, &value).await;
    // Overwrites until the next snapshot, which holds every key: a state
    // of 2,200 x 32,000 bytes, more than a peer frame.
    let state = KEYS * 32_000;
    assert!(state > wire::PEER_FRAME_MAX as u64, "state fits one frame");
    let taken = c.log_text(0).matches("snapshot taken").count();
    while c.log_text(0).matches("snapshot taken").count() == taken {
        fill(&c, 200, 16, &value).await;
    }
    c.start(2);
    c.await_log_n(2, "installed a snapshot", 1, 120);
    // n2 is needed now: with n0 down, n1 and n2 are the quorum.
    c.kill(0);
    assert!(first.put(KEYS + 1, 2u64).await.is_ok(), "no quorum with n2");
    every_key_reads(&c, KEYS, &value).await;
    // n2 loses its WAL: it rebuilds from n0 and n1, then n1 goes down.
    c.start(0);
    c.kill(2);
    std::fs::remove_file(c.data(2).join("wal")).expect("remove the WAL");
    c.start(2);
    c.await_log_n(2, "rebuilt from the peers; voting again", 1, 120);
    c.kill(1);
    assert!(first.put(KEYS + 2, 3u64).await.is_ok(), "no quorum with n2");
    every_key_reads(&c, KEYS, &value).await;
    for i in [0, 2] {
        assert!(alive(&mut c, i), "n{i} died:\n{}", c.log_text(i));
        assert!(
            !c.log_text(i).contains("frame size too big"),
            "n{i}:\n{}",
            c.log_text(i)
        );
    }
}

/// Issue 22: `paxkv local` carried on with a half-taken port range (a
/// leftover replica of an earlier run joined the new cluster) and never
/// stopped when a replica failed to start. It refuses a taken port, and
/// stops every replica and exits non-zero when one fails as it starts.
#[test]
fn local_refuses_a_taken_port_and_stops_when_a_replica_cannot_start() {
    let dir = temp_dir("local");
    // Three consecutive free ports: a free one and the two after it, if
    // they are free too (else another run of the test picks others).
    let base = free_ports(1)[0].port();
    if (1..3).any(|i| TcpListener::bind(("127.0.0.1", base + i)).is_err()) {
        println!("SKIPPED: ports {base}..{} are not all free here", base + 2);
        return;
    }
    let _taken = TcpListener::bind(("127.0.0.1", base + 2)).expect("free a moment ago");
    let local = |data: &Path| {
        let out = Command::new(EXE)
            .args(["local", "--base-port", &base.to_string()])
            .arg("--data-dir")
            .arg(data)
            .stdin(Stdio::null())
            .output()
            .expect("run paxkv local");
        (out.status, String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (status, text) = local(&dir.join("a"));
    assert!(!status.success(), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{} is taken", base + 2)),
        "{text}"
    );
    drop(_taken);
    // Replica 1's directory belongs to another cluster: it cannot start.
    let data = dir.join("b");
    std::fs::create_dir_all(data.join("n1")).unwrap();
    std::fs::write(
        data.join("n1").join("paxkv-node"),
        "paxkv data directory\ncluster 99\nnode 1\n",
    )
    .unwrap();
    let (status, text) = local(&data);
    assert!(!status.success(), "{text}");
    assert!(text.contains("replica 1 failed to start"), "{text}");
    // Every replica it started is gone: the ports are free again.
    for i in 0..3 {
        assert!(
            TcpListener::bind(("127.0.0.1", base + i)).is_ok(),
            "replica {i} still holds its port"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 22: the hello was self-declared, so any process that could open a
/// TCP connection could speak as a replica: a stray claiming to be replica
/// 1 sent Accepts of a put nobody issued and `paxkv get` returned it; sent
/// to one follower, its log forked for good. Peers now authenticate with
/// mutual TLS, and a replica's id is bound to its certificate. Refused, each
/// with a log line, and without effect on what the cluster serves:
/// plain TCP; a certificate of another CA that names replica 1; replica 2's
/// own certificate with a hello claiming replica 1; a client's hello on the
/// peer address, and a replica's on the client address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_one_without_the_clusters_keys_can_speak_as_a_replica() {
    let mut c = Cluster::new("impersonate", 3);
    c.start_all();
    let mut a = c.client(1);
    assert_eq!(a.put(1, 10).await, Ok(1));
    // The forged message the stray process sent: an Accept of a
    // put nobody issued, with a commit index past it.
    let forged = |slot| paxkv::jepsen::forged_accept(1, 1, slot);
    // Plain TCP on the peer address: no welcome.
    assert_eq!(
        hello_and_answer(
            c.peers[0],
            &wire::encode(&Hello::Peer {
                protocol: wire::PROTOCOL,
                cluster: c.cluster,
                from: 1,
                to: 0,
            })
        ),
        None
    );
    // A certificate of another CA, naming replica 1 of this very cluster.
    let other = paxkv::tls::generate(&c.dir.join("stray-ca"), c.cluster, 3, &[]).unwrap();
    let mut stray = other.replicas[1].clone();
    stray.ca = c.tls.ca.clone();
    for to in [0, 2] {
        match peer_hello(&c, (&stray, 1), 1, to).await {
            Err(_) => {}
            Ok((w, _)) => panic!("n{to} answered a stray's certificate with {w:?}"),
        }
    }
    // Replica 2's own key, claiming to be replica 1 (or 0): refused by
    // name, and nothing sent after the refusal is read.
    for (claim, to) in [(1u8, 0usize), (0, 1)] {
        let (w, mut f) = peer_hello(&c, (&c.tls.replicas[2], 2), claim, to)
            .await
            .unwrap_or_else(|e| panic!("n{to}: replica 2's certificate not even heard: {e}"));
        match w {
            Welcome::Refused(why) => assert!(
                why.contains(&format!("does not name replica-{claim}.cluster-c1.paxkv")),
                "{why}"
            ),
            w => panic!("n{to} took replica 2 for replica {claim}: {w:?}"),
        }
        for slot in 0..20 {
            use futures_util::SinkExt;
            if f.send(wire::encode(&forged(slot))).await.is_err() {
                break;
            }
        }
    }
    // A client's hello on the peer address, with a valid certificate.
    {
        use futures_util::{SinkExt, StreamExt};
        let tls = paxkv::tls::PeerTls::load(&c.tls.replicas[1], c.cluster, 1).unwrap();
        let tcp = tokio::net::TcpStream::connect(c.peers[0]).await.unwrap();
        let s = tls.dial(tcp, 0).await.expect("TLS");
        let mut f = tokio_util::codec::Framed::new(s, wire::codec(wire::CLIENT_FRAME_MAX));
        let hello = Hello::Client {
            protocol: wire::PROTOCOL,
            cluster: None,
        };
        f.send(wire::encode(&hello)).await.unwrap();
        let w = f.next().await.expect("an answer").expect("a frame");
        match wire::decode::<Welcome>(&w) {
            Ok(Welcome::Refused(why)) => {
                assert!(why.contains("client's hello on the peer address"), "{why}")
            }
            w => panic!("{w:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        assert_eq!(a.get(1).await, Ok(Some((Value::from(10), 1))), "read {i}");
    }
    assert_eq!(a.put(1, 11).await, Ok(2));
    let logs: String = (0..3).map(|i| c.log_text(i)).collect();
    assert!(logs.contains("TLS handshake failed"), "{logs}");
    assert!(
        logs.contains("its certificate does not name replica-1.cluster-c1.paxkv"),
        "{logs}"
    );
    assert!(
        !logs.contains("refused a peer message"),
        "a forged message reached a core:\n{logs}"
    );
    // Restarted, every replica still holds the cluster's true history: no
    // forged entry made it into any log.
    for i in 0..3 {
        c.kill(i);
    }
    c.start_all();
    assert_eq!(a.get(1).await, Ok(Some((Value::from(11), 2))));
    for i in 0..3 {
        assert!(alive(&mut c, i), "n{i}:\n{}", c.log_text(i));
    }
}

/// Plain TCP between peers only when asked for by name: a server given
/// neither the peer TLS files nor `--insecure-plaintext-peers` refuses to
/// start and says how; given the flag, the cluster serves and every
/// replica's log says its peers are unauthenticated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_talk_plain_tcp_only_when_asked_for_by_name() {
    let mut c = Cluster::new("plaintext", 3);
    let mut bare = Command::new(EXE);
    bare.args(["server", "--id", "0", "--peers", &c.peers_arg()])
        .args(["--endpoints", &c.endpoints_arg()])
        .args(["--cluster-id", &c.cluster.to_string()])
        .arg("--data-dir")
        .arg(c.data(0));
    let (status, text) = run_refused(bare);
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("peers authenticate with mutual TLS"),
        "{text}"
    );
    assert!(text.contains("--insecure-plaintext-peers"), "{text}");
    // A replica's certificate given as another replica's.
    let mut wrong = Command::new(EXE);
    wrong
        .args(["server", "--id", "0", "--peers", &c.peers_arg()])
        .args(["--endpoints", &c.endpoints_arg()])
        .args(["--cluster-id", &c.cluster.to_string()])
        .args(c.tls_args(1))
        .arg("--data-dir")
        .arg(c.data(0));
    let (status, text) = run_refused(wrong);
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("does not name replica-0.cluster-c1.paxkv"),
        "{text}"
    );
    for i in 0..3 {
        let mut cmd = Command::new(EXE);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(c.log(i))
            .unwrap();
        cmd.args(["server", "--id", &i.to_string(), "--peers", &c.peers_arg()])
            .args(["--endpoints", &c.endpoints_arg()])
            .args([
                "--cluster-id",
                &c.cluster.to_string(),
                "--insecure-plaintext-peers",
            ])
            .arg("--data-dir")
            .arg(c.data(i))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        c.procs[i] = Some(cmd.spawn().unwrap());
    }
    assert_eq!(c.client(1).put(1, 1).await, Ok(1));
    for i in 0..3 {
        assert!(
            c.log_text(i).contains("peers in PLAIN TCP"),
            "{}",
            c.log_text(i)
        );
    }
}

/// `paxkv local` as a child, its output gathered as it comes.
struct Local {
    child: Child,
    out: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Local {
    fn start(base: u16, data: &Path) -> Local {
        // A killed replica stays down 8 s, so that one restarted by hand
        // takes its lock first even on a loaded machine.
        let mut child = Command::new(EXE)
            .args(["local", "--base-port", &base.to_string()])
            .args(["--restart-after", "8"])
            .arg("--data-dir")
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run paxkv local");
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let lines = out.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                lines.lock().unwrap().push(l);
            }
        });
        Local { child, out }
    }

    /// The first output line after the first `skip` that starts with
    /// `prefix`, waiting up to 20 s.
    fn line(&self, prefix: &str, skip: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = self
                .out
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.starts_with(prefix))
                .nth(skip)
            {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line {prefix:?} (#{skip}):\n{}",
                self.out.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self, i: usize, nth: usize) -> u32 {
        let l = self.line(&format!("replica {i}: pid "), nth);
        l.rsplit(' ').next().unwrap().parse().unwrap()
    }

    /// Ctrl-C, and its exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 22's walk-through warts: `local` makes a throwaway CA and a fresh
/// cluster id for a fresh data directory, restarts a replica that is
/// killed, and on Ctrl-C stops every replica serving its directories, one
/// restarted by hand included (it used to keep running, and a later
/// `local` after `rm -rf paxkv-data` carried on with it and served a value
/// of the deleted cluster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_owns_its_cluster_and_a_fresh_directory_is_a_fresh_cluster() {
    let dir = temp_dir("local-owns");
    let base = free_ports(1)[0].port();
    let ports: Vec<u16> = (0..3).flat_map(|i| [base + i, base + 100 + i]).collect();
    if ports
        .iter()
        .any(|&p| TcpListener::bind(("127.0.0.1", p)).is_err())
    {
        println!("SKIPPED: ports of base {base} are not all free here");
        return;
    }
    let endpoints: Vec<SocketAddr> = (0..3).map(|i| ([127, 0, 0, 1], base + i).into()).collect();
    let data = dir.join("paxkv-data");
    let local = Local::start(base, &data);
    let client = |id| Client::new(endpoints.clone(), id).timeout(Duration::from_secs(15));
    assert_eq!(client(1).put(1, 42).await, Ok(1));
    let first_id = std::fs::read_to_string(data.join("cluster-id")).unwrap();
    assert!(data.join("tls").join("ca.pem").exists());
    // Killed: `local` restarts it.
    let pid0 = local.pid(0, 0);
    Command::new("kill")
        .args(["-9", &pid0.to_string()])
        .status()
        .unwrap();
    local.line("replica 0: restarting in", 0);
    let pid0b = local.pid(0, 1);
    assert_ne!(pid0, pid0b);
    // Killed, and restarted by hand before `local` would: left be.
    let pid2 = local.pid(2, 0);
    Command::new("kill")
        .args(["-9", &pid2.to_string()])
        .status()
        .unwrap();
    while paxkv::lock::holder(&data.join("n2")).is_some() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let tls = data.join("tls");
    let mut by_hand = Command::new(EXE)
        .args(["server", "--id", "2", "--data-dir"])
        .arg(data.join("n2"))
        .args(["--cluster-id", first_id.trim()])
        .args([
            "--endpoints",
            &endpoints
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ])
        .args([
            "--peers",
            &(0..3)
                .map(|i| format!("127.0.0.1:{}", base + 100 + i))
                .collect::<Vec<_>>()
                .join(","),
        ])
        .arg("--peer-cert-file")
        .arg(tls.join("replica-2.pem"))
        .arg("--peer-key-file")
        .arg(tls.join("replica-2.key"))
        .arg("--peer-trusted-ca-file")
        .arg(tls.join("ca.pem"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("by-hand.log")).unwrap())
        .spawn()
        .unwrap();
    // It holds replica 2's lock before `local` would restart it (8 s after
    // the kill); if not, its log says why.
    let deadline = Instant::now() + Duration::from_secs(20);
    while paxkv::lock::holder(&data.join("n2")) != Some(by_hand.id()) {
        let log = || std::fs::read_to_string(dir.join("by-hand.log")).unwrap_or_default();
        let exited = by_hand.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "the replica started by hand ({exited:?}) does not hold the lock:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    local.line("replica 2 was restarted outside `local`", 0);
    assert_eq!(client(2).get(1).await, Ok(Some((Value::from(42), 1))));
    assert!(local.interrupt().success());
    // The replica started by hand was stopped with the others.
    let deadline = Instant::now() + Duration::from_secs(10);
    while by_hand.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the replica started by hand still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for &p in &ports {
        assert!(
            TcpListener::bind(("127.0.0.1", p)).is_ok(),
            "port {p} still held"
        );
    }
    // `rm -rf paxkv-data`, then `local` again: a new cluster, which knows
    // nothing of the old one.
    std::fs::remove_dir_all(&data).unwrap();
    let again = Local::start(base, &data);
    assert_eq!(client(3).get(1).await, Ok(None));
    let second_id = std::fs::read_to_string(data.join("cluster-id")).unwrap();
    assert_ne!(first_id, second_id);
    assert!(again.interrupt().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Clients may use TLS too: with `--cert-file`/`--key-file` the client
/// address serves TLS; a client trusting the CA is served, one that speaks
/// plain TCP gets no welcome, and one trusting another CA is refused with
/// a TLS error, not a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_may_use_tls() {
    let mut c = Cluster::new("client-tls", 3);
    let f = c.tls.replicas[0].clone();
    c.extra = vec![
        "--cert-file".into(),
        f.cert.display().to_string(),
        "--key-file".into(),
        f.key.display().to_string(),
    ];
    c.start_all();
    let tls = paxkv::tls::ClientTls::load(&c.tls.ca).unwrap();
    let mut a = c.client(1).tls(tls);
    assert_eq!(a.put(1, 5).await, Ok(1));
    assert_eq!(a.get(1).await, Ok(Some((Value::from(5), 1))));
    let hello = wire::encode(&Hello::Client {
        protocol: wire::PROTOCOL,
        cluster: None,
    });
    assert_eq!(hello_and_answer(c.endpoints[0], &hello), None);
    let other = paxkv::tls::generate(&c.dir.join("other-ca"), 1, 1, &[]).unwrap();
    let wrong = paxkv::tls::ClientTls::load(&other.ca).unwrap();
    match c.client(2).tls(wrong).put(1, 6).await {
        Err(paxkv::client::Error::Refused(why)) => assert!(why.contains("TLS"), "{why}"),
        r => panic!("a client trusting another CA: {r:?}"),
    }
}

/// Acknowledges 20 puts through n0 and n2 (n1 down), stops both, cuts n0's
/// WAL in the middle (and, if `drop_mark`, deletes its mark, which is what
/// the code before issue 22 knew), then restarts n0 and n1 with n2 still
/// down and, after a while, n2. Returns how many acknowledged puts read
/// back absent or wrong, and the cluster.
async fn cut_mid_file_with_another_down(name: &str, drop_mark: bool) -> (usize, Cluster) {
    let mut c = Cluster::new(name, 3);
    // No compaction: the cut falls among the 20 puts' records.
    c.storage = [
        "--snapshot-every",
        "100000",
        "--compact-bytes",
        "1073741824",
    ];
    c.start_all();
    let mut a = c.client(1);
    assert_eq!(a.put(1000, 1).await, Ok(1));
    c.kill(1);
    for k in 0..20u64 {
        assert_eq!(a.put(k, 100 + k).await, Ok(1), "put {k}");
    }
    c.kill(0);
    c.kill(2);
    let wal = c.data(0).join("wal");
    let len = std::fs::metadata(&wal).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
    f.set_len(len * 6 / 10).unwrap();
    drop(f);
    if drop_mark {
        std::fs::remove_file(c.data(0).join("wal.mark")).unwrap();
    }
    c.start(0);
    c.start(1);
    // With n2 down, a read waits (n0 rebuilding, n1 alone); in the
    // control it is answered from what n0 and n1 hold, which seals the
    // loss (the slots n0 forgot are decided anew) before n2 is back.
    let wait = Duration::from_secs(if drop_mark { 30 } else { 4 });
    let early = c.client(2).timeout(wait).get(19).await;
    match drop_mark {
        false => assert_eq!(
            early,
            Err(paxkv::client::Error::Timeout),
            "served without n2"
        ),
        true => assert!(early.is_ok(), "the control was not served: {early:?}"),
    }
    c.start(2);
    let mut lost = 0;
    for k in 0..20u64 {
        if a.get(k).await.map(|v| v.map(|(v, _)| v)) != Ok(Some(Value::from(100 + k))) {
            lost += 1;
        }
    }
    (lost, c)
}

/// Issue 22: truncating a WAL mid-file was taken for a torn last record,
/// half the file disappeared, and with another replica down 20 of 20
/// acknowledged puts were lost. The WAL's mark (`kv::write_path::mark`)
/// tells a file cut after it was synced from one torn by a crash: n0
/// rebuilds from a majority of the others instead, waiting for n2, and
/// every acknowledged put reads back. Without the mark (the control, as the
/// code before) the same cut loses puts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_cut_mid_file_while_another_replica_is_down_loses_no_acknowledged_write() {
    let (lost, c) = cut_mid_file_with_another_down("cut", false).await;
    assert_eq!(lost, 0, "acknowledged puts lost:\n{}", c.log_text(0));
    let log = c.log_text(0);
    assert!(log.contains("had been synced"), "{log}");
    assert!(
        log.contains("rebuilt from the peers; voting again"),
        "{log}"
    );
    drop(c);
    let (lost, _c) = cut_mid_file_with_another_down("cut-unmarked", true).await;
    assert!(lost > 0, "the control lost nothing: the test has no teeth");
    println!("without the mark, {lost} of 20 acknowledged puts were lost");
}

/// The resident memory of replica `i`'s process, in kB.
fn rss_kb(c: &Cluster, i: usize) -> u64 {
    let kb = paxkv::jepsen::rss_kb(c.procs[i].as_ref().expect("running").id());
    assert!(kb > 0, "no VmRSS for n{i}");
    kb
}

/// Issue 22, bounded resources: a client that pipelines puts of the
/// largest values and never reads a reply. The leader executes them (they
/// are valid), drops the replies the client does not read (at most
/// `CLIENT_REPLIES` wait per connection), keeps its memory within a small
/// bound, and serves another client meanwhile: the core drains its queue
/// faster than one connection fills it. (A byte budget on the requests
/// waiting for the core, tried at issue 22, cost 4-7% of get throughput in
/// a side-by-side benchmark and changed nothing here; the queue stays
/// bounded in count, 8,192 requests of at most 64 KiB.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pipelines_without_reading_is_held_to_a_bounded_share() {
    let mut c = Cluster::new("pipeline", 3);
    c.start_all();
    let mut a = c.client(1);
    assert_eq!(a.put(0, 0).await, Ok(1));
    // The leader: whoever answers a read itself.
    let leader = (0..3)
        .find(|&i| {
            let cmd = kv::Command {
                client: 90 + i as u32,
                seq: 1,
                op: kv::Op::Get { key: 0 },
            };
            matches!(
                command_and_answer(c.endpoints[i], &cmd),
                Some(wire::Response::Reply { .. })
            )
        })
        .expect("a leader");
    let before = rss_kb(&c, leader);
    let hello = wire::encode(&Hello::Client {
        protocol: wire::PROTOCOL,
        cluster: None,
    });
    let addr = c.endpoints[leader];
    let flood = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(&(hello.len() as u32).to_be_bytes()).unwrap();
        s.write_all(&hello).unwrap();
        // Distinct client ids: no two requests are one retried command.
        for n in 0..20_000u32 {
            let cmd = kv::Command {
                client: 100_000 + n,
                seq: 1,
                op: kv::Op::Put {
                    key: 1 << 30,
                    value: Value::from(vec![b'p'; kv::VALUE_MAX]),
                },
            };
            let b = wire::encode(&cmd);
            let ok =
                s.write_all(&(b.len() as u32).to_be_bytes()).is_ok() && s.write_all(&b).is_ok();
            if !ok {
                break;
            }
        }
        s
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut served = 0;
    for k in 0..20 {
        if a.put(10 + k, k).await.is_ok() {
            served += 1;
        }
    }
    let during = rss_kb(&c, leader);
    println!("leader n{leader}: RSS {before} kB before, {during} kB while a client pipelines 32 KiB puts unread");
    assert_eq!(served, 20, "another client was not served");
    assert!(
        during < before + 200_000,
        "the leader grew from {before} kB to {during} kB"
    );
    drop(flood);
}

/// The view a replica gives of the membership, asked until `done` holds.
async fn await_members(
    c: &Cluster,
    done: impl Fn(&kv::server::MemberView) -> bool,
) -> kv::server::MemberView {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        let mut op = c.client(77).timeout(Duration::from_secs(3));
        if let Ok(kv::server::AdminReply::Members(v)) = op.admin(kv::server::Admin::List).await {
            if done(&v) {
                return v;
            }
            last = Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the membership never got there; last seen: {last:?}")
}

/// Issue 23: a replica's machine dies for good; an operator replaces it by
/// a new machine under a new id, which learns the cluster from the cluster
/// (not from flags), catches up as a learner and is promoted, the dead one
/// removed in the same configuration. A writer runs throughout and every
/// write succeeds; afterwards the new replica's vote is needed (another
/// original is killed) and it restarts from its own directory alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_is_replaced_by_a_new_machine_while_the_cluster_serves() {
    use kv::server::{Admin, AdminReply};
    let mut c = Cluster::new("replace", 4);
    c.first = 3;
    c.start_all();
    let mut w = c.client(1);
    for k in 0..20 {
        assert_eq!(w.put(k, k).await, Ok(1));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let mut w = c.client(2);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut k = 100;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(
                    w.put(k, k).await,
                    Ok(1),
                    "write {k} while the membership changed"
                );
                k += 1;
            }
            k - 100
        })
    };

    // Replica 2's machine is gone for good.
    c.kill(2);
    std::fs::remove_dir_all(c.data(2)).expect("rm");
    let addrs = kv::Addrs {
        peer: c.peers[3].to_string(),
        client: c.endpoints[3].to_string(),
    };
    let change = multipaxos::Change::Replace {
        old: 1 << 2,
        new: 1 << 3,
    };
    let mut op = c.client(3);
    match op
        .admin(Admin::Change {
            change,
            addrs: vec![(3, addrs.clone())],
        })
        .await
    {
        Ok(AdminReply::Changed(Ok(m))) => assert_eq!((m.learners, m.leaving), (1 << 3, 1 << 2)),
        r => panic!("not proposed: {r:?}"),
    }
    // Ids are never reused, and one change runs at a time.
    let again = Admin::Change {
        change: multipaxos::Change::Add(2),
        addrs: vec![(2, addrs)],
    };
    assert!(matches!(
        op.admin(again).await,
        Ok(AdminReply::Changed(Err(_)))
    ));

    c.start(3);
    let v = await_members(&c, |v| v.in_force.voters == 0b1011).await;
    assert_eq!(v.in_force.gone, 1 << 2, "{v:?}");
    assert_eq!(v.peers.len(), 4, "the whole address book: {v:?}");
    c.await_log(3, "joining: the cluster answered");
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.expect("every write succeeded");
    assert!(written > 0);

    // The new replica votes: with replica 0 down too, 1 and 3 are a majority.
    c.kill(0);
    let mut r = c.client(4);
    for k in 0..20 {
        assert_eq!(r.get(k).await, Ok(Some((Value::from(k), 1))));
    }
    for k in 100..100 + written {
        assert_eq!(
            r.get(k).await,
            Ok(Some((Value::from(k), 1))),
            "acknowledged write {k}"
        );
    }
    assert_eq!(r.put(1000, 1).await, Ok(1));
    // It restarts from its data directory alone (no --join needed; the
    // flag it was started with is ignored once the directory knows).
    c.kill(3);
    c.start(3);
    assert_eq!(r.put(1001, 1).await, Ok(1));
    assert_eq!(r.get(1000).await, Ok(Some((Value::from(1), 1))));
    let asked = c
        .log_text(3)
        .matches("joining: the cluster answered")
        .count();
    assert_eq!(asked, 1, "the restart asked the cluster again");
}

/// `paxkv member` with a replica id no cluster can have says so and exits
/// 3, before it connects anywhere (it once built the change's id sets
/// first, and `replace 20 21` panicked on the bit of id 20).
#[test]
fn member_commands_refuse_ids_out_of_range() {
    for args in [
        &[
            "member",
            "replace",
            "20",
            "21",
            "127.0.0.1:1",
            "127.0.0.1:2",
        ][..],
        &["member", "add", "16", "127.0.0.1:1", "127.0.0.1:2"],
        &["member", "remove", "200"],
    ] {
        let o = Command::new(EXE).args(args).output().expect("runs");
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {out}{err}");
        assert!(
            out.contains("no such replica id") && out.contains("0 to 15"),
            "{out}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
