//! Liveness: once every fault has healed, every running node sees exactly the
//! running nodes, each Alive at its current generation (100%, not 99.9%),
//! within `c·log2(N)` protocol periods plus the longest suspicion timeout.
//!
//! Each quiet period (no convergence-blocking fault active) is an episode;
//! one cut short by a new fault before converging is not judged. The check
//! runs every simulated 100 ms: first an O(N) necessary condition (every
//! running node counts N live members), then, only when that holds, the full
//! O(N · members) comparison, backing off while it keeps failing.

use super::{Check, Outcome, convergence_bound_micros};
use crate::Verdict;
use crate::scenario::Scenario;
use crate::stats::Summary;
use crate::world::World;

/// See the module doc.
#[derive(Debug)]
pub struct Convergence {
    bound: u64,
    episode: Option<u64>,
    next_full: u64,
    backoff: u64,
    times: Vec<f64>,
    interrupted: u64,
    failures: Vec<String>,
    resolved: Option<u64>,
}

impl Convergence {
    /// The check for `scenario`.
    pub fn new(scenario: &Scenario, world: &World) -> Convergence {
        Convergence {
            bound: convergence_bound_micros(scenario, world),
            episode: None,
            next_full: 0,
            backoff: 0,
            times: Vec::new(),
            interrupted: 0,
            failures: Vec::new(),
            resolved: None,
        }
    }

    fn describe_gap(world: &World) -> String {
        (0..world.nodes.len()).find_map(|viewer| world.view_gap(viewer)).unwrap_or_else(|| "views differ".to_owned())
    }
}

impl Check for Convergence {
    fn name(&self) -> &'static str {
        "convergence"
    }

    fn on_tick(&mut self, world: &World) {
        let now = world.now;
        let quiet = world.quiet_since.filter(|q| Some(*q) != self.resolved);
        if self.episode != quiet {
            if self.episode.is_some() {
                self.interrupted += 1;
            }
            self.episode = quiet;
            self.backoff = 0;
            self.next_full = 0;
        }
        let Some(start) = self.episode else { return };
        let cheap = world.nodes.iter().all(|s| s.node.as_ref().is_none_or(|n| n.live_members() == world.running));
        let mut converged = false;
        if cheap && now >= self.next_full {
            converged = world.views_are_exact();
            if !converged {
                self.backoff = (self.backoff * 2).clamp(200_000, 5_000_000);
                self.next_full = now + self.backoff;
            }
        }
        if converged {
            self.times.push((now - start) as f64 / 1e6);
            self.resolved = Some(start);
            self.episode = None;
        } else if now > start + self.bound {
            self.failures.push(format!(
                "not converged {:.1}s after the faults healed at {:.1}s: {}",
                (now - start) as f64 / 1e6,
                start as f64 / 1e6,
                Convergence::describe_gap(world)
            ));
            self.resolved = Some(start);
            self.episode = None;
        }
    }

    fn finish(&mut self, world: &World) -> Outcome {
        let summary = Summary::of(&self.times);
        let bound_s = self.bound as f64 / 1e6;
        let (verdict, detail) = if let Some(first) = self.failures.first() {
            (Verdict::Fail, format!("{} (bound {bound_s:.1}s)", first))
        } else if let Some(start) = self.episode {
            if self.times.is_empty() {
                (
                    Verdict::Inconclusive,
                    format!(
                        "run ended {:.1}s after the last heal, before converging or the {bound_s:.1}s bound: lengthen it",
                        (world.now - start) as f64 / 1e6
                    ),
                )
            } else {
                (
                    Verdict::Pass,
                    format!(
                        "converged {} times (max {:.1}s, bound {bound_s:.1}s); the last quiet period was too short to judge",
                        self.times.len(),
                        summary.max
                    ),
                )
            }
        } else if self.times.is_empty() {
            (Verdict::Inconclusive, "no quiet period to judge".to_owned())
        } else {
            (
                Verdict::Pass,
                format!(
                    "converged after every heal ({} times, max {:.1}s, bound {bound_s:.1}s)",
                    self.times.len(),
                    summary.max
                ),
            )
        };
        Outcome {
            name: self.name(),
            verdict,
            detail,
            summaries: vec![("time_to_converge_s", summary)],
            counts: vec![("episodes_judged", self.times.len() as u64), ("episodes_interrupted", self.interrupted)],
            samples: vec![("time_to_converge_s", self.times.clone())],
        }
    }
}
