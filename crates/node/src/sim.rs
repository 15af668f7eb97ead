//! The madsim binding (see the crate docs).

use checkers::{Invariant, Observer, Violation};
use madsim::net::Endpoint;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, Runtime};
use madsim::time::{sleep, Duration, TimeHandle};
use paxos::{Bugs, Config, Input, Msg, Node, NodeId, Output, Record, Timing, Value, MAX_NODES};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

pub(crate) const PORT: u16 = 7000;
pub(crate) const TAG: u64 = 1;

/// What travels between endpoints.
#[derive(Copy, Clone, Debug)]
enum Wire {
    Peer {
        from: NodeId,
        msg: Msg,
    },
    /// A client asks this node's proposer to get a value chosen.
    Propose(Value),
}

/// Simulated microseconds since the run began.
pub(crate) fn now_us() -> u64 {
    TimeHandle::current().elapsed().as_micros() as u64
}

pub(crate) fn ip(id: NodeId) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, id + 1))
}

pub(crate) fn addr(id: NodeId) -> SocketAddr {
    SocketAddr::new(ip(id), PORT)
}

/// A node's disk, which survives the node's process being killed. Writes
/// become durable only when a sync completes; a kill loses the rest.
#[derive(Debug, Default)]
pub struct Disk {
    durable: Record,
    unsynced: Vec<(u64, Record)>,
}

impl Disk {
    pub fn durable(&self) -> Record {
        self.durable
    }
}

/// What the trace fingerprint records, with the simulated time and the node.
#[derive(Copy, Clone, Debug, Hash)]
enum Event {
    Send { to: NodeId, msg: Msg },
    Durable(Record),
    Learned(Value),
    Decided(Value),
    Crash,
    Restart,
}

/// What every node reports to, shared across the simulation (madsim runs
/// every task on one thread, so a mutex is never contended).
#[derive(Debug)]
pub struct World {
    obs: Observer,
    violation: Option<Violation>,
    learned: [Option<Value>; MAX_NODES],
    /// A fingerprint of every observed event with its simulated time, for the
    /// determinism check.
    hash: u64,
    pub messages: u64,
}

impl World {
    fn new(n: usize) -> World {
        World {
            obs: Observer::new(n),
            violation: None,
            learned: [None; MAX_NODES],
            hash: 0,
            messages: 0,
        }
    }

    fn note(&mut self, node: NodeId, what: Event) {
        let mut h = rustc_hash::FxHasher::default();
        (self.hash, now_us(), node, what).hash(&mut h);
        self.hash = h.finish();
    }

    fn check(&mut self, r: Result<(), Violation>) {
        if let (Err(v), None) = (r, &self.violation) {
            self.violation = Some(v);
        }
    }
}

/// Per-node settings of the madsim layer.
#[derive(Clone, Debug)]
struct Setup {
    cfg: Config,
    disk_us: (u64, u64),
}

/// Puts `input` on a node's queue after a delay drawn from `us` (a timer
/// firing with its jitter, a sync completing), unless the node died meanwhile.
pub(crate) fn deliver_within<T: Send + 'static>(
    tx: &async_channel::Sender<T>,
    us: std::ops::RangeInclusive<u64>,
    input: T,
) {
    let us = thread_rng().gen_range(us);
    let tx = tx.clone();
    madsim::task::spawn(async move {
        sleep(Duration::from_micros(us)).await;
        let _ = tx.send(input).await;
    });
}

/// A core assertion that failed, as a violation (see the crate docs).
pub(crate) fn assert_failed(id: NodeId, panic: Box<dyn std::any::Any + Send>) -> Violation {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into());
    Violation {
        invariant: Invariant::Assert,
        at_us: now_us(),
        node: Some(id),
        detail,
    }
}

/// One incarnation of a node: runs until the node is killed.
async fn run_node(setup: Setup, disk: Arc<Mutex<Disk>>, world: Arc<Mutex<World>>) {
    let id = setup.cfg.id;
    // Whatever the previous incarnation wrote but never synced is gone.
    let durable = {
        let mut d = disk.lock().unwrap();
        d.unsynced.clear();
        d.durable
    };
    let ep = Arc::new(Endpoint::bind(addr(id)).await.expect("bind"));
    let (tx, rx) = async_channel::unbounded::<Input>();

    // The receiver task: network messages become inputs.
    let (ep2, tx2) = (ep.clone(), tx.clone());
    madsim::task::spawn(async move {
        loop {
            let Ok((payload, _)) = ep2.recv_from_raw(TAG).await else {
                return;
            };
            let wire = *payload.downcast::<Wire>().expect("only Wire travels");
            let input = match wire {
                Wire::Peer { from, msg } => Input::Receive { from, msg },
                Wire::Propose(v) => Input::Propose(v),
            };
            if tx2.send(input).await.is_err() {
                return;
            }
        }
    });

    let mut node = Node::recover(setup.cfg, durable);
    let mut out = Vec::new();
    node.start(now_us(), &mut out);
    loop {
        for o in out.drain(..) {
            execute(&setup, o, &ep, &tx, &disk, &world);
        }
        let Ok(input) = rx.recv().await else { return };
        if let Input::Synced { upto } = input {
            let mut d = disk.lock().unwrap();
            let k = d.unsynced.iter().take_while(|(s, _)| *s <= upto).count();
            if k > 0 {
                d.durable = d.unsynced[k - 1].1;
                d.unsynced.drain(..k);
                let rec = d.durable;
                drop(d);
                let mut w = world.lock().unwrap();
                w.note(id, Event::Durable(rec));
                let r = w.obs.on_durable(now_us(), id, rec);
                w.check(r);
            }
        }
        if let Input::Propose(v) = input {
            if node.learned().is_some() && node.decided() {
                continue; // A client retry after the work is done.
            }
            let mut w = world.lock().unwrap();
            w.obs.on_propose(id, v);
        }
        // A failed protocol assertion (a canary can trip one) is a finding,
        // not a crash of the test: record it and stop this node. Letting it
        // unwind would abort madsim's whole runtime.
        let now = now_us();
        let step = catch_unwind(AssertUnwindSafe(|| node.handle(now, input, &mut out)));
        if let Err(panic) = step {
            world.lock().unwrap().check(Err(assert_failed(id, panic)));
            return;
        }
    }
}

fn execute(
    setup: &Setup,
    o: Output,
    ep: &Arc<Endpoint>,
    tx: &async_channel::Sender<Input>,
    disk: &Arc<Mutex<Disk>>,
    world: &Arc<Mutex<World>>,
) {
    let id = setup.cfg.id;
    match o {
        Output::Send { to, msg, .. } => {
            {
                let mut w = world.lock().unwrap();
                let r = w.obs.on_send(now_us(), id, to, msg);
                w.check(r);
                w.messages += 1;
                w.note(id, Event::Send { to, msg });
            }
            // Each send is its own task: madsim spends at least a millisecond
            // of simulated time inside every send (see the crate docs), and
            // awaiting them here would stall the node for n ms per broadcast
            // and release its messages one by one in id order. A send to a
            // dead or unreachable node fails; Paxos retries. A send still in
            // flight when the node is killed dies with it.
            let ep = ep.clone();
            madsim::task::spawn(async move {
                let payload = Box::new(Wire::Peer { from: id, msg });
                let _ = ep.send_to_raw(addr(to), TAG, payload).await;
            });
        }
        Output::Persist { seq, record } => {
            disk.lock().unwrap().unsynced.push((seq, record));
        }
        Output::Sync { upto } => deliver_within(
            tx,
            setup.disk_us.0..=setup.disk_us.1,
            Input::Synced { upto },
        ),
        Output::SetTimer {
            timer,
            delay_us,
            jitter_us,
        } => deliver_within(tx, delay_us..=delay_us + jitter_us, Input::Timer(timer)),
        Output::Learned { value } => {
            let mut w = world.lock().unwrap();
            w.note(id, Event::Learned(value));
            let r = w.obs.on_learned(now_us(), id, value);
            w.check(r);
            w.learned[id as usize] = Some(value);
        }
        Output::Decided { value } => {
            let mut w = world.lock().unwrap();
            w.note(id, Event::Decided(value));
            let r = w.obs.on_decided(now_us(), id, value);
            w.check(r);
        }
    }
}

/// The result of one madsim run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub learned: Vec<Option<Value>>,
    pub violation: Option<Violation>,
    pub trace_hash: u64,
    pub messages: u64,
}

/// Settings of a madsim run of the `basic` scenario.
#[derive(Clone, Debug)]
pub struct BasicRun {
    pub seed: u64,
    pub nodes: u8,
    pub proposers: u8,
    /// Crash and restart nodes at seeded times.
    pub crashes: bool,
    /// madsim's own packet loss rate.
    pub loss: f64,
    pub bugs: Bugs,
}

impl BasicRun {
    pub fn new(seed: u64) -> BasicRun {
        BasicRun {
            seed,
            nodes: 5,
            proposers: 3,
            crashes: false,
            loss: 0.0,
            bugs: Bugs::default(),
        }
    }
}

/// Runs Basic Paxos on madsim: `nodes` node processes, clients proposing
/// distinct values to the first `proposers`, optional crash/restart faults,
/// until every node learned or 30 simulated seconds pass.
pub fn run_basic(run: &BasicRun) -> Outcome {
    let mut config = madsim::Config::default();
    config.net.packet_loss_rate = run.loss;
    config.net.send_latency = Duration::from_micros(200)..Duration::from_millis(5);
    let rt = Runtime::with_seed_and_config(run.seed, config);
    let n = run.nodes;
    let world = Arc::new(Mutex::new(World::new(n as usize)));
    let w = world.clone();
    let run = run.clone();
    rt.block_on(async move {
        let handle = Handle::current();
        let disks: Vec<Arc<Mutex<Disk>>> = (0..n).map(|_| Arc::default()).collect();
        let mut nodes = Vec::new();
        for id in 0..n {
            let setup = Setup {
                cfg: Config {
                    n,
                    id,
                    proposer: id < run.proposers,
                    timing: Timing::default(),
                    bugs: run.bugs,
                },
                // madsim sleeps at least 1 ms, so shorter latencies would all
                // collapse to exactly 1 ms.
                disk_us: (1_000, 3_000),
            };
            let (disk, world) = (disks[id as usize].clone(), w.clone());
            let node = handle
                .create_node()
                .name(format!("n{id}"))
                .ip(ip(id))
                .init(move || run_node(setup.clone(), disk.clone(), world.clone()))
                .build();
            nodes.push(node);
        }
        // The client: proposes each value and retries until its node learned
        // (a restarted proposer forgets the request).
        let client = handle
            .create_node()
            .name("client")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)))
            .build();
        let w2 = w.clone();
        let proposers = run.proposers;
        client.spawn(async move {
            let ep = Endpoint::bind("0.0.0.0:0").await.expect("client bind");
            sleep(Duration::from_micros(thread_rng().gen_range(0..5_000))).await;
            loop {
                for id in 0..proposers {
                    if w2.lock().unwrap().learned[id as usize].is_none() {
                        let _ = ep
                            .send_to_raw(addr(id), TAG, Box::new(Wire::Propose(100 + id as Value)))
                            .await;
                    }
                }
                sleep(Duration::from_millis(100)).await;
            }
        });
        if run.crashes {
            // The nemesis: up to three crash/restart episodes, at seeded times.
            let episodes = thread_rng().gen_range(1..=3);
            for _ in 0..episodes {
                sleep(Duration::from_micros(thread_rng().gen_range(0..20_000))).await;
                let id = thread_rng().gen_range(0..n);
                handle.kill(nodes[id as usize].id());
                {
                    let mut wl = w.lock().unwrap();
                    wl.obs.on_crash(id);
                    wl.learned[id as usize] = None;
                    wl.note(id, Event::Crash);
                }
                sleep(Duration::from_micros(thread_rng().gen_range(1_000..50_000))).await;
                handle.restart(nodes[id as usize].id());
                let mut wl = w.lock().unwrap();
                wl.obs.on_restart(id);
                wl.note(id, Event::Restart);
            }
        }
        // Wait for every node to learn, or give up (an L1 violation).
        for _ in 0..3_000 {
            {
                let wl = w.lock().unwrap();
                if wl.violation.is_some() || wl.learned[..n as usize].iter().all(Option::is_some) {
                    return;
                }
            }
            sleep(Duration::from_millis(10)).await;
        }
        let mut wl = w.lock().unwrap();
        if wl.violation.is_none() {
            let unlearned = wl.obs.unlearned(0..n);
            wl.violation = Some(Violation {
                invariant: Invariant::L1,
                at_us: now_us(),
                node: unlearned.first().copied(),
                detail: format!("nodes {unlearned:?} never learned within 30 s"),
            });
        }
    });
    let w = world.lock().unwrap();
    Outcome {
        learned: w.learned[..n as usize].to_vec(),
        violation: w.violation.clone(),
        trace_hash: w.hash,
        messages: w.messages,
    }
}
