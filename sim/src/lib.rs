//! paxsim: deterministic simulation testing for Paxos — and for your own
//! protocol.
//!
//! A run is `(seed, config, fault schedule)`. [`engine`] executes it: one
//! single-threaded discrete-event loop whose every random choice comes from
//! the seed, driving any sans-IO [`engine::Protocol`] through a network,
//! disks and clocks the nemesis attacks, while a [`engine::Checker`] judges
//! every step and a [`engine::Workload`] plays the clients. [`scenario`] is
//! the table of registered scenarios (built in: [`scenarios`] `basic`,
//! `multi`, `kv`); everything else goes through it: [`nemesis`] says which
//! faults exist and draws schedules; [`trace`] records what happened;
//! [`repro`] saves and loads failing runs; [`shrink`] cuts a failing run
//! down to what it needs to fail; [`campaign`] spreads many seeds over
//! worker threads; [`bench`] measures; [`cli`] is the whole command line,
//! which a program of your own can serve for its own scenarios.

pub mod bench;
pub mod campaign;
pub mod check;
pub mod cli;
pub mod config;
pub mod decode;
pub mod engine;
pub mod lin;
pub mod nemesis;
pub mod queue;
pub mod repro;
pub mod results;
pub mod scenario;
pub mod scenarios;
pub mod schema;
pub mod shrink;
pub mod timeline;
pub mod trace;
pub mod tracefile;

pub use config::RunConfig;
pub use decode::decode;
pub use engine::{Caps, Checker, Protocol, Scenario, Workload};
pub use nemesis::{Fault, Faults, Schedule, Timed};
pub use scenario::{plan, run_schedule, run_seed, Report};
pub use trace::Keep;
