//! Exponential backoff: replica restarts, and the agent's joins and
//! seed lookups.

use std::time::Duration;

use shoal_protocol::RestartPolicy;

/// Delays between attempts: an initial delay, doubled after each failure
/// up to a ceiling; back to the initial delay on [`Backoff::reset`] (for
/// restarts, once an instance has run stably).
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A restart policy's backoff.
    pub(crate) fn new(policy: &RestartPolicy) -> Backoff {
        let initial = Duration::from_millis(u64::from(policy.backoff_initial_ms.max(1)));
        Backoff::between(initial, Duration::from_millis(u64::from(policy.backoff_max_ms)))
    }

    /// From `initial` doubling up to `max` (at least `initial`).
    pub(crate) fn between(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max: max.max(initial), next: initial }
    }

    /// The delay before the next restart; the one after it is doubled.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::RestartMode;

    #[test]
    fn doubles_up_to_the_ceiling_and_resets() {
        let policy = RestartPolicy { mode: RestartMode::Always, backoff_initial_ms: 100, backoff_max_ms: 350 };
        let mut b = Backoff::new(&policy);
        let ms = |d: Duration| d.as_millis();
        assert_eq!([b.next_delay(), b.next_delay(), b.next_delay(), b.next_delay()].map(ms), [100, 200, 350, 350]);
        b.reset();
        assert_eq!(ms(b.next_delay()), 100);
    }
}
