//! Replica status: what each node says about the replicas it runs.
//!
//! Every node is the only writer of its own entries, so an entry needs no
//! clock beyond the writer's: (generation, version) orders them, the way
//! (generation, incarnation) orders membership facts. One entry per
//! (node, workload, replica) keeps each fact small enough to piggyback. A
//! stopped replica is a tombstone, kept for a while so it overtakes the
//! Running entry it replaces, then forgotten. Entries spread like catalog
//! entries: piggybacked, and by anti-entropy over their own range digests.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hash::mix64;
use crate::table::{Applied, Entry, Table};
use crate::workload::validate_name;
use crate::{Instant, NodeId};

/// One replica of one workload: what placement assigns, drivers run and
/// statuses report. Ordered by workload, then replica.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReplicaKey {
    pub workload: String,
    pub replica: u16,
}

impl ReplicaKey {
    pub fn new(workload: impl Into<String>, replica: u16) -> ReplicaKey {
        ReplicaKey { workload: workload.into(), replica }
    }

    /// `<workload>-<replica>`: workload names are `[a-z0-9-]`, so this is
    /// a safe file name or container name component.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.workload, self.replica)
    }
}

impl fmt::Display for ReplicaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.workload, self.replica)
    }
}

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

    /// Which replica this is about.
    pub fn key(&self) -> ReplicaKey {
        ReplicaKey::new(self.workload.clone(), self.replica)
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

impl Entry for StatusEntry {
    /// (reporting node, replica).
    type Id = (NodeId, ReplicaKey);
    /// (generation, version): a restarted node's entries replace its
    /// earlier run's.
    type Precedence = (u64, u64);

    fn id(&self) -> (NodeId, ReplicaKey) {
        (self.node, self.status.key())
    }

    fn key((node, replica): &(NodeId, ReplicaKey)) -> u64 {
        mix64(node.key() ^ crate::stable_hash64(replica.workload.as_bytes())) ^ mix64(u64::from(replica.replica))
    }

    fn precedence(&self) -> (u64, u64) {
        (self.generation, self.version)
    }

    /// A Stopped replica is a tombstone.
    fn is_live(&self) -> bool {
        self.status.state != ReplicaState::Stopped
    }

    fn is_valid(&self) -> bool {
        self.status.is_valid()
    }

    fn entry_hash(&self, key: u64) -> u64 {
        mix64(key ^ mix64(self.generation) ^ self.version.rotate_left(23))
    }
}

/// Every node's reported replica statuses, as this node knows them.
#[derive(Clone, Debug, Default)]
pub(crate) struct StatusTable {
    table: Table<StatusEntry>,
}

impl StatusTable {
    /// The entries, as a replicated table.
    pub(crate) fn table(&self) -> &Table<StatusEntry> {
        &self.table
    }

    /// Merges `entry`: the greater (generation, version) wins. The caller
    /// has checked that the reporting node is a live member.
    pub(crate) fn apply(&mut self, entry: &StatusEntry, now: Instant) -> Applied {
        self.table.apply(entry, now)
    }

    /// The entry for one replica on one node, if known.
    pub(crate) fn get(&self, node: NodeId, replica: &ReplicaKey) -> Option<&StatusEntry> {
        self.table.get(&(node, replica.clone()))
    }

    /// Every replica some node reports (not Stopped), in key order.
    pub(crate) fn live(&self) -> impl Iterator<Item = &StatusEntry> {
        self.table.live()
    }

    /// Drops every entry `node` reported before `generation` (all of them
    /// for `u64::MAX`): a member that died, left or restarted runs none of
    /// what it reported before.
    pub(crate) fn forget_node(&mut self, node: NodeId, generation: u64) {
        self.table.retain(|entry, _| entry.node != node || entry.generation >= generation);
    }

    /// Forgets tombstones older than `retention`.
    pub(crate) fn reap(&mut self, now: Instant, retention: std::time::Duration) {
        self.table.reap(now, retention);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{KeyRange, RangeDigest};

    fn entry(node: u64, generation: u64, version: u64, state: ReplicaState) -> StatusEntry {
        StatusEntry { node: NodeId::from_index(node), generation, version, status: ReplicaStatus::new("web", 0, state) }
    }

    #[test]
    fn later_reports_win_and_a_restart_replaces_the_old_run() {
        let mut table = StatusTable::default();
        assert_eq!(table.apply(&entry(1, 1, 2, ReplicaState::Running), Instant::ZERO), Applied::New);
        assert_eq!(table.apply(&entry(1, 1, 1, ReplicaState::Starting), Instant::ZERO), Applied::Ignored);
        assert_eq!(table.table().digest(KeyRange::ROOT).count, 1);
        assert_eq!(table.apply(&entry(1, 1, 3, ReplicaState::Stopped), Instant::ZERO), Applied::Changed);
        assert_eq!(table.table().digest(KeyRange::ROOT), RangeDigest { range: KeyRange::ROOT, hash: 0, count: 0 });
        table.apply(&entry(2, 1, 1, ReplicaState::Running), Instant::ZERO);
        table.forget_node(NodeId::from_index(2), 2);
        assert!(
            table.get(NodeId::from_index(2), &ReplicaKey::new("web", 0)).is_none(),
            "the earlier generation's report is gone"
        );
        table.reap(Instant::from_millis(10), std::time::Duration::from_millis(5));
        assert_eq!(table.table().iter().count(), 0, "the tombstone is reaped after retention");
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
        assert_eq!(a.table().digest(KeyRange::ROOT), b.table().digest(KeyRange::ROOT));
        let children =
            KeyRange::ROOT.children().map(|c| c.map(|r| a.table().digest(r)).collect::<Vec<_>>()).unwrap_or_default();
        let (hash, count) = children.iter().fold((0, 0), |(h, c), d| (h ^ d.hash, c + d.count));
        assert_eq!((hash, count), (a.table().digest(KeyRange::ROOT).hash, a.table().digest(KeyRange::ROOT).count));
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
