//! The workload API's answers: each workload with where its replicas are
//! placed (`Workloads::placement`: every node computes the same placement
//! from the same view) and how each is doing, as the nodes running them
//! report (`Workloads::replica_statuses`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_protocol::placement::{Placement, UnplacedReason};
use shoal_protocol::{Instant, Node, NodeId, ReplicaKey, SpecError, StatusEntry, WorkloadSpec};

use crate::events::EventView;
use crate::spec::SpecFile;
use crate::view::{ReplicaPhase, WorkloadState, node_id_hex};

/// One workload, as `GET /v1/workloads` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadView {
    pub name: String,
    /// Replicas asked for.
    pub replicas: u32,
    /// Replicas their owner reports running.
    pub running: u32,
    /// Each replica, 0 first.
    pub placement: Vec<ReplicaView>,
    /// Why some replicas have no node, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unplaced: Option<String>,
    pub state: WorkloadState,
}

/// One replica: the node it is placed on, and what that node reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    pub replica: u32,
    /// The owner's name (`None`: no node fits).
    pub node: Option<String>,
    /// The owner's id, 32 hex digits.
    pub node_id: Option<String>,
    /// As its owner reports it; pending (placed, no report yet) or unplaced.
    pub state: ReplicaPhase,
    #[serde(default)]
    pub restarts: u32,
    /// Why it failed, as its owner's driver said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Other nodes still running it (a handover in progress), as
    /// `name: state`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elsewhere: Vec<String>,
}

/// `GET /v1/workloads/{name}`: the spec, who wrote it, and its placement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadDetail {
    #[serde(flatten)]
    pub workload: WorkloadView,
    pub spec: SpecFile,
    /// The node that wrote this version (its name if known, else its id).
    pub written_by: String,
    /// The version's logical clock.
    pub clock: u64,
    /// What this node saw happen to it lately, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventView>,
}

/// An API error's body: what went wrong, and for a refused spec, the field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorView {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Every workload, by name.
pub fn list(protocol: &Node) -> Vec<WorkloadView> {
    let placement = protocol.workloads().placement();
    let known = Known::of(protocol);
    protocol.workloads().specs().map(|spec| known.view(&placement, spec)).collect()
}

/// One workload, if it exists.
pub fn detail(protocol: &Node, name: &str) -> Option<WorkloadDetail> {
    let placement = protocol.workloads().placement();
    let entry = protocol.workloads().catalog_entries().find(|e| e.name == name)?;
    let spec = entry.spec.as_deref()?;
    let known = Known::of(protocol);
    Some(WorkloadDetail {
        workload: known.view(&placement, spec),
        spec: SpecFile::from_spec(spec),
        written_by: known.name(entry.stamp.node),
        clock: entry.stamp.clock,
        events: Vec::new(),
    })
}

/// Submits (or replaces) a workload. Returns its detail and whether it is new.
pub fn submit(protocol: &mut Node, now: Instant, spec: WorkloadSpec) -> Result<(WorkloadDetail, bool), SpecError> {
    let name = spec.name.clone();
    let new = !protocol.workloads().specs().any(|w| w.name == name);
    protocol.submit(now, spec)?;
    let detail = detail(protocol, &name).ok_or_else(|| SpecError {
        field: "name".into(),
        reason: "the workload vanished as it was written; submit it again".into(),
    })?;
    Ok((detail, new))
}

/// Member names and replica reports, looked up once per answer.
struct Known {
    names: BTreeMap<NodeId, String>,
    /// Reports by replica.
    reports: BTreeMap<ReplicaKey, Vec<StatusEntry>>,
}

impl Known {
    fn of(protocol: &Node) -> Known {
        let names = protocol.membership().members().map(|m| (m.id, m.meta.name.clone())).collect();
        let mut reports: BTreeMap<ReplicaKey, Vec<StatusEntry>> = BTreeMap::new();
        for entry in protocol.workloads().replica_statuses() {
            reports.entry(entry.status.key()).or_default().push(entry.clone());
        }
        Known { names, reports }
    }

    fn name(&self, id: NodeId) -> String {
        self.names.get(&id).cloned().unwrap_or_else(|| node_id_hex(id))
    }

    fn view(&self, placement: &Placement, spec: &WorkloadSpec) -> WorkloadView {
        let owners = placement.assignments.get(&spec.name).map(Vec::as_slice).unwrap_or_default();
        let replicas: Vec<ReplicaView> = (0..spec.replicas)
            .map(|replica| {
                let owner = owners.get(replica as usize).copied().flatten();
                let index = u16::try_from(replica).unwrap_or(u16::MAX);
                let key = ReplicaKey::new(spec.name.clone(), index);
                let reports = self.reports.get(&key).map(Vec::as_slice).unwrap_or_default();
                self.replica(replica, owner, reports)
            })
            .collect();
        let running = replicas.iter().filter(|r| r.state == ReplicaPhase::Running).count();
        let placed = replicas.iter().filter(|r| r.node.is_some()).count();
        let unplaced = placement
            .unplaced
            .get(&spec.name)
            .map(|u| format!("{} of {} replicas placed: {}", u.placed, u.wanted, unplaced_reason(&u.reason)));
        let wanted = spec.replicas as usize;
        let state = if wanted == 0 {
            WorkloadState::Stopped
        } else if running == wanted {
            WorkloadState::Running
        } else if replicas.iter().any(|r| r.state == ReplicaPhase::Failed) {
            WorkloadState::Failing
        } else if placed == 0 {
            WorkloadState::Unplaced
        } else if placed < wanted {
            WorkloadState::PartlyPlaced
        } else {
            WorkloadState::Pending
        };
        WorkloadView {
            name: spec.name.clone(),
            replicas: spec.replicas,
            running: u32::try_from(running).unwrap_or(u32::MAX),
            placement: replicas,
            unplaced,
            state,
        }
    }

    fn replica(&self, replica: u32, owner: Option<NodeId>, reports: &[StatusEntry]) -> ReplicaView {
        let own = reports.iter().find(|e| Some(e.node) == owner);
        let state = match (owner, own.map(|e| e.status.state)) {
            (None, _) => ReplicaPhase::Unplaced,
            (Some(_), None) => ReplicaPhase::Pending,
            (Some(_), Some(state)) => state.into(),
        };
        let elsewhere = reports
            .iter()
            .filter(|e| Some(e.node) != owner)
            .map(|e| format!("{}: {}", self.name(e.node), ReplicaPhase::from(e.status.state)))
            .collect();
        ReplicaView {
            replica,
            node: owner.map(|id| self.name(id)),
            node_id: owner.map(node_id_hex),
            state,
            restarts: own.map_or(0, |e| e.status.restarts),
            detail: own.map(|e| e.status.detail.clone()).unwrap_or_default(),
            elsewhere,
        }
    }
}

fn unplaced_reason(reason: &UnplacedReason) -> String {
    match reason {
        UnplacedReason::NoNodeOffersDriver { driver } => {
            format!("no alive node offers the {driver} driver (agents choose theirs with --drivers)")
        }
        UnplacedReason::NoNodeMatchesConstraints => {
            "no alive node that offers the driver has every label in `constraints`".to_string()
        }
        UnplacedReason::TooFewMatchingNodes { eligible: 1 } => {
            "only 1 alive node matches `constraints` and offers the driver, and replicas need distinct nodes"
                .to_string()
        }
        UnplacedReason::TooFewMatchingNodes { eligible } => format!(
            "only {eligible} alive nodes match `constraints` and offer the driver, and replicas need distinct nodes"
        ),
        UnplacedReason::InsufficientResources { needed } => {
            format!("no matching node has {}m CPU and {} bytes of memory free", needed.cpu_millis, needed.memory_bytes)
        }
    }
}
