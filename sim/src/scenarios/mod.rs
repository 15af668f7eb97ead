//! The built-in scenarios: adapters of the repository's protocols onto the
//! engine's seam, each a [`Scenario`](crate::engine::Scenario).

pub mod basic;
pub mod log;

use crate::scenario::Dyn;

/// The built-in scenarios, in `--all-scenarios` order.
pub fn builtin() -> Vec<&'static dyn Dyn> {
    vec![&basic::Basic, &log::MULTI, &log::KV]
}
