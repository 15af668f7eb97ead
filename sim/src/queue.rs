//! The event queue both schedulers share: pending events ordered by
//! (simulated time, insertion number), so two events due at the same
//! instant run in the order they were scheduled, the same on every run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Pending events live in a slab; the heap orders only `(time, insertion
/// number, slot)`, 24 bytes whatever the event's size, so a protocol with
/// large messages pays no more per heap operation than one with small ones.
pub struct Queue<E> {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slab: Vec<Option<E>>,
    free: Vec<u32>,
    seq: u64,
    /// A run that exceeds this is a harness bug or a message storm: it stops
    /// with an assertion rather than eating memory.
    max: usize,
}

impl<E> Queue<E> {
    pub fn new(max: usize) -> Queue<E> {
        assert!(max <= u32::MAX as usize);
        Queue {
            heap: BinaryHeap::with_capacity(256),
            slab: Vec::with_capacity(256),
            free: Vec::with_capacity(256),
            seq: 0,
            max,
        }
    }

    pub fn push(&mut self, at_us: u64, ev: E) {
        assert!(self.heap.len() < self.max, "event queue bound exceeded");
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(ev);
                i
            }
            None => {
                self.slab.push(Some(ev));
                (self.slab.len() - 1) as u32
            }
        };
        self.heap.push(Reverse((at_us, self.seq, slot)));
    }

    /// The next event and its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        let Reverse((at_us, _, slot)) = self.heap.pop()?;
        let ev = self.slab[slot as usize]
            .take()
            .expect("a queued slot is full");
        self.free.push(slot);
        Some((at_us, ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_run_in_time_order_and_ties_in_insertion_order() {
        let mut q = Queue::new(16);
        q.push(5, 'c');
        q.push(1, 'a');
        q.push(5, 'd');
        q.push(1, 'b');
        let order: Vec<char> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, vec!['a', 'b', 'c', 'd']);
    }
}
