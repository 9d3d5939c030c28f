//! Placement: which nodes run which replicas, as a pure function of the view
//! (the live members, the catalog, and where replicas run now).
//!
//! Consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam,
//! 2018) on a ring weighted by capacity, used only for the replicas that must
//! find a node; every other replica stays where it runs:
//!
//! 1. **Keep.** A replica that runs on a live node that matches its
//!    constraints stays there while the node is within its keep cap
//!    `⌊(1+ε)·share⌋` and has the resources; a node over it keeps the
//!    replicas it ranks first (a fixed hash of replica and node) and sheds
//!    the rest. A replica shed by one node stays on another node that also
//!    runs a copy, if that one has room.
//! 2. **Orphans** (replicas that run nowhere live: new, or their node died or
//!    left) walk the ring clockwise from their hash to the first node that
//!    takes them: first only nodes below their fair share `⌊share⌋` (so a
//!    leaver's replicas fill what a join or a leave left short), then nodes
//!    under the place cap `⌊(1+ε/2)·share⌋`, then under the keep cap; pairs
//!    are taken in increasing ring distance over all orphans at once (a
//!    stable matching). One that finds no such node goes to a node that
//!    runs a copy, else to the first node that fits at all; one that fits
//!    nowhere is reported unplaced, with the reason.
//! 3. **Pull.** A settled node still below its fair share (a node that just
//!    joined) takes replicas from nodes above theirs, in its own ring order
//!    (the replicas just counter-clockwise of its tokens first), until it
//!    reaches its fair share: no more.
//!
//! Shares are capacity-weighted over the settled nodes. A live node that has
//! not settled keeps what it runs but is given nothing new. Two properties
//! make placement stable while statuses spread (ALGORITHM.md section 13):
//! the result is a fixed point (placing again from where it says replicas
//! run moves nothing), and a view in which only some of its moves have
//! happened gives the same result.
//!
//! Every node computes this from its own view and, from the same view, gets
//! the same answer: inputs are sorted, hashes are [`crate::stable_hash64`],
//! and nothing iterates a randomly ordered map.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use serde::{Deserialize, Serialize};

use crate::hash::mix64;
use crate::workload::{Driver, Resources, WorkloadSpec, offers_driver};
use crate::{Capacity, NodeId};

/// A live member: where replicas may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: NodeId,
    pub capacity: Capacity,
    pub labels: BTreeMap<String, String>,
    /// Whether it takes new work (it has settled). One that has not keeps
    /// the replicas it runs, within its cap, and is given none.
    pub settled: bool,
}

/// Tuning for [`place`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlacementConfig {
    /// Load slack: no node keeps more than `(1+ε)` times its
    /// capacity-weighted share of replicas, and new replicas go only to
    /// nodes under `(1+ε/2)` times it (the gap keeps a join, which shrinks
    /// every share a little, from pushing nodes over their cap).
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
    /// No live node offers the workload's driver (see
    /// [`crate::DRIVERS_LABEL`]).
    NoNodeOffersDriver { driver: String },
    /// No live node that offers the driver carries every label in the
    /// constraints.
    NoNodeMatchesConstraints,
    /// Only `eligible` nodes match the constraints and offer the driver;
    /// replicas must be on distinct nodes.
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

/// Where replicas run now, as the status table reports it: the nodes that
/// run a copy of each replica, the one placement should keep first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Running {
    /// Per workload, the node each replica is kept on if it can be.
    first: BTreeMap<String, Vec<Option<NodeId>>>,
    /// Further nodes running a copy (during a handover, after a partition
    /// heals), in order of preference.
    more: BTreeMap<(String, usize), Vec<NodeId>>,
}

impl Running {
    /// Nothing runs anywhere.
    pub fn new() -> Running {
        Running::default()
    }

    /// Records that `node` runs a copy of replica `replica` of `workload`.
    /// Add a replica's copies in order of preference: the first is the one
    /// placement keeps if it can; the others take the replica if that node
    /// has no room for it.
    pub fn add(&mut self, workload: &str, replica: usize, node: NodeId) {
        if !self.first.contains_key(workload) {
            self.first.insert(workload.to_owned(), Vec::new());
        }
        let Some(nodes) = self.first.get_mut(workload) else { return };
        if nodes.len() <= replica {
            nodes.resize(replica + 1, None);
        }
        match nodes[replica] {
            None => nodes[replica] = Some(node),
            Some(first) if first == node => {}
            Some(_) => {
                let more = self.more.entry((workload.to_owned(), replica)).or_default();
                if !more.contains(&node) {
                    more.push(node);
                }
            }
        }
    }

    /// Whether no replica runs anywhere.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    /// The nodes running a copy of `replica` of `workload`, preferred first.
    pub fn nodes(&self, workload: &str, replica: usize) -> impl Iterator<Item = NodeId> + '_ {
        let first = self.first.get(workload).and_then(|nodes| nodes.get(replica).copied().flatten());
        let more = self.more.get(&(workload.to_owned(), replica)).into_iter().flatten().copied();
        first.into_iter().chain(more)
    }

    /// A stable fingerprint (for caching a placement computed from it).
    pub fn fingerprint(&self) -> u64 {
        let mut h = 0x6a09_e667_f3bc_c908u64;
        for (name, nodes) in &self.first {
            h = mix64(h ^ crate::stable_hash64(name.as_bytes()));
            for (i, node) in nodes.iter().enumerate() {
                if let Some(node) = node {
                    h = mix64(h ^ node.key() ^ (i as u64).rotate_left(40));
                }
            }
        }
        for ((name, replica), nodes) in &self.more {
            h = mix64(h ^ crate::stable_hash64(name.as_bytes()) ^ (*replica as u64).rotate_left(20));
            for node in nodes {
                h = mix64(h ^ node.key());
            }
        }
        h
    }
}

impl From<&Placement> for Running {
    /// Every replica running where `placement` puts it.
    fn from(placement: &Placement) -> Running {
        let first = placement.assignments.iter().filter(|(_, nodes)| nodes.iter().any(Option::is_some));
        Running { first: first.map(|(name, nodes)| (name.clone(), nodes.clone())).collect(), more: BTreeMap::new() }
    }
}

struct Ring {
    /// (position, candidate index), sorted. Only settled candidates have
    /// tokens: only they take new work.
    tokens: Vec<(u64, u32)>,
    /// The first token at or after each of 2^bits equal slices of the
    /// ring: positions are hashes, so a lookup scans about one token from
    /// there instead of binary-searching the whole ring (a million lookups
    /// in a ring of half a million tokens are otherwise mostly cache
    /// misses).
    slices: Vec<u32>,
    bits: u32,
}

impl Ring {
    fn new(candidates: &[Candidate], tokens_per_core: u32) -> Ring {
        let mut tokens = Vec::new();
        for (index, candidate) in candidates.iter().enumerate().filter(|(_, c)| c.settled) {
            let count =
                (u64::from(candidate.capacity.cpu_millis) * u64::from(tokens_per_core) / 1_000).clamp(1, 65_536);
            let key = candidate.id.key();
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            tokens.extend((0..count).map(|j| (mix64(key ^ mix64(j.wrapping_add(0x9e37_79b9))), index)));
        }
        tokens.sort_unstable();
        let bits = tokens.len().max(1).next_power_of_two().trailing_zeros().max(1);
        let mut slices = Vec::with_capacity(1 << bits);
        let mut next = 0usize;
        for slice in 0..1u64 << bits {
            let start = slice << (64 - bits);
            while next < tokens.len() && tokens[next].0 < start {
                next += 1;
            }
            slices.push(u32::try_from(next).unwrap_or(u32::MAX));
        }
        Ring { tokens, slices, bits }
    }

    /// The first token at or clockwise after `position`.
    #[allow(clippy::cast_possible_truncation)] // at most 2^bits slices
    fn first_at_or_after(&self, position: u64) -> usize {
        let mut index = self.slices[(position >> (64 - self.bits)) as usize] as usize;
        while index < self.tokens.len() && self.tokens[index].0 < position {
            index += 1;
        }
        if index == self.tokens.len() { 0 } else { index }
    }
}

/// Each node's tokens, as indexes into the ring, in ring order:
/// `of_node[starts[n]..starts[n + 1]]`.
struct NodeTokens {
    starts: Vec<u32>,
    of_node: Vec<u32>,
}

impl NodeTokens {
    #[allow(clippy::cast_possible_truncation)] // see `place`
    fn new(ring: &Ring, nodes: usize) -> NodeTokens {
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
        NodeTokens { starts, of_node }
    }

    fn of(&self, node: usize) -> &[u32] {
        &self.of_node[self.starts[node] as usize..self.starts[node + 1] as usize]
    }
}

/// The ring's tokens whose node is still open (under the stage's limit), as
/// "next open token at or after i" with path compression (a node that
/// reaches its limit stays there for the rest of the stage), so a walk
/// skips full nodes in near-constant time.
struct OpenTokens {
    /// `next[i] == i` while token i is open; otherwise a later token to look
    /// from (`len` past the end).
    next: Vec<u32>,
}

impl OpenTokens {
    #[allow(clippy::cast_possible_truncation)] // see `place`
    fn new(len: usize) -> OpenTokens {
        OpenTokens { next: (0..=len as u32).collect() }
    }

    fn close(&mut self, tokens: &[u32]) {
        for &token in tokens {
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

/// One replica looking for a node: which one, its ring position, and how
/// far round it has walked.
#[derive(Clone, Copy, Debug)]
struct Seeker {
    workload: u32,
    replica: u32,
    position: u64,
    cursor: usize,
    steps: usize,
}

/// The state of one computation: the view, the bounds, and the replicas
/// placed so far. Node indexes are positions in the sorted candidates.
struct Placer<'a> {
    candidates: &'a [Candidate],
    workloads: &'a [&'a WorkloadSpec],
    ring: Ring,
    tokens: NodeTokens,
    /// One eligibility mask per distinct constraint set; `None` for a
    /// workload without constraints (every node is eligible).
    masks: Vec<Vec<bool>>,
    mask_of: Vec<Option<usize>>,
    bases: Vec<u64>,
    /// Each workload's needs and each node's capacity, in flat vectors:
    /// the matching reads them for every pair it tries.
    needs: Vec<Resources>,
    cpu: Vec<u64>,
    memory: Vec<u64>,
    /// `fair` for a settled node, 0 for one that takes no new work.
    fair_limit: Vec<u32>,
    /// `⌊share⌋`: the fair share a settled node below it pulls up to, and
    /// the load above which a node gives replicas to such a node.
    fair: Vec<u32>,
    /// New replicas go only to nodes under this (`⌊(1+ε/2)·share⌋`).
    place_cap: Vec<u32>,
    /// A node keeps at most this many (`⌊(1+ε)·share⌋`).
    keep_cap: Vec<u32>,
    load: Vec<u32>,
    used_cpu: Vec<u64>,
    used_memory: Vec<u64>,
    /// The node of every replica (`NONE`: none yet), workload after
    /// workload: replica r of workload w is `slots[first[w] + r]`. One flat
    /// vector, so the distinctness check (does this node hold another
    /// replica of w?) scans a few neighbouring slots.
    slots: Vec<u32>,
    first: Vec<u32>,
}

/// Which per-node limit a matching stage fills up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limit {
    Fair,
    Place,
    Keep,
}

/// An empty slot.
const NONE: u32 = u32::MAX;

/// Placements from a placement's own result, at most, when overflow left a
/// node over its cap (each round moves at least one replica under a cap).
const MAX_OVERFLOW_ROUNDS: usize = 4;

impl<'a> Placer<'a> {
    /// The whole computation: keep, orphans, overflow, pull.
    fn run(
        candidates: &'a [Candidate],
        workloads: &'a [&'a WorkloadSpec],
        running: &Running,
        config: PlacementConfig,
    ) -> Placer<'a> {
        let mut placer = Placer::new(candidates, workloads, config);
        let mut orphans = placer.keep(running);
        orphans.extend(placer.shed());
        orphans.sort_unstable();
        let orphans = placer.onto_other_copies(orphans, running);
        let orphans = placer.match_on_ring(orphans, Limit::Fair);
        let orphans = placer.match_on_ring(orphans, Limit::Place);
        let mut orphans = placer.match_on_ring(orphans, Limit::Keep);
        loop {
            placer.pull();
            // A node the pulls took from may now have room for what was
            // left; what lands there may give a node still short more to
            // pull from.
            let left = orphans.len();
            if left == 0 {
                break;
            }
            orphans = placer.match_on_ring(orphans, Limit::Place);
            orphans = placer.match_on_ring(orphans, Limit::Keep);
            if orphans.len() == left {
                break;
            }
        }
        placer.overflow(orphans, running);
        placer
    }

    /// Whether some node holds more than its keep cap (after overflow).
    fn over_cap(&self) -> bool {
        self.load.iter().zip(&self.keep_cap).any(|(load, cap)| load > cap)
    }

    /// The result, as where replicas run.
    fn running(&self) -> Running {
        let mut running = Running::new();
        for w in 0..self.workloads.len() {
            for (replica, node) in self.of_workload(w).iter().enumerate() {
                if *node != NONE {
                    running.add(&self.workloads[w].name, replica, self.candidates[*node as usize].id);
                }
            }
        }
        running
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn new(candidates: &'a [Candidate], workloads: &'a [&'a WorkloadSpec], config: PlacementConfig) -> Placer<'a> {
        let ring = Ring::new(candidates, config.tokens_per_core);
        let tokens = NodeTokens::new(&ring, candidates.len());
        let total: u64 = workloads.iter().map(|w| u64::from(w.replicas)).sum();
        // Shares are over the settled nodes (the ones that take new work);
        // with none settled, over all, so unsettled holders keep a cap.
        let settled_weight: f64 = candidates.iter().filter(|c| c.settled).map(|c| weight(c.capacity)).sum();
        let all_weight: f64 = candidates.iter().map(|c| weight(c.capacity)).sum();
        let total_weight = if settled_weight > 0.0 { settled_weight } else { all_weight };
        let shares: Vec<f64> =
            candidates.iter().map(|c| total as f64 * weight(c.capacity) / total_weight.max(1.0)).collect();
        let fair: Vec<u32> = shares.iter().map(|s| s.floor() as u32).collect();
        let epsilon = config.epsilon;
        let mut keep_cap: Vec<u32> = shares.iter().map(|s| cap(*s, epsilon)).collect();
        let settled_sum = |caps: &[u32]| -> u64 {
            candidates.iter().zip(caps).filter(|(c, _)| c.settled).map(|(_, cap)| u64::from(*cap)).sum()
        };
        // A cluster too small for the bound (6 nodes with a share of 1.5
        // each: caps of 1) gets caps that hold every replica.
        if settled_sum(&keep_cap) < total {
            for (cap, share) in keep_cap.iter_mut().zip(&shares) {
                *cap = (*cap).max(share.ceil() as u32);
            }
        }
        let mut place_cap: Vec<u32> =
            shares.iter().zip(&keep_cap).map(|(s, keep)| cap(*s, epsilon / 2.0).min(*keep)).collect();
        if settled_sum(&place_cap) < total {
            place_cap.clone_from(&keep_cap);
        }

        // Which nodes each workload may use: its constraints' labels, and
        // its driver offered. Workloads alike share one mask; a workload any
        // node may take has none.
        let offered_everywhere: BTreeMap<&str, bool> = Driver::NAMES
            .iter()
            .map(|driver| (*driver, candidates.iter().all(|c| offers_driver(&c.labels, driver))))
            .collect();
        let every_node_offers = |driver: &str| offered_everywhere.get(driver).copied().unwrap_or(false);
        let mut masks: Vec<Vec<bool>> = Vec::new();
        let mut mask_index: BTreeMap<(&BTreeMap<String, String>, &str), usize> = BTreeMap::new();
        let mask_of = workloads
            .iter()
            .map(|w| {
                let driver = w.driver.name();
                if w.constraints.is_empty() && every_node_offers(driver) {
                    return None;
                }
                Some(*mask_index.entry((&w.constraints, driver)).or_insert_with(|| {
                    masks.push(
                        candidates
                            .iter()
                            .map(|c| {
                                offers_driver(&c.labels, driver)
                                    && w.constraints.iter().all(|(k, v)| c.labels.get(k) == Some(v))
                            })
                            .collect(),
                    );
                    masks.len() - 1
                }))
            })
            .collect();
        let n = candidates.len();
        Placer {
            candidates,
            workloads,
            ring,
            tokens,
            masks,
            mask_of,
            bases: workloads.iter().map(|w| crate::stable_hash64(w.name.as_bytes())).collect(),
            needs: workloads.iter().map(|w| w.resources).collect(),
            cpu: candidates.iter().map(|c| u64::from(c.capacity.cpu_millis)).collect(),
            memory: candidates.iter().map(|c| c.capacity.memory_bytes).collect(),
            fair_limit: candidates.iter().zip(&fair).map(|(c, f)| if c.settled { *f } else { 0 }).collect(),
            fair,
            place_cap,
            keep_cap,
            load: vec![0; n],
            used_cpu: vec![0; n],
            used_memory: vec![0; n],
            slots: vec![NONE; workloads.iter().map(|w| w.replicas as usize).sum()],
            first: std::iter::once(0)
                .chain(workloads.iter().scan(0u32, |at, w| {
                    *at += w.replicas;
                    Some(*at)
                }))
                .collect(),
        }
    }

    /// Replica `replica` of workload `w`'s place on the ring.
    fn position(&self, w: usize, replica: u32) -> u64 {
        mix64(self.bases[w] ^ u64::from(replica).wrapping_mul(0xa076_1d64_78bd_642f))
    }

    fn eligible(&self, w: usize, node: usize) -> bool {
        self.mask_of[w].is_none_or(|m| self.masks[m][node])
    }

    /// Whether `node` may run a replica of `w` besides what it has: labels,
    /// distinctness and resources (not the load cap).
    #[allow(clippy::cast_possible_truncation)] // see `place`
    fn fits(&self, node: usize, w: usize) -> bool {
        let need = self.needs[w];
        self.used_cpu[node] + u64::from(need.cpu_millis) <= self.cpu[node]
            && self.used_memory[node] + need.memory_bytes <= self.memory[node]
            && self.eligible(w, node)
            && !self.of_workload(w).contains(&(node as u32))
    }

    /// The slots of workload `w`'s replicas.
    fn of_workload(&self, w: usize) -> &[u32] {
        &self.slots[self.first[w] as usize..self.first[w + 1] as usize]
    }

    /// The node replica `replica` of workload `w` is on.
    fn holder(&self, w: usize, replica: u32) -> Option<usize> {
        let node = self.slots[self.first[w] as usize + replica as usize];
        (node != NONE).then_some(node as usize)
    }

    fn limit(&self, limit: Limit, node: usize) -> u32 {
        match limit {
            Limit::Fair => self.fair_limit[node],
            Limit::Place => self.place_cap[node],
            Limit::Keep => self.keep_cap[node],
        }
    }

    fn under(&self, limit: Limit, node: usize) -> bool {
        self.load[node] < self.limit(limit, node)
    }

    #[allow(clippy::cast_possible_truncation)] // see `place`
    fn take(&mut self, node: usize, w: usize, replica: u32) {
        let need = self.needs[w];
        self.load[node] += 1;
        self.used_cpu[node] += u64::from(need.cpu_millis);
        self.used_memory[node] += need.memory_bytes;
        self.slots[self.first[w] as usize + replica as usize] = node as u32;
    }

    fn release(&mut self, w: usize, replica: u32) {
        let slot = self.first[w] as usize + replica as usize;
        let node = std::mem::replace(&mut self.slots[slot], NONE);
        if node == NONE {
            return;
        }
        let need = self.needs[w];
        let n = node as usize;
        self.load[n] -= 1;
        self.used_cpu[n] -= u64::from(need.cpu_millis);
        self.used_memory[n] -= need.memory_bytes;
    }

    fn node_index(&self, id: NodeId) -> Option<usize> {
        self.candidates.binary_search_by_key(&id, |c| c.id).ok()
    }

    /// Step 1: every replica stays on the node that runs it, if that node
    /// is a candidate matching its constraints (the caps and resources are
    /// [`Placer::shed`]'s). Returns the replicas that run nowhere now
    /// (orphans), in (workload, replica) order.
    #[allow(clippy::cast_possible_truncation)] // see `place`
    fn keep(&mut self, running: &Running) -> Vec<(u32, u32)> {
        if !running.is_empty() {
            for w in 0..self.workloads.len() {
                let Some(nodes) = running.first.get(&self.workloads[w].name) else { continue };
                for (replica, holder) in nodes.iter().enumerate().take(self.workloads[w].replicas as usize) {
                    let Some(node) = holder.and_then(|id| self.node_index(id)) else { continue };
                    if self.eligible(w, node) && !self.of_workload(w).contains(&(node as u32)) {
                        self.take(node, w, replica as u32);
                    }
                }
            }
        }
        let mut orphans = Vec::new();
        for w in 0..self.workloads.len() {
            let slots = self.of_workload(w);
            orphans.extend(slots.iter().enumerate().filter(|(_, n)| **n == NONE).map(|(r, _)| (w as u32, r as u32)));
        }
        orphans
    }

    /// Nodes over their keep cap or their resources keep the replicas they
    /// rank first (a fixed hash of replica and node, so a replica already
    /// moved away does not change which others stay) and shed the rest,
    /// returned.
    #[allow(clippy::cast_possible_truncation)] // see `place`
    fn shed(&mut self) -> Vec<(u32, u32)> {
        let over: Vec<usize> = (0..self.candidates.len())
            .filter(|&n| {
                self.load[n] > self.keep_cap[n]
                    || self.used_cpu[n] > self.cpu[n]
                    || self.used_memory[n] > self.memory[n]
            })
            .collect();
        let mut shed = Vec::new();
        if over.is_empty() {
            return shed;
        }
        let mut kept: BTreeMap<u32, Vec<(u64, u32, u32)>> = over.iter().map(|&n| (n as u32, Vec::new())).collect();
        for w in 0..self.workloads.len() {
            for (replica, &node) in self.of_workload(w).iter().enumerate() {
                if let Some(list) = kept.get_mut(&node) {
                    let rank = mix64(self.position(w, replica as u32) ^ self.candidates[node as usize].id.key());
                    list.push((rank, w as u32, replica as u32));
                }
            }
        }
        for (node, mut list) in kept {
            list.sort_unstable();
            for &(_, w, replica) in &list {
                self.release(w as usize, replica);
            }
            for (_, w, replica) in list {
                let w = w as usize;
                if self.load[node as usize] < self.keep_cap[node as usize] && self.fits(node as usize, w) {
                    self.take(node as usize, w, replica);
                } else {
                    shed.push((w as u32, replica));
                }
            }
        }
        shed
    }

    /// A shed replica stays on another node that runs a copy of it, if that
    /// node has room (the first such node in the order given).
    fn onto_other_copies(&mut self, orphans: Vec<(u32, u32)>, running: &Running) -> Vec<(u32, u32)> {
        if running.more.is_empty() {
            return orphans;
        }
        let mut left = Vec::with_capacity(orphans.len());
        for (w, replica) in orphans {
            let name = &self.workloads[w as usize].name;
            let found = running.more.get(&(name.clone(), replica as usize)).into_iter().flatten().find_map(|id| {
                let node = self.node_index(*id)?;
                (self.under(Limit::Keep, node) && self.fits(node, w as usize)).then_some(node)
            });
            match found {
                Some(node) => self.take(node, w as usize, replica),
                None => left.push((w, replica)),
            }
        }
        left
    }

    /// Step 2: orphans walk the ring to nodes under `limit`. Pairs are taken
    /// in increasing ring distance over all of them at once (a stable
    /// matching in which both sides rank by distance), so the result does
    /// not depend on any processing order. Returns those left over, in
    /// (workload, replica) order.
    #[allow(clippy::cast_possible_truncation)] // see `place`
    fn match_on_ring(&mut self, orphans: Vec<(u32, u32)>, limit: Limit) -> Vec<(u32, u32)> {
        let len = self.ring.tokens.len();
        if orphans.is_empty() || len == 0 {
            return orphans;
        }
        let mut open = OpenTokens::new(len);
        let mut any_open = false;
        for node in 0..self.candidates.len() {
            if self.under(limit, node) {
                any_open |= !self.tokens.of(node).is_empty();
            } else {
                open.close(self.tokens.of(node));
            }
        }
        if !any_open {
            return orphans;
        }
        let mut seekers: Vec<Seeker> = orphans
            .iter()
            .map(|&(workload, replica)| {
                let position = self.position(workload as usize, replica);
                Seeker { workload, replica, position, cursor: self.ring.first_at_or_after(position), steps: 0 }
            })
            .collect();
        // Every seeker's first pair is known up front, so those are sorted
        // once; only the pairs of seekers that had to walk on go through a
        // heap, and the two are merged.
        let distance = |ring: &Ring, seeker: &Seeker| ring.tokens[seeker.cursor].0.wrapping_sub(seeker.position);
        // (distance, seeker, node, workload, replica): what taking the pair
        // needs, so the common case reads no seeker and no token.
        let mut first_pairs: Vec<(u64, u32, u32, u32, u32)> = seekers
            .iter()
            .enumerate()
            .map(|(index, seeker)| {
                let node = self.ring.tokens[seeker.cursor].1;
                (distance(&self.ring, seeker), index as u32, node, seeker.workload, seeker.replica)
            })
            .collect();
        first_pairs.sort_unstable();
        let mut first_pairs = first_pairs.into_iter().peekable();
        let mut retries = BinaryHeap::new();
        let mut leftovers = Vec::new();
        loop {
            let from_retries = match (first_pairs.peek(), retries.peek()) {
                (Some(first), Some(Reverse(retry))) => *retry < (first.0, first.1 as usize),
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (None, None) => break,
            };
            let pair = if from_retries {
                retries.pop().map(|Reverse((_, index))| {
                    let seeker: &Seeker = &seekers[index];
                    (index, self.ring.tokens[seeker.cursor].1, seeker.workload, seeker.replica)
                })
            } else {
                first_pairs.next().map(|(_, index, node, w, replica)| (index as usize, node, w, replica))
            };
            let Some((index, node, w, replica)) = pair else { break };
            let (node, w) = (node as usize, w as usize);
            if self.under(limit, node) && self.fits(node, w) {
                self.take(node, w, replica);
                if !self.under(limit, node) {
                    open.close(self.tokens.of(node));
                }
                continue;
            }
            let mut seeker = seekers[index];
            // Walk on past nodes that can never take this replica in this
            // stage, jumping over every token of a full node at once.
            loop {
                let Some(next) = open.next_from((seeker.cursor + 1) % len) else {
                    seeker.steps = len;
                    break;
                };
                // Tokens advanced: a full lap back to the same token is `len`.
                seeker.steps += (next + len - (seeker.cursor + 1) % len) % len + 1;
                seeker.cursor = next;
                if seeker.steps >= len || self.fits(self.ring.tokens[next].1 as usize, w) {
                    break;
                }
            }
            seekers[index] = seeker;
            if seeker.steps >= len {
                leftovers.push((seeker.workload, seeker.replica));
            } else {
                retries.push(Reverse((distance(&self.ring, &seeker), index)));
            }
        }
        leftovers.sort_unstable();
        leftovers
    }

    /// Replicas no node under its cap would take: a node that runs a copy,
    /// else the first node along the ring that fits at all, rather than
    /// nothing.
    fn overflow(&mut self, leftovers: Vec<(u32, u32)>, running: &Running) {
        let len = self.ring.tokens.len();
        for (w, replica) in leftovers {
            let wi = w as usize;
            let name = &self.workloads[wi].name;
            let holder = running.nodes(name, replica as usize).find_map(|id| {
                let node = self.node_index(id)?;
                self.fits(node, wi).then_some(node)
            });
            let found = holder.or_else(|| {
                let start = self.ring.first_at_or_after(self.position(wi, replica));
                (0..len).map(|step| self.ring.tokens[(start + step) % len].1 as usize).find(|&node| self.fits(node, wi))
            });
            if let Some(node) = found {
                self.take(node, wi, replica);
            }
        }
    }

    /// Step 3: each settled node below its fair share, in id order, takes
    /// replicas from nodes above theirs, nearest its own tokens first (the
    /// replicas that hash to it), until it reaches its fair share. The order
    /// is fixed by the ring, not by the loads, so a view in which some of
    /// these moves already happened makes the same choices for the rest.
    #[allow(clippy::cast_possible_truncation)] // see `place`
    fn pull(&mut self) {
        let needy: Vec<usize> =
            (0..self.candidates.len()).filter(|&n| self.candidates[n].settled && self.under(Limit::Fair, n)).collect();
        if needy.is_empty() || !(0..self.candidates.len()).any(|n| self.load[n] > self.fair[n]) {
            return;
        }
        // Every placed replica by ring position.
        let mut by_position: Vec<(u64, u32, u32)> = Vec::new();
        for w in 0..self.workloads.len() {
            for (replica, &node) in self.of_workload(w).iter().enumerate() {
                if node != NONE {
                    by_position.push((self.position(w, replica as u32), w as u32, replica as u32));
                }
            }
        }
        by_position.sort_unstable();
        let len = by_position.len();
        if len == 0 {
            return;
        }
        for taker in needy {
            // One cursor per token, walking counter-clockwise from it to the
            // taker's previous token, merged by distance.
            let tokens: Vec<u64> = self.tokens.of(taker).iter().map(|&t| self.ring.tokens[t as usize].0).collect();
            let mut heap = BinaryHeap::new();
            for (k, &token) in tokens.iter().enumerate() {
                let previous = tokens[(k + tokens.len() - 1) % tokens.len()];
                let span = if tokens.len() == 1 { u64::MAX } else { token.wrapping_sub(previous) };
                let at = by_position.partition_point(|(p, _, _)| *p <= token);
                let at = (at + len - 1) % len;
                let d = token.wrapping_sub(by_position[at].0);
                if d < span || tokens.len() == 1 {
                    heap.push(Reverse((d, k, at, 0usize)));
                }
            }
            while self.under(Limit::Fair, taker) {
                let Some(Reverse((_, k, at, steps))) = heap.pop() else { break };
                let (_, w, replica) = by_position[at];
                let wi = w as usize;
                if let Some(holder) = self.holder(wi, replica) {
                    if holder != taker && self.load[holder] > self.fair[holder] && self.fits(taker, wi) {
                        self.release(wi, replica);
                        self.take(taker, wi, replica);
                    }
                }
                let token = tokens[k];
                let previous = tokens[(k + tokens.len() - 1) % tokens.len()];
                let span = if tokens.len() == 1 { u64::MAX } else { token.wrapping_sub(previous) };
                let next = (at + len - 1) % len;
                let d = token.wrapping_sub(by_position[next].0);
                if steps + 1 < len && (tokens.len() == 1 || d < span) {
                    heap.push(Reverse((d, k, next, steps + 1)));
                }
            }
        }
    }
}

/// Computes where every replica of `workloads` should run, given the live
/// `candidates` and where replicas run now (`running`; empty for a
/// placement from scratch). See the module doc for the rule.
// Node indexes are stored as u32: a cluster has far fewer than 2^32 members.
#[allow(clippy::cast_possible_truncation)]
pub fn place(
    candidates: &[Candidate],
    workloads: &[WorkloadSpec],
    running: &Running,
    config: PlacementConfig,
) -> Placement {
    let mut candidates: Vec<Candidate> = candidates.to_vec();
    candidates.sort_by_key(|c| c.id);
    candidates.dedup_by(|a, b| a.id == b.id);
    let mut workloads: Vec<&WorkloadSpec> = workloads.iter().collect();
    workloads.sort_by(|a, b| a.name.cmp(&b.name));
    workloads.dedup_by(|a, b| a.name == b.name);

    let mut placer = Placer::run(&candidates, &workloads, running, config);
    // A replica that no node under its cap could take pushed a node over
    // its cap (overflow): placing again from that result may shed that
    // node's lowest-ranked replica to a node that had room for it, though
    // not for the first. Do it here, so the answer is a fixed point.
    for _ in 0..MAX_OVERFLOW_ROUNDS {
        if !placer.over_cap() {
            break;
        }
        let again = placer.running();
        let next = Placer::run(&candidates, &workloads, &again, config);
        if next.slots == placer.slots {
            break;
        }
        placer = next;
    }

    let mut placement = Placement::default();
    for (w, workload) in workloads.iter().enumerate() {
        let nodes: Vec<Option<NodeId>> =
            placer.of_workload(w).iter().map(|&i| (i != NONE).then(|| candidates[i as usize].id)).collect();
        let placed = u32::try_from(nodes.iter().flatten().count()).unwrap_or(u32::MAX);
        if placed < workload.replicas {
            let matching = u32::try_from((0..candidates.len()).filter(|&node| placer.eligible(w, node)).count())
                .unwrap_or(u32::MAX);
            let driver = workload.driver.name();
            let reason = match matching {
                0 if !candidates.iter().any(|c| offers_driver(&c.labels, driver)) => {
                    UnplacedReason::NoNodeOffersDriver { driver: driver.to_string() }
                }
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

/// The most replicas a node whose fair share is `share` replicas may hold
/// with slack `epsilon`: `max(1, ⌊(1+ε)·share⌋)`. Rounded down, so even a
/// small node's load stays within the bound (a share of 4.4 capped at 5
/// would be 1.14 times it); big nodes' slack absorbs the difference.
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
            settled: true,
        }
    }

    fn id(index: u64) -> NodeId {
        NodeId::from_index(index)
    }

    fn config() -> PlacementConfig {
        PlacementConfig::default()
    }

    fn singles(count: usize) -> Vec<WorkloadSpec> {
        (0..count).map(|i| spec(&format!("w{i}"), 1)).collect()
    }

    /// Four one-core nodes and `count` single-replica workloads, placed.
    fn four_nodes_with(count: usize) -> (Vec<Candidate>, Vec<WorkloadSpec>, Placement) {
        let candidates: Vec<Candidate> = (1..=4).map(|i| candidate(i, 1, "a")).collect();
        let workloads = singles(count);
        let placed = place(&candidates, &workloads, &Running::new(), config());
        (candidates, workloads, placed)
    }

    /// Replicas per node.
    fn loads(placement: &Placement) -> BTreeMap<NodeId, usize> {
        let mut loads = BTreeMap::new();
        for (_, _, node) in placement.replicas() {
            *loads.entry(node).or_default() += 1;
        }
        loads
    }

    /// The replicas whose node differs between two placements.
    fn changed(before: &Placement, after: &Placement) -> Vec<(String, usize)> {
        let mut changed = Vec::new();
        for (name, nodes) in &after.assignments {
            for (i, node) in nodes.iter().enumerate() {
                if before.owner(name, i) != *node {
                    changed.push((name.clone(), i));
                }
            }
        }
        changed
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

    /// Nodes of `cores` and weightless, unconstrained workloads of
    /// `sizes` replicas: where loads, not labels or resources, decide.
    fn light_view(cores: &[u32], sizes: &[u32]) -> (Vec<Candidate>, Vec<WorkloadSpec>) {
        let candidates = cores.iter().enumerate().map(|(i, c)| candidate(i as u64 * 7919, *c, "a")).collect();
        let workloads = sizes
            .iter()
            .enumerate()
            .map(|(i, r)| WorkloadSpec { resources: Resources::default(), ..spec(&format!("w{i}"), *r) })
            .collect();
        (candidates, workloads)
    }

    prop_compose! {
        /// Many more replicas than nodes.
        fn busy_view()(
            cores in prop::collection::vec(1u32..=8, 6..40),
            sizes in prop::collection::vec(1u32..=3, 1..120),
        ) -> (Vec<Candidate>, Vec<WorkloadSpec>) {
            light_view(&cores, &sizes)
        }
    }

    prop_compose! {
        /// At the scale of the benchmark: 20 to 60 nodes, about 20
        /// replicas each.
        fn large_view()(
            cores in prop::collection::vec(1u32..=8, 20..60),
            sizes in prop::collection::vec(1u32..=5, 420),
        ) -> (Vec<Candidate>, Vec<WorkloadSpec>) {
            light_view(&cores, &sizes[..cores.len() * 7])
        }
    }

    proptest! {
        /// Two nodes with the same view, whatever order they hold it in,
        /// compute the same placement; and every placement keeps replicas on
        /// distinct nodes, constraints and resource fit.
        #[test]
        fn same_view_same_placement_and_invariants_hold((candidates, workloads) in view(), rotate in 0usize..40) {
            let first = place(&candidates, &workloads, &Running::new(), config());
            let mut shuffled_candidates = candidates.clone();
            shuffled_candidates.reverse();
            let mut shuffled_workloads = workloads.clone();
            if !shuffled_workloads.is_empty() {
                let k = rotate % shuffled_workloads.len();
                shuffled_workloads.rotate_left(k);
            }
            let second = place(&shuffled_candidates, &shuffled_workloads, &Running::new(), config());
            prop_assert_eq!(&first, &second);
            check_invariants(&candidates, &workloads, &first);
            // From where replicas run, too.
            let gone = rotate % candidates.len();
            let rest: Vec<Candidate> = candidates.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, c)| c.clone()).collect();
            let after = place(&rest, &workloads, &Running::from(&first), config());
            check_invariants(&rest, &workloads, &after);
            shuffled_candidates.retain(|c| c.id != candidates[gone].id);
            prop_assert_eq!(&after, &place(&shuffled_candidates, &shuffled_workloads, &Running::from(&first), config()));
        }

        /// Placement reaches a fixed point: placing again from where a
        /// placement puts replicas moves nothing, after a join or a leave
        /// as from scratch.
        #[test]
        fn placing_again_from_the_result_moves_nothing((candidates, workloads) in busy_view(), event in 0u32..80) {
            let base = place(&candidates, &workloads, &Running::new(), config());
            prop_assert_eq!(&place(&candidates, &workloads, &Running::from(&base), config()), &base);
            let mut next = candidates.clone();
            if event % 2 == 0 {
                next.remove(event as usize / 2 % next.len());
            } else {
                next.push(candidate(1_000_003 + u64::from(event), 1 + event % 8, "z1"));
            }
            let after = place(&next, &workloads, &Running::from(&base), config());
            prop_assert_eq!(&place(&next, &workloads, &Running::from(&after), config()), &after);
        }

        /// While statuses spread, a view sees some of a change's moves done
        /// and others not: every such view gives the same placement, so
        /// nothing is sent elsewhere half-way (and nothing flaps).
        #[test]
        fn a_view_with_some_moves_done_gives_the_same_placement(
            (candidates, workloads) in large_view(),
            event in 0u32..80,
            done in prop::collection::vec(any::<bool>(), 64),
        ) {
            let base = place(&candidates, &workloads, &Running::new(), config());
            let mut next = candidates.clone();
            if event % 2 == 0 {
                next.remove(event as usize / 2 % next.len());
            } else {
                next.push(candidate(1_000_003 + u64::from(event), 1 + event % 8, "a"));
            }
            // The property holds where each node takes part in one step
            // only: no node is pushed over its cap (a node that sheds and
            // also gives to a joiner may, once its gift is done, no longer
            // shed), and apart from a joiner none falls below its fair share
            // (a leave that lifts fair shares makes such nodes take orphans
            // in two stages, and one done early changes which stage the
            // others land in). ALGORITHM.md section 13 has the cases; the
            // benchmark measures how often they occur.
            let mut sorted = next.clone();
            sorted.sort_by_key(|c| c.id);
            let mut specs: Vec<&WorkloadSpec> = workloads.iter().collect();
            specs.sort_by(|a, b| a.name.cmp(&b.name));
            let bounds = Placer::new(&sorted, &specs, config());
            let held = loads(&base);
            let one_step = sorted.iter().enumerate().all(|(i, c)| {
                let held = held.get(&c.id).copied().unwrap_or(0);
                let joiner = !candidates.iter().any(|old| old.id == c.id);
                held <= bounds.keep_cap[i] as usize && (joiner || held >= bounds.fair[i] as usize)
            });
            prop_assume!(one_step);
            let after = place(&next, &workloads, &Running::from(&base), config());
            let mut partial = Running::new();
            let mut flip = done.iter().cycle();
            for (name, nodes) in &after.assignments {
                for (i, node) in nodes.iter().enumerate() {
                    let before = base.owner(name, i);
                    let moved = before != *node;
                    let chosen = if moved && *flip.next().unwrap_or(&false) { *node } else { before };
                    if let Some(node) = chosen {
                        partial.add(name, i, node);
                    }
                }
            }
            prop_assert_eq!(&place(&next, &workloads, &partial, config()), &after);
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
        let placement = place(&candidates, &[nowhere, crowded, huge], &Running::new(), config());
        assert_eq!(placement.unplaced["nowhere"].reason, UnplacedReason::NoNodeMatchesConstraints);
        assert_eq!(placement.unplaced["crowded"].reason, UnplacedReason::TooFewMatchingNodes { eligible: 1 });
        assert_eq!(placement.unplaced["crowded"].placed, 1);
        assert!(matches!(placement.unplaced["huge"].reason, UnplacedReason::InsufficientResources { .. }));
    }

    #[test]
    fn a_replica_goes_only_to_a_node_that_offers_its_driver() {
        let offering = |index, drivers: &str| {
            let mut c = candidate(index, 2, "a");
            c.labels.insert(crate::DRIVERS_LABEL.into(), drivers.into());
            c
        };
        let exec_only = [offering(1, "exec"), offering(2, "exec")];
        let mut boxed = spec("boxed", 1);
        boxed.driver = Driver::Docker { image: "nginx".into(), args: vec![], env: BTreeMap::new(), ports: vec![] };
        let placement = place(&exec_only, &[boxed.clone(), spec("plain", 2)], &Running::new(), config());
        assert_eq!(placement.unplaced["boxed"].reason, UnplacedReason::NoNodeOffersDriver { driver: "docker".into() });
        assert!(!placement.unplaced.contains_key("plain"), "exec work still goes there");

        // One node offers docker, one says nothing (it offers every driver),
        // one offers only exec: an exec workload of 3 fits; docker goes to
        // the first two only, and one of 3 docker replicas cannot be placed.
        let mixed = [offering(1, "docker"), candidate(2, 2, "a"), offering(3, " exec ,docker")];
        let mut three = boxed.clone();
        three.replicas = 3;
        let plain = spec("plain", 3);
        let placement = place(&mixed, &[three, plain], &Running::new(), config());
        assert_eq!(placement.unplaced["plain"].reason, UnplacedReason::TooFewMatchingNodes { eligible: 2 });
        assert!(placement.replicas().filter(|(w, ..)| *w == "plain").all(|(.., node)| node != id(1)));
        assert!(!placement.unplaced.contains_key("boxed"), "a spaced list still names docker");
    }

    #[test]
    fn a_running_replica_stays_where_it_runs_whatever_the_hash_says() {
        let candidates = vec![candidate(1, 2, "a"), candidate(2, 2, "a"), candidate(3, 2, "a")];
        let web = [spec("web", 1)];
        let hashed = place(&candidates, &web, &Running::new(), config());
        let elsewhere = [id(1), id(2), id(3)].into_iter().find(|n| hashed.owner("web", 0) != Some(*n));
        let elsewhere = elsewhere.expect("three nodes");
        let mut running = Running::new();
        running.add("web", 0, elsewhere);
        assert_eq!(place(&candidates, &web, &running, config()).owner("web", 0), Some(elsewhere));
        // Unless it may not run there: a constraint it no longer matches.
        let mut moved = web[0].clone();
        let zone = if elsewhere == id(3) { "a" } else { "b" };
        let labelled: Vec<Candidate> = candidates
            .iter()
            .map(|c| Candidate {
                labels: BTreeMap::from([("zone".into(), if c.id == id(3) { "b" } else { "a" }.into())]),
                ..c.clone()
            })
            .collect();
        moved.constraints.insert("zone".into(), zone.into());
        let placement = place(&labelled, &[moved], &running, config());
        assert_ne!(placement.owner("web", 0), Some(elsewhere));
        assert!(placement.owner("web", 0).is_some());
    }

    #[test]
    fn a_node_over_its_cap_keeps_what_it_ranks_first_and_sheds_the_rest_to_nodes_below_their_share() {
        // Two equal nodes, four replicas: a share of 2 each, caps of 2.
        let candidates = vec![candidate(1, 1, "a"), candidate(2, 1, "a")];
        let workloads = singles(4);
        let mut running = Running::new();
        for w in &workloads {
            running.add(&w.name, 0, id(1));
        }
        let placement = place(&candidates, &workloads, &running, config());
        let owners: Vec<(String, NodeId)> = placement.replicas().map(|(w, _, n)| (w.to_string(), n)).collect();
        assert_eq!(
            owners,
            [("w0".into(), id(1)), ("w1".into(), id(2)), ("w2".into(), id(1)), ("w3".into(), id(2))],
            "node 1 keeps the two it ranks first"
        );
        assert_eq!(place(&candidates, &workloads, &Running::from(&placement), config()), placement);
    }

    #[test]
    fn a_dead_nodes_replicas_go_to_nodes_under_their_cap_and_nothing_else_moves() {
        let (candidates, workloads, before) = four_nodes_with(8);
        assert_eq!(loads(&before).values().copied().collect::<Vec<_>>(), [2, 2, 2, 2]);
        let after = place(&candidates[..3], &workloads, &Running::from(&before), config());
        let moved = changed(&before, &after);
        let orphans: Vec<(String, usize)> = before.on_node(id(4)).map(|(w, i)| (w.to_string(), i)).collect();
        assert_eq!(moved, orphans, "exactly the dead node's replicas move");
        let mut counts: Vec<usize> = loads(&after).into_values().collect();
        counts.sort_unstable();
        assert_eq!(counts, [2, 3, 3], "a share of 8/3 each: caps of 3");
    }

    #[test]
    fn a_joiner_takes_its_fair_share_from_nodes_above_theirs_and_no_more() {
        let (candidates, workloads, before) = four_nodes_with(12);
        assert_eq!(loads(&before).values().copied().collect::<Vec<_>>(), [3, 3, 3, 3]);
        let mut grown = candidates.clone();
        grown.push(candidate(5, 1, "a"));
        let after = place(&grown, &workloads, &Running::from(&before), config());
        // A share of 12/5 = 2.4: the joiner takes 2, and only those move.
        let moved = changed(&before, &after);
        assert_eq!(moved.len(), 2, "{moved:?}");
        assert!(moved.iter().all(|(w, i)| after.owner(w, *i) == Some(id(5))));
        assert_eq!(loads(&after)[&id(5)], 2);
        assert_eq!(place(&grown, &workloads, &Running::from(&after), config()), after, "a fixed point");

        // Not settled yet: it is given nothing, and nothing moves.
        let waiting: Vec<Candidate> = grown.iter().map(|c| Candidate { settled: c.id != id(5), ..c.clone() }).collect();
        assert_eq!(place(&waiting, &workloads, &Running::from(&before), config()), before);
    }

    #[test]
    fn a_node_that_has_not_settled_keeps_what_it_runs_but_gets_nothing_new() {
        let mut candidates: Vec<Candidate> = (1..=3).map(|i| candidate(i, 1, "a")).collect();
        candidates[2].settled = false;
        let mut running = Running::new();
        running.add("w0", 0, id(3));
        let workloads = singles(6);
        let placement = place(&candidates, &workloads, &running, config());
        assert_eq!(placement.owner("w0", 0), Some(id(3)));
        assert_eq!(placement.on_node(id(3)).count(), 1);
        assert_eq!(placement.replicas().count(), 6);
    }

    #[test]
    fn a_replica_running_twice_stays_on_the_preferred_copy_or_else_the_other() {
        // After a partition heals both sides run w0/0; the status order
        // (the first added) decides which copy stays.
        let candidates: Vec<Candidate> = (1..=3).map(|i| candidate(i, 1, "a")).collect();
        let workloads = singles(3);
        let copies = |runs: &[(&str, u64)]| {
            let mut running = Running::new();
            for (workload, node) in runs {
                running.add(workload, 0, id(*node));
            }
            let placement = place(&candidates, &workloads, &running, config());
            assert_eq!(loads(&placement), BTreeMap::from([(id(1), 1), (id(2), 1), (id(3), 1)]));
            placement
        };
        let placement = copies(&[("w0", 2), ("w0", 1), ("w1", 3), ("w2", 3)]);
        assert_eq!(placement.owner("w0", 0), Some(id(2)));
        // Node 2 is full (cap 1) with another replica: the other copy stays.
        let placement = copies(&[("w1", 2), ("w0", 2), ("w0", 1), ("w2", 3)]);
        assert!(placement.owner("w0", 0).is_some_and(|n| n == id(1) || n == id(2)));
    }

    #[test]
    fn load_is_within_the_bound_and_a_join_or_leave_moves_the_minimum() {
        let candidates: Vec<Candidate> = (0..100).map(|i| candidate(i, 1 << (i % 4), "a")).collect();
        let workloads: Vec<WorkloadSpec> = (0..400).map(|i| spec(&format!("w{i}"), 5)).collect();
        let before = place(&candidates, &workloads, &Running::new(), config());
        assert!(before.unplaced.is_empty());
        let stats = quality::load_ratio(&candidates, &before);
        assert!(stats <= 1.0 + config().epsilon, "max/mean normalised load {stats}");
        let gone = candidates[17].id;
        let remaining: Vec<Candidate> = candidates.iter().filter(|c| c.id != gone).cloned().collect();
        let after = place(&remaining, &workloads, &Running::from(&before), config());
        let (moved, minimum) = quality::moves(&before, &after, Some(gone), None);
        assert_eq!(moved, minimum, "a leave moves only the leaver's replicas");
        assert!(quality::load_ratio(&remaining, &after) <= 1.0 + config().epsilon);
        let mut grown = candidates.clone();
        grown.push(candidate(1_000, 2, "a"));
        let after = place(&grown, &workloads, &Running::from(&before), config());
        let (moved, minimum) = quality::moves(&before, &after, None, Some(id(1_000)));
        assert_eq!(moved, minimum, "a join moves only what the joiner takes");
        assert!(minimum > 0);
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
