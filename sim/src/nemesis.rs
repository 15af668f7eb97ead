//! The nemesis: which faults a run injects, how hard, and when.
//!
//! # Fault model
//!
//! A run has two phases (as in TigerBeetle's VOPR). During the **fault phase**
//! `[0, fault_phase_us)` anything below may happen, to any number of nodes at
//! once: safety must hold regardless. At `fault_phase_us` the **quiet period**
//! begins: every crashed node restarts, partitions and slow nodes heal, and
//! message faults stop; from then on every live node must learn the chosen
//! value within `liveness_us` (invariant L1).
//!
//! Scheduled faults (explicit data in a [`Schedule`], so a run can be saved,
//! edited, shrunk and replayed):
//! - **crash / restart**: the node's memory is lost; its durable record
//!   survives, every write not yet synced is lost (the storage shim in
//!   `world.rs`, since madsim's fs has no durability model);
//! - **partition** into two random halves, **isolation** of one node, and
//!   **one-way** link cuts; a partition drops messages (checked at send and at
//!   delivery), it never delays them;
//! - **slow node**: its messages and disk syncs take `slow_factor` times longer;
//! - **heal**: removes every partition and link cut.
//!
//! Per-message faults, drawn from the run's generator for each message with
//! the intensities in [`Faults`]: **loss**, **duplication** (an independent
//! second copy with its own latency), **reordering** (latency jitter) and
//! **long delays** (up to `long_delay_us_max`). Per-sync faults: **fsync
//! latency spikes** and **power loss during a sync** (the node crashes at a
//! random instant before the sync completes and restarts 1–50 ms later).
//!
//! Guarantees: durable (synced) state is never lost or corrupted in the
//! Basic Paxos scenario; a node's own messages to itself are never lost.
//!
//! The log scenarios (`multi`, `kv`) add, each with its own intensity:
//! **leader-targeted** crashes and isolations (resolved to whoever leads when
//! the fault fires; clients still reach an isolated leader), per-node
//! **clock skew and drift** (half the clocks at the edge of the bound),
//! **process pauses**, **torn writes** (at a crash a random prefix of the
//! unsynced writes survives and the next may be cut anywhere), **bit flips**
//! anywhere in a durable record's bytes (found by a CRC32C at the next
//! recovery), **wiped disks**,
//! and **power loss during a snapshot write**. Disk losses hit at most a
//! minority of replicas at a time: beyond that Paxos cannot keep its data.
//! **Membership changes** ([`Caps::membership`]): the leader of the moment
//! is asked to add a spare machine, remove a member (itself included) or
//! replace a voter by a spare, during whatever else is going on;
//! partitions, crashes and disk losses included.
//!
//! **Swarm testing**: unless a run fixes its faults, each seed first draws
//! which fault kinds are on and how hard, so one campaign covers calm and
//! hostile runs alike.

use paxos::NodeId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The fault kinds a protocol can meaningfully face beyond the basic ones
/// (crashes with loss of unsynced writes, partitions, one-way cuts, slow
/// nodes, message loss/duplication/reordering/delay, fsync spikes, power
/// loss during a sync), which every protocol faces.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// Crash or isolate whoever leads ([`Protocol::leader_rank`]).
    pub leader: bool,
    /// Per-node clock skew and drift (the node must read `now` as given).
    pub clocks: bool,
    /// Stop-the-world process pauses.
    pub pauses: bool,
    /// Torn writes, bit flips, wiped disks, power loss during a snapshot:
    /// the protocol's records are checksummed and it rebuilds a lost disk.
    pub disk_loss: bool,
    /// The largest clock drift (ppm) the protocol is configured to tolerate
    /// (leases); `None`: any drift.
    pub drift_bound_ppm: Option<u64>,
    /// Hostile input: messages no correct peer sends
    /// ([`Protocol::forge`](crate::engine::Protocol::forge)).
    pub hostile: bool,
    /// Membership changes: the protocol takes an operator's request to add,
    /// remove or replace members
    /// ([`Protocol::reconfigure`](crate::engine::Protocol::reconfigure)),
    /// and runs with spare machines ([`RunConfig::spares`](crate::config::RunConfig)).
    pub membership: bool,
}

/// How much the world may misbehave in one history a model check
/// explores (`paxsim check`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bounds {
    pub crashes: u8,
    pub losses: u8,
    pub duplicates: u8,
    /// Timer firings (proposer retries, learner queries, elections ...).
    pub timers: u8,
    /// Operator membership changes (the scenario's `check_changes`), each
    /// asked of any live node at any moment.
    pub changes: u8,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            crashes: 0,
            losses: 0,
            duplicates: 0,
            timers: 1,
            changes: 0,
        }
    }
}

/// Intensities of every fault kind. Zero switches a kind off.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Per-message probabilities, in parts per thousand.
    pub loss_permille: u16,
    pub dup_permille: u16,
    pub long_delay_permille: u16,
    /// Extra uniform latency on each message (reordering).
    pub jitter_us: u64,
    /// Extra uniform latency on each disk sync (fsync spikes): widens the
    /// window in which a crash loses writes.
    pub disk_jitter_us: u64,
    /// Per disk sync, in parts per thousand: the node loses power before the
    /// sync completes (its unsynced writes are lost) and restarts shortly after.
    pub crash_in_sync_permille: u16,
    /// Crash/restart episodes in the fault phase.
    pub crashes: u8,
    /// Partition episodes (halves, isolations and one-way cuts).
    pub partitions: u8,
    /// Slow-node episodes.
    pub slow_nodes: u8,
    // ---- `multi` and `kv` only (zero, and rejected, in `basic`) ----
    /// Episodes aimed at the current leader: crash it, or isolate it.
    #[serde(default)]
    pub leader_faults: u8,
    /// Each node's clock runs at a rate drawn within ± this (parts per million).
    #[serde(default)]
    pub clock_drift_ppm: u64,
    /// Each node's clock starts offset by up to this.
    #[serde(default)]
    pub clock_skew_us: u64,
    /// Process pauses (a stop-the-world stall of up to 400 ms).
    #[serde(default)]
    pub pauses: u8,
    /// Per crash, in parts per thousand: the write in flight is left torn.
    #[serde(default)]
    pub torn_permille: u16,
    /// Episodes: a bit flips in a durable record, then the node restarts.
    #[serde(default)]
    pub bit_flips: u8,
    /// Episodes: the node crashes and its disk is wiped.
    #[serde(default)]
    pub wipes: u8,
    /// Per snapshot write, in parts per thousand: power fails before it syncs.
    #[serde(default)]
    pub snapshot_crash_permille: u16,
    /// Per message sent, in parts per thousand: the nemesis also puts a
    /// message no correct peer sends on the same link, as if from the same
    /// sender ([`Caps::hostile`]).
    #[serde(default)]
    pub hostile_permille: u16,
    /// Membership change episodes: the leader is asked to add a spare,
    /// remove a member (or itself) or replace a voter by a spare
    /// ([`Caps::membership`]).
    #[serde(default)]
    pub members: u8,
}

impl Faults {
    pub const NONE: Faults = Faults {
        loss_permille: 0,
        dup_permille: 0,
        long_delay_permille: 0,
        jitter_us: 0,
        disk_jitter_us: 0,
        crash_in_sync_permille: 0,
        crashes: 0,
        partitions: 0,
        slow_nodes: 0,
        leader_faults: 0,
        clock_drift_ppm: 0,
        clock_skew_us: 0,
        pauses: 0,
        torn_permille: 0,
        bit_flips: 0,
        wipes: 0,
        snapshot_crash_permille: 0,
        hostile_permille: 0,
        members: 0,
    };

    /// Every fault on, at a moderate rate.
    pub const ALL: Faults = Faults {
        loss_permille: 50,
        dup_permille: 50,
        long_delay_permille: 20,
        jitter_us: 2_000,
        disk_jitter_us: 2_000,
        crash_in_sync_permille: 10,
        crashes: 3,
        partitions: 2,
        slow_nodes: 1,
        ..Faults::NONE
    };

    /// Every fault on, including those of the log scenarios.
    pub const ALL_LOG: Faults = Faults {
        leader_faults: 2,
        clock_drift_ppm: 50_000,
        clock_skew_us: 1_000_000,
        pauses: 1,
        torn_permille: 300,
        bit_flips: 1,
        wipes: 1,
        snapshot_crash_permille: 100,
        hostile_permille: 10,
        members: 2,
        ..Faults::ALL
    };

    /// Swarm testing: each kind the protocol faces ([`Caps`]) on with
    /// probability 1/2, at a random intensity. Clock drift stays within the
    /// bound the protocol is configured for.
    pub fn draw(rng: &mut ChaCha8Rng, caps: &Caps) -> Faults {
        let on = |rng: &mut ChaCha8Rng, max: u64| -> u64 {
            if rng.gen_bool(0.5) && max > 0 {
                rng.gen_range(1..=max)
            } else {
                0
            }
        };
        let mut f = Faults {
            loss_permille: on(rng, 200) as u16,
            dup_permille: on(rng, 200) as u16,
            long_delay_permille: on(rng, 50) as u16,
            jitter_us: on(rng, 5_000),
            disk_jitter_us: on(rng, 10_000),
            crash_in_sync_permille: on(rng, 50) as u16,
            crashes: on(rng, 6) as u8,
            partitions: on(rng, 4) as u8,
            slow_nodes: on(rng, 2) as u8,
            ..Faults::NONE
        };
        if caps.leader {
            f.leader_faults = on(rng, 3) as u8;
        }
        if caps.clocks {
            f.clock_drift_ppm = on(rng, caps.drift_bound_ppm.unwrap_or(200_000));
            f.clock_skew_us = on(rng, 10_000_000);
        }
        if caps.pauses {
            f.pauses = on(rng, 3) as u8;
        }
        if caps.disk_loss {
            f.torn_permille = on(rng, 1000) as u16;
            f.bit_flips = on(rng, 2) as u8;
            f.wipes = on(rng, 2) as u8;
            f.snapshot_crash_permille = on(rng, 300) as u16;
        }
        // Drawn last, so that every other draw of a seed stays as it was.
        if caps.hostile {
            f.hostile_permille = on(rng, 50) as u16;
        }
        if caps.membership {
            f.members = on(rng, 4) as u8;
        }
        f
    }

    /// These intensities without the kinds a protocol with `caps` does not
    /// face.
    fn faced(&self, caps: &Caps) -> Faults {
        let mut f = *self;
        if !caps.leader {
            f.leader_faults = 0;
        }
        if !caps.clocks {
            f.clock_drift_ppm = 0;
            f.clock_skew_us = 0;
        }
        if !caps.pauses {
            f.pauses = 0;
        }
        if !caps.disk_loss {
            f.torn_permille = 0;
            f.bit_flips = 0;
            f.wipes = 0;
            f.snapshot_crash_permille = 0;
        }
        if !caps.hostile {
            f.hostile_permille = 0;
        }
        if !caps.membership {
            f.members = 0;
        }
        f
    }

    /// These intensities without the kinds a protocol with `caps` does not
    /// face, and clock drift within the bound it tolerates.
    pub fn only(&self, caps: &Caps) -> Faults {
        let mut f = self.faced(caps);
        if let Some(b) = caps.drift_bound_ppm {
            f.clock_drift_ppm = f.clock_drift_ppm.min(b);
        }
        f
    }

    /// The first kind switched on that a protocol with `caps` does not face.
    pub fn unsupported(&self, caps: &Caps) -> Option<&'static str> {
        let faced = self.faced(caps);
        let mut copy = *self;
        let names = copy.fields().map(|(name, _)| name);
        names
            .into_iter()
            .find(|name| self.get(name) != faced.get(name))
    }

    /// Every intensity by name, as `--faults` spells it.
    fn fields(&mut self) -> [(&'static str, FieldMut<'_>); 19] {
        [
            ("loss_permille", FieldMut::U16(&mut self.loss_permille)),
            ("dup_permille", FieldMut::U16(&mut self.dup_permille)),
            (
                "long_delay_permille",
                FieldMut::U16(&mut self.long_delay_permille),
            ),
            ("jitter_us", FieldMut::U64(&mut self.jitter_us)),
            ("disk_jitter_us", FieldMut::U64(&mut self.disk_jitter_us)),
            (
                "crash_in_sync_permille",
                FieldMut::U16(&mut self.crash_in_sync_permille),
            ),
            ("crashes", FieldMut::U8(&mut self.crashes)),
            ("partitions", FieldMut::U8(&mut self.partitions)),
            ("slow_nodes", FieldMut::U8(&mut self.slow_nodes)),
            ("leader_faults", FieldMut::U8(&mut self.leader_faults)),
            ("clock_drift_ppm", FieldMut::U64(&mut self.clock_drift_ppm)),
            ("clock_skew_us", FieldMut::U64(&mut self.clock_skew_us)),
            ("pauses", FieldMut::U8(&mut self.pauses)),
            ("torn_permille", FieldMut::U16(&mut self.torn_permille)),
            ("bit_flips", FieldMut::U8(&mut self.bit_flips)),
            ("wipes", FieldMut::U8(&mut self.wipes)),
            (
                "snapshot_crash_permille",
                FieldMut::U16(&mut self.snapshot_crash_permille),
            ),
            (
                "hostile_permille",
                FieldMut::U16(&mut self.hostile_permille),
            ),
            ("members", FieldMut::U8(&mut self.members)),
        ]
    }

    /// These intensities without the episode counts (crashes, partitions,
    /// slow nodes, leader faults, clock drift and skew bounds, pauses, bit
    /// flips, wipes), which only draw a schedule: what a run with an explicit
    /// schedule actually reads.
    pub fn without_episodes(&self) -> Faults {
        Faults {
            crashes: 0,
            partitions: 0,
            slow_nodes: 0,
            leader_faults: 0,
            clock_drift_ppm: 0,
            clock_skew_us: 0,
            pauses: 0,
            bit_flips: 0,
            wipes: 0,
            members: 0,
            ..*self
        }
    }

    /// The setting named `name` (a `--faults` name), if there is one.
    pub fn get(&self, name: &str) -> Option<u64> {
        let mut copy = *self;
        let fields = copy.fields();
        fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| match v {
                FieldMut::U8(x) => **x as u64,
                FieldMut::U16(x) => **x as u64,
                FieldMut::U64(x) => **x,
            })
    }

    /// Lowers the setting named `name` to `to` (no larger than it is now, so
    /// it always fits its field); false if there is no such setting or `to`
    /// is larger.
    pub fn lower(&mut self, name: &str, to: u64) -> bool {
        if self.get(name).is_none_or(|now| to > now) {
            return false;
        }
        let mut fields = self.fields();
        let (_, field) = fields
            .iter_mut()
            .find(|(n, _)| *n == name)
            .expect("get found it");
        match field {
            FieldMut::U8(x) => **x = to as u8,
            FieldMut::U16(x) => **x = to as u16,
            FieldMut::U64(x) => **x = to,
        }
        true
    }

    /// Parses `--faults`: `none`, `all`, or `name=value,...` (unnamed kinds
    /// are off). The error names the bad part and lists the known names.
    pub fn parse(spec: &str) -> Result<Faults, String> {
        match spec.trim() {
            "none" => return Ok(Faults::NONE),
            "all" => return Ok(Faults::ALL),
            "all-log" => return Ok(Faults::ALL_LOG),
            _ => {}
        }
        let mut f = Faults::NONE;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("fault setting '{part}' is not name=value"))?;
            let mut fields = f.fields();
            let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
            let field = fields.iter_mut().find(|(n, _)| *n == name).ok_or_else(|| {
                format!(
                    "unknown fault '{name}'; known: none, all, all-log, {}",
                    names.join(", ")
                )
            })?;
            let bad = |e: std::num::ParseIntError| {
                format!("fault '{name}': '{value}' is not a valid number ({e})")
            };
            match &mut field.1 {
                FieldMut::U8(x) => **x = value.parse().map_err(bad)?,
                FieldMut::U16(x) => **x = value.parse().map_err(bad)?,
                FieldMut::U64(x) => **x = value.parse().map_err(bad)?,
            }
        }
        f.validate()?;
        Ok(f)
    }

    /// The `--faults` spelling of these intensities (inverse of [`Faults::parse`]).
    pub fn spec(&self) -> String {
        if *self == Faults::NONE {
            return "none".into();
        }
        let mut copy = *self;
        let parts: Vec<String> = copy
            .fields()
            .iter()
            .filter_map(|(name, v)| {
                let v = match v {
                    FieldMut::U8(x) => **x as u64,
                    FieldMut::U16(x) => **x as u64,
                    FieldMut::U64(x) => **x,
                };
                (v != 0).then(|| format!("{name}={v}"))
            })
            .collect();
        parts.join(",")
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("loss_permille", self.loss_permille),
            ("dup_permille", self.dup_permille),
            ("long_delay_permille", self.long_delay_permille),
            ("crash_in_sync_permille", self.crash_in_sync_permille),
            ("torn_permille", self.torn_permille),
            ("snapshot_crash_permille", self.snapshot_crash_permille),
            ("hostile_permille", self.hostile_permille),
        ] {
            if v > 1000 {
                return Err(format!("{name} is {v}, must be at most 1000"));
            }
        }
        for (name, v) in [
            ("jitter_us", self.jitter_us),
            ("disk_jitter_us", self.disk_jitter_us),
            ("clock_skew_us", self.clock_skew_us),
        ] {
            if v > 10_000_000 {
                return Err(format!("{name} is {v}, must be at most 10 s"));
            }
        }
        if self.clock_drift_ppm > 500_000 {
            return Err(format!(
                "clock_drift_ppm is {}, must be at most 500000",
                self.clock_drift_ppm
            ));
        }
        Ok(())
    }
}

/// A mutable view of one intensity, whatever its width.
enum FieldMut<'a> {
    U8(&'a mut u8),
    U16(&'a mut u16),
    U64(&'a mut u64),
}

/// How many fault kinds there are.
pub const KINDS: usize = 18;

/// One scheduled fault.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    Crash {
        node: NodeId,
    },
    Restart {
        node: NodeId,
    },
    /// Cut every link between `side` (a bitmask of nodes) and the rest.
    Partition {
        side: u16,
    },
    /// Cut the link from `from` to `to` only.
    OneWay {
        from: NodeId,
        to: NodeId,
    },
    /// Remove every partition and cut.
    Heal,
    Slow {
        node: NodeId,
    },
    Fast {
        node: NodeId,
    },
    /// Crash whichever node leads when this fires (log scenarios).
    CrashLeader,
    /// Cut the current leader off from the other replicas (clients still
    /// reach it), until the next heal.
    IsolateLeader,
    /// Restart every crashed node.
    RestartDown,
    /// A stop-the-world pause: the node handles nothing for `us`.
    Pause {
        node: NodeId,
        us: u64,
    },
    /// The node's clock: offset `skew_us` and rate `1 + rate_ppm / 10^6`.
    Clock {
        node: NodeId,
        skew_us: u64,
        rate_ppm: i32,
    },
    /// Flip bit `bit` of a durable record ([`flip_target`]: aimed at the
    /// last or the first record, or any), then crash the node so that
    /// recovery meets it.
    BitFlip {
        node: NodeId,
        record: u32,
        bit: u32,
    },
    /// Crash the node and wipe its disk.
    Wipe {
        node: NodeId,
    },
    /// Ask the leader to add spare machine `node` (it joins as a learner,
    /// and is promoted once it caught up).
    Join {
        node: NodeId,
    },
    /// Ask the leader to remove `node`, a voter or a learner.
    Leave {
        node: NodeId,
    },
    /// Ask the leader to remove itself.
    LeaveLeader,
    /// Ask the leader to replace the voters `old` by the spare machines
    /// `new` (sets of nodes, as bitmasks: one for one, usually; two for
    /// two sometimes, a change of more than one voter at once).
    Replace {
        old: u16,
        new: u16,
    },
}

/// A bit flip's `record` with this bit set is aimed where recovery decides
/// rather than anywhere: at the last durable record (a torn write is
/// dropped, a corrupt one must not be: the difference matters only there),
/// or, with [`AT_HEAD`] set too, at the first (the file's first record: a
/// new replica's `Init`, or the whole state of a compacted or rebuilt
/// file). A random `record` is aimed half the time.
pub const AIMED: u32 = 1 << 31;
/// See [`AIMED`].
pub const AT_HEAD: u32 = 1 << 30;
/// A bit flip's `record` with this bit set hits whoever leads when it
/// comes (none leading: no flip), and the crashed node restarts within
/// 50 ms: a leader's disk lost with its Accepts still in flight, where a
/// rebuild decides which state to take (its fence keeps those Accepts out).
pub const AT_LEADER: u32 = 1 << 29;

/// Where a bit flip lands, as its `record` says.
enum FlipAt {
    Last,
    First,
    /// Any record: `record` modulo their number.
    Any,
}

fn flip_at(record: u32) -> FlipAt {
    match (record & AIMED != 0, record & AT_HEAD != 0) {
        (true, false) => FlipAt::Last,
        (true, true) => FlipAt::First,
        (false, _) => FlipAt::Any,
    }
}

/// The index of the durable record, of `records`, that a bit flip's
/// `record` names.
pub fn flip_target(record: u32, records: usize) -> usize {
    assert!(records > 0, "a flip needs a record");
    match flip_at(record) {
        FlipAt::Last => records - 1,
        FlipAt::First => 0,
        FlipAt::Any => record as usize % records,
    }
}

impl Fault {
    /// What this scheduled fault does to a cluster of `n` machines as it
    /// is now, or `None` if it does not apply. A leader-aimed crash names
    /// the leader; a crash needs a live node, a restart a crashed one,
    /// leader isolation a leader, a membership change a leader to ask. A
    /// disk may be lost (bit flip, wipe) only while fewer than
    /// `(voters - 1) / 2` others are lost, so a majority always keeps its
    /// state (`voters`: the fewest voters a configuration of the run may
    /// have). Every runner (the engine, madsim) asks this.
    pub fn resolve(
        self,
        n: u8,
        voters: u8,
        live: impl Fn(NodeId) -> bool,
        disk_lost: impl Fn(NodeId) -> bool,
        leader: impl Fn() -> Option<NodeId>,
    ) -> Option<Fault> {
        let fault = match self {
            Fault::CrashLeader => Fault::Crash { node: leader()? },
            Fault::BitFlip { record, bit, .. } if record & AT_LEADER != 0 => Fault::BitFlip {
                node: leader()?,
                record,
                bit,
            },
            f => f,
        };
        let applies = match fault {
            Fault::Crash { node } => live(node),
            Fault::Restart { node } => !live(node),
            Fault::BitFlip { node, .. } | Fault::Wipe { node } => {
                let f = (voters as usize - 1) / 2;
                !disk_lost(node) && (0..n).filter(|&i| disk_lost(i)).count() < f
            }
            Fault::IsolateLeader => leader().is_some(),
            // An operator asks the leader: none, no one to ask.
            Fault::Join { .. } | Fault::Leave { .. } | Fault::Replace { .. } => leader().is_some(),
            _ => true,
        };
        let fault = match fault {
            Fault::LeaveLeader => Fault::Leave { node: leader()? },
            f => f,
        };
        applies.then_some(fault)
    }

    /// A stable small index per kind, for counting.
    pub fn kind_index(&self) -> usize {
        match self {
            Fault::Crash { .. } => 0,
            Fault::Restart { .. } => 1,
            Fault::Partition { .. } => 2,
            Fault::OneWay { .. } => 3,
            Fault::Heal => 4,
            Fault::Slow { .. } => 5,
            Fault::Fast { .. } => 6,
            Fault::CrashLeader => 7,
            Fault::IsolateLeader => 8,
            Fault::RestartDown => 9,
            Fault::Pause { .. } => 10,
            Fault::Clock { .. } => 11,
            Fault::BitFlip { .. } => 12,
            Fault::Wipe { .. } => 13,
            Fault::Join { .. } => 14,
            Fault::Leave { .. } => 15,
            Fault::LeaveLeader => 16,
            Fault::Replace { .. } => 17,
        }
    }

    pub const KIND_NAMES: [&'static str; KINDS] = [
        "crash",
        "restart",
        "partition",
        "one-way cut",
        "heal",
        "slow node",
        "slow node ends",
        "leader crash",
        "leader isolation",
        "restart of crashed nodes",
        "process pause",
        "clock skew/drift",
        "bit flip",
        "disk wipe",
        "member added",
        "member removed",
        "leader removed",
        "member replaced",
    ];

    /// Whether a protocol with `caps` faces this kind.
    pub fn supported(&self, caps: &Caps) -> bool {
        Fault::kind_supported(self.kind_index(), caps)
    }

    /// Whether a protocol with `caps` can meet this kind (for counting).
    pub fn kind_supported(kind: usize, caps: &Caps) -> bool {
        match kind {
            7..=9 => caps.leader,
            10 => caps.pauses,
            11 => caps.clocks,
            12 | 13 => caps.disk_loss,
            14..=17 => caps.membership,
            _ => true,
        }
    }

    fn nodes(&self) -> impl Iterator<Item = NodeId> {
        let sets = match *self {
            Fault::Replace { old, new } => old | new,
            _ => 0,
        };
        let set = (0..16).filter(move |i| sets & (1 << i) != 0);
        let (a, b) = match *self {
            Fault::Crash { node }
            | Fault::Restart { node }
            | Fault::Slow { node }
            | Fault::Fast { node }
            | Fault::Pause { node, .. }
            | Fault::Clock { node, .. }
            | Fault::BitFlip { node, .. }
            | Fault::Wipe { node }
            | Fault::Join { node }
            | Fault::Leave { node } => (Some(node), None),
            Fault::OneWay { from, to } => (Some(from), Some(to)),
            Fault::Replace { .. } => (None, None),
            Fault::Partition { .. }
            | Fault::Heal
            | Fault::CrashLeader
            | Fault::IsolateLeader
            | Fault::LeaveLeader
            | Fault::RestartDown => (None, None),
        };
        a.into_iter().chain(b).chain(set)
    }
}

/// A fault at a simulated time.
// No `deny_unknown_fields` here: serde cannot combine it with `flatten`; the
// flattened `Fault` still rejects fields it does not know.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Timed {
    pub at_us: u64,
    #[serde(flatten)]
    pub fault: Fault,
}

/// The scheduled faults of a run, in time order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub faults: Vec<Timed>,
}

impl Schedule {
    /// Draws the schedule for a run: `faults` episodes spread over the fault
    /// phase, each one a fault and (usually) its repair.
    pub fn generate(rng: &mut ChaCha8Rng, n: u8, faults: &Faults, fault_phase_us: u64) -> Schedule {
        Schedule::generate_with(rng, n, n, faults, fault_phase_us)
    }

    /// [`Schedule::generate`] for `machines`, of which the first `voters`
    /// are the first configuration and the rest spares: membership
    /// episodes add spares and remove or replace anyone. Without membership
    /// episodes the other faults hit the first voters only (the spares stay
    /// idle); with them, any machine.
    pub fn generate_with(
        rng: &mut ChaCha8Rng,
        machines: u8,
        voters: u8,
        faults: &Faults,
        fault_phase_us: u64,
    ) -> Schedule {
        assert!(voters >= 1 && voters <= machines);
        let n = if faults.members > 0 { machines } else { voters };
        let mut out = Vec::new();
        let t = fault_phase_us.max(1);
        let mut episode = |rng: &mut ChaCha8Rng, start: Fault, end: Option<Fault>| {
            let at_leader =
                matches!(start, Fault::BitFlip { record, .. } if record & AT_LEADER != 0);
            // Half the faults land in the first sixteenth of the phase, where
            // the proposers are busy; the rest anywhere in it. (Not faults
            // aimed at the leader: there is none that early.)
            let early = !matches!(
                start,
                Fault::CrashLeader
                    | Fault::IsolateLeader
                    | Fault::Join { .. }
                    | Fault::Leave { .. }
                    | Fault::LeaveLeader
                    | Fault::Replace { .. }
            ) && !at_leader;
            let window = if early && rng.gen_bool(0.5) {
                (t / 16).max(1)
            } else {
                t
            };
            let at = rng.gen_range(0..window);
            out.push(Timed {
                at_us: at,
                fault: start,
            });
            if let Some(end) = end {
                // Most repairs come within the phase; the rest wait for the quiet period.
                let dur = rng.gen_range(1..=t / 2 + 1);
                // A leader's lost disk comes back at once (see AT_LEADER).
                let dur = if at_leader { 1 + dur % 50_000 } else { dur };
                if at + dur < t {
                    out.push(Timed {
                        at_us: at + dur,
                        fault: end,
                    });
                }
            }
        };
        for _ in 0..faults.crashes {
            let node = rng.gen_range(0..n);
            episode(rng, Fault::Crash { node }, Some(Fault::Restart { node }));
        }
        for _ in 0..faults.partitions {
            let fault = match rng.gen_range(0..3) {
                0 => {
                    // Random halves: every node on a side by a coin flip.
                    let all = (1u16 << n) - 1;
                    Fault::Partition {
                        side: rng.gen_range(1..all),
                    }
                }
                1 => Fault::Partition {
                    side: 1 << rng.gen_range(0..n),
                },
                _ => {
                    let from = rng.gen_range(0..n);
                    let to = (from + rng.gen_range(1..n)) % n;
                    Fault::OneWay { from, to }
                }
            };
            episode(rng, fault, Some(Fault::Heal));
        }
        for _ in 0..faults.slow_nodes {
            let node = rng.gen_range(0..n);
            episode(rng, Fault::Slow { node }, Some(Fault::Fast { node }));
        }
        // The log scenarios' kinds (all zero in `basic`, which draws nothing more).
        for _ in 0..faults.leader_faults {
            if rng.gen_bool(0.5) {
                episode(rng, Fault::CrashLeader, Some(Fault::RestartDown));
            } else {
                episode(rng, Fault::IsolateLeader, Some(Fault::Heal));
            }
        }
        for _ in 0..faults.pauses {
            let node = rng.gen_range(0..n);
            let us = rng.gen_range(1_000..=400_000);
            episode(rng, Fault::Pause { node, us }, None);
        }
        for _ in 0..faults.bit_flips {
            let node = rng.gen_range(0..n);
            let (record, bit) = (rng.gen(), rng.gen());
            // Aimed at the leader, the node is known only when the flip
            // comes: every node down is restarted.
            let end = match record & AT_LEADER != 0 {
                true => Fault::RestartDown,
                false => Fault::Restart { node },
            };
            episode(rng, Fault::BitFlip { node, record, bit }, Some(end));
        }
        for _ in 0..faults.wipes {
            let node = rng.gen_range(0..n);
            episode(rng, Fault::Wipe { node }, Some(Fault::Restart { node }));
        }
        // Drawn after every other kind, so a seed's other faults stay as
        // they were with membership off.
        for _ in 0..faults.members {
            let spare = |rng: &mut ChaCha8Rng| rng.gen_range(voters..machines);
            let fault = match rng.gen_range(0..4) {
                0 if machines > voters => Fault::Join { node: spare(rng) },
                2 => Fault::LeaveLeader,
                3 if machines > voters => {
                    // One for one; with two spares, two for two a third of
                    // the time (a change of two voters at once).
                    let two = machines - voters >= 2 && rng.gen_bool(1.0 / 3.0);
                    let pick = |rng: &mut ChaCha8Rng, from: u8, k: usize| {
                        let mut set = 0u16;
                        while (set.count_ones() as usize) < k {
                            set |= 1 << rng.gen_range(from..machines);
                        }
                        set
                    };
                    let k = if two { 2 } else { 1 };
                    let old = pick(rng, 0, k);
                    let new = pick(rng, voters, k);
                    Fault::Replace { old, new }
                }
                _ => Fault::Leave {
                    node: rng.gen_range(0..machines),
                },
            };
            episode(rng, fault, None);
        }
        if faults.clock_drift_ppm > 0 || faults.clock_skew_us > 0 {
            let d = faults.clock_drift_ppm as i64;
            for node in 0..n {
                // Half the clocks sit at the edge of the bound: the worst
                // relative drift is what leases must survive.
                let rate_ppm = if rng.gen_bool(0.5) {
                    if rng.gen_bool(0.5) {
                        d
                    } else {
                        -d
                    }
                } else {
                    rng.gen_range(-d..=d)
                } as i32;
                let skew_us = rng.gen_range(0..=faults.clock_skew_us);
                out.push(Timed {
                    at_us: 0,
                    fault: Fault::Clock {
                        node,
                        skew_us,
                        rate_ppm,
                    },
                });
            }
        }
        out.sort_by_key(|f| f.at_us); // Stable: ties keep generation order.
        Schedule { faults: out }
    }

    /// Whether any fault asks for a membership change (then a run may pass
    /// through configurations of fewer voters than its first).
    pub fn changes_membership(&self) -> bool {
        self.faults
            .iter()
            .any(|t| (14..=17).contains(&t.fault.kind_index()))
    }

    /// Checks the schedule fits a cluster of `n` nodes.
    pub fn validate(&self, n: u8) -> Result<(), String> {
        for (i, f) in self.faults.iter().enumerate() {
            if let Some(bad) = f.fault.nodes().find(|&x| x >= n) {
                return Err(format!(
                    "fault #{i} names node {bad}, but the cluster has {n} nodes"
                ));
            }
            if let Fault::Partition { side } = f.fault {
                if side == 0 || side >= (1 << n) - 1 {
                    return Err(format!(
                        "fault #{i}: partition side {side:#b} is not a proper subset of {n} nodes"
                    ));
                }
            }
            if let Fault::OneWay { from, to } = f.fault {
                if from == to {
                    return Err(format!("fault #{i}: a one-way cut from n{from} to itself"));
                }
            }
            if let Fault::Clock { rate_ppm, .. } = f.fault {
                if !(-500_000..=500_000).contains(&rate_ppm) {
                    return Err(format!(
                        "fault #{i}: clock rate {rate_ppm} ppm is outside ±500000"
                    ));
                }
            }
            if let Fault::Pause { us, .. } = f.fault {
                if us > 60_000_000 {
                    return Err(format!("fault #{i}: a pause of {us} us exceeds 60 s"));
                }
            }
            if i > 0 && self.faults[i - 1].at_us > f.at_us {
                return Err(format!("fault #{i} is out of time order"));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Fault::Crash { node } => write!(f, "crash n{node}"),
            Fault::Restart { node } => write!(f, "restart n{node}"),
            Fault::Partition { side } => {
                let ids: Vec<String> = (0..16)
                    .filter(|i| side & (1 << i) != 0)
                    .map(|i| format!("n{i}"))
                    .collect();
                write!(f, "partition {{{}}} | rest", ids.join(","))
            }
            Fault::OneWay { from, to } => write!(f, "cut n{from} -> n{to}"),
            Fault::Heal => write!(f, "heal network"),
            Fault::Slow { node } => write!(f, "slow n{node}"),
            Fault::Fast { node } => write!(f, "n{node} no longer slow"),
            Fault::CrashLeader => write!(f, "crash the leader"),
            Fault::IsolateLeader => write!(f, "isolate the leader"),
            Fault::RestartDown => write!(f, "restart crashed nodes"),
            Fault::Pause { node, us } => write!(f, "pause n{node} for {us} us"),
            Fault::Clock {
                node,
                skew_us,
                rate_ppm,
            } => write!(f, "clock n{node}: +{skew_us} us, {rate_ppm:+} ppm"),
            Fault::BitFlip { node, record, bit } => {
                let which = match flip_at(record) {
                    FlipAt::Last => "the last record".to_string(),
                    FlipAt::First => "the first record".to_string(),
                    FlipAt::Any => format!("record {}", record & !AT_LEADER),
                };
                let whom = match record & AT_LEADER != 0 {
                    true => "the leader".to_string(),
                    false => format!("n{node}"),
                };
                write!(f, "flip bit {bit} of {which} on {whom}, crash it")
            }
            Fault::Wipe { node } => write!(f, "crash n{node} and wipe its disk"),
            Fault::Join { node } => write!(f, "ask the leader to add n{node}"),
            Fault::Leave { node } => write!(f, "ask the leader to remove n{node}"),
            Fault::LeaveLeader => write!(f, "ask the leader to remove itself"),
            Fault::Replace { old, new } => {
                let set = |s: u16| {
                    let ids: Vec<String> = (0..16)
                        .filter(|i| s & (1 << i) != 0)
                        .map(|i| format!("n{i}"))
                        .collect();
                    ids.join(",")
                };
                write!(f, "ask the leader to replace {} by {}", set(old), set(new))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    #[test]
    fn schedules_are_a_function_of_the_seed() {
        let a = Schedule::generate(&mut rng(5), 5, &Faults::ALL, 1_000_000);
        let b = Schedule::generate(&mut rng(5), 5, &Faults::ALL, 1_000_000);
        let c = Schedule::generate(&mut rng(6), 5, &Faults::ALL, 1_000_000);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn generated_schedules_are_valid_ordered_and_inside_the_fault_phase() {
        for seed in 0..500 {
            for n in 3..=9 {
                let s = Schedule::generate(&mut rng(seed), n, &Faults::ALL, 1_000_000);
                s.validate(n).unwrap();
                assert!(s.faults.iter().all(|f| f.at_us < 1_000_000));
                let crashes = s
                    .faults
                    .iter()
                    .filter(|f| matches!(f.fault, Fault::Crash { .. }))
                    .count();
                assert_eq!(crashes, Faults::ALL.crashes as usize);
            }
        }
    }

    #[test]
    fn no_faults_means_an_empty_schedule() {
        let s = Schedule::generate(&mut rng(1), 5, &Faults::NONE, 1_000_000);
        assert!(s.faults.is_empty());
    }

    #[test]
    fn swarm_draws_calm_and_hostile_settings() {
        let draws: Vec<Faults> = (0..200)
            .map(|s| Faults::draw(&mut rng(s), &Caps::default()))
            .collect();
        assert!(draws.iter().all(|f| f.validate().is_ok()));
        assert!(draws.iter().any(|f| f.loss_permille == 0));
        assert!(draws.iter().any(|f| f.loss_permille > 0));
        assert!(draws.iter().any(|f| f.crashes == 0 && f.partitions == 0));
        assert!(draws
            .iter()
            .any(|f| f.crashes > 0 && f.partitions > 0 && f.dup_permille > 0));
    }

    #[test]
    fn fault_specs_round_trip_and_bad_ones_say_what_is_wrong() {
        for f in [Faults::NONE, Faults::ALL] {
            assert_eq!(Faults::parse(&f.spec()).unwrap(), f);
        }
        for seed in 0..100 {
            let f = Faults::draw(&mut rng(seed), &Caps::default());
            assert_eq!(Faults::parse(&f.spec()).unwrap(), f, "{}", f.spec());
        }
        assert_eq!(Faults::parse("all").unwrap(), Faults::ALL);
        assert_eq!(
            Faults::parse("crashes=5").unwrap(),
            Faults {
                crashes: 5,
                ..Faults::NONE
            }
        );
        for (spec, says) in [
            ("crashes", "not name=value"),
            ("bogus=1", "unknown fault 'bogus'"),
            ("crashes=many", "'many' is not a valid number"),
            ("crashes=300", "not a valid number"),
            ("loss_permille=2000", "must be at most 1000"),
        ] {
            let err = Faults::parse(spec).unwrap_err();
            assert!(err.contains(says), "{spec}: {err}");
        }
    }

    #[test]
    fn invalid_schedules_say_what_is_wrong() {
        let at = |at_us, fault| Timed { at_us, fault };
        let bad = [
            (vec![at(0, Fault::Crash { node: 5 })], "names node 5"),
            (
                vec![at(0, Fault::Partition { side: 0 })],
                "not a proper subset",
            ),
            (
                vec![at(0, Fault::Partition { side: 0b11111 })],
                "not a proper subset",
            ),
            (vec![at(0, Fault::OneWay { from: 1, to: 1 })], "to itself"),
            (
                vec![at(5, Fault::Heal), at(1, Fault::Heal)],
                "out of time order",
            ),
        ];
        for (faults, says) in bad {
            let err = Schedule { faults }.validate(5).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
        let err = Faults {
            loss_permille: 1001,
            ..Faults::NONE
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("loss_permille"), "{err}");
    }

    #[test]
    fn a_protocol_is_offered_only_the_kinds_it_faces() {
        let basic = Caps::default();
        let log = Caps {
            leader: true,
            clocks: true,
            pauses: true,
            disk_loss: true,
            drift_bound_ppm: Some(10_000),
            hostile: true,
            membership: true,
        };
        assert_eq!(Faults::ALL.unsupported(&basic), None);
        let no_spares = Caps {
            membership: false,
            ..log
        };
        assert_eq!(Faults::ALL_LOG.unsupported(&no_spares), Some("members"));
        assert!(Fault::LeaveLeader.supported(&log));
        assert!(!Fault::Join { node: 5 }.supported(&no_spares));
        assert_eq!(Faults::ALL_LOG.unsupported(&basic), Some("leader_faults"));
        let wipes = Faults {
            wipes: 1,
            ..Faults::NONE
        };
        assert_eq!(wipes.unsupported(&basic), Some("wipes"));
        assert_eq!(Faults::ALL_LOG.unsupported(&log), None);
        assert_eq!(Faults::ALL_LOG.only(&basic), Faults::ALL);
        assert_eq!(Faults::ALL_LOG.only(&log).clock_drift_ppm, 10_000);
        assert!(Fault::Wipe { node: 0 }.supported(&log));
        assert!(!Fault::Wipe { node: 0 }.supported(&basic));
        assert!(Fault::Heal.supported(&basic));
    }
}
