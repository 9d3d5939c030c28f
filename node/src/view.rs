//! What the HTTP API returns, and what the CLI reads back: plain JSON shapes.

use std::collections::BTreeMap;

use std::fmt;

use serde::{Deserialize, Serialize};
use shoal_protocol::{Capacity, Member, NodeId, ReplicaState, State};
use tokio::sync::oneshot;

/// Where the agent task sends an API request's answer.
pub type Reply<T> = oneshot::Sender<T>;

/// A replica's state, as the API shows it: what its owner reports, or why
/// there is no report. Serialised in lowercase (`"running"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaPhase {
    /// No node fits it.
    Unplaced,
    /// Placed, and its owner has not reported it yet.
    Pending,
    Starting,
    Running,
    Failed,
    Stopped,
    Releasing,
}

impl From<ReplicaState> for ReplicaPhase {
    fn from(state: ReplicaState) -> ReplicaPhase {
        match state {
            ReplicaState::Starting => ReplicaPhase::Starting,
            ReplicaState::Running => ReplicaPhase::Running,
            ReplicaState::Failed => ReplicaPhase::Failed,
            ReplicaState::Stopped => ReplicaPhase::Stopped,
            ReplicaState::Releasing => ReplicaPhase::Releasing,
        }
    }
}

impl fmt::Display for ReplicaPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ReplicaPhase::Unplaced => "unplaced",
            ReplicaPhase::Pending => "pending",
            ReplicaPhase::Starting => "starting",
            ReplicaPhase::Running => "running",
            ReplicaPhase::Failed => "failed",
            ReplicaPhase::Stopped => "stopped",
            ReplicaPhase::Releasing => "releasing",
        })
    }
}

/// A workload's state, as the API shows it. Serialised in kebab case
/// (`"partly-placed"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadState {
    /// Every replica its owner reports running.
    Running,
    /// A replica failed.
    Failing,
    /// No replica has a node.
    Unplaced,
    /// Some replicas have no node.
    PartlyPlaced,
    /// Placed, not all reported running yet.
    Pending,
    /// Zero replicas asked for.
    Stopped,
}

impl fmt::Display for WorkloadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            WorkloadState::Running => "running",
            WorkloadState::Failing => "failing",
            WorkloadState::Unplaced => "unplaced",
            WorkloadState::PartlyPlaced => "partly-placed",
            WorkloadState::Pending => "pending",
            WorkloadState::Stopped => "stopped",
        })
    }
}

/// One member, as `GET /v1/members` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The node id, 32 hex digits.
    pub id: String,
    pub name: String,
    /// alive, suspect, dead or left.
    pub state: State,
    /// The gossip address, `HOST:PORT`.
    pub addr: String,
    pub capacity: Capacity,
    pub labels: BTreeMap<String, String>,
    pub generation: u64,
    pub incarnation: u32,
}

impl MemberView {
    /// The view of a protocol member.
    pub fn of(member: &Member) -> MemberView {
        MemberView {
            id: node_id_hex(member.id),
            name: member.meta.name.clone(),
            state: member.state,
            addr: member.meta.primary_addr().map(|a| a.to_string()).unwrap_or_default(),
            capacity: member.meta.capacity,
            labels: member.meta.labels.clone(),
            generation: member.generation,
            incarnation: member.incarnation,
        }
    }
}

/// A live member an agent can reach: whom key operations fan out to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    pub name: String,
    /// The gossip address, `HOST:PORT`.
    pub addr: String,
}

impl PeerView {
    /// The view of a protocol member.
    pub fn of(member: &Member) -> PeerView {
        PeerView {
            name: member.meta.name.clone(),
            addr: member.meta.primary_addr().map(|a| a.to_string()).unwrap_or_default(),
        }
    }
}

/// A node id as the API spells it: 32 hex digits.
pub fn node_id_hex(id: NodeId) -> String {
    id.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /v1/self`: this node and a summary of its view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfView {
    #[serde(flatten)]
    pub member: MemberView,
    /// The ids of the cluster keys this agent holds, the primary (the one
    /// it seals with) first.
    pub keys: Vec<String>,
    /// lan, wan or local.
    pub profile: String,
    /// Members by state, this node included.
    pub members: BTreeMap<String, usize>,
    /// Lifeguard's local health score: 0 is healthy.
    pub local_health: u32,
    pub uptime_secs: u64,
    pub data_dir: String,
    pub version: String,
}

/// `GET /v1/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    /// "ok", or "leaving" once a leave has started.
    pub status: String,
    /// Alive plus suspect members, this node included.
    pub live_members: usize,
    pub local_health: u32,
    /// Datagrams that did not open under the keyring (garbage, another
    /// cluster's key, forged); by reason in `/metrics`.
    #[serde(default)]
    pub datagrams_dropped: u64,
}
