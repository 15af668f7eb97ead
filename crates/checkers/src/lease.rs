//! [`P7`](Invariant::P7), leases judged directly: in real time, a leader
//! may count on its lease only until the grants of a quorum (itself
//! included) run out, each grant timed on its granter's own clock.
//!
//! A lease mistake shows in the client history only when a read lands in
//! the short window between the real end of the grants and the end the
//! leader believes in, and a new leader has written meanwhile: timing the
//! swarm almost never lines up. This check sees the cause instead: every
//! grant a node makes (when it acknowledges a leader's heartbeat, or a
//! leader sends one and grants itself) with its real end, and every lease
//! a leader believes it holds, and compares them at once. The driver
//! converts local times to real ones with each node's true clock, which
//! the nodes themselves never see; a correct leader, whose clock drifts no
//! more than it assumes, never counts past its grants.

use crate::{Invariant, Violation};
use paxos::{majority, NodeId, MAX_NODES};

/// Real times in microseconds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseObserver {
    n: usize,
    /// `ends[g][l]`: when the latest grant of node `g` to leader `l` ends.
    ends: [[u64; MAX_NODES]; MAX_NODES],
}

/// Rounding of local to real time (microseconds) on either side.
const SLACK_US: u64 = 2;

impl LeaseObserver {
    pub fn new(n: usize) -> LeaseObserver {
        assert!((1..=MAX_NODES).contains(&n));
        LeaseObserver {
            n,
            ends: [[0; MAX_NODES]; MAX_NODES],
        }
    }

    /// Node `granter` granted `leader` a lease that ends at real time `end`
    /// (a grant is only ever extended: a node grants no one else before
    /// its grant ends, and after a crash refuses everyone that long).
    pub fn on_grant(&mut self, granter: NodeId, leader: NodeId, end: u64) {
        let e = &mut self.ends[granter as usize][leader as usize];
        *e = (*e).max(end);
    }

    /// At real time `at`, `leader` counts on its lease until real time
    /// `until`: a quorum's grants must last at least that long.
    pub fn on_lease(&self, at: u64, leader: NodeId, until: u64) -> Result<(), Violation> {
        let all = ((1u32 << self.n) - 1) as u16;
        self.on_lease_among(at, leader, until, &[all])
    }

    /// [`LeaseObserver::on_lease`] with the voters changing: the grants of
    /// a majority of the voters of one of `configs` (bitmasks of nodes)
    /// must last that long.
    pub fn on_lease_among(
        &self,
        at: u64,
        leader: NodeId,
        until: u64,
        configs: &[u16],
    ) -> Result<(), Violation> {
        let mut held = 0;
        for voters in configs {
            let mut ends = [0; MAX_NODES];
            let mut k = 0;
            for g in (0..self.n).filter(|g| voters & (1 << g) != 0) {
                ends[k] = self.ends[g][leader as usize];
                k += 1;
            }
            let ends = &mut ends[..k];
            ends.sort_unstable_by(|a, b| b.cmp(a));
            held = held.max(ends.get(majority(k).wrapping_sub(1)).copied().unwrap_or(0));
        }
        if until <= held + SLACK_US {
            return Ok(());
        }
        Err(Violation {
            invariant: Invariant::P7,
            at_us: at,
            node: Some(leader),
            detail: format!(
                "n{leader} counts on its lease until {} us, but a quorum's grants end at {} us ({} us earlier; grants end at {:?} us by node)",
                until,
                held,
                until - held,
                (0..self.n).map(|g| self.ends[g][leader as usize]).collect::<Vec<_>>()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_within_a_quorums_grants_passes_and_one_past_them_is_caught() {
        let mut o = LeaseObserver::new(3);
        // The leader's own grant and one follower's: a quorum of 3.
        o.on_grant(0, 0, 1_000);
        o.on_grant(1, 0, 900);
        // A grant to another leader does not count for this one.
        o.on_grant(2, 1, 5_000);
        assert!(o.on_lease(100, 0, 900).is_ok());
        let err = o.on_lease(100, 0, 950).unwrap_err();
        assert_eq!(err.invariant, Invariant::P7);
        assert!(err.detail.contains("quorum's grants end at 900"), "{err}");
        // With one grant alone there is no quorum at all.
        assert!(o.on_lease(100, 1, 10).is_err());
        // Grants only ever extend.
        o.on_grant(1, 0, 10);
        assert!(o.on_lease(100, 0, 900).is_ok());
    }

    #[test]
    fn with_changing_voters_a_majority_of_one_configuration_must_hold() {
        let mut o = LeaseObserver::new(5);
        o.on_grant(0, 0, 1_000);
        o.on_grant(3, 0, 1_000);
        o.on_grant(4, 0, 1_000);
        // {0,3,4} is a majority of {0,3,4} but not of {0,1,2}.
        assert!(o.on_lease_among(0, 0, 1_000, &[0b00111]).is_err());
        assert!(o.on_lease_among(0, 0, 1_000, &[0b11001]).is_ok());
        assert!(o.on_lease_among(0, 0, 1_000, &[0b00111, 0b11001]).is_ok());
        // Grants of non-voters count for nothing.
        assert!(o.on_lease_among(0, 0, 1_000, &[0b00110]).is_err());
    }
}
