//! The on-disk record format: every [`Write`] is sealed with a checksum.
//!
//! A disk is a sequence of records, each written atomically *or torn*: a
//! crash in the middle of writing the last record leaves it torn (its length
//! promises more bytes than the file holds), which recovery detects and
//! drops, as etcd's WAL does with a short tail. A record whose checksum does
//! not match its contents was corrupted (a bit flip): if it is anything but
//! a torn tail, the disk cannot be trusted and the replica rebuilds from its
//! peers ([`Node::rebuild`](crate::Node::rebuild)). A disk with no records,
//! or whose first record is not [`Write::Init`], was wiped.

use crate::{Durable, Write};
use rustc_hash::FxHasher;
use std::hash::{Hash, Hasher};

/// One record as it lies on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed<C, S> {
    pub write: Write<C, S>,
    pub sum: u64,
    /// The write was cut short by a crash.
    pub torn: bool,
}

fn checksum<T: Hash>(t: &T) -> u64 {
    let mut h = FxHasher::default();
    t.hash(&mut h);
    // Never zero, so a zeroed record cannot pass.
    h.finish() | 1
}

impl<C: Hash, S: Hash> Sealed<C, S> {
    pub fn seal(write: Write<C, S>) -> Self {
        let sum = checksum(&write);
        Sealed {
            write,
            sum,
            torn: false,
        }
    }

    /// Whether the record reads back as written.
    pub fn intact(&self) -> bool {
        !self.torn && self.sum == checksum(&self.write)
    }

    /// Flips one bit of the record's stored bytes. The model stores the
    /// payload structured, so the flip lands in the checksum word: what
    /// matters is that the record no longer verifies.
    pub fn flip_bit(&mut self, bit: u32) {
        self.sum ^= 1 << (bit % 64);
    }
}

/// What recovery found on a disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loaded<C, S> {
    /// The durable state, and how many torn tail records were dropped.
    Ok { state: Durable<C, S>, torn: usize },
    /// No initialization record: the disk was wiped (or never written).
    Wiped,
    /// Record `index` failed its checksum and is not a torn tail.
    Corrupt { index: usize },
}

/// Replays a disk's records into the durable state they describe.
pub fn load<C: Hash + Clone, S: Hash + Clone>(records: &[Sealed<C, S>]) -> Loaded<C, S> {
    let Some(first) = records.first() else {
        return Loaded::Wiped;
    };
    if !first.intact() {
        return if records.len() == 1 && first.torn {
            Loaded::Wiped
        } else {
            Loaded::Corrupt { index: 0 }
        };
    }
    if !matches!(first.write, Write::Init) {
        return Loaded::Wiped;
    }
    let mut d = Durable::default();
    for (i, r) in records.iter().enumerate() {
        if !r.intact() {
            if r.torn && i + 1 == records.len() {
                return Loaded::Ok { state: d, torn: 1 };
            }
            return Loaded::Corrupt { index: i };
        }
        d.apply(&r.write);
    }
    Loaded::Ok { state: d, torn: 0 }
}
