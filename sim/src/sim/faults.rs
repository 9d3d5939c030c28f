//! Faults: starting and healing each fault instance, and choosing its nodes.

// Node indexes fit u32 (at most MAX_NODES); times in f64 seconds are small and non-negative.
#![allow(clippy::cast_possible_truncation)]

use rand::Rng;
use rand::seq::SliceRandom;

use crate::fault::{FaultKind, Select};
use crate::net::{Rule, RuleKind};
use crate::trace::Kind;

use super::{Action, Instance, SimError, Simulation};

impl Simulation {
    pub(super) fn choose(&mut self, select: &Select, exclude_paused: bool) -> Vec<usize> {
        if let Select::List(list) = select {
            return list.clone();
        }
        let mut candidates: Vec<usize> = (0..self.world.nodes.len())
            .filter(|&i| self.world.nodes[i].running() && !(exclude_paused && self.world.nodes[i].paused))
            .collect();
        let count = select.count(self.world.nodes.len()).min(candidates.len());
        let (chosen, _) = candidates.partial_shuffle(&mut self.rng, count);
        let mut chosen = chosen.to_vec();
        chosen.sort_unstable();
        chosen
    }

    pub(super) fn permutation(&mut self) -> Vec<usize> {
        let mut all: Vec<usize> = (0..self.world.nodes.len()).collect();
        all.shuffle(&mut self.rng);
        all
    }

    pub(super) fn fault_start(&mut self, plan: usize) {
        let now = self.world.now;
        let (spec, _) = self.plan[plan].clone();
        let n = self.world.nodes.len();
        let instance = self.instances.len();
        let mut global = false;
        let mut nodes = Vec::new();
        match &spec.kind {
            FaultKind::Partition { groups } => {
                let order = self.permutation();
                let mut group = vec![0u16; n];
                let total: f64 = groups.iter().sum::<f64>().max(f64::EPSILON);
                let mut start = 0usize;
                for (g, share) in groups.iter().enumerate() {
                    let end = if g + 1 == groups.len() {
                        n
                    } else {
                        (start + (share / total * n as f64).round() as usize).min(n)
                    };
                    for &node in &order[start..end] {
                        group[node] = g as u16 + 1;
                    }
                    start = end;
                }
                self.rules.push(Rule { fault: instance, kind: RuleKind::Cut { group, oneway: false } });
                global = true;
            }
            FaultKind::PartitionOneway { from } => {
                nodes = self.choose(from, false);
                let mut group = vec![2u16; n];
                for &node in &nodes {
                    group[node] = 1;
                }
                self.rules.push(Rule { fault: instance, kind: RuleKind::Cut { group, oneway: true } });
            }
            FaultKind::Isolate { nodes: select } => {
                nodes = self.choose(select, false);
                let mut group = vec![1u16; n];
                for (k, &node) in nodes.iter().enumerate() {
                    group[node] = u16::try_from(k + 2).unwrap_or(u16::MAX);
                }
                self.rules.push(Rule { fault: instance, kind: RuleKind::Cut { group, oneway: false } });
            }
            FaultKind::Bridge => {
                let order = self.permutation();
                let mut group = vec![0u16; n];
                let (bridge, rest) = order.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
                let half = rest.len() / 2;
                for (k, &node) in rest.iter().enumerate() {
                    group[node] = if k < half { 1 } else { 2 };
                }
                nodes.push(bridge);
                self.rules.push(Rule { fault: instance, kind: RuleKind::Cut { group, oneway: false } });
                global = true;
            }
            FaultKind::Hold { nodes: select } => {
                nodes = self.choose(select, false);
                let mut marked = vec![false; n];
                for &node in &nodes {
                    marked[node] = true;
                }
                self.rules.push(Rule { fault: instance, kind: RuleKind::Hold { nodes: marked } });
            }
            FaultKind::Loss { rate, nodes: select } => {
                let marked = match select {
                    None => {
                        global = true;
                        None
                    }
                    Some(select) => {
                        nodes = self.choose(select, false);
                        let mut marked = vec![false; n];
                        for &node in &nodes {
                            marked[node] = true;
                        }
                        Some(marked)
                    }
                };
                self.rules.push(Rule { fault: instance, kind: RuleKind::Loss { nodes: marked, rate: *rate } });
            }
            FaultKind::Crash { nodes: select } => {
                nodes = self.choose(select, false);
                for &node in &nodes {
                    self.crash(node);
                }
            }
            FaultKind::Restart { nodes: select, .. } => {
                nodes = self.choose(select, false);
                for &node in &nodes {
                    self.crash(node);
                }
            }
            FaultKind::Pause { nodes: select } => {
                nodes = self.choose(select, true);
                for &node in &nodes {
                    self.world.nodes[node].paused = true;
                }
            }
            FaultKind::Slow { nodes: select, delay } => {
                nodes = self.choose(select, false);
                for &node in &nodes {
                    self.world.nodes[node].slow_micros = delay.micros();
                }
            }
            FaultKind::Skew { nodes: select, ppm } => {
                nodes = self.choose(select, false);
                let ppm = i64::from((*ppm).min(999_999));
                for &node in &nodes {
                    let signed = if self.rng.random_bool(0.5) { ppm } else { -ppm };
                    self.world.nodes[node].clock.set_ppm(now, signed);
                }
            }
            FaultKind::Repair => {
                for index in 0..self.instances.len() {
                    if self.instances[index].active {
                        self.fault_heal(index);
                    }
                }
            }
        }
        let name = spec.kind.name();
        *self.fired.entry(name).or_default() += 1;
        self.trace.fold(Kind::Fault, now, plan as u64, 1, nodes.len() as u64);
        self.trace.write_fault(now, name, "start", &nodes);
        // Restart's heal is its `down` time; a crash heals (restarts) only if
        // asked to.
        let heal = match &spec.kind {
            FaultKind::Restart { down, .. } => Some(*down),
            FaultKind::Repair => None,
            _ => spec.heal,
        };
        let lasting = heal.is_some();
        let blocking = spec.kind.blocks_convergence() && lasting;
        let instant = matches!(spec.kind, FaultKind::Crash { .. }) && !lasting;
        let disturbs = !matches!(spec.kind, FaultKind::Skew { .. } | FaultKind::Repair);
        if lasting && disturbs {
            if global {
                self.world.global_disturbed += 1;
            }
            for &node in &nodes {
                self.world.nodes[node].disturbed += 1;
            }
        }
        if blocking {
            self.world.blocking_active += 1;
            self.world.quiet_since = None;
        } else if instant || matches!(spec.kind, FaultKind::Repair) {
            self.mark_quiet();
        }
        self.instances.push(Instance { kind: spec.kind.clone(), nodes, global, blocking, active: lasting });
        if let Some(heal) = heal {
            self.push(now + heal.micros(), Action::FaultHeal { instance: instance as u32 });
        }
    }

    pub(super) fn mark_quiet(&mut self) {
        if self.world.blocking_active == 0 {
            self.world.quiet_since = Some(self.world.now);
        }
    }

    pub(super) fn fault_heal(&mut self, index: usize) {
        if !self.instances[index].active {
            return;
        }
        let now = self.world.now;
        self.instances[index].active = false;
        let kind = self.instances[index].kind.clone();
        let nodes = self.instances[index].nodes.clone();
        self.rules.retain(|rule| rule.fault != index);
        match &kind {
            FaultKind::Hold { .. } => {
                // Release: everything held goes out now, in the order it was held.
                for (from, to, payload) in self.held.remove(&index).unwrap_or_default() {
                    self.net.released += 1;
                    let at = now + self.latency(from as usize, to as usize, false);
                    self.push(at, Action::Deliver { from, to, payload });
                }
            }
            FaultKind::Crash { .. } => {
                for &node in &nodes {
                    self.restart(node, false);
                }
            }
            FaultKind::Restart { keep_state, .. } => {
                for &node in &nodes {
                    self.restart(node, *keep_state);
                }
            }
            FaultKind::Pause { .. } => {
                for &node in &nodes {
                    self.resume(node);
                }
            }
            FaultKind::Slow { .. } => {
                for &node in &nodes {
                    self.world.nodes[node].slow_micros = 0;
                }
            }
            FaultKind::Skew { .. } => {
                for &node in &nodes {
                    self.world.nodes[node].clock.set_ppm(now, 0);
                }
            }
            _ => {}
        }
        self.trace.fold(Kind::Fault, now, index as u64, 2, nodes.len() as u64);
        self.trace.write_fault(now, kind.name(), "heal", &nodes);
        let calm = now + self.world.calm_window;
        if !matches!(kind, FaultKind::Skew { .. }) {
            if self.instances[index].global {
                self.world.global_disturbed -= 1;
                self.world.global_calm_after = self.world.global_calm_after.max(calm);
            }
            for &node in &nodes {
                let slot = &mut self.world.nodes[node];
                slot.disturbed = slot.disturbed.saturating_sub(1);
                slot.calm_after = slot.calm_after.max(calm);
            }
        }
        if self.instances[index].blocking {
            self.world.blocking_active -= 1;
            self.mark_quiet();
        }
    }

    pub(super) fn resume(&mut self, i: usize) {
        let slot = &mut self.world.nodes[i];
        if !slot.paused {
            return;
        }
        slot.paused = false;
        let backlog = std::mem::take(&mut slot.backlog);
        let wake = std::mem::take(&mut slot.wake_pending);
        for (from, payload) in backlog {
            self.handle_message(from as usize, i, &payload);
        }
        if wake || self.world.nodes[i].wake_at <= self.world.now {
            let epoch = self.world.nodes[i].epoch;
            self.world.nodes[i].wake_at = self.world.now;
            self.wake(i, epoch);
        }
    }
}

pub(super) fn check_nodes(kind: &FaultKind, n: usize) -> Result<(), SimError> {
    let selects: Vec<&Select> = match kind {
        FaultKind::PartitionOneway { from } => vec![from],
        FaultKind::Isolate { nodes }
        | FaultKind::Hold { nodes }
        | FaultKind::Crash { nodes }
        | FaultKind::Restart { nodes, .. }
        | FaultKind::Pause { nodes }
        | FaultKind::Slow { nodes, .. }
        | FaultKind::Skew { nodes, .. } => vec![nodes],
        FaultKind::Loss { nodes: Some(nodes), .. } => vec![nodes],
        _ => Vec::new(),
    };
    for select in selects {
        if let Select::List(list) = select {
            if let Some(&node) = list.iter().find(|&&node| node >= n) {
                return Err(SimError::NoSuchNode { fault: kind.name(), node, nodes: n });
            }
        }
    }
    Ok(())
}
