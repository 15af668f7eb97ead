//! The trace: every send, receive, drop, duplicate, timer, write, sync,
//! crash, restart, fault, note and client action of a run, as one
//! [`Event`] each, for any [`Protocol`].
//!
//! Recording costs no allocation: every event is hashed into a running
//! fingerprint (same seed ⇒ same hash, which the determinism check compares)
//! and kept in a short ring of recent events for failure reports. The full
//! trace is kept only when asked for. A finished run hands its events on
//! rendered ([`Line`]: text and JSON), so that campaigns, replays and the
//! CLI need not know the protocol.

use crate::engine::protocol::Protocol;
use crate::nemesis::Fault;
use checkers::fmt_time;
use paxos::NodeId;
use rustc_hash::FxHasher;
use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Why a message did not arrive.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The nemesis dropped it at random.
    Loss,
    /// A partition or one-way cut lay between sender and receiver.
    Partition,
    /// The receiver was down when it arrived.
    Down,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Loss => "loss",
            DropReason::Partition => "partition",
            DropReason::Down => "down",
        }
    }
}

/// A message's link and the id its send gave it: a receive, drop or
/// duplicate names the send it came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Link {
    pub from: NodeId,
    pub to: NodeId,
    pub id: u64,
}

/// Why a node's process stopped.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CrashCause {
    /// A fault: the nemesis's schedule (a crash, or the one before a bit
    /// flip or a wipe takes effect), or a model's script.
    Fault,
    /// Power failed while a sync was in flight (`crash_in_sync_permille`).
    PowerLossInSync,
    /// Power failed while a snapshot was being written
    /// (`snapshot_crash_permille`).
    PowerLossInSnapshot,
}

impl CrashCause {
    pub fn as_str(self) -> &'static str {
        match self {
            CrashCause::Fault => "fault",
            CrashCause::PowerLossInSync => "power_loss_in_sync",
            CrashCause::PowerLossInSnapshot => "power_loss_in_snapshot",
        }
    }
}

/// What happened. Where it happened is [`Event::node`]: the sender of a
/// send, the receiver of a receive or a forged message, the node a fault
/// acts on; `None` for what happens in the network (drops, duplicates), at
/// the clients (invoke, complete, retry) or in the harness (quiet, faults
/// on links). Messages carry the id their send gave them: a receive, drop
/// or duplicate names the send it came from.
pub enum Kind<P: Protocol> {
    Send {
        link: Link,
        msg: P::MsgSummary,
    },
    Receive {
        link: Link,
        msg: P::MsgSummary,
    },
    Drop {
        link: Link,
        msg: P::MsgSummary,
        reason: DropReason,
    },
    Duplicate {
        link: Link,
        msg: P::MsgSummary,
    },
    /// The node asked for a timer: `delay_us` on its own clock, plus up to
    /// `jitter_us`; `due_us` is when it fires in real time if the node
    /// lives (`None` in a model's script, where a step fires it).
    TimerSet {
        timer: P::Timer,
        delay_us: u64,
        jitter_us: u64,
        due_us: Option<u64>,
    },
    /// A timer fired.
    Timer {
        timer: P::Timer,
    },
    Persist {
        seq: u64,
        write: P::WriteSummary,
    },
    /// The node asked that its writes up to `upto` be made durable.
    SyncRequest {
        upto: u64,
    },
    /// Its writes up to `upto` are durable (the node hears of it now).
    Sync {
        upto: u64,
    },
    Crash {
        lost_writes: u32,
        cause: CrashCause,
    },
    Restart,
    /// The node found its disk wiped or corrupt and rebuilds from peers.
    Rebuilding {
        corrupt: bool,
    },
    Fault {
        fault: Fault,
    },
    Quiet,
    /// A fact the node reported (learned, applied, elected ...).
    Note {
        note: P::NoteSummary,
    },
    /// A client starts an operation.
    Invoke {
        client: u32,
        req: P::Request,
    },
    /// A client's request reaches node `node`.
    Request {
        client: u32,
        req: P::Request,
    },
    /// Node `node` answers a client.
    Reply {
        client: u32,
        reply: P::Reply,
    },
    /// A client accepted `reply` from node `from`: its operation completed.
    Complete {
        client: u32,
        from: NodeId,
        reply: P::Reply,
    },
    /// A client timed out and resends.
    Retry {
        client: u32,
    },
    /// A client's request to node `to` did not arrive: lost on the
    /// clients' network, or `to` was down.
    RequestLost {
        client: u32,
        to: NodeId,
        reason: DropReason,
    },
    /// The clients' network will deliver a request to node `to` twice.
    RequestDuplicated {
        client: u32,
        to: NodeId,
    },
    /// Node `from`'s reply to a client was lost on the clients' network.
    ReplyLost {
        client: u32,
        from: NodeId,
    },
    /// The nemesis put a message no correct peer sends on the link from
    /// `from` (hostile input: `Faults::hostile_permille`); it arrives now.
    Forged {
        from: NodeId,
        msg: P::MsgSummary,
    },
    /// The node refused a message from `from` (`why`): not one a correct
    /// peer sends. `from` is the node itself when it refused to act (its
    /// ballot rounds ran out).
    Refused {
        from: NodeId,
        why: &'static str,
    },
}

impl<P: Protocol> Kind<P> {
    /// The event's name in the trace's JSON (`event`).
    pub fn name(&self) -> &'static str {
        use Kind::*;
        match self {
            Send { .. } => "send",
            Receive { .. } => "receive",
            Drop { .. } => "drop",
            Duplicate { .. } => "duplicate",
            TimerSet { .. } => "timer_set",
            Timer { .. } => "timer_fired",
            Persist { .. } => "persist",
            SyncRequest { .. } => "sync_request",
            Sync { .. } => "synced",
            Crash { .. } => "crash",
            Restart => "restart",
            Rebuilding { .. } => "rebuilding",
            Fault { .. } => "fault",
            Quiet => "quiet",
            Note { .. } => "note",
            Invoke { .. } => "invoke",
            Request { .. } => "request",
            Reply { .. } => "reply",
            Complete { .. } => "complete",
            Retry { .. } => "retry",
            RequestLost { .. } => "request_lost",
            RequestDuplicated { .. } => "request_duplicated",
            ReplyLost { .. } => "reply_lost",
            Forged { .. } => "forged",
            Refused { .. } => "refused",
        }
    }
}

// By hand: a derive would ask `P: Clone`. Every field but a client's
// request or reply is `Copy`; those two are cloned (a shared value's
// reference count, not its bytes).
impl<P: Protocol> Clone for Kind<P> {
    fn clone(&self) -> Self {
        use Kind::*;
        match self {
            Send { link, msg } => Send {
                link: *link,
                msg: *msg,
            },
            Receive { link, msg } => Receive {
                link: *link,
                msg: *msg,
            },
            Drop { link, msg, reason } => Drop {
                link: *link,
                msg: *msg,
                reason: *reason,
            },
            Duplicate { link, msg } => Duplicate {
                link: *link,
                msg: *msg,
            },
            TimerSet {
                timer,
                delay_us,
                jitter_us,
                due_us,
            } => TimerSet {
                timer: *timer,
                delay_us: *delay_us,
                jitter_us: *jitter_us,
                due_us: *due_us,
            },
            Timer { timer } => Timer { timer: *timer },
            Persist { seq, write } => Persist {
                seq: *seq,
                write: *write,
            },
            SyncRequest { upto } => SyncRequest { upto: *upto },
            Sync { upto } => Sync { upto: *upto },
            Crash { lost_writes, cause } => Crash {
                lost_writes: *lost_writes,
                cause: *cause,
            },
            Restart => Restart,
            Rebuilding { corrupt } => Rebuilding { corrupt: *corrupt },
            Fault { fault } => Fault { fault: *fault },
            Quiet => Quiet,
            Note { note } => Note { note: *note },
            Invoke { client, req } => Invoke {
                client: *client,
                req: req.clone(),
            },
            Request { client, req } => Request {
                client: *client,
                req: req.clone(),
            },
            Reply { client, reply } => Reply {
                client: *client,
                reply: reply.clone(),
            },
            Complete {
                client,
                from,
                reply,
            } => Complete {
                client: *client,
                from: *from,
                reply: reply.clone(),
            },
            Retry { client } => Retry { client: *client },
            RequestLost { client, to, reason } => RequestLost {
                client: *client,
                to: *to,
                reason: *reason,
            },
            RequestDuplicated { client, to } => RequestDuplicated {
                client: *client,
                to: *to,
            },
            ReplyLost { client, from } => ReplyLost {
                client: *client,
                from: *from,
            },
            Forged { from, msg } => Forged {
                from: *from,
                msg: *msg,
            },
            Refused { from, why } => Refused { from: *from, why },
        }
    }
}

impl<P: Protocol> Hash for Kind<P> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        use Kind::*;
        std::mem::discriminant(self).hash(h);
        match self {
            Send { link, msg } | Receive { link, msg } | Duplicate { link, msg } => {
                (link, msg).hash(h)
            }
            Drop { link, msg, reason } => (link, msg, reason).hash(h),
            TimerSet {
                timer,
                delay_us,
                jitter_us,
                due_us,
            } => (timer, delay_us, jitter_us, due_us).hash(h),
            Timer { timer } => timer.hash(h),
            Persist { seq, write } => (seq, write).hash(h),
            SyncRequest { upto } | Sync { upto } => upto.hash(h),
            Crash { lost_writes, cause } => (lost_writes, cause).hash(h),
            Rebuilding { corrupt } => corrupt.hash(h),
            Fault { fault } => fault.hash(h),
            Note { note } => note.hash(h),
            Invoke { client, req } | Request { client, req } => (client, req).hash(h),
            Reply { client, reply } => (client, reply).hash(h),
            Complete {
                client,
                from,
                reply,
            } => (client, from, reply).hash(h),
            Retry { client } => client.hash(h),
            RequestLost { client, to, reason } => (client, to, reason).hash(h),
            RequestDuplicated { client, to } => (client, to).hash(h),
            ReplyLost { client, from } => (client, from).hash(h),
            Forged { from, msg } => (from, msg).hash(h),
            Refused { from, why } => (from, why).hash(h),
            Restart | Quiet => {}
        }
    }
}

/// One thing that happened, at a simulated time, on a node (or on none:
/// see [`Kind`]), in the node's `inc`-th incarnation (0 for its first
/// boot; a crash ends one, its restart begins the next).
pub struct Event<P: Protocol> {
    pub at_us: u64,
    pub node: Option<NodeId>,
    pub inc: u32,
    pub kind: Kind<P>,
}

impl<P: Protocol> Clone for Event<P> {
    fn clone(&self) -> Self {
        Event {
            at_us: self.at_us,
            node: self.node,
            inc: self.inc,
            kind: self.kind.clone(),
        }
    }
}

impl<P: Protocol> Hash for Event<P> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self.at_us, self.node, self.inc).hash(h);
        self.kind.hash(h);
    }
}

/// How much of the trace a run keeps.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The hash and the recent events only (campaigns).
    Recent,
    /// Every event (single runs, replays, snapshots).
    All,
}

/// How many recent events a failure report shows.
pub const RECENT: usize = 40;

pub struct Tracer<P: Protocol> {
    /// FxHash has fixed keys: the fingerprint is the same across runs,
    /// threads and processes, unlike std's `RandomState`.
    hash: FxHasher,
    recent: VecDeque<Event<P>>,
    all: Option<Vec<Event<P>>>,
    pub count: u64,
}

impl<P: Protocol> Tracer<P> {
    pub fn new(keep: Keep) -> Tracer<P> {
        Tracer {
            hash: FxHasher::default(),
            recent: VecDeque::with_capacity(RECENT),
            all: (keep == Keep::All).then(Vec::new),
            count: 0,
        }
    }

    #[inline]
    pub fn record(&mut self, ev: Event<P>) {
        ev.hash(&mut self.hash);
        self.count += 1;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        if let Some(all) = &mut self.all {
            all.push(ev.clone());
        }
        self.recent.push_back(ev);
    }

    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    pub fn recent(&self) -> impl Iterator<Item = &Event<P>> {
        self.recent.iter()
    }

    pub fn take_all(&mut self) -> Option<Vec<Event<P>>> {
        self.all.take()
    }
}

impl<P: Protocol> fmt::Display for Event<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>12} ", fmt_time(self.at_us))?;
        match self.node {
            Some(n) => write!(f, "n{n} ")?,
            None => write!(f, "-- ")?,
        }
        match &self.kind {
            Kind::Send { link: l, msg } => write!(f, "send -> n{} {msg} (m{})", l.to, l.id),
            Kind::Receive { link: l, msg } => {
                write!(f, "recv <- n{} {msg} (m{})", l.from, l.id)
            }
            Kind::Drop {
                link: l,
                msg,
                reason,
            } => write!(
                f,
                "drop n{} -> n{} {msg} (m{}, {})",
                l.from,
                l.to,
                l.id,
                reason.as_str()
            ),
            Kind::Duplicate { link: l, msg } => {
                write!(f, "dup  n{} -> n{} {msg} (m{})", l.from, l.to, l.id)
            }
            Kind::TimerSet {
                timer,
                delay_us,
                jitter_us,
                due_us,
            } => {
                write!(f, "set timer {timer:?} in {}", fmt_time(*delay_us))?;
                if *jitter_us > 0 {
                    write!(f, " + up to {}", fmt_time(*jitter_us))?;
                }
                match due_us {
                    Some(d) => write!(f, ", due at {}", fmt_time(*d)),
                    None => Ok(()),
                }
            }
            Kind::Timer { timer } => write!(f, "timer {timer:?}"),
            Kind::Persist { seq, write } => write!(f, "persist #{seq} {write}"),
            Kind::SyncRequest { upto } => write!(f, "sync asked up to #{upto}"),
            Kind::Sync { upto } => write!(f, "sync done up to #{upto}"),
            Kind::Crash { lost_writes, cause } => match cause {
                CrashCause::Fault => write!(f, "CRASH (lost {lost_writes} unsynced writes)"),
                CrashCause::PowerLossInSync => write!(
                    f,
                    "POWER LOSS during a sync (lost {lost_writes} unsynced writes)"
                ),
                CrashCause::PowerLossInSnapshot => write!(
                    f,
                    "POWER LOSS while writing a snapshot (lost {lost_writes} unsynced writes)"
                ),
            },
            Kind::Restart => write!(f, "RESTART from durable state (incarnation {})", self.inc),
            Kind::Rebuilding { corrupt } => write!(
                f,
                "REBUILD: disk {}, no votes until rebuilt from peers",
                if *corrupt { "corrupt" } else { "wiped" }
            ),
            Kind::Fault { fault } => write!(f, "FAULT {fault}"),
            Kind::Quiet => write!(f, "QUIET: faults heal, liveness clock starts"),
            Kind::Note { note } => write!(f, "{note}"),
            Kind::Invoke { client, req } => write!(f, "c{client} invoke {req}"),
            Kind::Request { client, req } => write!(f, "request from c{client} {req}"),
            Kind::Reply { client, reply } => write!(f, "reply -> c{client} {reply}"),
            Kind::Complete {
                client,
                from,
                reply,
            } => write!(f, "c{client} ok from n{from} {reply}"),
            Kind::Retry { client } => write!(f, "c{client} retry"),
            Kind::RequestLost { client, to, reason } => {
                write!(f, "c{client} -> n{to} request lost ({})", reason.as_str())
            }
            Kind::RequestDuplicated { client, to } => {
                write!(f, "c{client} -> n{to} request duplicated")
            }
            Kind::ReplyLost { client, from } => write!(f, "n{from} -> c{client} reply lost"),
            Kind::Forged { from, msg } => write!(f, "FORGED <- n{from} {msg}"),
            Kind::Refused { from, why } => write!(f, "REFUSED from n{from}: {why}"),
        }
    }
}

/// An event rendered, protocol-independent: what reports, repro tools and
/// the CLI handle (`schema::line` makes it). `json` is its record in the
/// trace schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub at_us: u64,
    pub node: Option<NodeId>,
    pub text: String,
    pub json: String,
}

/// Renders events as text, one per line, or as their JSON records (JSON
/// Lines, without the header and verdict: the schema module's `records`
/// writes a whole trace).
pub fn render(events: &[Line], json: bool) -> String {
    let mut s = String::with_capacity(events.len() * 48);
    for ev in events {
        s += if json { &ev.json } else { &ev.text };
        s.push('\n');
    }
    s
}
