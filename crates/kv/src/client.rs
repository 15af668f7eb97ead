//! The client library: one request at a time, tagged (client id, sequence
//! number) so the service executes it at most once however often it is
//! resent; resent to the leader a replica names, or to the next replica
//! after a timeout.

use crate::machine::{ClientId, Command, Op, Reply};
use multipaxos::NodeId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOut {
    Send {
        to: NodeId,
        cmd: Command,
    },
    /// Arm the retry timer; a timer whose epoch is stale is ignored.
    SetTimer {
        delay_us: u64,
        epoch: u64,
    },
}

#[derive(Clone, Debug)]
pub struct Client {
    pub id: ClientId,
    n: u8,
    seq: u64,
    target: NodeId,
    current: Option<Command>,
    epoch: u64,
    retry_us: u64,
    /// The target moved on since the last send (a redirect that named no
    /// leader): the retry goes there, not one further. (It used to move
    /// twice, and with seven machines a stale redirect from a removed
    /// replica made a cycle that never met the leader.)
    moved: bool,
    /// Redirects followed since the last reply: past `n`, a hint is
    /// ignored and the client goes round the replicas in turn (stale hints
    /// from replicas removed from the cluster can make a cycle: one named
    /// another that knew no leader, which moved on to the first).
    hints: u32,
}

impl Client {
    pub fn new(id: ClientId, n: u8, target: NodeId, retry_us: u64) -> Client {
        assert!(n >= 1 && target < n);
        Client {
            id,
            n,
            seq: 0,
            target,
            current: None,
            epoch: 0,
            retry_us,
            moved: false,
            hints: 0,
        }
    }

    /// A client that numbers its requests after `last_seq`. A program that
    /// reuses a client id (sessions and locks belong to ids), say across
    /// runs of a command line, must number above every seq the id used
    /// before: the dedup table answers a seq it executed with its stored
    /// reply, and an older one with `Stale`.
    pub fn resume(id: ClientId, n: u8, target: NodeId, retry_us: u64, last_seq: u64) -> Client {
        Client {
            seq: last_seq,
            ..Client::new(id, n, target, retry_us)
        }
    }

    /// The replica the next request goes to first: the one that answered
    /// last (the leader, once a redirect named it), or the next to try.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// The request in flight, if any.
    pub fn current(&self) -> Option<&Command> {
        self.current.as_ref()
    }

    /// Starts `op`; the client must be idle.
    pub fn invoke(&mut self, op: Op, out: &mut Vec<ClientOut>) -> Command {
        assert!(self.current.is_none(), "one request at a time");
        self.seq += 1;
        let cmd = Command {
            client: self.id,
            seq: self.seq,
            op,
        };
        self.current = Some(cmd.clone());
        self.send(out);
        cmd
    }

    fn send(&mut self, out: &mut Vec<ClientOut>) {
        let cmd = self.current.clone().expect("a request in flight");
        self.epoch += 1;
        self.moved = false;
        out.push(ClientOut::Send {
            to: self.target,
            cmd,
        });
        out.push(ClientOut::SetTimer {
            delay_us: self.retry_us,
            epoch: self.epoch,
        });
    }

    /// A reply arrived; returns the completed request if it answers it.
    pub fn on_reply(&mut self, from: NodeId, seq: u64, reply: Reply) -> Option<(Command, Reply)> {
        if self.current.as_ref()?.seq != seq {
            return None; // A late answer to an earlier attempt.
        }
        let cmd = self.current.take()?;
        self.epoch += 1;
        self.target = from;
        self.hints = 0;
        Some((cmd, reply))
    }

    /// A replica said it is not the leader.
    pub fn on_redirect(&mut self, seq: u64, leader: Option<NodeId>, out: &mut Vec<ClientOut>) {
        if self.current.as_ref().is_none_or(|c| c.seq != seq) {
            return;
        }
        match leader {
            Some(l) if l != self.target && l < self.n && self.hints < u32::from(self.n) => {
                self.hints += 1;
                self.target = l;
                self.send(out);
            }
            // No leader known: try the next replica when the timer fires.
            _ => {
                if !self.moved {
                    self.target = (self.target + 1) % self.n;
                }
                self.moved = true;
            }
        }
    }

    pub fn on_timer(&mut self, epoch: u64, out: &mut Vec<ClientOut>) {
        if epoch != self.epoch || self.current.is_none() {
            return;
        }
        if !self.moved {
            self.target = (self.target + 1) % self.n;
        }
        self.send(out);
    }
}
