//! The queue of updates waiting to be piggybacked: memberlist's
//! `TransmitLimitedQueue`.
//!
//! One entry per member (a newer fact replaces an older one). Messages take
//! the least-sent entries first and, among equals, the newest; an entry is
//! dropped once sent `limit` times, where the limit is λ·⌈log10(N+1)⌉.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::NodeId;
use crate::wire::{MessageBuilder, Subject, Update, encode_value};

#[derive(Clone, Debug)]
struct Pending {
    subject: Subject,
    encoded: Box<[u8]>,
}

/// Position in send order: least sent first, then newest first.
type Rank = (u32, Reverse<u64>);

/// The smallest encoded update (a Left fact with small varints).
const MIN_UPDATE_LEN: usize = 19;
/// Updates that may fail to fit before a message is considered full.
const MAX_MISSES: u32 = 8;
/// A first sighting of a member learned by gossip is queued only while fewer
/// updates than this are pending (see ALGORITHM.md, "Dissemination").
pub(crate) const SIGHTINGS_QUEUE_LIMIT: usize = 128;

/// Pending updates, keyed by member, in transmit order.
#[derive(Clone, Debug, Default)]
pub(crate) struct BroadcastQueue {
    /// Iteration order is send order.
    order: BTreeMap<Rank, Pending>,
    /// Where each subject's pending update is in `order`.
    rank: BTreeMap<Subject, Rank>,
    next_order: u64,
}

impl BroadcastQueue {
    /// Queues `update`, replacing any pending update about the same subject.
    pub(crate) fn push(&mut self, update: &Update) {
        let subject = update.subject();
        if let Some(old) = self.rank.remove(&subject) {
            self.order.remove(&old);
        }
        self.next_order += 1;
        let rank = (0, Reverse(self.next_order));
        self.rank.insert(subject.clone(), rank);
        self.order.insert(rank, Pending { subject, encoded: encode_value(update).into_boxed_slice() });
    }

    /// Drops the pending update about `subject`, if any.
    pub(crate) fn remove(&mut self, subject: &Subject) {
        if let Some(rank) = self.rank.remove(subject) {
            self.order.remove(&rank);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rank.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rank.is_empty()
    }

    /// Adds updates to `message` in send order while they fit, counting each
    /// as sent once, and retires those sent `limit` times. Updates about
    /// `first` (if any) go in before all others: Lifeguard's "tell the suspect
    /// it is suspected". Returns how many were added.
    pub(crate) fn fill(&mut self, message: &mut MessageBuilder, limit: u32, first: Option<NodeId>) -> usize {
        let first = first.and_then(|id| self.rank.get(&Subject::Member(id)).copied());
        let mut sent: Vec<Rank> = Vec::new();
        if let Some(rank) = first {
            if self.order.get(&rank).is_some_and(|p| message.try_push(&p.encoded)) {
                sent.push(rank);
            }
        }
        // Updates are tens to hundreds of bytes: once a few in a row do not
        // fit, the message is full enough. (Scanning a long queue to the end
        // for every message made bootstrap quadratic.)
        let mut misses = 0;
        for (rank, p) in &self.order {
            if message.remaining() < MIN_UPDATE_LEN || misses >= MAX_MISSES {
                break;
            }
            if first == Some(*rank) {
                continue;
            }
            if message.try_push(&p.encoded) {
                sent.push(*rank);
            } else {
                misses += 1;
            }
        }
        for (transmits, order) in &sent {
            let Some(p) = self.order.remove(&(*transmits, *order)) else { continue };
            let transmits = transmits + 1;
            if transmits >= limit {
                self.rank.remove(&p.subject);
            } else {
                if let Some(rank) = self.rank.get_mut(&p.subject) {
                    *rank = (transmits, *order);
                }
                self.order.insert((transmits, *order), p);
            }
        }
        sent.len()
    }
}

/// λ·⌈log10(N+1)⌉: how many times each update is sent.
pub(crate) fn retransmit_limit(retransmit_mult: u32, live_members: usize) -> u32 {
    let n = live_members as f64 + 1.0;
    // Truncation is intended: the value is a small positive count.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let scale = n.log10().ceil().max(1.0) as u32;
    retransmit_mult.saturating_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Body, decode};

    fn suspect(index: u64, incarnation: u32) -> Update {
        Update::Suspect { id: NodeId::from_index(index), generation: 1, incarnation, by: NodeId::from_index(0) }
    }

    fn drain(queue: &mut BroadcastQueue, limit: u32, first: Option<NodeId>) -> Vec<Update> {
        let mut builder = MessageBuilder::new(0, NodeId::from_index(0), &Body::Gossip, 1_400);
        queue.fill(&mut builder, limit, first);
        decode(&builder.finish(), 0).expect("decodes").updates
    }

    #[test]
    fn least_sent_then_newest_first_and_retired_at_limit() {
        let mut queue = BroadcastQueue::default();
        queue.push(&suspect(1, 0));
        queue.push(&suspect(2, 0));
        assert_eq!(drain(&mut queue, 2, None), vec![suspect(2, 0), suspect(1, 0)]);
        queue.push(&suspect(3, 0));
        assert_eq!(drain(&mut queue, 2, None), vec![suspect(3, 0), suspect(2, 0), suspect(1, 0)]);
        assert_eq!(drain(&mut queue, 2, None), vec![suspect(3, 0)]);
        assert!(queue.is_empty());
    }

    #[test]
    fn newer_fact_replaces_pending_one_and_first_goes_first() {
        let mut queue = BroadcastQueue::default();
        queue.push(&suspect(1, 0));
        queue.push(&suspect(2, 0));
        queue.push(&suspect(1, 1));
        assert_eq!(queue.len(), 2);
        let first = Some(NodeId::from_index(2));
        assert_eq!(drain(&mut queue, 5, first), vec![suspect(2, 0), suspect(1, 1)]);
    }

    proptest::proptest! {
        /// Whatever the mix of update sizes and the budget, a packed message
        /// never exceeds the budget, decodes, and carries only queued updates.
        #[test]
        fn packing_never_exceeds_the_budget(
            sizes in proptest::collection::vec(0usize..400, 0..60),
            budget in crate::Config::MIN_DATAGRAM_BUDGET..4_096usize,
            body_seq in proptest::prelude::any::<u32>(),
        ) {
            let mut queue = BroadcastQueue::default();
            let mut queued = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                let mut meta = crate::Metadata::new("n", crate::Address::new("sim:0").expect("valid"));
                meta.name = "x".repeat(*size);
                let update = Update::Alive {
                    id: NodeId::from_index(i as u64),
                    generation: 1,
                    incarnation: 0,
                    meta: std::sync::Arc::new(meta),
                };
                queue.push(&update);
                queued.push(update);
            }
            let body = Body::Ping { seq: body_seq, target: NodeId::from_index(9) };
            let mut builder = MessageBuilder::new(u64::MAX, NodeId::from_index(1), &body, budget);
            let added = queue.fill(&mut builder, 3, None);
            let bytes = builder.finish();
            proptest::prop_assert!(bytes.len() <= budget, "{} > {}", bytes.len(), budget);
            let message = decode(&bytes, u64::MAX).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert_eq!(message.updates.len(), added);
            proptest::prop_assert!(message.updates.iter().all(|u| queued.contains(u)));
            proptest::prop_assert!(sizes.is_empty() || added > 0 || sizes.iter().all(|s| *s > 300));
        }
    }

    #[test]
    fn retransmit_limit_grows_with_log_n() {
        assert_eq!(retransmit_limit(4, 1), 4);
        assert_eq!(retransmit_limit(4, 9), 4);
        assert_eq!(retransmit_limit(4, 10), 8);
        assert_eq!(retransmit_limit(4, 1_000), 16);
    }
}
