//! Placement: which nodes run which replicas, as a pure function of the view.
//!
//! Consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam,
//! 2018) on a ring weighted by capacity:
//!
//! - each eligible node puts `tokens ∝ CPU capacity` on a 64-bit ring, at
//!   positions hashed from its id (independent of every other node, so a
//!   join or leave moves only the arcs it touches);
//! - replicas are taken in a canonical order (constrained workloads first,
//!   then by hash); each walks clockwise from its own hash to the first node
//!   that holds no other replica of the workload, carries the required labels,
//!   has the resources free, and is under its load cap
//!   `max(1, ⌊(1+ε) · R · wᵢ / W⌋)`;
//! - a replica that finds no node under the cap takes the first that fits
//!   otherwise; one that finds none is reported unplaced, with the reason.
//!
//! Every node computes this from its own view and, from the same view, gets
//! the same answer: inputs are sorted, hashes are [`crate::stable_hash64`],
//! and nothing iterates a randomly ordered map.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::mix64;
use crate::workload::{Resources, WorkloadSpec};
use crate::{Capacity, NodeId};

/// A node that may receive work: live, settled, with its capacity and labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: NodeId,
    pub capacity: Capacity,
    pub labels: BTreeMap<String, String>,
}

/// Tuning for [`place`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlacementConfig {
    /// Load slack: no node gets more than `(1+ε)` times its capacity-weighted
    /// share of replicas, while any node under that bound can take one.
    pub epsilon: f64,
    /// Ring tokens per core of CPU capacity; more smooths arcs, costs memory.
    pub tokens_per_core: u32,
}

impl Default for PlacementConfig {
    fn default() -> PlacementConfig {
        PlacementConfig { epsilon: 0.10, tokens_per_core: 10 }
    }
}

/// Why a workload has fewer replicas placed than it asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnplacedReason {
    /// No live node carries every label in the constraints.
    NoNodeMatchesConstraints,
    /// Only `eligible` nodes match the constraints; replicas must be on
    /// distinct nodes.
    TooFewMatchingNodes { eligible: u32 },
    /// Matching nodes exist, but none has the resources free.
    InsufficientResources { needed: Resources },
}

/// A workload that could not be fully placed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unplaced {
    pub wanted: u32,
    pub placed: u32,
    pub reason: UnplacedReason,
}

/// The answer: for each workload, the node of each replica (replica `i` on
/// `nodes[i]`, `None` if it found no node), and what could not be placed.
/// A replica keeps its index wherever it goes, so a node taking over replica
/// `i` can tell when the previous owner of `i` may stop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub assignments: BTreeMap<String, Vec<Option<NodeId>>>,
    pub unplaced: BTreeMap<String, Unplaced>,
}

impl Placement {
    /// Replicas assigned to `node`, as (workload, replica index).
    pub fn on_node(&self, node: NodeId) -> impl Iterator<Item = (&str, usize)> {
        self.assignments.iter().flat_map(move |(name, nodes)| {
            nodes.iter().enumerate().filter(move |(_, n)| **n == Some(node)).map(move |(i, _)| (name.as_str(), i))
        })
    }

    /// The node replica `replica` of `workload` is placed on.
    pub fn owner(&self, workload: &str, replica: usize) -> Option<NodeId> {
        self.assignments.get(workload).and_then(|nodes| nodes.get(replica).copied().flatten())
    }

    /// Every placed replica, as (workload, replica index, node).
    pub fn replicas(&self) -> impl Iterator<Item = (&str, usize, NodeId)> {
        self.assignments.iter().flat_map(|(name, nodes)| {
            nodes.iter().enumerate().filter_map(move |(i, n)| Some((name.as_str(), i, (*n)?)))
        })
    }
}

struct Ring {
    /// (position, candidate index), sorted.
    tokens: Vec<(u64, u32)>,
}

impl Ring {
    fn new(candidates: &[Candidate], tokens_per_core: u32) -> Ring {
        let mut tokens = Vec::new();
        for (index, candidate) in candidates.iter().enumerate() {
            let count =
                (u64::from(candidate.capacity.cpu_millis) * u64::from(tokens_per_core) / 1_000).clamp(1, 65_536);
            let key = candidate.id.key();
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            tokens.extend((0..count).map(|j| (mix64(key ^ mix64(j.wrapping_add(0x9e37_79b9))), index)));
        }
        tokens.sort_unstable();
        Ring { tokens }
    }

    /// The first token at or clockwise after `position`.
    fn first_at_or_after(&self, position: u64) -> usize {
        let index = self.tokens.partition_point(|(token, _)| *token < position);
        if index == self.tokens.len() { 0 } else { index }
    }
}

/// The ring's tokens whose node is still under its cap, as "next open token
/// at or after i" with path compression (a node at its cap stays there for
/// the rest of the run), so a walk skips full nodes in near-constant time.
struct OpenTokens {
    /// `next[i] == i` while token i is open; otherwise a later token to look
    /// from (`len` past the end).
    next: Vec<u32>,
    /// Each node's tokens: `of_node[starts[n]..starts[n + 1]]`.
    starts: Vec<u32>,
    of_node: Vec<u32>,
}

impl OpenTokens {
    #[allow(clippy::cast_possible_truncation)] // see `place`
    fn new(ring: &Ring, nodes: usize) -> OpenTokens {
        let mut starts = vec![0u32; nodes + 1];
        for &(_, node) in &ring.tokens {
            starts[node as usize + 1] += 1;
        }
        for n in 0..nodes {
            starts[n + 1] += starts[n];
        }
        let mut fill = starts.clone();
        let mut of_node = vec![0u32; ring.tokens.len()];
        for (index, &(_, node)) in ring.tokens.iter().enumerate() {
            of_node[fill[node as usize] as usize] = index as u32;
            fill[node as usize] += 1;
        }
        OpenTokens { next: (0..=ring.tokens.len() as u32).collect(), starts, of_node }
    }

    fn close_node(&mut self, node: usize) {
        for &token in &self.of_node[self.starts[node] as usize..self.starts[node + 1] as usize] {
            self.next[token as usize] = token + 1;
        }
    }

    /// The first open token at or after `from`, wrapping round once.
    fn next_from(&mut self, from: usize) -> Option<usize> {
        let len = self.next.len() - 1;
        let found = self.find(from);
        let found = if found == len { self.find(0) } else { found };
        (found < len).then_some(found)
    }

    fn find(&mut self, mut i: usize) -> usize {
        let mut root = i;
        while self.next[root] as usize != root {
            root = self.next[root] as usize;
        }
        while self.next[i] as usize != root {
            let next = self.next[i] as usize;
            #[allow(clippy::cast_possible_truncation)]
            let compressed = root as u32;
            self.next[i] = compressed;
            i = next;
        }
        root
    }
}

/// One replica looking for a node: its ring position and how far round it
/// has walked.
#[derive(Clone, Copy)]
struct Seeker {
    position: u64,
    workload: u32,
    cursor: usize,
    steps: usize,
}

/// Per-candidate running totals. Every quantity only grows while placing,
/// so a node that cannot take a replica now never can later in this run.
struct Load {
    replicas: Vec<u32>,
    cap: Vec<u32>,
    free_cpu: Vec<u64>,
    free_memory: Vec<u64>,
}

/// Computes the placement of `workloads` on `candidates`.
///
/// Replica–node pairs are taken in increasing ring distance, over all
/// replicas at once (a stable matching in which both sides rank by
/// distance), so the result does not depend on any processing order, and a
/// join or leave changes only the pairs it must, plus the short chains of
/// replicas displaced where a node was at its cap.
// Node indexes are stored as u32: a cluster has far fewer than 2^32 members.
#[allow(clippy::cast_possible_truncation)]
pub fn place(candidates: &[Candidate], workloads: &[WorkloadSpec], config: PlacementConfig) -> Placement {
    let mut candidates: Vec<Candidate> = candidates.to_vec();
    candidates.sort_by_key(|c| c.id);
    candidates.dedup_by(|a, b| a.id == b.id);
    let mut workloads: Vec<&WorkloadSpec> = workloads.iter().collect();
    workloads.sort_by(|a, b| a.name.cmp(&b.name));
    workloads.dedup_by(|a, b| a.name == b.name);

    let ring = Ring::new(&candidates, config.tokens_per_core);
    let total_weight: f64 = candidates.iter().map(|c| weight(c.capacity)).sum();
    let total_replicas: u64 = workloads.iter().map(|w| u64::from(w.replicas)).sum();
    let mut load = Load {
        replicas: vec![0; candidates.len()],
        cap: candidates
            .iter()
            .map(|c| cap(total_replicas as f64 * weight(c.capacity) / total_weight.max(1.0), config.epsilon))
            .collect(),
        free_cpu: candidates.iter().map(|c| u64::from(c.capacity.cpu_millis)).collect(),
        free_memory: candidates.iter().map(|c| c.capacity.memory_bytes).collect(),
    };
    // One eligibility mask per distinct constraint set; none for workloads
    // without constraints (every node is eligible).
    let mut masks: Vec<Vec<bool>> = Vec::new();
    let mut mask_of: BTreeMap<&BTreeMap<String, String>, usize> = BTreeMap::new();
    let eligibility: Vec<Option<usize>> = workloads
        .iter()
        .map(|w| {
            if w.constraints.is_empty() {
                return None;
            }
            Some(*mask_of.entry(&w.constraints).or_insert_with(|| {
                masks.push(
                    candidates.iter().map(|c| w.constraints.iter().all(|(k, v)| c.labels.get(k) == Some(v))).collect(),
                );
                masks.len() - 1
            }))
        })
        .collect();
    let eligible = |w: usize, node: usize| eligibility[w].is_none_or(|m| masks[m][node]);
    // Which nodes already hold a replica of each workload (distinctness);
    // replica counts are small, so a vector beats a set.
    let mut holds: Vec<Vec<u32>> = vec![Vec::new(); workloads.len()];
    let mut assigned: Vec<Vec<Option<u32>>> = workloads.iter().map(|w| vec![None; w.replicas as usize]).collect();

    let needs: Vec<Resources> = workloads.iter().map(|w| w.resources).collect();
    let usable = |node: usize, w: usize, load: &Load, holds: &[Vec<u32>], capped: bool| {
        let need = needs[w];
        eligible(w, node)
            && !holds[w].contains(&(node as u32))
            && load.free_cpu[node] >= u64::from(need.cpu_millis)
            && load.free_memory[node] >= need.memory_bytes
            && (!capped || load.replicas[node] < load.cap[node])
    };

    let mut seekers: Vec<(Seeker, u32)> = Vec::new();
    for (w, workload) in workloads.iter().enumerate() {
        let base = crate::stable_hash64(workload.name.as_bytes());
        for replica in 0..workload.replicas {
            let position = mix64(base ^ u64::from(replica).wrapping_mul(0xa076_1d64_78bd_642f));
            let cursor = ring.first_at_or_after(position);
            let workload = u32::try_from(w).unwrap_or(u32::MAX);
            seekers.push((Seeker { position, workload, cursor, steps: 0 }, replica));
        }
    }
    // Pairs are taken in increasing distance. Every replica's first pair is
    // known up front, so those are sorted once; only the pairs of replicas
    // that had to walk on go through a heap, and the two are merged.
    let distance = |seeker: &Seeker| ring.tokens[seeker.cursor].0.wrapping_sub(seeker.position);
    let mut first_pairs: Vec<(u64, usize)> = if ring.tokens.is_empty() {
        Vec::new()
    } else {
        seekers.iter().enumerate().map(|(index, (seeker, _))| (distance(seeker), index)).collect()
    };
    first_pairs.sort_unstable();
    let mut first_pairs = first_pairs.into_iter().peekable();
    let mut retries = std::collections::BinaryHeap::new();
    let mut open = OpenTokens::new(&ring, candidates.len());
    let mut leftovers = Vec::new();
    loop {
        let from_retries = match (first_pairs.peek(), retries.peek()) {
            (Some(first), Some(std::cmp::Reverse(retry))) => retry < first,
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (None, None) => break,
        };
        let index = if from_retries {
            retries.pop().map(|std::cmp::Reverse((_, index))| index)
        } else {
            first_pairs.next().map(|(_, index)| index)
        };
        let Some(index) = index else { break };
        let (mut seeker, replica) = seekers[index];
        let w = seeker.workload as usize;
        let node = ring.tokens[seeker.cursor].1 as usize;
        if usable(node, w, &load, &holds, true) {
            take(&mut load, &mut holds[w], node, needs[w]);
            if load.replicas[node] >= load.cap[node] {
                open.close_node(node);
            }
            assigned[w][replica as usize] = Some(node as u32);
            continue;
        }
        // Walk on past nodes that can never take this replica in this run,
        // jumping over every token of a node at its cap at once.
        let len = ring.tokens.len();
        loop {
            let Some(next) = open.next_from((seeker.cursor + 1) % len) else {
                seeker.steps = len;
                break;
            };
            // Tokens advanced: a full lap back to the same token is `len`.
            seeker.steps += (next + len - (seeker.cursor + 1) % len) % len + 1;
            seeker.cursor = next;
            if seeker.steps >= len || usable(ring.tokens[next].1 as usize, w, &load, &holds, true) {
                break;
            }
        }
        seekers[index].0 = seeker;
        if seeker.steps >= ring.tokens.len() {
            leftovers.push(index);
        } else {
            retries.push(std::cmp::Reverse((distance(&seeker), index)));
        }
    }
    // Replicas no node under its cap would take: the first node that fits
    // at all, rather than nothing.
    leftovers.sort_unstable();
    for index in leftovers {
        let (seeker, replica) = seekers[index];
        let w = seeker.workload as usize;
        let start = ring.first_at_or_after(seeker.position);
        let found = (0..ring.tokens.len())
            .map(|step| ring.tokens[(start + step) % ring.tokens.len()].1 as usize)
            .find(|&node| usable(node, w, &load, &holds, false));
        if let Some(node) = found {
            take(&mut load, &mut holds[w], node, needs[w]);
            assigned[w][replica as usize] = Some(node as u32);
        }
    }

    let mut placement = Placement::default();
    for (w, workload) in workloads.iter().enumerate() {
        let nodes: Vec<Option<NodeId>> = assigned[w].iter().map(|i| i.map(|i| candidates[i as usize].id)).collect();
        let placed = u32::try_from(nodes.iter().flatten().count()).unwrap_or(u32::MAX);
        if placed < workload.replicas {
            let matching =
                u32::try_from((0..candidates.len()).filter(|&node| eligible(w, node)).count()).unwrap_or(u32::MAX);
            let reason = match matching {
                0 => UnplacedReason::NoNodeMatchesConstraints,
                m if m < workload.replicas => UnplacedReason::TooFewMatchingNodes { eligible: m },
                _ => UnplacedReason::InsufficientResources { needed: workload.resources },
            };
            placement.unplaced.insert(workload.name.clone(), Unplaced { wanted: workload.replicas, placed, reason });
        }
        placement.assignments.insert(workload.name.clone(), nodes);
    }
    placement
}

#[allow(clippy::cast_possible_truncation)] // see `place`
fn take(load: &mut Load, holds: &mut Vec<u32>, node: usize, need: Resources) {
    load.replicas[node] += 1;
    load.free_cpu[node] -= u64::from(need.cpu_millis);
    load.free_memory[node] -= need.memory_bytes;
    holds.push(node as u32);
}

/// The most replicas a node whose fair share is `share` replicas may hold:
/// `max(1, ⌊(1+ε)·share⌋)`. Rounded down, so even a small node's load
/// stays within the bound (a share of 4.4 capped at 5 would be 1.14 times
/// it); big nodes' slack absorbs the difference.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn cap(share: f64, epsilon: f64) -> u32 {
    ((1.0 + epsilon) * share).floor().max(1.0) as u32
}

/// A node's share of work is proportional to its CPU capacity.
fn weight(capacity: Capacity) -> f64 {
    f64::from(capacity.cpu_millis.max(1))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::workload::tests::spec;

    fn candidate(index: u64, cores: u32, zone: &str) -> Candidate {
        Candidate {
            id: NodeId::from_index(index),
            capacity: Capacity { cpu_millis: cores * 1_000, memory_bytes: u64::from(cores) << 32 },
            labels: BTreeMap::from([("zone".to_string(), zone.to_string())]),
        }
    }

    fn check_invariants(candidates: &[Candidate], workloads: &[WorkloadSpec], placement: &Placement) {
        let by_id: BTreeMap<NodeId, &Candidate> = candidates.iter().map(|c| (c.id, c)).collect();
        let mut used: BTreeMap<NodeId, (u64, u64)> = BTreeMap::new();
        for workload in workloads {
            let nodes: Vec<NodeId> = placement.assignments[&workload.name].iter().flatten().copied().collect();
            let placed = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
            assert!(placed <= workload.replicas);
            if placed < workload.replicas {
                assert_eq!(placement.unplaced[&workload.name].placed, placed, "shortfall is reported");
            }
            let mut distinct = nodes.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), nodes.len(), "replicas of {} on distinct nodes", workload.name);
            for node in &nodes {
                let candidate = by_id[node];
                for (k, v) in &workload.constraints {
                    assert_eq!(candidate.labels.get(k), Some(v), "constraint {k}={v} holds");
                }
                let entry = used.entry(*node).or_default();
                entry.0 += u64::from(workload.resources.cpu_millis);
                entry.1 += workload.resources.memory_bytes;
            }
        }
        for (node, (cpu, memory)) in used {
            let capacity = by_id[&node].capacity;
            assert!(cpu <= u64::from(capacity.cpu_millis) && memory <= capacity.memory_bytes, "resources fit");
        }
    }

    prop_compose! {
        fn view()(
            cores in prop::collection::vec(1u32..=8, 1..40),
            zones in prop::collection::vec(0u8..3, 40),
            sizes in prop::collection::vec((0u32..=6, 0u32..2_000, prop::option::of(0u8..4)), 0..30),
        ) -> (Vec<Candidate>, Vec<WorkloadSpec>) {
            let candidates = cores.iter().enumerate()
                .map(|(i, c)| candidate(i as u64 * 7919, *c, &format!("z{}", zones[i])))
                .collect();
            let workloads = sizes.iter().enumerate().map(|(i, (replicas, cpu, zone))| {
                let mut w = spec(&format!("w{i}"), *replicas);
                w.resources.cpu_millis = *cpu;
                if let Some(zone) = zone {
                    w.constraints.insert("zone".into(), format!("z{zone}"));
                }
                w
            }).collect();
            (candidates, workloads)
        }
    }

    proptest! {
        /// Two nodes with the same view, whatever order they hold it in,
        /// compute the same placement; and every placement keeps replicas on
        /// distinct nodes, constraints and resource fit.
        #[test]
        fn same_view_same_placement_and_invariants_hold((candidates, workloads) in view(), rotate in 0usize..40) {
            let config = PlacementConfig::default();
            let first = place(&candidates, &workloads, config);
            let mut shuffled_candidates = candidates.clone();
            shuffled_candidates.reverse();
            let mut shuffled_workloads = workloads.clone();
            if !shuffled_workloads.is_empty() {
                let k = rotate % shuffled_workloads.len();
                shuffled_workloads.rotate_left(k);
            }
            let second = place(&shuffled_candidates, &shuffled_workloads, config);
            prop_assert_eq!(&first, &second);
            check_invariants(&candidates, &workloads, &first);
        }
    }

    #[test]
    fn unplaceable_work_says_why() {
        let candidates = vec![candidate(1, 2, "a"), candidate(2, 2, "a"), candidate(3, 2, "b")];
        let mut nowhere = spec("nowhere", 1);
        nowhere.constraints.insert("zone".into(), "mars".into());
        let mut crowded = spec("crowded", 2);
        crowded.constraints.insert("zone".into(), "b".into());
        let mut huge = spec("huge", 1);
        huge.resources.cpu_millis = 64_000;
        let placement = place(&candidates, &[nowhere, crowded, huge], PlacementConfig::default());
        assert_eq!(placement.unplaced["nowhere"].reason, UnplacedReason::NoNodeMatchesConstraints);
        assert_eq!(placement.unplaced["crowded"].reason, UnplacedReason::TooFewMatchingNodes { eligible: 1 });
        assert_eq!(placement.unplaced["crowded"].placed, 1);
        assert!(matches!(placement.unplaced["huge"].reason, UnplacedReason::InsufficientResources { .. }));
    }

    #[test]
    fn load_is_within_the_bound_and_a_leave_moves_little() {
        let candidates: Vec<Candidate> = (0..100).map(|i| candidate(i, 1 << (i % 4), "a")).collect();
        let workloads: Vec<WorkloadSpec> = (0..400).map(|i| spec(&format!("w{i}"), 5)).collect();
        let config = PlacementConfig::default();
        let before = place(&candidates, &workloads, config);
        assert!(before.unplaced.is_empty());
        let stats = crate::placement::quality::load_ratio(&candidates, &before);
        assert!(stats <= 1.0 + config.epsilon, "max/mean normalised load {stats}");
        let gone = candidates[17].id;
        let remaining: Vec<Candidate> = candidates.iter().filter(|c| c.id != gone).cloned().collect();
        let after = place(&remaining, &workloads, config);
        let (moved, minimum) = crate::placement::quality::moves(&before, &after, Some(gone), None);
        // Bounded loads cost some extra movement (displacement chains at full
        // nodes); ALGORITHM.md has the measured trade-off against epsilon.
        assert!(moved >= minimum && moved as f64 <= 4.0 * minimum as f64, "moved {moved}, minimum {minimum}");
    }
}

/// Measures of placement quality, shared by tests and the benchmark.
pub mod quality {
    use std::collections::BTreeSet;

    use super::{Candidate, Placement, weight};
    use crate::NodeId;

    /// The most loaded node's replicas per unit of capacity, over the
    /// cluster's (total replicas over total capacity): 1.0 is perfect balance.
    pub fn load_ratio(candidates: &[Candidate], placement: &Placement) -> f64 {
        let count = per_node(placement);
        let total_weight: f64 = candidates.iter().map(|c| weight(c.capacity)).sum();
        let total: u64 = count.values().sum();
        let mean = total as f64 / total_weight;
        let max = candidates
            .iter()
            .map(|c| count.get(&c.id).copied().unwrap_or(0) as f64 / weight(c.capacity))
            .fold(0.0, f64::max);
        if mean == 0.0 { 1.0 } else { max / mean }
    }

    /// Replicas held by each node that holds any.
    fn per_node(placement: &Placement) -> std::collections::BTreeMap<NodeId, u64> {
        let mut count = std::collections::BTreeMap::new();
        for (_, _, node) in placement.replicas() {
            *count.entry(node).or_default() += 1;
        }
        count
    }

    /// The fraction of candidates holding fewer replicas than their cap: the
    /// nodes a displaced replica can land on without displacing another.
    pub fn below_cap(candidates: &[Candidate], placement: &Placement, epsilon: f64) -> f64 {
        let count = per_node(placement);
        let total: u64 = count.values().sum();
        let total_weight: f64 = candidates.iter().map(|c| weight(c.capacity)).sum();
        let open = candidates
            .iter()
            .filter(|c| {
                let cap = super::cap(total as f64 * weight(c.capacity) / total_weight.max(1.0), epsilon);
                count.get(&c.id).copied().unwrap_or(0) < u64::from(cap)
            })
            .count();
        if candidates.is_empty() { 0.0 } else { open as f64 / candidates.len() as f64 }
    }

    /// (replicas moved, theoretical minimum) between two placements, where
    /// `left` left or `joined` joined in between. A replica "moves" when a
    /// (workload, node) pair disappears. The minimum is the leaver's load, or
    /// the joiner's.
    pub fn moves(before: &Placement, after: &Placement, left: Option<NodeId>, joined: Option<NodeId>) -> (u64, u64) {
        let pairs = |p: &Placement| -> BTreeSet<(String, NodeId)> {
            p.replicas().map(|(w, _, n)| (w.to_string(), n)).collect()
        };
        let (old, new) = (pairs(before), pairs(after));
        let moved = old.difference(&new).count() as u64;
        let minimum = match (left, joined) {
            (Some(node), _) => old.iter().filter(|(_, n)| *n == node).count(),
            (None, Some(node)) => new.iter().filter(|(_, n)| *n == node).count(),
            (None, None) => 0,
        };
        (moved, minimum as u64)
    }
}
