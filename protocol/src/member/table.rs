//! The member table: every known member, ordered by key (a stable hash of its
//! id) so that key ranges are contiguous, with the running summaries that
//! anti-entropy and the periodic sweeps read.
//!
//! Every node holds one entry per member, so the simulator holds N² of them:
//! the layout is chosen for size. Entries sit in 2^bits buckets by the top bits
//! of their key, each a sorted `Vec` (about 16 to 32 entries), which costs a
//! few bytes per entry beyond the entry itself; a `BTreeMap` costs about half
//! again.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Member, Peer};
use crate::table::{KeyRange, RangeDigest};
use crate::{Address, Instant, NodeId};

/// Average entries per bucket above which the buckets double. Eight, not 32
/// (issue 16, `mass-join`): an insert moves half a bucket, and a digest of a
/// range narrower than a bucket folds every entry in it, so at N = 2,000
/// (6 bucket bits with 32, 8 with 8) depth-2 ranges of anti-entropy became
/// whole buckets; 12% less CPU forming the mesh, for about 7% more memory
/// (two `Vec` headers per bucket).
const MAX_BUCKET_AVG: usize = 8;
/// Most key bits used to pick a bucket (2^20 buckets: far beyond any cluster).
const MAX_BITS: u32 = 20;

#[derive(Clone, Debug)]
struct Entry {
    member: Member,
}

/// The members whose keys share the top `bits` bits, in (key, id) order. The
/// keys sit apart from the entries so that a search touches few cache lines.
#[derive(Clone, Debug, Default)]
struct Bucket {
    keys: Vec<u64>,
    entries: Vec<Entry>,
    /// XOR of the entry hashes of the live members here, and their count:
    /// the digest of any range that covers whole buckets is a fold of these.
    live_hash: u64,
    live_count: u32,
}

impl Bucket {
    /// Where (key, id) is, or would go, in a bucket chosen by the top `bits`
    /// of the key.
    fn search(&self, key: u64, id: NodeId, bits: u32) -> Result<usize, usize> {
        // Keys are uniform hashes, so the key's place within the bucket's
        // span predicts its index to within a few entries: start there and
        // walk, touching one cache line where a binary search touches four.
        let n = self.keys.len();
        let within = key.checked_shl(bits).unwrap_or(0);
        #[allow(clippy::cast_possible_truncation)] // less than n
        let mut at = ((u128::from(within) * n as u128) >> 64) as usize;
        while at > 0 && self.keys[at - 1] >= key {
            at -= 1;
        }
        while at < n && self.keys[at] < key {
            at += 1;
        }
        // Distinct ids with equal keys are possible, if unlikely.
        let same = self.keys[at..].iter().take_while(|k| **k == key).count();
        let ids = &self.entries[at..at + same];
        match ids.binary_search_by(|e| e.member.id.cmp(&id)) {
            Ok(i) => Ok(at + i),
            Err(i) => Err(at + i),
        }
    }

    fn insert(&mut self, at: usize, key: u64, entry: Entry) {
        if self.entries.len() == self.entries.capacity() {
            // Grow by a quarter, not double: these vectors are most of a
            // node's memory.
            let more = self.entries.len() / 4 + 2;
            self.entries.reserve_exact(more);
            self.keys.reserve_exact(more);
        }
        self.keys.insert(at, key);
        self.entries.insert(at, entry);
    }

    /// Splits off the entries whose key has bit `shift` set (they are last).
    fn split(&mut self, shift: u32) -> Bucket {
        let mid = self.keys.partition_point(|k| (k >> shift) & 1 == 0);
        let mut high =
            Bucket { keys: self.keys.split_off(mid), entries: self.entries.split_off(mid), ..Bucket::default() };
        self.keys.shrink_to_fit();
        self.entries.shrink_to_fit();
        self.resummarise();
        high.resummarise();
        high
    }

    fn resummarise(&mut self) {
        let live = self.entries.iter().map(|e| &e.member).filter(|m| m.state.is_live());
        let (hash, count) = live.fold((0, 0), |(h, c), m| (h ^ m.entry_hash(), c + 1));
        (self.live_hash, self.live_count) = (hash, count);
    }
}

/// Every known member, ordered by (key, id), with the digest of the live ones
/// kept current.
#[derive(Clone, Debug)]
pub(crate) struct MemberTable {
    /// 2^bits buckets by the top bits of the key.
    buckets: Vec<Bucket>,
    bits: u32,
    len: usize,
    live_hash: u64,
    live_count: usize,
    /// Dead plus Left entries, so periodic sweeps can skip a healthy table.
    gone_count: usize,
    /// Addresses the node asked about (its seeds), with how many live members
    /// advertise each first.
    watched: Vec<(Address, u32)>,
    /// When members that sent us a message recently last did, known or not
    /// (a joiner often pings before its Alive fact reaches us). Only recent
    /// contact is ever asked about, so this holds the few members heard from
    /// lately: small, and warm in the cache, unlike the table.
    heard: BTreeMap<NodeId, Instant>,
    /// Entries in `heard` after its last sweep.
    heard_after_sweep: usize,
}

impl Default for MemberTable {
    fn default() -> MemberTable {
        MemberTable {
            buckets: vec![Bucket::default()],
            bits: 0,
            len: 0,
            live_hash: 0,
            live_count: 0,
            gone_count: 0,
            watched: Vec::new(),
            heard: BTreeMap::new(),
            heard_after_sweep: 0,
        }
    }
}

impl MemberTable {
    fn bucket_of(&self, key: u64) -> usize {
        // bits <= MAX_BITS, so the index fits.
        #[allow(clippy::cast_possible_truncation)]
        let index = key.checked_shr(64 - self.bits).unwrap_or(0) as usize;
        index
    }

    /// The bucket of `id` and its position (or where it would go) in it.
    fn find(&self, id: NodeId) -> (usize, Result<usize, usize>) {
        let key = id.key();
        let bucket = self.bucket_of(key);
        (bucket, self.buckets[bucket].search(key, id, self.bits))
    }

    pub(crate) fn get(&self, id: NodeId) -> Option<&Member> {
        match self.find(id) {
            (bucket, Ok(at)) => Some(&self.buckets[bucket].entries[at].member),
            (_, Err(_)) => None,
        }
    }

    /// Inserts or replaces the entry for `member.id`, keeping the digest.
    pub(crate) fn upsert(&mut self, member: Member) {
        let (bucket, found) = self.find(member.id);
        self.count(bucket, &member, true);
        match found {
            Ok(at) => {
                let old = std::mem::replace(&mut self.buckets[bucket].entries[at].member, member);
                self.count(bucket, &old, false);
            }
            Err(at) => {
                self.buckets[bucket].insert(at, member.id.key(), Entry { member });
                self.len += 1;
                self.grow_if_crowded();
            }
        }
    }

    pub(crate) fn remove(&mut self, id: NodeId) -> Option<Member> {
        let (bucket, Ok(at)) = self.find(id) else {
            return None;
        };
        self.buckets[bucket].keys.remove(at);
        let old = self.buckets[bucket].entries.remove(at).member;
        self.len -= 1;
        self.count(bucket, &old, false);
        Some(old)
    }

    /// Adds every peer not already in the table as Alive since `now`, in one
    /// pass: the table is rebuilt in (key, id) order, each bucket sized
    /// exactly, rather than by one ordered insert per peer. Peers already
    /// known keep their entries; of duplicate peers, the greatest version
    /// wins. Any input order gives the same table (already-sorted input,
    /// strictly increasing in (key, id), is not copied). Returns how many
    /// were added.
    pub(crate) fn preload(&mut self, now: Instant, peers: &[Peer]) -> usize {
        let sorted_copy;
        let peers: &[Peer] = if peers.windows(2).all(|w| w[0].order() < w[1].order()) {
            peers
        } else {
            let mut copy = peers.to_vec();
            copy.sort_unstable_by(|a, b| a.order().cmp(&b.order()).then(b.version().cmp(&a.version())));
            copy.dedup_by(|later, first| later.id == first.id);
            sorted_copy = copy;
            &sorted_copy
        };
        // Which peers are new: the entries held (usually only this node)
        // are looked up among the peers, not every peer in the table.
        let mut fresh = vec![true; peers.len()];
        for (key, entry) in self.buckets.iter().flat_map(|b| b.keys.iter().zip(&b.entries)) {
            if let Ok(at) = peers.binary_search_by(|p| p.order().cmp(&(*key, entry.member.id))) {
                fresh[at] = false;
            }
        }
        let added = fresh.iter().filter(|f| **f).count();
        // As many buckets as inserting one by one would have grown to, and
        // how many entries each will hold.
        let len = self.len + added;
        while len > MAX_BUCKET_AVG << self.bits && self.bits < MAX_BITS {
            self.bits += 1;
        }
        let mut lens = vec![0usize; 1 << self.bits];
        for key in self.buckets.iter().flat_map(|b| &b.keys) {
            lens[self.bucket_of(*key)] += 1;
        }
        for (peer, _) in peers.iter().zip(&fresh).filter(|(_, fresh)| **fresh) {
            lens[self.bucket_of(peer.key)] += 1;
        }
        // Merge the entries held with the new peers, both in (key, id) order.
        let old = std::mem::take(&mut self.buckets);
        let mut held = old.into_iter().flat_map(|b| b.keys.into_iter().zip(b.entries)).peekable();
        let mut new = peers.iter().zip(fresh).filter(|(_, fresh)| *fresh).map(|(p, _)| p).peekable();
        let mut buckets = Vec::with_capacity(lens.len());
        for len in lens {
            let mut bucket =
                Bucket { keys: Vec::with_capacity(len), entries: Vec::with_capacity(len), ..Bucket::default() };
            for _ in 0..len {
                let held_first = match (held.peek(), new.peek()) {
                    (Some((key, entry)), Some(peer)) => (*key, entry.member.id) < peer.order(),
                    (held, _) => held.is_some(),
                };
                let (key, entry, live_hash) = if held_first {
                    let Some((key, entry)) = held.next() else { break };
                    let live_hash = entry.member.state.is_live().then(|| entry.member.entry_hash());
                    (key, entry, live_hash)
                } else {
                    let Some(peer) = new.next() else { break };
                    (peer.key, Entry { member: peer.to_member(now) }, Some(peer.entry_hash()))
                };
                if let Some(hash) = live_hash {
                    bucket.live_hash ^= hash;
                    bucket.live_count += 1;
                }
                bucket.keys.push(key);
                bucket.entries.push(entry);
            }
            buckets.push(bucket);
        }
        self.buckets = buckets;
        self.len = len;
        self.resummarise();
        added
    }

    /// Recomputes the table-wide summaries from the buckets' (and the
    /// watched addresses' counts from the entries).
    fn resummarise(&mut self) {
        let (hash, live) = self.buckets.iter().fold((0, 0), |(h, c), b| (h ^ b.live_hash, c + b.live_count as usize));
        (self.live_hash, self.live_count, self.gone_count) = (hash, live, self.len - live);
        let watched: Vec<Address> = self.watched.iter().map(|(a, _)| a.clone()).collect();
        if !watched.is_empty() {
            self.watch(&watched);
        }
    }

    /// Doubles the buckets once they hold too many entries on average. Each
    /// bucket splits in two in place: its entries are already in key order.
    fn grow_if_crowded(&mut self) {
        if self.len <= MAX_BUCKET_AVG << self.bits || self.bits >= MAX_BITS {
            return;
        }
        self.bits += 1;
        let shift = 64 - self.bits;
        let old = std::mem::take(&mut self.buckets);
        let mut buckets = Vec::with_capacity(old.len() * 2);
        for mut low in old {
            let high = low.split(shift);
            buckets.push(low);
            buckets.push(high);
        }
        self.buckets = buckets;
    }

    /// Adds `member` to (or takes it from) the running summaries.
    fn count(&mut self, bucket: usize, member: &Member, add: bool) {
        if !member.state.is_live() {
            self.gone_count = if add { self.gone_count + 1 } else { self.gone_count - 1 };
            return;
        }
        let hash = member.entry_hash();
        self.live_hash ^= hash;
        self.live_count = if add { self.live_count + 1 } else { self.live_count - 1 };
        let bucket = &mut self.buckets[bucket];
        bucket.live_hash ^= hash;
        bucket.live_count = if add { bucket.live_count + 1 } else { bucket.live_count - 1 };
        if let Some(addr) = member.meta.primary_addr() {
            for (watched, n) in &mut self.watched {
                if watched == addr {
                    *n = if add { *n + 1 } else { n.saturating_sub(1) };
                }
            }
        }
    }

    /// Starts counting the live members that advertise each of `addrs` first
    /// (see [`MemberTable::is_live_address`]).
    pub(crate) fn watch(&mut self, addrs: &[Address]) {
        let mut watched: Vec<(Address, u32)> = addrs.iter().map(|a| (a.clone(), 0)).collect();
        for member in self.iter().filter(|m| m.state.is_live()) {
            let Some(addr) = member.meta.primary_addr() else { continue };
            for (watched, n) in &mut watched {
                if watched == addr {
                    *n += 1;
                }
            }
        }
        self.watched = watched;
    }

    /// Dead plus Left members.
    pub(crate) fn gone_count(&self) -> usize {
        self.gone_count
    }

    /// Whether some live member (this node included) advertises `addr` first.
    /// Only watched addresses are tracked; any other reads as `false`.
    pub(crate) fn is_live_address(&self, addr: &Address) -> bool {
        self.watched.iter().any(|(a, n)| a == addr && *n > 0)
    }

    /// Alive plus Suspect members, this node included: the N of the maths.
    pub(crate) fn live_count(&self) -> usize {
        self.live_count
    }

    /// Records that `id` sent us a message at `now`; contact longer than
    /// `window` ago may be forgotten.
    pub(crate) fn heard_from(&mut self, id: NodeId, now: Instant, window: Duration) {
        self.heard.insert(id, now);
        if self.heard.len() >= 2 * self.heard_after_sweep.max(32) {
            self.forget_heard_before(now, window);
        }
    }

    /// When `id` last sent us a message, if within the window.
    pub(crate) fn last_heard(&self, id: NodeId) -> Option<Instant> {
        self.heard.get(&id).copied()
    }

    /// Forgets contact longer than `window` before `now`.
    pub(crate) fn forget_heard_before(&mut self, now: Instant, window: Duration) {
        self.heard.retain(|_, at| now.saturating_since(*at) < window);
        self.heard_after_sweep = self.heard.len();
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Member> {
        self.buckets.iter().flat_map(|b| &b.entries).map(|e| &e.member)
    }

    /// Members whose key lies in `range`, in key order.
    pub(crate) fn in_range(&self, range: KeyRange) -> impl Iterator<Item = &Member> {
        let (start, end) = (range.start(), range.end());
        let buckets = &self.buckets[self.bucket_of(start)..=self.bucket_of(end)];
        buckets.iter().flat_map(move |bucket| {
            let lo = bucket.keys.partition_point(|k| *k < start);
            let hi = bucket.keys.partition_point(|k| *k <= end);
            bucket.entries[lo..hi].iter().map(|e| &e.member)
        })
    }

    /// Our summary of `range`: from the running totals when it covers whole
    /// buckets, by a scan of its entries otherwise.
    pub(crate) fn digest(&self, range: KeyRange) -> RangeDigest {
        if range.depth > 0 && 4 * u32::from(range.depth) <= self.bits {
            let buckets = &self.buckets[self.bucket_of(range.start())..=self.bucket_of(range.end())];
            let (hash, count) = buckets.iter().fold((0, 0), |(h, c), b| (h ^ b.live_hash, c + b.live_count));
            return RangeDigest { range, hash, count };
        }
        let live = self.in_range(range).filter(|m| m.state.is_live()).map(Member::entry_hash);
        RangeDigest::summarise(range, (self.live_hash, self.live_count), live)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::member::State;
    use crate::{Address, Metadata};

    fn member(index: u64, incarnation: u32, state: State) -> Member {
        Member {
            id: NodeId::from_index(index),
            generation: 1,
            incarnation,
            state,
            meta: Arc::new(Metadata::new(format!("n{index}"), Address::new(format!("sim:{index}")).expect("valid"))),
            state_since: Instant::ZERO,
        }
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

    #[test]
    fn growing_keeps_key_order_and_every_entry_reachable() {
        let mut table = MemberTable::default();
        for i in 0..3_000 {
            table.upsert(member(i, 0, State::Alive));
        }
        for i in (0..3_000).step_by(3) {
            assert!(table.remove(NodeId::from_index(i)).is_some());
        }
        assert!(table.bits >= 6, "buckets grew: {} bits", table.bits);
        let order: Vec<(u64, NodeId)> = table.iter().map(|m| (m.id.key(), m.id)).collect();
        // Digests from bucket totals agree with scans, at every depth.
        for depth in 1..=4 {
            let range = KeyRange { depth, prefix: NodeId::from_index(5).key() };
            let scanned = table.in_range(range).filter(|m| m.state.is_live()).fold(0, |h, m| h ^ m.entry_hash());
            let count = table.in_range(range).count();
            let digest = table.digest(range);
            assert_eq!((digest.hash, digest.count as usize), (scanned, count), "depth {depth}");
        }
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(order.len(), 2_000);
        for i in 0..3_000 {
            assert_eq!(table.get(NodeId::from_index(i)).is_some(), i % 3 != 0, "member {i}");
        }
        // A deep range holds exactly the members whose keys it contains.
        let range = KeyRange { depth: 3, prefix: NodeId::from_index(17).key() };
        let inside: Vec<NodeId> = table.in_range(range).map(|m| m.id).collect();
        let expected: Vec<NodeId> = table.iter().filter(|m| range.contains(m.id.key())).map(|m| m.id).collect();
        assert_eq!(inside, expected);
        assert!(!inside.is_empty());
    }

    #[test]
    fn watched_addresses_follow_live_members() {
        let mut table = MemberTable::default();
        table.upsert(member(1, 0, State::Alive));
        let seed = Address::new("sim:1").expect("valid");
        let other = Address::new("sim:2").expect("valid");
        table.watch(&[seed.clone(), other.clone()]);
        assert!(table.is_live_address(&seed));
        assert!(!table.is_live_address(&other));
        table.upsert(member(2, 0, State::Alive));
        assert!(table.is_live_address(&other));
        table.upsert(member(1, 0, State::Dead));
        assert!(!table.is_live_address(&seed));
    }

    #[test]
    fn recent_contact_is_kept_for_known_and_unknown_members() {
        let mut table = MemberTable::default();
        let window = Duration::from_secs(4);
        let (id, at) = (NodeId::from_index(4), Instant::from_millis(1_500));
        table.heard_from(id, at, window);
        table.upsert(member(4, 0, State::Alive));
        assert_eq!(table.last_heard(id), Some(at));
        table.heard_from(NodeId::from_index(5), Instant::from_millis(4_000), window);
        table.forget_heard_before(Instant::from_millis(6_000), window);
        assert_eq!(table.last_heard(id), None, "older than the window");
        assert_eq!(table.last_heard(NodeId::from_index(5)), Some(Instant::from_millis(4_000)));
        // Many senders: the map is swept as it grows, keeping the recent.
        for i in 0..1_000 {
            table.heard_from(NodeId::from_index(100 + i), Instant::from_millis(10_000 + i * 10), window);
        }
        assert!(table.heard.len() < 1_000 && table.heard.len() >= 400, "{}", table.heard.len());
    }

    #[test]
    fn preload_builds_the_table_inserting_one_by_one_would() {
        let peer = |i: u64, incarnation| {
            let m = member(i, incarnation, State::Alive);
            Peer::new(m.id, m.generation, m.incarnation, m.meta).expect("valid")
        };
        let mut one_by_one = MemberTable::default();
        one_by_one.upsert(member(0, 0, State::Alive));
        for i in 1..2_000 {
            one_by_one.upsert(member(i, 0, State::Alive));
        }
        // Any order, with a duplicate (the greater version wins) and this
        // node (its own entry stays).
        let mut peers: Vec<Peer> = (0..2_000).rev().map(|i| peer(i, 0)).collect();
        peers.push(peer(5, 0));
        peers[0] = peer(1_999, 3);
        peers.push(peer(1_999, 1));
        let mut own = member(0, 0, State::Alive);
        own.state_since = Instant::from_micros(7);
        let mut preloaded = MemberTable::default();
        preloaded.upsert(own.clone());
        let added = preloaded.preload(Instant::ZERO, &peers);
        assert_eq!(added, 1_999);
        assert_eq!(preloaded.get(own.id), Some(&own));
        assert_eq!(preloaded.get(NodeId::from_index(1_999)).map(|m| m.incarnation), Some(3));
        one_by_one.upsert(member(1_999, 3, State::Alive));
        assert_eq!(preloaded.bits, one_by_one.bits);
        assert_eq!(preloaded.live_count(), 2_000);
        let listed = |t: &MemberTable| t.iter().map(|m| (m.id, m.incarnation)).collect::<Vec<_>>();
        assert_eq!(listed(&preloaded), listed(&one_by_one));
        for depth in 0..=3 {
            let range = KeyRange { depth, prefix: NodeId::from_index(11).key() };
            assert_eq!(preloaded.digest(range), one_by_one.digest(range), "depth {depth}");
        }
        // Sorted input takes the fast path to the same table.
        let mut sorted: Vec<Peer> = (1..2_000).map(|i| peer(i, 0)).collect();
        sorted.sort_by_key(Peer::order);
        let mut fast = MemberTable::default();
        fast.preload(Instant::ZERO, &sorted);
        fast.upsert(member(0, 0, State::Alive));
        fast.upsert(member(1_999, 3, State::Alive));
        assert_eq!(listed(&fast), listed(&one_by_one));
        assert_eq!(fast.digest(KeyRange::ROOT), one_by_one.digest(KeyRange::ROOT));
    }
}
