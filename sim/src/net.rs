//! The network model: latency from a distribution, loss, duplication,
//! reordering, a bounded uplink per node, the MTU, and the link rules that
//! faults install (cuts, holds, loss bursts).
//!
//! Datagrams (probes, acks, gossip) are subject to all of it and must fit the
//! MTU. Anti-entropy messages (`Body::Sync`) travel over a reliable stream in
//! the real node: here they are never lost, duplicated or held to the MTU, but
//! they still take time, queue behind the uplink, and cannot cross a cut.

// Latency draws are capped at MAX_LATENCY_MICROS before the cast.
#![allow(clippy::cast_possible_truncation)]

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::units::Dur;

/// A one-way latency distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Always `value`.
    Constant {
        /// The latency.
        value: Dur,
    },
    /// Uniform in `[min, max]`.
    Uniform {
        /// Lower bound.
        min: Dur,
        /// Upper bound.
        max: Dur,
    },
    /// `base` plus an exponential tail with mean `mean`.
    Exponential {
        /// The floor.
        base: Dur,
        /// Mean of the tail.
        mean: Dur,
    },
    /// `base` plus a Pareto tail (long tail): scale `scale`, shape `shape`.
    Pareto {
        /// The floor.
        base: Dur,
        /// Pareto scale (x_m).
        scale: Dur,
        /// Pareto shape (alpha); smaller is heavier.
        shape: f64,
    },
}

impl Default for Latency {
    fn default() -> Latency {
        Latency::Uniform { min: Dur::millis(1), max: Dur::millis(5) }
    }
}

/// Longest latency any draw returns (a long tail is capped here).
pub const MAX_LATENCY_MICROS: u64 = 10_000_000;

impl Latency {
    /// The mean of a draw, in microseconds (before the cap at
    /// [`MAX_LATENCY_MICROS`]; a Pareto tail with shape at most 1 has no
    /// mean, and counts as the cap).
    pub fn mean_micros(&self) -> f64 {
        match self {
            Latency::Constant { value } => value.micros() as f64,
            Latency::Uniform { min, max } => (min.micros() as f64 + max.micros().max(min.micros()) as f64) / 2.0,
            Latency::Exponential { base, mean } => base.micros() as f64 + mean.micros() as f64,
            Latency::Pareto { base, scale, shape } => {
                let tail = if *shape > 1.0 { scale.micros() as f64 * shape / (shape - 1.0) } else { f64::INFINITY };
                base.micros() as f64 + tail.min(MAX_LATENCY_MICROS as f64)
            }
        }
    }

    /// One draw, in microseconds.
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> u64 {
        let micros = match self {
            Latency::Constant { value } => value.micros(),
            Latency::Uniform { min, max } => {
                let (lo, hi) = (min.micros(), max.micros().max(min.micros()));
                if lo == hi { lo } else { rng.random_range(lo..=hi) }
            }
            Latency::Exponential { base, mean } => {
                let u: f64 = rng.random::<f64>();
                base.micros() + (-(1.0 - u).ln() * mean.micros() as f64) as u64
            }
            Latency::Pareto { base, scale, shape } => {
                let u: f64 = rng.random::<f64>();
                let x = scale.micros() as f64 / (1.0 - u).powf(1.0 / shape.max(0.01));
                base.micros() + (x.min(MAX_LATENCY_MICROS as f64)) as u64
            }
        };
        micros.min(MAX_LATENCY_MICROS)
    }
}

fn default_mtu() -> usize {
    1_400
}

fn default_queue_limit() -> Dur {
    Dur::millis(200)
}

fn default_reorder_delay() -> Dur {
    Dur::millis(20)
}

/// The network every link shares, before faults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// One-way latency.
    #[serde(default)]
    pub latency: Latency,
    /// Probability a datagram is lost.
    #[serde(default)]
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    #[serde(default)]
    pub duplicate: f64,
    /// Probability a datagram is held back by up to `reorder_delay` extra, so
    /// later ones overtake it.
    #[serde(default)]
    pub reorder: f64,
    /// The most extra delay a reordered datagram gets.
    #[serde(default = "default_reorder_delay")]
    pub reorder_delay: Dur,
    /// Each node's uplink, bytes per second; `None` for unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<u64>,
    /// With a bounded uplink: a datagram that would wait longer than this in
    /// the queue is dropped (tail drop).
    #[serde(default = "default_queue_limit")]
    pub queue_limit: Dur,
    /// Largest datagram, bytes. Larger ones (other than anti-entropy, which
    /// rides a stream) are dropped and fail the `mtu` check.
    #[serde(default = "default_mtu")]
    pub mtu: usize,
    /// Nodes in sites, with a latency matrix between them: when set, a
    /// message's latency is its sites' one-way latency plus the sites'
    /// jitter, and `latency` is not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sites: Option<Sites>,
}

/// Nodes living in sites (regions, zones), `[network.sites]` in a scenario:
///
/// ```toml
/// [network.sites]
/// names = ["eu-west", "eu-central", "us-east"]
/// # one-way latency between sites, row by row (symmetric; the diagonal is
/// # the latency within a site)
/// latency = [["1ms", "5ms", "40ms"], ["5ms", "1ms", "45ms"], ["40ms", "45ms", "1ms"]]
/// jitter = { kind = "exponential", base = "0ms", mean = "500us" }
/// ```
///
/// Node `i` lives in site `i mod sites` (deterministic, and every site gets
/// its share whatever N).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sites {
    /// Site names, in matrix order.
    pub names: Vec<String>,
    /// One-way latency from site `i` to site `j` (`latency[i][j]`); a square
    /// matrix of `names.len()` rows.
    pub latency: Vec<Vec<Dur>>,
    /// Added to every message's latency, drawn anew each time.
    #[serde(default = "default_jitter")]
    pub jitter: Latency,
}

fn default_jitter() -> Latency {
    Latency::Exponential { base: Dur::from_micros(0), mean: Dur::from_micros(500) }
}

/// A `[network.sites]` table that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SitesError {
    /// No site, or more than 256.
    #[error("network.sites needs 1 to 256 sites, got {0}")]
    Count(usize),
    /// The matrix is not `names.len()` square.
    #[error("network.sites.latency must be a {0}x{0} matrix")]
    Shape(usize),
}

impl Sites {
    /// Checks the matrix against the names.
    pub fn validate(&self) -> Result<(), SitesError> {
        let n = self.names.len();
        if n == 0 || n > 256 {
            return Err(SitesError::Count(n));
        }
        if self.latency.len() != n || self.latency.iter().any(|row| row.len() != n) {
            return Err(SitesError::Shape(n));
        }
        Ok(())
    }

    /// The site node `index` lives in.
    pub fn site_of(&self, index: usize) -> usize {
        index % self.names.len().max(1)
    }

    /// One draw of the one-way latency from node `from` to node `to`, in
    /// microseconds.
    pub fn sample(&self, from: usize, to: usize, rng: &mut ChaCha8Rng) -> u64 {
        let base = self.latency[self.site_of(from)][self.site_of(to)].micros();
        (base + self.jitter.sample(rng)).min(MAX_LATENCY_MICROS)
    }

    /// The mean round trip between nodes `a` and `b` that the model gives
    /// (both ways' base latency plus twice the mean jitter), in seconds: the
    /// truth network coordinates are judged against.
    pub fn mean_rtt_secs(&self, a: usize, b: usize) -> f64 {
        let (sa, sb) = (self.site_of(a), self.site_of(b));
        let base = self.latency[sa][sb].micros() + self.latency[sb][sa].micros();
        (base as f64 + 2.0 * self.jitter.mean_micros()) / 1e6
    }
}

impl Default for NetworkSpec {
    fn default() -> NetworkSpec {
        NetworkSpec {
            latency: Latency::default(),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: default_reorder_delay(),
            bandwidth: None,
            queue_limit: default_queue_limit(),
            mtu: default_mtu(),
            sites: None,
        }
    }
}

/// What a link rule does to the messages it matches.
#[derive(Clone, Debug, PartialEq)]
pub enum RuleKind {
    /// Drops messages between nodes of different (non-zero) groups; with
    /// `oneway`, only from group 1 to group 2.
    Cut {
        /// Group of each node; 0 is "not part of this cut".
        group: Vec<u16>,
        /// Only group 1 → group 2 is cut.
        oneway: bool,
    },
    /// Holds messages to or from the marked nodes until the rule is lifted.
    Hold {
        /// Marked nodes.
        nodes: Vec<bool>,
    },
    /// Loses datagrams to or from the marked nodes (all, if `None`).
    Loss {
        /// Marked nodes.
        nodes: Option<Vec<bool>>,
        /// Probability.
        rate: f64,
    },
}

/// What the active rules decide for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Pass,
    /// Drop it (a cut).
    Cut,
    /// Hold it, under rule `usize`.
    Hold(usize),
    /// Lose it (a loss rule fired).
    Lost,
}

/// A rule installed by an active fault.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The fault instance that installed it.
    pub fault: usize,
    /// What it does.
    pub kind: RuleKind,
}

impl RuleKind {
    fn decide(&self, from: usize, to: usize, reliable: bool, rng: &mut ChaCha8Rng) -> Option<bool> {
        match self {
            RuleKind::Cut { group, oneway } => {
                let (a, b) = (group[from], group[to]);
                let cut = if *oneway { a == 1 && b == 2 } else { a != 0 && b != 0 && a != b };
                cut.then_some(false)
            }
            RuleKind::Hold { nodes } => (nodes[from] || nodes[to]).then_some(true),
            RuleKind::Loss { nodes, rate } => {
                if reliable {
                    return None;
                }
                let applies = nodes.as_ref().is_none_or(|n| n[from] || n[to]);
                (applies && rng.random::<f64>() < *rate).then_some(false)
            }
        }
    }
}

/// Applies every active rule, in installation order; the first that acts
/// decides. `rules` is usually empty or short.
pub fn judge(rules: &[Rule], from: usize, to: usize, reliable: bool, rng: &mut ChaCha8Rng) -> Verdict {
    for (index, rule) in rules.iter().enumerate() {
        match rule.kind.decide(from, to, reliable, rng) {
            None => {}
            Some(true) => return Verdict::Hold(index),
            Some(false) => {
                return if matches!(rule.kind, RuleKind::Loss { .. }) { Verdict::Lost } else { Verdict::Cut };
            }
        }
    }
    Verdict::Pass
}

/// Whether an encoded message is anti-entropy (`Body::Sync`), which rides
/// a reliable stream in the real node.
pub fn is_sync(payload: &[u8]) -> bool {
    shoal_protocol::wire::is_sync(payload)
}

/// Node index of a simulator address `sim:<index>`, without allocating.
pub fn index_of(addr: &str) -> Option<usize> {
    let digits = addr.strip_prefix("sim:")?;
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    let mut value = 0usize;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + usize::from(b - b'0');
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_sync_peek_agrees_with_the_decoder() {
        use shoal_protocol::NodeId;
        use shoal_protocol::wire::{self, Body, Message, Sync};
        let sync = Body::Sync(Sync {
            round: 0,
            ranges: Vec::new(),
            want: Vec::new(),
            catalog_ranges: Vec::new(),
            catalog_want: Vec::new(),
            status_ranges: Vec::new(),
            status_want: Vec::new(),
        });
        for (cluster_id, from) in [(0, 1), (7, 300), (u64::MAX, u64::MAX)] {
            let message = |body: Body| Message { from: NodeId::from_index(from), body, updates: Vec::new() };
            assert!(is_sync(&wire::encode(cluster_id, &message(sync.clone()))));
            assert!(!is_sync(&wire::encode(cluster_id, &message(Body::Gossip))));
        }
        assert!(!is_sync(b"SHOL"));
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(index_of("sim:0"), Some(0));
        assert_eq!(index_of("sim:12345"), Some(12345));
        assert_eq!(index_of("sim:"), None);
        assert_eq!(index_of("sim:1x"), None);
        assert_eq!(index_of("tcp:1"), None);
    }

    #[test]
    fn latency_draws_stay_in_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let uniform = Latency::Uniform { min: Dur::millis(1), max: Dur::millis(5) };
        let pareto = Latency::Pareto { base: Dur::millis(1), scale: Dur::millis(1), shape: 1.1 };
        for _ in 0..1000 {
            assert!((1_000..=5_000).contains(&uniform.sample(&mut rng)));
            assert!((1_000..=MAX_LATENCY_MICROS).contains(&pareto.sample(&mut rng)));
        }
    }

    #[test]
    fn cuts_holds_and_oneway() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let cut = Rule { fault: 0, kind: RuleKind::Cut { group: vec![1, 1, 2, 0], oneway: false } };
        let oneway = Rule { fault: 1, kind: RuleKind::Cut { group: vec![1, 2, 2, 2], oneway: true } };
        assert_eq!(judge(std::slice::from_ref(&cut), 0, 2, false, &mut rng), Verdict::Cut);
        assert_eq!(judge(std::slice::from_ref(&cut), 2, 0, true, &mut rng), Verdict::Cut);
        assert_eq!(judge(std::slice::from_ref(&cut), 0, 1, false, &mut rng), Verdict::Pass);
        assert_eq!(judge(std::slice::from_ref(&cut), 3, 2, false, &mut rng), Verdict::Pass);
        assert_eq!(judge(std::slice::from_ref(&oneway), 0, 1, false, &mut rng), Verdict::Cut);
        assert_eq!(judge(std::slice::from_ref(&oneway), 1, 0, false, &mut rng), Verdict::Pass);
        let hold = Rule { fault: 2, kind: RuleKind::Hold { nodes: vec![false, true] } };
        assert_eq!(judge(&[hold], 0, 1, false, &mut rng), Verdict::Hold(0));
    }
}
