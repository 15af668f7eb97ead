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

use crate::machine::{Addrs, Applied, ClientId, Cmd, Command, Machine, Op, Reply, ADDR_MAX};
use multipaxos::{Bugs, Change, Input, Members, Node, NodeId, Output, Slot, Snap};
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
    /// An operator's request about the membership.
    Admin {
        client: ClientId,
        seq: u64,
        admin: Admin,
    },
    /// The tick timer fired.
    Tick,
}

/// An operator's membership request (`paxkv member ...`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Admin {
    /// This replica's view of the membership; any replica answers.
    List,
    /// A change, with the addresses of every replica it adds (the leader
    /// proposes them into the address book with the configuration).
    Change {
        change: Change,
        addrs: Vec<(NodeId, Addrs)>,
    },
}

/// The answer to an [`Admin`] request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    Members(MemberView),
    /// The configuration the leader proposed (it governs α slots after the
    /// slot that chooses it), or why it proposed none.
    Changed(Result<Members, String>),
}

/// A replica's view of the membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The replica that answered, and the leader it believes in.
    pub from: NodeId,
    pub leader: Option<NodeId>,
    /// The configuration of the first slot this replica has not applied.
    pub in_force: Members,
    /// The newest configuration it knows (chosen; it may govern later).
    pub latest: Members,
    /// The cluster's constants a joining replica needs: the first
    /// configuration's voters and the α-window.
    pub first: u16,
    pub window: u64,
    /// The address book (replicas added by changes).
    pub peers: Vec<(NodeId, Addrs)>,
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
    /// The answer to an operator's [`Admin`] request.
    AdminReply {
        client: ClientId,
        seq: u64,
        reply: AdminReply,
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
            ServerInput::Admin { client, seq, admin } => self.admin(now, client, seq, admin, out),
        }
    }

    /// A membership request: a view from any replica; a change from the
    /// leader only (others redirect), which proposes the configuration and
    /// then the added replicas' addresses, and answers at once with what it
    /// proposed (the operator watches `List` for the change to take effect).
    fn admin(&mut self, now: u64, client: ClientId, seq: u64, admin: Admin, out: &mut Vec<Event>) {
        let (change, addrs) = match admin {
            Admin::List => {
                let node = &self.node;
                let reply = AdminReply::Members(MemberView {
                    from: node.id(),
                    leader: node.leader(),
                    in_force: node.members_at(node.applied()),
                    latest: node.latest(),
                    first: node.config().voters,
                    window: node.config().alpha(),
                    peers: self
                        .machine
                        .peers()
                        .iter()
                        .map(|(i, a)| (*i, a.clone()))
                        .collect(),
                });
                return out.push(Event::AdminReply { client, seq, reply });
            }
            Admin::Change { change, addrs } => (change, addrs),
        };
        if !self.node.is_leader() {
            return out.push(Event::Redirect {
                client,
                seq,
                leader: self.node.leader().filter(|l| *l != self.node.id()),
            });
        }
        // Ids come from a client: out of range, they are refused here, before
        // anything takes them for a machine of the cluster.
        let changed = match change {
            Change::Add(id) | Change::Remove(id) => Some(id),
            Change::Replace { .. } | Change::Promote => None,
        };
        let mut ids = addrs.iter().map(|(id, _)| *id).chain(changed);
        if ids.any(|id| usize::from(id) >= multipaxos::MAX_NODES) {
            let why = format!(
                "a replica id out of range (0 to {})",
                multipaxos::MAX_NODES - 1
            );
            let reply = AdminReply::Changed(Err(why));
            return out.push(Event::AdminReply { client, seq, reply });
        }
        let added = match change {
            Change::Add(id) => multipaxos::bit(id),
            Change::Replace { new, .. } => new,
            Change::Remove(_) | Change::Promote => 0,
        };
        let named = addrs.iter().fold(0, |s, (id, _)| s | multipaxos::bit(*id));
        let refusal = if named != added || addrs.len() != added.count_ones() as usize {
            Some("give one address for each replica the change adds, and only for those".into())
        } else if addrs
            .iter()
            .any(|(_, a)| a.peer.len() > ADDR_MAX || a.client.len() > ADDR_MAX)
        {
            Some(format!("an address longer than {ADDR_MAX} bytes"))
        } else {
            None
        };
        if let Some(why) = refusal {
            let reply = AdminReply::Changed(Err(why));
            return out.push(Event::AdminReply { client, seq, reply });
        }
        let from = out.len();
        self.log(now, Input::Reconfigure(change), out);
        let outcome = out[from..]
            .iter()
            .find_map(|e| match e {
                Event::Log(Output::Reconfigure { change: c, outcome }) if *c == change => {
                    Some(*outcome)
                }
                _ => None,
            })
            .expect("the leader answers a reconfiguration");
        if outcome.is_ok() {
            for (id, addrs) in addrs {
                self.log(now, Input::Submit(Cmd::Peer { id, addrs }), out);
            }
        }
        let reply = AdminReply::Changed(outcome.map_err(str::to_string));
        out.push(Event::AdminReply { client, seq, reply });
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
