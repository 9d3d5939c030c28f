//! Accuracy: on a network of sites (`[network.sites]`), network coordinates
//! estimate round trips. Every 5 simulated seconds, for a fixed sample of
//! node pairs (drawn once from a constant seed, so the run's own rng is not
//! touched), the relative error `|estimate − truth| / truth` of
//! `estimate_rtt(a, b)` against the model's mean round trip between a's and
//! b's sites. Two estimates: from both nodes' own coordinates ("own"), and
//! as node a would make it, from its own coordinate and the copy of b's it
//! holds ("view"; pairs where a holds none count as missing). With
//! `checks.coordinates` bounds, the "own" median and p95 must be within them
//! at `within` after the last node started; otherwise the check only
//! reports.

// Sample counts and times in f64 are small and non-negative.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal_protocol::{NodeId, estimate_rtt};

use super::{Check, Outcome};
use crate::Verdict;
use crate::net::Sites;
use crate::scenario::{CoordinateBounds, Scenario};
use crate::stats::Summary;
use crate::world::World;

/// Pairs sampled (fewer if N is small).
pub const PAIRS: usize = 2_000;
/// Simulated time between measurements, microseconds.
pub const EVERY_MICROS: u64 = 5_000_000;

/// One measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    /// Seconds since the last node started.
    pub t: f64,
    /// Median relative error, both nodes' own coordinates.
    pub median: f64,
    /// 95th percentile of the same.
    pub p95: f64,
    /// Median relative error as the first node of each pair sees it.
    pub view_median: f64,
    /// 95th percentile of the same.
    pub view_p95: f64,
    /// Share of pairs whose first node holds the second's coordinate.
    pub view_coverage: f64,
    /// Median relative error ("own") of the pairs within one site.
    pub same_site_median: f64,
    /// 95th percentile of the same.
    pub same_site_p95: f64,
}

/// See the module doc.
#[derive(Debug)]
pub struct CoordinateAccuracy {
    sites: Sites,
    pairs: Vec<(usize, usize)>,
    /// When the last node started (microseconds): time zero of the series.
    formed_at: u64,
    bounds: Option<CoordinateBounds>,
    series: Vec<Point>,
}

impl CoordinateAccuracy {
    /// For a scenario with sites; `None` otherwise.
    pub fn new(scenario: &Scenario) -> Option<CoordinateAccuracy> {
        let sites = scenario.network.sites.clone()?;
        let n = scenario.nodes;
        let mut rng = ChaCha8Rng::seed_from_u64(0xC00D);
        let count = PAIRS.min(n * n.saturating_sub(1));
        let mut pairs = Vec::with_capacity(count);
        while pairs.len() < count {
            let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
            if a != b {
                pairs.push((a, b));
            }
        }
        Some(CoordinateAccuracy {
            sites,
            pairs,
            formed_at: scenario.bootstrap.window().micros(),
            bounds: scenario.checks.coordinates.clone(),
            series: Vec::new(),
        })
    }

    /// The measurements so far.
    pub fn series(&self) -> &[Point] {
        &self.series
    }

    fn measure(&self, world: &World) -> Point {
        let mut own = Vec::with_capacity(self.pairs.len());
        let mut view = Vec::with_capacity(self.pairs.len());
        let mut same_site = Vec::new();
        let mut asked = 0usize;
        for &(a, b) in &self.pairs {
            let (Some(na), Some(nb)) = (world.nodes[a].node.as_ref(), world.nodes[b].node.as_ref()) else {
                continue;
            };
            let truth = self.sites.mean_rtt_secs(a, b);
            let error = |estimate: Option<std::time::Duration>| {
                estimate.map(|e| (e.as_secs_f64() - truth).abs() / truth).unwrap_or(f64::INFINITY)
            };
            let (Some(ca), Some(cb)) = (na.coordinate(), nb.coordinate()) else { continue };
            own.push(error(estimate_rtt(&ca, &cb)));
            if self.sites.site_of(a) == self.sites.site_of(b) {
                same_site.push(error(estimate_rtt(&ca, &cb)));
            }
            asked += 1;
            if let Some(held) = na.member_coordinate(NodeId::from_index(b as u64)) {
                view.push(error(estimate_rtt(&ca, &held)));
            }
        }
        let quantile = |samples: &mut Vec<f64>, q: f64| {
            if samples.is_empty() {
                return f64::INFINITY;
            }
            samples.sort_by(f64::total_cmp);
            let index = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index]
        };
        Point {
            t: world.now.saturating_sub(self.formed_at) as f64 / 1e6,
            median: quantile(&mut own, 0.5),
            p95: quantile(&mut own, 0.95),
            view_median: quantile(&mut view, 0.5),
            view_p95: quantile(&mut view, 0.95),
            view_coverage: if asked == 0 { 0.0 } else { view.len() as f64 / asked as f64 },
            same_site_median: quantile(&mut same_site, 0.5),
            same_site_p95: quantile(&mut same_site, 0.95),
        }
    }
}

impl Check for CoordinateAccuracy {
    fn name(&self) -> &'static str {
        "coordinates"
    }

    fn on_tick(&mut self, world: &World) {
        if world.now >= self.formed_at && (world.now - self.formed_at) % EVERY_MICROS == 0 {
            let point = self.measure(world);
            self.series.push(point);
        }
    }

    fn finish(&mut self, world: &World) -> Outcome {
        if self.series.last().is_none_or(|p| p.t < world.now.saturating_sub(self.formed_at) as f64 / 1e6) {
            let point = self.measure(world);
            self.series.push(point);
        }
        let last = self.series.last().copied().unwrap_or_default();
        let first_within =
            |median: f64, p95: f64| self.series.iter().find(|p| p.median <= median && p.p95 <= p95).map(|p| p.t);
        let (verdict, detail) = match &self.bounds {
            None => (
                Verdict::Pass,
                format!(
                    "relative RTT error at the end: median {:.3}, p95 {:.3} (view: {:.3}, {:.3}, {:.0}% held)",
                    last.median,
                    last.p95,
                    last.view_median,
                    last.view_p95,
                    last.view_coverage * 100.0
                ),
            ),
            Some(bounds) => {
                let within = bounds.within.micros() as f64 / 1e6;
                match self.series.iter().rev().find(|p| p.t <= within + 1e-9).copied() {
                    Some(p) if last.t + 1e-9 >= within => {
                        let ok = p.median <= bounds.median && p.p95 <= bounds.p95;
                        let reached = first_within(bounds.median, bounds.p95)
                            .map_or_else(|| "never".to_owned(), |t| format!("from {t:.0}s"));
                        (
                            if ok { Verdict::Pass } else { Verdict::Fail },
                            format!(
                                "at {:.0}s: median {:.3} (bound {}), p95 {:.3} (bound {}); within bounds {reached}",
                                p.t, p.median, bounds.median, p.p95, bounds.p95
                            ),
                        )
                    }
                    _ => (Verdict::Inconclusive, "the run ended before the bound's time".to_owned()),
                }
            }
        };
        let column = |f: fn(&Point) -> f64| self.series.iter().map(f).collect::<Vec<f64>>();
        Outcome {
            name: self.name(),
            verdict,
            detail,
            summaries: vec![
                ("relative_error_median_end", Summary::of(&[last.median])),
                ("relative_error_p95_end", Summary::of(&[last.p95])),
            ],
            counts: vec![("pairs", self.pairs.len() as u64)],
            samples: vec![
                ("t", column(|p| p.t)),
                ("median", column(|p| p.median)),
                ("p95", column(|p| p.p95)),
                ("view_median", column(|p| p.view_median)),
                ("view_p95", column(|p| p.view_p95)),
                ("view_coverage", column(|p| p.view_coverage)),
                ("same_site_median", column(|p| p.same_site_median)),
                ("same_site_p95", column(|p| p.same_site_p95)),
            ],
        }
    }
}
