//! The Jepsen-style harness's nemeses of hostile and careless hands (issue
//! 22): a stray process that tries to speak as a replica, clients that say
//! hello and then nothing, and a crowd of clients writing the largest
//! values. Each returns what it did, for the nemesis log, and the
//! violations it saw itself; what they must not change (the history, the
//! final reads) the harness's checks judge as for every fault.

use crate::tls::{Generated, PeerFiles, PeerTls};
use crate::wire::{self, Hello, Welcome};
use crate::Client;
use futures_util::{SinkExt, StreamExt};
use kv::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// The value a stray's forged Accepts carry: no client ever writes it, so
/// a read of it is a write nobody issued (the harness's checks flag it).
pub const FORGED: &[u8] = b"forged by a stray process";

/// A forged Accept of `FORGED` on `key` in slot `slot`, with a commit index
/// past it, as the stray sent them.
pub fn forged_accept(from: u8, key: u64, slot: u64) -> wire::PeerMsg {
    multipaxos::Msg::Accept {
        ballot: multipaxos::Ballot {
            round: 1 << 20,
            node: from,
        },
        slot,
        entry: multipaxos::Entry::Cmds(
            vec![kv::Cmd::Client(kv::Command {
                client: 0xBAD,
                seq: slot + 1,
                op: kv::Op::Put {
                    key,
                    value: Value::from(FORGED),
                },
            })]
            .into(),
        ),
        commit: slot + 1,
    }
}

/// Says hello as replica `claim` on `s`, then sends forged Accepts: the
/// answer to the hello (`None`: no answer, the connection closed).
async fn hello_then_forge<S: crate::tls::Stream + 'static>(
    s: S,
    cluster: u64,
    claim: u8,
    to: u8,
    key: u64,
) -> Option<Welcome> {
    let mut f = Framed::new(s, wire::codec(wire::PEER_FRAME_MAX));
    let hello = Hello::Peer {
        protocol: wire::PROTOCOL,
        cluster,
        from: claim,
        to,
    };
    f.send(wire::encode(&hello)).await.ok()?;
    // Forged messages right behind the hello, without waiting for an
    // answer: nothing after a refused hello may be read.
    for slot in 0..40 {
        if f.send(wire::encode(&forged_accept(claim, key, slot)))
            .await
            .is_err()
        {
            break;
        }
    }
    let answer = tokio::time::timeout(Duration::from_secs(3), f.next())
        .await
        .ok()??
        .ok()?;
    wire::decode(&answer).ok()
}

/// A stray process at replica `target`'s peer address: plain TCP, bytes
/// that are no frame, a certificate of another CA naming another replica,
/// and another replica's own key claiming a third's id, each followed by
/// forged Accepts on `key`. Every one must be refused; a welcome is a
/// violation.
pub async fn stray_peer(
    peers: &[SocketAddr],
    cluster: u64,
    tls: &Generated,
    stray_ca: &Generated,
    target: usize,
    key: u64,
) -> (String, Vec<String>) {
    let n = peers.len();
    let to = target as u8;
    let claim = ((target + 1) % n) as u8;
    let addr = peers[target];
    let mut tried = Vec::new();
    let mut violations = Vec::new();
    let mut judge = |what: &str, w: Option<Welcome>| {
        tried.push(what.to_string());
        if let Some(Welcome::Ok { .. }) = w {
            violations.push(format!(
                "n{target} welcomed a stray process as replica {claim} ({what})"
            ));
        }
    };
    let connect = || TcpStream::connect(addr);
    if let Ok(s) = connect().await {
        judge(
            "plain TCP",
            hello_then_forge(s, cluster, claim, to, key).await,
        );
    }
    if let Ok(mut s) = connect().await {
        let _ = s
            .write_all(b"\x16\x03\x01\x00\x05garbage, not a handshake")
            .await;
        judge("garbage", None);
    }
    // Another CA's certificate naming replica `claim` of this very cluster
    // (trusting the real CA, so that only the server's check can refuse).
    let stray = PeerFiles {
        ca: tls.ca.clone(),
        ..stray_ca.replicas[claim as usize].clone()
    };
    if let (Ok(t), Ok(s)) = (PeerTls::load(&stray, cluster, claim), connect().await) {
        let w = match t.dial(s, to).await {
            Ok(s) => hello_then_forge(s, cluster, claim, to, key).await,
            Err(_) => None,
        };
        judge("another CA's certificate", w);
    }
    // A real replica's key, claiming another replica's id.
    if n >= 3 {
        let thief = ((target + 2) % n) as u8;
        let files = &tls.replicas[thief as usize];
        if let (Ok(t), Ok(s)) = (PeerTls::load(files, cluster, thief), connect().await) {
            let w = match t.dial(s, to).await {
                Ok(s) => hello_then_forge(s, cluster, claim, to, key).await,
                Err(_) => None,
            };
            judge(&format!("replica {thief}'s key"), w);
        }
    }
    let what = format!(
        "a stray process at n{target}'s peer address as replica {claim} ({}), forged Accepts of key {key}",
        tried.join(", ")
    );
    (what, violations)
}

/// Opens `count` client connections to `addr` that say hello and then
/// nothing, holds them for `hold`, and closes them: how many were welcomed.
pub async fn silent_clients(addr: SocketAddr, count: usize, hold: Duration) -> usize {
    let mut held = Vec::new();
    let hello = wire::encode(&Hello::Client {
        protocol: wire::PROTOCOL,
        cluster: None,
    });
    for _ in 0..count {
        let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await
        else {
            continue;
        };
        let mut f = Framed::new(s, wire::codec(wire::CLIENT_FRAME_MAX));
        if f.send(hello.clone()).await.is_err() {
            continue;
        }
        if let Ok(Some(Ok(w))) = tokio::time::timeout(Duration::from_secs(1), f.next()).await {
            if let Ok(Welcome::Ok { .. }) = wire::decode::<Welcome>(&w) {
                held.push(f);
            }
        }
    }
    let welcomed = held.len();
    tokio::time::sleep(hold).await;
    drop(held);
    welcomed
}

/// The resident memory of process `pid`, in kB (0 if unknown).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The most a server may hold while the crowd writes: far above what it
/// needs (a few hundred MB), far below unbounded growth.
pub const CROWD_RSS_MAX_KB: u64 = 1_500_000;

/// `count` more clients, each putting values of [`kv::VALUE_MAX`] bytes to
/// its own key (outside the checked keys) for `hold`, while every server's
/// memory is sampled: what happened, and a violation if no put was
/// acknowledged or a server's memory passed [`CROWD_RSS_MAX_KB`].
pub async fn crowd(
    endpoints: &[SocketAddr],
    cluster: u64,
    pids: &[u32],
    count: usize,
    hold: Duration,
) -> (String, Vec<String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let value = Value::from(vec![b'c'; kv::VALUE_MAX]);
    let mut tasks = Vec::new();
    for k in 0..count {
        let mut c = Client::new(endpoints.to_vec(), 700_000 + k as u32)
            .cluster(cluster)
            .timeout(Duration::from_secs(2));
        let (stop, acked, value) = (stop.clone(), acked.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let key = (1 << 40) + k as u64;
            while !stop.load(Ordering::Relaxed) {
                if c.put(key, value.clone()).await.is_ok() {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Gone again, so that the rest of the run does not snapshot
            // (and compact, and rebuild) 400 large values over and over.
            let _ = c.delete(key).await;
        }));
    }
    let mut peak = 0;
    let until = tokio::time::Instant::now() + hold;
    while tokio::time::Instant::now() < until {
        peak = pids.iter().map(|&p| rss_kb(p)).max().unwrap_or(0).max(peak);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.load(Ordering::Relaxed);
    let what = format!(
        "{count} more clients put {} KiB values: {acked} acknowledged, peak server RSS {} MB",
        kv::VALUE_MAX >> 10,
        peak / 1024
    );
    let mut violations = Vec::new();
    if acked == 0 {
        violations.push(format!(
            "{count} clients of large values: no put acknowledged"
        ));
    }
    if peak > CROWD_RSS_MAX_KB {
        violations.push(format!(
            "a server held {peak} kB while {count} clients wrote large values"
        ));
    }
    (what, violations)
}
