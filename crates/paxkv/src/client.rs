//! The client library: [`kv::client::Client`]'s logic (one request at a
//! time, tagged (client id, seq) so the service executes it at most once,
//! resent to the leader a replica names or to the next replica after a
//! timeout) over TCP.
//!
//! ```no_run
//! # async fn demo() -> Result<(), paxkv::client::Error> {
//! let endpoints = vec!["127.0.0.1:7001".parse().unwrap()];
//! let mut c = paxkv::Client::new(endpoints, 42);
//! c.put(1, "hello").await?;
//! let (value, version) = c.get(1).await?.expect("just written");
//! assert_eq!((value.as_bytes(), version), (&b"hello"[..], 1));
//! # Ok(()) }
//! ```

use crate::tls::{BoxStream, ClientTls};
use crate::wire::{self, Hello, Response, Welcome};
use bytes::Bytes;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use kv::{ClientId, Key, LockError, LockId, Op, Reply, SessionError, Value, VALUE_MAX};
use multipaxos::NodeId;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// No answer within the client's timeout. The command may or may not
    /// have executed (at most once).
    Timeout,
    /// A server refused the connection (another cluster, another protocol).
    Refused(String),
    /// The answer was not the kind the operation returns.
    Unexpected(Reply),
    /// The value is larger than the service takes ([`kv::VALUE_MAX`]);
    /// nothing was sent.
    ValueTooLarge { len: usize },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Timeout => write!(
                f,
                "no answer in time (the command may or may not have executed)"
            ),
            Error::Refused(why) => write!(f, "the server refused the connection: {why}"),
            Error::Unexpected(r) => write!(f, "unexpected reply {r:?}"),
            Error::ValueTooLarge { len } => write!(
                f,
                "a value of {len} bytes is larger than the service takes ({VALUE_MAX} bytes)"
            ),
        }
    }
}

impl std::error::Error for Error {}

type Sink = SplitSink<Framed<BoxStream, LengthDelimitedCodec>, Bytes>;

/// A connection to one replica, numbered so that a reader's end is not
/// mistaken for a newer connection's.
struct Conn {
    sink: Sink,
    gen: u64,
}

enum FromConn {
    Response(Response),
    Closed,
}

pub struct Client {
    core: kv::client::Client,
    id: ClientId,
    peers: Vec<SocketAddr>,
    cluster: Option<u64>,
    tls: Option<ClientTls>,
    conns: Vec<Option<Conn>>,
    gen: u64,
    tx: mpsc::UnboundedSender<(NodeId, u64, FromConn)>,
    rx: mpsc::UnboundedReceiver<(NodeId, u64, FromConn)>,
    retry: Duration,
    timeout: Duration,
    /// Send every command to this replica first (see [`Client::home`]).
    home: Option<NodeId>,
    /// The last request number used.
    last_seq: u64,
    /// `peers` are some replicas' addresses whatever their ids
    /// ([`Client::via`]): for a view, not for commands.
    via: bool,
}

impl Client {
    /// A client `id` of the cluster at `peers` (every replica's client
    /// address, by id). Its request numbers start above the wall clock in microseconds,
    /// so that a later program reusing `id` numbers above this one.
    pub fn new(peers: Vec<SocketAddr>, id: ClientId) -> Client {
        assert!(!peers.is_empty() && peers.len() <= multipaxos::MAX_NODES);
        let (tx, rx) = mpsc::unbounded_channel();
        let retry = Duration::from_millis(300);
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Client {
            core: kv::client::Client::resume(
                id,
                peers.len() as u8,
                0,
                retry.as_micros() as u64,
                now_us,
            ),
            id,
            conns: peers.iter().map(|_| None).collect(),
            peers,
            cluster: None,
            tls: None,
            gen: 0,
            tx,
            rx,
            retry,
            timeout: Duration::from_secs(10),
            home: None,
            last_seq: now_us,
            via: false,
        }
    }

    /// A client for operators' views only ([`Client::admin`] with
    /// [`kv::server::Admin::List`]), given the client addresses of some
    /// replicas, whatever their ids: how a new replica asks the cluster it
    /// joins.
    pub fn via(addrs: Vec<SocketAddr>, id: ClientId) -> Client {
        let mut c = Client::new(addrs, id);
        c.via = true;
        c
    }

    /// Refuse servers of any other cluster.
    pub fn cluster(mut self, cluster: u64) -> Client {
        self.cluster = Some(cluster);
        self
    }

    /// Talk TLS to the servers (their client addresses must serve it).
    pub fn tls(mut self, tls: ClientTls) -> Client {
        self.tls = Some(tls);
        self
    }

    /// Try the next replica after `t` without an answer (default 300 ms).
    pub fn retry(mut self, t: Duration) -> Client {
        self.retry = t;
        self.core = self.fresh_core(0, self.last_seq);
        self
    }

    /// The sans-IO client afresh: first to replica `target`, numbering
    /// above `seq`, retrying after `self.retry`.
    fn fresh_core(&self, target: NodeId, seq: u64) -> kv::client::Client {
        kv::client::Client::resume(
            self.id,
            self.peers.len() as u8,
            target,
            self.retry.as_micros() as u64,
            seq,
        )
    }

    /// Give up on a command after `t` (default 10 s).
    pub fn timeout(mut self, t: Duration) -> Client {
        self.timeout = t;
        self
    }

    /// Send every command to replica `home` first, as a client bound to
    /// one node does (Jepsen's clients are), instead of to the leader the
    /// last answer named; redirects and timeouts still move it on.
    pub fn home(mut self, home: NodeId) -> Client {
        assert!((home as usize) < self.peers.len());
        self.home = Some(home);
        self
    }

    pub fn id(&self) -> ClientId {
        self.id
    }

    /// The replica (index into the peers) the next command goes to first:
    /// the one that answered the last (the leader, for writes).
    pub fn target(&self) -> NodeId {
        self.core.target()
    }

    /// Runs `op` to completion: resent on timeouts and redirects, executed
    /// at most once.
    pub async fn call(&mut self, op: Op) -> Result<Reply, Error> {
        if let Some(v) = op.value().filter(|v| v.len() > VALUE_MAX) {
            return Err(Error::ValueTooLarge { len: v.len() });
        }
        let mut out = Vec::new();
        if let Some(home) = self.home {
            self.core = self.fresh_core(home, self.last_seq);
        }
        let cmd = self.core.invoke(op, &mut out);
        self.last_seq = cmd.seq;
        let deadline = Instant::now() + self.timeout;
        let mut timer: Option<(Instant, u64)> = None;
        // Replicas found unreachable in a row: each is passed at once, not
        // after the retry interval, until every one was tried.
        let mut skipped = 0;
        let result = loop {
            let mut refused = None;
            let mut unreachable = false;
            for o in out.drain(..) {
                match o {
                    kv::client::ClientOut::Send { to, cmd } => {
                        match self.send(to, wire::encode(&cmd)).await {
                            Ok(sent) => unreachable |= !sent,
                            Err(e) => refused = Some(e),
                        }
                    }
                    kv::client::ClientOut::SetTimer { delay_us, epoch } => {
                        timer = Some((Instant::now() + Duration::from_micros(delay_us), epoch));
                    }
                }
            }
            if let Some(e) = refused {
                break Err(e);
            }
            if unreachable && skipped < self.peers.len() {
                if let Some((_, epoch)) = timer.take() {
                    skipped += 1;
                    self.core.on_timer(epoch, &mut out);
                    continue;
                }
            }
            let retry_at = timer.map_or(deadline, |(at, _)| at.min(deadline));
            tokio::select! {
                r = self.rx.recv() => {
                    let (from, gen, r) = r.expect("the client holds a sender");
                    skipped = 0;
                    match r {
                        FromConn::Response(Response::Reply { seq, reply }) => {
                            if let Some((_, reply)) = self.core.on_reply(from, seq, reply) {
                                break Ok(reply);
                            }
                        }
                        FromConn::Response(Response::Redirect { seq, leader }) => {
                            self.core.on_redirect(seq, leader, &mut out);
                        }
                        FromConn::Response(Response::Error(why)) => {
                            break Err(Error::Refused(why));
                        }
                        // Not an answer to a command.
                        FromConn::Response(Response::Admin { .. }) => {}
                        FromConn::Closed => {
                            if self.conns[from as usize].as_ref().is_some_and(|c| c.gen == gen) {
                                self.conns[from as usize] = None;
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(retry_at) => {
                    if Instant::now() >= deadline {
                        break Err(Error::Timeout);
                    }
                    if let Some((_, epoch)) = timer.take() {
                        self.core.on_timer(epoch, &mut out);
                    }
                }
            }
        };
        if self.core.current().is_some() {
            // Abandoned (timeout or refusal): the next command gets a fresh
            // number, and this one executes at most once, if at all.
            self.core = self.fresh_core(0, cmd.seq);
        }
        result
    }

    /// Sends a frame to replica `to`, connecting first if need be:
    /// `Ok(false)` if it cannot be reached (the caller moves on to the
    /// next); one that refuses the client is an error.
    async fn send(&mut self, to: NodeId, frame: Bytes) -> Result<bool, Error> {
        let i = to as usize;
        if self.conns[i].is_none() {
            match self.connect(to).await {
                Ok(c) => self.conns[i] = Some(c),
                Err(Some(e)) => return Err(e),
                Err(None) => return Ok(false),
            }
        }
        let c = self.conns[i].as_mut().expect("connected above");
        if c.sink.send(frame).await.is_err() {
            self.conns[i] = None;
            return Ok(false);
        }
        Ok(true)
    }

    async fn connect(&mut self, to: NodeId) -> Result<Conn, Option<Error>> {
        let framed = self.open(to, false).await?;
        self.gen += 1;
        let gen = self.gen;
        let (sink, mut stream) = framed.split();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Ok(r) = wire::decode::<Response>(&frame) else {
                    break;
                };
                if tx.send((to, gen, FromConn::Response(r))).is_err() {
                    return;
                }
            }
            let _ = tx.send((to, gen, FromConn::Closed));
        });
        Ok(Conn { sink, gen })
    }

    /// A connection to replica `to`, welcomed: a client's, or an
    /// operator's (`admin`). `Err(None)`: unreachable; `Err(Some)`: refused.
    async fn open(
        &self,
        to: NodeId,
        admin: bool,
    ) -> Result<Framed<BoxStream, LengthDelimitedCodec>, Option<Error>> {
        let addr = self.peers[to as usize];
        let s = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr))
            .await
            .map_err(|_| None)?
            .map_err(|_| None)?;
        let _ = s.set_nodelay(true);
        let s: BoxStream = match &self.tls {
            None => Box::new(s),
            Some(tls) => {
                let shake = tokio::time::timeout(Duration::from_secs(2), tls.connect(s, addr.ip()));
                match shake.await.map_err(|_| None)? {
                    Ok(s) => s,
                    // A certificate refused is no passing trouble.
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        return Err(Some(Error::Refused(format!("TLS with {addr}: {e}"))))
                    }
                    Err(_) => return Err(None),
                }
            }
        };
        let mut framed = Framed::new(s, wire::codec(wire::CLIENT_FRAME_MAX));
        let hello = match admin {
            false => Hello::Client {
                protocol: wire::PROTOCOL,
                cluster: self.cluster,
            },
            true => Hello::Admin {
                protocol: wire::PROTOCOL,
                cluster: self.cluster,
            },
        };
        framed.send(wire::encode(&hello)).await.map_err(|_| None)?;
        let welcome = tokio::time::timeout(Duration::from_secs(2), framed.next())
            .await
            .map_err(|_| None)?
            .ok_or(None)?
            .map_err(|_| None)?;
        match wire::decode::<Welcome>(&welcome).map_err(|_| None)? {
            // A list that is not the cluster's (one replica given of
            // three, or out of order) would only send redirects to
            // replicas this client cannot name: say so instead of timing
            // out. (Membership changes add ids: a list may name more. An
            // operator's request needs only the replica asked and the
            // leader it names, so any prefix of the list serves it.)
            Welcome::Ok { id, n }
                if !self.via && ((n as usize > self.peers.len() && !admin) || id != to) =>
            {
                Err(Some(Error::Refused(format!(
                    "{addr} is replica {id} of a cluster of {n} (ids 0 to {}), but this client was given {} address(es) with {addr} as replica {to}: \
                     give every replica's address, in id order (`paxkv member list` shows them)",
                    n.saturating_sub(1),
                    self.peers.len()
                ))))
            }
            Welcome::Ok { .. } => Ok(framed),
            Welcome::Refused(why) => Err(Some(Error::Refused(why))),
        }
    }

    /// An operator's membership request ([`kv::server::Admin`]): a view
    /// from the replica this client targets (any replica answers it), a
    /// change from the leader (redirects are followed; unreachable
    /// replicas are passed). A change is answered once proposed: watch
    /// the view for it to take effect.
    pub async fn admin(
        &mut self,
        admin: kv::server::Admin,
    ) -> Result<kv::server::AdminReply, Error> {
        let deadline = Instant::now() + self.timeout;
        self.last_seq += 1;
        let req = wire::AdminRequest {
            client: self.id,
            seq: self.last_seq,
            admin,
        };
        let n = self.peers.len() as NodeId;
        let mut to = self.core.target().min(n - 1);
        let mut hints = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            let once = async {
                let mut f = self.open(to, true).await?;
                f.send(wire::encode(&req)).await.map_err(|_| None)?;
                let r = f.next().await.ok_or(None)?.map_err(|_| None)?;
                wire::decode::<Response>(&r).map_err(|_| None)
            };
            match tokio::time::timeout(left.min(self.retry * 4), once).await {
                Ok(Ok(Response::Admin { seq, reply })) if seq == req.seq => return Ok(reply),
                Ok(Ok(Response::Error(why))) => return Err(Error::Refused(why)),
                Ok(Ok(Response::Redirect {
                    leader: Some(l), ..
                })) if l < n && l != to && hints < n => {
                    hints += 1;
                    to = l;
                    continue;
                }
                Ok(Err(Some(e))) => return Err(e),
                _ => {}
            }
            to = (to + 1) % n;
            if to == 0 {
                tokio::time::sleep(self.retry.min(left)).await;
            }
        }
    }

    /// The key's (value, version), or None if absent.
    pub async fn get(&mut self, key: Key) -> Result<Option<(Value, u64)>, Error> {
        match self.call(Op::Get { key }).await? {
            Reply::Value(v) => Ok(v),
            r => Err(Error::Unexpected(r)),
        }
    }

    /// Writes the key; returns its new version.
    pub async fn put(&mut self, key: Key, value: impl Into<Value>) -> Result<u64, Error> {
        let value = value.into();
        match self.call(Op::Put { key, value }).await? {
            Reply::Version(v) => Ok(v),
            r => Err(Error::Unexpected(r)),
        }
    }

    /// Deletes the key; returns whether it existed.
    pub async fn delete(&mut self, key: Key) -> Result<bool, Error> {
        match self.call(Op::Delete { key }).await? {
            Reply::Deleted(d) => Ok(d),
            r => Err(Error::Unexpected(r)),
        }
    }

    /// Writes `value` if the key's version is `expected` (0: absent):
    /// Ok(new version), or Err(the actual version).
    pub async fn cas(
        &mut self,
        key: Key,
        expected: u64,
        value: impl Into<Value>,
    ) -> Result<Result<u64, u64>, Error> {
        let value = value.into();
        match self
            .call(Op::Cas {
                key,
                expected,
                value,
            })
            .await?
        {
            Reply::Cas(r) => Ok(r),
            r => Err(Error::Unexpected(r)),
        }
    }

    /// Opens (or re-opens) this client's session; returns the service time
    /// (us) at which it expires unless kept alive.
    pub async fn open_session(
        &mut self,
        ttl: Duration,
    ) -> Result<Result<u64, SessionError>, Error> {
        let ttl_us = ttl.as_micros() as u64;
        self.session(Op::OpenSession { ttl_us }).await
    }

    pub async fn keep_alive(&mut self) -> Result<Result<u64, SessionError>, Error> {
        self.session(Op::KeepAlive).await
    }

    async fn session(&mut self, op: Op) -> Result<Result<u64, SessionError>, Error> {
        match self.call(op).await? {
            Reply::Session(r) => Ok(r),
            r => Err(Error::Unexpected(r)),
        }
    }

    /// Closes the session (its ephemeral keys vanish, its locks are
    /// released); returns whether a live session was closed.
    pub async fn close_session(&mut self) -> Result<bool, Error> {
        match self.call(Op::CloseSession).await? {
            Reply::Closed(c) => Ok(c),
            r => Err(Error::Unexpected(r)),
        }
    }

    /// Writes a key owned by this client's live session.
    pub async fn put_ephemeral(
        &mut self,
        key: Key,
        value: impl Into<Value>,
    ) -> Result<Reply, Error> {
        let value = value.into();
        self.call(Op::PutEphemeral { key, value }).await
    }

    /// Takes a lock for this client's session: Ok(fencing token) or why not.
    pub async fn acquire(&mut self, lock: LockId) -> Result<Result<u64, LockError>, Error> {
        match self.call(Op::Acquire { lock }).await? {
            Reply::Lock(r) => Ok(r),
            r => Err(Error::Unexpected(r)),
        }
    }

    /// Releases the lock held under `token`; returns whether it was released.
    pub async fn release(&mut self, lock: LockId, token: u64) -> Result<bool, Error> {
        match self.call(Op::Release { lock, token }).await? {
            Reply::Released(r) => Ok(r),
            r => Err(Error::Unexpected(r)),
        }
    }
}
