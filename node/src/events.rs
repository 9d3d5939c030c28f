//! Recent events of each workload, as this node saw them: versions written
//! and deleted, replicas placed or moved, and replica states its owners
//! reported. `shoal workload NAME` shows them. The protocol keeps only the
//! current state, so the agent compares snapshots about once a second and
//! keeps the last [`KEPT`] changes per workload, in memory only.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_protocol::{Membership, NodeId, ReplicaKey, ReplicaState};

use crate::view::{ReplicaPhase, node_id_hex};

/// Events kept per workload.
pub const KEPT: usize = 20;
const EVERY: Duration = Duration::from_secs(1);

/// One event, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    /// How long ago this node noticed it, in seconds.
    pub secs_ago: u64,
    pub what: String,
}

/// What was seen of one replica: its owner, and each reporting node's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Seen {
    owner: Option<NodeId>,
    reports: BTreeMap<NodeId, (ReplicaState, u32, String)>,
}

/// The snapshots and the kept events.
#[derive(Debug, Default)]
pub struct WorkloadEvents {
    checked: Option<std::time::Instant>,
    /// Per name: (clock, writer, live).
    versions: BTreeMap<String, (u64, NodeId, bool)>,
    replicas: BTreeMap<ReplicaKey, Seen>,
    log: BTreeMap<String, VecDeque<(std::time::Instant, String)>>,
}

impl WorkloadEvents {
    /// Compares the current state with the last snapshot (at most once a
    /// second) and notes what changed. The first call only takes a snapshot.
    pub fn observe(&mut self, membership: &Membership) {
        self.observe_at(membership, std::time::Instant::now());
    }

    fn observe_at(&mut self, membership: &Membership, wall: std::time::Instant) {
        if self.checked.is_some_and(|at| wall.duration_since(at) < EVERY) {
            return;
        }
        let first = self.checked.is_none();
        self.checked = Some(wall);
        let names: BTreeMap<NodeId, String> = membership.members().map(|m| (m.id, m.meta.name.clone())).collect();
        let name = |id: &NodeId| names.get(id).cloned().unwrap_or_else(|| node_id_hex(*id));
        let mut noted: Vec<(String, String)> = Vec::new();

        let versions: BTreeMap<String, (u64, NodeId, bool)> = membership
            .catalog_entries()
            .map(|e| (e.name.clone(), (e.stamp.clock, e.stamp.node, e.spec.is_some())))
            .collect();
        for (workload, &(clock, writer, live)) in &versions {
            let before = self.versions.get(workload);
            if before.is_some_and(|b| b.0 == clock && b.1 == writer) {
                continue;
            }
            let what = match (before.is_some_and(|b| b.2), live) {
                (_, false) => format!("deleted by {}", name(&writer)),
                (false, true) => format!("submitted by {} (version {clock})", name(&writer)),
                (true, true) => format!("replaced by {} (version {clock})", name(&writer)),
            };
            noted.push((workload.clone(), what));
        }

        let placement = membership.placement();
        let mut replicas: BTreeMap<ReplicaKey, Seen> = BTreeMap::new();
        for (workload, owners) in &placement.assignments {
            for (replica, owner) in owners.iter().enumerate() {
                let key = ReplicaKey::new(workload.clone(), u16::try_from(replica).unwrap_or(u16::MAX));
                replicas.entry(key).or_default().owner = *owner;
            }
        }
        for entry in membership.replica_statuses() {
            let s = &entry.status;
            let seen = replicas.entry(s.key()).or_default();
            seen.reports.insert(entry.node, (s.state, s.restarts, s.detail.clone()));
        }
        for (key, seen) in &replicas {
            let (workload, replica) = (&key.workload, key.replica);
            let prior = self.replicas.get(key);
            let before = prior.cloned().unwrap_or_default();
            // A replica new to the placement is news even when it has no node.
            if prior.is_none() || before.owner != seen.owner {
                let what = match (before.owner, seen.owner) {
                    (_, None) => format!("replica {replica} has no node"),
                    (None, Some(to)) => format!("replica {replica} placed on {}", name(&to)),
                    (Some(from), Some(to)) => format!("replica {replica} moves from {} to {}", name(&from), name(&to)),
                };
                noted.push((workload.clone(), what));
            }
            for (node, (state, restarts, detail)) in &seen.reports {
                let was = before.reports.get(node);
                if was.is_some_and(|w| (w.0, w.1) == (*state, *restarts)) {
                    continue;
                }
                let mut what = format!("replica {replica} on {}: {}", name(node), ReplicaPhase::from(*state));
                if was.is_some_and(|w| w.1 < *restarts) {
                    what.push_str(&format!(" (restart {restarts})"));
                }
                if !detail.is_empty() {
                    what.push_str(&format!(": {detail}"));
                }
                noted.push((workload.clone(), what));
            }
            for node in before.reports.keys().filter(|n| !seen.reports.contains_key(n)) {
                noted.push((workload.clone(), format!("replica {replica} on {}: stopped", name(node))));
            }
        }

        self.log.retain(|workload, _| versions.contains_key(workload));
        self.versions = versions;
        self.replicas = replicas;
        if first {
            return;
        }
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
        Address, Config, Driver, Identity, Instant, Metadata, ReplicaStatus, Resources, RestartPolicy, WorkloadSpec,
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
    fn changes_between_snapshots_become_events() -> Result<(), Box<dyn std::error::Error>> {
        let me = Identity { id: NodeId([1; 16]), generation: 1, meta: Metadata::new("me", Address::new("/p2p/me")?) };
        let mut m = Membership::new(Config::local(), me, 1, Instant::ZERO)?;
        let mut events = WorkloadEvents::default();
        let wall = std::time::Instant::now();
        let mut step = 0;
        let mut observe = |m: &mut Membership, events: &mut WorkloadEvents| {
            step += 1;
            let at = Instant::from_micros(60_000_000 + step * 2_000_000);
            events.observe_at(m, wall + Duration::from_secs(2 * step));
            at
        };
        let now = observe(&mut m, &mut events);
        m.submit(now, spec(1))?;
        let now = observe(&mut m, &mut events);
        m.report_replicas(now, [ReplicaStatus::new("web", 0, ReplicaState::Running)]);
        observe(&mut m, &mut events);
        // Nothing changed: nothing new.
        let now = observe(&mut m, &mut events);
        m.submit(now, spec(2))?;
        let now = observe(&mut m, &mut events);
        m.delete_workload(now, "web");
        observe(&mut m, &mut events);
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
