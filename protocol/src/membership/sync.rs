//! Push-pull anti-entropy whose cost follows the difference, not N.
//!
//! The key space (a stable hash of each member id) is a 16-ary tree. Each side
//! summarises a range as (XOR of entry hashes, count). An exchange starts
//! with the root summary; the receiver compares each summary it is sent with
//! its own and, where they differ, either sends its entries and asks for the
//! peer's (when the range is small) or answers with summaries of the 16
//! sub-ranges. Equal views cost one small message; a view that differs in d
//! members costs about d·log16(N) summaries plus the d entries. The exchange
//! is stateless: each message carries its round number and stops at
//! `sync_max_rounds`.

use super::{Bug, Membership, Replicated};
use crate::member::MemberTable;
use crate::table::Table;
use crate::wire::{
    Body, KeyRange, MAX_SYNC_RANGES, MessageBuilder, RangeDigest, Sync, Update, encode_append, encode_value,
    encoded_len,
};
use crate::{Address, CatalogEntry, Instant, NodeId, StatusEntry};

/// Below this many live entries (both sides together) in a differing range,
/// the entries are exchanged rather than the range split.
const LEAF_ENTRIES: u32 = 8;

/// The largest encoding of one [`RangeDigest`] (varints at their widest).
const DIGEST_LEN: usize = 1 + 10 + 10 + 5;

/// A replicated table anti-entropy reconciles, over its own key space:
/// members by hashed id, workloads by hashed name, replica statuses by
/// hashed (node, workload, replica). An exchange covers every table
/// [`Membership::synced`] lists, in [`Sync::TABLES`] order.
pub(crate) trait Synced {
    /// Our summary of `range`.
    fn digest(&self, range: KeyRange) -> RangeDigest;
    /// Appends the facts that bring a peer up to date on `range` (`by` is
    /// this node, the accuser in a Suspect or Dead fact).
    fn facts_in(&self, range: KeyRange, by: NodeId, out: &mut Vec<Update>);
}

impl Synced for MemberTable {
    fn digest(&self, range: KeyRange) -> RangeDigest {
        MemberTable::digest(self, range)
    }

    fn facts_in(&self, range: KeyRange, by: NodeId, out: &mut Vec<Update>) {
        out.extend(self.in_range(range).flat_map(|m| Update::facts_of(m, by)));
    }
}

impl Synced for Table<CatalogEntry> {
    fn digest(&self, range: KeyRange) -> RangeDigest {
        Table::digest(self, range)
    }

    fn facts_in(&self, range: KeyRange, _: NodeId, out: &mut Vec<Update>) {
        out.extend(self.in_range(range).cloned().map(Update::Workload));
    }
}

impl Synced for Table<StatusEntry> {
    fn digest(&self, range: KeyRange) -> RangeDigest {
        Table::digest(self, range)
    }

    fn facts_in(&self, range: KeyRange, _: NodeId, out: &mut Vec<Update>) {
        out.extend(self.in_range(range).cloned().map(Update::Status));
    }
}

/// Encoded facts back to back (one allocation, not one per fact), and where
/// each ends.
#[derive(Debug, Default)]
struct EncodedFacts {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

/// What one side decides to do about one table in one round.
#[derive(Debug, Default)]
struct RangePlan {
    /// Ranges whose entries we send.
    serve: Vec<KeyRange>,
    /// Ranges whose entries we ask for.
    want: Vec<KeyRange>,
    /// Our summaries of sub-ranges, for the peer to compare.
    compare: Vec<RangeDigest>,
}

impl Membership {
    /// The tables an exchange reconciles, in [`Sync::TABLES`] order: the
    /// members, then the layer above's.
    fn synced<'a>(&'a self, upper: &'a dyn Replicated) -> [&'a dyn Synced; Sync::TABLES] {
        let [catalog, statuses] = upper.synced();
        [&self.members, catalog, statuses]
    }

    /// Opens an exchange with the root summaries and, if `introduce`, this
    /// node's own entry (so a seed learns of a joiner at once).
    pub(super) fn start_sync(&mut self, to: Option<NodeId>, addr: Address, introduce: bool, upper: &dyn Replicated) {
        if self.has_bug(Bug::NoAntiEntropy) {
            return;
        }
        self.counters.syncs_started += 1;
        let body =
            Body::Sync(Sync::new(0, self.synced(upper).map(|table| (vec![table.digest(KeyRange::ROOT)], Vec::new()))));
        let mut builder = MessageBuilder::new(self.config.cluster_id, self.id, &body, self.config.sync_budget);
        if introduce {
            if let Some(me) = self.members.get(self.id) {
                for fact in Update::facts_of(me, self.id) {
                    builder.try_push(&encode_value(&fact));
                }
            }
        }
        self.queue_transmit(to, addr, &body, builder.finish());
    }

    /// Compares the peer's summaries of one table with ours. Sub-range
    /// summaries beyond `max_compare` would be cut, so are not computed.
    fn compare_ranges(
        table: &dyn Synced,
        theirs: &[RangeDigest],
        they_want: &[KeyRange],
        max_compare: usize,
    ) -> RangePlan {
        let mut plan = RangePlan { serve: they_want.to_vec(), ..RangePlan::default() };
        for theirs in theirs {
            let mine = table.digest(theirs.range);
            if (mine.hash, mine.count) == (theirs.hash, theirs.count) {
                continue;
            }
            let small = mine.count.saturating_add(theirs.count) <= LEAF_ENTRIES;
            let children = theirs.range.children().filter(|_| !small && mine.count > 0 && theirs.count > 0);
            match children {
                Some(children) => {
                    let room = max_compare.saturating_sub(plan.compare.len());
                    plan.compare.extend(children.take(room).map(|child| table.digest(child)));
                }
                None => {
                    // Dead members and deleted workloads are not in the
                    // summaries, so send ours even when our live count is
                    // zero: theirs may be what is stale.
                    plan.serve.push(theirs.range);
                    plan.want.push(theirs.range);
                }
            }
        }
        plan
    }

    /// One step of an exchange (the peer's entries are already applied).
    pub(super) fn on_sync(
        &mut self,
        now: Instant,
        from: NodeId,
        from_addr: &Address,
        sync: &Sync,
        upper: &dyn Replicated,
    ) {
        if self.has_bug(Bug::NoAntiEntropy) {
            return;
        }
        let round = sync.round.saturating_add(1);
        let last_round = round >= self.config.sync_max_rounds;
        // Summaries and wants take at most half the budget (the rest is for
        // entries); what is cut now is found again in a later round.
        let max_ranges = (self.config.sync_budget / 2 / DIGEST_LEN).min(MAX_SYNC_RANGES);
        let max_compare = if last_round { 0 } else { max_ranges / 4 };
        let tables = self.synced(upper);
        let mut plans: [RangePlan; Sync::TABLES] = std::array::from_fn(|index| {
            let (theirs, they_want) = sync.table(index);
            Self::compare_ranges(tables[index], theirs, they_want, max_compare)
        });
        for plan in &mut plans {
            if last_round {
                plan.compare.clear();
                plan.want.clear();
            }
            plan.serve.truncate(max_ranges / 2);
            plan.want.truncate(max_ranges / 4);
            plan.compare.truncate(max_ranges / 4);
        }

        let summaries_len: usize = plans.iter().map(|p| encoded_len(&(&p.compare, &p.want))).sum();
        let served: usize = plans.iter().map(|p| p.serve.len()).sum();
        let overhead = 64 + summaries_len + DIGEST_LEN * (served + 2);
        let mut budget = self.config.sync_budget.saturating_sub(overhead);
        let mut entries = EncodedFacts::default();
        for (table, plan) in tables.into_iter().zip(&mut plans) {
            let unserved = self.entries_for(table, &plan.serve, &mut budget, &mut entries);
            if !last_round {
                plan.compare.extend(unserved.iter().map(|range| table.digest(*range)));
            }
        }
        let nothing_to_say = plans.iter().all(|p| p.compare.is_empty() && p.want.is_empty());
        if entries.ends.is_empty() && nothing_to_say {
            return;
        }
        self.hurry_push_pull(now);
        let body = Body::Sync(Sync::new(round, plans.map(|plan| (plan.compare, plan.want))));
        let mut builder = MessageBuilder::new(self.config.cluster_id, self.id, &body, self.config.sync_budget);
        let mut start = 0;
        for &end in &entries.ends {
            if !builder.try_push(&entries.bytes[start..end]) {
                break;
            }
            start = end;
        }
        self.queue_transmit(Some(from), from_addr.clone(), &body, builder.finish());
    }

    /// Appends encoded facts for every entry of `table` in `serve` while
    /// `budget` lasts; returns the ranges that did not fit (to be summarised
    /// instead, so the peer asks again).
    fn entries_for(
        &self,
        table: &dyn Synced,
        serve: &[KeyRange],
        budget: &mut usize,
        out: &mut EncodedFacts,
    ) -> Vec<KeyRange> {
        // A range asked for twice, or inside another, is served once.
        let mut serve = serve.to_vec();
        serve.sort_unstable();
        serve.dedup();
        let covered = |r: &KeyRange, by: &KeyRange| by.depth < r.depth && by.contains(r.start());
        let serve: Vec<KeyRange> = serve.iter().filter(|r| !serve.iter().any(|by| covered(r, by))).copied().collect();
        let mut facts = Vec::new();
        for (index, range) in serve.iter().enumerate() {
            facts.clear();
            table.facts_in(*range, self.id, &mut facts);
            for fact in &mut facts {
                self.credit_suspicion(fact);
            }
            for fact in &facts {
                let len = encode_append(fact, &mut out.bytes);
                if len > *budget {
                    out.bytes.truncate(out.bytes.len() - len);
                    return serve[index..].to_vec();
                }
                *budget -= len;
                out.ends.push(out.bytes.len());
            }
        }
        Vec::new()
    }
}
