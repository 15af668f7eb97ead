//! The node layer: the sans-IO Basic Paxos and Multi-Paxos cores bound to a
//! runtime ([`run_basic`] here, [`multi::run_multi`] for the replicated log).
//!
//! Each node is an async task on madsim's APIs: it binds a
//! `madsim::net::Endpoint`, and one input queue feeds its core. That queue
//! carries messages from peers, proposals from clients, timers (spawned
//! `madsim::task`s sleeping on `madsim::time`), and disk syncs that complete
//! after a seeded latency. Its outputs become real sends, writes to a
//! [`Disk`] that outlives the process, and spawned timers. Under
//! `cfg(madsim)` (set for the whole workspace in `.cargo/config.toml`),
//! madsim's seeded scheduler decides the interleaving, the latencies and the
//! losses, and `Handle::kill`/`restart` crash and revive nodes.
//!
//! The fast campaign scheduler in `sim/` drives the same core without this
//! layer. It pays for no socket emulation or task spawns, which is how it
//! reaches millions of deliveries per second. This layer shows the core also
//! runs under madsim's net/time/task APIs, checked by the same omniscient
//! observer ([`run_basic`]).
//!
//! madsim's clock has a floor: every `sleep` lasts at least 1 ms (to match
//! `tokio::time::sleep`), and each `Endpoint` send first sleeps a few
//! microseconds, so each send costs its sender at least 1 ms of simulated time.
//! The layer therefore spawns every send as its own task. Awaiting them in
//! the event loop would stall a node for `n` ms per broadcast and release the
//! messages one per millisecond in id order. Disk latencies are drawn from
//! 1–3 ms, because shorter ones would all round up to exactly 1 ms. A core
//! assertion that fails (a canary can trip one) becomes an
//! `Invariant::Assert` violation instead of aborting madsim's runtime.
//!
//! madsim's real-runtime mode has no `Endpoint`, so the layer exists only
//! under `cfg(madsim)`. A real deployment would bind the core to tokio
//! sockets behind the same seam.

#[cfg(madsim)]
pub mod multi;
#[cfg(madsim)]
mod sim;
#[cfg(madsim)]
pub use sim::*;
