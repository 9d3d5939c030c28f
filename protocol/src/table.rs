//! One replicated table: versioned entries with tombstones, an incremental
//! digest, and range summaries for anti-entropy.
//!
//! The catalog (workloads by name) and the replica statuses (one entry per
//! node and replica) are both a [`Table`] of an [`Entry`] type: the entry
//! says who it is ([`Entry::id`], hashed to its place in the key space),
//! how two versions of it are ordered ([`Entry::precedence`]), whether it
//! is a tombstone, and its hash for the digest. The table does the rest:
//! merge by precedence, the running XOR digest and count of live entries,
//! the summary of any key range, and forgetting tombstones after a
//! retention. A third kind of replicated entry is one `impl Entry`.
//!
//! The key space is a 16-ary tree over 64-bit keys ([`KeyRange`]); a
//! summary of a range is the XOR of its live entries' hashes and their
//! count ([`RangeDigest`]). Tombstones are not summarised, like Dead
//! members: a node that never saw an entry needs no tombstone for it.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Instant;

/// A slice of the anti-entropy key space: the keys whose top `4·depth` bits
/// equal those of `prefix`. Depth 0 is the whole space; each level splits a
/// range into 16.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyRange {
    /// Levels below the root, 0 to [`KeyRange::MAX_DEPTH`].
    pub depth: u8,
    /// Any key in the range; only its top `4·depth` bits are significant.
    pub prefix: u64,
}

/// A summary of one side's entries in a key range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDigest {
    /// The range summarised.
    pub range: KeyRange,
    /// XOR of the entry hashes of the live entries in it (members not Dead or
    /// Left, workloads not deleted, replicas not Stopped).
    pub hash: u64,
    /// How many live entries are in it.
    pub count: u32,
}

impl RangeDigest {
    /// The summary of `range` from the hashes of its live entries; the whole
    /// space (depth 0) uses the table's running totals, `root`, instead of a
    /// scan.
    pub(crate) fn summarise(range: KeyRange, root: (u64, usize), live: impl Iterator<Item = u64>) -> RangeDigest {
        let (hash, count) = if range.depth == 0 { root } else { live.fold((0, 0), |(h, c), e| (h ^ e, c + 1)) };
        RangeDigest { range, hash, count: u32::try_from(count).unwrap_or(u32::MAX) }
    }
}

impl KeyRange {
    /// The deepest level: 16 levels of 4 bits cover a 64-bit key.
    pub const MAX_DEPTH: u8 = 16;
    /// The whole key space.
    pub const ROOT: KeyRange = KeyRange { depth: 0, prefix: 0 };

    fn mask(self) -> u64 {
        match self.depth {
            0 => 0,
            d if d >= Self::MAX_DEPTH => u64::MAX,
            d => !(u64::MAX >> (4 * u32::from(d))),
        }
    }

    /// The smallest key in the range.
    pub fn start(self) -> u64 {
        self.prefix & self.mask()
    }

    /// The largest key in the range.
    pub fn end(self) -> u64 {
        self.start() | !self.mask()
    }

    /// Whether `key` falls in the range.
    pub fn contains(self, key: u64) -> bool {
        key & self.mask() == self.start()
    }

    /// The 16 sub-ranges, in key order; `None` at the deepest level.
    pub fn children(self) -> Option<impl Iterator<Item = KeyRange>> {
        if self.depth >= Self::MAX_DEPTH {
            return None;
        }
        let depth = self.depth + 1;
        let shift = 64 - 4 * u32::from(depth);
        let start = self.start();
        Some((0..16u64).map(move |i| KeyRange { depth, prefix: start | (i << shift) }))
    }
}

/// One kind of replicated entry.
pub(crate) trait Entry: Clone + fmt::Debug {
    /// What names an entry: two entries with the same id are versions of
    /// one another. `Id::default()` must be the least id (it bounds range
    /// scans from below).
    type Id: Ord + Clone + Default + fmt::Debug;
    /// The total order versions merge by: the greater wins.
    type Precedence: Ord;

    fn id(&self) -> Self::Id;
    /// The id's place in the anti-entropy key space (a stable hash).
    fn key(id: &Self::Id) -> u64;
    fn precedence(&self) -> Self::Precedence;
    /// Whether the entry is live, rather than a tombstone.
    fn is_live(&self) -> bool;
    /// Whether the entry keeps every bound (checked before it is merged).
    fn is_valid(&self) -> bool;
    /// This version's hash in the digest (`key` is `Self::key(&self.id())`).
    fn entry_hash(&self, key: u64) -> u64;
}

/// What merging an entry did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The first entry held for this id.
    New,
    /// Newer than the entry held, and replaced it.
    Changed,
    /// Older than, or the same as, what is held. Nothing changed.
    Ignored,
    /// Breaks a bound; refused. Nothing changed.
    Invalid,
}

#[derive(Clone, Debug)]
struct Held<E> {
    entry: E,
    /// When this version was merged here (tombstones are kept from then).
    since: Instant,
}

/// The local replica of one table.
#[derive(Clone, Debug)]
pub(crate) struct Table<E: Entry> {
    entries: BTreeMap<(u64, E::Id), Held<E>>,
    /// XOR of the hashes of the live entries, and their count: the root
    /// summary, kept as entries change rather than recomputed.
    live_hash: u64,
    live_count: usize,
}

impl<E: Entry> Default for Table<E> {
    fn default() -> Table<E> {
        Table { entries: BTreeMap::new(), live_hash: 0, live_count: 0 }
    }
}

impl<E: Entry> Table<E> {
    /// The entry held for `id`, tombstone or not.
    pub(crate) fn get(&self, id: &E::Id) -> Option<&E> {
        self.entries.get(&(E::key(id), id.clone())).map(|held| &held.entry)
    }

    /// Every entry, tombstones included, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &E> {
        self.entries.values().map(|held| &held.entry)
    }

    /// The live entries, in key order.
    pub(crate) fn live(&self) -> impl Iterator<Item = &E> {
        self.iter().filter(|entry| entry.is_live())
    }

    /// Merges `entry`: the greater precedence wins. A tombstone for an id
    /// never seen is kept too: the write it deletes may still be on its
    /// way, and must lose when it arrives.
    pub(crate) fn apply(&mut self, entry: &E, now: Instant) -> Applied {
        if !entry.is_valid() {
            return Applied::Invalid;
        }
        let id = entry.id();
        let key = E::key(&id);
        let slot = (key, id);
        if self.entries.get(&slot).is_some_and(|held| held.entry.precedence() >= entry.precedence()) {
            return Applied::Ignored;
        }
        self.summarise(key, entry, true);
        let old = self.entries.insert(slot, Held { entry: entry.clone(), since: now });
        if let Some(old) = &old {
            self.summarise(key, &old.entry, false);
        }
        self.debug_check();
        if old.is_some() { Applied::Changed } else { Applied::New }
    }

    /// Keeps only the entries for which `keep` holds.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&E, Instant) -> bool) {
        let Table { entries, live_hash, live_count } = self;
        entries.retain(|(key, _), held| {
            let kept = keep(&held.entry, held.since);
            if !kept && held.entry.is_live() {
                *live_hash ^= held.entry.entry_hash(*key);
                *live_count -= 1;
            }
            kept
        });
        self.debug_check();
    }

    /// Forgets tombstones held for `retention` or longer.
    pub(crate) fn reap(&mut self, now: Instant, retention: Duration) {
        self.retain(|entry, since| entry.is_live() || now.saturating_since(since) < retention);
    }

    /// When the oldest tombstone is due to be forgotten, if there is one.
    pub(crate) fn next_reap(&self, retention: Duration) -> Option<Instant> {
        self.entries.values().filter(|held| !held.entry.is_live()).map(|held| held.since + retention).min()
    }

    /// The entries (tombstones included) whose keys fall in `range`.
    pub(crate) fn in_range(&self, range: KeyRange) -> impl Iterator<Item = &E> {
        let lower = (range.start(), E::Id::default());
        self.entries
            .range((Bound::Included(lower), Bound::Unbounded))
            .take_while(move |((key, _), _)| *key <= range.end())
            .map(|(_, held)| &held.entry)
    }

    /// Our summary of `range`: the root from the running totals, any other
    /// range by a scan of its entries.
    pub(crate) fn digest(&self, range: KeyRange) -> RangeDigest {
        let lower = (range.start(), E::Id::default());
        let live = self
            .entries
            .range((Bound::Included(lower), Bound::Unbounded))
            .take_while(move |((key, _), _)| *key <= range.end())
            .filter(|(_, held)| held.entry.is_live())
            .map(|((key, _), held)| held.entry.entry_hash(*key));
        RangeDigest::summarise(range, (self.live_hash, self.live_count), live)
    }

    /// Adds (or, with `add` false, takes out) a live entry's hash.
    fn summarise(&mut self, key: u64, entry: &E, add: bool) {
        if entry.is_live() {
            self.live_hash ^= entry.entry_hash(key);
            if add {
                self.live_count += 1;
            } else {
                self.live_count -= 1;
            }
        }
    }

    /// The root summary recomputed from every entry.
    fn recomputed(&self) -> (u64, usize) {
        self.entries
            .iter()
            .filter(|(_, held)| held.entry.is_live())
            .fold((0, 0), |(hash, count), ((key, _), held)| (hash ^ held.entry.entry_hash(*key), count + 1))
    }

    /// Debug builds (the simulator's tests among them): the running digest
    /// is what a recomputation gives, after every change.
    fn debug_check(&self) {
        debug_assert_eq!(
            (self.live_hash, self.live_count),
            self.recomputed(),
            "the incremental digest drifted from its recomputation"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy entry: id, version, live.
    #[derive(Clone, Debug, PartialEq)]
    struct Toy(u32, u64, bool);

    impl Entry for Toy {
        type Id = u32;
        type Precedence = u64;
        fn id(&self) -> u32 {
            self.0
        }
        fn key(id: &u32) -> u64 {
            crate::hash::mix64(u64::from(*id))
        }
        fn precedence(&self) -> u64 {
            self.1
        }
        fn is_live(&self) -> bool {
            self.2
        }
        fn is_valid(&self) -> bool {
            self.0 != 13
        }
        fn entry_hash(&self, key: u64) -> u64 {
            crate::hash::mix64(key ^ self.1)
        }
    }

    #[test]
    fn merge_keeps_the_greater_version_and_the_digest_counts_live_entries() {
        let mut table = Table::default();
        assert_eq!(table.apply(&Toy(1, 1, true), Instant::ZERO), Applied::New);
        assert_eq!(table.apply(&Toy(1, 1, true), Instant::ZERO), Applied::Ignored);
        assert_eq!(table.apply(&Toy(1, 0, true), Instant::ZERO), Applied::Ignored);
        assert_eq!(table.apply(&Toy(13, 1, true), Instant::ZERO), Applied::Invalid);
        assert_eq!(table.apply(&Toy(2, 1, true), Instant::ZERO), Applied::New);
        assert_eq!(table.digest(KeyRange::ROOT).count, 2);
        assert_eq!(table.apply(&Toy(1, 2, false), Instant::from_millis(5)), Applied::Changed);
        assert_eq!(table.digest(KeyRange::ROOT).count, 1, "a tombstone is not summarised");
        assert_eq!(table.get(&1), Some(&Toy(1, 2, false)));
        assert_eq!(table.live().count(), 1);
        assert_eq!(table.next_reap(Duration::from_millis(10)), Some(Instant::from_millis(15)));
        table.reap(Instant::from_millis(14), Duration::from_millis(10));
        assert_eq!(table.iter().count(), 2, "kept within retention");
        table.reap(Instant::from_millis(15), Duration::from_millis(10));
        assert_eq!(table.iter().count(), 1, "forgotten after it");
        assert_eq!(table.next_reap(Duration::from_millis(10)), None);
    }

    #[test]
    fn range_summaries_add_up_to_the_root() {
        let mut table = Table::default();
        for id in 100..300 {
            table.apply(&Toy(id, u64::from(id % 3), id % 7 != 0), Instant::ZERO);
        }
        let root = table.digest(KeyRange::ROOT);
        let children: Vec<RangeDigest> =
            KeyRange::ROOT.children().map(|c| c.map(|r| table.digest(r)).collect()).unwrap_or_default();
        let (hash, count) = children.iter().fold((0, 0), |(h, c), d| (h ^ d.hash, c + d.count));
        assert_eq!((hash, count), (root.hash, root.count));
        let in_children: usize =
            KeyRange::ROOT.children().map(|c| c.map(|r| table.in_range(r).count()).sum()).unwrap_or_default();
        assert_eq!(in_children, 200);
        table.retain(|toy, _| toy.0 % 2 == 0);
        let kept = (100..300u32).filter(|id| id % 2 == 0 && id % 7 != 0).count();
        assert_eq!(table.digest(KeyRange::ROOT).count, u32::try_from(kept).unwrap_or(u32::MAX));
    }
}
