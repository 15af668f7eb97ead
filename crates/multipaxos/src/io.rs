//! Durability plumbing: every write is persisted and synced, and a message
//! that reveals a write is parked until the driver reports it durable.

use crate::{bit, Command, Msg, Node, NodeId, Output, State, Write};

impl<C: Command, S: State> Node<C, S> {
    /// Issues one write and its sync; returns its sequence number.
    pub(crate) fn persist(&mut self, write: Write<C, S>, out: &mut Vec<Output<C, S>>) -> u64 {
        assert!(!matches!(write, Write::Init), "the driver writes Init");
        assert!(
            !matches!(write, Write::ChosenMark { .. }) || self.cfg.bugs.non_atomic_chosen,
            "a chosen mark without its entry is canary 9 only"
        );
        assert!(
            !matches!(write, Write::Rebuilt(_)) || self.persist_seq == 0,
            "a Rebuilt record must be the disk's first"
        );
        self.persist_seq += 1;
        out.push(Output::Persist {
            seq: self.persist_seq,
            write,
        });
        out.push(Output::Sync {
            upto: self.persist_seq,
        });
        assert!(self.persist_seq > self.synced_seq);
        self.persist_seq
    }

    /// Sends `msg` once write `seq` is durable: now, or when it syncs.
    pub(crate) fn send_after(
        &mut self,
        seq: u64,
        to: NodeId,
        msg: Msg<C, S>,
        out: &mut Vec<Output<C, S>>,
    ) {
        assert!(
            seq <= self.persist_seq,
            "a message waits on a write never issued"
        );
        assert!(to < self.cfg.n, "a send outside the cluster");
        let msg = self.whole_or_first_part(to, seq, msg);
        if seq <= self.synced_seq {
            out.push(Output::Send {
                to,
                msg,
                after: seq,
            });
        } else {
            self.parked.push((seq, to, msg));
        }
    }

    /// The driver made every write up to `upto` durable: release what waited.
    pub(crate) fn synced(&mut self, upto: u64, out: &mut Vec<Output<C, S>>) {
        assert!(upto <= self.persist_seq, "sync of a write never issued");
        if upto <= self.synced_seq {
            return;
        }
        self.synced_seq = upto;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(s, _, _)| *s <= upto);
        self.parked = waiting;
        for (after, to, msg) in ready {
            assert!(after <= self.synced_seq);
            out.push(Output::Send { to, msg, after });
        }
        assert!(self.parked.iter().all(|(s, _, _)| *s > upto));
    }

    /// Sends `msg` to every node the log reaches (voters and learners of
    /// the configurations from the one in force on), this one included,
    /// once write `seq` is durable.
    pub(crate) fn broadcast(&mut self, seq: u64, msg: Msg<C, S>, out: &mut Vec<Output<C, S>>) {
        assert!(seq <= self.persist_seq);
        let reach = self.reach() | bit(self.cfg.id);
        for to in (0..self.cfg.n).filter(|to| reach & bit(*to) != 0) {
            self.send_after(seq, to, msg.clone(), out);
        }
    }

    /// Sends `msg`, which reveals no write, to every other node: every
    /// machine for a rebuild (which knows no configuration), the log's
    /// reach for a heartbeat.
    pub(crate) fn broadcast_others(&mut self, msg: Msg<C, S>, out: &mut Vec<Output<C, S>>) {
        assert!(
            matches!(msg, Msg::RebuildQuery { .. } | Msg::Heartbeat { .. }),
            "only rebuild queries and heartbeats skip the sender and the disk"
        );
        let reach = match msg {
            Msg::Heartbeat { .. } => self.reach(),
            _ => u16::MAX,
        };
        for to in 0..self.cfg.n {
            if to != self.cfg.id && reach & bit(to) != 0 {
                out.push(Output::Send {
                    to,
                    msg: msg.clone(),
                    after: 0,
                });
            }
        }
    }
}
