//! Workload checks, for runs with workloads.
//!
//! - [`Replicas`] (liveness): once membership has been quiet for a bound
//!   (faults healed, no crash or start since), every replica of every
//!   submitted workload runs, Running, on exactly one node: no replica
//!   missing, none twice. It also counts replica moves (a replica starting
//!   on a node other than the one that last ran it) against the work the
//!   crashed and restarted nodes held, and checks that no node's catalog
//!   ever shrinks (no catalog entry lost).
//! - [`Sides`] (service): from every node's own view, every replica is
//!   known Running on a member it believes live, except for a short grace
//!   after a change. Through a partition this means each side, once it
//!   has declared the other Dead, runs every workload itself.

use std::collections::BTreeMap;

use super::{Check, Outcome, convergence_bound_micros};
use crate::Verdict;
use crate::scenario::{Scenario, WorkloadLoad};
use crate::stats::Summary;
use crate::world::World;
use shoal_protocol::{ReplicaKey, ReplicaState};

/// How long, on top of the longest suspicion timeout, a node may see a
/// replica without a live Running copy: Dead news spreading, the new
/// owner's plan tick, the start, and the status coming back. (Suspects keep
/// their work, so until every member of the other side of a split is Dead
/// here, a replica may sit on one of them.)
const SIDES_GRACE_MICROS: u64 = 10_000_000;

fn expected(load: &WorkloadLoad) -> Vec<ReplicaKey> {
    let replicas = u16::try_from(load.replicas).unwrap_or(u16::MAX);
    (0..load.count).flat_map(|w| (0..replicas).map(move |r| ReplicaKey::new(format!("w{w}"), r))).collect()
}

/// Where each replica runs: key → [(node, state)].
pub(crate) fn copies(world: &World) -> BTreeMap<ReplicaKey, Vec<(usize, ReplicaState)>> {
    let mut copies: BTreeMap<ReplicaKey, Vec<(usize, ReplicaState)>> = BTreeMap::new();
    for (i, slot) in world.nodes.iter().enumerate() {
        let Some(replicas) = slot.node.as_ref().and_then(|n| n.replicas()) else { continue };
        for (key, state) in replicas {
            copies.entry(key.clone()).or_default().push((i, *state));
        }
    }
    copies
}

/// See the module doc.
#[derive(Debug)]
pub struct Replicas {
    expected: Vec<ReplicaKey>,
    bound: u64,
    submit_at: u64,
    /// When the current quiet stretch began (faults healed, no crash or
    /// start since), unless it has been judged.
    episode: Option<u64>,
    last_change: u64,
    judged_quiet: Option<u64>,
    times: Vec<f64>,
    failures: Vec<String>,
    /// Who last ran each replica, for counting moves.
    last_owner: BTreeMap<ReplicaKey, usize>,
    moves: u64,
    /// Replicas held by nodes when they crashed or restarted.
    displaced: u64,
    max_move_ratio: Option<f64>,
    catalog_high: Vec<usize>,
    catalog_lost: u64,
    next_tick: u64,
}

impl Replicas {
    /// The check for `scenario` (which has workloads).
    pub fn new(scenario: &Scenario, world: &World, load: &WorkloadLoad) -> Replicas {
        let config = scenario.preset.workload_config();
        let bound = convergence_bound_micros(scenario, world)
            + config.settle_time.as_micros() as u64 * 4
            + config.handover_grace.as_micros() as u64
            + load.start_time.micros()
            + 2_000_000;
        Replicas {
            expected: expected(load),
            bound,
            submit_at: load.submit_at.micros(),
            episode: None,
            last_change: 0,
            judged_quiet: None,
            times: Vec::new(),
            failures: Vec::new(),
            last_owner: BTreeMap::new(),
            moves: 0,
            displaced: 0,
            max_move_ratio: scenario.checks.max_move_ratio,
            catalog_high: vec![0; world.nodes.len()],
            catalog_lost: 0,
            next_tick: 0,
        }
    }

    fn exact(&self, copies: &BTreeMap<ReplicaKey, Vec<(usize, ReplicaState)>>) -> Result<(), String> {
        if copies.len() != self.expected.len() {
            return Err(format!("{} distinct replicas run, {} wanted", copies.len(), self.expected.len()));
        }
        for key in &self.expected {
            match copies.get(key).map(Vec::as_slice) {
                Some([(_, ReplicaState::Running)]) => {}
                Some([(node, state)]) => return Err(format!("{key} is {state:?} on node {node}")),
                Some(many) => return Err(format!("{key} runs {} times: {many:?}", many.len())),
                None => return Err(format!("{key} runs nowhere")),
            }
        }
        Ok(())
    }
}

impl Check for Replicas {
    fn name(&self) -> &'static str {
        "replicas"
    }

    fn on_crash(&mut self, world: &World, node: usize) {
        self.last_change = world.now;
        let held = world.nodes[node].node.as_ref().and_then(|n| n.replicas()).map_or(0, |r| r.len());
        self.displaced += held as u64;
    }

    fn on_start(&mut self, world: &World, _node: usize) {
        self.last_change = world.now;
    }

    fn on_tick(&mut self, world: &World) {
        // Twice a second is fine-grained enough for placement times.
        if world.now < self.next_tick {
            return;
        }
        self.next_tick = world.now + 500_000;
        let copies = copies(world);
        for (key, nodes) in &copies {
            for (node, _) in nodes {
                let previous = self.last_owner.insert(key.clone(), *node);
                // Moves count from the first exact placement on: before it,
                // nodes are still settling and the placement forming.
                let placed_once = !self.times.is_empty();
                if placed_once && previous.is_some_and(|p| p != *node && !nodes.iter().any(|(n, _)| *n == p)) {
                    self.moves += 1;
                }
            }
        }
        for (i, slot) in world.nodes.iter().enumerate() {
            let held = slot.node.as_ref().map_or(0, |n| n.catalog_len());
            if slot.node.is_some() && held < self.catalog_high[i] {
                self.catalog_lost += 1;
            }
            // A restarted node starts from an empty catalog and learns it again.
            self.catalog_high[i] = if slot.node.is_some() { self.catalog_high[i].max(held) } else { 0 };
        }

        let quiet = world.quiet_since.map(|q| q.max(self.last_change).max(self.submit_at));
        if quiet != self.episode && quiet != self.judged_quiet {
            self.episode = quiet;
        }
        let Some(start) = self.episode else { return };
        match self.exact(&copies) {
            Ok(()) => {
                self.times.push((world.now.saturating_sub(start)) as f64 / 1e6);
                self.judged_quiet = Some(start);
                self.episode = None;
            }
            Err(gap) if world.now > start + self.bound => {
                self.failures.push(format!(
                    "replicas not exactly placed {:.1}s after {:.1}s: {gap}",
                    (world.now - start) as f64 / 1e6,
                    start as f64 / 1e6
                ));
                self.judged_quiet = Some(start);
                self.episode = None;
            }
            Err(_) => {}
        }
    }

    fn finish(&mut self, world: &World) -> Outcome {
        let bound_s = self.bound as f64 / 1e6;
        let summary = Summary::of(&self.times);
        let mut failures = self.failures.clone();
        if self.catalog_lost > 0 {
            failures.push(format!("a node's catalog shrank {} times (an entry was lost)", self.catalog_lost));
        }
        if let Some(ratio) = self.max_move_ratio {
            let allowed = (ratio * self.displaced as f64).ceil() as u64;
            if self.moves > allowed {
                failures.push(format!(
                    "{} replica moves, more than {ratio} x the {} replicas crashed or restarted nodes held",
                    self.moves, self.displaced
                ));
            }
        }
        let (verdict, detail) = if let Some(first) = failures.first() {
            (Verdict::Fail, format!("{first} (bound {bound_s:.1}s)"))
        } else if self.times.is_empty() {
            let why = match self.episode {
                Some(start) => {
                    // The stretch may start in the future: at the submission.
                    let into = world.now.saturating_sub(start) as f64 / 1e6;
                    format!("run ended {into:.1}s into a quiet stretch, before placing")
                }
                None => "no quiet stretch to judge".to_owned(),
            };
            (Verdict::Inconclusive, why)
        } else {
            (
                Verdict::Pass,
                format!(
                    "every replica ran exactly once after each change ({} times, max {:.1}s, bound {bound_s:.1}s); {} moves for {} displaced",
                    self.times.len(),
                    summary.max,
                    self.moves,
                    self.displaced
                ),
            )
        };
        Outcome {
            name: self.name(),
            verdict,
            detail,
            summaries: vec![("time_to_place_s", summary)],
            counts: vec![
                ("replica_moves", self.moves),
                ("replicas_displaced", self.displaced),
                ("catalog_shrinks", self.catalog_lost),
            ],
            samples: vec![("time_to_place_s", self.times.clone())],
        }
    }
}

/// See the module doc.
#[derive(Debug)]
pub struct Sides {
    expected: Vec<ReplicaKey>,
    /// From when each node has seen a replica without a live Running copy.
    short_since: Vec<Option<u64>>,
    /// The grace: the longest suspicion timeout plus [`SIDES_GRACE_MICROS`].
    grace: u64,
    /// Since when every node has held the whole catalog (judging starts then).
    ready: Option<u64>,
    count: usize,
    next_check: u64,
    judged: u64,
    failures: Vec<String>,
    longest_gap: u64,
}

impl Sides {
    /// The check for a run with `load`.
    pub fn new(world: &World, load: &WorkloadLoad) -> Sides {
        Sides {
            expected: expected(load),
            short_since: vec![None; world.nodes.len()],
            grace: world.suspicion_max_micros() + SIDES_GRACE_MICROS,
            ready: None,
            count: load.count,
            next_check: 0,
            judged: 0,
            failures: Vec::new(),
            longest_gap: 0,
        }
    }
}

impl Check for Sides {
    fn name(&self) -> &'static str {
        "sides"
    }

    fn on_tick(&mut self, world: &World) {
        if world.now < self.next_check {
            return;
        }
        self.next_check = world.now + 2_000_000;
        if self.ready.is_none() {
            // Judge once the workloads are placed everywhere for the first time.
            let placed = world.nodes.iter().all(|s| s.node.as_ref().is_none_or(|n| n.catalog_len() == self.count))
                && world
                    .nodes
                    .iter()
                    .filter_map(|s| s.node.as_ref())
                    .all(|n| n.known_running().len() == self.expected.len());
            if placed {
                self.ready = Some(world.now);
            }
            return;
        }
        for (i, slot) in world.nodes.iter().enumerate() {
            let Some(node) = slot.node.as_ref().filter(|_| !slot.paused) else {
                self.short_since[i] = None;
                continue;
            };
            // A node that just (re)started has not learned the statuses yet.
            if node.catalog_len() < self.count {
                self.short_since[i] = None;
                continue;
            }
            let known = node.known_running();
            let missing = self.expected.iter().find(|key| known.binary_search(key).is_err());
            self.judged += 1;
            match (missing, self.short_since[i]) {
                (None, _) => self.short_since[i] = None,
                (Some(_), None) => self.short_since[i] = Some(world.now),
                (Some(key), Some(since)) => {
                    let gap = world.now - since;
                    self.longest_gap = self.longest_gap.max(gap);
                    if gap > self.grace && self.failures.len() < 5 {
                        let running_on: Vec<String> = copies(world)
                            .get(key)
                            .into_iter()
                            .flatten()
                            .map(|(n, state)| {
                                let seen = node.member(shoal_protocol::NodeId::from_index(*n as u64)).map(|m| m.state);
                                format!("node {n} ({state:?}; seen {seen:?})")
                            })
                            .collect();
                        self.failures.push(format!(
                            "node {i} has seen {key} with no Running copy on a live member for {:.1}s (at {:.1}s; it runs on {})",
                            gap as f64 / 1e6,
                            world.now as f64 / 1e6,
                            if running_on.is_empty() { "no node".to_owned() } else { running_on.join(", ") }
                        ));
                        self.short_since[i] = Some(world.now);
                    }
                }
            }
        }
    }

    fn finish(&mut self, _world: &World) -> Outcome {
        let grace_s = self.grace as f64 / 1e6;
        let (verdict, detail) = if let Some(first) = self.failures.first() {
            (Verdict::Fail, format!("{first} (grace {grace_s:.0}s)"))
        } else if self.ready.is_none() {
            (Verdict::Inconclusive, "the workloads were never placed everywhere".to_owned())
        } else {
            (
                Verdict::Pass,
                format!(
                    "every node always saw every replica running on a live member (longest gap {:.1}s, grace {grace_s:.0}s)",
                    self.longest_gap as f64 / 1e6
                ),
            )
        };
        Outcome {
            name: self.name(),
            verdict,
            detail,
            summaries: Vec::new(),
            counts: vec![("views_judged", self.judged)],
            samples: Vec::new(),
        }
    }
}
