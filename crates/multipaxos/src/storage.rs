//! The on-disk record format: every [`Write`] is sealed with a checksum.
//!
//! A disk is a sequence of records, each written atomically *or torn*: a
//! crash in the middle of writing the last record leaves it torn (its length
//! promises more bytes than the file holds), which recovery detects and
//! drops, as etcd's WAL does with a short tail. A record whose checksum does
//! not match its contents was corrupted (a bit flip): if it is anything but
//! a torn tail, the disk cannot be trusted and the replica rebuilds from its
//! peers ([`Node::rebuild`](crate::Node::rebuild)). A disk with no records,
//! or whose first record is neither [`Write::Init`] nor [`Write::Rebuilt`],
//! was wiped.

use crate::{Durable, Write};
use rustc_hash::FxHasher;
use std::hash::{Hash, Hasher};

/// One record as it lies on disk. (`sum` is not a cache of `write`: a
/// flipped bit changes it alone, so it takes part in `Eq` and `Hash`.)
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
        assert_ne!(sum, 0, "a zeroed checksum would pass a zeroed record");
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
        let was = self.sum;
        self.sum ^= 1 << (bit % 64);
        assert_ne!(self.sum, was, "a flip changes the stored word");
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
    // A rebuilt replica's disk starts with its rebuilt state instead.
    if !matches!(first.write, Write::Init | Write::Rebuilt(_)) {
        return Loaded::Wiped;
    }
    let mut d = Durable::default();
    for (i, r) in records.iter().enumerate() {
        if !r.intact() {
            assert!(i >= 1, "the first record was checked above");
            if r.torn && i + 1 == records.len() {
                assert!(d.initialized, "an intact first record initializes");
                return Loaded::Ok { state: d, torn: 1 };
            }
            return Loaded::Corrupt { index: i };
        }
        d.apply(&r.write);
    }
    assert!(d.initialized, "an intact first record initializes");
    Loaded::Ok { state: d, torn: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paxos::Ballot;

    type R = Sealed<u32, u32>;

    fn disk() -> Vec<R> {
        vec![
            R::seal(Write::Init),
            R::seal(Write::Promise(Ballot { round: 2, node: 1 })),
            R::seal(Write::Accept {
                slot: 0,
                ballot: Ballot { round: 2, node: 1 },
                entry: crate::Entry::Cmds(vec![7].into()),
            }),
        ]
    }

    #[test]
    fn a_record_whose_payload_changed_fails_its_checksum() {
        // The simulator's flips land in the checksum word; a real disk's may
        // land in the payload, which the checksum must catch too.
        let a = R::seal(Write::Promise(Ballot { round: 2, node: 1 }));
        let mut b = a.clone();
        b.write = Write::Promise(Ballot { round: 3, node: 1 });
        assert!(a.intact());
        assert!(!b.intact());
        // Distinct records get distinct checksums.
        let sums: std::collections::BTreeSet<u64> = (0..16)
            .map(|round| checksum(&Write::<u32, u32>::Promise(Ballot { round, node: 0 })))
            .collect();
        assert_eq!(sums.len(), 16);
        assert_ne!(
            checksum(&Write::<u32, u32>::Init),
            0,
            "a zeroed record never verifies"
        );
    }

    #[test]
    fn a_bit_flip_breaks_a_record_and_flipping_it_back_repairs_it() {
        for bit in 0..64 {
            let mut r = R::seal(Write::Init);
            r.flip_bit(bit);
            assert!(!r.intact(), "bit {bit}");
            // The stored word has 64 bits: bit + 64 is the same bit.
            r.flip_bit(bit + 64);
            assert!(r.intact(), "bit {bit}");
        }
    }

    #[test]
    fn a_lone_first_record_that_is_torn_was_a_wipe_but_flipped_is_corruption() {
        let mut torn = R::seal(Write::Init);
        torn.torn = true;
        assert_eq!(load(&[torn]), Loaded::Wiped);
        let mut flipped = R::seal(Write::Init);
        flipped.flip_bit(3);
        assert_eq!(load(&[flipped]), Loaded::Corrupt { index: 0 });
    }

    #[test]
    fn the_newest_snapshot_on_disk_wins() {
        let snap = |upto, state| R::seal(Write::Snapshot(crate::Snap { upto, state }));
        let mut d = disk();
        d.push(snap(3, 30));
        d.push(snap(5, 50));
        let Loaded::Ok { state, .. } = load(&d) else {
            panic!("intact disk did not load")
        };
        assert_eq!(state.snapshot.map(|s| (s.upto, s.state)), Some((5, 50)));
    }

    #[test]
    fn an_intact_disk_loads_its_state() {
        let Loaded::Ok { state, torn } = load(&disk()) else {
            panic!("intact disk did not load")
        };
        assert_eq!(torn, 0);
        assert_eq!(state.promised, Ballot { round: 2, node: 1 });
        assert_eq!(state.accepted.len(), 1);
    }

    #[test]
    fn a_torn_tail_is_dropped_but_a_flipped_bit_is_corruption() {
        let mut d = disk();
        d.last_mut().unwrap().torn = true;
        let Loaded::Ok { state, torn } = load(&d) else {
            panic!("a torn tail must load")
        };
        assert_eq!((torn, state.accepted.len()), (1, 0));
        // A flipped bit in the last record is not a torn write: corrupt.
        let mut d = disk();
        d[2].flip_bit(5);
        assert_eq!(load(&d), Loaded::Corrupt { index: 2 });
        // Anywhere else too.
        let mut d = disk();
        d[1].flip_bit(63);
        assert_eq!(load(&d), Loaded::Corrupt { index: 1 });
        // A torn record followed by more records is corruption, not a tail.
        let mut d = disk();
        d[1].torn = true;
        assert_eq!(load(&d), Loaded::Corrupt { index: 1 });
    }

    #[test]
    fn a_disk_without_its_init_record_was_wiped() {
        assert_eq!(load::<u32, u32>(&[]), Loaded::Wiped);
        let d = disk();
        assert_eq!(load(&d[1..]), Loaded::Wiped);
        let rebuilt = vec![R::seal(Write::Rebuilt(Box::default()))];
        assert!(matches!(load(&rebuilt), Loaded::Ok { .. }));
    }

    #[test]
    fn a_snapshot_record_drops_the_log_below_it_atomically() {
        let mut d = disk();
        d.push(R::seal(Write::Chosen {
            slot: 0,
            entry: crate::Entry::Cmds(vec![7].into()),
        }));
        d.push(R::seal(Write::Snapshot(crate::Snap { upto: 1, state: 9 })));
        let Loaded::Ok { state, .. } = load(&d) else {
            panic!()
        };
        assert!(state.accepted.is_empty());
        assert!(state.chosen.is_empty());
        assert_eq!(state.base(), 1);
        // Torn while writing the snapshot: the log before it is intact.
        d.last_mut().unwrap().torn = true;
        let Loaded::Ok { state, .. } = load(&d) else {
            panic!()
        };
        assert_eq!((state.base(), state.chosen.len()), (0, 1));
    }
}
