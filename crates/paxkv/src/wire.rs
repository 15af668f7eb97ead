//! What travels on paxkv's TCP connections.
//!
//! Every connection carries length-delimited frames (a 4-byte big-endian
//! length, then the payload; tokio-util's `LengthDelimitedCodec`) whose
//! payloads are postcard encodings of the types below. The first frame a
//! connecting side sends is a [`Hello`]; the listening side answers with a
//! [`Welcome`] and closes the connection if it refuses it (another cluster,
//! an unknown or misdirected peer id, another protocol version).
//!
//! - A peer connection then carries [`PeerMsg`]s one way (each replica dials
//!   every other one, so a pair of replicas shares two connections).
//! - A client connection carries [`kv::Command`]s in and [`Response`]s out.
//! - An operator's connection ([`Hello::Admin`], `paxkv member ...`)
//!   carries [`AdminRequest`]s in and [`Response`]s out.
//!
//! Frames have a size limit per kind of connection: a frame above it, or a
//! payload that does not decode, closes the connection with a log line,
//! never a panic.

use kv::server::Snapshot;
use kv::{Cmd, Command, Reply, VALUE_MAX};
use multipaxos::NodeId;
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

/// Bumped whenever a type below changes its encoding (2: values are bytes;
/// 3: the log carries the address book, operators' requests).
pub const PROTOCOL: u32 = 3;
/// The largest frame between replicas: a snapshot of the whole state
/// machine travels in one (the WAL's own record limit is larger).
pub const PEER_FRAME_MAX: usize = 64 << 20;
/// The largest frame a client may send or receive.
pub const CLIENT_FRAME_MAX: usize = 64 << 10;
// A command or reply with the largest value fits a client frame with room
// for its other fields.
const _: () = assert!(VALUE_MAX + 1024 <= CLIENT_FRAME_MAX);

/// A log-core message between replicas.
pub type PeerMsg = multipaxos::Msg<Cmd, Snapshot>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hello {
    /// Replica `from` of cluster `cluster` dials replica `to`.
    Peer {
        protocol: u32,
        cluster: u64,
        from: NodeId,
        to: NodeId,
    },
    /// A client; `cluster` (if given) must match the server's.
    Client { protocol: u32, cluster: Option<u64> },
    /// An operator (membership requests), on the client address.
    Admin { protocol: u32, cluster: Option<u64> },
}

/// An operator's membership request, numbered by the operator's client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRequest {
    pub client: kv::ClientId,
    pub seq: u64,
    pub admin: kv::server::Admin,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Welcome {
    /// Accepted; the server is replica `id` of a cluster whose ids are
    /// below `n` (membership changes add ids: `n` grows).
    Ok { id: NodeId, n: u8 },
    /// Refused, with the reason (also in the server's log).
    Refused(String),
}

/// A server's answer to a client command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The command executed (or was answered from a lease).
    Reply { seq: u64, reply: Reply },
    /// This replica is not the leader; `leader` is the one it believes in.
    Redirect { seq: u64, leader: Option<NodeId> },
    /// The request could not be understood; the server closes the connection.
    Error(String),
    /// The answer to an [`AdminRequest`].
    Admin {
        seq: u64,
        reply: kv::server::AdminReply,
    },
}

/// The frame codec for a connection whose frames are at most `max` bytes.
pub fn codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(max)
        .new_codec()
}

pub fn encode<T: Serialize>(t: &T) -> bytes::Bytes {
    postcard::to_stdvec(t)
        .expect("paxkv's wire types always encode")
        .into()
}

pub fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(b).map_err(|e| format!("malformed frame ({} bytes): {e}", b.len()))
}

/// A client's command, refused if its value is larger than the service
/// takes ([`kv::VALUE_MAX`]; the frame limit alone would let a value fill
/// the whole frame).
pub fn decode_command(b: &[u8]) -> Result<Command, String> {
    let cmd: Command = decode(b)?;
    match cmd.op.value() {
        Some(v) if v.len() > VALUE_MAX => Err(format!(
            "a value of {} bytes is larger than the service takes ({VALUE_MAX} bytes)",
            v.len()
        )),
        _ => Ok(cmd),
    }
}
