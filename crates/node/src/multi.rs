//! The Multi-Paxos log on madsim: the same sans-IO core the `multi` scenario
//! runs, bound to madsim's endpoints, timers and kill/restart, and checked by
//! the same [`LogObserver`].
//!
//! The state machine is small on purpose: per client the highest sequence
//! number executed (the dedup table) and a fingerprint of every executed
//! command in log order, so replicas that agree on the log agree on it, and a
//! snapshot carries the dedup table. Clients submit numbered commands one at a
//! time to the replica they believe leads, follow redirects, and retry on a
//! timeout; the leader answers once a command executes.
//!
//! The nemesis kills and restarts replicas (the leader half the time) and
//! isolates them with madsim's `clog_node`. A kill is a power loss: a seeded
//! prefix of the unsynced writes reaches the disk, the next may be torn, the
//! rest are lost. With `wipes`, a restarted replica may find its disk wiped
//! (one at a time, so a majority keeps its state) and must rebuild from its
//! peers before it votes.

use crate::sim::{addr, assert_failed, deliver_within, ip, now_us, PORT, TAG};
use checkers::log::LogObserver;
use checkers::{Invariant, Violation};
use madsim::net::{Endpoint, NetSim};
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, Runtime};
use madsim::time::{sleep, timeout, Duration};
use multipaxos::storage::{load, Loaded, Sealed};
use multipaxos::{Bugs, Config, Entry, Input, Msg, Node, NodeId, Output, Slot, Snap, Timing};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

/// A client command: (client, sequence number).
pub type Cmd = (u32, u64);

/// The replicated state machine (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Machine {
    /// client -> highest sequence number executed: the dedup table.
    done: BTreeMap<u32, u64>,
    /// A fingerprint of the executed commands, in order.
    digest: u64,
}

type LogNode = Node<Cmd, Machine>;
type LogMsg = Msg<Cmd, Machine>;
type LogOutput = Output<Cmd, Machine>;
type Record = Sealed<Cmd, Machine>;

/// A replica offers the driver a snapshot every this many applied slots.
const SNAPSHOT_EVERY: Slot = 16;

enum Wire {
    Peer {
        from: NodeId,
        msg: LogMsg,
    },
    Submit(Cmd),
    /// To a client: the command executed.
    Done(Cmd),
    /// To a client: this replica does not lead; try the one named, if any.
    Redirect(Option<NodeId>),
}

fn fingerprint<T: Hash>(t: &T) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    t.hash(&mut h);
    h.finish()
}

fn client_addr(c: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, c as u8 + 1)), PORT)
}

/// A replica's disk: sealed records, and writes issued but not yet synced.
/// It outlives the replica's process.
#[derive(Debug)]
struct Disk {
    records: Vec<Record>,
    unsynced: Vec<(u64, Record)>,
}

impl Disk {
    fn initialized() -> Disk {
        Disk {
            records: vec![Record::seal(multipaxos::Write::Init)],
            unsynced: Vec::new(),
        }
    }

    /// Power fails: a seeded prefix of the unsynced writes made it, the next
    /// one may be torn, the rest are lost.
    fn power_loss(&mut self) {
        let pending = std::mem::take(&mut self.unsynced);
        let k = thread_rng().gen_range(0..=pending.len());
        let mut pending = pending.into_iter();
        self.records
            .extend(pending.by_ref().take(k).map(|(_, r)| r));
        if let Some((_, mut torn)) = pending.next() {
            if thread_rng().gen_bool(0.5) {
                torn.torn = true;
                self.records.push(torn);
            }
        }
    }
}

/// What one replica's state machine looks like to the world.
#[derive(Clone, Debug, Default)]
struct Status {
    next: Slot,
    digest: u64,
    rebuilding: bool,
}

#[derive(Copy, Clone, Debug, Hash)]
enum Fault {
    Isolate,
    Heal,
    Crash,
    Wipe,
}

/// What every task reports to (madsim runs every task on one thread).
struct World {
    obs: LogObserver,
    violation: Option<Violation>,
    submitted: BTreeSet<Cmd>,
    /// Per client, the highest sequence number acknowledged.
    acked: Vec<u64>,
    status: Vec<Status>,
    leader: Option<NodeId>,
    hash: u64,
    messages: u64,
    coverage: Coverage,
}

/// How much of the fault space a run reached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    pub crashes: u32,
    pub isolations: u32,
    pub wipes: u32,
    /// Rebuilding replicas that got their state back.
    pub rebuilds: u32,
    /// Snapshots written, and installed (at boot or sent by a peer).
    pub snapshots: u32,
    pub installs: u32,
}

impl World {
    fn note(&mut self, node: NodeId, what: impl Hash) {
        self.hash = fingerprint(&(self.hash, now_us(), node, what));
    }

    /// The nemesis struck replica `id`.
    fn fault(&mut self, id: NodeId, f: Fault) {
        self.note(id, f);
        let c = &mut self.coverage;
        match f {
            Fault::Isolate => c.isolations += 1,
            Fault::Crash => c.crashes += 1,
            Fault::Wipe => c.wipes += 1,
            Fault::Heal => {}
        }
    }

    fn check(&mut self, r: Result<(), Violation>) {
        if let (Err(v), None) = (r, &self.violation) {
            self.violation = Some(v);
        }
    }
}

type Shared<T> = Arc<Mutex<T>>;

#[derive(Clone, Debug)]
struct Setup {
    cfg: Config,
    disk_us: (u64, u64),
}

/// One incarnation of a replica: the core, its state machine and its wiring.
struct Replica {
    setup: Setup,
    id: NodeId,
    node: LogNode,
    machine: Machine,
    /// The next slot the state machine applies.
    next: Slot,
    ep: Arc<Endpoint>,
    tx: async_channel::Sender<Input<Cmd, Machine>>,
    disk: Shared<Disk>,
    world: Shared<World>,
}

fn send(ep: &Arc<Endpoint>, to: SocketAddr, wire: Wire) {
    // Its own task, as in the Basic Paxos binding: madsim spends simulated
    // time inside every send.
    let ep = ep.clone();
    madsim::task::spawn(async move {
        let _ = ep.send_to_raw(to, TAG, Box::new(wire)).await;
    });
}

impl Replica {
    fn execute(&mut self, o: LogOutput) {
        let id = self.id;
        match o {
            Output::Send { to, msg, .. } => {
                let mut w = self.world.lock().unwrap();
                let r = match &msg {
                    Msg::Promise { ballot, .. } => w.obs.on_promise(now_us(), id, *ballot),
                    Msg::Accepted { ballot, slot } => {
                        w.obs.on_accepted(now_us(), id, *ballot, *slot)
                    }
                    _ => Ok(()),
                };
                w.check(r);
                w.messages += 1;
                w.note(id, ("send", to, format!("{msg:?}")));
                drop(w);
                send(&self.ep, addr(to), Wire::Peer { from: id, msg });
            }
            Output::Persist { seq, write } => {
                if let multipaxos::Write::Accept {
                    slot,
                    ballot,
                    entry,
                } = &write
                {
                    let mut w = self.world.lock().unwrap();
                    w.obs
                        .on_accept_write(id, *ballot, *slot, fingerprint(entry));
                }
                let mut d = self.disk.lock().unwrap();
                assert!(d.unsynced.last().is_none_or(|(s, _)| *s < seq));
                if matches!(write, multipaxos::Write::Snapshot(_)) {
                    self.world.lock().unwrap().coverage.snapshots += 1;
                }
                d.unsynced.push((seq, Record::seal(write)));
            }
            Output::Sync { upto } => {
                let (lo, hi) = self.setup.disk_us;
                deliver_within(&self.tx, lo..=hi, Input::Synced { upto })
            }
            Output::SetTimer {
                timer,
                delay_us,
                jitter_us,
            } => deliver_within(
                &self.tx,
                delay_us..=delay_us + jitter_us,
                Input::Timer(timer),
            ),
            Output::Apply { slot, entry } => self.apply(slot, entry),
            Output::Install { snap } => {
                self.machine = snap.state;
                self.next = snap.upto;
                let mut w = self.world.lock().unwrap();
                w.obs.on_install(id, snap.upto);
                w.coverage.installs += 1;
                w.note(id, ("install", snap.upto));
                w.status[id as usize].next = self.next;
                w.status[id as usize].digest = self.machine.digest;
            }
            Output::Elected { ballot } => {
                let mut w = self.world.lock().unwrap();
                w.leader = Some(id);
                w.note(id, ("elected", ballot));
                let r = w.obs.on_elected(now_us(), id, ballot);
                w.check(r);
            }
            Output::NotLeader { cmd, leader } => {
                send(&self.ep, client_addr(cmd.0), Wire::Redirect(leader));
            }
            // Load shedding: no answer; the client times out and retries.
            Output::Busy { .. } => {}
            Output::Rebuilt => {
                let mut w = self.world.lock().unwrap();
                w.status[id as usize].rebuilding = false;
                w.coverage.rebuilds += 1;
                w.note(id, "rebuilt");
            }
        }
    }

    fn apply(&mut self, slot: Slot, entry: Entry<Cmd>) {
        let (id, now) = (self.id, now_us());
        assert_eq!(slot, self.next, "the core applies slots in order");
        let mut w = self.world.lock().unwrap();
        let submitted = match &entry {
            Entry::Noop => true,
            Entry::Cmds(cmds) => cmds.iter().all(|c| w.submitted.contains(c)),
        };
        let r = w
            .obs
            .on_apply(now, id, slot, fingerprint(&entry), submitted);
        w.check(r);
        w.note(id, ("apply", slot, fingerprint(&entry)));
        if let Entry::Cmds(cmds) = entry {
            for &(client, seq) in cmds.iter() {
                let done = self.machine.done.entry(client).or_default();
                if *done < seq {
                    *done = seq;
                    self.machine.digest = fingerprint(&(self.machine.digest, client, seq));
                    let r = w.obs.on_executed(now, id, client, seq, slot);
                    w.check(r);
                }
                if self.node.is_leader() {
                    send(&self.ep, client_addr(client), Wire::Done((client, seq)));
                }
            }
        }
        self.next = slot + 1;
        w.status[id as usize].next = self.next;
        w.status[id as usize].digest = self.machine.digest;
    }

    /// Handles one input; `false` if a core assertion failed (recorded as a
    /// violation) and this incarnation must stop.
    fn step(&mut self, input: Option<Input<Cmd, Machine>>) -> bool {
        let mut out = Vec::new();
        let now = now_us();
        let step = catch_unwind(AssertUnwindSafe(|| match input {
            Some(input) => self.node.handle(now, input, &mut out),
            None => self.node.start(now, &mut out),
        }));
        if let Err(panic) = step {
            self.world
                .lock()
                .unwrap()
                .check(Err(assert_failed(self.id, panic)));
            return false;
        }
        for o in out {
            self.execute(o);
        }
        true
    }

    /// Offers the core a snapshot once enough slots were applied past the
    /// last one.
    fn maybe_snapshot(&mut self) -> bool {
        if self.node.is_rebuilding() || self.next < self.node.base() + SNAPSHOT_EVERY {
            return true;
        }
        assert_eq!(self.next, self.node.applied());
        let mut state = self.machine.clone();
        if self.setup.cfg.bugs.snapshot_without_dedup {
            state.done.clear(); // BUG (canary 7)
        }
        let snap = Snap {
            upto: self.next,
            state,
        };
        self.step(Some(Input::Snapshot(snap)))
    }

    fn synced(&self, upto: u64) {
        let mut d = self.disk.lock().unwrap();
        let k = d.unsynced.iter().take_while(|(s, _)| *s <= upto).count();
        let done: Vec<Record> = d.unsynced.drain(..k).map(|(_, r)| r).collect();
        d.records.extend(done);
    }
}

/// One incarnation of replica `id`: boots from its disk and runs until killed.
async fn run_replica(setup: Setup, disk: Shared<Disk>, world: Shared<World>) {
    let id = setup.cfg.id;
    let now = now_us();
    let node = {
        let mut d = disk.lock().unwrap();
        assert!(d.unsynced.is_empty(), "a kill settles unsynced writes");
        let mut w = world.lock().unwrap();
        let node = match load(&d.records) {
            Loaded::Ok { state, torn } => {
                // Recovery drops a torn tail, as a WAL truncates it.
                let keep = d.records.len() - torn;
                d.records.truncate(keep);
                LogNode::recover(setup.cfg, state, now)
            }
            Loaded::Wiped | Loaded::Corrupt { .. } => {
                d.records.clear();
                w.obs.on_disk_lost(id);
                w.note(id, "rebuilding");
                LogNode::rebuild(setup.cfg, now)
            }
        };
        w.obs.on_restart(id);
        w.status[id as usize] = Status {
            rebuilding: node.is_rebuilding(),
            ..Status::default()
        };
        node
    };
    let ep = Arc::new(Endpoint::bind(addr(id)).await.expect("bind"));
    let (tx, rx) = async_channel::unbounded();
    let (ep2, tx2) = (ep.clone(), tx.clone());
    madsim::task::spawn(async move {
        while let Ok((payload, _)) = ep2.recv_from_raw(TAG).await {
            let input = match *payload.downcast::<Wire>().expect("only Wire travels") {
                Wire::Peer { from, msg } => Input::Receive { from, msg },
                Wire::Submit(cmd) => Input::Submit(cmd),
                Wire::Done(_) | Wire::Redirect(_) => continue,
            };
            if tx2.send(input).await.is_err() {
                return;
            }
        }
    });
    let mut r = Replica {
        setup,
        id,
        node,
        machine: Machine::default(),
        next: 0,
        ep,
        tx,
        disk,
        world,
    };
    if !r.step(None) {
        return;
    }
    loop {
        if !r.maybe_snapshot() {
            return;
        }
        let Ok(input) = rx.recv().await else { return };
        if let Input::Synced { upto } = input {
            r.synced(upto);
        }
        if !r.step(Some(input)) {
            return;
        }
    }
}

/// One client: submits commands 1..=ops one at a time, following redirects
/// and retrying elsewhere on a timeout, until each is acknowledged.
async fn run_client(c: u32, ops: u64, n: u8, world: Shared<World>) {
    let ep = Endpoint::bind(client_addr(c)).await.expect("client bind");
    let mut target: NodeId = thread_rng().gen_range(0..n);
    for seq in 1..=ops {
        world.lock().unwrap().submitted.insert((c, seq));
        'attempt: loop {
            let _ = ep
                .send_to_raw(addr(target), TAG, Box::new(Wire::Submit((c, seq))))
                .await;
            let deadline = now_us() + 300_000;
            // Wait for this attempt's answer, skipping late answers to
            // earlier ones.
            while let Some(left) = deadline.checked_sub(now_us()).filter(|l| *l > 0) {
                let Ok(Ok((payload, _))) =
                    timeout(Duration::from_micros(left), ep.recv_from_raw(TAG)).await
                else {
                    break;
                };
                match *payload.downcast::<Wire>().expect("only Wire travels") {
                    Wire::Done((_, s)) if s == seq => break 'attempt,
                    Wire::Redirect(Some(l)) if l != target => {
                        target = l;
                        continue 'attempt;
                    }
                    Wire::Redirect(_) => {
                        // No leader known there yet: give an election time.
                        sleep(Duration::from_millis(50)).await;
                        break;
                    }
                    _ => {}
                }
            }
            target = (target + 1) % n;
        }
        world.lock().unwrap().acked[c as usize] = seq;
    }
}

/// Settings of a madsim run of the replicated log.
#[derive(Clone, Debug)]
pub struct MultiRun {
    pub seed: u64,
    pub replicas: u8,
    pub clients: u32,
    pub ops_per_client: u64,
    /// At most this many nemesis episodes (a seeded number from 1), each a
    /// kill/restart or an isolation; 0 for none.
    pub episodes: u32,
    /// A restarted replica may find its disk wiped.
    pub wipes: bool,
    /// madsim's own packet loss rate.
    pub loss: f64,
    pub bugs: Bugs,
}

impl MultiRun {
    pub fn new(seed: u64) -> MultiRun {
        MultiRun {
            seed,
            replicas: 5,
            clients: 3,
            ops_per_client: 20,
            episodes: 0,
            wipes: false,
            loss: 0.0,
            bugs: Bugs::default(),
        }
    }
}

/// The result of one madsim run of the log.
#[derive(Clone, Debug)]
pub struct MultiOutcome {
    pub violation: Option<Violation>,
    /// Slots every replica applied (when they converged).
    pub applied: Slot,
    pub elections: u64,
    pub trace_hash: u64,
    pub messages: u64,
    pub coverage: Coverage,
}

/// Runs the log on madsim until every client's commands are acknowledged
/// and the replicas converge, or 60 simulated seconds pass (an L2
/// violation).
pub fn run_multi(run: &MultiRun) -> MultiOutcome {
    let mut config = madsim::Config::default();
    config.net.packet_loss_rate = run.loss;
    config.net.send_latency = Duration::from_micros(200)..Duration::from_millis(5);
    let rt = Runtime::with_seed_and_config(run.seed, config);
    let n = run.replicas;
    let world = Arc::new(Mutex::new(World {
        obs: LogObserver::new(n as usize),
        violation: None,
        submitted: BTreeSet::new(),
        acked: vec![0; run.clients as usize],
        status: vec![Status::default(); n as usize],
        leader: None,
        hash: 0,
        messages: 0,
        coverage: Coverage::default(),
    }));
    let (w, run) = (world.clone(), run.clone());
    rt.block_on(async move {
        let handle = Handle::current();
        let disks: Vec<Shared<Disk>> = (0..n)
            .map(|_| Arc::new(Mutex::new(Disk::initialized())))
            .collect();
        let mut nodes = Vec::new();
        for id in 0..n {
            let setup = Setup {
                cfg: Config {
                    n,
                    id,
                    timing: Timing::default(),
                    window: 4,
                    batch: 8,
                    bugs: run.bugs,
                },
                disk_us: (1_000, 3_000),
            };
            let (disk, world) = (disks[id as usize].clone(), w.clone());
            nodes.push(
                handle
                    .create_node()
                    .name(format!("n{id}"))
                    .ip(ip(id))
                    .init(move || run_replica(setup.clone(), disk.clone(), world.clone()))
                    .build(),
            );
        }
        for c in 0..run.clients {
            let world = w.clone();
            let ops = run.ops_per_client;
            handle
                .create_node()
                .name(format!("c{c}"))
                .ip(client_addr(c).ip())
                .build()
                .spawn(run_client(c, ops, n, world));
        }
        if run.episodes > 0 {
            // The nemesis: a few episodes, each aimed at the leader half the
            // time; a wiped disk only while no other replica is rebuilding.
            for _ in 0..thread_rng().gen_range(1..=run.episodes) {
                sleep(Duration::from_micros(thread_rng().gen_range(0..300_000))).await;
                let leader = w.lock().unwrap().leader;
                let id = match leader {
                    Some(l) if thread_rng().gen_bool(0.5) => l,
                    _ => thread_rng().gen_range(0..n),
                };
                let down = Duration::from_micros(thread_rng().gen_range(1_000..500_000));
                let node = nodes[id as usize].id();
                if thread_rng().gen_bool(0.5) {
                    NetSim::current().clog_node(node);
                    w.lock().unwrap().fault(id, Fault::Isolate);
                    sleep(down).await;
                    NetSim::current().unclog_node(node);
                    w.lock().unwrap().fault(id, Fault::Heal);
                    continue;
                }
                handle.kill(node);
                disks[id as usize].lock().unwrap().power_loss();
                w.lock().unwrap().fault(id, Fault::Crash);
                sleep(down).await;
                let nobody_rebuilding = w.lock().unwrap().status.iter().all(|s| !s.rebuilding);
                if run.wipes && nobody_rebuilding && thread_rng().gen_bool(0.3) {
                    disks[id as usize].lock().unwrap().records.clear();
                    w.lock().unwrap().fault(id, Fault::Wipe);
                }
                handle.restart(node);
            }
        }
        // Wait for every acknowledgement and for the replicas to converge.
        for _ in 0..6_000 {
            {
                let wl = w.lock().unwrap();
                let st = &wl.status;
                let converged = st
                    .iter()
                    .all(|s| !s.rebuilding && s.next == st[0].next && s.digest == st[0].digest);
                let acked = wl.acked.iter().all(|a| *a == run.ops_per_client);
                if wl.violation.is_some() || (acked && converged) {
                    return;
                }
            }
            sleep(Duration::from_millis(10)).await;
        }
        let mut wl = w.lock().unwrap();
        if wl.violation.is_none() {
            let detail = format!(
                "after 60 s: acknowledged {:?} of {} per client; replicas at {:?}",
                wl.acked,
                run.ops_per_client,
                wl.status
                    .iter()
                    .map(|s| (s.next, s.rebuilding))
                    .collect::<Vec<_>>()
            );
            wl.violation = Some(Violation {
                invariant: Invariant::L2,
                at_us: now_us(),
                node: None,
                detail,
            });
        }
    });
    let w = world.lock().unwrap();
    MultiOutcome {
        violation: w.violation.clone(),
        applied: w.status[0].next,
        elections: w.obs.elections,
        trace_hash: w.hash,
        messages: w.messages,
        coverage: w.coverage.clone(),
    }
}
