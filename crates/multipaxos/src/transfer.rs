//! Messages too large for one frame travel in parts, pulled by the receiver.
//!
//! A `Promise`, `Snapshot` or `RebuildState` carries state whose size the
//! protocol does not bound: a snapshot of the whole state machine, a
//! replica's whole log. Any of them may outgrow the transport's frames (a
//! 64 MiB peer frame holds 2,000 values of 32 KiB), and one that is never
//! delivered can never be rebuilt from or caught up with. So a message whose
//! encoding is over [`Config::part_bytes`](crate::Config::part_bytes) is
//! sent as [`Msg::Part`]s of its encoding:
//!
//! - **Named by content.** A transfer is named by the CRC32C of the whole
//!   encoding and its length. The same message sent again (a snapshot
//!   resent for another query) has the same name, so a receiver resumes
//!   where it was instead of starting over; the receiver checks the CRC of
//!   what it assembled before decoding it, so parts of two transfers can
//!   never be mixed into a third message.
//! - **Pulled.** The sender keeps the encoding (one per peer: a newer
//!   transfer to the same peer replaces it) and sends the first part; the
//!   receiver asks for each next part ([`Msg::Pull`]) once the previous one
//!   arrived, so one part per peer is in flight and the sender does nothing
//!   the receiver did not ask for. A pull at the end says the whole arrived,
//!   and the sender forgets the encoding.
//! - **Loss-tolerant and resumable.** A lost part or pull stalls the
//!   transfer. While parts are awaited the receiver keeps a [`Timer::Pull`]
//!   set, every heartbeat interval, and pulls again from what it has when
//!   nothing arrived for half of one. Where it would otherwise ask for the
//!   whole message again, it does not while the transfer lives, since that
//!   would restart a message that changed: a rebuilding replica does not
//!   query that peer again, a candidate stands again only once no part came
//!   for an election timeout. A follower's catch-up query is asked again (a
//!   snapshot at one slot never changes), and the sender answers it with
//!   the first part of the encoding it kept; the follower pulls on from
//!   where it is.
//!   A transfer that stalls for [`GIVE_UP_TIMEOUTS`] election timeouts is
//!   dropped (its sender crashed, or replaced it) and the ordinary ask
//!   starts a new one.
//! - **Input, not invariant.** A part is a peer's bytes: one out of range is
//!   refused (`validate`), a `total` above [`TRANSFER_MAX`] too, bytes are
//!   kept only as they arrive, and the assembled message is decoded and then
//!   checked like any other message before a handler sees it.
//!
//! The parts of a message reveal what the message does, so the first part
//! waits for the same write as the whole would have (`after`), and the
//! sender answers a pull only once that write is durable.

use crate::{Command, Msg, Node, NodeId, Output, Slot, State, Timer, TRANSFER_MAX};
use std::sync::Arc;

/// A stalled transfer is dropped after this many election timeouts with no
/// part arriving.
pub const GIVE_UP_TIMEOUTS: u64 = 4;

/// A message being sent in parts to one peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Outgoing {
    id: u32,
    /// For a `Snapshot`: its slot. A node's snapshot at a slot never
    /// changes, so a query answered again reuses this encoding.
    snapshot: Option<Slot>,
    /// The write the message reveals: no part leaves before it is durable.
    after: u64,
    bytes: Arc<[u8]>,
}

/// A message arriving in parts from one peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Incoming {
    id: u32,
    total: u64,
    bytes: Vec<u8>,
    /// Local time the last part arrived (or the transfer began).
    progress_at: u64,
    /// Local time of the last pull sent again after a stall.
    retried_at: u64,
}

/// The name of an encoding: its CRC32C.
fn name(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

impl<C: Command, S: State> Node<C, S> {
    /// `msg` as it goes on the wire to `to` once write `after` is durable:
    /// whole, or (too large) its first part, keeping the rest for `to`.
    pub(crate) fn whole_or_first_part(
        &mut self,
        to: NodeId,
        after: u64,
        msg: Msg<C, S>,
    ) -> Msg<C, S> {
        // (BUG, canary 16: everything goes whole.)
        if !msg.may_outgrow_a_frame() || self.cfg.bugs.send_state_whole {
            return msg;
        }
        let snapshot = match &msg {
            Msg::Snapshot { snap } => Some(snap.upto),
            _ => None,
        };
        if let Some(o) = self.outgoing.get(&to) {
            if snapshot.is_some() && o.snapshot == snapshot {
                // The same snapshot again: its first part again, from the
                // encoding kept (the receiver pulls on from what it has).
                return self.part_of(o, 0);
            }
        }
        let size = postcard::experimental::serialized_size(&msg).expect("a message always encodes");
        if size <= self.cfg.part_bytes {
            return msg;
        }
        let bytes: Arc<[u8]> = postcard::to_stdvec(&msg)
            .expect("a message always encodes")
            .into();
        assert_eq!(bytes.len(), size, "postcard's size is its encoding's");
        assert!(
            (bytes.len() as u64) <= TRANSFER_MAX,
            "a message of {} bytes, over what any peer accepts",
            bytes.len()
        );
        let o = Outgoing {
            id: name(&bytes),
            snapshot,
            after,
            bytes,
        };
        let first = self.part_of(&o, 0);
        self.outgoing.insert(to, o);
        first
    }

    /// The part of `o` that starts at `offset`.
    fn part_of(&self, o: &Outgoing, offset: usize) -> Msg<C, S> {
        assert!(offset < o.bytes.len(), "a part past the end");
        let end = o.bytes.len().min(offset + self.cfg.part_bytes);
        Msg::Part {
            id: o.id,
            total: o.bytes.len() as u64,
            offset: offset as u64,
            bytes: o.bytes[offset..end].to_vec(),
        }
    }

    /// `from` asks for the part of transfer `id` from `offset` (at the end:
    /// it has the whole, forget it). A pull for a transfer no longer kept
    /// gets no answer: the receiver gives up on it and asks anew.
    pub(crate) fn on_pull(
        &mut self,
        from: NodeId,
        id: u32,
        offset: u64,
        out: &mut Vec<Output<C, S>>,
    ) {
        let Some(o) = self.outgoing.get(&from) else {
            return;
        };
        if o.id != id || o.after > self.synced_seq {
            return;
        }
        let total = o.bytes.len() as u64;
        if offset >= total {
            self.outgoing.remove(&from);
            return;
        }
        let (msg, after) = (self.part_of(o, offset as usize), o.after);
        out.push(Output::Send {
            to: from,
            msg,
            after,
        });
    }

    /// A part from `from` (validated: non-empty, within `total`, `total`
    /// within [`TRANSFER_MAX`]). Kept if it is the next one of the transfer
    /// under way (or the first of a new one, which replaces it); once the
    /// whole is there it is checked, decoded and received as if it had come
    /// whole.
    pub(crate) fn on_part(
        &mut self,
        from: NodeId,
        id: u32,
        total: u64,
        offset: u64,
        bytes: Vec<u8>,
        out: &mut Vec<Output<C, S>>,
    ) {
        assert!(!bytes.is_empty() && offset + bytes.len() as u64 <= total);
        assert!(total <= TRANSFER_MAX);
        let now = self.now;
        let same = |t: &Incoming| t.id == id && t.total == total;
        match self.incoming.get_mut(&from) {
            Some(t) if same(t) && offset == t.bytes.len() as u64 => {}
            Some(t) if same(t) => {
                // A duplicate, or the first part again (the whole message
                // was sent again): keep what we have. A first part resent
                // means the sender has the encoding: pull the rest now.
                if offset == 0 {
                    let have = t.bytes.len() as u64;
                    self.pull(from, id, have, out);
                }
                return;
            }
            // A later part of a transfer we do not hold (dropped, or from
            // before a crash): nothing to add it to.
            _ if offset != 0 => return,
            _ => {
                self.arm_pull(out);
                self.incoming.insert(
                    from,
                    Incoming {
                        id,
                        total,
                        bytes: Vec::new(),
                        progress_at: now,
                        retried_at: now,
                    },
                );
            }
        }
        let t = self.incoming.get_mut(&from).expect("inserted or found");
        t.bytes.extend_from_slice(&bytes);
        t.progress_at = now;
        assert!(t.bytes.len() as u64 <= t.total);
        if (t.bytes.len() as u64) < total {
            let have = t.bytes.len() as u64;
            return self.pull(from, id, have, out);
        }
        let t = self.incoming.remove(&from).expect("found above");
        // Done: say so, so the sender forgets its copy.
        self.pull(from, id, total, out);
        if name(&t.bytes) != id {
            return out.push(Output::Refused {
                from,
                why: "a message in parts whose bytes do not match its name",
            });
        }
        match postcard::from_bytes::<Msg<C, S>>(&t.bytes) {
            Ok(Msg::Part { .. } | Msg::Pull { .. }) => out.push(Output::Refused {
                from,
                why: "a part inside a message in parts",
            }),
            Ok(msg) => self.receive(from, msg, out),
            Err(_) => out.push(Output::Refused {
                from,
                why: "a message in parts that does not decode",
            }),
        }
    }

    fn pull(&self, to: NodeId, id: u32, offset: u64, out: &mut Vec<Output<C, S>>) {
        out.push(Output::Send {
            to,
            msg: Msg::Pull { id, offset },
            after: 0,
        });
    }

    /// Whether a transfer from `peer` is under way, at a moment this node
    /// would otherwise ask `peer` for the whole message again. One that made
    /// progress in the last half heartbeat interval is left alone; a stalled
    /// one is pulled again from where it is (at most once every half
    /// interval); one stalled for [`GIVE_UP_TIMEOUTS`] election timeouts is
    /// dropped, and `false` lets the caller ask anew.
    pub(crate) fn transfer_alive(&mut self, peer: NodeId, out: &mut Vec<Output<C, S>>) -> bool {
        let (now, t) = (self.now, self.cfg.timing);
        let Some(x) = self.incoming.get_mut(&peer) else {
            return false;
        };
        if now.saturating_sub(x.progress_at) > GIVE_UP_TIMEOUTS * t.election_us {
            self.incoming.remove(&peer);
            return false;
        }
        let quiet = now.saturating_sub(x.progress_at.max(x.retried_at));
        if quiet >= t.heartbeat_us / 2 {
            x.retried_at = now;
            let (id, have) = (x.id, x.bytes.len() as u64);
            self.pull(peer, id, have, out);
        }
        true
    }

    fn arm_pull(&mut self, out: &mut Vec<Output<C, S>>) {
        if !self.pull_armed {
            self.pull_armed = true;
            out.push(Output::SetTimer {
                timer: Timer::Pull,
                delay_us: self.cfg.timing.heartbeat_us,
                jitter_us: 0,
            });
        }
    }

    /// [`Timer::Pull`]: pull again what stalled, drop what died, and keep
    /// the timer set while any part is awaited.
    pub(crate) fn on_pull_timer(&mut self, out: &mut Vec<Output<C, S>>) {
        if !self.pull_armed {
            return; // Not this incarnation's.
        }
        self.pull_armed = false;
        self.pull_stalled(out);
        if !self.incoming.is_empty() {
            self.arm_pull(out);
        }
    }

    /// Pulls every stalled transfer again and drops the dead ones.
    fn pull_stalled(&mut self, out: &mut Vec<Output<C, S>>) {
        let peers: Vec<NodeId> = self.incoming.keys().copied().collect();
        for p in peers {
            self.transfer_alive(p, out);
        }
    }

    /// Whether a part arrived in the last election timeout.
    pub(crate) fn parts_arriving(&self) -> bool {
        let span = self.cfg.timing.election_us;
        self.incoming
            .values()
            .any(|t| self.now.saturating_sub(t.progress_at) < span)
    }

    /// The transfers' invariants.
    pub(crate) fn assert_transfers(&self) {
        for (p, o) in &self.outgoing {
            assert!(*p < self.cfg.n);
            assert!(
                o.bytes.len() > self.cfg.part_bytes,
                "a whole message sent in parts"
            );
            assert!(o.after <= self.persist_seq);
        }
        assert!(
            self.incoming.is_empty() || self.pull_armed,
            "parts awaited, no timer"
        );
        for (p, t) in &self.incoming {
            assert!(*p < self.cfg.n);
            assert!(t.total <= TRANSFER_MAX);
            assert!(
                (t.bytes.len() as u64) < t.total,
                "a whole message kept in parts"
            );
            assert!(t.progress_at <= self.now && t.retried_at <= self.now);
        }
    }
}

#[cfg(test)]
#[path = "transfer_tests.rs"]
mod tests;
