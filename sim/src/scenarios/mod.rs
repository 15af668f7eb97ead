//! The built-in scenarios: adapters of the repository's protocols onto the
//! engine's seam, each a [`Scenario`](crate::engine::Scenario). The table in
//! [`crate::scenario`] lists them.

pub mod basic;
pub mod log;
pub mod service_spec;
