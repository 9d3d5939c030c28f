//! Recent events of each workload, as this node saw them: versions written
//! and deleted, replicas placed or moved, and replica states their nodes
//! reported. `shoal workload NAME` shows them. The agent hands every
//! [`WorkloadEvent`] the protocol announces to [`WorkloadEvents::note`],
//! which words it and keeps the last [`KEPT`] per workload, in memory only.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use shoal_protocol::{Node, NodeId, ReplicaKey, ReplicaState, WorkloadEvent};

use crate::view::{ReplicaPhase, node_id_hex};

/// Events kept per workload.
pub const KEPT: usize = 20;

/// One event, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    /// How long ago this node noticed it, in seconds.
    pub secs_ago: u64,
    pub what: String,
}

/// The last state seen of what events are worded against, and the kept
/// events.
#[derive(Debug, Default)]
pub struct WorkloadEvents {
    /// Workloads seen live.
    live: BTreeMap<String, bool>,
    /// Each replica's owner in the last placement.
    owners: BTreeMap<ReplicaKey, Option<NodeId>>,
    /// Each (node, replica)'s last reported (state, restarts).
    reports: BTreeMap<(NodeId, ReplicaKey), (ReplicaState, u32)>,
    log: BTreeMap<String, VecDeque<(std::time::Instant, String)>>,
}

impl WorkloadEvents {
    /// Words `event` (reading the details from `membership`) and keeps it.
    pub fn note(&mut self, protocol: &Node, event: &WorkloadEvent) {
        self.note_at(protocol, event, std::time::Instant::now());
    }

    fn note_at(&mut self, protocol: &Node, event: &WorkloadEvent, wall: std::time::Instant) {
        let name =
            |id: NodeId| protocol.membership().member(id).map_or_else(|| node_id_hex(id), |m| m.meta.name.clone());
        let mut noted: Vec<(String, String)> = Vec::new();
        match event {
            WorkloadEvent::WorkloadWritten { name: workload } | WorkloadEvent::WorkloadDeleted { name: workload } => {
                let Some(entry) = protocol.workloads().catalog_entries().find(|e| &e.name == workload) else { return };
                let (clock, writer) = (entry.stamp.clock, name(entry.stamp.node));
                let was_live = self.live.insert(workload.clone(), entry.spec.is_some()).unwrap_or(false);
                let what = match (was_live, entry.spec.is_some()) {
                    (_, false) => format!("deleted by {writer}"),
                    (false, true) => format!("submitted by {writer} (version {clock})"),
                    (true, true) => format!("replaced by {writer} (version {clock})"),
                };
                noted.push((workload.clone(), what));
                // Logs of workloads the catalog forgot go with them.
                let known: Vec<&str> = protocol.workloads().catalog_entries().map(|e| e.name.as_str()).collect();
                self.log.retain(|w, _| known.contains(&w.as_str()) || w == workload);
                self.live.retain(|w, _| known.contains(&w.as_str()));
            }
            WorkloadEvent::PlacementChanged => {
                let placement = protocol.workloads().placement();
                let mut owners: BTreeMap<ReplicaKey, Option<NodeId>> = BTreeMap::new();
                for (workload, replicas) in &placement.assignments {
                    for (replica, owner) in replicas.iter().enumerate() {
                        owners.insert(
                            ReplicaKey::new(workload.clone(), u16::try_from(replica).unwrap_or(u16::MAX)),
                            *owner,
                        );
                    }
                }
                for (key, owner) in &owners {
                    let before = self.owners.get(key);
                    // A replica new to the placement is news even when it has no node.
                    if before == Some(owner) {
                        continue;
                    }
                    let replica = key.replica;
                    let what = match (before.copied().flatten(), owner) {
                        (_, None) => format!("replica {replica} has no node"),
                        (None, Some(to)) => format!("replica {replica} placed on {}", name(*to)),
                        (Some(from), Some(to)) => {
                            format!("replica {replica} moves from {} to {}", name(from), name(*to))
                        }
                    };
                    noted.push((key.workload.clone(), what));
                }
                for (key, _) in self.owners.iter().filter(|(k, o)| o.is_some() && !owners.contains_key(*k)) {
                    noted.push((key.workload.clone(), format!("replica {} has no node", key.replica)));
                }
                self.owners = owners;
            }
            WorkloadEvent::ReplicaStateChanged { node, replica } => {
                let slot = (*node, replica.clone());
                let status =
                    protocol.workloads().replica_statuses().find(|e| e.node == *node && e.status.key() == *replica);
                let on = name(*node);
                let Some(status) = status.map(|e| &e.status) else {
                    if self.reports.remove(&slot).is_some() {
                        noted.push((replica.workload.clone(), format!("replica {} on {on}: stopped", replica.replica)));
                    }
                    self.events_done(noted, wall);
                    return;
                };
                let was = self.reports.insert(slot, (status.state, status.restarts));
                let mut what = format!("replica {} on {on}: {}", replica.replica, ReplicaPhase::from(status.state));
                if was.is_some_and(|(_, restarts)| restarts < status.restarts) {
                    what.push_str(&format!(" (restart {})", status.restarts));
                }
                if !status.detail.is_empty() {
                    what.push_str(&format!(": {}", status.detail));
                }
                noted.push((replica.workload.clone(), what));
            }
            WorkloadEvent::ReplicaStart { .. } | WorkloadEvent::ReplicaStop { .. } | WorkloadEvent::PlanSettled => {}
        }
        self.events_done(noted, wall);
    }

    fn events_done(&mut self, noted: Vec<(String, String)>, wall: std::time::Instant) {
        for (workload, what) in noted {
            let log = self.log.entry(workload).or_default();
            log.push_back((wall, what));
            while log.len() > KEPT {
                log.pop_front();
            }
        }
    }

    /// `workload`'s kept events, oldest first.
    pub fn recent(&self, workload: &str) -> Vec<EventView> {
        let now = std::time::Instant::now();
        let Some(log) = self.log.get(workload) else { return Vec::new() };
        log.iter()
            .map(|(at, what)| EventView { secs_ago: now.duration_since(*at).as_secs(), what: what.clone() })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use shoal_protocol::{
        Address, Config, Driver, Identity, Instant, Metadata, ReplicaStatus, Resources, RestartPolicy, WorkloadConfig,
        WorkloadSpec,
    };

    use super::*;

    fn spec(replicas: u32) -> WorkloadSpec {
        WorkloadSpec {
            name: "web".into(),
            replicas,
            resources: Resources::default(),
            constraints: BTreeMap::new(),
            driver: Driver::Exec { command: "sleep".into(), args: vec![], env: BTreeMap::new(), workdir: None },
            restart: RestartPolicy::default(),
        }
    }

    #[test]
    fn protocol_workload_events_are_worded_and_kept() -> Result<(), Box<dyn std::error::Error>> {
        let me = Identity { id: NodeId([1; 16]), generation: 1, meta: Metadata::new("me", Address::new("/p2p/me")?) };
        let mut m = Node::new(Config::local(), WorkloadConfig::local(), me, 1, Instant::ZERO)?;
        let mut events = WorkloadEvents::default();
        let wall = std::time::Instant::now();
        let note = |m: &mut Node, events: &mut WorkloadEvents| {
            while let Some(event) = m.poll_workload_event() {
                events.note_at(m, &event, wall);
            }
        };
        let at = |s: u64| Instant::from_micros(s * 1_000_000);
        m.submit(at(62), spec(1))?;
        note(&mut m, &mut events);
        m.report_replicas(at(64), [ReplicaStatus::new("web", 0, ReplicaState::Running)]);
        note(&mut m, &mut events);
        // The same report again: nothing new.
        m.report_replicas(at(66), [ReplicaStatus::new("web", 0, ReplicaState::Running)]);
        note(&mut m, &mut events);
        m.submit(at(68), spec(2))?;
        note(&mut m, &mut events);
        m.delete_workload(at(70), "web");
        note(&mut m, &mut events);
        let seen: Vec<String> = events.recent("web").into_iter().map(|e| e.what).collect();
        assert_eq!(
            seen,
            [
                "submitted by me (version 1)",
                "replica 0 placed on me",
                "replica 0 on me: running",
                "replaced by me (version 2)",
                "replica 1 has no node",
                "deleted by me",
                "replica 0 has no node",
            ],
            "{seen:#?}"
        );
        Ok(())
    }
}
