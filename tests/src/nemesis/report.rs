//! What each event measured, and the run's summary: events per kind,
//! catalog entries lost, how fast exactly-R came back, violations.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::schedule::Event;

/// One event's outcome (one JSON line in `events.jsonl`).
#[derive(Clone, Debug, Serialize)]
pub struct EventRecord {
    /// The event (0: the baseline before any fault).
    pub event: Option<Event>,
    /// The catalog op's outcome, if the event had one.
    pub catalog_result: Option<String>,
    /// Milliseconds from a graceful stop's SIGTERM to none of its copies left.
    pub leave_ms: Option<u64>,
    /// The most recent downs of any agent within the flap window (the
    /// exactly-R bound doubles the settle time this many times, up to 6).
    pub downs: usize,
    /// The bounds applied, ms: membership, catalog, exactly-R.
    pub bounds_ms: [u64; 3],
    /// Milliseconds from the heal to each check first holding: membership,
    /// catalog, exactly-R (with no copy outside the mesh); `None`: never
    /// within the run's patience.
    pub after_heal_ms: [Option<u64>; 3],
    /// What each check still found at the last look before it first held
    /// (empty if it held at the first look): what the mesh was waiting on.
    pub waited_on: [Vec<String>; 3],
    /// The heal, in milliseconds since the Unix epoch (to find it in the
    /// agents' logs).
    pub healed_unix_ms: u64,
    /// Catalog entries no agent lists any more.
    pub lost: Vec<String>,
    /// What failed, in words.
    pub violations: Vec<String>,
}

/// The run's totals.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// The seed.
    pub seed: u64,
    /// Fault events run.
    pub events: usize,
    /// Fault events asked for (more than run if the run stopped early).
    pub requested: usize,
    /// Events per kind.
    pub per_kind: BTreeMap<String, usize>,
    /// Catalog ops made during holds (submits, deletes).
    pub catalog_ops: usize,
    /// Catalog entries lost, over the whole run.
    pub lost: usize,
    /// Events after which exactly-R held within its bound.
    pub restored: usize,
    /// Time from heal to exactly-R: median and maximum, ms.
    pub restore_p50_ms: u64,
    /// The maximum.
    pub restore_max_ms: u64,
    /// Time from heal to membership agreement: median and maximum, ms.
    pub membership_p50_ms: u64,
    /// The maximum.
    pub membership_max_ms: u64,
    /// Every violation, prefixed with its event number.
    pub violations: Vec<String>,
}

impl Summary {
    /// Adds up `records` (the baseline, event 0, counts only for violations).
    pub fn new(seed: u64, requested: usize, records: &[EventRecord]) -> Summary {
        let mut s = Summary { seed, requested, ..Summary::default() };
        let (mut restore, mut members) = (Vec::new(), Vec::new());
        for r in records {
            let number = r.event.as_ref().map_or(0, |e| e.number);
            s.violations.extend(r.violations.iter().map(|v| format!("event {number}: {v}")));
            s.lost += r.lost.len();
            let Some(event) = &r.event else { continue };
            s.events += 1;
            *s.per_kind.entry(event.action.kind().to_owned()).or_default() += 1;
            s.catalog_ops += usize::from(event.catalog.is_some());
            if let Some(ms) = r.after_heal_ms[2] {
                restore.push(ms);
                s.restored += usize::from(ms <= r.bounds_ms[2]);
            }
            members.extend(r.after_heal_ms[0]);
        }
        (s.restore_p50_ms, s.restore_max_ms) = p50_max(&mut restore);
        (s.membership_p50_ms, s.membership_max_ms) = p50_max(&mut members);
        s
    }

    /// The closing lines a person reads.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let kinds: Vec<String> = self.per_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(
            out,
            "seed {}: {} of {} fault events ({})",
            self.seed,
            self.events,
            self.requested,
            kinds.join(", ")
        );
        let _ = writeln!(out, "catalog ops during faults: {}; catalog entries lost: {}", self.catalog_ops, self.lost);
        let _ = writeln!(
            out,
            "exactly-R restored within its bound after {} of {} heals; after heal p50 {:.1} s, max {:.1} s",
            self.restored,
            self.events,
            secs(self.restore_p50_ms),
            secs(self.restore_max_ms)
        );
        let _ = writeln!(
            out,
            "membership agreed after heal p50 {:.1} s, max {:.1} s",
            secs(self.membership_p50_ms),
            secs(self.membership_max_ms)
        );
        let _ = writeln!(out, "violations: {}", self.violations.len());
        for v in &self.violations {
            let _ = writeln!(out, "  {v}");
        }
        out
    }
}

fn p50_max(values: &mut [u64]) -> (u64, u64) {
    values.sort_unstable();
    (values.get(values.len() / 2).copied().unwrap_or(0), values.last().copied().unwrap_or(0))
}

fn secs(ms: u64) -> f64 {
    Duration::from_millis(ms).as_secs_f64()
}
