//! The simulated disk of one node: durable records, writes issued but not
//! yet synced, and the faults a real disk has.

use crate::engine::protocol::DiskRecord;
use std::ops::Range;

/// One node's disk. It outlives the node's process. (`Eq` and `Hash`: the
/// model checker keeps disks in the states it visits.)
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Disk<W> {
    /// What a recovery reads.
    pub durable: Vec<W>,
    /// Issued, not yet synced: `(write number, record)`, numbers increasing.
    unsynced: Vec<(u64, W)>,
    /// The number of the last write of this incarnation known durable (D1).
    pub synced: u64,
    /// The last landed record that replaces all before it: the records
    /// before it are dropped when the next ones land (not at once, so that
    /// the checker sees every record that became durable).
    whole: Option<usize>,
}

impl<W: DiskRecord> Default for Disk<W> {
    fn default() -> Self {
        Disk {
            durable: Vec::new(),
            unsynced: Vec::new(),
            synced: 0,
            whole: None,
        }
    }
}

impl<W: DiskRecord> Disk<W> {
    pub fn write(&mut self, seq: u64, w: W) {
        assert!(
            seq > self.synced,
            "write #{seq} numbered at or below the synced #{}",
            self.synced
        );
        if let Some((last, _)) = self.unsynced.last() {
            assert!(*last < seq, "write numbers must increase");
        }
        self.unsynced.push((seq, w));
    }

    pub fn pending(&self) -> usize {
        self.unsynced.len()
    }

    /// A sync up to `upto` completed: those writes are durable. Returns the
    /// range of `durable` they now occupy.
    pub fn sync(&mut self, upto: u64) -> Range<usize> {
        let k = self.unsynced.iter().take_while(|(s, _)| *s <= upto).count();
        self.synced = self.synced.max(upto);
        self.land(k)
    }

    /// Moves the first `k` unsynced writes to the durable records.
    fn land(&mut self, k: usize) -> Range<usize> {
        self.compact();
        let start = self.durable.len();
        for (_, w) in self.unsynced.drain(..k) {
            if w.replaces_all() {
                self.whole = Some(self.durable.len());
            }
            self.durable.push(w);
        }
        start..self.durable.len()
    }

    /// Power loss: the first `keep` unsynced writes reached the platter (the
    /// next is left torn, cut at `tear`, if that is `Some`), the rest are
    /// lost. Returns the range of `durable` the intact survivors occupy, and
    /// how many writes were lost.
    pub fn crash(&mut self, keep: usize, tear: Option<u32>) -> (Range<usize>, u32) {
        let landed = self.land(keep.min(self.unsynced.len()));
        let lost = self.unsynced.len() as u32;
        if let Some(cut) = tear {
            if !self.unsynced.is_empty() {
                let (_, mut w) = self.unsynced.swap_remove(0);
                w.tear(cut);
                self.durable.push(w);
            }
        }
        self.unsynced.clear();
        self.synced = 0;
        (landed, lost)
    }

    /// Drops the records a later whole-state record replaced (done lazily,
    /// when the next writes land, or now: once the checker has seen them).
    pub fn compact(&mut self) {
        if let Some(i) = self.whole.take() {
            let i = i.min(self.durable.len());
            self.durable.drain(..i);
        }
    }

    pub fn flip_bit(&mut self, record: u32, bit: u32) {
        if !self.durable.is_empty() {
            let i = crate::nemesis::flip_target(record, self.durable.len());
            self.durable[i].flip_bit(bit);
        }
    }

    pub fn wipe(&mut self) {
        assert!(self.unsynced.is_empty(), "wipe a disk only after a crash");
        self.durable.clear();
        self.whole = None;
    }
}
