//! Liveness: once every fault has healed, every running node sees exactly the
//! running nodes, each Alive at its current generation (100%, not 99.9%),
//! within `c·log2(N)` protocol periods plus the longest suspicion timeout.
//!
//! Each quiet period (no convergence-blocking fault active) is an episode;
//! one cut short by a new fault before converging is not judged. The check
//! runs every simulated 100 ms: first an O(N) necessary condition (every
//! running node counts N live members), then, only when that holds, the full
//! O(N · members) comparison, backing off while it keeps failing.
//!
//! Under sustained loss (the scenario's own network loses at least
//! [`SUSTAINED_LOSS`] of all datagrams for the whole run) views are never
//! equal at an instant: false suspicions are raised faster than they are
//! refuted everywhere (ALGORITHM.md section 11, "Convergence under sustained
//! loss"). There, as that section defines it, converged means (a) every
//! running node's live set (Alive or Suspect) is exactly the running nodes
//! at their current generations, within the same bound, and (c) every
//! suspicion of a running member, raised while the mesh is quiet and both
//! ends healthy, is refuted at each viewer within the shortest suspicion
//! timeout (`min`: one that outlives it could become a verdict once
//! confirmed). (b), no running member declared Dead, is `no_false_dead`'s.

use std::collections::BTreeMap;

use shoal_protocol::Event;

use super::{Check, Outcome, convergence_bound_micros};
use crate::Verdict;
use crate::scenario::Scenario;
use crate::stats::Summary;
use crate::world::World;

/// The scenario network's loss rate from which convergence is judged on live
/// sets (see the module doc). At 10% loss and `lan`, a probe of a live member
/// fails about once in 1,500 (both direct pings, then every relay's
/// four-hop path): a fresh false suspicion every few seconds at N = 200, each
/// seen for a fraction of a second, so an instant with no Suspect in any
/// view becomes rare; at 5% (`flaky-5pct-loss`) the strict check passes.
pub const SUSTAINED_LOSS: f64 = 0.1;

/// See the module doc.
#[derive(Debug)]
pub struct Convergence {
    bound: u64,
    /// Judging live sets and suspicion lifetimes (sustained loss), not
    /// exact views.
    lossy: bool,
    /// Under sustained loss: the longest a suspicion of a running member may
    /// stay unrefuted at a viewer (`min`).
    suspicion_bound: u64,
    /// Open suspicions judged under sustained loss: (viewer, subject) →
    /// since when.
    suspected: BTreeMap<(usize, usize), u64>,
    /// How long each judged suspicion lasted at its viewer, seconds.
    lifetimes: Vec<f64>,
    /// Suspicions that outlived `suspicion_bound`.
    overlong: u64,
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
        let (min, _) = world.config.suspicion_bounds(scenario.nodes);
        Convergence {
            bound: convergence_bound_micros(scenario, world),
            lossy: scenario.network.loss >= SUSTAINED_LOSS,
            suspicion_bound: u64::try_from(min.as_micros()).unwrap_or(u64::MAX),
            suspected: BTreeMap::new(),
            lifetimes: Vec::new(),
            overlong: 0,
            episode: None,
            next_full: 0,
            backoff: 0,
            times: Vec::new(),
            interrupted: 0,
            failures: Vec::new(),
            resolved: None,
        }
    }

    fn describe_gap(&self, world: &World) -> String {
        let gap = |viewer| if self.lossy { world.live_set_gap(viewer) } else { world.view_gap(viewer) };
        (0..world.nodes.len()).find_map(gap).unwrap_or_else(|| "views differ".to_owned())
    }

    /// Under sustained loss: fails every suspicion still open past the bound
    /// (once each, then forgotten).
    fn judge_suspicions(&mut self, world: &World) {
        let bound = self.suspicion_bound;
        let now = world.now;
        let overdue: Vec<((usize, usize), u64)> =
            self.suspected.iter().filter(|(_, since)| now > **since + bound).map(|(k, v)| (*k, *v)).collect();
        for ((viewer, subject), since) in overdue {
            self.suspected.remove(&(viewer, subject));
            self.overlong += 1;
            self.lifetimes.push((now - since) as f64 / 1e6);
            if self.failures.len() < 5 {
                self.failures.push(format!(
                    "node {viewer} has held running node {subject} Suspect since {:.1}s, past the shortest suspicion timeout ({:.1}s)",
                    since as f64 / 1e6,
                    bound as f64 / 1e6
                ));
            }
        }
    }
}

impl Check for Convergence {
    fn name(&self) -> &'static str {
        "convergence"
    }

    fn on_event(&mut self, world: &World, viewer: usize, event: &Event) {
        if !self.lossy {
            return;
        }
        let (id, suspect) = match *event {
            Event::MemberSuspect { id } => (id, true),
            Event::MemberAlive { id }
            | Event::MemberUp { id }
            | Event::MemberDown { id }
            | Event::MemberLeft { id } => (id, false),
            Event::MetadataChanged { .. } | Event::SelfRefuted { .. } => return,
        };
        let Some(subject) = world.index_of(id) else { return };
        if !suspect {
            if let Some(since) = self.suspected.remove(&(viewer, subject)) {
                self.lifetimes.push((world.now - since) as f64 / 1e6);
            }
            return;
        }
        // Judged only when nothing else explains it: the mesh quiet, both
        // ends healthy, the subject running the generation suspected.
        let now = world.now;
        let judged = world.quiet_since.is_some()
            && world.network_calm()
            && world.nodes[viewer].healthy(now)
            && world.nodes[subject].healthy(now)
            && world.nodes[viewer]
                .node
                .as_ref()
                .and_then(|n| n.member(id))
                .is_some_and(|m| m.generation == world.nodes[subject].generation);
        // A Suspect at a newer incarnation is a new suspicion with a new
        // timer (the member refuted, and this viewer missed the refutation).
        if judged {
            self.suspected.insert((viewer, subject), now);
        } else {
            self.suspected.remove(&(viewer, subject));
        }
    }

    fn on_crash(&mut self, _world: &World, node: usize) {
        // A crashed subject's suspicion is true; a crashed viewer's is gone.
        self.suspected.retain(|(viewer, subject), _| *viewer != node && *subject != node);
    }

    fn on_start(&mut self, _world: &World, node: usize) {
        self.suspected.retain(|(viewer, subject), _| *viewer != node && *subject != node);
    }

    fn on_tick(&mut self, world: &World) {
        if self.lossy {
            self.judge_suspicions(world);
        }
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
            converged = if self.lossy { world.live_sets_are_exact() } else { world.views_are_exact() };
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
                self.describe_gap(world)
            ));
            self.resolved = Some(start);
            self.episode = None;
        }
    }

    fn finish(&mut self, world: &World) -> Outcome {
        if self.lossy {
            self.judge_suspicions(world);
        }
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
        let mut outcome = Outcome {
            name: self.name(),
            verdict,
            detail,
            summaries: vec![("time_to_converge_s", summary)],
            counts: vec![("episodes_judged", self.times.len() as u64), ("episodes_interrupted", self.interrupted)],
            samples: vec![("time_to_converge_s", self.times.clone())],
        };
        if self.lossy {
            let lifetimes = Summary::of(&self.lifetimes);
            outcome.detail = format!(
                "{}; live sets judged (sustained loss), {} suspicions of running members refuted, longest {:.2}s (bound {:.1}s)",
                outcome.detail,
                self.lifetimes.len(),
                lifetimes.max,
                self.suspicion_bound as f64 / 1e6
            );
            outcome.summaries.push(("suspicion_lifetime_s", lifetimes));
            outcome.counts.push(("suspicions_overlong", self.overlong));
        }
        outcome
    }
}
