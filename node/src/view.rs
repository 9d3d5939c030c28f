//! What the HTTP API returns, and what the CLI reads back: plain JSON shapes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_protocol::{Capacity, Member, NodeId, State};

/// One member, as `GET /v1/members` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The node id, 32 hex digits.
    pub id: String,
    pub name: String,
    /// alive, suspect, dead or left.
    pub state: State,
    /// The primary address (a multiaddr ending in `/p2p/<peer>`).
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

/// A node id as the API spells it: 32 hex digits.
pub fn node_id_hex(id: NodeId) -> String {
    id.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /v1/self`: this node and a summary of its view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfView {
    #[serde(flatten)]
    pub member: MemberView,
    /// The libp2p peer id.
    pub peer_id: String,
    /// The protocol's cluster id (a hash of the cluster key), 16 hex digits.
    pub cluster_id: String,
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
    /// Datagrams QUIC dropped before any connection (garbage, truncated or
    /// undecryptable handshakes, unknown connections); by reason in `/metrics`.
    #[serde(default)]
    pub datagrams_dropped: u64,
}
