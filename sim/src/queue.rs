//! The event queue both schedulers share: pending events ordered by
//! (simulated time, insertion number), so two events due at the same
//! instant run in the order they were scheduled, the same on every run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

struct Item<E> {
    at_us: u64,
    seq: u64,
    ev: E,
}

impl<E> PartialEq for Item<E> {
    fn eq(&self, o: &Self) -> bool {
        (self.at_us, self.seq) == (o.at_us, o.seq)
    }
}
impl<E> Eq for Item<E> {}
impl<E> PartialOrd for Item<E> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Item<E> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at_us, self.seq).cmp(&(o.at_us, o.seq))
    }
}

pub struct Queue<E> {
    heap: BinaryHeap<Reverse<Item<E>>>,
    seq: u64,
    /// A run that exceeds this is a harness bug or a message storm: it stops
    /// with an assertion rather than eating memory.
    max: usize,
}

impl<E> Queue<E> {
    pub fn new(max: usize) -> Queue<E> {
        Queue {
            heap: BinaryHeap::with_capacity(1024),
            seq: 0,
            max,
        }
    }

    pub fn push(&mut self, at_us: u64, ev: E) {
        assert!(self.heap.len() < self.max, "event queue bound exceeded");
        self.seq += 1;
        self.heap.push(Reverse(Item {
            at_us,
            seq: self.seq,
            ev,
        }));
    }

    /// The next event and its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        self.heap.pop().map(|Reverse(i)| (i.at_us, i.ev))
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
