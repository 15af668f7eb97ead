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
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Why a message did not arrive.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The nemesis dropped it at random.
    Loss,
    /// A partition or one-way cut lay between sender and receiver.
    Partition,
    /// The receiver was down when it arrived.
    Down,
}

/// What happened. `node` (in [`Event`]) is where it happened: the sender of
/// a send, drop or duplicate, the receiver of a receive.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case", bound = "")]
pub enum Kind<P: Protocol> {
    Send {
        to: NodeId,
        msg: P::MsgSummary,
    },
    Receive {
        from: NodeId,
        msg: P::MsgSummary,
    },
    Drop {
        to: NodeId,
        msg: P::MsgSummary,
        reason: DropReason,
    },
    Duplicate {
        to: NodeId,
        msg: P::MsgSummary,
    },
    Timer {
        timer: P::Timer,
    },
    Persist {
        seq: u64,
        write: P::WriteSummary,
    },
    Sync {
        upto: u64,
    },
    Crash {
        lost_writes: u32,
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
    /// A client starts an operation (`node`: the replica it first tries).
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
    /// A client accepted `reply` from `node`: its operation completed.
    Complete {
        client: u32,
        reply: P::Reply,
    },
    /// A client timed out and resends.
    Retry {
        client: u32,
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

// By hand: a derive would ask `P: Clone`. Every field but a client's
// request or reply is `Copy`; those two are cloned (a shared value's
// reference count, not its bytes).
impl<P: Protocol> Clone for Kind<P> {
    fn clone(&self) -> Self {
        use Kind::*;
        match self {
            Send { to, msg } => Send { to: *to, msg: *msg },
            Receive { from, msg } => Receive {
                from: *from,
                msg: *msg,
            },
            Drop { to, msg, reason } => Drop {
                to: *to,
                msg: *msg,
                reason: *reason,
            },
            Duplicate { to, msg } => Duplicate { to: *to, msg: *msg },
            Timer { timer } => Timer { timer: *timer },
            Persist { seq, write } => Persist {
                seq: *seq,
                write: *write,
            },
            Sync { upto } => Sync { upto: *upto },
            Crash { lost_writes } => Crash {
                lost_writes: *lost_writes,
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
            Complete { client, reply } => Complete {
                client: *client,
                reply: reply.clone(),
            },
            Retry { client } => Retry { client: *client },
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
            Send { to, msg } | Duplicate { to, msg } => (to, msg).hash(h),
            Receive { from, msg } => (from, msg).hash(h),
            Drop { to, msg, reason } => (to, msg, reason).hash(h),
            Timer { timer } => timer.hash(h),
            Persist { seq, write } => (seq, write).hash(h),
            Sync { upto } => upto.hash(h),
            Crash { lost_writes } => lost_writes.hash(h),
            Rebuilding { corrupt } => corrupt.hash(h),
            Fault { fault } => fault.hash(h),
            Note { note } => note.hash(h),
            Invoke { client, req } | Request { client, req } => (client, req).hash(h),
            Reply { client, reply } | Complete { client, reply } => (client, reply).hash(h),
            Retry { client } => client.hash(h),
            Forged { from, msg } => (from, msg).hash(h),
            Refused { from, why } => (from, why).hash(h),
            Restart | Quiet => {}
        }
    }
}

/// One thing that happened, at a simulated time, on a node.
#[derive(Serialize)]
#[serde(bound = "")]
pub struct Event<P: Protocol> {
    pub at_us: u64,
    pub node: NodeId,
    #[serde(flatten)]
    pub kind: Kind<P>,
}

impl<P: Protocol> Clone for Event<P> {
    fn clone(&self) -> Self {
        Event {
            at_us: self.at_us,
            node: self.node,
            kind: self.kind.clone(),
        }
    }
}

impl<P: Protocol> Hash for Event<P> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self.at_us, self.node).hash(h);
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
        write!(f, "{:>12} n{} ", fmt_time(self.at_us), self.node)?;
        match &self.kind {
            Kind::Send { to, msg } => write!(f, "send -> n{to} {msg}"),
            Kind::Receive { from, msg } => write!(f, "recv <- n{from} {msg}"),
            Kind::Drop { to, msg, reason } => write!(f, "drop -> n{to} {msg} ({reason:?})"),
            Kind::Duplicate { to, msg } => write!(f, "dup  -> n{to} {msg}"),
            Kind::Timer { timer } => write!(f, "timer {timer:?}"),
            Kind::Persist { seq, write } => write!(f, "persist #{seq} {write}"),
            Kind::Sync { upto } => write!(f, "sync done up to #{upto}"),
            Kind::Crash { lost_writes } => {
                write!(f, "CRASH (lost {lost_writes} unsynced writes)")
            }
            Kind::Restart => write!(f, "RESTART from durable state"),
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
            Kind::Complete { client, reply } => write!(f, "c{client} ok {reply}"),
            Kind::Retry { client } => write!(f, "c{client} retry"),
            Kind::Forged { from, msg } => write!(f, "FORGED <- n{from} {msg}"),
            Kind::Refused { from, why } => write!(f, "REFUSED from n{from}: {why}"),
        }
    }
}

/// An event rendered, protocol-independent: what reports, repro tools and
/// the CLI handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub at_us: u64,
    pub node: NodeId,
    pub text: String,
    pub json: String,
}

impl Line {
    pub fn of<P: Protocol>(ev: &Event<P>) -> Line {
        Line {
            at_us: ev.at_us,
            node: ev.node,
            text: ev.to_string(),
            json: serde_json::to_string(ev).expect("events serialize"),
        }
    }
}

/// Renders events as text (one per line) or JSON Lines.
pub fn render(events: &[Line], json: bool) -> String {
    let mut s = String::with_capacity(events.len() * 48);
    for ev in events {
        s += if json { &ev.json } else { &ev.text };
        s.push('\n');
    }
    s
}
