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

use std::collections::BTreeSet;

use super::{Bug, Membership};
use crate::wire::{Body, KeyRange, MAX_SYNC_RANGES, MessageBuilder, RangeDigest, Sync, encode_value, encoded_len};
use crate::{Address, Instant, NodeId};

/// Below this many live entries (both sides together) in a differing range,
/// the entries are exchanged rather than the range split.
const LEAF_ENTRIES: u32 = 8;

/// The largest encoding of one [`RangeDigest`] (varints at their widest).
const DIGEST_LEN: usize = 1 + 10 + 10 + 5;

impl Membership {
    /// Opens an exchange with the root summary and, if `introduce`, this
    /// node's own entry (so a seed learns of a joiner at once).
    pub(super) fn start_sync(&mut self, to: Option<NodeId>, addr: Address, introduce: bool) {
        if self.has_bug(Bug::NoAntiEntropy) {
            return;
        }
        self.counters.syncs_started += 1;
        let body = Body::Sync(Sync { round: 0, ranges: vec![self.members.digest(KeyRange::ROOT)], want: Vec::new() });
        let mut builder = MessageBuilder::new(self.config.cluster_id, self.id, &body, self.config.sync_budget);
        if introduce {
            if let Some(me) = self.members.get(self.id) {
                for fact in me.facts(self.id) {
                    builder.try_push(&encode_value(&fact));
                }
            }
        }
        self.queue_transmit(to, addr, &body, builder.finish());
    }

    /// One step of an exchange (the peer's entries are already applied).
    pub(super) fn on_sync(&mut self, now: Instant, from: NodeId, from_addr: &Address, sync: &Sync) {
        if self.has_bug(Bug::NoAntiEntropy) {
            return;
        }
        let mut serve: Vec<KeyRange> = sync.want.clone();
        let mut want = Vec::new();
        let mut compare = Vec::new();
        for theirs in &sync.ranges {
            let mine = self.members.digest(theirs.range);
            if (mine.hash, mine.count) == (theirs.hash, theirs.count) {
                continue;
            }
            let small = mine.count.saturating_add(theirs.count) <= LEAF_ENTRIES;
            let children = theirs.range.children().filter(|_| !small && mine.count > 0 && theirs.count > 0);
            match children {
                Some(children) => compare.extend(children.map(|child| self.members.digest(child))),
                None => {
                    // Dead and Left entries are not in the summaries, so send
                    // ours even when our live count is zero: theirs may be
                    // what is stale.
                    serve.push(theirs.range);
                    want.push(theirs.range);
                }
            }
        }
        let round = sync.round.saturating_add(1);
        let last_round = round >= self.config.sync_max_rounds;
        if last_round {
            compare.clear();
            want.clear();
        }
        // Summaries and wants take at most half the budget (the rest is for
        // entries); what is cut now is found again in a later round.
        let max_ranges = (self.config.sync_budget / 2 / DIGEST_LEN).min(MAX_SYNC_RANGES);
        serve.truncate(max_ranges);
        want.truncate(max_ranges / 2);
        compare.truncate(max_ranges / 2);

        let (entries, unserved) = self.entries_for(&serve, &compare, &want);
        if !last_round {
            compare.extend(unserved.iter().map(|range| self.members.digest(*range)));
        }
        if entries.is_empty() && compare.is_empty() && want.is_empty() {
            return;
        }
        self.hurry_push_pull(now);
        let body = Body::Sync(Sync { round, ranges: compare, want });
        let mut builder = MessageBuilder::new(self.config.cluster_id, self.id, &body, self.config.sync_budget);
        for entry in &entries {
            if !builder.try_push(entry) {
                break;
            }
        }
        self.queue_transmit(Some(from), from_addr.clone(), &body, builder.finish());
    }

    /// Encoded facts for every member in `serve`, within what the budget
    /// leaves once the summaries are sent; and the ranges that did not fit
    /// (to be summarised instead, so the peer asks again).
    fn entries_for(
        &self,
        serve: &[KeyRange],
        compare: &[RangeDigest],
        want: &[KeyRange],
    ) -> (Vec<Vec<u8>>, Vec<KeyRange>) {
        let overhead = 64 + encoded_len(&(compare, want)) + DIGEST_LEN * (serve.len() + 1);
        let mut budget = self.config.sync_budget.saturating_sub(overhead);
        let mut entries = Vec::new();
        let mut sent = BTreeSet::new();
        for (index, range) in serve.iter().enumerate() {
            for member in self.members.in_range(*range) {
                if !sent.insert(member.id) {
                    continue;
                }
                for fact in member.facts(self.id) {
                    let encoded = encode_value(&fact);
                    if encoded.len() > budget {
                        return (entries, serve[index..].to_vec());
                    }
                    budget -= encoded.len();
                    entries.push(encoded);
                }
            }
        }
        (entries, Vec::new())
    }
}
