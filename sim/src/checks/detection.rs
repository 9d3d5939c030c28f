//! Liveness: a crashed node is known Dead by every node that was running
//! and knew it live when it crashed, within a bound (by default the longest
//! suspicion timeout plus c·log2(N) periods). Measures detection latency
//! per (crash, viewer), the first viewer's per crash, and the last viewer's
//! ("known everywhere").
//!
//! A crash whose node restarts before everyone noticed is closed without
//! judgement (the new generation supersedes it); viewers that crash meanwhile
//! are dropped. The bound is enforced only while no convergence-blocking
//! fault is active (an isolated viewer cannot hear gossip).

use shoal_protocol::Event;

use super::{Check, Outcome, convergence_bound_micros};
use crate::Verdict;
use crate::scenario::Scenario;
use crate::stats::Summary;
use crate::world::World;

#[derive(Debug)]
struct Crash {
    node: usize,
    at: u64,
    generation: u64,
    /// Viewers still to notice (sorted).
    waiting: Vec<usize>,
    /// Some viewer has noticed.
    noticed: bool,
}

/// See the module doc.
#[derive(Debug)]
pub struct Detection {
    bound: u64,
    open: Vec<Crash>,
    latencies: Vec<f64>,
    first: Vec<f64>,
    everywhere: Vec<f64>,
    crashes: u64,
    superseded: u64,
    failures: Vec<String>,
}

impl Detection {
    /// The check for `scenario`.
    pub fn new(scenario: &Scenario, world: &World) -> Detection {
        let bound =
            scenario.checks.detect_within.map_or_else(|| convergence_bound_micros(scenario, world), |d| d.micros());
        Detection {
            bound,
            open: Vec::new(),
            latencies: Vec::new(),
            first: Vec::new(),
            everywhere: Vec::new(),
            crashes: 0,
            superseded: 0,
            failures: Vec::new(),
        }
    }
}

impl Check for Detection {
    fn name(&self) -> &'static str {
        "detection"
    }

    fn on_crash(&mut self, world: &World, node: usize) {
        self.crashes += 1;
        let id = shoal_protocol::NodeId::from_index(node as u64);
        let generation = world.nodes[node].generation;
        let waiting: Vec<usize> = (0..world.nodes.len())
            .filter(|&v| v != node)
            .filter(|&v| world.nodes[v].node.as_ref().and_then(|n| n.member(id)).is_some_and(|m| m.state.is_live()))
            .collect();
        // Viewers of an earlier crash that just crashed themselves stop counting.
        for crash in &mut self.open {
            if let Ok(pos) = crash.waiting.binary_search(&node) {
                crash.waiting.remove(pos);
            }
        }
        self.open.push(Crash { node, at: world.now, generation, waiting, noticed: false });
    }

    fn on_start(&mut self, world: &World, node: usize) {
        let before = self.open.len();
        self.open.retain(|c| c.node != node || world.nodes[node].generation == c.generation);
        self.superseded += (before - self.open.len()) as u64;
    }

    fn on_event(&mut self, world: &World, viewer: usize, event: &Event) {
        let Event::MemberDown { id } = *event else { return };
        let Some(subject) = world.index_of(id) else { return };
        let now = world.now;
        let mut done = None;
        for (k, crash) in self.open.iter_mut().enumerate() {
            if crash.node != subject {
                continue;
            }
            if let Ok(pos) = crash.waiting.binary_search(&viewer) {
                crash.waiting.remove(pos);
                let latency = (now - crash.at) as f64 / 1e6;
                self.latencies.push(latency);
                if !crash.noticed {
                    crash.noticed = true;
                    self.first.push(latency);
                }
                if crash.waiting.is_empty() {
                    self.everywhere.push(latency);
                    done = Some(k);
                }
            }
        }
        if let Some(k) = done {
            self.open.remove(k);
        }
    }

    fn on_tick(&mut self, world: &World) {
        let now = world.now;
        let quiet = world.quiet_since.is_some_and(|q| now > q + self.bound);
        let bound = self.bound;
        let mut failed = Vec::new();
        self.open.retain(|crash| {
            if now > crash.at + bound && quiet && !crash.waiting.is_empty() {
                failed.push(format!(
                    "node {} crashed at {:.1}s; {} nodes (e.g. node {}) had not noticed after {:.1}s",
                    crash.node,
                    crash.at as f64 / 1e6,
                    crash.waiting.len(),
                    crash.waiting[0],
                    (now - crash.at) as f64 / 1e6
                ));
                return false;
            }
            true
        });
        self.failures.extend(failed);
    }

    fn finish(&mut self, _world: &World) -> Outcome {
        let bound_s = self.bound as f64 / 1e6;
        let latency = Summary::of(&self.latencies);
        let everywhere = Summary::of(&self.everywhere);
        let (verdict, detail) = if let Some(first) = self.failures.first() {
            (Verdict::Fail, format!("{first} (bound {bound_s:.1}s)"))
        } else if self.crashes == 0 {
            (Verdict::Pass, "no crashes to detect".to_owned())
        } else if !self.open.is_empty() {
            (Verdict::Inconclusive, format!("{} crashes not yet known everywhere when the run ended", self.open.len()))
        } else {
            (
                Verdict::Pass,
                format!(
                    "{} crashes known everywhere (max {:.1}s, bound {bound_s:.1}s; {} restarted first)",
                    self.everywhere.len(),
                    everywhere.max,
                    self.superseded
                ),
            )
        };
        Outcome {
            name: self.name(),
            verdict,
            detail,
            summaries: vec![
                ("detection_latency_s", latency),
                ("first_detection_s", Summary::of(&self.first)),
                ("known_everywhere_s", everywhere),
            ],
            counts: vec![("crashes", self.crashes), ("restarted_before_detected", self.superseded)],
            samples: vec![
                ("detection_latency_s", self.latencies.clone()),
                ("first_detection_s", self.first.clone()),
                ("known_everywhere_s", self.everywhere.clone()),
            ],
        }
    }
}
