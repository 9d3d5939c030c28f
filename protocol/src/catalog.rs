//! The workload catalog: a replicated map from name to spec.
//!
//! Last writer wins by a [`Stamp`] (a Lamport clock, with the writer's id to
//! break ties), so any two nodes that have seen the same entries hold the same
//! catalog, whatever the order they saw them in. A delete is a tombstone (an
//! entry with no spec) that wins like any write and is forgotten after
//! `tombstone_retention`. Entries spread like membership facts: piggybacked,
//! and by anti-entropy over range digests of hashed names.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::codec::encode_value;
use crate::hash::mix64;
use crate::table::{Applied, Entry, Table};
use crate::{Instant, NodeId, WorkloadSpec};

/// When and by whom a catalog entry was written. Later stamps win.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Lamport clock: greater than every stamp the writer had seen.
    pub clock: u64,
    /// The writer, to order concurrent writes.
    pub node: NodeId,
}

/// One version of one workload: its spec, or a tombstone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub name: String,
    pub stamp: Stamp,
    /// `None` once deleted.
    pub spec: Option<Arc<WorkloadSpec>>,
}

impl Entry for CatalogEntry {
    type Id = String;
    /// The stamp; then, should a stamp ever be reused (a node that lost its
    /// data dir and wrote before syncing), a delete over a write, then the
    /// content, so every node still picks the same one.
    type Precedence = (Stamp, bool, u64);

    fn id(&self) -> String {
        self.name.clone()
    }

    fn key(name: &String) -> u64 {
        crate::stable_hash64(name.as_bytes())
    }

    fn precedence(&self) -> (Stamp, bool, u64) {
        let content = self.spec.as_ref().map_or(0, |spec| crate::stable_hash64(&encode_value(spec)));
        (self.stamp, self.spec.is_none(), content)
    }

    fn is_live(&self) -> bool {
        self.spec.is_some()
    }

    fn is_valid(&self) -> bool {
        self.spec.as_ref().is_none_or(|spec| spec.validate().is_ok() && spec.name == self.name)
    }

    fn entry_hash(&self, key: u64) -> u64 {
        mix64(key ^ mix64(self.stamp.clock) ^ self.stamp.node.key().rotate_left(29))
    }
}

/// The local replica of the catalog: a [`Table`] of entries, and the
/// Lamport clock local writes are stamped with.
#[derive(Clone, Debug, Default)]
pub(crate) struct Catalog {
    table: Table<CatalogEntry>,
    /// The highest clock seen, for stamping local writes.
    clock: u64,
}

impl Catalog {
    /// The entries, as a replicated table.
    pub(crate) fn table(&self) -> &Table<CatalogEntry> {
        &self.table
    }

    /// The entry for `name`, tombstone or not.
    pub(crate) fn get(&self, name: &str) -> Option<&CatalogEntry> {
        self.table.get(&name.to_string())
    }

    /// The live spec of `name`.
    pub(crate) fn spec(&self, name: &str) -> Option<&Arc<WorkloadSpec>> {
        self.get(name)?.spec.as_ref()
    }

    /// Merges `entry`: the later stamp wins.
    pub(crate) fn apply(&mut self, entry: &CatalogEntry, now: Instant) -> Applied {
        let applied = self.table.apply(entry, now);
        if applied != Applied::Invalid {
            self.clock = self.clock.max(entry.stamp.clock);
        }
        applied
    }

    /// A local write by `node`, stamped after everything seen so far.
    pub(crate) fn write(
        &mut self,
        name: String,
        spec: Option<Arc<WorkloadSpec>>,
        node: NodeId,
        now: Instant,
    ) -> CatalogEntry {
        let entry = CatalogEntry { name, stamp: Stamp { clock: self.clock + 1, node }, spec };
        self.apply(&entry, now);
        entry
    }

    /// Forgets tombstones older than `retention`.
    pub(crate) fn reap(&mut self, now: Instant, retention: Duration) {
        self.table.reap(now, retention);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::table::KeyRange;
    use crate::workload::tests::spec;

    fn entry(name: &str, clock: u64, node: u64, live: bool) -> CatalogEntry {
        CatalogEntry {
            name: name.into(),
            stamp: Stamp { clock, node: NodeId::from_index(node) },
            spec: live.then(|| Arc::new(spec(name, 1))),
        }
    }

    #[test]
    fn later_stamp_wins_and_ties_break_by_writer() {
        let mut catalog = Catalog::default();
        assert_eq!(catalog.apply(&entry("web", 1, 1, true), Instant::ZERO), Applied::New);
        assert_eq!(catalog.apply(&entry("web", 1, 1, true), Instant::ZERO), Applied::Ignored);
        assert_eq!(catalog.apply(&entry("web", 1, 2, false), Instant::ZERO), Applied::Changed, "same clock, higher id");
        assert_eq!(catalog.apply(&entry("web", 1, 1, true), Instant::ZERO), Applied::Ignored);
        assert!(catalog.get("web").is_some_and(|e| e.spec.is_none()), "deleted");
        let rewrite = catalog.write("web".into(), Some(Arc::new(spec("web", 3))), NodeId::from_index(1), Instant::ZERO);
        assert_eq!(rewrite.stamp.clock, 2, "a local write is stamped after everything seen");
        assert!(catalog.get("web").is_some_and(|e| e.spec.is_some()));
    }

    #[test]
    fn a_delete_that_overtakes_its_write_still_wins_and_old_tombstones_are_reaped() {
        let mut catalog = Catalog::default();
        assert_eq!(catalog.apply(&entry("ghost", 5, 1, false), Instant::ZERO), Applied::New);
        assert_eq!(catalog.apply(&entry("ghost", 4, 1, true), Instant::ZERO), Applied::Ignored);
        catalog.apply(&entry("db", 1, 1, true), Instant::ZERO);
        catalog.apply(&entry("db", 2, 1, false), Instant::from_millis(10));
        catalog.reap(Instant::from_millis(20), Duration::from_millis(100));
        assert!(catalog.get("db").is_some(), "kept within retention");
        catalog.reap(Instant::from_millis(200), Duration::from_millis(100));
        assert!(catalog.get("db").is_none(), "reaped after retention");
    }

    #[test]
    fn invalid_specs_are_refused() {
        let mut catalog = Catalog::default();
        let mut bad = entry("web", 1, 1, true);
        bad.spec = Some(Arc::new(spec("other-name", 1)));
        assert_eq!(catalog.apply(&bad, Instant::ZERO), Applied::Invalid);
        assert!(catalog.get("web").is_none());
    }

    proptest! {
        /// Any order of the same entries gives the same catalog and digest.
        #[test]
        fn merge_is_order_independent(
            writes in prop::collection::vec((0u8..6, 0u64..5, 0u64..3, any::<bool>()), 0..40),
            seed in any::<u64>(),
        ) {
            let entries: Vec<CatalogEntry> =
                writes.iter().map(|(n, clock, node, live)| entry(&format!("w{n}"), *clock, *node, *live)).collect();
            let mut shuffled = entries.clone();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = mix64(state.wrapping_add(i as u64));
                shuffled.swap(i, usize::try_from(state % (i as u64 + 1)).unwrap_or(0));
            }
            let (mut a, mut b) = (Catalog::default(), Catalog::default());
            for e in &entries { a.apply(e, Instant::ZERO); }
            for e in &shuffled { b.apply(e, Instant::ZERO); }
            prop_assert_eq!(a.table().iter().collect::<Vec<_>>(), b.table().iter().collect::<Vec<_>>());
            prop_assert_eq!(a.table().digest(KeyRange::ROOT), b.table().digest(KeyRange::ROOT));
        }
    }
}
