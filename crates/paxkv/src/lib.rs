//! paxkv: the coordination service of `crates/kv` running for real, on the
//! same sans-IO cores the simulator checks.
//!
//! - [`server`]: a replica on tokio: TCP to its peers and clients, timers on
//!   a monotonic clock, the core's outputs carried out as the simulator's
//!   binding does (`sim/src/scenarios/log.rs`);
//! - [`storage`]: the replica's files: the WAL in the simulator's record
//!   format, group commit, atomic rewrites, recovery and rebuild;
//! - [`client`]: the client library ([`kv::client::Client`]'s retries,
//!   redirects and exactly-once tags over TCP);
//! - [`wire`]: the frames on the connections;
//! - [`tls`]: mutual TLS between replicas, a replica's id bound to its
//!   certificate, optional TLS for clients, throwaway certificates;
//! - [`jepsen`]: Jepsen-style tests of real server processes (clients, a
//!   nemesis of kills, pauses and corrupted files, a linearizability check).
//!
//! Keys and values are `u64`, as in the core today.

pub mod client;
pub mod jepsen;
pub mod join;
pub mod lock;
pub mod server;
pub mod storage;
pub mod tls;
pub mod wire;

pub use client::Client;
