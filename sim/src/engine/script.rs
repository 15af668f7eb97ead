//! Scripted runs: the engine replays a model checker's counterexample step
//! by step instead of drawing the order of events from a seed.
//!
//! In a scripted run the network, the timers and the disk syncs hold what
//! the nodes asked for until a step names it: a message in flight is
//! delivered, lost or duplicated, a pending timer fires, a pending sync
//! completes, a node crashes (every unsynced write lost) or restarts, a
//! client request is delivered. Nothing is random. Each node's clock moves
//! as in the model: only when one of its timers fires, to the timer's due
//! time. The trace and the checkers see the step number as the time.
//!
//! Steps name protocol values by their trace text (a message by its
//! summary, a timer by its `Debug` form, a request by its `Display` form),
//! so a script is plain JSON a person can read and edit.

use paxos::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One thing the world does next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: String,
    },
    Lose {
        from: NodeId,
        to: NodeId,
        msg: String,
    },
    Duplicate {
        from: NodeId,
        to: NodeId,
        msg: String,
    },
    Fire {
        node: NodeId,
        timer: String,
    },
    Sync {
        node: NodeId,
        upto: u64,
    },
    Crash {
        node: NodeId,
    },
    Restart {
        node: NodeId,
    },
    Request {
        client: u32,
        node: NodeId,
        req: String,
    },
    /// An operator asks `node` for a membership change.
    Reconfigure {
        node: NodeId,
        change: crate::engine::member::MemberChange,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Deliver { from, to, msg } => write!(f, "deliver n{from}->n{to} {msg}"),
            Step::Lose { from, to, msg } => write!(f, "lose n{from}->n{to} {msg}"),
            Step::Duplicate { from, to, msg } => write!(f, "duplicate n{from}->n{to} {msg}"),
            Step::Fire { node, timer } => write!(f, "n{node} timer {timer} fires"),
            Step::Sync { node, upto } => write!(f, "n{node} sync up to #{upto} completes"),
            Step::Crash { node } => write!(f, "n{node} crashes"),
            Step::Restart { node } => write!(f, "n{node} restarts"),
            Step::Request { client, node, req } => write!(f, "c{client}->n{node} {req}"),
            Step::Reconfigure { node, change } => write!(f, "operator->n{node} {change:?}"),
        }
    }
}

/// A whole scripted run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// A sync completes right after the step that asked for it (the model
    /// does this when no crash is allowed: no history could tell), instead
    /// of waiting for a [`Step::Sync`].
    pub immediate_syncs: bool,
    pub steps: Vec<Step>,
}
