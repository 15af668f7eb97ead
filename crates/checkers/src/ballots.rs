//! The ballot bookkeeping S5 (Basic Paxos) and P6 (the log) share: who may
//! use a ballot, and the one value each ballot (or ballot and slot) carries.

use crate::fmt_time;
use paxos::{Ballot, NodeId};
use std::collections::BTreeMap;

/// Which life of its owner first used each ballot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Owners {
    /// ballot -> (disk life, incarnation, time) of its first use.
    first: BTreeMap<Ballot, (u32, u32, u64)>,
}

impl Owners {
    /// `node`, in disk life `life` and incarnation `inc`, sent a Prepare or an
    /// Accept in `ballot` at `at`. Only the ballot's owner may, and only one
    /// incarnation of it per disk life (a replica whose disk was lost cannot
    /// know which ballots it used). `Err` is the violation's detail.
    pub(crate) fn sent(
        &mut self,
        at: u64,
        node: NodeId,
        ballot: Ballot,
        life: u32,
        inc: u32,
    ) -> Result<(), String> {
        if ballot.node != node {
            return Err(format!(
                "n{node} sent a Prepare or Accept in ballot {ballot}, which belongs to n{}",
                ballot.node
            ));
        }
        match self.first.get(&ballot) {
            None => {
                self.first.insert(ballot, (life, inc, at));
                Ok(())
            }
            Some(&(l, i, first_at)) if l == life && i != inc => Err(format!(
                "n{node} restarted and used ballot {ballot} again: its previous incarnation \
                 used it at {}",
                fmt_time(first_at)
            )),
            Some(_) => Ok(()),
        }
    }
}

/// The first value that arrived for each key (a ballot, or a ballot and a
/// slot): every later arrival must carry the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FirstValues<K> {
    /// key -> (value, receiver, time) of its first arrival.
    first: BTreeMap<K, (u64, NodeId, u64)>,
}

impl<K> Default for FirstValues<K> {
    fn default() -> Self {
        FirstValues {
            first: BTreeMap::new(),
        }
    }
}

impl<K: Ord> FirstValues<K> {
    /// The first value that arrived for `key`.
    pub(crate) fn get(&self, key: &K) -> Option<u64> {
        self.first.get(key).map(|f| f.0)
    }

    /// `value` arrived at `to` for `key` at `at`. `Err` names the different
    /// value that arrived first: (value, receiver, time).
    pub(crate) fn arrived(
        &mut self,
        key: K,
        value: u64,
        to: NodeId,
        at: u64,
    ) -> Result<(), (u64, NodeId, u64)> {
        match self.first.get(&key) {
            None => {
                self.first.insert(key, (value, to, at));
                Ok(())
            }
            Some(&(first, _, _)) if first == value => Ok(()),
            Some(&other) => Err(other),
        }
    }
}
