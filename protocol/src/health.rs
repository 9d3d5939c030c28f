//! Lifeguard's local health multiplier (memberlist's "awareness").
//!
//! A node that misses nacks, has to refute suspicion of itself, or fires its
//! own timers late is probably the slow one: it raises its score and stretches
//! its probe interval and timeout by `score + 1`, so it accuses others less
//! while it is unwell. Each successful probe lowers the score by one.

use std::time::Duration;

#[derive(Clone, Debug)]
pub(crate) struct LocalHealth {
    score: u32,
    max: u32,
}

impl LocalHealth {
    pub(crate) fn new(max: u32) -> LocalHealth {
        LocalHealth { score: 0, max }
    }

    /// 0 when healthy, up to the configured maximum.
    pub(crate) fn score(&self) -> u32 {
        self.score
    }

    pub(crate) fn worsen(&mut self, by: u32) {
        self.score = self.score.saturating_add(by).min(self.max);
    }

    pub(crate) fn improve(&mut self) {
        self.score = self.score.saturating_sub(1);
    }

    /// `base` stretched by the current score.
    pub(crate) fn scale(&self, base: Duration) -> Duration {
        base.saturating_mul(self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_is_bounded_and_scales_timeouts() {
        let mut health = LocalHealth::new(8);
        assert_eq!(health.scale(Duration::from_millis(500)), Duration::from_millis(500));
        health.worsen(3);
        assert_eq!(health.scale(Duration::from_millis(500)), Duration::from_secs(2));
        health.worsen(100);
        assert_eq!(health.score(), 8);
        health.improve();
        assert_eq!(health.score(), 7);
    }
}
