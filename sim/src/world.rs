//! What the checks see: each simulated machine ([`NodeSlot`]) with its clock,
//! and the [`World`] around them.

// Node indexes fit u32 (at most MAX_NODES); times in f64 seconds are small and non-negative.
#![allow(clippy::cast_possible_truncation)]

use std::collections::VecDeque;

use shoal_protocol::{Config, NodeId, State};

use crate::impls::SimNode;

/// A node's clock: local = base_local + (global - base_global) · (1 + ppm/1e6).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Clock {
    pub(crate) base_global: u64,
    pub(crate) base_local: u64,
    pub(crate) ppm: i64,
}

impl Clock {
    #[inline]
    pub(crate) fn local(&self, global: u64) -> u64 {
        let elapsed = global.saturating_sub(self.base_global);
        if self.ppm == 0 {
            return self.base_local + elapsed;
        }
        let scaled = i128::from(elapsed) * (1_000_000 + i128::from(self.ppm)) / 1_000_000;
        self.base_local + u64::try_from(scaled).unwrap_or(0)
    }

    /// The earliest global time at which the local clock reads `local`.
    #[inline]
    pub(crate) fn global(&self, local: u64) -> u64 {
        let elapsed = local.saturating_sub(self.base_local);
        if self.ppm == 0 {
            return self.base_global.saturating_add(elapsed);
        }
        let rate = 1_000_000 + i128::from(self.ppm);
        let scaled = (i128::from(elapsed) * 1_000_000 + rate - 1) / rate;
        self.base_global.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX))
    }

    pub(crate) fn set_ppm(&mut self, now: u64, ppm: i64) {
        let local = self.local(now);
        *self = Clock { base_global: now, base_local: local, ppm };
    }
}

/// One simulated machine.
#[derive(Debug)]
pub struct NodeSlot {
    /// The protocol instance; `None` before it starts and while crashed.
    pub node: Option<Box<dyn SimNode>>,
    /// The generation of the current (or last) process.
    pub generation: u64,
    /// Bumped on every crash and restart; wakeups of an old epoch are stale.
    pub(crate) epoch: u32,
    /// The earliest wakeup pushed for this epoch (`u64::MAX`: none).
    pub(crate) wake_at: u64,
    /// Stalled: processes nothing until resumed.
    pub paused: bool,
    pub(crate) backlog: VecDeque<(u32, Vec<u8>)>,
    pub(crate) wake_pending: bool,
    /// Extra delay on every timer (a slow node).
    pub slow_micros: u64,
    pub(crate) clock: Clock,
    /// Active faults that touch this node.
    pub disturbed: u32,
    /// From when on the node counts as undisturbed again.
    pub calm_after: u64,
    pub(crate) egress_busy: u64,
    /// Bytes this node sent.
    pub bytes_out: u64,
    /// Messages this node sent.
    pub msgs_out: u64,
    /// Simulated time this node has been running, in microseconds.
    pub(crate) up_micros: u64,
    pub(crate) up_since: Option<u64>,
    /// Peers to rejoin through after a restart that keeps state.
    pub(crate) rejoin_via: Vec<usize>,
}

impl NodeSlot {
    pub(crate) fn new() -> NodeSlot {
        NodeSlot {
            node: None,
            generation: 0,
            epoch: 0,
            wake_at: u64::MAX,
            paused: false,
            backlog: VecDeque::new(),
            wake_pending: false,
            slow_micros: 0,
            clock: Clock::default(),
            disturbed: 0,
            calm_after: 0,
            egress_busy: 0,
            bytes_out: 0,
            msgs_out: 0,
            up_micros: 0,
            up_since: None,
            rejoin_via: Vec::new(),
        }
    }

    /// Whether a process is running (paused counts as running).
    pub fn running(&self) -> bool {
        self.node.is_some()
    }

    /// Running, not paused, and touched by no fault since `calm_after`.
    pub fn healthy(&self, now: u64) -> bool {
        self.node.is_some() && !self.paused && self.disturbed == 0 && now >= self.calm_after
    }
}

/// What the checks see: the nodes, the clock, and fault bookkeeping.
#[derive(Debug)]
pub struct World {
    /// Simulated time, microseconds.
    pub now: u64,
    /// Every node.
    pub nodes: Vec<NodeSlot>,
    /// The protocol config every node runs.
    pub config: Config,
    /// How many nodes are running.
    pub running: usize,
    /// Active faults that touch every node (partitions, global loss).
    pub global_disturbed: u32,
    /// From when on the whole network counts as undisturbed again.
    pub global_calm_after: u64,
    /// Active faults that stop convergence (bootstrap counts as one).
    pub blocking_active: u32,
    /// Since when no such fault has been active; liveness is judged from here.
    pub quiet_since: Option<u64>,
    /// Datagrams over the MTU.
    pub mtu_violations: u64,
    /// The largest datagram seen.
    pub largest_datagram: usize,
    /// The MTU in force.
    pub mtu: usize,
    /// How long after a fault heals its nodes still count as disturbed.
    pub calm_window: u64,
    /// During a `MemberDown` event: the node that declared the member Dead,
    /// when known.
    pub dead_origin: Option<usize>,
}

impl World {
    /// The node with id `id`, if it is one of ours: node `i`'s id is
    /// `NodeId::from_index(i)`, so the index is read back from the bytes
    /// (no lookup table; the checks call this for every (node, member)).
    pub fn index_of(&self, id: NodeId) -> Option<usize> {
        let b = id.0;
        let index = u64::from_be_bytes([b[4], b[5], b[6], b[7], b[0], b[1], b[2], b[3]]);
        let index = usize::try_from(index).ok().filter(|&i| i < self.nodes.len())?;
        (NodeId::from_index(index as u64) == id).then_some(index)
    }

    /// The longest suspicion timeout at this size (before local health
    /// stretching).
    pub fn suspicion_max_micros(&self) -> u64 {
        let (_, max) = self.config.suspicion_bounds(self.nodes.len());
        u64::try_from(max.as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether the network as a whole is calm at `now`.
    pub fn network_calm(&self) -> bool {
        self.global_disturbed == 0 && self.now >= self.global_calm_after
    }

    /// Whether `viewer` sees exactly the running nodes, each Alive at its
    /// current generation, and no other member live. O(members).
    pub fn view_is_exact(&self, viewer: usize) -> bool {
        self.view_matches(viewer, &self.running_generations())
    }

    /// Whether every node's view is exact ([`World::view_is_exact`]).
    /// O(N · members), reading the truth from one compact table rather than
    /// from the node slots once per (viewer, member).
    pub fn views_are_exact(&self) -> bool {
        let truth = self.running_generations();
        (0..self.nodes.len()).all(|viewer| self.view_matches(viewer, &truth))
    }

    /// Each node's current generation if it is running, else 0 (never a
    /// generation: the first run is 1).
    fn running_generations(&self) -> Vec<u64> {
        self.nodes.iter().map(|slot| if slot.running() { slot.generation } else { 0 }).collect()
    }

    /// Whether every node's live set (Alive or Suspect) is exactly the
    /// running nodes at their current generations: convergence as
    /// ALGORITHM.md section 11 defines it under sustained loss, where a
    /// refuted suspicion is always in flight somewhere. O(N · members).
    pub fn live_sets_are_exact(&self) -> bool {
        let truth = self.running_generations();
        (0..self.nodes.len()).all(|viewer| self.live_set_matches(viewer, &truth))
    }

    fn live_set_matches(&self, viewer: usize, truth: &[u64]) -> bool {
        let Some(node) = self.nodes[viewer].node.as_ref() else { return true };
        node.live_members() == self.running
            && node
                .members()
                .filter(|m| m.state.is_live())
                .all(|m| self.index_of(m.id).is_some_and(|i| truth[i] != 0 && m.generation == truth[i]))
    }

    /// The first way `viewer`'s live set is not the running nodes, in words.
    pub fn live_set_gap(&self, viewer: usize) -> Option<String> {
        let node = self.nodes[viewer].node.as_ref()?;
        let truth = self.running_generations();
        for member in node.members().filter(|m| m.state.is_live()) {
            match self.index_of(member.id) {
                None => return Some(format!("node {viewer} holds an unknown id live")),
                Some(i) if truth[i] == 0 => {
                    return Some(format!("node {viewer} sees stopped node {i} as {:?}", member.state));
                }
                Some(i) if truth[i] != member.generation => {
                    return Some(format!("node {viewer} sees an old generation of node {i} as {:?}", member.state));
                }
                Some(_) => {}
            }
        }
        let live = node.live_members();
        (live != self.running).then(|| format!("node {viewer} holds {live} members live of {} running", self.running))
    }

    fn view_matches(&self, viewer: usize, truth: &[u64]) -> bool {
        let Some(node) = self.nodes[viewer].node.as_ref() else { return true };
        if node.live_members() != self.running {
            return false;
        }
        let mut alive = 0;
        for member in node.members() {
            if !member.state.is_live() {
                continue;
            }
            let Some(index) = self.index_of(member.id) else { return false };
            if member.state != State::Alive || truth[index] == 0 || member.generation != truth[index] {
                return false;
            }
            alive += 1;
        }
        alive == self.running
    }

    /// The first way `viewer`'s view is not exact, in words.
    pub fn view_gap(&self, viewer: usize) -> Option<String> {
        let node = self.nodes[viewer].node.as_ref()?;
        let mut alive = 0;
        for member in node.members() {
            let index = self.index_of(member.id);
            let slot = index.map(|i| &self.nodes[i]);
            let running = slot.is_some_and(NodeSlot::running);
            let current = slot.is_some_and(|s| s.generation == member.generation);
            let who = index.map_or_else(|| "an unknown id".to_owned(), |i| format!("node {i}"));
            match (member.state, running, current) {
                (shoal_protocol::State::Alive, true, true) => alive += 1,
                (state, true, true) => {
                    return Some(format!("node {viewer} sees running {who} as {state:?} since {}", member.state_since));
                }
                (state, true, false) if state.is_live() => {
                    return Some(format!("node {viewer} sees an old generation of {who} as {state:?}"));
                }
                (state, false, _) if state.is_live() => {
                    return Some(format!("node {viewer} sees stopped {who} as {state:?}"));
                }
                _ => {}
            }
        }
        (alive != self.running).then(|| format!("node {viewer} knows {alive} of {} running nodes Alive", self.running))
    }

    /// A stable hash of `viewer`'s view: (id, generation, state) of every
    /// member. Equal views hash equal.
    pub fn view_hash(&self, viewer: usize) -> Option<u64> {
        let node = self.nodes[viewer].node.as_ref()?;
        let mut h = 0x243f_6a88_85a3_08d3u64;
        for m in node.members() {
            let (mut high, mut low) = ([0u8; 8], [0u8; 8]);
            high.copy_from_slice(&m.id.0[..8]);
            low.copy_from_slice(&m.id.0[8..]);
            let id = u64::from_le_bytes(high) ^ u64::from_le_bytes(low).rotate_left(32);
            let key = id ^ m.generation.rotate_left(24) ^ (m.state as u64).rotate_left(56);
            h = (h ^ key).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        }
        Some(h)
    }
}
