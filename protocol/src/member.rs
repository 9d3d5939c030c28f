//! The member table: one entry per known member (this node included), the
//! order on facts that makes merging a maximum, and the range digests that
//! anti-entropy compares.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::hash::mix64;
use crate::wire::{KeyRange, RangeDigest, Update};
use crate::{Address, Instant, Metadata, NodeId};

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

    pub(crate) fn of(update: &Update) -> Version {
        match *update {
            Update::Alive { generation, incarnation, .. } => Version::new(generation, incarnation, State::Alive),
            Update::Suspect { generation, incarnation, .. } => Version::new(generation, incarnation, State::Suspect),
            Update::Dead { generation, incarnation, .. } => Version::new(generation, incarnation, State::Dead),
            Update::Left { generation, incarnation, .. } => Version::new(generation, incarnation, State::Left),
            // Not a membership fact; callers only ask about membership facts.
            Update::Workload(_) | Update::Status(_) => Version::new(0, 0, State::Alive),
        }
    }
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
        let version = mix64(self.generation) ^ mix64((u64::from(self.incarnation) << 8) | u64::from(self.state.rank()));
        mix64(self.id.key() ^ version.rotate_left(17))
    }

    /// The facts that bring a peer to this entry: the Alive fact (which
    /// carries metadata), then the state's own fact if it is not Alive. A
    /// Dead or Left member is sent without its Alive fact, so a peer that
    /// never knew it does not first see it come up.
    pub(crate) fn facts(&self, by: NodeId) -> impl Iterator<Item = Update> {
        let (id, generation, incarnation) = (self.id, self.generation, self.incarnation);
        let alive =
            (self.state.is_live()).then(|| Update::Alive { id, generation, incarnation, meta: Arc::clone(&self.meta) });
        let other = match self.state {
            State::Alive => None,
            State::Suspect => Some(Update::Suspect { id, generation, incarnation, by }),
            State::Dead => Some(Update::Dead { id, generation, incarnation, by }),
            State::Left => Some(Update::Left { id, generation, incarnation }),
        };
        alive.into_iter().chain(other)
    }
}

/// Position in the table: by key first (so key ranges are map ranges), then id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    key: u64,
    id: NodeId,
}

impl Slot {
    fn of(id: NodeId) -> Slot {
        Slot { key: id.key(), id }
    }
}

/// Every known member, ordered by key, with the digest of the live ones kept
/// current.
#[derive(Clone, Debug, Default)]
pub(crate) struct MemberTable {
    members: BTreeMap<Slot, Member>,
    live_hash: u64,
    live_count: usize,
    /// Dead plus Left entries, so periodic sweeps can skip a healthy table.
    gone_count: usize,
    /// Primary addresses of live members, with how many share each.
    live_addrs: BTreeMap<Address, u32>,
}

impl MemberTable {
    pub(crate) fn get(&self, id: NodeId) -> Option<&Member> {
        self.members.get(&Slot::of(id))
    }

    /// Inserts or replaces the entry for `member.id`, keeping the digest.
    pub(crate) fn upsert(&mut self, member: Member) {
        let slot = Slot::of(member.id);
        self.count(&member, true);
        if let Some(old) = self.members.insert(slot, member) {
            self.count(&old, false);
        }
    }

    pub(crate) fn remove(&mut self, id: NodeId) -> Option<Member> {
        let old = self.members.remove(&Slot::of(id))?;
        self.count(&old, false);
        Some(old)
    }

    /// Adds `member` to (or takes it from) the running summaries.
    fn count(&mut self, member: &Member, add: bool) {
        if !member.state.is_live() {
            self.gone_count = if add { self.gone_count + 1 } else { self.gone_count - 1 };
            return;
        }
        self.live_hash ^= member.entry_hash();
        self.live_count = if add { self.live_count + 1 } else { self.live_count - 1 };
        if let Some(addr) = member.meta.primary_addr() {
            if add {
                *self.live_addrs.entry(addr.clone()).or_default() += 1;
            } else if let Some(n) = self.live_addrs.get_mut(addr) {
                *n -= 1;
                if *n == 0 {
                    self.live_addrs.remove(addr);
                }
            }
        }
    }

    /// Dead plus Left members.
    pub(crate) fn gone_count(&self) -> usize {
        self.gone_count
    }

    /// Whether some live member (this node included) advertises `addr` first.
    pub(crate) fn is_live_address(&self, addr: &Address) -> bool {
        self.live_addrs.contains_key(addr)
    }

    /// Alive plus Suspect members, this node included: the N of the maths.
    pub(crate) fn live_count(&self) -> usize {
        self.live_count
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Members whose key lies in `range`, in key order.
    pub(crate) fn in_range(&self, range: KeyRange) -> impl Iterator<Item = &Member> {
        let lower = Slot { key: range.start(), id: NodeId([0; 16]) };
        let upper = Slot { key: range.end(), id: NodeId([0xff; 16]) };
        self.members.range((Bound::Included(lower), Bound::Included(upper))).map(|(_, member)| member)
    }

    /// Our summary of `range`.
    pub(crate) fn digest(&self, range: KeyRange) -> RangeDigest {
        let live = self.in_range(range).filter(|m| m.state.is_live()).map(Member::entry_hash);
        RangeDigest::summarise(range, (self.live_hash, self.live_count), live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(index: u64, incarnation: u32, state: State) -> Member {
        Member {
            id: NodeId::from_index(index),
            generation: 1,
            incarnation,
            state,
            meta: Arc::new(Metadata::new(format!("n{index}"), Address::new("sim:0").expect("valid"))),
            state_since: Instant::ZERO,
        }
    }

    #[test]
    fn version_order_is_generation_then_incarnation_then_state() {
        let v = |g, i, s| Version::new(g, i, s);
        assert!(v(1, 0, State::Suspect) > v(1, 0, State::Alive));
        assert!(v(1, 0, State::Dead) > v(1, 0, State::Suspect));
        assert!(v(1, 0, State::Left) > v(1, 0, State::Dead));
        assert!(v(1, 1, State::Alive) > v(1, 0, State::Dead), "a refutation beats the accusation");
        assert!(v(2, 0, State::Alive) > v(1, 9, State::Left), "a restart beats everything before it");
    }

    #[test]
    fn root_digest_tracks_live_members_incrementally() {
        let mut table = MemberTable::default();
        for i in 0..50 {
            table.upsert(member(i, 0, State::Alive));
        }
        table.upsert(member(7, 1, State::Suspect));
        table.upsert(member(8, 0, State::Dead));
        assert!(table.remove(NodeId::from_index(9)).is_some());
        let recomputed = table.iter().filter(|m| m.state.is_live()).fold(0, |h, m| h ^ m.entry_hash());
        let root = table.digest(KeyRange::ROOT);
        assert_eq!((root.hash, root.count), (recomputed, 48));
        assert_eq!(table.live_count(), 48);
    }

    #[test]
    fn children_partition_their_parent() {
        let mut table = MemberTable::default();
        for i in 0..200 {
            table.upsert(member(i, 0, State::Alive));
        }
        let children: Vec<_> = KeyRange::ROOT.children().expect("root splits").collect();
        assert_eq!(children.len(), 16);
        let total: u32 = children.iter().map(|c| table.digest(*c).count).sum();
        let hash = children.iter().fold(0, |h, c| h ^ table.digest(*c).hash);
        assert_eq!((hash, total), (table.digest(KeyRange::ROOT).hash, 200));
        for m in table.iter() {
            assert_eq!(children.iter().filter(|c| c.contains(m.id.key())).count(), 1);
        }
    }
}
