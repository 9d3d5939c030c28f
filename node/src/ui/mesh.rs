//! `GET /v1/mesh`: the whole mesh as this agent sees it, in one answer for
//! the web view: every member with what it offers and what is placed on it,
//! every workload with where its replicas run, and a feed of what changed.
//!
//! The agent's task takes a [`MeshSnapshot`] (a copy of what the protocol
//! knows, nothing computed that the API does not already compute); the
//! watcher ([`super::Watcher`]) compares it with the last one to write the
//! feed and renders the JSON ([`MeshView`]) only when something changed.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use shoal_protocol::{Capacity, Instant, Node, NodeId, Resources, State};

use crate::view::node_id_hex;
use crate::workloads::{self, WorkloadView};

/// One member, copied out of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSnap {
    pub id: NodeId,
    pub name: String,
    pub state: State,
    pub addr: String,
    pub generation: u64,
    pub incarnation: u32,
    /// When this node saw it enter its state (protocol time).
    pub since: Instant,
    pub capacity: Capacity,
    pub labels: BTreeMap<String, String>,
}

/// One workload: the API's view of it, what each replica reserves, and its
/// version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadSnap {
    pub view: WorkloadView,
    pub resources: Resources,
    pub clock: u64,
    pub writer: NodeId,
}

/// What the agent's task hands the watcher.
#[derive(Clone, Debug)]
pub struct MeshSnapshot {
    /// Protocol time when it was taken.
    pub now: Instant,
    /// This agent.
    pub me: NodeId,
    /// By name, then id.
    pub members: Vec<MemberSnap>,
    /// By name.
    pub workloads: Vec<WorkloadSnap>,
}

/// A fingerprint of everything a snapshot shows: members (state, version,
/// metadata), catalog stamps, replica reports and the placement (its cached
/// `Arc`: the protocol makes a new one only when the view changed). About
/// 0.1 ms for 1,000 members and 1,000 workloads, against several for the
/// snapshot, so a quiet mesh costs an open page almost nothing.
pub fn fingerprint(protocol: &Node) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for m in protocol.membership().members() {
        (m.id, m.generation, m.incarnation, m.state, m.state_since.as_micros()).hash(&mut hasher);
        std::sync::Arc::as_ptr(&m.meta).hash(&mut hasher);
    }
    for e in protocol.workloads().catalog_entries() {
        (e.stamp.clock, e.stamp.node, e.spec.is_some()).hash(&mut hasher);
    }
    for e in protocol.workloads().replica_statuses() {
        (e.node, e.generation, e.version).hash(&mut hasher);
    }
    std::sync::Arc::as_ptr(&protocol.workloads().placement()).hash(&mut hasher);
    hasher.finish()
}

/// A snapshot and its fingerprint, unless the fingerprint is still `last`.
pub fn snapshot_if_changed(protocol: &Node, now: Instant, last: u64) -> (u64, Option<MeshSnapshot>) {
    let print = fingerprint(protocol);
    if print == last {
        return (print, None);
    }
    (print, Some(snapshot(protocol, now)))
}

/// Takes a snapshot (in the agent's task: the one owner of the protocol).
pub fn snapshot(protocol: &Node, now: Instant) -> MeshSnapshot {
    let mut members: Vec<MemberSnap> = protocol
        .membership()
        .members()
        .map(|m| MemberSnap {
            id: m.id,
            name: m.meta.name.clone(),
            state: m.state,
            addr: m.meta.primary_addr().map(|a| a.to_string()).unwrap_or_default(),
            generation: m.generation,
            incarnation: m.incarnation,
            since: m.state_since,
            capacity: m.meta.capacity,
            labels: m.meta.labels.clone(),
        })
        .collect();
    members.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    let entries: BTreeMap<&str, (Resources, u64, NodeId)> = protocol
        .workloads()
        .catalog_entries()
        .filter_map(|e| Some((e.name.as_str(), (e.spec.as_ref()?.resources, e.stamp.clock, e.stamp.node))))
        .collect();
    let entries: BTreeMap<String, (Resources, u64, NodeId)> =
        entries.into_iter().map(|(name, entry)| (name.to_string(), entry)).collect();
    let mut workloads: Vec<WorkloadSnap> = workloads::list(protocol)
        .into_iter()
        .map(|view| {
            let (resources, clock, writer) =
                entries.get(&view.name).copied().unwrap_or((Resources::default(), 0, NodeId([0; 16])));
            WorkloadSnap { view, resources, clock, writer }
        })
        .collect();
    workloads.sort_by(|a, b| a.view.name.cmp(&b.view.name));
    MeshSnapshot { now, me: protocol.membership().id(), members, workloads }
}

/// `GET /v1/mesh`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshView {
    /// Raised whenever anything below changes (the answer's ETag).
    pub version: u64,
    /// The agent that answers.
    pub agent: String,
    /// Its clock when this version was made, in Unix milliseconds.
    pub now_ms: u64,
    pub members: Vec<MemberRow>,
    pub workloads: Vec<WorkloadRow>,
    /// What changed lately, oldest first.
    pub feed: Vec<FeedItem>,
}

/// One member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRow {
    /// 32 hex digits.
    pub id: String,
    pub name: String,
    /// alive, suspect, dead or left.
    pub state: State,
    pub addr: String,
    pub generation: u64,
    pub incarnation: u32,
    /// When this agent saw it enter its state, in Unix milliseconds.
    pub since_ms: u64,
    /// Millicores and bytes offered.
    pub cpu: u32,
    pub memory: u64,
    /// Millicores and bytes its placed replicas reserve.
    pub cpu_used: u64,
    pub memory_used: u64,
    /// Replicas placed on it.
    pub replicas: u32,
    pub labels: BTreeMap<String, String>,
}

/// One workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadRow {
    pub name: String,
    /// Replicas asked for, and reported running by their owners.
    pub replicas: u32,
    pub running: u32,
    /// running, failing, partly-placed, unplaced, pending or stopped.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unplaced: Option<String>,
    /// What each replica reserves: millicores, bytes.
    pub cpu: u32,
    pub memory: u64,
    /// The version's logical clock, and who wrote it.
    pub version: u64,
    pub written_by: String,
    pub placement: Vec<ReplicaRow>,
}

/// One replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRow {
    pub replica: u32,
    /// Its node, as an index into `members` (`None`: no node fits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
    /// starting, running, failed, pending or unplaced.
    pub state: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Other nodes still running it (a handover), as `name: state`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elsewhere: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedItem {
    /// When this agent noticed it, in Unix milliseconds.
    pub at_ms: u64,
    /// member or workload.
    pub kind: String,
    /// The member's or workload's name.
    pub subject: String,
    pub what: String,
}

/// Feed items kept.
pub const FEED_KEPT: usize = 200;
/// Changes one comparison adds at most; the rest are counted in one item.
const FEED_PER_STEP: usize = 50;

/// Compares snapshots into a feed and renders views.
#[derive(Debug, Default)]
pub struct MeshState {
    last: Option<MeshSnapshot>,
    version: u64,
    feed: VecDeque<FeedItem>,
    /// Unix milliseconds at protocol time zero, fixed at the first snapshot
    /// so that the same `since` renders the same way every time.
    origin_ms: Option<u64>,
}

impl MeshState {
    /// Takes a new snapshot in; returns the view if anything changed (or
    /// for the first one).
    pub fn update(&mut self, snapshot: MeshSnapshot, wall_ms: u64) -> Option<MeshView> {
        let origin = *self.origin_ms.get_or_insert_with(|| wall_ms.saturating_sub(snapshot.now.as_micros() / 1000));
        if let Some(last) = &self.last {
            if last.members == snapshot.members && last.workloads == snapshot.workloads {
                return None;
            }
            let changes = diff(last, &snapshot);
            let extra = changes.len().saturating_sub(FEED_PER_STEP);
            for (kind, subject, what) in changes.into_iter().take(FEED_PER_STEP) {
                self.feed.push_back(FeedItem { at_ms: wall_ms, kind: kind.into(), subject, what });
            }
            if extra > 0 {
                let what = format!("and {extra} more changes");
                self.feed.push_back(FeedItem { at_ms: wall_ms, kind: "mesh".into(), subject: String::new(), what });
            }
            while self.feed.len() > FEED_KEPT {
                self.feed.pop_front();
            }
        }
        self.version += 1;
        let view = self.render(&snapshot, origin, wall_ms);
        self.last = Some(snapshot);
        Some(view)
    }

    fn render(&self, snapshot: &MeshSnapshot, origin_ms: u64, wall_ms: u64) -> MeshView {
        let index: HashMap<String, u32> = snapshot
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (node_id_hex(m.id), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        let mut used = vec![(0u64, 0u64, 0u32); snapshot.members.len()];
        let names: HashMap<NodeId, &str> = snapshot.members.iter().map(|m| (m.id, m.name.as_str())).collect();
        let workloads = snapshot
            .workloads
            .iter()
            .map(|w| {
                let placement = w
                    .view
                    .placement
                    .iter()
                    .map(|r| {
                        let node = r.node_id.as_ref().and_then(|id| index.get(id)).copied();
                        if let Some(slot) = node.and_then(|i| used.get_mut(i as usize)) {
                            slot.0 += u64::from(w.resources.cpu_millis);
                            slot.1 += w.resources.memory_bytes;
                            slot.2 += 1;
                        }
                        ReplicaRow {
                            replica: r.replica,
                            node,
                            state: r.state.to_string(),
                            restarts: r.restarts,
                            detail: r.detail.clone(),
                            elsewhere: r.elsewhere.clone(),
                        }
                    })
                    .collect();
                WorkloadRow {
                    name: w.view.name.clone(),
                    replicas: w.view.replicas,
                    running: w.view.running,
                    state: w.view.state.to_string(),
                    unplaced: w.view.unplaced.clone(),
                    cpu: w.resources.cpu_millis,
                    memory: w.resources.memory_bytes,
                    version: w.clock,
                    written_by: names.get(&w.writer).map_or_else(|| node_id_hex(w.writer), |n| (*n).to_string()),
                    placement,
                }
            })
            .collect();
        let members = snapshot
            .members
            .iter()
            .zip(used)
            .map(|(m, (cpu_used, memory_used, replicas))| MemberRow {
                id: node_id_hex(m.id),
                name: m.name.clone(),
                state: m.state,
                addr: m.addr.clone(),
                generation: m.generation,
                incarnation: m.incarnation,
                since_ms: origin_ms + m.since.as_micros() / 1000,
                cpu: m.capacity.cpu_millis,
                memory: m.capacity.memory_bytes,
                cpu_used,
                memory_used,
                replicas,
                labels: m.labels.clone(),
            })
            .collect();
        let agent = snapshot.members.iter().find(|m| m.id == snapshot.me).map(|m| m.name.clone()).unwrap_or_default();
        MeshView {
            version: self.version,
            agent,
            now_ms: wall_ms,
            members,
            workloads,
            feed: self.feed.iter().cloned().collect(),
        }
    }
}

/// What changed between two snapshots, as (kind, subject, sentence).
fn diff(before: &MeshSnapshot, after: &MeshSnapshot) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let old: HashMap<NodeId, &MemberSnap> = before.members.iter().map(|m| (m.id, m)).collect();
    for m in &after.members {
        let what = match old.get(&m.id) {
            None => Some(format!("joined ({}, generation {})", state_word(m.state), m.generation)),
            Some(o) if o.generation < m.generation => Some(format!("restarted (generation {})", m.generation)),
            Some(o) if o.state != m.state => Some(match (o.state, m.state) {
                (State::Suspect, State::Alive) => "refuted the suspicion: alive".to_string(),
                (_, State::Suspect) => "is suspected".to_string(),
                (_, State::Dead) => "is dead".to_string(),
                (_, State::Left) => "left".to_string(),
                (_, State::Alive) => "is alive again".to_string(),
            }),
            Some(_) => None,
        };
        if let Some(what) = what {
            out.push(("member", m.name.clone(), what));
        }
    }
    let new_ids: std::collections::HashSet<NodeId> = after.members.iter().map(|m| m.id).collect();
    for m in before.members.iter().filter(|m| !new_ids.contains(&m.id)) {
        out.push(("member", m.name.clone(), "forgotten (long dead)".to_string()));
    }

    let names: HashMap<NodeId, &str> =
        before.members.iter().chain(&after.members).map(|m| (m.id, m.name.as_str())).collect();
    let name = |id: &NodeId| names.get(id).map_or_else(|| node_id_hex(*id), |n| (*n).to_string());
    let old: HashMap<&str, &WorkloadSnap> = before.workloads.iter().map(|w| (w.view.name.as_str(), w)).collect();
    for w in &after.workloads {
        let subject = w.view.name.clone();
        let Some(o) = old.get(w.view.name.as_str()) else {
            out.push(("workload", subject, format!("submitted by {} (version {})", name(&w.writer), w.clock)));
            continue;
        };
        if (o.clock, o.writer) != (w.clock, w.writer) {
            out.push(("workload", subject.clone(), format!("replaced by {} (version {})", name(&w.writer), w.clock)));
        }
        for r in &w.view.placement {
            let was = o.view.placement.iter().find(|p| p.replica == r.replica);
            let (was_node, was_state) = was.map_or((None, None), |p| (p.node.as_deref(), Some(p.state)));
            let replica = r.replica;
            if was_node != r.node.as_deref() {
                let what = match (was_node, r.node.as_deref()) {
                    (_, None) => format!("replica {replica} has no node"),
                    (None, Some(to)) => format!("replica {replica} placed on {to}"),
                    (Some(from), Some(to)) => format!("replica {replica} moved from {from} to {to}"),
                };
                out.push(("workload", subject.clone(), what));
            } else if was_state != Some(r.state) {
                let on = r.node.as_deref().unwrap_or("no node");
                out.push(("workload", subject.clone(), format!("replica {replica} on {on}: {}", r.state)));
            }
        }
    }
    let kept: std::collections::HashSet<&str> = after.workloads.iter().map(|w| w.view.name.as_str()).collect();
    for w in before.workloads.iter().filter(|w| !kept.contains(w.view.name.as_str())) {
        out.push(("workload", w.view.name.clone(), "deleted".to_string()));
    }
    out
}

fn state_word(state: State) -> &'static str {
    match state {
        State::Alive => "alive",
        State::Suspect => "suspect",
        State::Dead => "dead",
        State::Left => "left",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::ReplicaView;

    fn member(n: u8, state: State, generation: u64) -> MemberSnap {
        let mut labels = BTreeMap::new();
        labels.insert("zone".to_string(), format!("z{}", n % 2));
        MemberSnap {
            id: NodeId([n; 16]),
            name: format!("node-{n}"),
            state,
            addr: format!("127.0.0.1:{}", 7000 + u16::from(n)),
            generation,
            incarnation: 0,
            since: Instant::from_micros(u64::from(n) * 1_000_000),
            capacity: Capacity { cpu_millis: 2000, memory_bytes: 1 << 30 },
            labels,
        }
    }

    fn workload(name: &str, on: &[(u8, &str)], clock: u64) -> WorkloadSnap {
        let placement = on
            .iter()
            .enumerate()
            .map(|(i, (n, state))| ReplicaView {
                replica: u32::try_from(i).unwrap_or(0),
                node: Some(format!("node-{n}")),
                node_id: Some(node_id_hex(NodeId([*n; 16]))),
                state: serde_json::from_value(serde_json::Value::from(*state)).expect("a replica state"),
                restarts: 0,
                detail: String::new(),
                elsewhere: Vec::new(),
            })
            .collect();
        let replicas = u32::try_from(on.len()).unwrap_or(0);
        WorkloadSnap {
            view: WorkloadView {
                name: name.into(),
                replicas,
                running: replicas,
                placement,
                unplaced: None,
                state: crate::view::WorkloadState::Running,
            },
            resources: Resources { cpu_millis: 250, memory_bytes: 64 << 20 },
            clock,
            writer: NodeId([1; 16]),
        }
    }

    fn snap(members: Vec<MemberSnap>, workloads: Vec<WorkloadSnap>) -> MeshSnapshot {
        MeshSnapshot { now: Instant::from_micros(10_000_000), me: NodeId([1; 16]), members, workloads }
    }

    #[test]
    fn the_view_counts_what_each_member_holds() -> Result<(), String> {
        let mut state = MeshState::default();
        let first = snap(
            vec![member(1, State::Alive, 1), member(2, State::Alive, 1)],
            vec![workload("web", &[(1, "running"), (2, "running")], 1), workload("db", &[(2, "running")], 2)],
        );
        let view = state.update(first.clone(), 100_000).ok_or("the first snapshot renders")?;
        assert_eq!(view.agent, "node-1");
        assert_eq!(view.members[1].replicas, 2);
        assert_eq!(view.members[1].cpu_used, 500);
        assert_eq!(view.workloads[0].placement[1].node, Some(1), "replicas name their node by index");
        // `since` is fixed against the first snapshot's clock: 2 s into a
        // run whose time zero was 10 s before 100 s.
        assert_eq!(view.members[1].since_ms, 100_000 - 10_000 + 2_000);
        assert!(state.update(first, 101_000).is_none(), "nothing changed: nothing to render");
        Ok(())
    }

    #[test]
    fn changes_become_the_feed() -> Result<(), String> {
        let mut state = MeshState::default();
        state.update(
            snap(
                vec![member(1, State::Alive, 1), member(2, State::Alive, 1), member(3, State::Suspect, 1)],
                vec![workload("web", &[(1, "running"), (2, "running")], 1), workload("old", &[(1, "running")], 1)],
            ),
            1_000,
        );
        let view = state
            .update(
                snap(
                    vec![
                        member(1, State::Alive, 1),
                        member(2, State::Dead, 1),
                        member(3, State::Alive, 1),
                        member(4, State::Alive, 1),
                    ],
                    vec![workload("web", &[(1, "running"), (3, "starting")], 1), workload("new", &[(4, "pending")], 3)],
                ),
                2_000,
            )
            .ok_or("changed")?;
        let feed: Vec<String> = view.feed.iter().map(|f| format!("{} {}", f.subject, f.what)).collect();
        assert_eq!(
            feed,
            [
                "node-2 is dead",
                "node-3 refuted the suspicion: alive",
                "node-4 joined (alive, generation 1)",
                "web replica 1 moved from node-2 to node-3",
                "new submitted by node-1 (version 3)",
                "old deleted",
            ],
        );
        assert_eq!(view.version, 2);
        Ok(())
    }
}
