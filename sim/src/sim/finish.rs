//! Ticks, samples and the final report.

// Node indexes fit u32 (at most MAX_NODES); times in f64 seconds are small and non-negative.
#![allow(clippy::cast_possible_truncation)]

use crate::report::{ProtocolTotals, Report, Sample, Verdict};
use crate::stats::Summary;

use super::{Action, Simulation, TICK_MICROS};

impl Simulation {
    pub(super) fn tick(&mut self) {
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

    pub(super) fn sample(&mut self) {
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

    pub(super) fn distinct_views(&self) -> usize {
        let mut hashes: Vec<u64> = (0..self.world.nodes.len()).filter_map(|i| self.world.view_hash(i)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        hashes.len()
    }

    pub(super) fn finish(mut self) -> Report {
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
        let mut totals = ProtocolTotals::default();
        for slot in &self.world.nodes {
            if let Some(node) = slot.node.as_ref() {
                totals.add(&node.totals());
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
            implementation: self.imp.name(),
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
            protocol: totals,
            steps: self.steps,
            wall_s: wall,
            start_wall_s: self.start_wall.unwrap_or(wall),
            speedup: if wall > 0.0 { duration / wall } else { 0.0 },
            speedup_second_half,
            samples: self.samples,
            trace_error: self.trace.error.as_ref().map(ToString::to_string),
            replay: crate::report::replay_command(&self.scenario.name, &self.scenario, self.seed),
        }
    }
}
