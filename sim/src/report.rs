//! What a run says: a summary a person reads ([`Report`]'s `Display`), the
//! same as JSON (`serde`), and the samples the SVG plot draws.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::scenario::Scenario;
use crate::stats::Summary;

/// What one check concluded.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The check's name (its module).
    pub name: &'static str,
    /// Pass, fail, or not enough run to tell.
    pub verdict: Verdict,
    /// One line a person reads.
    pub detail: String,
    /// Measurements, by name (seconds for times).
    pub summaries: Vec<(&'static str, Summary)>,
    /// Counts, by name.
    pub counts: Vec<(&'static str, u64)>,
    /// Raw samples behind some summaries, for plots and comparisons (not in
    /// the JSON report: there can be 100,000 of them).
    #[serde(skip)]
    pub samples: Vec<(&'static str, Vec<f64>)>,
}

/// The one command that replays a run: `source` is how the scenario was
/// named (a built-in's name or a file path).
pub fn replay_command(source: &str, scenario: &Scenario, seed: u64) -> String {
    let mut cmd = String::from("cargo run --release -p shoal-sim");
    if scenario.bug.is_some() {
        cmd.push_str(" --features bug-injection");
    }
    cmd.push_str(&format!(
        " -- run {source} --seed {seed} --nodes {} --duration {}",
        scenario.nodes, scenario.duration
    ));
    if let Some(bug) = scenario.bug {
        cmd.push_str(&format!(" --bug {}", bug.name()));
    }
    cmd
}

/// A check's (or a run's) conclusion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Held.
    Pass,
    /// Broken: the run fails.
    Fail,
    /// The run ended before the check could tell (does not fail the run).
    Inconclusive,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Inconclusive => "INCONCLUSIVE",
        })
    }
}

/// What the network did, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetCounters {
    /// Messages the nodes sent.
    pub sent: u64,
    /// Messages handed to a node.
    pub delivered: u64,
    /// Anti-entropy messages (carried as a reliable stream).
    pub streamed: u64,
    /// Lost to random or burst loss.
    pub lost: u64,
    /// Dropped by a cut (partition, isolate, bridge, one-way).
    pub cut: u64,
    /// Held by a clog.
    pub held: u64,
    /// Released when a clog healed.
    pub released: u64,
    /// Delivered twice.
    pub duplicated: u64,
    /// Delayed so later messages overtook them.
    pub reordered: u64,
    /// Tail-dropped at a full uplink.
    pub queue_dropped: u64,
    /// Arrived at a crashed node.
    pub to_down_node: u64,
    /// Dropped because a paused node's backlog was full.
    pub backlog_dropped: u64,
    /// Addressed to something that is not a simulated node.
    pub unknown_address: u64,
}

/// Protocol counters summed over the nodes running at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProtocolTotals {
    /// Suspicions raised after failed probes.
    pub suspicions_raised: u64,
    /// Members declared Dead when a suspicion expired.
    pub declared_dead: u64,
    /// Times a node refuted suspicion of itself.
    pub self_refutes: u64,
    /// Anti-entropy exchanges started.
    pub syncs_started: u64,
    /// Undecodable messages received.
    pub decode_failures: u64,
    /// Times a node noticed its own timers firing late.
    pub late_timers: u64,
}

impl ProtocolTotals {
    /// Adds one node's counters.
    pub fn add(&mut self, other: &ProtocolTotals) {
        self.suspicions_raised += other.suspicions_raised;
        self.declared_dead += other.declared_dead;
        self.self_refutes += other.self_refutes;
        self.syncs_started += other.syncs_started;
        self.decode_failures += other.decode_failures;
        self.late_timers += other.late_timers;
    }
}

/// One point of the time series (every simulated second; 5 s above 2,000 nodes).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sample {
    /// Seconds into the run.
    pub t: f64,
    /// Nodes running.
    pub running: usize,
    /// Smallest live-member count over running nodes.
    pub live_min: f64,
    /// Mean live-member count.
    pub live_mean: f64,
    /// Largest live-member count.
    pub live_max: f64,
    /// Running nodes whose live count equals the running count.
    pub exact_views: usize,
    /// `MemberDown` events so far (cumulative).
    pub dead_events: u64,
    /// Distinct membership views (0 where not computed: above 300 nodes,
    /// or between the 10 s marks).
    pub distinct_views: usize,
    /// Wall-clock seconds since the run started.
    pub wall: f64,
    /// Bytes sent by all nodes so far (cumulative).
    pub bytes_sent: u64,
}

/// Everything a run says.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// The membership implementation driven (`shoal`, `foca`).
    pub implementation: &'static str,
    /// The seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Simulated seconds.
    pub duration_s: f64,
    /// Hash of the event trace (hex): equal runs have equal hashes.
    pub trace_hash: String,
    /// Records folded into the hash.
    pub trace_records: u64,
    /// Fail if any check failed.
    pub verdict: Verdict,
    /// Each check's outcome.
    pub checks: Vec<Outcome>,
    /// Bytes sent per node per second (over the time each node ran).
    pub bytes_per_node_s: Summary,
    /// Messages sent per node per second.
    pub msgs_per_node_s: Summary,
    /// Mean bytes sent per running node per second over the second half of
    /// the run (after bootstrap, usually the steady state).
    pub bytes_per_node_s_second_half: f64,
    /// Distinct membership views among running nodes at the end.
    pub distinct_views_end: usize,
    /// The most distinct views seen at any sample.
    pub max_distinct_views: usize,
    /// How many times each fault kind fired.
    pub faults_fired: BTreeMap<String, u64>,
    /// What the network did.
    pub net: NetCounters,
    /// Protocol counters, summed.
    pub protocol: ProtocolTotals,
    /// Actions processed.
    pub steps: u64,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
    /// Of which spent at simulated time zero: starting the nodes that start
    /// at once (for a mesh that starts formed, building it).
    pub start_wall_s: f64,
    /// Simulated seconds per wall second.
    pub speedup: f64,
    /// The same over the second half of the run (after bootstrap, usually
    /// the steady state).
    pub speedup_second_half: f64,
    /// The time series.
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// Why the JSONL trace could not be written, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_error: Option<String>,
    /// The command that replays this run (set by the caller that knows how
    /// the scenario was named).
    pub replay: String,
}

impl Report {
    /// Whether every check passed (or could not tell).
    pub fn passed(&self) -> bool {
        self.verdict != Verdict::Fail
    }

    /// The outcome of the check `name`.
    pub fn check(&self, name: &str) -> Option<&Outcome> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// A named summary from any check.
    pub fn summary(&self, name: &str) -> Option<Summary> {
        self.checks.iter().flat_map(|c| c.summaries.iter()).find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    /// A named count from any check.
    pub fn count(&self, name: &str) -> Option<u64> {
        self.checks.iter().flat_map(|c| c.counts.iter()).find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// One line: verdict, seed, hash, speed.
    pub fn one_line(&self) -> String {
        format!(
            "{} {} seed={} nodes={} trace={} ({:.0}x real time){}",
            self.verdict,
            self.scenario,
            self.seed,
            self.nodes,
            self.trace_hash,
            self.speedup,
            if self.passed() { String::new() } else { format!("\n  replay: {}", self.replay) }
        )
    }
}

fn secs(s: &Summary) -> String {
    if s.count == 0 {
        "-".to_owned()
    } else {
        format!("p50 {:.2}s  p99 {:.2}s  max {:.2}s  (n={})", s.p50, s.p99, s.max, s.count)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scenario  {}  ({} nodes, {:.0}s simulated, {})",
            self.scenario, self.nodes, self.duration_s, self.implementation
        )?;
        writeln!(f, "seed      {}", self.seed)?;
        writeln!(f, "trace     {}  ({} records)", self.trace_hash, self.trace_records)?;
        writeln!(
            f,
            "speed     {:.1}x real time ({:.2}s wall, {:.2}s of it at time zero, {} actions; {:.1}x over the second half)",
            self.speedup, self.wall_s, self.start_wall_s, self.steps, self.speedup_second_half
        )?;
        writeln!(f)?;
        writeln!(f, "checks")?;
        for c in &self.checks {
            writeln!(f, "  {:<13} {:<5} {}", c.name, c.verdict.to_string(), c.detail)?;
        }
        writeln!(f)?;
        let none = Summary::default();
        writeln!(f, "detection latency      {}", secs(&self.summary("detection_latency_s").unwrap_or(none)))?;
        writeln!(f, "first to notice        {}", secs(&self.summary("first_detection_s").unwrap_or(none)))?;
        writeln!(f, "crash known everywhere {}", secs(&self.summary("known_everywhere_s").unwrap_or(none)))?;
        writeln!(f, "time to converge       {}", secs(&self.summary("time_to_converge_s").unwrap_or(none)))?;
        writeln!(
            f,
            "false Dead             {} (of {} MemberDown events)",
            self.count("false_dead").unwrap_or(0),
            self.count("dead_events").unwrap_or(0)
        )?;
        let b = &self.bytes_per_node_s;
        let m = &self.msgs_per_node_s;
        writeln!(
            f,
            "bytes/node/s           p50 {:.0}  p99 {:.0}  max {:.0}  (mean over the second half: {:.0})",
            b.p50, b.p99, b.max, self.bytes_per_node_s_second_half
        )?;
        writeln!(f, "messages/node/s        p50 {:.1}  p99 {:.1}  max {:.1}", m.p50, m.p99, m.max)?;
        writeln!(
            f,
            "distinct views         {} at the end, {} at most",
            self.distinct_views_end, self.max_distinct_views
        )?;
        let p = &self.protocol;
        writeln!(
            f,
            "protocol               {} suspicions, {} declared dead, {} refutations, {} syncs, {} late-timer stalls",
            p.suspicions_raised, p.declared_dead, p.self_refutes, p.syncs_started, p.late_timers
        )?;
        let n = &self.net;
        writeln!(
            f,
            "network                {} sent, {} delivered, {} streamed, {} lost, {} cut, {} held/{} released, {} duplicated, {} reordered, {} queue-dropped, {} to down nodes",
            n.sent,
            n.delivered,
            n.streamed,
            n.lost,
            n.cut,
            n.held,
            n.released,
            n.duplicated,
            n.reordered,
            n.queue_dropped,
            n.to_down_node
        )?;
        if !self.faults_fired.is_empty() {
            let fired: Vec<String> = self.faults_fired.iter().map(|(k, v)| format!("{k}×{v}")).collect();
            writeln!(f, "faults fired           {}", fired.join(", "))?;
        }
        if let Some(error) = &self.trace_error {
            writeln!(f, "trace file error       {error}")?;
        }
        writeln!(f)?;
        write!(f, "verdict   {}", self.verdict)?;
        if !self.passed() {
            write!(f, "\nreplay    {}", self.replay)?;
        }
        Ok(())
    }
}
