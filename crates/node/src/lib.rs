//! The madsim runner: any scenario registered through paxsim's seam
//! ([`paxsim::engine::Scenario`]: `basic`, `multi`, `kv`, or a user's own)
//! run on madsim's seeded runtime instead of paxsim's fast event loop, with
//! the same [`Disk`](paxsim::engine::Disk), the same checker and the same
//! workload ([`run`]).
//!
//! Each node is a madsim machine with its own IP. Its process binds a
//! `madsim::net::Endpoint` and feeds one input queue to its sans-IO core:
//! messages from peers, client requests, timers (`madsim::task`s sleeping on
//! `madsim::time`, on the node's skewed and drifting clock), and disk syncs
//! that complete after a seeded latency. The core's effects become real
//! sends, writes to a disk that outlives the process, and spawned timers;
//! `Handle::kill`/`restart` crash and revive the process, `NetSim` clogs
//! links. The clients are the scenario's own workload, acting through the
//! same `Cx` handle as in the engine, on a machine of their own. Every step
//! is judged by the scenario's checker, and D1 (durability before
//! disclosure) for every send, as in the engine. All randomness comes from
//! madsim's seeded generator, so a seed fixes the run.
//!
//! The fast scheduler in `sim/` runs the same scenarios without this layer.
//! It pays for no socket emulation or task spawns, which is how it reaches
//! millions of deliveries per second; this layer shows the cores, checkers
//! and workloads also hold up under madsim's scheduler, network and clock.
//!
//! madsim's clock has a floor: every `sleep` lasts at least 1 ms (to match
//! `tokio::time::sleep`), and each `Endpoint` send first sleeps, so each send
//! costs its sender at least 1 ms of simulated time. The runner therefore
//! spawns every send as its own task, and draws disk latencies from 1–3 ms.
//! A core assertion that fails (a canary can trip one) becomes an
//! `Invariant::Assert` violation instead of aborting madsim's runtime.
//!
//! madsim's real-runtime mode has no `Endpoint`, so the layer exists only
//! under `cfg(madsim)` (set for the whole workspace in `.cargo/config.toml`),
//! in `sim.rs`, as madsim's own convention names the simulated side. A real
//! deployment would bind the cores to tokio sockets behind the same seam.

#[cfg(madsim)]
mod sim;
#[cfg(madsim)]
pub use sim::*;
