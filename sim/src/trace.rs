//! The trace: every send, receive, drop, duplicate, crash, restart, write,
//! sync, proposal, learn, decision and fault of a run, as one [`Event`] each.
//!
//! Recording costs no allocation: every event is hashed into a running
//! fingerprint (same seed ⇒ same hash, which the determinism check compares)
//! and kept in a short ring of recent events for failure reports. The full
//! trace is kept only when asked for, and rendered as text or JSON Lines.

use crate::nemesis::Fault;
use checkers::fmt_time;
use paxos::{Msg, NodeId, Record, Timer, Value};
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

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Kind {
    Send {
        to: NodeId,
        msg: Msg,
    },
    Receive {
        from: NodeId,
        msg: Msg,
    },
    Drop {
        to: NodeId,
        msg: Msg,
        reason: DropReason,
    },
    Duplicate {
        to: NodeId,
        msg: Msg,
    },
    Timer {
        timer: Timer,
    },
    Persist {
        seq: u64,
        record: Record,
    },
    Sync {
        upto: u64,
    },
    Crash {
        lost_writes: u32,
    },
    Restart,
    Propose {
        value: Value,
    },
    Learn {
        value: Value,
    },
    Decide {
        value: Value,
    },
    Fault {
        fault: Fault,
    },
    Quiet,
    // ---- the log scenarios (`multi`, `kv`) ----
    LSend {
        to: NodeId,
        msg: LMsg,
    },
    LReceive {
        from: NodeId,
        msg: LMsg,
    },
    LDrop {
        to: NodeId,
        msg: LMsg,
        reason: DropReason,
    },
    LDuplicate {
        to: NodeId,
        msg: LMsg,
    },
    LTimer {
        timer: multipaxos::Timer,
    },
    Tick,
    LPersist {
        seq: u64,
        write: LMsg,
    },
    /// A replica applied `slot` (`digest` fingerprints the entry).
    Apply {
        slot: u64,
        cmds: u32,
        digest: u64,
    },
    /// A replica installed a snapshot up to `upto`.
    Install {
        upto: u64,
    },
    Elected {
        ballot: paxos::Ballot,
    },
    /// A replica found its disk wiped or corrupt and rebuilds from peers.
    Rebuilding {
        corrupt: bool,
    },
    Rebuilt,
    /// A client starts an operation (`node`: the replica it first tries).
    Invoke {
        client: u32,
        seq: u64,
        op: kv::Op,
    },
    /// A client's request reaches a replica.
    Request {
        client: u32,
        seq: u64,
    },
    /// A client's operation completed with `reply` from replica `node`.
    Complete {
        client: u32,
        seq: u64,
        reply: kv::Reply,
        local: bool,
    },
    /// Replica `node` redirected a client.
    Redirect {
        client: u32,
        seq: u64,
        leader: Option<NodeId>,
    },
    /// A client timed out and resends.
    Retry {
        client: u32,
        seq: u64,
    },
}

/// A log-scenario message or write, summarized for the trace: its kind, the
/// ballot and slot it names, how many entries it carries and a fingerprint of
/// its whole content (so the trace hash covers every byte that was sent).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct LMsg {
    pub kind: &'static str,
    pub ballot: Option<paxos::Ballot>,
    pub slot: Option<u64>,
    pub len: u32,
    pub digest: u64,
}

impl fmt::Display for LMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.kind)?;
        let mut sep = "";
        if let Some(b) = self.ballot {
            write!(f, "{b}")?;
            sep = ", ";
        }
        if let Some(s) = self.slot {
            write!(f, "{sep}slot {s}")?;
            sep = ", ";
        }
        if self.len > 0 {
            write!(f, "{sep}{} entries", self.len)?;
            sep = ", ";
        }
        write!(f, "{sep}#{:04x})", self.digest & 0xffff)
    }
}

/// One thing that happened, at a simulated time, on a node.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Event {
    pub at_us: u64,
    pub node: NodeId,
    #[serde(flatten)]
    pub kind: Kind,
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

pub struct Tracer {
    /// FxHash has fixed keys: the fingerprint is the same across runs,
    /// threads and processes, unlike std's `RandomState`.
    hash: FxHasher,
    recent: VecDeque<Event>,
    all: Option<Vec<Event>>,
    pub count: u64,
}

impl Tracer {
    pub fn new(keep: Keep) -> Tracer {
        Tracer {
            hash: FxHasher::default(),
            recent: VecDeque::with_capacity(RECENT),
            all: (keep == Keep::All).then(Vec::new),
            count: 0,
        }
    }

    #[inline]
    pub fn record(&mut self, ev: Event) {
        ev.hash(&mut self.hash);
        self.count += 1;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(ev);
        if let Some(all) = &mut self.all {
            all.push(ev);
        }
    }

    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    pub fn recent(&self) -> Vec<Event> {
        self.recent.iter().copied().collect()
    }

    pub fn take_all(&mut self) -> Option<Vec<Event>> {
        self.all.take()
    }
}

/// Compact text for a message: `Prepare(3.1)`, `Accept(3.1, 102)`.
pub struct ShowMsg<'a>(pub &'a Msg);

impl fmt::Display for ShowMsg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self.0 {
            Msg::Prepare { ballot } => write!(f, "Prepare({ballot})"),
            Msg::Promise {
                ballot,
                accepted: None,
            } => write!(f, "Promise({ballot}, none)"),
            Msg::Promise {
                ballot,
                accepted: Some((b, v)),
            } => write!(f, "Promise({ballot}, accepted {v} in {b})"),
            Msg::Accept { ballot, value } => write!(f, "Accept({ballot}, {value})"),
            Msg::Accepted { ballot, value } => write!(f, "Accepted({ballot}, {value})"),
            Msg::Nack { ballot, promised } => write!(f, "Nack({ballot}, promised {promised})"),
            Msg::Query => write!(f, "Query"),
            Msg::Chosen { value } => write!(f, "Chosen({value})"),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>12} n{} ", fmt_time(self.at_us), self.node)?;
        match self.kind {
            Kind::Send { to, msg } => write!(f, "send -> n{to} {}", ShowMsg(&msg)),
            Kind::Receive { from, msg } => write!(f, "recv <- n{from} {}", ShowMsg(&msg)),
            Kind::Drop { to, msg, reason } => {
                write!(f, "drop -> n{to} {} ({reason:?})", ShowMsg(&msg))
            }
            Kind::Duplicate { to, msg } => write!(f, "dup  -> n{to} {}", ShowMsg(&msg)),
            Kind::Timer { timer } => write!(f, "timer {timer:?}"),
            Kind::Persist { seq, record } => {
                write!(f, "persist #{seq} promised {}", record.promised)?;
                if let Some((b, v)) = record.accepted {
                    write!(f, " accepted {v} in {b}")?;
                }
                write!(f, " round {}", record.proposer_round)
            }
            Kind::Sync { upto } => write!(f, "sync done up to #{upto}"),
            Kind::Crash { lost_writes } => {
                write!(f, "CRASH (lost {lost_writes} unsynced writes)")
            }
            Kind::Restart => write!(f, "RESTART from durable state"),
            Kind::Propose { value } => write!(f, "client proposes {value}"),
            Kind::Learn { value } => write!(f, "LEARN {value}"),
            Kind::Decide { value } => write!(f, "DECIDE {value}"),
            Kind::Fault { fault } => write!(f, "FAULT {fault}"),
            Kind::Quiet => write!(f, "QUIET: faults heal, liveness clock starts"),
            Kind::LSend { to, msg } => write!(f, "send -> n{to} {msg}"),
            Kind::LReceive { from, msg } => write!(f, "recv <- n{from} {msg}"),
            Kind::LDrop { to, msg, reason } => write!(f, "drop -> n{to} {msg} ({reason:?})"),
            Kind::LDuplicate { to, msg } => write!(f, "dup  -> n{to} {msg}"),
            Kind::LTimer { timer } => write!(f, "timer {timer:?}"),
            Kind::Tick => write!(f, "tick timer"),
            Kind::LPersist { seq, write } => write!(f, "persist #{seq} {write}"),
            Kind::Apply { slot, cmds, digest } => write!(
                f,
                "APPLY slot {slot} ({cmds} cmds, #{:04x})",
                digest & 0xffff
            ),
            Kind::Install { upto } => write!(f, "INSTALL snapshot up to slot {upto}"),
            Kind::Elected { ballot } => write!(f, "ELECTED leader in {ballot}"),
            Kind::Rebuilding { corrupt } => write!(
                f,
                "REBUILD: disk {}, no votes until rebuilt from peers",
                if corrupt { "corrupt" } else { "wiped" }
            ),
            Kind::Rebuilt => write!(f, "REBUILT from peers, voting again"),
            Kind::Invoke { client, seq, op } => write!(f, "c{client} invoke #{seq} {op:?}"),
            Kind::Request { client, seq } => write!(f, "request from c{client} #{seq}"),
            Kind::Complete {
                client,
                seq,
                reply,
                local,
            } => write!(
                f,
                "c{client} ok #{seq} {reply:?}{}",
                if local { " (lease read)" } else { "" }
            ),
            Kind::Redirect {
                client,
                seq,
                leader,
            } => write!(f, "redirect c{client} #{seq} to {leader:?}"),
            Kind::Retry { client, seq } => write!(f, "c{client} retry #{seq}"),
        }
    }
}

/// Renders events as text (one per line) or JSON Lines.
pub fn render(events: &[Event], json: bool) -> String {
    let mut s = String::with_capacity(events.len() * 48);
    for ev in events {
        if json {
            s += &serde_json::to_string(ev).expect("events serialize");
        } else {
            s += &ev.to_string();
        }
        s.push('\n');
    }
    s
}
