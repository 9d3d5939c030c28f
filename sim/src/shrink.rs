//! Shrinking: from a run that fails a check, the smallest scenario that
//! still fails the same check.
//!
//! The search is greedy, like QuickCheck's and Hypothesis's shrinkers: it
//! proposes simplifications of the current scenario one at a time, runs
//! each, and adopts the first that still fails the same check. Each round
//! tries, in this order:
//!
//! 1. a shorter run (faults that would start after the end go with it);
//! 2. fewer faults: chunks of the schedule removed, all of it first, then
//!    halves, quarters ... down to single faults, each from the end back
//!    (removing a late fault leaves the run before it untouched);
//! 3. fault times in whole seconds (a random draw's are to the microsecond);
//! 4. the nodes the faults name renumbered 1, 2, 3, ... (node 0, the first
//!    up, is kept), then fewer nodes;
//! 5. the whole schedule moved earlier, the run shortened by as much;
//! 6. shorter faults, one at a time from the last: healed sooner, or started
//!    later with the same heal time; fewer nodes touched; milder parameters
//!    (loss rate, delay, skew, downtime);
//! 7. two overlapping faults of the same kind merged into one;
//! 8. a calmer network (no loss, duplication, reordering or bandwidth cap;
//!    the default latency), a mesh that starts formed or joins faster, fewer
//!    workloads (or none).
//!
//! Before the first round the scenario is made explicit: the seed's random
//! faults and every repeat become plain entries of `faults`, each naming
//! the nodes it chose in the original run (read from its JSONL trace), so
//! each can be removed, shortened or moved alone.
//!
//! One rng drives a whole run, so every change redraws what follows it (a
//! fault removed at 40 s redraws every latency after 40 s): a candidate is
//! judged only by running it, first with the current seed. When a whole
//! round finds nothing, it is tried once more with each candidate on the
//! next [`Options::nearby_seeds`] seeds; a candidate that fails on one of
//! them is adopted with that seed. The search ends when that round too finds
//! nothing ([`Stop::Done`]: no single step from the result still fails), or
//! when the budget is spent.
//!
//! Deterministic: the candidates, their order and the seeds tried are
//! functions of the scenario and the seed, and the budget is a number of
//! runs, so the same failure shrinks to the same scenario. The optional wall
//! clock limit can only cut the search short, and [`Shrunk::stop`] says when
//! it did.

// Node counts and fault indexes are far below u32::MAX.
#![allow(clippy::cast_possible_truncation)]

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant as WallInstant};

use serde::{Deserialize, Serialize};

use crate::fault::{FaultKind, Select};
use crate::impls::Impl;
use crate::net::Latency;
use crate::report::{Report, Verdict, replay_command};
use crate::scenario::{Bootstrap, FaultSpec, Scenario};
use crate::sim::{SimError, Simulation};
use crate::units::Dur;

/// How hard to look.
#[derive(Clone, Debug)]
pub struct Options {
    /// Most simulation runs, the original's included. For a given budget the
    /// result is always the same.
    pub max_runs: u32,
    /// When a whole round finds nothing smaller on the current seed, try
    /// each candidate on this many following seeds (0: the current seed
    /// only).
    pub nearby_seeds: u64,
    /// Stop after this much wall time, whatever the runs left. This cuts the
    /// search, so the result then depends on the machine: prefer
    /// `max_runs`.
    pub time_limit: Option<Duration>,
    /// The implementation the runs drive.
    pub implementation: Impl,
}

impl Default for Options {
    fn default() -> Options {
        Options { max_runs: 200, nearby_seeds: 8, time_limit: None, implementation: Impl::Shoal }
    }
}

/// Why the search ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stop {
    /// A whole round, on the current seed and the nearby ones, found no
    /// smaller scenario that fails.
    Done,
    /// The budget of runs was spent first.
    Runs,
    /// The wall-clock limit cut the search.
    Time,
}

/// A scenario's size, in the measures the shrinker reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Size {
    /// Fault instances that start within the run (each repeat and each of
    /// the seed's random faults counted).
    pub faults: usize,
    /// Nodes.
    pub nodes: usize,
    /// Simulated time.
    pub duration: Dur,
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} faults, {} nodes, {}", self.faults, self.nodes, self.duration)
    }
}

/// One simplification the search adopted.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// The run that showed it still fails (1 is the original).
    pub run: u32,
    /// What changed.
    pub change: String,
    /// The seed it failed with.
    pub seed: u64,
    /// The size after it.
    pub size: Size,
}

/// The result: the smallest failing scenario found.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The check both the original and the result fail.
    pub check: String,
    /// What was shrunk.
    pub original: Scenario,
    /// Its seed.
    pub original_seed: u64,
    /// Its size.
    pub original_size: Size,
    /// The smallest failing scenario found.
    pub scenario: Scenario,
    /// The seed it fails with.
    pub seed: u64,
    /// Its size.
    pub size: Size,
    /// Simulation runs spent, the original's included.
    pub runs: u32,
    /// Why the search ended.
    pub stop: Stop,
    /// What was adopted, in order.
    pub steps: Vec<Step>,
    /// Candidates on which the simulator panicked (a bug of its own: replay
    /// it from the change named).
    pub panicked: Vec<String>,
    /// The result's failing run.
    pub report: Report,
    /// The budget (for the summary).
    max_runs: u32,
}

/// Why nothing could be shrunk.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// The original run passes every check: there is nothing to shrink.
    #[error("`{scenario}` seed {seed} passes every check: nothing to shrink")]
    Passes {
        /// The scenario's name.
        scenario: String,
        /// The seed.
        seed: u64,
    },
    /// The original scenario cannot run.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// The result does not read back from its own TOML as the same scenario
    /// (a bug in the scenario format).
    #[error("the shrunk scenario does not round-trip through TOML: {0}")]
    RoundTrip(String),
}

/// Shrinks the failing run of `scenario` with `seed`. `on_step` hears of
/// every simplification as it is adopted (for progress output).
pub fn shrink(
    scenario: &Scenario,
    seed: u64,
    options: &Options,
    on_step: &mut dyn FnMut(&Step),
) -> Result<Shrunk, ShrinkError> {
    let started = WallInstant::now();
    let (report, explicit) = run_recording(scenario, seed, options.implementation)?;
    let Some(check) = report.checks.iter().find(|c| c.verdict == Verdict::Fail).map(|c| c.name.to_owned()) else {
        return Err(ShrinkError::Passes { scenario: scenario.name.clone(), seed });
    };
    let original_size = size_of(scenario, seed, options.implementation);
    let mut search = Search {
        options,
        started,
        check,
        runs: 1,
        stop: None,
        wide: false,
        current: scenario.clone(),
        seed,
        report,
        steps: Vec::new(),
        panicked: Vec::new(),
        on_step,
    };
    if explicit != *scenario {
        // Made explicit, the run draws differently: look on nearby seeds too.
        let change = "faults made explicit (random draws and repeats listed, with their nodes)";
        if !search.attempt(explicit.clone(), change.to_owned()) {
            search.wide = true;
            search.attempt(explicit, change.to_owned());
            search.wide = false;
        }
    }
    search.rounds();
    let Search { check, runs, stop, current, seed: found_seed, report, steps, panicked, .. } = search;
    let mut result = current;
    result.name = format!("{}-shrunk", scenario.name);
    result.description = format!("`{}` seed {seed}, shrunk: still fails {check}", scenario.name);
    let text = toml::to_string(&result).map_err(|e| ShrinkError::RoundTrip(e.to_string()))?;
    let back = Scenario::from_toml(&text).map_err(|e| ShrinkError::RoundTrip(e.to_string()))?;
    if back != result {
        return Err(ShrinkError::RoundTrip(format!("read back differently:\n{text}")));
    }
    Ok(Shrunk {
        size: size_of(&result, found_seed, options.implementation),
        check,
        original: scenario.clone(),
        original_seed: seed,
        original_size,
        scenario: result,
        seed: found_seed,
        runs,
        stop: stop.unwrap_or(Stop::Done),
        steps,
        panicked,
        report,
        max_runs: options.max_runs,
    })
}

impl Shrunk {
    /// The command that replays the result once written to `path`.
    pub fn replay(&self, path: &str, implementation: Impl) -> String {
        let mut cmd = replay_command(path, &self.scenario, self.seed);
        if implementation != Impl::Shoal {
            cmd = cmd.replacen(" --", " --features compare --", 1) + &format!(" --impl {}", implementation.name());
        }
        cmd
    }

    /// The file to write at `path`: a comment saying where it comes from and
    /// how to replay it, then the scenario. The same failure, shrunk with
    /// the same budget, gives the same file.
    pub fn file(&self, path: &str, implementation: Impl) -> String {
        let text = toml::to_string(&self.scenario).unwrap_or_default();
        format!(
            "# The smallest failing case found for `{}` seed {}: it fails the same check, {}.\n\
             # faults {} -> {}, nodes {} -> {}, duration {} -> {}; {} runs, {}.\n\
             # Replay: {}\n\n{text}",
            self.original.name,
            self.original_seed,
            self.check,
            self.original_size.faults,
            self.size.faults,
            self.original_size.nodes,
            self.size.nodes,
            self.original_size.duration,
            self.size.duration,
            self.runs,
            self.stop_text(),
            self.replay(path, implementation),
        )
    }

    fn stop_text(&self) -> String {
        match self.stop {
            Stop::Done => "search finished (no single step from here still fails)".to_owned(),
            Stop::Runs => format!("search cut by its budget of {} runs (may shrink further)", self.max_runs),
            Stop::Time => {
                "search cut by the time limit (may shrink further; the cut depends on the machine)".to_owned()
            }
        }
    }

    /// What a person reads: sizes before and after, the steps, the file and
    /// the replay command.
    pub fn summary(&self, path: &str, implementation: Impl) -> String {
        let mut lines = vec![
            format!(
                "shrunk    `{}` seed {} fails {}; the scenario below fails it too, with seed {}",
                self.original.name, self.original_seed, self.check, self.seed
            ),
            format!("          faults    {:>6} -> {}", self.original_size.faults, self.size.faults),
            format!("          nodes     {:>6} -> {}", self.original_size.nodes, self.size.nodes),
            format!("          duration  {:>6} -> {}", self.original_size.duration.to_string(), self.size.duration),
        ];
        let (a, b) = (&self.original.network, &self.scenario.network);
        if a != b {
            lines.push(format!("          network   {} -> {}", network_text(a), network_text(b)));
        }
        if self.original.bootstrap != self.scenario.bootstrap {
            let text = |b: &Bootstrap| match b {
                Bootstrap::Staggered { over } => format!("staggered over {over}"),
                Bootstrap::OneSeed { over } => format!("one seed, over {over}"),
                Bootstrap::Formed => "formed".to_owned(),
            };
            lines.push(format!(
                "          bootstrap {} -> {}",
                text(&self.original.bootstrap),
                text(&self.scenario.bootstrap)
            ));
        }
        if self.original.workloads != self.scenario.workloads {
            let text = |w: &Option<crate::scenario::WorkloadLoad>| {
                w.as_ref().map_or("none".to_owned(), |w| format!("{} x {} replicas", w.count, w.replicas))
            };
            lines.push(format!(
                "          workloads {} -> {}",
                text(&self.original.workloads),
                text(&self.scenario.workloads)
            ));
        }
        lines.push(format!("search    {} runs; {}", self.runs, self.stop_text()));
        for step in &self.steps {
            lines.push(format!("  run {:>4}  {}  (seed {}; {})", step.run, step.change, step.seed, step.size));
        }
        for panic in &self.panicked {
            lines.push(format!("PANIC     the simulator panicked on a candidate, {panic}"));
        }
        lines.push(format!("written   {path}"));
        lines.push(format!("replay    {}", self.replay(path, implementation)));
        lines.join("\n")
    }
}

fn network_text(n: &crate::net::NetworkSpec) -> String {
    let latency = match &n.latency {
        Latency::Constant { value } => format!("{value}"),
        Latency::Uniform { min, max } => format!("{min}-{max}"),
        Latency::Exponential { base, mean } => format!("{base}+exp({mean})"),
        Latency::Pareto { base, scale, shape } => format!("{base}+pareto({scale}, {shape})"),
    };
    let mut text = format!("latency {latency}, loss {}", n.loss);
    if n.duplicate > 0.0 {
        text.push_str(&format!(", duplicate {}", n.duplicate));
    }
    if n.reorder > 0.0 {
        text.push_str(&format!(", reorder {}", n.reorder));
    }
    if let Some(bandwidth) = n.bandwidth {
        text.push_str(&format!(", uplink {bandwidth} B/s"));
    }
    text
}

/// The size of `scenario` run with `seed` (random faults drawn).
pub fn size_of(scenario: &Scenario, seed: u64, implementation: Impl) -> Size {
    let faults = Simulation::with_impl(scenario.clone(), seed, None, implementation)
        .map_or(scenario.faults.len(), |sim| sim.fault_plan().iter().filter(|f| f.at <= scenario.duration).count());
    Size { faults, nodes: scenario.nodes, duration: scenario.duration }
}

/// Runs the original once, reading from its JSONL trace the nodes each
/// fault chose, and returns its report and its explicit form.
fn run_recording(scenario: &Scenario, seed: u64, implementation: Impl) -> Result<(Report, Scenario), SimError> {
    let sink = FaultStarts::default();
    let starts = Rc::clone(&sink.starts);
    let sim = Simulation::with_impl(scenario.clone(), seed, Some(Box::new(sink)), implementation)?;
    let plan = sim.fault_plan();
    let report = sim.run();
    let starts = starts.borrow();
    Ok((report, explicit(scenario, &plan, &starts)))
}

/// `scenario` with its fault plan written out: one entry per fault that
/// starts within the run, in the order they start, each naming the nodes
/// it chose (`starts[k]`, the k-th to start).
fn explicit(scenario: &Scenario, plan: &[FaultSpec], starts: &[Vec<usize>]) -> Scenario {
    let mut order: Vec<usize> = (0..plan.len()).filter(|&i| plan[i].at <= scenario.duration).collect();
    order.sort_by_key(|&i| (plan[i].at, i));
    let faults = order
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let mut fault = plan[i].clone();
            if let (Some(select), Some(nodes)) = (fault.kind.select_mut(), starts.get(k)) {
                *select = Select::List(nodes.clone());
            }
            fault
        })
        .collect();
    Scenario { faults, random_faults: None, ..scenario.clone() }
}

/// A JSONL trace sink that keeps only the nodes of each fault start, in
/// order.
#[derive(Debug, Default)]
struct FaultStarts {
    line: Vec<u8>,
    starts: Rc<RefCell<Vec<Vec<usize>>>>,
}

impl FaultStarts {
    fn end_line(&mut self) {
        #[derive(Deserialize)]
        struct Record {
            kind: String,
            phase: String,
            nodes: Vec<usize>,
        }
        let needle = b"\"phase\":\"start\"";
        if self.line.windows(needle.len()).any(|w| w == needle) {
            if let Ok(record) = serde_json::from_slice::<Record>(&self.line) {
                if record.kind == "fault" && record.phase == "start" {
                    self.starts.borrow_mut().push(record.nodes);
                }
            }
        }
        self.line.clear();
    }
}

impl Write for FaultStarts {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..end]);
            self.end_line();
            rest = &rest[end + 1..];
        }
        self.line.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SECOND: u64 = 1_000_000;

/// A candidate: a scenario, and what changed, in words.
type Candidate = (Scenario, String);

/// The search in progress.
struct Search<'a> {
    options: &'a Options,
    started: WallInstant,
    check: String,
    runs: u32,
    stop: Option<Stop>,
    /// Trying each candidate on the nearby seeds (after a fruitless round).
    wide: bool,
    current: Scenario,
    seed: u64,
    report: Report,
    steps: Vec<Step>,
    panicked: Vec<String>,
    on_step: &'a mut (dyn FnMut(&Step) + 'a),
}

impl Search<'_> {
    /// Rounds of every pass until one finds nothing (on the nearby seeds
    /// too) or the budget is spent.
    fn rounds(&mut self) {
        type Pass = fn(&mut Search<'_>) -> bool;
        let passes: [Pass; 9] = [
            |s| s.repeatedly(shorter_run),
            |s| s.repeatedly(fewer_faults),
            |s| s.repeatedly(rounded),
            |s| s.repeatedly(renumbered),
            |s| s.repeatedly(fewer_nodes),
            |s| s.repeatedly(earlier),
            |s| s.shorter_faults(),
            |s| s.repeatedly(merged),
            |s| s.repeatedly(calmer),
        ];
        while self.stop.is_none() {
            let before = self.steps.len();
            for pass in passes {
                pass(self);
                if self.stop.is_some() {
                    return;
                }
            }
            if self.steps.len() > before {
                continue;
            }
            if self.wide || self.options.nearby_seeds == 0 {
                self.stop = Some(Stop::Done);
            } else {
                self.wide = true;
            }
        }
    }

    /// Whether the budget is spent (and if so, records why).
    fn spent(&mut self) -> bool {
        if self.stop.is_some() {
            return true;
        }
        if self.runs >= self.options.max_runs {
            self.stop = Some(Stop::Runs);
        } else if self.options.time_limit.is_some_and(|limit| self.started.elapsed() >= limit) {
            self.stop = Some(Stop::Time);
        }
        self.stop.is_some()
    }

    /// Runs `candidate` on the current seed (when wide, on the nearby seeds
    /// instead: the current one has already passed it) and adopts it, with
    /// the seed, if it fails the check.
    fn attempt(&mut self, candidate: Scenario, change: String) -> bool {
        if candidate == self.current {
            return false;
        }
        let seeds: Vec<u64> = if self.wide {
            (1..=self.options.nearby_seeds).map(|k| self.seed.wrapping_add(k)).collect()
        } else {
            vec![self.seed]
        };
        for seed in seeds {
            if self.spent() {
                return false;
            }
            let Ok(sim) = Simulation::with_impl(candidate.clone(), seed, None, self.options.implementation) else {
                return false;
            };
            self.runs += 1;
            // A candidate that panics the simulator is a bug worth its own
            // report, but not the failure being shrunk.
            let Ok(report) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run())) else {
                tracing::warn!(run = self.runs, seed, "the simulator panicked on a candidate: {change}");
                self.panicked.push(format!("run {} (seed {seed}): {change}", self.runs));
                continue;
            };
            let fails = report.check(&self.check).is_some_and(|c| c.verdict == Verdict::Fail);
            tracing::debug!(run = self.runs, seed, fails, "{change}");
            if fails {
                let size = size_of(&candidate, seed, self.options.implementation);
                let step = Step { run: self.runs, change, seed, size };
                (self.on_step)(&step);
                self.steps.push(step);
                self.current = candidate;
                self.seed = seed;
                self.report = report;
                self.wide = false;
                return true;
            }
        }
        false
    }

    /// Adopts the first candidate that still fails.
    fn first(&mut self, candidates: Vec<Candidate>) -> bool {
        for (candidate, change) in candidates {
            if self.attempt(candidate, change) {
                return true;
            }
            if self.stop.is_some() {
                break;
            }
        }
        false
    }

    /// Adopts candidates from `generate` until none fails.
    fn repeatedly(&mut self, generate: impl Fn(&Scenario) -> Vec<Candidate>) -> bool {
        let mut any = false;
        while self.stop.is_none() && self.first(generate(&self.current)) {
            any = true;
        }
        any
    }

    /// Each fault in turn, from the last: as mild as it can be and still
    /// fail.
    fn shorter_faults(&mut self) -> bool {
        let mut any = false;
        let mut i = self.current.faults.len();
        while i > 0 && self.stop.is_none() {
            i -= 1;
            any |= self.repeatedly(|s| if i < s.faults.len() { milder_fault(s, i) } else { Vec::new() });
        }
        any
    }
}

/// Values below `value` to try, smallest first: `min`, then a half, a
/// quarter, an eighth ... of the way down from `value` to `min` (one per
/// divisor), each rounded down to `unit`.
fn smaller(value: u64, min: u64, unit: u64, divisors: &[u64]) -> Vec<u64> {
    let mut out = Vec::new();
    if value <= min || unit == 0 {
        return out;
    }
    out.push(min);
    for d in divisors {
        let v = (value - (value - min) / d) / unit * unit;
        if v > min && v < value && !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Half of a rate, to three decimals (so it reads well and round-trips).
fn half(rate: f64) -> f64 {
    (rate * 500.0).round() / 1000.0
}

fn dur(micros: u64) -> Dur {
    Dur::from_micros(micros)
}

fn select_text(select: &Select) -> String {
    match select {
        Select::Count(c) => format!("{c} random nodes"),
        Select::Percent(p) => format!("{p}% of the nodes"),
        Select::List(list) => format!("{list:?}"),
    }
}

/// A time in words: as in scenario files, or to the millisecond.
fn time(d: Dur) -> String {
    if d.micros() % 1_000 == 0 { d.to_string() } else { format!("{:.3}s", d.0.as_secs_f64()) }
}

/// One fault in words: `isolate [3] at 1m15s for 12s`.
pub fn describe(fault: &FaultSpec) -> String {
    let mut text = fault.kind.name().to_owned();
    if let Some(select) = fault.kind.select().cloned() {
        text.push_str(&format!(" {}", select_text(&select)));
    }
    text.push_str(&format!(" at {}", time(fault.at)));
    match (&fault.kind, fault.heal) {
        (FaultKind::Restart { down, .. }, _) => text.push_str(&format!(", down {}", time(*down))),
        (_, Some(heal)) => text.push_str(&format!(" for {}", time(heal))),
        (_, None) => {}
    }
    if let Some(every) = fault.every {
        text.push_str(&format!(", every {every}"));
    }
    text
}

fn shorter_run(s: &Scenario) -> Vec<Candidate> {
    // Past the bootstrap, and past the workloads' submission if any.
    let submit = s.workloads.as_ref().map_or(0, |w| w.submit_at.micros());
    let min = s.bootstrap.window().micros().max(submit) + SECOND;
    let values = smaller(s.duration.micros(), min, SECOND, &[2, 4, 8]);
    let candidate = |v: u64| {
        let end = dur(v);
        let mut c = s.clone().with_duration(end);
        c.faults.retain(|f| f.at < end);
        (c, format!("run {end} instead of {}", s.duration))
    };
    values.into_iter().map(candidate).collect()
}

fn fewer_faults(s: &Scenario) -> Vec<Candidate> {
    let mut out = Vec::new();
    let n = s.faults.len();
    let mut chunk = n;
    let mut sizes = Vec::new();
    while chunk > 0 {
        sizes.push(chunk);
        chunk /= 2;
    }
    for chunk in sizes {
        let mut end = n;
        while end > 0 {
            let start = end.saturating_sub(chunk);
            let mut c = s.clone();
            let gone: Vec<FaultSpec> = c.faults.drain(start..end).collect();
            let change = if gone.len() <= 2 {
                format!("drop {}", gone.iter().map(describe).collect::<Vec<_>>().join("; "))
            } else {
                format!("drop faults {}..{} of {n}", start + 1, end)
            };
            out.push((c, change));
            end = start;
        }
    }
    if let Some(random) = &s.random_faults {
        let mut counts = vec![0, random.count / 2, random.count.saturating_sub(1)];
        counts.dedup();
        for count in counts.into_iter().filter(|&c| c < random.count) {
            let mut c = s.clone();
            match c.random_faults.as_mut() {
                Some(r) if count > 0 => r.count = count,
                _ => c.random_faults = None,
            }
            out.push((c, format!("{count} random faults instead of {}", random.count)));
        }
    }
    out
}

/// `micros` to the nearest whole second, or tenth of a second below one.
fn round(micros: u64) -> u64 {
    let unit = if micros >= SECOND { SECOND } else { SECOND / 10 };
    ((micros + unit / 2) / unit * unit).max(unit)
}

/// `fault` with its start and length in round numbers (a random draw's are
/// to the microsecond).
fn rounded_fault(fault: &FaultSpec) -> FaultSpec {
    let at = if fault.at.micros() == 0 { 0 } else { round(fault.at.micros()) };
    FaultSpec { at: dur(at), heal: fault.heal.map(|h| dur(round(h.micros()))), ..fault.clone() }
}

fn rounded(s: &Scenario) -> Vec<Candidate> {
    let mut out = Vec::new();
    let mut all = s.clone();
    for fault in &mut all.faults {
        *fault = rounded_fault(fault);
    }
    out.push((all, "every fault's start and length in whole seconds".to_owned()));
    for (i, fault) in s.faults.iter().enumerate().rev() {
        let mut c = s.clone();
        c.faults[i] = rounded_fault(fault);
        out.push((c, format!("{} in whole seconds", describe(fault))));
    }
    out
}

/// The nodes the faults name, sorted.
fn listed(s: &Scenario) -> Vec<usize> {
    let mut used: Vec<usize> = s
        .faults
        .iter()
        .filter_map(|f| match f.kind.select().cloned() {
            Some(Select::List(list)) => Some(list),
            _ => None,
        })
        .flatten()
        .collect();
    used.sort_unstable();
    used.dedup();
    used
}

fn renumbered(s: &Scenario) -> Vec<Candidate> {
    let used = listed(s);
    // Node 0 (the first up, the seed of a one-seed join) keeps its place;
    // the others take the next numbers in order.
    let base = usize::from(used.first() != Some(&0));
    let map = |i: usize| used.iter().position(|&u| u == i).map_or(i, |rank| base + rank);
    if used.iter().all(|&u| map(u) == u) {
        return Vec::new();
    }
    let mut c = s.clone();
    for fault in &mut c.faults {
        if let Some(Select::List(list)) = fault.kind.select_mut() {
            for node in list.iter_mut() {
                *node = map(*node);
            }
        }
    }
    let to: Vec<usize> = used.iter().map(|&u| map(u)).collect();
    vec![(c, format!("renumber the faulted nodes {used:?} as {to:?}"))]
}

fn fewer_nodes(s: &Scenario) -> Vec<Candidate> {
    let highest = listed(s).last().map_or(0, |&u| u + 1);
    let replicas = s.workloads.as_ref().map_or(0, |w| w.replicas as usize);
    let floor = 2.max(highest).max(replicas);
    let values = smaller(s.nodes as u64, floor as u64, 1, &[2, 4, 8]);
    let candidate = |v: u64| (s.clone().with_nodes(v as usize), format!("{v} nodes instead of {}", s.nodes));
    values.into_iter().map(candidate).collect()
}

fn earlier(s: &Scenario) -> Vec<Candidate> {
    let Some(first) = s.faults.iter().map(|f| f.at.micros()).min() else { return Vec::new() };
    let earliest = s.bootstrap.window().micros();
    if first < earliest + SECOND {
        return Vec::new();
    }
    let gap = first - earliest;
    let mut shifts = vec![gap / SECOND * SECOND, gap / 2 / SECOND * SECOND];
    shifts.dedup();
    shifts
        .into_iter()
        .filter(|&shift| shift >= SECOND && s.duration.micros() > shift + earliest + SECOND)
        .map(|shift| {
            let mut c = s.clone();
            for fault in &mut c.faults {
                fault.at = dur(fault.at.micros() - shift);
                fault.until = fault.until.map(|u| dur(u.micros().saturating_sub(shift)));
            }
            c.duration = dur(s.duration.micros() - shift);
            (c, format!("every fault {} earlier, the run as much shorter", dur(shift)))
        })
        .collect()
}

/// Fewer nodes for one fault to touch.
fn fewer_selected(select: &Select) -> Vec<Select> {
    let mut out = Vec::new();
    match select {
        Select::Count(c) if *c > 1 => {
            out.push(Select::Count(1));
            if c / 2 > 1 {
                out.push(Select::Count(c / 2));
            }
        }
        Select::Count(_) => {}
        Select::Percent(p) => {
            out.push(Select::Count(1));
            let halved = (p * 5.0).round() / 10.0;
            if halved > 0.0 {
                out.push(Select::Percent(halved));
            }
        }
        Select::List(list) if list.len() > 1 => {
            for shorter in [&list[..1], &list[..list.len() / 2], &list[..list.len() - 1]] {
                let shorter = Select::List(shorter.to_vec());
                if !out.contains(&shorter) {
                    out.push(shorter);
                }
            }
        }
        Select::List(_) => {}
    }
    out
}

fn milder_fault(s: &Scenario, i: usize) -> Vec<Candidate> {
    let f = &s.faults[i];
    let mut specs: Vec<(FaultSpec, String)> = Vec::new();
    if let Some(heal) = f.heal {
        let h = heal.micros();
        let unit = if h >= 2 * SECOND { SECOND } else { SECOND / 10 };
        let values = smaller(h, unit, unit, &[2]);
        for &v in &values {
            specs.push((FaultSpec { heal: Some(dur(v)), ..f.clone() }, format!("heals after {}", dur(v))));
        }
        if let Some(&v) = values.last() {
            let later = FaultSpec { at: dur(f.at.micros() + (h - v)), heal: Some(dur(v)), ..f.clone() };
            specs.push((later, format!("starts {} later, heals as before", dur(h - v))));
        }
    }
    let milder: Vec<(FaultKind, String)> = match &f.kind {
        FaultKind::Restart { nodes, down, keep_state } => smaller(down.micros(), SECOND, SECOND, &[2])
            .into_iter()
            .map(|v| {
                let kind = FaultKind::Restart { nodes: nodes.clone(), down: dur(v), keep_state: *keep_state };
                (kind, format!("down {}", dur(v)))
            })
            .collect(),
        FaultKind::Slow { nodes, delay } => smaller(delay.micros(), 10_000, 10_000, &[2])
            .into_iter()
            .map(|v| (FaultKind::Slow { nodes: nodes.clone(), delay: dur(v) }, format!("{} late", dur(v))))
            .collect(),
        FaultKind::Skew { nodes, ppm } => smaller(u64::from(*ppm), 1_000, 1_000, &[2])
            .into_iter()
            .map(|v| {
                let ppm = u32::try_from(v).unwrap_or(*ppm);
                (FaultKind::Skew { nodes: nodes.clone(), ppm }, format!("{ppm} ppm"))
            })
            .collect(),
        FaultKind::Loss { rate, nodes } if *rate >= 0.002 => {
            vec![(FaultKind::Loss { rate: half(*rate), nodes: nodes.clone() }, format!("loss {}", half(*rate)))]
        }
        _ => Vec::new(),
    };
    for (kind, change) in milder {
        specs.push((FaultSpec { kind, ..f.clone() }, change));
    }
    if let Some(select) = f.kind.select().cloned() {
        for fewer in fewer_selected(&select) {
            let mut g = f.clone();
            if let Some(slot) = g.kind.select_mut() {
                *slot = fewer.clone();
            }
            specs.push((g, format!("touches {}", select_text(&fewer))));
        }
    }
    specs
        .into_iter()
        .map(|(spec, change)| {
            let mut c = s.clone();
            c.faults[i] = spec;
            (c, format!("{}: {change}", describe(f)))
        })
        .collect()
}

fn merged(s: &Scenario) -> Vec<Candidate> {
    let mut out = Vec::new();
    let n = s.faults.len();
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (&s.faults[i], &s.faults[j]);
            if a.kind != b.kind || a.every.is_some() || b.every.is_some() {
                continue;
            }
            let (Some(ha), Some(hb)) = (a.heal, b.heal) else { continue };
            let (a0, a1) = (a.at.micros(), a.at.micros() + ha.micros());
            let (b0, b1) = (b.at.micros(), b.at.micros() + hb.micros());
            if a0 > b1 || b0 > a1 {
                continue;
            }
            let (start, end) = (a0.min(b0), a1.max(b1));
            let mut c = s.clone();
            c.faults[i] = FaultSpec { at: dur(start), heal: Some(dur(end - start)), ..a.clone() };
            c.faults.remove(j);
            out.push((c, format!("merge {} and {}", describe(a), describe(b))));
        }
    }
    out
}

fn calmer(s: &Scenario) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut push = |change: String, edit: &dyn Fn(&mut Scenario)| {
        let mut c = s.clone();
        edit(&mut c);
        out.push((c, change));
    };
    let net = &s.network;
    if net.loss > 0.0 {
        push(format!("no loss (was {})", net.loss), &|c| c.network.loss = 0.0);
        if net.loss >= 0.002 {
            push(format!("loss {} (was {})", half(net.loss), net.loss), &|c| c.network.loss = half(c.network.loss));
        }
    }
    if net.duplicate > 0.0 {
        push("no duplication".to_owned(), &|c| c.network.duplicate = 0.0);
    }
    if net.reorder > 0.0 {
        push("no reordering".to_owned(), &|c| c.network.reorder = 0.0);
    }
    if net.bandwidth.is_some() {
        push("no uplink limit".to_owned(), &|c| c.network.bandwidth = None);
    }
    if net.latency != Latency::default() {
        push("the default latency (1-5ms)".to_owned(), &|c| c.network.latency = Latency::default());
    }
    match s.bootstrap {
        Bootstrap::Formed => {}
        Bootstrap::Staggered { over } | Bootstrap::OneSeed { over } => {
            push("the mesh starts formed".to_owned(), &|c| c.bootstrap = Bootstrap::Formed);
            if over.micros() >= 2 * SECOND {
                let shorter = dur(over.micros() / 2 / SECOND * SECOND);
                push(format!("nodes start within {shorter}"), &|c| match &mut c.bootstrap {
                    Bootstrap::Staggered { over } | Bootstrap::OneSeed { over } => *over = shorter,
                    Bootstrap::Formed => {}
                });
            }
        }
    }
    if let Some(load) = &s.workloads {
        push("no workloads".to_owned(), &|c| c.workloads = None);
        if load.replicas > 1 {
            push(format!("1 replica each (was {})", load.replicas), &|c| {
                if let Some(w) = c.workloads.as_mut() {
                    w.replicas = 1;
                }
            });
        }
        for count in smaller(load.count as u64, 1, 1, &[2]) {
            push(format!("{count} workloads (was {})", load.count), &|c| {
                if let Some(w) = c.workloads.as_mut() {
                    w.count = count as usize;
                }
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaller_values_come_smallest_first_in_round_units() {
        assert_eq!(smaller(100, 2, 1, &[2, 4, 8]), vec![2, 51, 76, 88]);
        assert_eq!(smaller(420 * SECOND, 6 * SECOND, SECOND, &[2]), vec![6 * SECOND, 213 * SECOND]);
        assert_eq!(smaller(3, 2, 1, &[2, 4, 8]), vec![2]);
        assert!(smaller(2, 2, 1, &[2]).is_empty());
    }

    #[test]
    fn random_faults_are_written_out_with_the_nodes_they_chose() {
        let chaos = Scenario::builtin("chaos").expect("built in").with_nodes(30);
        let (report, explicit) = run_recording(&chaos, 5, Impl::Shoal).expect("runs");
        assert!(explicit.random_faults.is_none());
        let fired: u64 = report.faults_fired.values().sum();
        assert_eq!(explicit.faults.len() as u64, fired, "{:?}", explicit.faults);
        assert_eq!(size_of(&chaos, 5, Impl::Shoal).faults, explicit.faults.len());
        assert!(explicit.faults.windows(2).all(|w| w[0].at <= w[1].at), "in the order they start");
        for fault in &explicit.faults {
            if let Some(select) = fault.kind.select() {
                assert!(matches!(select, Select::List(_)), "{}", describe(fault));
            }
        }
        let text = toml::to_string(&explicit).expect("serialises");
        assert_eq!(Scenario::from_toml(&text).expect("reads"), explicit, "{text}");
    }

    #[test]
    fn faulted_nodes_are_renumbered_after_node_zero() {
        let mut s = Scenario::new("t", "", Dur::secs(60));
        s.faults = vec![
            FaultSpec {
                at: Dur::secs(10),
                heal: None,
                every: None,
                until: None,
                kind: FaultKind::Crash { nodes: Select::List(vec![70, 9]) },
            },
            FaultSpec {
                at: Dur::secs(20),
                heal: Some(Dur::secs(5)),
                every: None,
                until: None,
                kind: FaultKind::Pause { nodes: Select::List(vec![9]) },
            },
        ];
        let (c, _) = renumbered(&s).pop().expect("a candidate");
        assert_eq!(c.faults[0].kind, FaultKind::Crash { nodes: Select::List(vec![2, 1]) });
        assert_eq!(c.faults[1].kind, FaultKind::Pause { nodes: Select::List(vec![1]) });
        assert!(renumbered(&c).is_empty(), "already compact");
        assert_eq!(fewer_nodes(&c)[0].0.nodes, 3, "the highest listed node bounds the count");
    }

    #[test]
    fn faults_are_dropped_all_then_by_halves_from_the_end() {
        let mut s = Scenario::new("t", "", Dur::secs(60));
        s.faults = (0..4u64)
            .map(|i| FaultSpec {
                at: Dur::secs(10 + i),
                heal: Some(Dur::secs(1)),
                every: None,
                until: None,
                kind: FaultKind::Bridge,
            })
            .collect();
        let left: Vec<Vec<u64>> =
            fewer_faults(&s).iter().map(|(c, _)| c.faults.iter().map(|f| f.at.0.as_secs()).collect()).collect();
        assert_eq!(
            left,
            vec![
                vec![],
                vec![10, 11],
                vec![12, 13],
                vec![10, 11, 12],
                vec![10, 11, 13],
                vec![10, 12, 13],
                vec![11, 12, 13]
            ]
        );
    }
}
