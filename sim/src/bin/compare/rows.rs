//! The result records, as written to and read back from JSON.

use serde::{Deserialize, Serialize};
use shoal_sim::Report;

/// p50, p99 and max of one measure (seconds, bytes or messages).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Spread {
    /// Samples.
    pub(crate) n: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub(crate) max: f64,
}

impl From<shoal_sim::stats::Summary> for Spread {
    fn from(s: shoal_sim::stats::Summary) -> Spread {
        Spread { n: s.count, p50: s.p50, p99: s.p99, max: s.max }
    }
}

/// One simulator run of one system.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct SimRow {
    /// `shoal`, `foca`, `foca (tuned)`.
    pub(crate) system: String,
    /// What the run measures (the scenario, and any change to it).
    pub(crate) case: String,
    /// Nodes.
    pub(crate) nodes: usize,
    /// Seed.
    pub(crate) seed: u64,
    /// The config in words.
    pub(crate) config: String,
    /// First node to declare each crashed node Dead.
    pub(crate) first: Spread,
    /// Every (crash, viewer) pair.
    pub(crate) viewers: Spread,
    /// Last node to declare each crash (known everywhere).
    pub(crate) everywhere: Spread,
    /// The per-viewer latencies, for the distribution plot.
    pub(crate) viewer_samples: Vec<f64>,
    /// Crashes not known everywhere when the run ended.
    pub(crate) undetected: bool,
    /// Healthy members declared Dead.
    pub(crate) false_dead: u64,
    /// Convergence times, one per quiet period (bootstrap first).
    pub(crate) converge: Vec<f64>,
    /// Bytes per node per second over each node's uptime.
    pub(crate) bytes: Spread,
    /// Their mean over the nodes.
    pub(crate) bytes_mean: f64,
    /// Mean bytes per node per second over the second half (steady state).
    pub(crate) bytes_steady: f64,
    /// Messages per node per second.
    pub(crate) msgs: Spread,
    /// Most distinct membership views at any second of the bootstrap.
    pub(crate) bootstrap_views: Option<usize>,
    /// Times a node renewed its identity or refuted its own death.
    pub(crate) refutes: u64,
    /// The checks' verdict.
    pub(crate) verdict: String,
    /// Wall-clock seconds the run took.
    pub(crate) wall_s: f64,
}

fn samples(report: &Report, name: &str) -> Vec<f64> {
    report
        .checks
        .iter()
        .flat_map(|c| c.samples.iter())
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s.clone())
        .unwrap_or_default()
}

impl SimRow {
    /// The figures of one finished run.
    pub(crate) fn of(system: &str, case: &str, config: String, report: &Report) -> SimRow {
        let summary = |name| report.summary(name).map(Spread::from).unwrap_or_default();
        let detection = report.checks.iter().find(|c| c.name == "detection");
        SimRow {
            system: system.to_owned(),
            case: case.to_owned(),
            nodes: report.nodes,
            seed: report.seed,
            config,
            first: summary("first_detection_s"),
            viewers: summary("detection_latency_s"),
            everywhere: summary("known_everywhere_s"),
            viewer_samples: samples(report, "detection_latency_s"),
            undetected: detection.is_some_and(|d| d.verdict != shoal_sim::Verdict::Pass),
            false_dead: report.count("false_dead").unwrap_or(0),
            converge: samples(report, "time_to_converge_s"),
            bytes: report.bytes_per_node_s.into(),
            bytes_mean: report.bytes_per_node_s.mean,
            bytes_steady: report.bytes_per_node_s_second_half,
            msgs: report.msgs_per_node_s.into(),
            bootstrap_views: None,
            refutes: report.protocol.self_refutes,
            verdict: report.verdict.to_string(),
            wall_s: report.wall_s,
        }
    }
}

/// chitchat or Shoal, N nodes, loopback-like.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct GossipRow {
    /// `shoal` or `chitchat`.
    pub(crate) system: String,
    /// Nodes.
    pub(crate) nodes: usize,
    /// Seconds until every node saw every node live (None: not within the
    /// limit).
    pub(crate) converge_s: Option<f64>,
    /// Mean bytes per node per second once converged.
    pub(crate) bytes_per_node_s: f64,
    /// Mean messages per node per second once converged.
    pub(crate) msgs_per_node_s: f64,
    /// The config in words.
    pub(crate) config: String,
}

/// One Serf or Shoal measurement on the real network, written by `shoal-lab
/// bench` (tests/src/lab/bench.rs, one JSON object per line). Fields added
/// since the loopback script default when absent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct NetRow {
    /// `shoal` or `serf`.
    pub(crate) system: String,
    /// Agents.
    pub(crate) nodes: usize,
    /// Where it ran: `namespaces` (one per agent, on a bridge); empty for
    /// the old loopback script.
    #[serde(default)]
    pub(crate) lab: String,
    /// Seconds until every agent listed every agent alive (the median of
    /// `join_samples` where the lab took several).
    pub(crate) join_s: Option<f64>,
    /// Every formation's join time.
    #[serde(default)]
    pub(crate) join_samples: Vec<Option<f64>>,
    /// Seconds from `kill -9` until every other agent listed it failed (the
    /// median of `detect_samples` where the lab took several).
    pub(crate) detect_s: Option<f64>,
    /// Every kill round's detection time.
    #[serde(default)]
    pub(crate) detect_samples: Vec<Option<f64>>,
    /// Seconds from a killed agent's restart until it and every other agent
    /// see each other alive (median of `rejoin_samples`).
    #[serde(default)]
    pub(crate) rejoin_s: Option<f64>,
    /// Every round's rejoin time.
    #[serde(default)]
    pub(crate) rejoin_samples: Vec<Option<f64>>,
    /// Failed or dead entries about live agents during 5% loss.
    pub(crate) false_loss: Option<u64>,
    /// The same around a 3 s SIGSTOP of one agent (about the others).
    pub(crate) false_pause: Option<u64>,
    /// Mean resident memory per agent, KiB.
    pub(crate) rss_kib: Option<f64>,
    /// CPU per agent, percent of one core, in steady state.
    pub(crate) cpu_pct: Option<f64>,
    /// Bytes sent per agent per second in steady state (each host's `eth0`
    /// TX counter: headers included).
    pub(crate) bytes_per_s: Option<f64>,
    /// The busiest agent's bytes per second.
    #[serde(default)]
    pub(crate) bytes_per_s_max: Option<f64>,
    /// IP bytes sent per agent per second (`IpExt: OutOctets`: IP and
    /// UDP/TCP headers, no Ethernet framing, no ARP).
    #[serde(default)]
    pub(crate) ip_bytes_per_s: Option<f64>,
    /// The busiest agent's.
    #[serde(default)]
    pub(crate) ip_bytes_per_s_max: Option<f64>,
    /// The `shoal` agent's own traffic counters, per agent per second.
    #[serde(default)]
    pub(crate) agent_rates: std::collections::BTreeMap<String, f64>,
    /// Open UDP sockets per agent (mean).
    #[serde(default)]
    pub(crate) sockets_udp: Option<f64>,
    /// Open TCP sockets per agent (mean, listeners included).
    #[serde(default)]
    pub(crate) sockets_tcp: Option<f64>,
    /// Seconds from the mesh formed to the steady window.
    #[serde(default)]
    pub(crate) settle_s: Option<f64>,
    /// The steady window, seconds.
    #[serde(default)]
    pub(crate) window_s: Option<f64>,
    /// Seconds of loss.
    #[serde(default)]
    pub(crate) loss_s: Option<f64>,
    /// The profile in words.
    pub(crate) config: String,
}
