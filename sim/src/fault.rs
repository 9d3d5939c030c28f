//! What can go wrong. Names follow turmoil and Jepsen: `partition`,
//! `partition_oneway`, `isolate`, `bridge`, `hold` (released at heal),
//! `loss`, `crash` (restarted at heal), `restart`, `pause` (resumed at heal,
//! with its backlog), `slow`, `skew`, and `repair` (heal everything).

// A percentage of N rounds to at most N.
#![allow(clippy::cast_possible_truncation)]

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::units::Dur;

/// Which nodes a fault touches, drawn from the seed among the running nodes.
#[derive(Clone, Debug, PartialEq)]
pub enum Select {
    /// This many random nodes (written `3`).
    Count(usize),
    /// This percentage of the nodes, at least one (written `"10%"`).
    Percent(f64),
    /// Exactly these node indexes (written `[0, 5, 7]`).
    List(Vec<usize>),
}

impl Select {
    /// How many nodes out of `n`.
    pub fn count(&self, n: usize) -> usize {
        match self {
            Select::Count(c) => (*c).min(n),
            Select::Percent(p) => ((p / 100.0 * n as f64).round() as usize).clamp(1, n.max(1)),
            Select::List(list) => list.len(),
        }
    }
}

impl Serialize for Select {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Select::Count(c) => serializer.serialize_u64(*c as u64),
            Select::Percent(p) => serializer.collect_str(&format_args!("{p}%")),
            Select::List(list) => list.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Select {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Select, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Text(String),
            List(Vec<u64>),
        }
        let to_usize = |v: u64| usize::try_from(v).map_err(serde::de::Error::custom);
        match Raw::deserialize(deserializer)? {
            Raw::Count(c) => Ok(Select::Count(to_usize(c)?)),
            Raw::Text(text) => {
                let number = text.trim().strip_suffix('%').ok_or_else(|| {
                    serde::de::Error::custom(format!("`{text}`: write a count (3), a percentage (\"10%\") or a list"))
                })?;
                let p: f64 = number.trim().parse().map_err(serde::de::Error::custom)?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(serde::de::Error::custom(format!("percentage out of range: {p}")));
                }
                Ok(Select::Percent(p))
            }
            Raw::List(list) => Ok(Select::List(list.into_iter().map(to_usize).collect::<Result<_, _>>()?)),
        }
    }
}

fn default_groups() -> Vec<f64> {
    vec![0.5, 0.5]
}

fn one() -> Select {
    Select::Count(1)
}

/// The `Select` in a `FaultKind`, borrowed as `self` is (`as_ref` or
/// `as_mut` for the optional one): one match for both accessors.
macro_rules! select_of {
    ($kind:expr, $borrow:ident) => {
        match $kind {
            FaultKind::PartitionOneway { from } => Some(from),
            FaultKind::Isolate { nodes }
            | FaultKind::Hold { nodes }
            | FaultKind::Crash { nodes }
            | FaultKind::Restart { nodes, .. }
            | FaultKind::Pause { nodes }
            | FaultKind::Slow { nodes, .. }
            | FaultKind::Skew { nodes, .. } => Some(nodes),
            FaultKind::Loss { nodes, .. } => nodes.$borrow(),
            FaultKind::Partition { .. } | FaultKind::Bridge | FaultKind::Repair => None,
        }
    };
}

/// One kind of fault, with its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Split the nodes into groups (fractions of N, in a random order) that
    /// cannot talk to each other, both ways.
    Partition {
        /// Group sizes as fractions; the last group takes the remainder.
        #[serde(default = "default_groups")]
        groups: Vec<f64>,
    },
    /// Messages from the chosen nodes to the rest are lost; the other
    /// direction works (asymmetric links).
    PartitionOneway {
        /// The side whose outbound messages are lost.
        #[serde(default = "one")]
        from: Select,
    },
    /// Cut the chosen nodes off from everyone (and each other).
    Isolate {
        /// Who.
        #[serde(default = "one")]
        nodes: Select,
    },
    /// Two halves that cannot talk to each other, and one node that talks
    /// to both.
    Bridge,
    /// Clog: messages to and from the chosen nodes are held, not lost, and
    /// released all at once when the fault heals.
    Hold {
        /// Who.
        #[serde(default = "one")]
        nodes: Select,
    },
    /// A loss burst: datagrams to or from the chosen nodes (all when none
    /// are chosen) are lost with this probability.
    Loss {
        /// Probability in [0, 1].
        rate: f64,
        /// Whose links; `None` for every link.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nodes: Option<Select>,
    },
    /// The nodes stop (state lost). At heal they restart with a new
    /// generation and empty state.
    Crash {
        /// Who.
        #[serde(default = "one")]
        nodes: Select,
    },
    /// The nodes stop, then after `down` start again with a new generation.
    Restart {
        /// Who.
        #[serde(default = "one")]
        nodes: Select,
        /// How long they are down.
        down: Dur,
        /// Whether the new process remembers its old peers (it rejoins
        /// through them) or starts from its bootstrap list alone.
        #[serde(default)]
        keep_state: bool,
    },
    /// The nodes process nothing (no timers, no messages) until heal, then
    /// resume with the backlog of what arrived meanwhile.
    Pause {
        /// Who.
        #[serde(default = "one")]
        nodes: Select,
    },
    /// The nodes' timers fire `delay` late.
    Slow {
        /// Who.
        #[serde(default = "one")]
        nodes: Select,
        /// How late.
        delay: Dur,
    },
    /// The nodes' clocks run fast or slow by `ppm` parts per million (the
    /// sign is drawn per node).
    Skew {
        /// Who.
        #[serde(default = "one")]
        nodes: Select,
        /// Rate error in parts per million (< 1,000,000).
        ppm: u32,
    },
    /// Heals every fault still active.
    Repair,
}

impl FaultKind {
    /// The fault's name, as in scenario files.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Partition { .. } => "partition",
            FaultKind::PartitionOneway { .. } => "partition_oneway",
            FaultKind::Isolate { .. } => "isolate",
            FaultKind::Bridge => "bridge",
            FaultKind::Hold { .. } => "hold",
            FaultKind::Loss { .. } => "loss",
            FaultKind::Crash { .. } => "crash",
            FaultKind::Restart { .. } => "restart",
            FaultKind::Pause { .. } => "pause",
            FaultKind::Slow { .. } => "slow",
            FaultKind::Skew { .. } => "skew",
            FaultKind::Repair => "repair",
        }
    }

    /// Every kind's name, for reports and random draws.
    pub const NAMES: [&'static str; 12] = [
        "partition",
        "partition_oneway",
        "isolate",
        "bridge",
        "hold",
        "loss",
        "crash",
        "restart",
        "pause",
        "slow",
        "skew",
        "repair",
    ];

    /// A fault of kind `name` with default parameters, for random draws.
    pub fn default_of(name: &str) -> Option<FaultKind> {
        Some(match name {
            "partition" => FaultKind::Partition { groups: default_groups() },
            "partition_oneway" => FaultKind::PartitionOneway { from: one() },
            "isolate" => FaultKind::Isolate { nodes: one() },
            "bridge" => FaultKind::Bridge,
            "hold" => FaultKind::Hold { nodes: one() },
            "loss" => FaultKind::Loss { rate: 0.2, nodes: None },
            "crash" => FaultKind::Crash { nodes: one() },
            "restart" => FaultKind::Restart { nodes: one(), down: Dur::secs(5), keep_state: false },
            "pause" => FaultKind::Pause { nodes: one() },
            "slow" => FaultKind::Slow { nodes: one(), delay: Dur::millis(300) },
            "skew" => FaultKind::Skew { nodes: one(), ppm: 10_000 },
            "repair" => FaultKind::Repair,
            _ => return None,
        })
    }

    /// Which nodes the fault touches, for the kinds that choose some
    /// (`partition` and `bridge` split all the nodes; `repair` touches none).
    pub fn select(&self) -> Option<&Select> {
        select_of!(self, as_ref)
    }

    /// [`FaultKind::select`], to change.
    pub fn select_mut(&mut self) -> Option<&mut Select> {
        select_of!(self, as_mut)
    }

    /// Whether, while active, the fault stops the mesh from converging (so
    /// liveness is judged only once it heals). Slow timers and skewed clocks
    /// do not: the mesh must converge in spite of them.
    pub fn blocks_convergence(&self) -> bool {
        !matches!(self, FaultKind::Slow { .. } | FaultKind::Skew { .. } | FaultKind::Repair)
    }
}
