//! What the simulator drives: one membership implementation behind two small
//! traits, so the network model, the faults and the checks are shared by
//! Shoal and the systems it is compared with.
//!
//! [`Implementation`] makes nodes and knows the implementation's wire format
//! as far as the simulator needs it (which messages ride a reliable stream,
//! who declared a member Dead). [`SimNode`] is one running instance: the
//! sans-IO surface (`handle_*`, `poll_*`) plus a read-only view of its
//! members for the checks, in Shoal's terms ([`MemberView`], [`Event`]).

use std::fmt;
use std::str::FromStr;

use shoal_protocol::{Address, Config, Event, Instant, NodeId, State, Transmit};

use crate::error::SimError;
use crate::report::ProtocolTotals;
use crate::scenario::Scenario;
use crate::workloads::Replicas;

#[cfg(feature = "compare")]
pub mod foca;
pub mod shoal;

/// One member as a node sees it, in Shoal's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// The member's id (`NodeId::from_index` of its simulator index).
    pub id: NodeId,
    /// Which run of the member's process.
    pub generation: u64,
    /// Bumped by the member to refute suspicion.
    pub incarnation: u32,
    /// The viewer's belief.
    pub state: State,
    /// When the viewer last changed `state` (its local time; zero where the
    /// implementation does not say).
    pub state_since: Instant,
}

/// How a node process starts.
#[derive(Clone, Debug)]
pub struct Boot<'a> {
    /// Its simulator index.
    pub index: usize,
    /// Which run of the process (1 for the first).
    pub generation: u64,
    /// Seed for the instance's own rng, drawn from the simulation's.
    pub seed: u64,
    /// Its local clock.
    pub now: Instant,
    /// Its address.
    pub addr: &'a Address,
    /// Where to join (empty: the first node, or a formed mesh).
    pub seeds: Vec<Address>,
    /// For a mesh that starts formed ([`Bootstrap::Formed`]): every member,
    /// this node included, by simulator index. The node starts knowing them
    /// all as Alive, with nothing pending to tell them.
    ///
    /// [`Bootstrap::Formed`]: crate::scenario::Bootstrap::Formed
    pub formed: Option<&'a [FormedMember]>,
}

/// One member of a mesh that starts formed, at its simulator index in
/// [`Boot::formed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormedMember {
    /// Which run of its process.
    pub generation: u64,
    /// Its address.
    pub addr: Address,
}

/// One running membership instance.
pub trait SimNode: fmt::Debug {
    /// A datagram (or stream message) from `from`.
    fn handle_message(&mut self, now: Instant, from: &Address, payload: &[u8]);
    /// The deadline from [`SimNode::poll_timeout`] has passed.
    fn handle_timeout(&mut self, now: Instant);
    /// The next message to send.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// The next membership event.
    fn poll_event(&mut self) -> Option<Event>;
    /// When to call [`SimNode::handle_timeout`] next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Members counted live (Alive or Suspect), itself included.
    fn live_members(&self) -> usize;
    /// What this node believes about `id`.
    fn member(&self, id: NodeId) -> Option<MemberView>;
    /// Every member it knows, itself included, in a stable order.
    fn members(&self) -> Box<dyn Iterator<Item = MemberView> + '_>;
    /// Its protocol counters, for the report.
    fn totals(&self) -> ProtocolTotals;
    /// The replicas its driver runs, when the run has workloads.
    fn replicas(&self) -> Option<&Replicas> {
        None
    }
    /// How many live workloads its catalog holds.
    fn catalog_len(&self) -> usize {
        0
    }
    /// The replicas it knows to be Running on a member it believes live
    /// (from the gossiped statuses), sorted.
    fn known_running(&self) -> Vec<shoal_protocol::ReplicaKey> {
        Vec::new()
    }
    /// A fingerprint of what its placement reads besides the statuses
    /// (members, which have settled, the catalog), when it places work.
    fn placement_view(&self) -> Option<u64> {
        None
    }
    /// Its own network coordinate, if the implementation keeps one.
    fn coordinate(&self) -> Option<shoal_protocol::Coordinate> {
        None
    }
    /// The coordinate it holds for member `id` (as that member last sent it).
    fn member_coordinate(&self, _id: NodeId) -> Option<shoal_protocol::Coordinate> {
        None
    }
}

/// A membership implementation: makes nodes, reads its own wire format.
pub trait Implementation: fmt::Debug {
    /// `shoal`, `foca`.
    fn name(&self) -> &'static str;
    /// Starts a node process.
    fn boot(&self, boot: Boot<'_>) -> Result<Box<dyn SimNode>, SimError>;
    /// Whether it can start a node already knowing the whole mesh
    /// ([`Boot::formed`]); runs that need it are refused up front otherwise.
    fn starts_formed(&self) -> bool {
        false
    }
    /// Whether `payload` rides a reliable stream (never lost, exempt from
    /// the MTU) rather than a datagram.
    fn reliable(&self, _payload: &[u8]) -> bool {
        false
    }
    /// Who declared `subject` Dead in `payload`, if the message says.
    fn declared_by(&self, _payload: &[u8], _subject: NodeId) -> Option<NodeId> {
        None
    }
    /// Shoal timings of the same strength, which the checks' bounds are
    /// derived from (probe interval, suspicion).
    fn timing(&self) -> &Config;
}

/// Which implementation a run drives (`--impl`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Impl {
    /// Shoal's protocol (the default).
    #[default]
    Shoal,
    /// foca, a sans-IO SWIM (needs the `compare` feature).
    Foca,
}

impl Impl {
    /// The implementation for `scenario`, with its preset's defaults: Shoal's
    /// preset config, or foca's `Config::new_lan(N)` (`new_wan` for the wan
    /// preset).
    pub fn build(self, scenario: &Scenario) -> Result<Box<dyn Implementation>, SimError> {
        match self {
            Impl::Shoal => Ok(Box::new(shoal::ShoalImpl::new(scenario)?)),
            #[cfg(feature = "compare")]
            Impl::Foca => Ok(Box::new(foca::FocaImpl::new(scenario))),
            #[cfg(not(feature = "compare"))]
            Impl::Foca => Err(SimError::CompareUnavailable),
        }
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Shoal => "shoal",
            Impl::Foca => "foca",
        }
    }
}

impl FromStr for Impl {
    type Err = String;

    fn from_str(text: &str) -> Result<Impl, String> {
        match text {
            "shoal" => Ok(Impl::Shoal),
            "foca" => Ok(Impl::Foca),
            _ => Err(format!("unknown implementation `{text}`: expected shoal or foca")),
        }
    }
}

#[cfg(all(test, feature = "compare"))]
mod tests {
    #[test]
    fn foca_refuses_a_mesh_that_starts_formed() {
        let scenario = crate::Scenario::builtin("steady").expect("built in").with_nodes(10);
        let refused = crate::Simulation::with_impl(scenario, 1, None, super::Impl::Foca);
        assert!(matches!(refused, Err(crate::sim::SimError::FormedUnavailable("foca"))));
    }
}
