//! Shoal's protocol, as a pure state machine in two layers: membership
//! ([`Membership`]) and the workloads it carries ([`Workloads`]), joined
//! by [`Node`].
//!
//! This crate contains no networking code and never reads a clock: time comes
//! in as an [`Instant`] argument, randomness from a seed its caller chooses,
//! bytes in through [`Node::handle_message`] and out through
//! [`Node::poll_transmit`]. The real node (`shoal-node`) and the
//! simulator (`shoal-sim`) drive the very same code, so what the simulator
//! shows is what ships.
//!
//! The protocol is SWIM (randomised round-robin probing, indirect probes,
//! suspicion with incarnation-based refutation) with Lifeguard's three
//! refinements (local health, confirmation-shortened suspicion, telling the
//! suspect), piggybacked dissemination, and push-pull anti-entropy over range
//! digests. ALGORITHM.md states the rules and the numbers they promise.
//!
//! ```
//! use shoal_protocol::{Address, Config, Identity, Instant, Metadata, Node, NodeId, WorkloadConfig};
//!
//! let addr = Address::new("sim:1")?;
//! let me = Identity { id: NodeId::from_index(1), generation: 1, meta: Metadata::new("n1", addr) };
//! let mut node = Node::new(Config::lan(), WorkloadConfig::lan(), me, 42, Instant::ZERO)?;
//! node.join(Instant::ZERO, [Address::new("sim:0")?]);
//! while let Some(transmit) = node.poll_transmit() {
//!     // hand transmit.payload to the network, addressed to transmit.addr
//!     # let _ = transmit;
//! }
//! assert!(node.poll_timeout().is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod broadcast;
mod catalog;
mod codec;
mod config;
pub mod coordinate;
mod counters;
mod hash;
mod health;
mod id;
mod member;
mod membership;
mod metadata;
mod node;
pub mod placement;
mod status;
mod suspicion;
mod table;
mod time;
mod timer;
pub mod wire;
mod workload;
mod workloads;

#[cfg(test)]
mod harness;

pub use catalog::{CatalogEntry, Stamp};
pub use config::{Config, ConfigError};
pub use coordinate::{Coordinate, CoordinateConfig, PackedCoordinate, estimate_rtt};
pub use counters::{ByKind, Counters, RttHistogram};
pub use hash::stable_hash64;
pub use id::{Address, NodeId};
pub use member::{Member, Peer, State};
pub use membership::{Bug, Error, Event, Identity, Membership, Transmit};
pub use metadata::{Capacity, Metadata, MetadataCache, MetadataError};
pub use node::Node;
pub use status::{ReplicaKey, ReplicaState, ReplicaStatus, StatusEntry};
pub use time::Instant;
pub use workload::{
    DRIVERS_LABEL, Driver, Resources, RestartMode, RestartPolicy, SpecError, WorkloadSpec, offers_driver,
};
pub use workloads::{Duty, Plan, WorkloadConfig, WorkloadEvent, Workloads};
