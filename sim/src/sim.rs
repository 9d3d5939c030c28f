//! The event loop: a heap of (time, sequence)-ordered actions, jumping from
//! one to the next. Each node is a real [`Membership`]; after every input the
//! loop drains its transmits (into the network model) and its events (into
//! the checks), then asks for its next deadline and, if that moved earlier,
//! pushes a wakeup. Stale wakeups (a newer one replaced them, or the node
//! crashed) are skipped when they come up.

// Node indexes fit u32 (at most MAX_NODES); times in f64 seconds are small and non-negative.
#![allow(clippy::cast_possible_truncation)]

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::Instant as WallInstant;

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal_protocol::{
    Address, Config, Event, Identity, Instant, Membership, Metadata, MetadataCache, NodeId, State, Transmit, wire,
};

use crate::checks::{self, Check};
use crate::fault::{FaultKind, Select};
use crate::net::{self, Rule, RuleKind};
use crate::report::{NetCounters, Report, Sample, Verdict};
#[cfg(feature = "bug-injection")]
use crate::scenario::BugKind;
use crate::scenario::{Bootstrap, FaultSpec, Scenario};
use crate::stats::Summary;
use crate::trace::{self, Kind, Trace};
use crate::units::Dur;

/// Why a simulation could not start. Nothing ran.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario asks for zero nodes or more than the simulator supports.
    #[error("a scenario needs between 1 and {max} nodes, not {got}")]
    Nodes {
        /// Asked for.
        got: usize,
        /// Supported.
        max: usize,
    },
    /// The protocol refused its config or a node's identity.
    #[error("protocol: {0}")]
    Protocol(#[from] shoal_protocol::Error),
    /// The scenario injects a bug, but this build lacks the `bug-injection`
    /// feature.
    #[error("scenario injects bug `{0}`: rebuild with `--features bug-injection`")]
    BugInjectionUnavailable(&'static str),
    /// A fault names a node that does not exist.
    #[error("fault `{fault}` names node {node}, but there are only {nodes}")]
    NoSuchNode {
        /// The fault.
        fault: &'static str,
        /// The index.
        node: usize,
        /// How many nodes.
        nodes: usize,
    },
}

/// Most nodes one simulation runs.
pub const MAX_NODES: usize = 1_000_000;
/// Most messages a paused node buffers; more are dropped (a full socket buffer).
pub const BACKLOG_LIMIT: usize = 4_096;
/// Simulated time between liveness checks and progress reports.
pub const TICK_MICROS: u64 = 100_000;

/// A node's clock: local = base_local + (global - base_global) · (1 + ppm/1e6).
#[derive(Clone, Copy, Debug, Default)]
struct Clock {
    base_global: u64,
    base_local: u64,
    ppm: i64,
}

impl Clock {
    #[inline]
    fn local(&self, global: u64) -> u64 {
        let elapsed = global.saturating_sub(self.base_global);
        if self.ppm == 0 {
            return self.base_local + elapsed;
        }
        let scaled = i128::from(elapsed) * (1_000_000 + i128::from(self.ppm)) / 1_000_000;
        self.base_local + u64::try_from(scaled).unwrap_or(0)
    }

    /// The earliest global time at which the local clock reads `local`.
    #[inline]
    fn global(&self, local: u64) -> u64 {
        let elapsed = local.saturating_sub(self.base_local);
        if self.ppm == 0 {
            return self.base_global.saturating_add(elapsed);
        }
        let rate = 1_000_000 + i128::from(self.ppm);
        let scaled = (i128::from(elapsed) * 1_000_000 + rate - 1) / rate;
        self.base_global.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX))
    }

    fn set_ppm(&mut self, now: u64, ppm: i64) {
        let local = self.local(now);
        *self = Clock { base_global: now, base_local: local, ppm };
    }
}

/// One simulated machine.
#[derive(Debug)]
pub struct NodeSlot {
    /// The protocol instance; `None` before it starts and while crashed.
    pub node: Option<Membership>,
    /// The generation of the current (or last) process.
    pub generation: u64,
    /// Bumped on every crash and restart; wakeups of an old epoch are stale.
    epoch: u32,
    /// The earliest wakeup pushed for this epoch (`u64::MAX`: none).
    wake_at: u64,
    /// Stalled: processes nothing until resumed.
    pub paused: bool,
    backlog: VecDeque<(u32, Vec<u8>)>,
    wake_pending: bool,
    /// Extra delay on every timer (a slow node).
    pub slow_micros: u64,
    clock: Clock,
    /// Active faults that touch this node.
    pub disturbed: u32,
    /// From when on the node counts as undisturbed again.
    pub calm_after: u64,
    egress_busy: u64,
    /// Bytes this node sent.
    pub bytes_out: u64,
    /// Messages this node sent.
    pub msgs_out: u64,
    /// Simulated time this node has been running, in microseconds.
    up_micros: u64,
    up_since: Option<u64>,
    /// Peers to rejoin through after a restart that keeps state.
    rejoin_via: Vec<usize>,
}

impl NodeSlot {
    fn new() -> NodeSlot {
        NodeSlot {
            node: None,
            generation: 0,
            epoch: 0,
            wake_at: u64::MAX,
            paused: false,
            backlog: VecDeque::new(),
            wake_pending: false,
            slow_micros: 0,
            clock: Clock::default(),
            disturbed: 0,
            calm_after: 0,
            egress_busy: 0,
            bytes_out: 0,
            msgs_out: 0,
            up_micros: 0,
            up_since: None,
            rejoin_via: Vec::new(),
        }
    }

    /// Whether a process is running (paused counts as running).
    pub fn running(&self) -> bool {
        self.node.is_some()
    }

    /// Running, not paused, and touched by no fault since `calm_after`.
    pub fn healthy(&self, now: u64) -> bool {
        self.node.is_some() && !self.paused && self.disturbed == 0 && now >= self.calm_after
    }
}

/// What the checks see: the nodes, the clock, and fault bookkeeping.
#[derive(Debug)]
pub struct World {
    /// Simulated time, microseconds.
    pub now: u64,
    /// Every node.
    pub nodes: Vec<NodeSlot>,
    /// The protocol config every node runs.
    pub config: Config,
    /// How many nodes are running.
    pub running: usize,
    /// Active faults that touch every node (partitions, global loss).
    pub global_disturbed: u32,
    /// From when on the whole network counts as undisturbed again.
    pub global_calm_after: u64,
    /// Active faults that stop convergence (bootstrap counts as one).
    pub blocking_active: u32,
    /// Since when no such fault has been active; liveness is judged from here.
    pub quiet_since: Option<u64>,
    /// Datagrams over the MTU.
    pub mtu_violations: u64,
    /// The largest datagram seen.
    pub largest_datagram: usize,
    /// The MTU in force.
    pub mtu: usize,
    /// How long after a fault heals its nodes still count as disturbed.
    pub calm_window: u64,
    /// Node id to index.
    ids: std::collections::HashMap<NodeId, usize>,
    /// During a `MemberDown` event: the node that declared the member Dead,
    /// when known.
    pub dead_origin: Option<usize>,
}

impl World {
    /// The node with id `id`, if it is one of ours. (A hash map that is
    /// only ever looked up, never iterated, so it cannot leak order.)
    pub fn index_of(&self, id: NodeId) -> Option<usize> {
        self.ids.get(&id).copied()
    }

    /// The longest suspicion timeout at this size (before local health
    /// stretching): `max_mult · mult · max(1, log10 N) · T`.
    pub fn suspicion_max_micros(&self) -> u64 {
        let n = self.nodes.len().max(1) as f64;
        let scale = n.log10().max(1.0);
        let min = self.config.suspicion_mult as f64 * scale * self.config.probe_interval.as_micros() as f64;
        (min * self.config.suspicion_max_timeout_mult as f64) as u64
    }

    /// Whether the network as a whole is calm at `now`.
    pub fn network_calm(&self) -> bool {
        self.global_disturbed == 0 && self.now >= self.global_calm_after
    }

    /// Whether `viewer` sees exactly the running nodes, each Alive at its
    /// current generation, and no other member live. O(members).
    pub fn view_is_exact(&self, viewer: usize) -> bool {
        let Some(node) = self.nodes[viewer].node.as_ref() else { return true };
        if node.live_members() != self.running {
            return false;
        }
        let mut alive = 0;
        for member in node.members() {
            if !member.state.is_live() {
                continue;
            }
            let Some(index) = self.index_of(member.id) else { return false };
            let slot = &self.nodes[index];
            if member.state != State::Alive || !slot.running() || member.generation != slot.generation {
                return false;
            }
            alive += 1;
        }
        alive == self.running
    }

    /// The first way `viewer`'s view is not exact, in words.
    pub fn view_gap(&self, viewer: usize) -> Option<String> {
        let node = self.nodes[viewer].node.as_ref()?;
        let mut alive = 0;
        for member in node.members() {
            let index = self.index_of(member.id);
            let slot = index.map(|i| &self.nodes[i]);
            let running = slot.is_some_and(NodeSlot::running);
            let current = slot.is_some_and(|s| s.generation == member.generation);
            let who = index.map_or_else(|| "an unknown id".to_owned(), |i| format!("node {i}"));
            match (member.state, running, current) {
                (shoal_protocol::State::Alive, true, true) => alive += 1,
                (state, true, true) => {
                    return Some(format!("node {viewer} sees running {who} as {state:?} since {}", member.state_since));
                }
                (state, true, false) if state.is_live() => {
                    return Some(format!("node {viewer} sees an old generation of {who} as {state:?}"));
                }
                (state, false, _) if state.is_live() => {
                    return Some(format!("node {viewer} sees stopped {who} as {state:?}"));
                }
                _ => {}
            }
        }
        (alive != self.running).then(|| format!("node {viewer} knows {alive} of {} running nodes Alive", self.running))
    }

    /// A stable hash of `viewer`'s view: (id, generation, state) of every
    /// member. Equal views hash equal.
    pub fn view_hash(&self, viewer: usize) -> Option<u64> {
        let node = self.nodes[viewer].node.as_ref()?;
        let mut h = 0x243f_6a88_85a3_08d3u64;
        for m in node.members() {
            let (mut high, mut low) = ([0u8; 8], [0u8; 8]);
            high.copy_from_slice(&m.id.0[..8]);
            low.copy_from_slice(&m.id.0[8..]);
            let id = u64::from_le_bytes(high) ^ u64::from_le_bytes(low).rotate_left(32);
            let key = id ^ m.generation.rotate_left(24) ^ (m.state as u64).rotate_left(56);
            h = (h ^ key).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        }
        Some(h)
    }
}

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
    leak_on_finish: bool,
    bytes_sent: u64,
    /// Decoded metadata shared by every node (N copies instead of N²).
    meta_cache: MetadataCache,
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

fn identity(index: usize, generation: u64, addr: &Address) -> Identity {
    Identity {
        id: NodeId::from_index(index as u64),
        generation,
        meta: Metadata::new(format!("n{index}"), addr.clone()),
    }
}

fn event_subject(event: &Event) -> Option<NodeId> {
    match *event {
        Event::MemberUp { id }
        | Event::MemberSuspect { id }
        | Event::MemberAlive { id }
        | Event::MemberDown { id }
        | Event::MemberLeft { id }
        | Event::MetadataChanged { id } => Some(id),
        Event::SelfRefuted { .. } => None,
    }
}

fn event_name(event: &Event) -> (&'static str, u64) {
    match event {
        Event::MemberUp { .. } => ("MemberUp", 1),
        Event::MemberSuspect { .. } => ("MemberSuspect", 2),
        Event::MemberAlive { .. } => ("MemberAlive", 3),
        Event::MemberDown { .. } => ("MemberDown", 4),
        Event::MemberLeft { .. } => ("MemberLeft", 5),
        Event::MetadataChanged { .. } => ("MetadataChanged", 6),
        Event::SelfRefuted { .. } => ("SelfRefuted", 7),
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
        let n = scenario.nodes;
        if n == 0 || n > MAX_NODES {
            return Err(SimError::Nodes { got: n, max: MAX_NODES });
        }
        #[cfg(not(feature = "bug-injection"))]
        if let Some(bug) = scenario.bug {
            return Err(SimError::BugInjectionUnavailable(bug.name()));
        }
        let config = scenario.preset.config().validate().map_err(shoal_protocol::Error::from)?;
        for spec in &scenario.faults {
            check_nodes(&spec.kind, n)?;
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
            ids: (0..n).map(|i| (NodeId::from_index(i as u64), i)).collect(),
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
            leak_on_finish: false,
            bytes_sent: 0,
            meta_cache: MetadataCache::default(),
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

    fn push(&mut self, at: u64, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Entry { at, seq: self.seq, action }));
    }

    fn schedule_initial(&mut self) {
        let n = self.world.nodes.len();
        let window = self.scenario.bootstrap.window().micros();
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

    // ---- nodes ----

    fn start(&mut self, i: usize) {
        let seeds: Vec<usize> = match self.scenario.bootstrap {
            _ if i == 0 => Vec::new(),
            Bootstrap::OneSeed { .. } => vec![0],
            Bootstrap::Staggered { .. } => {
                let running: Vec<usize> =
                    self.started.iter().copied().filter(|&s| self.world.nodes[s].running()).collect();
                if running.is_empty() { vec![0] } else { vec![running[self.rng.random_range(0..running.len())]] }
            }
        };
        self.started.push(i);
        self.boot(i, &seeds);
    }

    /// Starts a fresh process on node `i` (new generation) joining via `seeds`.
    fn boot(&mut self, i: usize, seeds: &[usize]) {
        let now = self.world.now;
        let protocol_seed = self.rng.next_u64();
        let slot = &mut self.world.nodes[i];
        slot.generation += 1;
        slot.epoch += 1;
        slot.wake_at = u64::MAX;
        slot.paused = false;
        slot.wake_pending = false;
        slot.backlog.clear();
        let local = Instant::from_micros(slot.clock.local(now));
        let generation = slot.generation;
        let span = tracing::debug_span!("node", node = i);
        let _entered = span.enter();
        let mut node = match Membership::new(
            self.world.config.clone(),
            identity(i, generation, &self.addrs[i]),
            protocol_seed,
            local,
        ) {
            Ok(node) => node,
            Err(error) => {
                // Validated up front; a refusal here is a simulator bug.
                tracing::error!(%error, "node refused to start");
                return;
            }
        };
        #[cfg(feature = "bug-injection")]
        if let Some(bug) = self.scenario.bug {
            node.inject_bug(match bug {
                BugKind::IgnoreRefutations => shoal_protocol::Bug::IgnoreRefutations,
                BugKind::NoAntiEntropy => shoal_protocol::Bug::NoAntiEntropy,
            });
        }
        node.share_metadata(self.meta_cache.clone());
        if !seeds.is_empty() {
            node.join(local, seeds.iter().map(|&s| self.addrs[s].clone()));
        }
        drop(_entered);
        let slot = &mut self.world.nodes[i];
        slot.node = Some(node);
        slot.up_since = Some(now);
        self.world.running += 1;
        self.trace.fold(Kind::Start, now, i as u64, generation, 0);
        self.trace.write_start(now, i, generation);
        for check in &mut self.checks {
            check.on_start(&self.world, i);
        }
        self.after_input(i);
    }

    fn crash(&mut self, i: usize) {
        if !self.world.nodes[i].running() {
            return;
        }
        for check in &mut self.checks {
            check.on_crash(&self.world, i);
        }
        let now = self.world.now;
        let slot = &mut self.world.nodes[i];
        // What a restart that keeps state would rejoin through.
        slot.rejoin_via = slot
            .node
            .as_ref()
            .map(|node| {
                node.members()
                    .filter(|m| m.state.is_live())
                    .filter_map(|m| m.meta.primary_addr().and_then(|a| net::index_of(a.as_str())))
                    .filter(|&p| p != i)
                    .take(64)
                    .collect()
            })
            .unwrap_or_default();
        slot.node = None;
        slot.epoch += 1;
        slot.wake_at = u64::MAX;
        slot.paused = false;
        slot.wake_pending = false;
        slot.backlog.clear();
        if let Some(since) = slot.up_since.take() {
            slot.up_micros += now - since;
        }
        self.world.running -= 1;
    }

    fn restart(&mut self, i: usize, keep_state: bool) {
        if self.world.nodes[i].running() {
            return;
        }
        let mut via = if keep_state { std::mem::take(&mut self.world.nodes[i].rejoin_via) } else { Vec::new() };
        via.retain(|&p| self.world.nodes[p].running());
        via.shuffle(&mut self.rng);
        via.truncate(5);
        if via.is_empty() {
            // The bootstrap list: three random running nodes.
            let running: Vec<usize> =
                (0..self.world.nodes.len()).filter(|&p| p != i && self.world.nodes[p].running()).collect();
            for _ in 0..3.min(running.len()) {
                via.push(running[self.rng.random_range(0..running.len())]);
            }
            via.sort_unstable();
            via.dedup();
        }
        self.boot(i, &via);
    }

    fn wake(&mut self, i: usize, epoch: u32) {
        let slot = &mut self.world.nodes[i];
        if slot.epoch != epoch || slot.wake_at != self.world.now {
            return; // stale
        }
        slot.wake_at = u64::MAX;
        if slot.paused {
            slot.wake_pending = true;
            return;
        }
        let Some(node) = slot.node.as_mut() else { return };
        let local = Instant::from_micros(slot.clock.local(self.world.now));
        {
            let span = tracing::debug_span!("node", node = i);
            let _entered = span.enter();
            node.handle_timeout(local);
        }
        self.trace.fold(Kind::Timer, self.world.now, i as u64, 0, 0);
        self.trace.write_timer(self.world.now, i);
        self.after_input(i);
    }

    fn deliver(&mut self, from: usize, to: usize, payload: Vec<u8>) {
        let slot = &mut self.world.nodes[to];
        if slot.node.is_none() {
            self.net.to_down_node += 1;
            return;
        }
        if slot.paused {
            if slot.backlog.len() < BACKLOG_LIMIT {
                slot.backlog.push_back((from as u32, payload));
            } else {
                self.net.backlog_dropped += 1;
            }
            return;
        }
        self.handle_message(from, to, &payload);
    }

    fn handle_message(&mut self, from: usize, to: usize, payload: &[u8]) {
        let slot = &mut self.world.nodes[to];
        let Some(node) = slot.node.as_mut() else { return };
        let local = Instant::from_micros(slot.clock.local(self.world.now));
        {
            let span = tracing::debug_span!("node", node = to);
            let _entered = span.enter();
            node.handle_message(local, &self.addrs[from], payload);
        }
        self.net.delivered += 1;
        self.trace.fold(Kind::Deliver, self.world.now, from as u64, to as u64, trace::hash_bytes(payload));
        self.trace.write_deliver(self.world.now, from, to, payload);
        self.after_input_from(to, Some(payload));
    }

    fn after_input(&mut self, i: usize) {
        self.after_input_from(i, None);
    }

    /// Drains node `i`'s events and transmits, then schedules its next
    /// wakeup. `input` is the message it just handled, if any.
    fn after_input_from(&mut self, i: usize, input: Option<&[u8]>) {
        let mut events = std::mem::take(&mut self.ev_buf);
        let mut transmits = std::mem::take(&mut self.tx_buf);
        if let Some(node) = self.world.nodes[i].node.as_mut() {
            while let Some(event) = node.poll_event() {
                events.push(event);
            }
            while let Some(transmit) = node.poll_transmit() {
                transmits.push(transmit);
            }
        }
        for event in events.drain(..) {
            self.on_event(i, &event, input);
        }
        for transmit in transmits.drain(..) {
            self.send(i, transmit);
        }
        self.ev_buf = events;
        self.tx_buf = transmits;
        self.reschedule(i);
    }

    fn reschedule(&mut self, i: usize) {
        let now = self.world.now;
        let slot = &mut self.world.nodes[i];
        let Some(deadline) = slot.node.as_ref().and_then(Membership::poll_timeout) else { return };
        let at = slot.clock.global(deadline.as_micros()).saturating_add(slot.slow_micros).max(now);
        if at < slot.wake_at {
            slot.wake_at = at;
            let epoch = slot.epoch;
            self.push(at, Action::Wake { node: i as u32, epoch });
        }
    }

    fn on_event(&mut self, viewer: usize, event: &Event, input: Option<&[u8]>) {
        let now = self.world.now;
        let subject = event_subject(event).and_then(|id| self.world.index_of(id));
        let (name, code) = event_name(event);
        self.trace.fold(Kind::Event, now, viewer as u64, code, subject.map_or(u64::MAX, |s| s as u64));
        if self.trace.writing() {
            self.trace.write_event(now, viewer, name, subject);
        }
        if let Event::MemberDown { id } = *event {
            self.detections += 1;
            // Who declared it: the viewer itself (a suspicion expired), or
            // the `by` of the Dead fact in the message it just handled.
            self.world.dead_origin = match input {
                None => Some(viewer),
                Some(payload) => wire::decode(payload, self.world.config.cluster_id).ok().and_then(|m| {
                    m.updates.iter().find_map(|u| match u {
                        wire::Update::Dead { id: dead, by, .. } if *dead == id => self.world.index_of(*by),
                        _ => None,
                    })
                }),
            };
        }
        for check in &mut self.checks {
            check.on_event(&self.world, viewer, event);
        }
    }

    // ---- network ----

    fn send(&mut self, from: usize, transmit: Transmit) {
        let now = self.world.now;
        let payload = transmit.payload;
        let len = payload.len();
        self.bytes_sent += len as u64;
        let slot = &mut self.world.nodes[from];
        slot.bytes_out += len as u64;
        slot.msgs_out += 1;
        self.net.sent += 1;
        let Some(to) = net::index_of(transmit.addr.as_str()).filter(|&t| t < self.world.nodes.len()) else {
            self.net.unknown_address += 1;
            return;
        };
        let reliable = net::is_sync(&payload);
        if reliable {
            self.net.streamed += 1;
        } else {
            self.world.largest_datagram = self.world.largest_datagram.max(len);
            if len > self.world.mtu {
                self.world.mtu_violations += 1;
                return;
            }
        }
        if !self.rules.is_empty() {
            match net::judge(&self.rules, from, to, reliable, &mut self.rng) {
                net::Verdict::Pass => {}
                net::Verdict::Cut => {
                    self.net.cut += 1;
                    return;
                }
                net::Verdict::Lost => {
                    self.net.lost += 1;
                    return;
                }
                net::Verdict::Hold(rule) => {
                    self.net.held += 1;
                    let fault = self.rules[rule].fault;
                    self.held.entry(fault).or_default().push((from as u32, to as u32, payload));
                    return;
                }
            }
        }
        let spec = &self.scenario.network;
        if !reliable && spec.loss > 0.0 && self.rng.random::<f64>() < spec.loss {
            self.net.lost += 1;
            return;
        }
        let mut depart = now;
        if let Some(bandwidth) = spec.bandwidth.filter(|b| *b > 0) {
            let slot = &mut self.world.nodes[from];
            let start = slot.egress_busy.max(now);
            if !reliable && start - now > spec.queue_limit.micros() {
                self.net.queue_dropped += 1;
                return;
            }
            slot.egress_busy = start + (len as u64 * 1_000_000).div_ceil(bandwidth);
            depart = slot.egress_busy;
        }
        let duplicate = !reliable && spec.duplicate > 0.0 && self.rng.random::<f64>() < spec.duplicate;
        if duplicate {
            self.net.duplicated += 1;
            let at = depart + self.latency(reliable);
            self.push(at, Action::Deliver { from: from as u32, to: to as u32, payload: payload.clone() });
        }
        let at = depart + self.latency(reliable);
        self.push(at, Action::Deliver { from: from as u32, to: to as u32, payload });
    }

    fn latency(&mut self, reliable: bool) -> u64 {
        let spec = &self.scenario.network;
        let mut latency = spec.latency.sample(&mut self.rng);
        if !reliable && spec.reorder > 0.0 && self.rng.random::<f64>() < spec.reorder {
            self.net.reordered += 1;
            latency += self.rng.random_range(0..=spec.reorder_delay.micros());
        }
        latency
    }

    // ---- faults ----

    fn choose(&mut self, select: &Select, exclude_paused: bool) -> Vec<usize> {
        if let Select::List(list) = select {
            return list.clone();
        }
        let mut candidates: Vec<usize> = (0..self.world.nodes.len())
            .filter(|&i| self.world.nodes[i].running() && !(exclude_paused && self.world.nodes[i].paused))
            .collect();
        let count = select.count(self.world.nodes.len()).min(candidates.len());
        let (chosen, _) = candidates.partial_shuffle(&mut self.rng, count);
        let mut chosen = chosen.to_vec();
        chosen.sort_unstable();
        chosen
    }

    fn permutation(&mut self) -> Vec<usize> {
        let mut all: Vec<usize> = (0..self.world.nodes.len()).collect();
        all.shuffle(&mut self.rng);
        all
    }

    fn fault_start(&mut self, plan: usize) {
        let now = self.world.now;
        let (spec, _) = self.plan[plan].clone();
        let n = self.world.nodes.len();
        let instance = self.instances.len();
        let mut global = false;
        let mut nodes = Vec::new();
        match &spec.kind {
            FaultKind::Partition { groups } => {
                let order = self.permutation();
                let mut group = vec![0u16; n];
                let total: f64 = groups.iter().sum::<f64>().max(f64::EPSILON);
                let mut start = 0usize;
                for (g, share) in groups.iter().enumerate() {
                    let end = if g + 1 == groups.len() {
                        n
                    } else {
                        (start + (share / total * n as f64).round() as usize).min(n)
                    };
                    for &node in &order[start..end] {
                        group[node] = g as u16 + 1;
                    }
                    start = end;
                }
                self.rules.push(Rule { fault: instance, kind: RuleKind::Cut { group, oneway: false } });
                global = true;
            }
            FaultKind::PartitionOneway { from } => {
                nodes = self.choose(from, false);
                let mut group = vec![2u16; n];
                for &node in &nodes {
                    group[node] = 1;
                }
                self.rules.push(Rule { fault: instance, kind: RuleKind::Cut { group, oneway: true } });
            }
            FaultKind::Isolate { nodes: select } => {
                nodes = self.choose(select, false);
                let mut group = vec![1u16; n];
                for (k, &node) in nodes.iter().enumerate() {
                    group[node] = u16::try_from(k + 2).unwrap_or(u16::MAX);
                }
                self.rules.push(Rule { fault: instance, kind: RuleKind::Cut { group, oneway: false } });
            }
            FaultKind::Bridge => {
                let order = self.permutation();
                let mut group = vec![0u16; n];
                let (bridge, rest) = order.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
                let half = rest.len() / 2;
                for (k, &node) in rest.iter().enumerate() {
                    group[node] = if k < half { 1 } else { 2 };
                }
                nodes.push(bridge);
                self.rules.push(Rule { fault: instance, kind: RuleKind::Cut { group, oneway: false } });
                global = true;
            }
            FaultKind::Hold { nodes: select } => {
                nodes = self.choose(select, false);
                let mut marked = vec![false; n];
                for &node in &nodes {
                    marked[node] = true;
                }
                self.rules.push(Rule { fault: instance, kind: RuleKind::Hold { nodes: marked } });
            }
            FaultKind::Loss { rate, nodes: select } => {
                let marked = match select {
                    None => {
                        global = true;
                        None
                    }
                    Some(select) => {
                        nodes = self.choose(select, false);
                        let mut marked = vec![false; n];
                        for &node in &nodes {
                            marked[node] = true;
                        }
                        Some(marked)
                    }
                };
                self.rules.push(Rule { fault: instance, kind: RuleKind::Loss { nodes: marked, rate: *rate } });
            }
            FaultKind::Crash { nodes: select } => {
                nodes = self.choose(select, false);
                for &node in &nodes {
                    self.crash(node);
                }
            }
            FaultKind::Restart { nodes: select, .. } => {
                nodes = self.choose(select, false);
                for &node in &nodes {
                    self.crash(node);
                }
            }
            FaultKind::Pause { nodes: select } => {
                nodes = self.choose(select, true);
                for &node in &nodes {
                    self.world.nodes[node].paused = true;
                }
            }
            FaultKind::Slow { nodes: select, delay } => {
                nodes = self.choose(select, false);
                for &node in &nodes {
                    self.world.nodes[node].slow_micros = delay.micros();
                }
            }
            FaultKind::Skew { nodes: select, ppm } => {
                nodes = self.choose(select, false);
                let ppm = i64::from((*ppm).min(999_999));
                for &node in &nodes {
                    let signed = if self.rng.random_bool(0.5) { ppm } else { -ppm };
                    self.world.nodes[node].clock.set_ppm(now, signed);
                }
            }
            FaultKind::Repair => {
                for index in 0..self.instances.len() {
                    if self.instances[index].active {
                        self.fault_heal(index);
                    }
                }
            }
        }
        let name = spec.kind.name();
        *self.fired.entry(name).or_default() += 1;
        self.trace.fold(Kind::Fault, now, plan as u64, 1, nodes.len() as u64);
        self.trace.write_fault(now, name, "start", &nodes);
        // Restart's heal is its `down` time; a crash heals (restarts) only if
        // asked to.
        let heal = match &spec.kind {
            FaultKind::Restart { down, .. } => Some(*down),
            FaultKind::Repair => None,
            _ => spec.heal,
        };
        let lasting = heal.is_some();
        let blocking = spec.kind.blocks_convergence() && lasting;
        let instant = matches!(spec.kind, FaultKind::Crash { .. }) && !lasting;
        let disturbs = !matches!(spec.kind, FaultKind::Skew { .. } | FaultKind::Repair);
        if lasting && disturbs {
            if global {
                self.world.global_disturbed += 1;
            }
            for &node in &nodes {
                self.world.nodes[node].disturbed += 1;
            }
        }
        if blocking {
            self.world.blocking_active += 1;
            self.world.quiet_since = None;
        } else if instant || matches!(spec.kind, FaultKind::Repair) {
            self.mark_quiet();
        }
        self.instances.push(Instance { kind: spec.kind.clone(), nodes, global, blocking, active: lasting });
        if let Some(heal) = heal {
            self.push(now + heal.micros(), Action::FaultHeal { instance: instance as u32 });
        }
    }

    fn mark_quiet(&mut self) {
        if self.world.blocking_active == 0 {
            self.world.quiet_since = Some(self.world.now);
        }
    }

    fn fault_heal(&mut self, index: usize) {
        if !self.instances[index].active {
            return;
        }
        let now = self.world.now;
        self.instances[index].active = false;
        let kind = self.instances[index].kind.clone();
        let nodes = self.instances[index].nodes.clone();
        self.rules.retain(|rule| rule.fault != index);
        match &kind {
            FaultKind::Hold { .. } => {
                // Release: everything held goes out now, in the order it was held.
                for (from, to, payload) in self.held.remove(&index).unwrap_or_default() {
                    self.net.released += 1;
                    let at = now + self.latency(false);
                    self.push(at, Action::Deliver { from, to, payload });
                }
            }
            FaultKind::Crash { .. } => {
                for &node in &nodes {
                    self.restart(node, false);
                }
            }
            FaultKind::Restart { keep_state, .. } => {
                for &node in &nodes {
                    self.restart(node, *keep_state);
                }
            }
            FaultKind::Pause { .. } => {
                for &node in &nodes {
                    self.resume(node);
                }
            }
            FaultKind::Slow { .. } => {
                for &node in &nodes {
                    self.world.nodes[node].slow_micros = 0;
                }
            }
            FaultKind::Skew { .. } => {
                for &node in &nodes {
                    self.world.nodes[node].clock.set_ppm(now, 0);
                }
            }
            _ => {}
        }
        self.trace.fold(Kind::Fault, now, index as u64, 2, nodes.len() as u64);
        self.trace.write_fault(now, kind.name(), "heal", &nodes);
        let calm = now + self.world.calm_window;
        if !matches!(kind, FaultKind::Skew { .. }) {
            if self.instances[index].global {
                self.world.global_disturbed -= 1;
                self.world.global_calm_after = self.world.global_calm_after.max(calm);
            }
            for &node in &nodes {
                let slot = &mut self.world.nodes[node];
                slot.disturbed = slot.disturbed.saturating_sub(1);
                slot.calm_after = slot.calm_after.max(calm);
            }
        }
        if self.instances[index].blocking {
            self.world.blocking_active -= 1;
            self.mark_quiet();
        }
    }

    fn resume(&mut self, i: usize) {
        let slot = &mut self.world.nodes[i];
        if !slot.paused {
            return;
        }
        slot.paused = false;
        let backlog = std::mem::take(&mut slot.backlog);
        let wake = std::mem::take(&mut slot.wake_pending);
        for (from, payload) in backlog {
            self.handle_message(from as usize, i, &payload);
        }
        if wake || self.world.nodes[i].wake_at <= self.world.now {
            let epoch = self.world.nodes[i].epoch;
            self.world.nodes[i].wake_at = self.world.now;
            self.wake(i, epoch);
        }
    }

    // ---- ticks, samples ----

    fn tick(&mut self) {
        let now = self.world.now;
        for check in &mut self.checks {
            check.on_tick(&self.world);
        }
        if now % self.sample_every == 0 {
            self.sample();
            if let Some(progress) = self.progress.as_mut() {
                progress(now, self.end);
            }
        }
        if now + TICK_MICROS <= self.end {
            self.push(now + TICK_MICROS, Action::Tick);
        }
    }

    fn sample(&mut self) {
        let mut live = Vec::with_capacity(self.world.running);
        let mut exact = 0usize;
        for slot in &self.world.nodes {
            if let Some(node) = slot.node.as_ref() {
                let count = node.live_members();
                live.push(count as f64);
                if count == self.world.running {
                    exact += 1;
                }
            }
        }
        let summary = Summary::of(&live);
        // O(N · members): every 10 s, and only up to 300 nodes (always at the end).
        let views =
            if self.world.nodes.len() <= 300 && self.world.now % 10_000_000 == 0 { self.distinct_views() } else { 0 };
        self.max_views = self.max_views.max(views);
        let min = live.iter().copied().fold(f64::INFINITY, f64::min);
        self.samples.push(Sample {
            t: self.world.now as f64 / 1e6,
            running: self.world.running,
            live_min: if min.is_finite() { min } else { 0.0 },
            live_mean: summary.mean,
            live_max: summary.max,
            exact_views: exact,
            dead_events: self.detections,
            distinct_views: views,
            wall: self.wall_start.map_or(0.0, |s| s.elapsed().as_secs_f64()),
            bytes_sent: self.bytes_sent,
        });
    }

    fn distinct_views(&self) -> usize {
        let mut hashes: Vec<u64> = (0..self.world.nodes.len()).filter_map(|i| self.world.view_hash(i)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        hashes.len()
    }

    fn finish(mut self) -> Report {
        let wall = self.wall_start.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let now = self.world.now;
        for slot in &mut self.world.nodes {
            if let Some(since) = slot.up_since.take() {
                slot.up_micros += now - since;
            }
        }
        let outcomes: Vec<_> = self.checks.iter_mut().map(|c| c.finish(&self.world)).collect();
        let mut bytes = Vec::new();
        let mut msgs = Vec::new();
        for slot in &self.world.nodes {
            if slot.up_micros > 0 {
                let secs = slot.up_micros as f64 / 1e6;
                bytes.push(slot.bytes_out as f64 / secs);
                msgs.push(slot.msgs_out as f64 / secs);
            }
        }
        let mut totals = shoal_protocol::Counters::default();
        let mut late_timers = 0;
        for slot in &self.world.nodes {
            if let Some(node) = slot.node.as_ref() {
                let c = node.counters();
                totals.declared_dead += c.declared_dead;
                totals.suspicions_raised += c.suspicions_raised;
                totals.self_refutes += c.self_refutes;
                totals.syncs_started += c.syncs_started;
                totals.decode_failures += c.decode_failures;
                late_timers += c.late_timers;
            }
        }
        let distinct_views_end = self.distinct_views();
        self.trace.flush();
        let verdict = if outcomes.iter().any(|o| o.verdict == Verdict::Fail) { Verdict::Fail } else { Verdict::Pass };
        let duration = now as f64 / 1e6;
        let half = self.samples.iter().find(|s| s.t >= duration / 2.0).copied();
        let bytes_per_node_s_second_half = half.map_or(0.0, |h| {
            let secs = duration - h.t;
            let nodes = self.world.running.max(1) as f64;
            if secs > 0.0 { (self.bytes_sent - h.bytes_sent) as f64 / secs / nodes } else { 0.0 }
        });
        let speedup_second_half = half.map_or(0.0, |h| {
            let wall_left = wall - h.wall;
            if wall_left > 0.0 { (duration - h.t) / wall_left } else { 0.0 }
        });
        let nodes = self.world.nodes.len();
        if self.leak_on_finish {
            std::mem::forget(std::mem::take(&mut self.world.nodes));
        }
        Report {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            nodes,
            duration_s: duration,
            trace_hash: format!("{:016x}", self.trace.hash()),
            trace_records: self.trace.records(),
            verdict,
            checks: outcomes,
            bytes_per_node_s: Summary::of(&bytes),
            msgs_per_node_s: Summary::of(&msgs),
            bytes_per_node_s_second_half,
            distinct_views_end,
            max_distinct_views: self.max_views.max(distinct_views_end),
            faults_fired: self.fired.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            net: self.net,
            protocol: crate::report::ProtocolTotals {
                suspicions_raised: totals.suspicions_raised,
                declared_dead: totals.declared_dead,
                self_refutes: totals.self_refutes,
                syncs_started: totals.syncs_started,
                decode_failures: totals.decode_failures,
                late_timers,
            },
            steps: self.steps,
            wall_s: wall,
            speedup: if wall > 0.0 { duration / wall } else { 0.0 },
            speedup_second_half,
            samples: self.samples,
            trace_error: self.trace.error.as_ref().map(ToString::to_string),
            replay: crate::report::replay_command(&self.scenario.name, &self.scenario, self.seed),
        }
    }
}

fn check_nodes(kind: &FaultKind, n: usize) -> Result<(), SimError> {
    let selects: Vec<&Select> = match kind {
        FaultKind::PartitionOneway { from } => vec![from],
        FaultKind::Isolate { nodes }
        | FaultKind::Hold { nodes }
        | FaultKind::Crash { nodes }
        | FaultKind::Restart { nodes, .. }
        | FaultKind::Pause { nodes }
        | FaultKind::Slow { nodes, .. }
        | FaultKind::Skew { nodes, .. } => vec![nodes],
        FaultKind::Loss { nodes: Some(nodes), .. } => vec![nodes],
        _ => Vec::new(),
    };
    for select in selects {
        if let Select::List(list) = select {
            if let Some(&node) = list.iter().find(|&&node| node >= n) {
                return Err(SimError::NoSuchNode { fault: kind.name(), node, nodes: n });
            }
        }
    }
    Ok(())
}
