//! Shoal's own protocol: a real [`Node`] per node.

use std::cell::OnceCell;
use std::sync::Arc;

use shoal_protocol::{
    Address, Capacity, Config, Event, Identity, Instant, Member, Metadata, MetadataCache, Node, NodeId, Peer,
    ReplicaKey, Transmit, WorkloadConfig, wire,
};

use super::{Boot, FormedMember, Implementation, MemberView, SimNode};
use crate::error::SimError;
use crate::net;
use crate::report::ProtocolTotals;
#[cfg(feature = "bug-injection")]
use crate::scenario::BugKind;
use crate::scenario::{Scenario, WorkloadLoad};
use crate::workloads::{Replicas, WorkloadDriver};

/// Makes [`Node`]s with one config.
#[derive(Debug)]
pub struct ShoalImpl {
    config: Config,
    workload_config: WorkloadConfig,
    workloads: Option<WorkloadLoad>,
    /// Decoded metadata shared by every node: N copies instead of N².
    meta_cache: MetadataCache,
    /// For a mesh that starts formed: every member, sorted as the member
    /// table keeps them, built at the first node's boot and preloaded into
    /// every node (which then share each member's metadata).
    formed: OnceCell<Vec<Peer>>,
    #[cfg(feature = "bug-injection")]
    bug: Option<BugKind>,
}

impl ShoalImpl {
    /// The scenario's preset config (and injected bug, if any).
    pub fn new(scenario: &Scenario) -> Result<ShoalImpl, SimError> {
        ShoalImpl::with_config(scenario, scenario.preset.config())
    }

    /// A custom config (for runs tuned to a bandwidth), validated.
    pub fn with_config(scenario: &Scenario, config: Config) -> Result<ShoalImpl, SimError> {
        #[cfg(not(feature = "bug-injection"))]
        if let Some(bug) = scenario.bug {
            return Err(SimError::BugInjectionUnavailable(bug.name()));
        }
        let config = config.validate().map_err(shoal_protocol::Error::from)?;
        Ok(ShoalImpl {
            config,
            workload_config: scenario.preset.workload_config(),
            workloads: scenario.workloads.clone(),
            meta_cache: MetadataCache::default(),
            formed: OnceCell::new(),
            #[cfg(feature = "bug-injection")]
            bug: scenario.bug,
        })
    }
}

fn identity(index: usize, generation: u64, addr: &Address, capacity: Capacity) -> Identity {
    let mut meta = Metadata::new(format!("n{index}"), addr.clone());
    meta.capacity = capacity;
    Identity { id: NodeId::from_index(index as u64), generation, meta }
}

impl ShoalImpl {
    fn capacity(&self) -> Capacity {
        self.workloads.as_ref().map(WorkloadLoad::capacity).unwrap_or_default()
    }

    /// Every member of a formed mesh as a preloadable peer, each with the
    /// metadata its node advertises, in the member table's order (so each
    /// preload is one pass, with no sort). The metadata is allocated in that
    /// order too: each preload bumps every member's reference count, and
    /// walking memory in order rather than at random halves its cost.
    fn formed_peers(&self, members: &[FormedMember]) -> Result<Vec<Peer>, SimError> {
        let id = |index: usize| NodeId::from_index(index as u64);
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_unstable_by_key(|&index| (id(index).key(), id(index)));
        let peers = order
            .into_iter()
            .map(|index| {
                let m = &members[index];
                let identity = identity(index, m.generation, &m.addr, self.capacity());
                Peer::new(identity.id, identity.generation, 0, Arc::new(identity.meta))
            })
            .collect::<Result<Vec<Peer>, _>>()
            .map_err(shoal_protocol::Error::from)?;
        Ok(peers)
    }
}

impl Implementation for ShoalImpl {
    fn name(&self) -> &'static str {
        "shoal"
    }

    fn boot(&self, boot: Boot<'_>) -> Result<Box<dyn SimNode>, SimError> {
        let mut node = Node::new(
            self.config.clone(),
            self.workload_config.clone(),
            identity(boot.index, boot.generation, boot.addr, self.capacity()),
            boot.seed,
            boot.now,
        )?;
        #[cfg(feature = "bug-injection")]
        if let Some(bug) = self.bug {
            node.inject_bug(match bug {
                BugKind::IgnoreRefutations => shoal_protocol::Bug::IgnoreRefutations,
                BugKind::NoAntiEntropy => shoal_protocol::Bug::NoAntiEntropy,
            });
        }
        node.share_metadata(self.meta_cache.clone());
        if let Some(members) = boot.formed {
            let peers = match self.formed.get() {
                Some(peers) => peers,
                None => {
                    let peers = self.formed_peers(members)?;
                    self.formed.get_or_init(|| peers)
                }
            };
            node.preload(boot.now, peers);
            node.assume_announced();
        }
        if !boot.seeds.is_empty() {
            node.join(boot.now, boot.seeds);
        }
        let Some(load) = &self.workloads else {
            return Ok(Box::new(node));
        };
        // The first node's first run submits the workloads.
        let submits = boot.index == 0 && boot.generation == 1;
        let driver = WorkloadDriver::new(load, submits);
        Ok(Box::new(ShoalNode { node, driver }))
    }

    fn starts_formed(&self) -> bool {
        true
    }

    fn reliable(&self, payload: &[u8]) -> bool {
        net::is_sync(payload)
    }

    fn declared_by(&self, payload: &[u8], subject: NodeId) -> Option<NodeId> {
        wire::decode(payload, self.config.cluster_id).ok().and_then(|m| {
            m.updates.iter().find_map(|u| match u {
                wire::Update::Dead { id, by, .. } if *id == subject => Some(*by),
                _ => None,
            })
        })
    }

    fn timing(&self) -> &Config {
        &self.config
    }
}

fn view(member: &Member) -> MemberView {
    MemberView {
        id: member.id,
        generation: member.generation,
        incarnation: member.incarnation,
        state: member.state,
        state_since: member.state_since,
    }
}

impl SimNode for Node {
    fn handle_message(&mut self, now: Instant, from: &Address, payload: &[u8]) {
        Node::handle_message(self, now, from, payload);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Node::handle_timeout(self, now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        Node::poll_transmit(self)
    }

    fn poll_event(&mut self) -> Option<Event> {
        Node::poll_event(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Node::poll_timeout(self)
    }

    fn live_members(&self) -> usize {
        self.membership().live_members()
    }

    fn member(&self, id: NodeId) -> Option<MemberView> {
        self.membership().member(id).map(view)
    }

    fn members(&self) -> Box<dyn Iterator<Item = MemberView> + '_> {
        Box::new(self.membership().members().map(view))
    }

    fn totals(&self) -> ProtocolTotals {
        let c = self.membership().counters();
        ProtocolTotals {
            suspicions_raised: c.suspicions_raised,
            declared_dead: c.declared_dead,
            self_refutes: c.self_refutes,
            syncs_started: c.syncs_started,
            decode_failures: c.decode_failures,
            late_timers: c.late_timers,
        }
    }

    fn coordinate(&self) -> Option<shoal_protocol::Coordinate> {
        Some(self.membership().coordinate().clone())
    }

    fn member_coordinate(&self, id: NodeId) -> Option<shoal_protocol::Coordinate> {
        self.membership().member_coordinate(id)
    }
}

/// A Shoal node whose (simulated) driver runs what its plan says.
#[derive(Debug)]
struct ShoalNode {
    node: Node,
    driver: WorkloadDriver,
}

impl SimNode for ShoalNode {
    fn handle_message(&mut self, now: Instant, from: &Address, payload: &[u8]) {
        self.node.handle_message(now, from, payload);
        self.driver.step(&mut self.node, now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.node.poll_timeout().is_some_and(|at| at <= now) {
            self.node.handle_timeout(now);
        }
        self.driver.step(&mut self.node, now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.node.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.node.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let protocol = self.node.poll_timeout();
        protocol.into_iter().chain(self.driver.next_tick()).min()
    }

    fn live_members(&self) -> usize {
        self.node.membership().live_members()
    }

    fn member(&self, id: NodeId) -> Option<MemberView> {
        self.node.membership().member(id).map(view)
    }

    fn members(&self) -> Box<dyn Iterator<Item = MemberView> + '_> {
        Box::new(self.node.membership().members().map(view))
    }

    fn totals(&self) -> ProtocolTotals {
        SimNode::totals(&self.node)
    }

    fn replicas(&self) -> Option<&Replicas> {
        Some(self.driver.replicas())
    }

    fn coordinate(&self) -> Option<shoal_protocol::Coordinate> {
        Some(self.node.membership().coordinate().clone())
    }

    fn member_coordinate(&self, id: NodeId) -> Option<shoal_protocol::Coordinate> {
        self.node.membership().member_coordinate(id)
    }

    fn catalog_len(&self) -> usize {
        self.node.workloads().specs().count()
    }

    fn known_running(&self) -> Vec<ReplicaKey> {
        let live = |id| self.node.membership().member(id).is_some_and(|m| m.state.is_live());
        let mut known: Vec<ReplicaKey> = self
            .node
            .workloads()
            .replica_statuses()
            .filter(|e| {
                matches!(
                    e.status.state,
                    shoal_protocol::ReplicaState::Running | shoal_protocol::ReplicaState::Releasing
                ) && live(e.node)
            })
            .map(|e| e.status.key())
            .collect();
        known.sort_unstable();
        known.dedup();
        known
    }

    fn placement_view(&self) -> Option<u64> {
        Some(self.node.workloads().placement_view())
    }
}
