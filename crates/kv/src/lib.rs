//! The coordination service: a replicated state machine on the Multi-Paxos
//! log, in the spirit of Chubby, ZooKeeper and etcd.
//!
//! - [`machine`]: the deterministic state machine every replica applies
//!   (keys with versions, sessions, ephemeral keys, locks with fencing
//!   tokens, the dedup table for exactly-once commands);
//! - [`server`]: a replica — the log node plus the machine, client request
//!   handling, lease reads, clock ticks and snapshots;
//! - [`client`]: the client library (one request at a time, retries,
//!   redirects);
//! - [`value`]: a key's value, opaque bytes.

pub mod client;
pub mod machine;
pub mod server;
pub mod value;
pub use machine::*;
