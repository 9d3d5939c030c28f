//! Lifeguard's suspicion timeout: long when a suspicion is fresh, shrinking
//! as independent members confirm it.
//!
//! With N live members and protocol period T:
//!
//! ```text
//! min = max(suspicion_floor, suspicion_mult · max(1, log10 N) · T)
//! max = suspicion_max_timeout_mult · min
//! k   = suspicion_confirmations expected (memberlist: suspicion_mult − 2; 0 if N − 2 < k)
//! timeout(c) = max(min, max − (max − min) · log(c + 1) / log(k + 1))
//! ```
//!
//! (memberlist's `suspicion.go`). The deadline counts from when the suspicion
//! started, so a confirmation can make it due at once.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::{Config, Instant, NodeId};

/// A running suspicion of one member at one (generation, incarnation).
#[derive(Clone, Debug)]
pub(crate) struct Suspicion {
    pub(crate) generation: u64,
    pub(crate) incarnation: u32,
    started: Instant,
    min: Duration,
    max: Duration,
    expected: u32,
    /// Who raised it first: the `by` of the fact that started it.
    pub(crate) raised_by: NodeId,
    confirmations: BTreeSet<NodeId>,
    /// When the member is declared Dead unless it refutes first.
    pub(crate) deadline: Instant,
    /// Times this node has asked the suspect itself (`ask_due`).
    asked: u8,
}

/// Most times a node asks a suspect about one suspicion (see
/// [`Suspicion::ask_due`]), one a period: at 20% loss each ask (a ping out, a
/// correction or a refutation back) fails about once in three (1 − 0.8²), so
/// eight leave about one lagging view in 3,500 (0.36⁸), and with `lan` the
/// last is due after 9 s, about the shortest suspicion timeout at N = 200.
/// (Three, tried first, left one in 21: at N = 60 a few runs in ten kept a
/// view Suspect past that timeout.) Asking a crashed member costs each
/// viewer at most this many datagrams.
pub(crate) const MAX_ASKS: u8 = 8;

impl Suspicion {
    /// A suspicion raised by `by` at `now`, among `live_members`.
    pub(crate) fn new(
        config: &Config,
        live_members: usize,
        generation: u64,
        incarnation: u32,
        by: NodeId,
        now: Instant,
    ) -> Suspicion {
        let (min, max) = config.suspicion_bounds(live_members);
        let expected = config.suspicion_confirmations;
        let expected = if (live_members.saturating_sub(2) as u64) < u64::from(expected) { 0 } else { expected };
        let mut suspicion = Suspicion {
            generation,
            incarnation,
            started: now,
            min,
            max,
            expected,
            raised_by: by,
            confirmations: BTreeSet::from([by]),
            deadline: now,
            asked: 0,
        };
        suspicion.deadline = now + suspicion.timeout();
        suspicion
    }

    /// The suspect's process is known to be gone (a port unreachable from
    /// its host): `suspicion_floor`, there to outlast a paused process, no
    /// longer applies, and neither does waiting for independent
    /// confirmations, which guard against a suspecter with bad links; the
    /// suspicion lasts Lifeguard's shortest timeout, the window a live
    /// member would have to refute. The deadline can only come closer.
    pub(crate) fn proven_gone(&mut self, config: &Config, live_members: usize, now: Instant) {
        let (min, max) = config.suspicion_bounds_without_floor(live_members);
        (self.min, self.max, self.expected) = (min, max, 0);
        self.deadline = (self.started + self.timeout()).max(now).min(self.deadline);
    }

    /// Independent confirmations beyond the first suspicion.
    pub(crate) fn confirmations(&self) -> u32 {
        u32::try_from(self.confirmations.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// Whether this node should ask the suspect about the suspicion now
    /// (and counts the ask): it is at least `after` old, so the refutation,
    /// which reaches most views within a second, has likely passed this one
    /// by, and fewer than [`MAX_ASKS`] asks went before.
    pub(crate) fn ask_due(&mut self, now: Instant, after: Duration) -> bool {
        if self.asked >= MAX_ASKS || now.saturating_since(self.started) < after {
            return false;
        }
        self.asked += 1;
        true
    }

    /// The timeout for the confirmations seen so far.
    pub(crate) fn timeout(&self) -> Duration {
        timeout(self.min, self.max, self.expected, self.confirmations())
    }

    /// Records that `by` also suspects the member at `now`. Returns whether
    /// this was a new, counted confirmation (and so the deadline may have moved
    /// closer). A deadline the shrunken timeout puts in the past becomes `now`:
    /// a timer set in the past would look like a stalled node.
    pub(crate) fn confirm(&mut self, by: NodeId, now: Instant) -> bool {
        if self.confirmations() >= self.expected || !self.confirmations.insert(by) {
            return false;
        }
        self.deadline = (self.started + self.timeout()).max(now);
        true
    }
}

/// The timeout after `confirmations` of `expected` confirmations.
pub(crate) fn timeout(min: Duration, max: Duration, expected: u32, confirmations: u32) -> Duration {
    if expected == 0 {
        return min;
    }
    let fraction = f64::from(confirmations + 1).ln() / f64::from(expected + 1).ln();
    let shrunk = max.as_secs_f64() - (max - min).as_secs_f64() * fraction;
    Duration::from_secs_f64(shrunk.max(min.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_follow_log10_n() {
        let config = Config::lan();
        assert_eq!(config.suspicion_bounds(5), (Duration::from_secs(4), Duration::from_secs(24)));
        assert_eq!(config.suspicion_bounds(1_000).0, Duration::from_secs(12));
    }

    #[test]
    fn the_floor_holds_until_alpha_log10_n_t_passes_it() {
        let fast = Config::fast();
        assert_eq!(fast.suspicion_bounds(10), (Duration::from_millis(2_750), Duration::from_millis(16_500)));
        assert_eq!(fast.suspicion_bounds(50).0, Duration::from_millis(2_750), "2 · 1.70 · 0.75 s = 2.55 s < the floor");
        assert_eq!(fast.suspicion_bounds(100).0, Duration::from_secs(3));
    }

    #[test]
    fn timeout_shrinks_from_max_to_min_with_confirmations() {
        let (min, max) = (Duration::from_secs(4), Duration::from_secs(24));
        let secs = |c| timeout(min, max, 2, c).as_secs_f64();
        assert!((secs(0) - 24.0).abs() < 1e-9);
        assert!((secs(1) - (24.0 - 20.0 * 2f64.ln() / 3f64.ln())).abs() < 1e-6);
        assert!((secs(2) - 4.0).abs() < 1e-9);
        assert!((secs(5) - 4.0).abs() < 1e-9, "never below min");
    }
}
