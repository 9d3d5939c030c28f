//! What to run: a scenario (nodes, config preset, network, bootstrap, fault
//! schedule, check bounds), from a TOML file or one of the built-ins.
//!
//! ```toml
//! name = "my-split"
//! description = "two sites lose each other for a minute"
//! nodes = 200
//! preset = "lan"
//! duration = "5m"
//!
//! [network]
//! latency = { kind = "uniform", min = "1ms", max = "4ms" }
//! loss = 0.01
//!
//! [[faults]]
//! kind = "partition"
//! groups = [0.5, 0.5]
//! at = "60s"
//! heal = "60s"      # how long it lasts; omit for a fault that never heals
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use shoal_protocol::{Config, WorkloadConfig};

use crate::fault::{FaultKind, Select};
use crate::net::{Latency, NetworkSpec};
use crate::units::Dur;

/// Which protocol config preset the nodes run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// `Config::lan()`: 1 s protocol period.
    #[default]
    Lan,
    /// `Config::wan()`: 5 s protocol period.
    Wan,
    /// `Config::local()`: loopback timings.
    Local,
    /// `Config::fast()`: a 750 ms period, α = 2 and a 2.75 s suspicion floor,
    /// for faster detection on a LAN.
    Fast,
}

impl Preset {
    /// The protocol config.
    pub fn config(self) -> Config {
        match self {
            Preset::Lan => Config::lan(),
            Preset::Wan => Config::wan(),
            Preset::Local => Config::local(),
            Preset::Fast => Config::fast(),
        }
    }

    /// The workload layer's config.
    pub fn workload_config(self) -> WorkloadConfig {
        match self {
            Preset::Lan | Preset::Fast => WorkloadConfig::lan(),
            Preset::Wan => WorkloadConfig::wan(),
            Preset::Local => WorkloadConfig::local(),
        }
    }
}

/// How the nodes come up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Bootstrap {
    /// Node 0 starts at time zero; every other node starts at a random time
    /// within `over` and joins through one random node already up.
    Staggered {
        /// Window over which the nodes start.
        over: Dur,
    },
    /// Every node joins through node 0 alone (the "one bootstrap address"
    /// case), all starting within `over`.
    OneSeed {
        /// Window over which the nodes start.
        over: Dur,
    },
    /// Every node starts at time zero already knowing every other as Alive,
    /// as after a completed join and quiet dissemination: nothing pending to
    /// gossip, anti-entropy digests agreeing (Shoal's
    /// `Node::preload`). The run begins in the steady state; formation
    /// is what `OneSeed` and `Staggered` measure. The nodes have no seed
    /// addresses (they never joined), so a partition outlasting the Dead
    /// timeout heals only by gossip to the dead. Shoal only (foca refuses).
    Formed,
}

impl Default for Bootstrap {
    fn default() -> Bootstrap {
        Bootstrap::Staggered { over: Dur::secs(5) }
    }
}

impl Bootstrap {
    /// When the last node has started.
    pub fn window(&self) -> Dur {
        match self {
            Bootstrap::Staggered { over } | Bootstrap::OneSeed { over } => *over,
            Bootstrap::Formed => Dur::secs(0),
        }
    }
}

/// One scheduled fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// When it starts (from the start of the run).
    pub at: Dur,
    /// How long it lasts; `None` for one that never heals (a crash stays
    /// crashed; a partition stays split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heal: Option<Dur>,
    /// Repeat it this often (drawing its nodes anew each time) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Dur>,
    /// ... until this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Dur>,
    /// What happens.
    #[serde(flatten)]
    pub kind: FaultKind,
}

/// Faults drawn at random from the seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomFaults {
    /// How many.
    pub count: usize,
    /// Earliest start.
    pub from: Dur,
    /// Latest start.
    pub to: Dur,
    /// Shortest fault.
    #[serde(default = "default_min_len")]
    pub min_len: Dur,
    /// Longest fault.
    #[serde(default = "default_max_len")]
    pub max_len: Dur,
    /// Which kinds to draw from (names as in `FaultKind`); empty for all.
    #[serde(default)]
    pub kinds: Vec<String>,
}

fn default_min_len() -> Dur {
    Dur::secs(5)
}

fn default_max_len() -> Dur {
    Dur::secs(60)
}

/// Bounds the checks hold the run to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// How many healthy, reachable members may be declared Dead in the run.
    #[serde(default)]
    pub max_false_dead: u64,
    /// c in "converges within c·log2(N) protocol periods" (after the longest
    /// suspicion timeout, which a crash has to wait out in any case).
    #[serde(default = "default_converge_c")]
    pub converge_c: f64,
    /// A crash must be known (Dead) everywhere within this; default: the
    /// longest suspicion timeout plus c·log2(N) periods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect_within: Option<Dur>,
    /// With workloads: replica moves may be at most this many times the
    /// replicas the crashed and restarted nodes held (the net change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_move_ratio: Option<f64>,
    /// With `[network.sites]`: how accurate network coordinates must be
    /// (`checks::coordinates`); without bounds that check only reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinates: Option<CoordinateBounds>,
}

/// Bounds on the relative error of estimated round trips, at a time after
/// the last node started:
///
/// ```toml
/// [checks.coordinates]
/// median = 0.15
/// p95 = 0.5
/// within = "2m"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinateBounds {
    /// Largest median relative error.
    pub median: f64,
    /// Largest 95th percentile.
    pub p95: f64,
    /// When they must hold, from when the last node started.
    pub within: Dur,
}

fn default_converge_c() -> f64 {
    4.0
}

impl Default for CheckSpec {
    fn default() -> CheckSpec {
        CheckSpec {
            max_false_dead: 0,
            converge_c: default_converge_c(),
            detect_within: None,
            max_move_ratio: None,
            coordinates: None,
        }
    }
}

/// A deliberate protocol defect (needs the `bug-injection` feature).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BugKind {
    /// Nodes never refute suspicion of themselves.
    IgnoreRefutations,
    /// Nodes never run anti-entropy.
    NoAntiEntropy,
}

impl BugKind {
    /// The name used in scenarios and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BugKind::IgnoreRefutations => "ignore-refutations",
            BugKind::NoAntiEntropy => "no-anti-entropy",
        }
    }
}

/// A whole run, minus the seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (`crash-one`).
    pub name: String,
    /// One line for `shoal-sim list`.
    #[serde(default)]
    pub description: String,
    /// How many nodes.
    #[serde(default = "default_nodes")]
    pub nodes: usize,
    /// Protocol config preset.
    #[serde(default)]
    pub preset: Preset,
    /// Simulated time to run.
    pub duration: Dur,
    /// The network.
    #[serde(default)]
    pub network: NetworkSpec,
    /// How the nodes come up.
    #[serde(default)]
    pub bootstrap: Bootstrap,
    /// The fault schedule.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// Faults drawn from the seed, on top of the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_faults: Option<RandomFaults>,
    /// Check bounds.
    #[serde(default)]
    pub checks: CheckSpec,
    /// A deliberate defect (tests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bug: Option<BugKind>,
    /// Workloads submitted during the run; their placement is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<WorkloadLoad>,
}

/// Workloads for a run: `count` of them (`w0`, `w1`, ...), submitted through
/// node 0, each wanting `replicas` replicas of `cpu_millis`; every node
/// offers 4 cores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadLoad {
    /// How many workloads.
    pub count: usize,
    /// Replicas of each.
    pub replicas: u32,
    /// CPU per replica, millicores.
    #[serde(default = "default_cpu_millis")]
    pub cpu_millis: u32,
    /// When node 0 submits them.
    #[serde(default = "default_submit_at")]
    pub submit_at: Dur,
    /// How long a replica takes to go from Starting to Running.
    #[serde(default = "default_start_time")]
    pub start_time: Dur,
}

fn default_cpu_millis() -> u32 {
    100
}

fn default_submit_at() -> Dur {
    Dur::secs(10)
}

fn default_start_time() -> Dur {
    Dur::secs(1)
}

impl WorkloadLoad {
    /// `count` workloads of `replicas` each, with the defaults.
    pub fn new(count: usize, replicas: u32) -> WorkloadLoad {
        WorkloadLoad {
            count,
            replicas,
            cpu_millis: default_cpu_millis(),
            submit_at: default_submit_at(),
            start_time: default_start_time(),
        }
    }

    /// What every node offers.
    pub fn capacity(&self) -> shoal_protocol::Capacity {
        shoal_protocol::Capacity { cpu_millis: 4_000, memory_bytes: 8 << 30 }
    }

    /// The specs, in submission order.
    pub fn specs(&self) -> Vec<shoal_protocol::WorkloadSpec> {
        (0..self.count)
            .map(|i| shoal_protocol::WorkloadSpec {
                name: format!("w{i}"),
                replicas: self.replicas,
                resources: shoal_protocol::Resources { cpu_millis: self.cpu_millis, memory_bytes: 16 << 20 },
                constraints: std::collections::BTreeMap::new(),
                driver: shoal_protocol::Driver::Exec {
                    command: "sleep".into(),
                    args: vec!["infinity".into()],
                    env: std::collections::BTreeMap::new(),
                    workdir: None,
                },
                restart: shoal_protocol::RestartPolicy::default(),
            })
            .collect()
    }
}

fn default_nodes() -> usize {
    100
}

/// A scenario file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// No built-in has this name and no file has this path.
    #[error("no built-in scenario or file named `{0}` (see `shoal-sim list`)")]
    Unknown(String),
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid scenario.
    #[error("invalid scenario {path}: {source}")]
    Toml {
        /// The path.
        path: String,
        /// Why.
        source: Box<toml::de::Error>,
    },
}

/// The built-in scenarios, in the order `shoal-sim list` shows them.
pub const BUILTINS: &[&str] = &[
    "steady",
    "mass-join",
    "crash-one",
    "crash-10pct",
    "partition-halves",
    "isolate-one",
    "bridge",
    "oneway",
    "flaky-5pct-loss",
    "gray-pause",
    "rolling-restart",
    "long-partition-heal",
    "flapping",
    "clog",
    "loss-burst",
    "slow-node",
    "clock-skew",
    "all-faults",
    "chaos",
];

fn at(secs: u64) -> Dur {
    Dur::secs(secs)
}

fn fault(at_secs: u64, heal_secs: Option<u64>, kind: FaultKind) -> FaultSpec {
    FaultSpec { at: at(at_secs), heal: heal_secs.map(Dur::secs), every: None, until: None, kind }
}

impl Scenario {
    /// A scenario with no faults, the defaults everywhere else.
    pub fn new(name: &str, description: &str, duration: Dur) -> Scenario {
        Scenario {
            name: name.to_owned(),
            description: description.to_owned(),
            nodes: default_nodes(),
            preset: Preset::Lan,
            duration,
            network: NetworkSpec::default(),
            bootstrap: Bootstrap::default(),
            faults: Vec::new(),
            random_faults: None,
            checks: CheckSpec::default(),
            bug: None,
            workloads: None,
        }
    }

    /// The built-in scenario `name`, if there is one.
    pub fn builtin(name: &str) -> Option<Scenario> {
        let one = || Select::Count(1);
        let s = match name {
            "steady" => Scenario {
                bootstrap: Bootstrap::Formed,
                ..Scenario::new(
                    name,
                    "the mesh starts formed (everyone knows everyone), then nothing goes wrong",
                    at(120),
                )
            },
            "mass-join" => Scenario {
                bootstrap: Bootstrap::OneSeed { over: Dur::secs(1) },
                ..Scenario::new(name, "every node joins through one seed within 1 s", at(120))
            },
            "crash-one" => Scenario {
                faults: vec![fault(40, None, FaultKind::Crash { nodes: one() })],
                ..Scenario::new(name, "one node crashes at 40 s and stays down", at(180))
            },
            "crash-10pct" => Scenario {
                faults: vec![fault(40, None, FaultKind::Crash { nodes: Select::Percent(10.0) })],
                workloads: Some(WorkloadLoad::new(20, 3)),
                ..Scenario::new(name, "10% of the nodes crash at once and stay down", at(180))
            },
            "partition-halves" => Scenario {
                faults: vec![fault(40, Some(20), FaultKind::Partition { groups: vec![0.5, 0.5] })],
                workloads: Some(WorkloadLoad::new(20, 3)),
                ..Scenario::new(name, "the mesh splits in two halves for 20 s, then heals", at(180))
            },
            "isolate-one" => Scenario {
                faults: vec![fault(40, Some(30), FaultKind::Isolate { nodes: one() })],
                ..Scenario::new(name, "one node is cut off from all others for 30 s", at(180))
            },
            "bridge" => Scenario {
                faults: vec![fault(40, Some(60), FaultKind::Bridge)],
                ..Scenario::new(name, "two halves that only one bridge node connects, for 60 s", at(200))
            },
            "oneway" => Scenario {
                faults: vec![fault(40, Some(60), FaultKind::PartitionOneway { from: one() })],
                ..Scenario::new(name, "one node can receive but its messages are lost, for 60 s", at(200))
            },
            "flaky-5pct-loss" => Scenario {
                network: NetworkSpec { loss: 0.05, ..NetworkSpec::default() },
                ..Scenario::new(
                    name,
                    "5% of all datagrams are lost, all run long: no one may be declared Dead",
                    at(300),
                )
            },
            "gray-pause" => Scenario {
                faults: vec![FaultSpec {
                    every: Some(Dur::secs(10)),
                    until: Some(Dur::secs(180)),
                    ..fault(40, Some(2), FaultKind::Pause { nodes: Select::Percent(1.0) })
                }],
                ..Scenario::new(
                    name,
                    "1% of the nodes stall 2 s every 10 s (the gray failure Lifeguard is about)",
                    at(300),
                )
            },
            "rolling-restart" => Scenario {
                faults: vec![FaultSpec {
                    every: Some(Dur::secs(20)),
                    until: Some(Dur::secs(240)),
                    ..fault(40, None, FaultKind::Restart { nodes: one(), down: Dur::secs(5), keep_state: false })
                }],
                workloads: Some(WorkloadLoad::new(20, 3)),
                ..Scenario::new(name, "one node at a time restarts (new generation) every 20 s", at(360))
            },
            "long-partition-heal" => Scenario {
                faults: vec![fault(40, Some(150), FaultKind::Partition { groups: vec![0.5, 0.5] })],
                workloads: Some(WorkloadLoad::new(20, 3)),
                ..Scenario::new(name, "halves split for 150 s (past the Dead timeout), then heal", at(360))
            },
            "flapping" => Scenario {
                faults: vec![FaultSpec {
                    every: Some(Dur::secs(30)),
                    until: Some(Dur::secs(3_600)),
                    // The same node each time (node 1: node 0 submits the workloads).
                    ..fault(
                        60,
                        None,
                        FaultKind::Restart { nodes: Select::List(vec![1]), down: Dur::secs(20), keep_state: false },
                    )
                }],
                // 390 replicas: a share of 3.9 per node, so the load caps
                // (4 each) leave room, as a cluster should be run.
                workloads: Some(WorkloadLoad::new(130, 3)),
                checks: CheckSpec { max_move_ratio: Some(1.2), ..CheckSpec::default() },
                ..Scenario::new(
                    name,
                    "one node (1% at N=100) is down 20 s of every 30 s for an hour: work moves at most 1.2 times what it held",
                    at(3_720),
                )
            },
            "clog" => Scenario {
                faults: vec![fault(40, Some(20), FaultKind::Hold { nodes: Select::Count(2) })],
                ..Scenario::new(name, "two nodes' links clog for 20 s (held, then released at once)", at(180))
            },
            "loss-burst" => Scenario {
                faults: vec![fault(40, Some(20), FaultKind::Loss { rate: 0.3, nodes: None })],
                ..Scenario::new(name, "30% loss on every link for 20 s", at(180))
            },
            "slow-node" => Scenario {
                faults: vec![fault(
                    20,
                    Some(120),
                    FaultKind::Slow { nodes: Select::Percent(2.0), delay: Dur::millis(300) },
                )],
                ..Scenario::new(name, "2% of the nodes fire their timers 300 ms late for 2 minutes", at(200))
            },
            "clock-skew" => Scenario {
                faults: vec![fault(0, None, FaultKind::Skew { nodes: Select::Percent(10.0), ppm: 20_000 })],
                ..Scenario::new(name, "10% of the nodes run clocks 2% fast or slow", at(180))
            },
            "all-faults" => Scenario {
                network: NetworkSpec {
                    duplicate: 0.01,
                    reorder: 0.01,
                    bandwidth: Some(2_000_000),
                    ..NetworkSpec::default()
                },
                faults: vec![
                    fault(30, Some(15), FaultKind::Partition { groups: vec![0.5, 0.5] }),
                    fault(60, Some(15), FaultKind::PartitionOneway { from: one() }),
                    fault(90, Some(15), FaultKind::Isolate { nodes: one() }),
                    fault(120, Some(20), FaultKind::Bridge),
                    fault(150, Some(10), FaultKind::Hold { nodes: one() }),
                    fault(170, Some(10), FaultKind::Loss { rate: 0.2, nodes: None }),
                    fault(190, None, FaultKind::Crash { nodes: one() }),
                    fault(190, None, FaultKind::Restart { nodes: one(), down: Dur::secs(5), keep_state: true }),
                    fault(220, Some(2), FaultKind::Pause { nodes: one() }),
                    fault(240, Some(20), FaultKind::Slow { nodes: one(), delay: Dur::millis(200) }),
                    fault(260, Some(20), FaultKind::Skew { nodes: one(), ppm: 10_000 }),
                    fault(290, None, FaultKind::Repair),
                ],
                ..Scenario::new(name, "every fault kind once, one after another, then repair", at(420))
            },
            "chaos" => Scenario {
                random_faults: Some(RandomFaults {
                    count: 8,
                    from: Dur::secs(30),
                    to: Dur::secs(240),
                    min_len: Dur::secs(5),
                    max_len: Dur::secs(40),
                    kinds: Vec::new(),
                }),
                network: NetworkSpec {
                    latency: Latency::Exponential { base: Dur::millis(1), mean: Dur::millis(3) },
                    loss: 0.01,
                    ..NetworkSpec::default()
                },
                ..Scenario::new(name, "8 faults of random kinds drawn from the seed, then quiet", at(420))
            },
            _ => return None,
        };
        Some(s)
    }

    /// A built-in by name, or else a TOML file at that path.
    pub fn load(name_or_path: &str) -> Result<Scenario, ScenarioError> {
        if let Some(scenario) = Scenario::builtin(name_or_path) {
            return Ok(scenario);
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            return Err(ScenarioError::Unknown(name_or_path.to_owned()));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Io { path: name_or_path.to_owned(), source })?;
        Scenario::from_toml(&text).map_err(|source| ScenarioError::Toml { path: name_or_path.to_owned(), source })
    }

    /// Parses a TOML scenario.
    pub fn from_toml(text: &str) -> Result<Scenario, Box<toml::de::Error>> {
        toml::from_str(text).map_err(Box::new)
    }

    /// The same scenario with `nodes` nodes.
    pub fn with_nodes(mut self, nodes: usize) -> Scenario {
        self.nodes = nodes;
        self
    }

    /// The same scenario running for `duration`.
    pub fn with_duration(mut self, duration: Dur) -> Scenario {
        self.duration = duration;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_exists_and_round_trips_through_toml() {
        for name in BUILTINS {
            let s = Scenario::builtin(name).expect("listed builtins exist");
            assert!(!s.description.is_empty());
            let text = toml::to_string(&s).expect("serialises");
            let back = Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            assert_eq!(back, s, "{name}");
        }
    }

    #[test]
    fn the_example_files_read() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        for entry in std::fs::read_dir(dir).expect("sim/scenarios exists") {
            let path = entry.expect("readable").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }

    #[test]
    fn a_file_reads() {
        let text = r#"
            name = "split"
            nodes = 20
            duration = "2m"
            [network]
            latency = { kind = "uniform", min = "1ms", max = "4ms" }
            loss = 0.01
            [[faults]]
            kind = "partition"
            groups = [0.5, 0.5]
            at = "30s"
            heal = "20s"
            [[faults]]
            kind = "crash"
            nodes = "10%"
            at = 50
        "#;
        let s = Scenario::from_toml(text).expect("valid");
        assert_eq!(s.nodes, 20);
        assert_eq!(s.faults.len(), 2);
        assert_eq!(s.faults[1].kind, FaultKind::Crash { nodes: Select::Percent(10.0) });
    }
}
