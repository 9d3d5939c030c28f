//! Timers as data: the protocol reports its next deadline and acts when
//! called back. A timer that no longer applies (its probe was answered, its
//! suspicion refuted) is recognised by its token and ignored.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::{Instant, NodeId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Finish the current probe, start the next.
    ProbeTick,
    /// The direct ack for probe `seq` is overdue: probe indirectly.
    ProbeTimeout {
        seq: u32,
    },
    /// The target of relayed probe `seq` has not answered: nack the asker.
    RelayTimeout {
        seq: u32,
    },
    /// The suspicion of `id` set to expire at `deadline` is due.
    Suspicion {
        id: NodeId,
        deadline: Instant,
    },
    GossipTick,
    /// The push-pull exchange planned for `at` is due (a later plan, made
    /// when views were found to differ, supersedes it).
    PushPullTick {
        at: Instant,
    },
    ReconnectTick,
}

/// Pending timers, earliest first; ties fire in the order they were set.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    next: u64,
}

impl Timers {
    pub(crate) fn set(&mut self, at: Instant, timer: Timer) {
        self.next += 1;
        self.heap.push(Reverse((at, self.next, timer)));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The earliest timer due at or before `now`, with its deadline.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        if self.next_deadline()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse((at, _, timer))| (at, timer))
    }
}
