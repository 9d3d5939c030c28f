//! Safety: no healthy, reachable member is declared Dead.
//!
//! A `MemberDown` at a viewer is *false* when, at that moment, the subject
//! is running its current generation, is not paused, and neither it, the
//! viewer, nor the network as a whole has been touched by a fault within the
//! calm window (the longest suspicion timeout plus 10 s, so a suspicion that a
//! fault legitimately started may still expire). Each (subject, generation,
//! incarnation) counts once, however many viewers learn of it. The run fails
//! if the count exceeds the scenario's `max_false_dead`.

use std::collections::BTreeSet;

use shoal_protocol::Event;

use super::{Check, Outcome};
use crate::Verdict;
use crate::scenario::Scenario;
use crate::world::World;

/// See the module doc.
#[derive(Debug)]
pub struct NoFalseDead {
    allowed: u64,
    seen: BTreeSet<(usize, u64, u32)>,
    /// (time s, subject, viewer, declarer) of the first few, for the report.
    first: Vec<(f64, usize, usize, Option<usize>)>,
    /// False verdicts first declared by a node that was itself cut off or
    /// stalled (its stale verdict spread once it was back).
    from_disturbed: u64,
    all_dead: u64,
}

impl NoFalseDead {
    /// The check for `scenario`.
    pub fn new(scenario: &Scenario, _world: &World) -> NoFalseDead {
        NoFalseDead {
            allowed: scenario.checks.max_false_dead,
            seen: BTreeSet::new(),
            first: Vec::new(),
            all_dead: 0,
            from_disturbed: 0,
        }
    }
}

impl Check for NoFalseDead {
    fn name(&self) -> &'static str {
        "no_false_dead"
    }

    fn on_event(&mut self, world: &World, viewer: usize, event: &Event) {
        let Event::MemberDown { id } = *event else { return };
        self.all_dead += 1;
        let Some(subject) = world.index_of(id) else { return };
        let now = world.now;
        let slot = &world.nodes[subject];
        if !slot.healthy(now) || !world.nodes[viewer].healthy(now) || !world.network_calm() {
            return;
        }
        let Some(member) = world.nodes[viewer].node.as_ref().and_then(|n| n.member(id)) else { return };
        if member.generation != slot.generation {
            return; // an old run of the subject: rightly dead
        }
        if self.seen.insert((subject, member.generation, member.incarnation)) {
            let origin = world.dead_origin;
            if origin.is_some_and(|o| !world.nodes[o].healthy(now)) {
                self.from_disturbed += 1;
            }
            if self.first.len() < 5 {
                self.first.push((now as f64 / 1e6, subject, viewer, origin));
            }
        }
    }

    fn finish(&mut self, _world: &World) -> Outcome {
        let count = self.seen.len() as u64;
        let verdict = if count <= self.allowed { Verdict::Pass } else { Verdict::Fail };
        let detail = if count == 0 {
            "no healthy member was declared Dead".to_owned()
        } else {
            let examples: Vec<String> = self
                .first
                .iter()
                .map(|(t, s, v, o)| {
                    let by = o.map_or_else(|| "?".to_owned(), |o| o.to_string());
                    format!("node {s} at {t:.3}s (seen by {v}, declared by {by})")
                })
                .collect();
            format!(
                "{count} healthy members declared Dead (allowed {}; {} of them declared by a node that had been cut off or stalled): {}",
                self.allowed,
                self.from_disturbed,
                examples.join(", ")
            )
        };
        Outcome {
            name: self.name(),
            verdict,
            detail,
            summaries: Vec::new(),
            counts: vec![
                ("false_dead", count),
                ("false_dead_from_disturbed", self.from_disturbed),
                ("dead_events", self.all_dead),
            ],
            samples: Vec::new(),
        }
    }
}
