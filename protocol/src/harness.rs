//! A small deterministic cluster for tests: a handful of [`Node`]s, a virtual clock, and a network that delays, drops and
//! partitions by rule. (The full simulator, with fault schedules and checks,
//! is `shoal-sim`; this is the in-crate harness its rules are proven on.)

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{
    Address, Capacity, Config, Event, Identity, Instant, Membership, Metadata, Node, NodeId, ReplicaKey, ReplicaState,
    ReplicaStatus, State, WorkloadConfig, WorkloadEvent, Workloads,
};

pub(crate) fn addr(index: usize) -> Address {
    Address::new(format!("sim:{index}")).expect("short address")
}

fn index_of(addr: &Address) -> usize {
    addr.as_str().strip_prefix("sim:").and_then(|s| s.parse().ok()).expect("harness addresses are sim:<index>")
}

pub(crate) fn id(index: usize) -> NodeId {
    NodeId::from_index(index as u64)
}

pub(crate) fn identity(index: usize, generation: u64) -> Identity {
    let mut meta = Metadata::new(format!("n{index}"), addr(index));
    meta.capacity = Capacity { cpu_millis: 4_000, memory_bytes: 8 << 30 };
    Identity { id: id(index), generation, meta }
}

/// How long the harness's driver takes to start a replica.
pub(crate) const START_TIME: Duration = Duration::from_secs(1);

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Datagram {
    from: usize,
    to: usize,
    payload: Vec<u8>,
}

/// N nodes on a virtual network with a fixed one-way latency.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) now: Instant,
    config: Config,
    workload_config: WorkloadConfig,
    /// `None` while crashed.
    pub(crate) nodes: Vec<Option<Node>>,
    in_flight: BinaryHeap<Reverse<(Instant, u64, Datagram)>>,
    sent: u64,
    latency: Duration,
    loss: f64,
    /// Directed links that drop everything.
    cut: BTreeSet<(usize, usize)>,
    rng: ChaCha8Rng,
    seed: u64,
    /// Every event, stamped with time and node.
    pub(crate) events: Vec<(Instant, usize, Event)>,
    /// When set, every node runs what its plan says (an instant driver),
    /// when the protocol announces a change to its plan, and reports a
    /// started replica Running once its start time has passed: never on a
    /// period.
    pub(crate) drive_workloads: bool,
    /// When each node's driver last reported (its replicas started after
    /// this minus [`START_TIME`] still need a Running report).
    reported_at: Vec<Instant>,
    /// The replicas each node runs, as (workload, replica) → when started.
    /// A replica reports Starting for its first [`START_TIME`].
    pub(crate) running: Vec<BTreeMap<ReplicaKey, Instant>>,
    /// Replica starts and stops, over the whole run.
    pub(crate) starts: u64,
    pub(crate) stops: u64,
}

impl Cluster {
    pub(crate) fn new(n: usize, config: Config, seed: u64) -> Cluster {
        Cluster::with_workload_config(n, config, WorkloadConfig::lan(), seed)
    }

    pub(crate) fn with_workload_config(
        n: usize,
        config: Config,
        workload_config: WorkloadConfig,
        seed: u64,
    ) -> Cluster {
        let nodes = (0..n)
            .map(|i| {
                let seed = seed ^ (i as u64) << 32;
                Some(
                    Node::new(config.clone(), workload_config.clone(), identity(i, 1), seed, Instant::ZERO)
                        .expect("valid"),
                )
            })
            .collect();
        Cluster {
            now: Instant::ZERO,
            config,
            workload_config,
            nodes,
            in_flight: BinaryHeap::new(),
            sent: 0,
            latency: Duration::from_millis(1),
            loss: 0.0,
            cut: BTreeSet::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            events: Vec::new(),
            drive_workloads: false,
            reported_at: vec![Instant::ZERO; n],
            running: vec![BTreeMap::new(); n],
            starts: 0,
            stops: 0,
        }
    }

    /// Every node starts knowing every other (generation 1) and sure that
    /// they know it: the mesh is formed before anything runs.
    pub(crate) fn form(&mut self) {
        let peers: Vec<crate::Peer> = (0..self.nodes.len())
            .map(|i| crate::Peer::new(id(i), 1, 0, Arc::new(identity(i, 1).meta)).expect("valid metadata"))
            .collect();
        for node in self.nodes.iter_mut().flatten() {
            node.preload(self.now, &peers);
            node.assume_announced();
        }
    }

    /// Node `i`'s membership layer.
    pub(crate) fn node(&self, i: usize) -> &Membership {
        self.nodes[i].as_ref().expect("node is running").membership()
    }

    /// Node `i`'s workload layer.
    pub(crate) fn workloads(&self, i: usize) -> &Workloads {
        self.nodes[i].as_ref().expect("node is running").workloads()
    }

    /// Every node but `seed` joins through `seed`.
    pub(crate) fn join_all_via(&mut self, seed: usize) {
        for i in 0..self.nodes.len() {
            if i != seed {
                if let Some(node) = self.nodes[i].as_mut() {
                    node.join(self.now, [addr(seed)]);
                }
                self.drain(i);
            }
        }
    }

    pub(crate) fn set_loss(&mut self, loss: f64) {
        self.loss = loss;
    }

    /// Drops everything between the two groups, both ways.
    pub(crate) fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    /// Drops everything from `from` to `to` (one way).
    pub(crate) fn cut_one_way(&mut self, from: usize, to: usize) {
        self.cut.insert((from, to));
    }

    pub(crate) fn heal(&mut self) {
        self.cut.clear();
    }

    /// The node stops: no messages, no timers, state lost.
    pub(crate) fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
        self.running[i].clear();
    }

    /// The node starts again with empty state and a new generation, and
    /// rejoins through `seed`.
    pub(crate) fn restart(&mut self, i: usize, generation: u64, seed: usize) {
        let identity = identity(i, generation);
        let node =
            Node::new(self.config.clone(), self.workload_config.clone(), identity, self.seed ^ generation, self.now)
                .expect("valid");
        self.nodes[i] = Some(node);
        if let Some(node) = self.nodes[i].as_mut() {
            node.join(self.now, [addr(seed)]);
        }
        self.drain(i);
    }

    fn drain(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else { return };
        while let Some(event) = node.poll_event() {
            self.events.push((self.now, i, event));
        }
        let mut plan_changed = false;
        while let Some(event) = node.poll_workload_event() {
            plan_changed |= matches!(event, WorkloadEvent::ReplicaStart { .. } | WorkloadEvent::ReplicaStop { .. });
        }
        while let Some(transmit) = node.poll_transmit() {
            let to = index_of(&transmit.addr);
            if self.cut.contains(&(i, to)) || (self.loss > 0.0 && self.rng.random::<f64>() < self.loss) {
                continue;
            }
            self.sent += 1;
            let datagram = Datagram { from: i, to, payload: transmit.payload };
            self.in_flight.push(Reverse((self.now + self.latency, self.sent, datagram)));
        }
        if plan_changed && self.drive_workloads {
            self.drive_node(i);
        }
    }

    fn next_timer(&self) -> Option<(Instant, usize)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, node)| {
                let protocol = node.as_ref()?.poll_timeout();
                Some((protocol.into_iter().chain(self.driver_due(i)).min()?, i))
            })
            .min()
    }

    /// When node `i`'s driver must report a replica that finished starting.
    fn driver_due(&self, i: usize) -> Option<Instant> {
        if !self.drive_workloads {
            return None;
        }
        let up = self.running[i].values().map(|since| *since + START_TIME);
        up.filter(|at| *at > self.reported_at[i]).min()
    }

    /// Runs until `deadline`, delivering messages and firing timers in time
    /// order (messages first on ties).
    pub(crate) fn run_until(&mut self, deadline: Instant) {
        loop {
            let message_at = self.in_flight.peek().map(|Reverse((at, _, _))| *at);
            let timer = self.next_timer();
            let next = match (message_at, timer) {
                (Some(m), Some((t, _))) => m.min(t),
                (Some(m), None) => m,
                (None, Some((t, _))) => t,
                (None, None) => break,
            };
            if next > deadline {
                break;
            }
            assert!(next >= self.now, "a timer was set in the past ({next} < {}): time would run backwards", self.now);
            self.now = next;
            if message_at == Some(next) {
                let Some(Reverse((_, _, datagram))) = self.in_flight.pop() else { break };
                let from = addr(datagram.from);
                if let Some(node) = self.nodes[datagram.to].as_mut() {
                    node.handle_message(self.now, &from, &datagram.payload);
                }
                self.drain(datagram.to);
            } else if let Some((_, i)) = timer {
                if let Some(node) = self.nodes[i].as_mut() {
                    if node.poll_timeout().is_some_and(|at| at <= self.now) {
                        node.handle_timeout(self.now);
                    }
                }
                self.drain(i);
                if self.driver_due(i).is_some_and(|at| at <= self.now) {
                    self.drive_node(i);
                }
            }
        }
        self.now = deadline;
    }

    pub(crate) fn run_for(&mut self, duration: Duration) {
        self.run_until(self.now + duration);
    }

    /// Node `i` submits `spec`.
    pub(crate) fn submit(&mut self, i: usize, spec: crate::WorkloadSpec) {
        if let Some(node) = self.nodes[i].as_mut() {
            node.submit(self.now, spec).expect("valid spec");
        }
        self.drain(i);
    }

    /// Node `i` deletes workload `name`.
    pub(crate) fn delete(&mut self, i: usize, name: &str) {
        if let Some(node) = self.nodes[i].as_mut() {
            node.delete_workload(self.now, name);
        }
        self.drain(i);
    }

    /// What node `viewer` believes about node `subject`.
    pub(crate) fn view(&self, viewer: usize, subject: usize) -> Option<State> {
        Some(self.nodes[viewer].as_ref()?.membership().member(id(subject))?.state)
    }

    /// Whether every running node sees every running node Alive.
    pub(crate) fn converged(&self) -> bool {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].is_some()).collect();
        running.iter().all(|&a| running.iter().all(|&b| self.view(a, b) == Some(State::Alive)))
    }

    /// Runs in steps of `step` until `done` holds, for at most `limit`;
    /// returns the time it took.
    pub(crate) fn run_until_true(
        &mut self,
        step: Duration,
        limit: Duration,
        done: impl Fn(&Cluster) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now.saturating_since(start) <= limit {
            if done(self) {
                return Some(self.now.saturating_since(start));
            }
            self.run_for(step);
        }
        None
    }

    /// Node `i` starts and stops replicas as its plan says, at once, and
    /// reports them (Running once past [`START_TIME`]).
    fn drive_node(&mut self, i: usize) {
        {
            let Some(node) = self.nodes[i].as_mut() else { return };
            let plan = node.workloads().plan().clone();
            self.reported_at[i] = self.now;
            let (running, now) = (&mut self.running[i], self.now);
            for duty in plan.run {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    running.entry(ReplicaKey::new(duty.workload, duty.replica))
                {
                    slot.insert(now);
                    self.starts += 1;
                }
            }
            for key in plan.stop {
                self.stops += u64::from(running.remove(&key).is_some());
            }
            let report = running.iter().map(|(key, since)| {
                let up = now.saturating_since(*since) >= START_TIME;
                let state = if up { ReplicaState::Running } else { ReplicaState::Starting };
                ReplicaStatus::new(key.workload.clone(), key.replica, state)
            });
            node.report_replicas(now, report.collect::<Vec<_>>());
            self.drain(i);
        }
    }

    /// The nodes running each replica.
    pub(crate) fn copies(&self) -> BTreeMap<ReplicaKey, Vec<usize>> {
        let mut copies: BTreeMap<ReplicaKey, Vec<usize>> = BTreeMap::new();
        for (i, running) in self.running.iter().enumerate() {
            for key in running.keys() {
                copies.entry(key.clone()).or_default().push(i);
            }
        }
        copies
    }

    /// How many distinct replicas have a copy past its start time.
    pub(crate) fn serving(&self) -> usize {
        let up = self
            .running
            .iter()
            .flat_map(|r| r.iter())
            .filter(|(_, since)| self.now.saturating_since(**since) >= START_TIME);
        up.map(|(key, _)| key).collect::<BTreeSet<_>>().len()
    }
}
