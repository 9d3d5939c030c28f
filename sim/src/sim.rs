//! The event loop: a heap of (time, sequence)-ordered actions, jumping from
//! one to the next. Each node is a [`SimNode`](crate::impls::SimNode) (a real Shoal `Node`, or
//! a peer implementation being compared with it); after every input the
//! loop drains its transmits (into the network model) and its events (into
//! the checks), then asks for its next deadline and, if that moved earlier,
//! pushes a wakeup. Stale wakeups (a newer one replaced them, or the node
//! crashed) are skipped when they come up.

// Node indexes fit u32 (at most MAX_NODES); times in f64 seconds are small and non-negative.
#![allow(clippy::cast_possible_truncation)]

mod faults;
mod finish;
mod network;
mod nodes;

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Instant as WallInstant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal_protocol::{Address, Event, Transmit};

use crate::checks::{self, Check};
use crate::fault::FaultKind;
use crate::impls::{FormedMember, Impl, Implementation};
use crate::net::Rule;
use crate::report::{NetCounters, Report, Sample};
use crate::scenario::{Bootstrap, FaultSpec, Scenario};
use crate::trace::Trace;
use crate::units::Dur;

pub use crate::error::SimError;
pub use crate::world::{NodeSlot, World};

/// Most nodes one simulation runs.
pub const MAX_NODES: usize = 1_000_000;
/// Most messages a paused node buffers; more are dropped (a full socket buffer).
pub const BACKLOG_LIMIT: usize = 4_096;
/// Simulated time between liveness checks and progress reports.
pub const TICK_MICROS: u64 = 100_000;
#[derive(Debug)]
enum Action {
    Deliver { from: u32, to: u32, payload: Vec<u8> },
    Wake { node: u32, epoch: u32 },
    Start { node: u32 },
    BootstrapDone,
    FaultStart { plan: u32 },
    FaultHeal { instance: u32 },
    Tick,
}

#[derive(Debug)]
struct Entry {
    at: u64,
    seq: u64,
    action: Action,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Entry) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A fault that has started.
#[derive(Debug)]
struct Instance {
    kind: FaultKind,
    nodes: Vec<usize>,
    global: bool,
    blocking: bool,
    active: bool,
}

/// One run.
pub struct Simulation {
    scenario: Scenario,
    seed: u64,
    world: World,
    checks: Vec<Box<dyn Check>>,
    queue: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    rng: ChaCha8Rng,
    addrs: Vec<Address>,
    rules: Vec<Rule>,
    held: BTreeMap<usize, Vec<(u32, u32, Vec<u8>)>>,
    plan: Vec<(FaultSpec, u64)>,
    instances: Vec<Instance>,
    trace: Trace,
    net: NetCounters,
    fired: BTreeMap<&'static str, u64>,
    samples: Vec<Sample>,
    started: Vec<usize>,
    end: u64,
    steps: u64,
    progress: Option<Box<dyn FnMut(u64, u64)>>,
    tx_buf: Vec<Transmit>,
    ev_buf: Vec<Event>,
    sample_every: u64,
    max_views: usize,
    detections: u64,
    wall_start: Option<WallInstant>,
    /// Wall seconds spent on the actions at simulated time zero.
    start_wall: Option<f64>,
    leak_on_finish: bool,
    bytes_sent: u64,
    /// Every member, for a mesh that starts formed.
    formed: Option<Vec<FormedMember>>,
    imp: Box<dyn Implementation>,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("scenario", &self.scenario.name)
            .field("seed", &self.seed)
            .field("now", &self.world.now)
            .finish_non_exhaustive()
    }
}

impl Simulation {
    /// Prepares `scenario` with `seed`. Nothing runs until [`Simulation::run`].
    pub fn new(scenario: Scenario, seed: u64) -> Result<Simulation, SimError> {
        Simulation::with_trace(scenario, seed, None)
    }

    /// Like [`Simulation::new`], also writing the JSONL trace to `sink`.
    pub fn with_trace(
        scenario: Scenario,
        seed: u64,
        sink: Option<Box<dyn std::io::Write>>,
    ) -> Result<Simulation, SimError> {
        Simulation::with_impl(scenario, seed, sink, Impl::Shoal)
    }

    /// Like [`Simulation::with_trace`], driving `imp` with its defaults.
    pub fn with_impl(
        scenario: Scenario,
        seed: u64,
        sink: Option<Box<dyn std::io::Write>>,
        imp: Impl,
    ) -> Result<Simulation, SimError> {
        Simulation::check_size(&scenario)?;
        let imp = imp.build(&scenario)?;
        Simulation::with_implementation(scenario, seed, sink, imp)
    }

    fn check_size(scenario: &Scenario) -> Result<(), SimError> {
        let n = scenario.nodes;
        if n == 0 || n > MAX_NODES {
            return Err(SimError::Nodes { got: n, max: MAX_NODES });
        }
        Ok(())
    }

    /// The general form: any [`Implementation`] (e.g. one tuned to a
    /// bandwidth) in the scenario's network and faults.
    pub fn with_implementation(
        scenario: Scenario,
        seed: u64,
        sink: Option<Box<dyn std::io::Write>>,
        imp: Box<dyn Implementation>,
    ) -> Result<Simulation, SimError> {
        Simulation::check_size(&scenario)?;
        let n = scenario.nodes;
        let config = imp.timing().clone();
        for spec in &scenario.faults {
            faults::check_nodes(&spec.kind, n)?;
        }
        if let Some(sites) = &scenario.network.sites {
            sites.validate()?;
        }
        if scenario.bootstrap == Bootstrap::Formed && !imp.starts_formed() {
            return Err(SimError::FormedUnavailable(imp.name()));
        }
        let addrs: Vec<Address> = (0..n)
            .map(|i| Address::new(format!("sim:{i}")))
            .collect::<Result<_, _>>()
            .map_err(shoal_protocol::Error::from)?;
        let mut world = World {
            now: 0,
            nodes: (0..n).map(|_| NodeSlot::new()).collect(),
            config: config.clone(),
            running: 0,
            global_disturbed: 0,
            global_calm_after: 0,
            blocking_active: 1,
            quiet_since: None,
            mtu_violations: 0,
            largest_datagram: 0,
            mtu: scenario.network.mtu,
            calm_window: 0,
            dead_origin: None,
        };
        world.calm_window = world.suspicion_max_micros() + 10_000_000;
        let checks = checks::standard(&scenario, &world);
        let end = scenario.duration.micros();
        let sample_every = if n <= 2_000 { 1_000_000 } else { 5_000_000 };
        let mut sim = Simulation {
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            world,
            checks,
            queue: BinaryHeap::with_capacity(n * 8),
            seq: 0,
            addrs,
            rules: Vec::new(),
            held: BTreeMap::new(),
            plan: Vec::new(),
            instances: Vec::new(),
            trace: Trace::new(sink, config.cluster_id),
            net: NetCounters::default(),
            fired: BTreeMap::new(),
            samples: Vec::new(),
            started: Vec::with_capacity(n),
            end,
            steps: 0,
            progress: None,
            tx_buf: Vec::new(),
            ev_buf: Vec::new(),
            sample_every,
            max_views: 0,
            detections: 0,
            wall_start: None,
            start_wall: None,
            leak_on_finish: false,
            bytes_sent: 0,
            formed: None,
            imp,
            scenario,
        };
        sim.schedule_initial();
        Ok(sim)
    }

    /// Calls `progress(now, end)` (microseconds) about once per simulated
    /// second.
    pub fn on_progress(&mut self, progress: impl FnMut(u64, u64) + 'static) {
        self.progress = Some(Box::new(progress));
    }

    /// Skips freeing the nodes' state when the run ends: a process that
    /// exits right after saves the time (a fifth of a short run at 1,000
    /// nodes). The memory is reclaimed by the OS at exit.
    pub fn leak_on_finish(&mut self) {
        self.leak_on_finish = true;
    }

    /// The world as the checks see it.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The fault schedule this run follows: the scenario's faults with their
    /// repeats expanded and the seed's random faults drawn, each `at` the
    /// time it starts, in schedule order (on a tie in `at`, the earlier entry
    /// starts first). The shrinker writes it out as a plain list.
    pub fn fault_plan(&self) -> Vec<FaultSpec> {
        let plain = |(spec, at): &(FaultSpec, u64)| FaultSpec {
            at: Dur::from_micros(*at),
            every: None,
            until: None,
            ..spec.clone()
        };
        self.plan.iter().map(plain).collect()
    }

    fn push(&mut self, at: u64, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Entry { at, seq: self.seq, action }));
    }

    fn schedule_initial(&mut self) {
        let n = self.world.nodes.len();
        let window = self.scenario.bootstrap.window().micros();
        if self.scenario.bootstrap == Bootstrap::Formed {
            // Every node's first run, as `boot` will number it.
            let members = self.addrs.iter().map(|addr| FormedMember { generation: 1, addr: addr.clone() });
            self.formed = Some(members.collect());
        }
        self.push(0, Action::Start { node: 0 });
        for i in 1..n {
            let at = if window == 0 { 0 } else { self.rng.random_range(0..=window) };
            self.push(at, Action::Start { node: i as u32 });
        }
        self.push(window, Action::BootstrapDone);
        // The schedule, with repeats expanded.
        let mut plan = Vec::new();
        for spec in &self.scenario.faults {
            let mut at = spec.at.micros();
            loop {
                plan.push((spec.clone(), at));
                match (spec.every, spec.until) {
                    (Some(every), until) if every.micros() > 0 => {
                        at += every.micros();
                        let limit = until.map_or(self.end, Dur::micros).min(self.end);
                        if at > limit {
                            break;
                        }
                    }
                    _ => break,
                }
            }
        }
        if let Some(random) = self.scenario.random_faults.clone() {
            let kinds: Vec<String> = if random.kinds.is_empty() {
                FaultKind::NAMES.iter().filter(|k| **k != "repair").map(|k| (*k).to_owned()).collect()
            } else {
                random.kinds.clone()
            };
            for _ in 0..random.count {
                let kind = &kinds[self.rng.random_range(0..kinds.len())];
                let Some(kind) = FaultKind::default_of(kind) else { continue };
                let at = self.rng.random_range(random.from.micros()..=random.to.micros().max(random.from.micros()));
                let len = self
                    .rng
                    .random_range(random.min_len.micros()..=random.max_len.micros().max(random.min_len.micros()));
                let heal = match kind {
                    FaultKind::Crash { .. } if self.rng.random_bool(0.5) => None,
                    _ => Some(Dur::from_micros(len)),
                };
                plan.push((FaultSpec { at: Dur::from_micros(at), heal, every: None, until: None, kind }, at));
            }
        }
        for (index, (_, at)) in plan.iter().enumerate() {
            self.seq += 1;
            self.queue.push(Reverse(Entry {
                at: *at,
                seq: self.seq,
                action: Action::FaultStart { plan: index as u32 },
            }));
        }
        self.plan = plan;
        self.push(TICK_MICROS, Action::Tick);
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> Report {
        self.run_until(self.end);
        self.finish()
    }

    /// Processes every action due up to `until` (microseconds).
    pub fn run_until(&mut self, until: u64) {
        self.wall_start.get_or_insert_with(WallInstant::now);
        while let Some(Reverse(entry)) = self.queue.peek() {
            if entry.at > until {
                break;
            }
            if entry.at > 0 && self.start_wall.is_none() {
                self.start_wall = self.wall_start.map(|s| s.elapsed().as_secs_f64());
            }
            let Some(Reverse(entry)) = self.queue.pop() else { break };
            self.world.now = entry.at;
            self.steps += 1;
            self.step(entry.action);
        }
        self.world.now = self.world.now.max(until.min(self.end));
    }

    fn step(&mut self, action: Action) {
        match action {
            Action::Deliver { from, to, payload } => self.deliver(from as usize, to as usize, payload),
            Action::Wake { node, epoch } => self.wake(node as usize, epoch),
            Action::Start { node } => self.start(node as usize),
            Action::BootstrapDone => {
                self.world.blocking_active -= 1;
                self.mark_quiet();
            }
            Action::FaultStart { plan } => self.fault_start(plan as usize),
            Action::FaultHeal { instance } => self.fault_heal(instance as usize),
            Action::Tick => self.tick(),
        }
    }
}
