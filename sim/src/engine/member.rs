//! An operator's membership change: what the nemesis asks of a leader
//! ([`super::protocol::Protocol::reconfigure`]) and what a model check's
//! script step carries ([`super::script::Step::Reconfigure`]). Its own
//! module, so that the seam and the scripts both name it without naming
//! each other.

use paxos::NodeId;
use serde::{Deserialize, Serialize};

/// An operator's membership change ([`super::protocol::Protocol::reconfigure`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberChange {
    /// Add spare machine `node`.
    Add(NodeId),
    /// Remove `node` (a member; the leader itself, too).
    Remove(NodeId),
    /// Replace the members `old` by the spare machines `new` (sets of
    /// nodes, as bitmasks, of one or more each).
    Replace { old: u16, new: u16 },
}
