//! The workload API's answers: each workload with where its replicas are
//! placed, computed from this node's view (every node computes the same
//! placement from the same view).
//!
//! Placement here is `shoal_protocol::placement::place` over the alive
//! members' capacity and labels.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_protocol::placement::{Candidate, Placement, PlacementConfig, UnplacedReason, place};
use shoal_protocol::{Instant, Membership, NodeId, SpecError, State, WorkloadSpec};

use crate::spec::SpecFile;
use crate::view::node_id_hex;

/// One workload, as `GET /v1/workloads` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadView {
    pub name: String,
    /// Replicas asked for.
    pub replicas: u32,
    /// Where each placed replica goes, replica 0 first.
    pub placement: Vec<ReplicaView>,
    /// Why some replicas have no node, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unplaced: Option<String>,
    /// placed, partly-placed, unplaced, or stopped (0 replicas asked for).
    pub state: String,
}

/// One replica's node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    pub replica: u32,
    /// The node's name.
    pub node: String,
    /// The node's id, 32 hex digits.
    pub node_id: String,
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
pub fn list(membership: &Membership) -> Vec<WorkloadView> {
    let (placement, names) = (placement(membership), names(membership));
    membership.workloads().map(|spec| view(&names, &placement, spec)).collect()
}

/// One workload, if it exists.
pub fn detail(membership: &Membership, name: &str) -> Option<WorkloadDetail> {
    let entry = membership.catalog_entries().find(|e| e.name == name)?;
    let spec = entry.spec.as_deref()?;
    let writer = entry.stamp.node;
    let written_by = membership.member(writer).map_or_else(|| node_id_hex(writer), |m| m.meta.name.clone());
    Some(WorkloadDetail {
        workload: view(&names(membership), &placement(membership), spec),
        spec: SpecFile::from_spec(spec),
        written_by,
        clock: entry.stamp.clock,
    })
}

/// Submits (or replaces) a workload. Returns its detail and whether it is new.
pub fn submit(
    membership: &mut Membership,
    now: Instant,
    spec: WorkloadSpec,
) -> Result<(WorkloadDetail, bool), SpecError> {
    let name = spec.name.clone();
    let new = !membership.workloads().any(|w| w.name == name);
    membership.submit(now, spec)?;
    let detail = detail(membership, &name).ok_or_else(|| SpecError {
        field: "name".into(),
        reason: "the workload vanished as it was written; submit it again".into(),
    })?;
    Ok((detail, new))
}

fn placement(membership: &Membership) -> Placement {
    let candidates: Vec<Candidate> = membership
        .members()
        .filter(|m| m.state == State::Alive)
        .map(|m| Candidate { id: m.id, capacity: m.meta.capacity, labels: m.meta.labels.clone() })
        .collect();
    let specs: Vec<WorkloadSpec> = membership.workloads().cloned().collect();
    place(&candidates, &specs, PlacementConfig::default())
}

fn names(membership: &Membership) -> BTreeMap<NodeId, String> {
    membership.members().map(|m| (m.id, m.meta.name.clone())).collect()
}

fn view(names: &BTreeMap<NodeId, String>, placement: &Placement, spec: &WorkloadSpec) -> WorkloadView {
    let nodes = placement.assignments.get(&spec.name).map(Vec::as_slice).unwrap_or_default();
    let replicas = nodes
        .iter()
        .zip(0..)
        .map(|(id, replica)| ReplicaView {
            replica,
            node: names.get(id).cloned().unwrap_or_else(|| node_id_hex(*id)),
            node_id: node_id_hex(*id),
        })
        .collect::<Vec<_>>();
    let unplaced = placement.unplaced.get(&spec.name).map(|u| {
        let why = match &u.reason {
            UnplacedReason::NoNodeMatchesConstraints => "no alive node has every label in `constraints`".to_string(),
            UnplacedReason::TooFewMatchingNodes { eligible: 1 } => {
                "only 1 alive node matches `constraints`, and replicas need distinct nodes".to_string()
            }
            UnplacedReason::TooFewMatchingNodes { eligible } => {
                format!("only {eligible} alive nodes match `constraints`, and replicas need distinct nodes")
            }
            UnplacedReason::InsufficientResources { needed } => format!(
                "no matching node has {}m CPU and {} bytes of memory free",
                needed.cpu_millis, needed.memory_bytes
            ),
        };
        format!("{} of {} replicas placed: {why}", u.placed, u.wanted)
    });
    let state = match (spec.replicas, replicas.len()) {
        (0, _) => "stopped",
        (_, 0) => "unplaced",
        (wanted, placed) if (placed as u64) < u64::from(wanted) => "partly-placed",
        _ => "placed",
    };
    WorkloadView {
        name: spec.name.clone(),
        replicas: spec.replicas,
        placement: replicas,
        unplaced,
        state: state.into(),
    }
}
