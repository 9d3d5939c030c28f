//! Replica status: what each node says about the replicas it runs.
//!
//! Every node is the only writer of its own entries, so an entry needs no
//! clock beyond the writer's: (generation, version) orders them, the way
//! (generation, incarnation) orders membership facts. One entry per
//! (node, workload, replica) keeps each fact small enough to piggyback. A
//! stopped replica is a tombstone, kept for a while so it overtakes the
//! Running entry it replaces, then forgotten. Entries spread like catalog
//! entries: piggybacked, and by anti-entropy over their own range digests.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::hash::mix64;
use crate::wire::{KeyRange, RangeDigest};
use crate::workload::validate_name;
use crate::{Instant, NodeId};

/// Where a replica is in its life, as its node's driver sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ReplicaState {
    /// Being created or started; not yet confirmed running.
    Starting,
    /// Running.
    Running,
    /// Exited or could not start; `detail` says why. The driver may restart
    /// it, per the workload's restart policy.
    Failed,
    /// Stopped on purpose (moved away, deleted): the node no longer runs it.
    Stopped,
    /// Running, but no longer this node's in its view: it stops once the
    /// new owner runs it (make-before-break). The protocol reports this in
    /// place of Running; drivers never do.
    Releasing,
}

impl ReplicaState {
    /// Running or about to (Starting, Running, Releasing): a copy that
    /// serves or will.
    pub fn is_active(self) -> bool {
        matches!(self, ReplicaState::Starting | ReplicaState::Running | ReplicaState::Releasing)
    }
}

/// What a node's driver says about one replica it supervises.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub workload: String,
    pub replica: u16,
    pub state: ReplicaState,
    /// Restarts since the replica was first started on this node.
    pub restarts: u32,
    /// Why it failed ("exited with status 3"), at most
    /// [`ReplicaStatus::MAX_DETAIL_LEN`] bytes; empty otherwise.
    pub detail: String,
}

impl ReplicaStatus {
    /// Longest `detail`, in bytes: status entries ride in datagrams.
    pub const MAX_DETAIL_LEN: usize = 160;

    /// A status with no restarts and no detail.
    pub fn new(workload: impl Into<String>, replica: u16, state: ReplicaState) -> ReplicaStatus {
        ReplicaStatus { workload: workload.into(), replica, state, restarts: 0, detail: String::new() }
    }

    /// Cuts `detail` to its bound, at a character boundary.
    pub(crate) fn bounded(mut self) -> ReplicaStatus {
        if self.detail.len() > Self::MAX_DETAIL_LEN {
            let mut end = Self::MAX_DETAIL_LEN;
            while !self.detail.is_char_boundary(end) {
                end -= 1;
            }
            self.detail.truncate(end);
        }
        self
    }

    fn is_valid(&self) -> bool {
        validate_name(&self.workload).is_ok() && self.detail.len() <= Self::MAX_DETAIL_LEN
    }
}

/// One replicated status: who reports it, and which of its reports this is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    pub node: NodeId,
    /// The reporting node's generation: a restarted node's entries replace
    /// its earlier run's.
    pub generation: u64,
    /// Grows with every report the node makes within a generation.
    pub version: u64,
    pub status: ReplicaStatus,
}

impl StatusEntry {
    fn slot(&self) -> Slot {
        let key = mix64(self.node.key() ^ crate::stable_hash64(self.status.workload.as_bytes()))
            ^ mix64(u64::from(self.status.replica));
        (key, self.node, self.status.workload.clone(), self.status.replica)
    }

    fn precedence(&self) -> (u64, u64) {
        (self.generation, self.version)
    }

    fn is_live(&self) -> bool {
        self.status.state != ReplicaState::Stopped
    }

    fn entry_hash(&self, key: u64) -> u64 {
        mix64(key ^ mix64(self.generation) ^ self.version.rotate_left(23))
    }
}

/// (anti-entropy key, node, workload, replica).
type Slot = (u64, NodeId, String, u16);

#[derive(Clone, Debug)]
struct Held {
    entry: StatusEntry,
    since: Instant,
}

/// What applying a status entry did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Newer than what was held (or the first): it replaced it.
    Changed,
    /// Older than, or the same as, what is held.
    Ignored,
    /// Breaks a bound; refused.
    Invalid,
}

/// Every node's reported replica statuses, as this node knows them.
#[derive(Clone, Debug, Default)]
pub(crate) struct StatusTable {
    entries: BTreeMap<Slot, Held>,
    /// XOR of the hashes of live (not Stopped) entries, and their count.
    live_hash: u64,
    live_count: usize,
}

impl StatusTable {
    /// Merges `entry`: the greater (generation, version) wins. The caller
    /// has checked that the reporting node is a live member.
    pub(crate) fn apply(&mut self, entry: &StatusEntry, now: Instant) -> Applied {
        if !entry.status.is_valid() {
            return Applied::Invalid;
        }
        let slot = entry.slot();
        if self.entries.get(&slot).is_some_and(|held| held.entry.precedence() >= entry.precedence()) {
            return Applied::Ignored;
        }
        let key = slot.0;
        if entry.is_live() {
            self.live_hash ^= entry.entry_hash(key);
            self.live_count += 1;
        }
        if let Some(old) = self.entries.insert(slot, Held { entry: entry.clone(), since: now }) {
            self.unsummarise(key, &old.entry);
        }
        Applied::Changed
    }

    fn unsummarise(&mut self, key: u64, entry: &StatusEntry) {
        if entry.is_live() {
            self.live_hash ^= entry.entry_hash(key);
            self.live_count -= 1;
        }
    }

    /// The entry for one replica on one node, if known.
    pub(crate) fn get(&self, node: NodeId, workload: &str, replica: u16) -> Option<&StatusEntry> {
        let probe = StatusEntry {
            node,
            generation: 0,
            version: 0,
            status: ReplicaStatus::new(workload, replica, ReplicaState::Stopped),
        };
        self.entries.get(&probe.slot()).map(|held| &held.entry)
    }

    /// Every entry, tombstones included, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &StatusEntry> {
        self.entries.values().map(|held| &held.entry)
    }

    /// Drops every entry `node` reported before `generation` (all of them
    /// for `u64::MAX`): a member that died, left or restarted runs none of
    /// what it reported before.
    pub(crate) fn forget_node(&mut self, node: NodeId, generation: u64) {
        let stale: Vec<Slot> = self
            .entries
            .iter()
            .filter(|(slot, held)| slot.1 == node && held.entry.generation < generation)
            .map(|(slot, _)| slot.clone())
            .collect();
        for slot in stale {
            if let Some(held) = self.entries.remove(&slot) {
                self.unsummarise(slot.0, &held.entry);
            }
        }
    }

    /// Forgets tombstones older than `retention`.
    pub(crate) fn reap(&mut self, now: Instant, retention: std::time::Duration) {
        self.entries.retain(|_, held| held.entry.is_live() || now.saturating_since(held.since) < retention);
    }

    pub(crate) fn in_range(&self, range: KeyRange) -> impl Iterator<Item = &StatusEntry> {
        let lower = (range.start(), NodeId::default(), String::new(), 0);
        self.entries
            .range((Bound::Included(lower), Bound::Unbounded))
            .take_while(move |(slot, _)| slot.0 <= range.end())
            .map(|(_, held)| &held.entry)
    }

    /// Our summary of `range`; tombstones are not summarised.
    pub(crate) fn digest(&self, range: KeyRange) -> RangeDigest {
        let lower = (range.start(), NodeId::default(), String::new(), 0);
        let live = self
            .entries
            .range((Bound::Included(lower), Bound::Unbounded))
            .take_while(move |(slot, _)| slot.0 <= range.end())
            .filter(|(_, held)| held.entry.is_live())
            .map(|(slot, held)| held.entry.entry_hash(slot.0));
        RangeDigest::summarise(range, (self.live_hash, self.live_count), live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(node: u64, generation: u64, version: u64, state: ReplicaState) -> StatusEntry {
        StatusEntry { node: NodeId::from_index(node), generation, version, status: ReplicaStatus::new("web", 0, state) }
    }

    #[test]
    fn later_reports_win_and_a_restart_replaces_the_old_run() {
        let mut table = StatusTable::default();
        assert_eq!(table.apply(&entry(1, 1, 2, ReplicaState::Running), Instant::ZERO), Applied::Changed);
        assert_eq!(table.apply(&entry(1, 1, 1, ReplicaState::Starting), Instant::ZERO), Applied::Ignored);
        assert_eq!(table.digest(KeyRange::ROOT).count, 1);
        assert_eq!(table.apply(&entry(1, 1, 3, ReplicaState::Stopped), Instant::ZERO), Applied::Changed);
        assert_eq!(table.digest(KeyRange::ROOT), RangeDigest { range: KeyRange::ROOT, hash: 0, count: 0 });
        table.apply(&entry(2, 1, 1, ReplicaState::Running), Instant::ZERO);
        table.forget_node(NodeId::from_index(2), 2);
        assert!(table.get(NodeId::from_index(2), "web", 0).is_none(), "the earlier generation's report is gone");
        table.reap(Instant::from_millis(10), std::time::Duration::from_millis(5));
        assert_eq!(table.iter().count(), 0, "the tombstone is reaped after retention");
    }

    #[test]
    fn digests_agree_whatever_the_order_and_ranges_add_up() {
        let entries: Vec<StatusEntry> = (0..40)
            .map(|i| entry(i % 7, 1, i, if i % 5 == 0 { ReplicaState::Stopped } else { ReplicaState::Running }))
            .collect();
        let (mut a, mut b) = (StatusTable::default(), StatusTable::default());
        for e in &entries {
            a.apply(e, Instant::ZERO);
        }
        for e in entries.iter().rev() {
            b.apply(e, Instant::ZERO);
        }
        assert_eq!(a.digest(KeyRange::ROOT), b.digest(KeyRange::ROOT));
        let children =
            KeyRange::ROOT.children().map(|c| c.map(|r| a.digest(r)).collect::<Vec<_>>()).unwrap_or_default();
        let (hash, count) = children.iter().fold((0, 0), |(h, c), d| (h ^ d.hash, c + d.count));
        assert_eq!((hash, count), (a.digest(KeyRange::ROOT).hash, a.digest(KeyRange::ROOT).count));
    }

    #[test]
    fn bad_statuses_are_refused_and_details_are_bounded() {
        let mut table = StatusTable::default();
        let mut bad = entry(1, 1, 1, ReplicaState::Failed);
        bad.status.workload = "Not A Name".into();
        assert_eq!(table.apply(&bad, Instant::ZERO), Applied::Invalid);
        let long = ReplicaStatus { detail: "é".repeat(200), ..ReplicaStatus::new("web", 0, ReplicaState::Failed) };
        assert!(long.bounded().detail.len() <= ReplicaStatus::MAX_DETAIL_LEN);
    }
}
