//! A replica of the service: the Multi-Paxos node, the state machine it
//! feeds, and the client-facing request handling. Sans-IO like the log core:
//! inputs in, [`Event`]s out.
//!
//! - A client request reaches any replica. The leader submits it to the log
//!   and replies when it applies it; another replica redirects the client to
//!   the leader it believes in.
//! - Reads go through the log by default. With `lease_reads`, the leader
//!   answers a `Get` from its own state while it holds a lease
//!   ([`Node::lease_read_ok`]).
//! - The leader proposes its clock reading every `tick_us` (the machine's
//!   time, which expires sessions).
//! - Every `snapshot_every` slots a replica snapshots its machine, dedup
//!   table included, and hands it to the log core, which compacts.
//! - [`Buggify`] steers the service down rare but legal paths in
//!   simulation (snapshots every few slots, withheld replies); off in a real
//!   build.

use crate::machine::{Applied, ClientId, Cmd, Command, Machine, Op, Reply};
use multipaxos::{Bugs, Input, Node, NodeId, Output, Slot, Snap};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The snapshot the log carries: shared, since peers and disks hold copies.
pub type Snapshot = Arc<Machine>;
pub type LogNode = Node<Cmd, Snapshot>;
pub type LogInput = Input<Cmd, Snapshot>;
pub type LogOutput = Output<Cmd, Snapshot>;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerConfig {
    pub snapshot_every: u64,
    pub tick_us: u64,
    pub lease_reads: bool,
    pub bugs: Bugs,
    /// Rare-path knobs for simulation; [`Buggify::OFF`] outside it.
    pub buggify: Buggify,
}

/// BUGGIFY for the service, as [`multipaxos::Buggify`] is for the log: each
/// knob swaps a normal choice for a rare but legal one, the server only
/// reads them, and a real deployment runs with [`Buggify::OFF`]. When a knob
/// changes what the server does, it says so with [`Event::Buggified`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Buggify {
    /// Snapshot every this many slots instead of `snapshot_every` (0: the
    /// knob is off). A few slots apart, lagging replicas and candidates
    /// catch up by snapshot rather than by entries.
    pub snapshot_every: u64,
    /// Withhold the reply to every 16th command (by sequence number) when it
    /// first executes, as if the reply were lost: the client times out and
    /// resends, and the dedup table answers the retry.
    pub withhold_replies: bool,
}

impl Buggify {
    /// Every knob off: what a real deployment runs.
    pub const OFF: Buggify = Buggify {
        snapshot_every: 0,
        withhold_replies: false,
    };

    pub fn any(&self) -> bool {
        *self != Buggify::OFF
    }
}

/// A rare path a [`Buggify`] knob steered the server down.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Buggified {
    /// `snapshot_every`: a snapshot was installed (from a peer, or the
    /// replica's own at a restart) while snapshots come every few slots.
    EarlySnapshotInstalled,
    /// `withhold_replies`: a reply was withheld; the client must resend.
    ReplyWithheld,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerInput {
    Log(LogInput),
    Request(Command),
    /// The tick timer fired.
    Tick,
}

/// What a replica does, for the driver to carry out (and the checkers to see).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An output of the log core (sends, writes, timers, applies, ...).
    Log(LogOutput),
    Reply {
        client: ClientId,
        seq: u64,
        reply: Reply,
        /// Answered from the leader's state under its lease.
        local: bool,
    },
    Redirect {
        client: ClientId,
        seq: u64,
        leader: Option<NodeId>,
    },
    /// A client command applied at `slot`, as command `index` of the slot's
    /// batch, by this replica's machine.
    Executed {
        slot: Slot,
        index: u32,
        cmd: Command,
        applied: Applied,
    },
    /// Arm the tick timer.
    SetTick { delay_us: u64 },
    /// A clock tick applied at `slot` by this replica's machine.
    Ticked { slot: Slot, now_us: u64 },
    /// A [`Buggify`] knob steered this replica down a rare path (for
    /// coverage; never with the knobs off).
    Buggified(Buggified),
}

/// A replica. `Eq` and `Hash` cover every field, for the model checker
/// (`paxsim check`); `scratch` is empty between calls, so it never tells two
/// servers apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Server {
    node: LogNode,
    machine: Machine,
    cfg: ServerConfig,
    /// Requests this replica took into the log and must answer.
    waiting: BTreeSet<(ClientId, u64)>,
    scratch: Vec<LogOutput>,
}

impl Server {
    pub fn new(node: LogNode, cfg: ServerConfig) -> Server {
        assert!(cfg.snapshot_every >= 1, "a snapshot every 0 slots");
        assert!(cfg.tick_us >= 1, "a tick every 0 us");
        assert!(
            cfg.buggify.snapshot_every <= cfg.snapshot_every,
            "BUGGIFY snapshots earlier, never later"
        );
        Server {
            node,
            machine: Machine::new(),
            cfg,
            waiting: BTreeSet::new(),
            scratch: Vec::new(),
        }
    }

    pub fn node(&self) -> &LogNode {
        &self.node
    }
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    pub fn start(&mut self, now: u64, out: &mut Vec<Event>) {
        let mut scratch = std::mem::take(&mut self.scratch);
        self.node.start(now, &mut scratch);
        self.absorb(now, &mut scratch, out);
        self.scratch = scratch;
        out.push(Event::SetTick {
            delay_us: self.cfg.tick_us,
        });
    }

    pub fn handle(&mut self, now: u64, input: ServerInput, out: &mut Vec<Event>) {
        match input {
            ServerInput::Log(i) => self.log(now, i, out),
            ServerInput::Tick => {
                if self.node.is_leader() && self.node.pending() < 64 {
                    self.log(now, Input::Submit(Cmd::Tick { now_us: now }), out);
                }
                out.push(Event::SetTick {
                    delay_us: self.cfg.tick_us,
                });
            }
            ServerInput::Request(cmd) => self.request(now, cmd, out),
        }
    }

    fn request(&mut self, now: u64, cmd: Command, out: &mut Vec<Event>) {
        if let Op::Get { key } = cmd.op {
            let lease = self.cfg.lease_reads && self.node.lease_read_ok(now);
            // BUG (canary 5): any leader reads locally, lease or not.
            let unsafe_local = self.cfg.bugs.read_without_lease && self.node.is_leader();
            if lease || unsafe_local {
                out.push(Event::Reply {
                    client: cmd.client,
                    seq: cmd.seq,
                    reply: self.machine.read(key),
                    local: true,
                });
                return;
            }
        }
        if !self.node.is_leader() {
            out.push(Event::Redirect {
                client: cmd.client,
                seq: cmd.seq,
                leader: self.node.leader().filter(|l| *l != self.node.id()),
            });
            return;
        }
        self.waiting.insert((cmd.client, cmd.seq));
        self.log(now, Input::Submit(Cmd::Client(cmd)), out);
    }

    fn log(&mut self, now: u64, input: LogInput, out: &mut Vec<Event>) {
        let mut scratch = std::mem::take(&mut self.scratch);
        self.node.handle(now, input, &mut scratch);
        self.absorb(now, &mut scratch, out);
        self.scratch = scratch;
    }

    /// Carries the log core's outputs into the machine and out to the driver;
    /// feeds any snapshot due back to the core.
    fn absorb(&mut self, now: u64, scratch: &mut Vec<LogOutput>, out: &mut Vec<Event>) {
        let mut snap = None;
        let knobs = self.cfg.buggify;
        let snapshot_every = if knobs.snapshot_every > 0 {
            knobs.snapshot_every
        } else {
            self.cfg.snapshot_every
        };
        for o in scratch.drain(..) {
            match &o {
                Output::Apply { slot, entry } => {
                    if let multipaxos::Entry::Cmds(cmds) = entry {
                        for (index, c) in cmds.iter().enumerate() {
                            let index = index as u32;
                            let keep_owner = self.cfg.bugs.plain_write_keeps_owner;
                            let Some(applied) = self.machine.apply_with(c, keep_owner) else {
                                if let Cmd::Tick { now_us } = *c {
                                    out.push(Event::Ticked {
                                        slot: *slot,
                                        now_us,
                                    });
                                }
                                continue;
                            };
                            let Cmd::Client(cmd) = c else { continue };
                            let (reply, executed) = (applied.reply.clone(), applied.executed);
                            out.push(Event::Executed {
                                slot: *slot,
                                index,
                                cmd: cmd.clone(),
                                applied,
                            });
                            if !self.waiting.remove(&(cmd.client, cmd.seq)) {
                                continue;
                            }
                            // Only a first execution: the retry, which the
                            // dedup table answers, gets its reply.
                            if knobs.withhold_replies && executed && cmd.seq % 16 == 0 {
                                out.push(Event::Buggified(Buggified::ReplyWithheld));
                                continue;
                            }
                            out.push(Event::Reply {
                                client: cmd.client,
                                seq: cmd.seq,
                                reply,
                                local: false,
                            });
                        }
                    }
                    if (slot + 1) % snapshot_every == 0 {
                        // BUG (canary 7) when the dedup table is left out.
                        let keep = !self.cfg.bugs.snapshot_without_dedup;
                        snap = Some(Snap::new(slot + 1, Arc::new(self.machine.snapshot(keep))));
                    }
                }
                Output::Install { snap } => {
                    self.machine = (*snap.state).clone();
                    if knobs.snapshot_every > 0 {
                        out.push(Event::Buggified(Buggified::EarlySnapshotInstalled));
                    }
                }
                Output::NotLeader {
                    cmd: Cmd::Client(c),
                    leader,
                } => {
                    self.waiting.remove(&(c.client, c.seq));
                    out.push(Event::Redirect {
                        client: c.client,
                        seq: c.seq,
                        leader: *leader,
                    });
                }
                // The leader's queue is full (`multipaxos::QUEUE_MAX`): load
                // shedding. The command was never proposed, so this replica
                // forgets it and sends no reply; the client times out and
                // retries, here or elsewhere, as after a lost message. (No
                // Redirect: this replica is the leader, and naming it would
                // only bring the client straight back to a full queue.) A
                // refused tick needs nothing: a later tick carries a later
                // clock (and ticks are only submitted below 64 pending).
                Output::Busy {
                    cmd: Cmd::Client(c),
                } => {
                    self.waiting.remove(&(c.client, c.seq));
                }
                _ => {}
            }
            out.push(Event::Log(o));
        }
        if let Some(s) = snap {
            let mut more = Vec::new();
            self.node.handle(now, Input::Snapshot(s), &mut more);
            self.absorb(now, &mut more, out);
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
