//! paxsim: a deterministic simulation harness for Paxos.
//!
//! A run is `(seed, config, fault schedule)`: [`world`] executes it on a
//! single-threaded discrete-event scheduler whose every random choice comes
//! from the seed; [`nemesis`] says which faults exist and draws schedules;
//! the omniscient observer from the `checkers` crate checks every event;
//! [`trace`] records what happened; [`repro`] saves and loads failing runs;
//! [`shrink`] cuts a failing run down to what it needs to fail;
//! [`campaign`] spreads many seeds over worker threads; [`bench`] measures.

pub mod bench;
pub mod campaign;
pub mod config;
pub mod decode;
pub mod logworld;
pub mod nemesis;
pub mod queue;
pub mod repro;
pub mod shrink;
pub mod trace;
pub mod world;

pub use config::{RunConfig, Scenario};
pub use decode::{decode, decode_log};
pub use nemesis::{Fault, Faults, Schedule, Timed};
pub use trace::Keep;
pub use world::{plan, run_schedule, run_seed, Report};
