//! The member table: one entry per known member (this node included), the
//! order on facts that makes merging a maximum, and the range digests that
//! anti-entropy compares.

mod table;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::hash::mix64;
use crate::{Instant, Metadata, MetadataError, NodeId};

pub(crate) use table::MemberTable;

/// What this node believes about a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Answering probes, as far as we know.
    Alive,
    /// Someone failed to reach it; it has until its suspicion times out to
    /// refute.
    Suspect,
    /// Declared failed. Still retried now and then, until `dead_retention`.
    Dead,
    /// Left gracefully.
    Left,
}

impl State {
    /// Alive or Suspect: counts towards N, gets probed, holds work.
    pub fn is_live(self) -> bool {
        matches!(self, State::Alive | State::Suspect)
    }

    /// The tie-break between facts of equal generation and incarnation:
    /// suspicion beats liveness, death beats suspicion, leaving beats all.
    fn rank(self) -> u8 {
        match self {
            State::Alive => 0,
            State::Suspect => 1,
            State::Dead => 2,
            State::Left => 3,
        }
    }
}

/// The total order on facts about one member: a fact supersedes another iff
/// its version is greater.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version {
    pub(crate) generation: u64,
    pub(crate) incarnation: u32,
    pub(crate) rank: u8,
}

impl Version {
    pub(crate) fn new(generation: u64, incarnation: u32, state: State) -> Version {
        Version { generation, incarnation, rank: state.rank() }
    }
}

/// [`Member::entry_hash`] from its parts (`key` is the id's key).
fn entry_hash(key: u64, generation: u64, incarnation: u32, state: State) -> u64 {
    let version = mix64(generation) ^ mix64((u64::from(incarnation) << 8) | u64::from(state.rank()));
    mix64(key ^ version.rotate_left(17))
}

/// One known member, as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Stable identity.
    pub id: NodeId,
    /// Which run of the member's process this is; a restart increases it.
    pub generation: u64,
    /// Bumped by the member to refute suspicion or to publish new metadata.
    pub incarnation: u32,
    /// Our belief.
    pub state: State,
    /// What the member last said about itself.
    pub meta: Arc<Metadata>,
    /// When the member last went from live (Alive, Suspect) to gone (Dead,
    /// Left) or back, in local time: how long it has been settled, or dead.
    pub state_since: Instant,
}

impl Member {
    pub(crate) fn version(&self) -> Version {
        Version::new(self.generation, self.incarnation, self.state)
    }

    /// The hash anti-entropy compares: equal iff (id, generation,
    /// incarnation, state) are equal, with overwhelming probability.
    pub(crate) fn entry_hash(&self) -> u64 {
        entry_hash(self.id.key(), self.generation, self.incarnation, self.state)
    }
}

/// A member known from outside the protocol, for [`Node::preload`]:
/// what its Alive fact says (id, generation, incarnation, metadata). The
/// metadata is validated once, here, so one list can preload many nodes;
/// nodes preloaded from the same `Peer` share its metadata.
///
/// [`Node::preload`]: crate::Node::preload
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    id: NodeId,
    /// `id.key()`, computed once.
    key: u64,
    /// The entry's digest hash (Alive at this version), computed once.
    hash: u64,
    generation: u64,
    incarnation: u32,
    meta: Arc<Metadata>,
}

impl Peer {
    /// A member Alive at `generation` and `incarnation`, advertising `meta`.
    /// Refused if the metadata breaks a bound (as the same Alive fact
    /// received in a message would be).
    pub fn new(id: NodeId, generation: u64, incarnation: u32, meta: Arc<Metadata>) -> Result<Peer, MetadataError> {
        meta.validate()?;
        let key = id.key();
        let hash = entry_hash(key, generation, incarnation, State::Alive);
        Ok(Peer { id, key, hash, generation, incarnation, meta })
    }

    /// The member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Which run of the member's process.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The member's incarnation.
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// What the member says about itself.
    pub fn meta(&self) -> &Arc<Metadata> {
        &self.meta
    }

    /// The order the member table keeps: (key, id).
    pub(crate) fn order(&self) -> (u64, NodeId) {
        (self.key, self.id)
    }

    pub(crate) fn version(&self) -> Version {
        Version::new(self.generation, self.incarnation, State::Alive)
    }

    /// [`Member::entry_hash`] of [`Peer::to_member`].
    pub(crate) fn entry_hash(&self) -> u64 {
        self.hash
    }

    /// The member as an Alive entry since `now`.
    pub(crate) fn to_member(&self, now: Instant) -> Member {
        Member {
            id: self.id,
            generation: self.generation,
            incarnation: self.incarnation,
            state: State::Alive,
            meta: Arc::clone(&self.meta),
            state_since: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order_is_generation_then_incarnation_then_state() {
        let v = |g, i, s| Version::new(g, i, s);
        assert!(v(1, 0, State::Suspect) > v(1, 0, State::Alive));
        assert!(v(1, 0, State::Dead) > v(1, 0, State::Suspect));
        assert!(v(1, 0, State::Left) > v(1, 0, State::Dead));
        assert!(v(1, 1, State::Alive) > v(1, 0, State::Dead), "a refutation beats the accusation");
        assert!(v(2, 0, State::Alive) > v(1, 9, State::Left), "a restart beats everything before it");
    }
}
