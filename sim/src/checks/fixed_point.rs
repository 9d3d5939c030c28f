//! [`FixedPoint`] (stability, with workloads): placement reaches a fixed
//! point after each change. Once every running node's view of what
//! placement reads besides the statuses (the live members, which of them
//! have settled, the catalog: `Workloads::placement_view`) has been the
//! same, unchanged, for a bound, no replica starts on a node that did not
//! run it. The statuses that keep arriving meanwhile (a replica Starting,
//! then Running, the old copy Releasing, then Stopped) must not move
//! anything further: a placement that fed on its own moves would keep
//! moving replicas here, with nothing else changing.
//!
//! Suspicion does not change the view (suspects keep their work), so the
//! check also holds through a partition until someone is declared Dead.

use std::collections::BTreeMap;

use super::{Check, Outcome};
use crate::Verdict;
use crate::scenario::WorkloadLoad;
use crate::stats::Summary;
use crate::world::World;
use shoal_protocol::ReplicaKey;

/// How long after the views agree the moves they call for may still start:
/// the old owner's Releasing and the orphans' news spreading to the new
/// owners, then their start. (The replica's own start time is added.)
const MOVES_WITHIN_MICROS: u64 = 10_000_000;

/// See the module doc.
#[derive(Debug)]
pub struct FixedPoint {
    bound: u64,
    /// The view every running node agrees on, and since when.
    agreed: Option<(u64, u64)>,
    /// The nodes running (Starting or Running) each replica at the last look.
    last: BTreeMap<ReplicaKey, Vec<usize>>,
    next_tick: u64,
    /// Agreed stretches that lasted past the bound (judged), and their time.
    stretches: u64,
    judged_micros: u64,
    judging_since: Option<u64>,
    /// Starts on a new node within the bound (the moves a change calls for),
    /// and the latest of them after its views agreed.
    moves_in_bound: u64,
    latest_move: u64,
    /// Starts on a new node past the bound.
    late_moves: u64,
    failures: Vec<String>,
}

impl FixedPoint {
    /// The check for a run with `load`.
    pub fn new(load: &WorkloadLoad) -> FixedPoint {
        FixedPoint {
            bound: MOVES_WITHIN_MICROS + load.start_time.micros(),
            agreed: None,
            last: BTreeMap::new(),
            next_tick: 0,
            stretches: 0,
            judged_micros: 0,
            judging_since: None,
            moves_in_bound: 0,
            latest_move: 0,
            late_moves: 0,
            failures: Vec::new(),
        }
    }

    /// The view all running, unpaused nodes share, if they do.
    fn shared_view(world: &World) -> Option<u64> {
        let mut shared = None;
        for slot in world.nodes.iter().filter(|s| !s.paused) {
            let Some(node) = slot.node.as_ref() else { continue };
            let view = node.placement_view()?;
            if shared.is_some_and(|s| s != view) {
                return None;
            }
            shared = Some(view);
        }
        shared
    }

    fn end_stretch(&mut self, now: u64) {
        if let Some(since) = self.judging_since.take() {
            self.judged_micros += now.saturating_sub(since);
        }
        self.agreed = None;
    }
}

impl Check for FixedPoint {
    fn name(&self) -> &'static str {
        "fixed_point"
    }

    fn on_crash(&mut self, world: &World, _node: usize) {
        self.end_stretch(world.now);
    }

    fn on_start(&mut self, world: &World, _node: usize) {
        self.end_stretch(world.now);
    }

    fn on_tick(&mut self, world: &World) {
        if world.now < self.next_tick {
            return;
        }
        self.next_tick = world.now + 500_000;
        let view = FixedPoint::shared_view(world);
        if view != self.agreed.map(|(v, _)| v) {
            self.end_stretch(world.now);
            self.agreed = view.map(|v| (v, world.now));
        }
        let mut now_running: BTreeMap<ReplicaKey, Vec<usize>> = BTreeMap::new();
        for (key, copies) in super::workloads::copies(world) {
            now_running.insert(key, copies.into_iter().map(|(node, _)| node).collect());
        }
        if let Some((_, since)) = self.agreed {
            let after = world.now - since;
            if after > self.bound && self.judging_since.is_none() {
                self.judging_since = Some(world.now);
                self.stretches += 1;
            }
            for (key, nodes) in &now_running {
                let before = self.last.get(key).map(Vec::as_slice).unwrap_or_default();
                for node in nodes.iter().filter(|n| !before.contains(n)) {
                    if after <= self.bound {
                        self.moves_in_bound += 1;
                        self.latest_move = self.latest_move.max(after);
                        continue;
                    }
                    self.late_moves += 1;
                    if self.failures.len() < 5 {
                        self.failures.push(format!(
                            "{key} started on node {node} at {:.1}s, {:.1}s after every view settled (was on {before:?})",
                            world.now as f64 / 1e6,
                            after as f64 / 1e6
                        ));
                    }
                }
            }
        }
        self.last = now_running;
    }

    fn finish(&mut self, world: &World) -> Outcome {
        self.end_stretch(world.now);
        let bound_s = self.bound as f64 / 1e6;
        let (verdict, detail) = if let Some(first) = self.failures.first() {
            (Verdict::Fail, format!("{} late moves; first: {first} (bound {bound_s:.1}s)", self.late_moves))
        } else if self.stretches == 0 {
            (Verdict::Inconclusive, "the views never agreed for longer than the bound".to_owned())
        } else {
            (
                Verdict::Pass,
                format!(
                    "no move once the views settled ({} settled stretches, {:.0}s judged; {} moves within {bound_s:.1}s of agreeing, the latest after {:.1}s)",
                    self.stretches,
                    self.judged_micros as f64 / 1e6,
                    self.moves_in_bound,
                    self.latest_move as f64 / 1e6
                ),
            )
        };
        Outcome {
            name: self.name(),
            verdict,
            detail,
            summaries: vec![("latest_move_after_agreeing_s", Summary::of(&[self.latest_move as f64 / 1e6]))],
            counts: vec![
                ("settled_stretches", self.stretches),
                ("moves_after_settling", self.late_moves),
                ("moves_while_settling", self.moves_in_bound),
            ],
            samples: Vec::new(),
        }
    }
}
