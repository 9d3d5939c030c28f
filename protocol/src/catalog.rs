//! The workload catalog: a replicated map from name to spec.
//!
//! Last writer wins by a [`Stamp`] (a Lamport clock, with the writer's id to
//! break ties), so any two nodes that have seen the same entries hold the same
//! catalog, whatever the order they saw them in. A delete is a tombstone (an
//! entry with no spec) that wins like any write and is forgotten after
//! `tombstone_retention`. Entries spread like membership facts: piggybacked,
//! and by anti-entropy over range digests of hashed names.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::hash::mix64;
use crate::wire::{KeyRange, RangeDigest};
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

impl CatalogEntry {
    fn key(&self) -> u64 {
        crate::stable_hash64(self.name.as_bytes())
    }

    /// The total order writes are merged by: the stamp; then, should a
    /// stamp ever be reused (a node that lost its data dir and wrote before
    /// syncing), a delete over a write, then the content, so every node still
    /// picks the same one.
    fn precedence(&self) -> (Stamp, bool, u64) {
        let content = self.spec.as_ref().map_or(0, |spec| crate::stable_hash64(&crate::wire::encode_value(spec)));
        (self.stamp, self.spec.is_none(), content)
    }

    fn entry_hash(&self) -> u64 {
        mix64(self.key() ^ mix64(self.stamp.clock) ^ self.stamp.node.key().rotate_left(29))
    }
}

/// What applying an entry did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The first entry held for this name.
    New,
    /// The entry was newer than the one held, and replaced it.
    Changed,
    /// Older than, or the same as, what is held.
    Ignored,
    /// The spec breaks a bound; refused.
    Invalid,
}

#[derive(Clone, Debug)]
struct Held {
    entry: CatalogEntry,
    since: Instant,
}

/// The local replica of the catalog.
#[derive(Clone, Debug, Default)]
pub(crate) struct Catalog {
    entries: BTreeMap<(u64, String), Held>,
    /// XOR of the hashes of live (not deleted) entries, and their count.
    live_hash: u64,
    live_count: usize,
    /// The highest clock seen, for stamping local writes.
    clock: u64,
}

impl Catalog {
    pub(crate) fn get(&self, name: &str) -> Option<&CatalogEntry> {
        let key = crate::stable_hash64(name.as_bytes());
        self.entries.get(&(key, name.to_string())).map(|held| &held.entry)
    }

    /// Every entry, tombstones included, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.entries.values().map(|held| &held.entry)
    }

    /// Merges `entry`: the later stamp wins.
    pub(crate) fn apply(&mut self, entry: &CatalogEntry, now: Instant) -> Applied {
        if let Some(spec) = &entry.spec {
            if spec.validate().is_err() || spec.name != entry.name {
                return Applied::Invalid;
            }
        }
        self.clock = self.clock.max(entry.stamp.clock);
        let slot = (entry.key(), entry.name.clone());
        // A tombstone for a name never seen is kept too: the write it deletes
        // may still be on its way, and must lose when it arrives.
        if self.entries.get(&slot).is_some_and(|held| held.entry.precedence() >= entry.precedence()) {
            return Applied::Ignored;
        }
        if entry.spec.is_some() {
            self.live_hash ^= entry.entry_hash();
            self.live_count += 1;
        }
        let Some(old) = self.entries.insert(slot, Held { entry: entry.clone(), since: now }) else {
            return Applied::New;
        };
        if old.entry.spec.is_some() {
            self.live_hash ^= old.entry.entry_hash();
            self.live_count -= 1;
        }
        Applied::Changed
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
    pub(crate) fn reap(&mut self, now: Instant, retention: std::time::Duration) {
        self.entries.retain(|_, held| held.entry.spec.is_some() || now.saturating_since(held.since) < retention);
    }

    pub(crate) fn in_range(&self, range: KeyRange) -> impl Iterator<Item = &CatalogEntry> {
        let lower = (range.start(), String::new());
        self.entries
            .range((Bound::Included(lower), Bound::Unbounded))
            .take_while(move |((key, _), _)| *key <= range.end())
            .map(|(_, held)| &held.entry)
    }

    /// Our summary of `range` (tombstones are not summarised, like Dead
    /// members: a node that never saw the workload needs no tombstone).
    pub(crate) fn digest(&self, range: KeyRange) -> RangeDigest {
        let live = self.in_range(range).filter(|e| e.spec.is_some()).map(CatalogEntry::entry_hash);
        RangeDigest::summarise(range, (self.live_hash, self.live_count), live)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
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
        catalog.reap(Instant::from_millis(20), std::time::Duration::from_millis(100));
        assert!(catalog.get("db").is_some(), "kept within retention");
        catalog.reap(Instant::from_millis(200), std::time::Duration::from_millis(100));
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
            prop_assert_eq!(a.iter().collect::<Vec<_>>(), b.iter().collect::<Vec<_>>());
            prop_assert_eq!(a.digest(KeyRange::ROOT), b.digest(KeyRange::ROOT));
        }
    }
}
