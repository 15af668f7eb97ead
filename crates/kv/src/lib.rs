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
//! - [`value`]: a key's value, opaque bytes;
//! - [`write_path`]: a replica's write path to its WAL (group commit, when
//!   a write counts as synced, compaction, recovery), shared by `paxkv` and
//!   the simulator.

pub mod client;
pub mod machine;
pub mod server;
pub mod value;
pub mod write_path;
pub use machine::*;
