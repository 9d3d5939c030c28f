//! Protocol timing and sizing, with presets modelled on memberlist's.
//!
//! Every duration is scaled at run time by the local health multiplier where
//! noted; see ALGORITHM.md for how each one enters the maths.

use std::time::Duration;

use crate::coordinate::{CoordinateConfig, CoordinateConfigError};

/// Tuning for one protocol instance. Build one from a preset ([`Config::lan`],
/// [`Config::wan`], [`Config::local`]), adjust fields, then [`Config::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Messages carry this id; a message with another is dropped and counted.
    /// The node derives it from the cluster key.
    pub cluster_id: u64,
    /// Time between probes of successive members (SWIM's protocol period T').
    /// Scaled by local health. Must be greater than `probe_timeout`.
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others to probe
    /// (indirect probes). Scaled by local health. Should exceed the p99 round
    /// trip.
    pub probe_timeout: Duration,
    /// How many members are asked to probe indirectly (SWIM's k). 0 disables
    /// indirect probes.
    pub indirect_checks: usize,
    /// λ: each update is sent λ·⌈log10(N+1)⌉ times. At least 1.
    pub retransmit_mult: u32,
    /// The suspicion timeout's lower bound is
    /// `max(suspicion_floor, suspicion_mult · max(1, log10 N) · probe_interval)`.
    /// At least 1.
    pub suspicion_mult: u32,
    /// A fresh suspicion lasts this many times the lower bound; independent
    /// confirmations shrink it towards the lower bound. At least 1.
    pub suspicion_max_timeout_mult: u32,
    /// Lifeguard's K: independent suspicions of a member that shrink its
    /// suspicion from the longest timeout to the shortest (fewer shrink it
    /// part way, on a log scale). A lone observer with a bad link thus waits
    /// the longest; a crash that several probers see takes the shortest.
    /// memberlist takes `suspicion_mult − 2`; 0 means always the shortest.
    pub suspicion_confirmations: u32,
    /// The shortest any suspicion lasts, whatever N: with the period it
    /// bounds the pause (GC, SIGSTOP, a stolen VM) a member survives, since
    /// it is first suspected no sooner than one period after it stops
    /// answering. Zero in the memberlist presets, where α·T already exceeds it.
    pub suspicion_floor: Duration,
    /// Time between gossip rounds that push pending updates (not probes).
    pub gossip_interval: Duration,
    /// Members each gossip round sends to.
    pub gossip_fanout: usize,
    /// Members declared Dead within this long still receive gossip, so a
    /// falsely accused member hears of it and refutes.
    pub gossip_to_the_dead: Duration,
    /// Time between push-pull anti-entropy exchanges with one random member
    /// while views agree. After an exchange finds a difference, the next few
    /// come about one `probe_interval` apart. Not scaled with N: an exchange
    /// between agreeing views is one small message.
    pub push_pull_interval: Duration,
    /// Time between attempts to reach a random Dead member and a random
    /// bootstrap address, which is how the two sides of a healed partition
    /// find each other again.
    pub reconnect_interval: Duration,
    /// Dead and Left members are forgotten (and no longer retried) after this.
    pub dead_retention: Duration,
    /// Ceiling of the local health multiplier: timeouts stretch to at most
    /// `(max_local_health + 1)` times their base.
    pub max_local_health: u32,
    /// Largest probe, ack or gossip message, in bytes, header included.
    pub datagram_budget: usize,
    /// Largest anti-entropy message, in bytes. The real node carries these
    /// over a stream, so they may exceed one datagram.
    pub sync_budget: usize,
    /// An anti-entropy exchange stops after this many messages, resuming at
    /// the next push-pull.
    pub sync_max_rounds: u8,
    /// Network coordinates: Serf's Vivaldi parameters and how often a
    /// coordinate rides in an ack (ALGORITHM.md section 15).
    pub coordinate: CoordinateConfig,
}

/// A field of [`Config`] is out of range. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field that must be positive is zero.
    #[error("config field `{field}` must be greater than zero")]
    Zero { field: &'static str },
    /// `probe_timeout` is not shorter than `probe_interval`.
    #[error("probe_timeout ({timeout:?}) must be shorter than probe_interval ({interval:?})")]
    ProbeTimeoutTooLong { timeout: Duration, interval: Duration },
    /// A budget is outside what the wire format supports.
    #[error("config field `{field}` is {value} bytes; it must be between {min} and {max}")]
    Budget { field: &'static str, value: usize, min: usize, max: usize },
    /// A coordinate parameter is out of range.
    #[error(transparent)]
    Coordinate(#[from] CoordinateConfigError),
}

impl Config {
    /// Smallest datagram budget: one Alive update with the largest metadata
    /// plus headers must fit.
    pub const MIN_DATAGRAM_BUDGET: usize = 1_024;
    /// Largest message of any kind; the decoder refuses anything longer.
    pub const MAX_MESSAGE_LEN: usize = 1 << 20;

    /// A local network: memberlist's `DefaultLANConfig`.
    pub fn lan() -> Config {
        Config {
            cluster_id: 0,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            retransmit_mult: 4,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            suspicion_confirmations: 2,
            suspicion_floor: Duration::ZERO,
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            gossip_to_the_dead: Duration::from_secs(30),
            push_pull_interval: Duration::from_secs(30),
            reconnect_interval: Duration::from_secs(10),
            dead_retention: Duration::from_secs(24 * 3600),
            max_local_health: 8,
            datagram_budget: 1_400,
            sync_budget: 32 * 1_024,
            sync_max_rounds: 16,
            coordinate: CoordinateConfig::shoal(),
        }
    }

    /// Links across sites: memberlist's `DefaultWANConfig`.
    pub fn wan() -> Config {
        Config {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            suspicion_mult: 6,
            suspicion_confirmations: 4,
            gossip_interval: Duration::from_millis(500),
            gossip_fanout: 4,
            gossip_to_the_dead: Duration::from_secs(60),
            push_pull_interval: Duration::from_secs(60),
            reconnect_interval: Duration::from_secs(30),
            ..Config::lan()
        }
    }

    /// A LAN of up to a few hundred members where a crash should be known
    /// in about half the time `lan` (and Serf) take at N = 50 to 100, for no
    /// more idle bytes than Serf spends: a 750 ms period (4/3 of `lan`'s
    /// probe traffic), α = 2 with one confirmation awaited (a lone
    /// suspecter waits 6 times longer) and a suspicion floor of 2.75 s.
    /// The floor is what keeps a 3 s pause alive: the paused member is first suspected at least one period
    /// (0.75 s) after it stops, so it is Dead no sooner than 3.5 s after, by
    /// which time it has resumed and answered the suspecter's buffered ping
    /// with its refutation (ALGORITHM.md, section 10).
    pub fn fast() -> Config {
        Config {
            probe_interval: Duration::from_millis(750),
            probe_timeout: Duration::from_millis(375),
            suspicion_mult: 2,
            suspicion_confirmations: 1,
            suspicion_floor: Duration::from_millis(2_750),
            ..Config::lan()
        }
    }

    /// Loopback, one machine: memberlist's `DefaultLocalConfig`, fast enough
    /// for tests with real processes.
    pub fn local() -> Config {
        Config {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(200),
            indirect_checks: 1,
            retransmit_mult: 2,
            suspicion_mult: 3,
            suspicion_confirmations: 1,
            gossip_interval: Duration::from_millis(100),
            gossip_to_the_dead: Duration::from_secs(15),
            push_pull_interval: Duration::from_secs(15),
            reconnect_interval: Duration::from_secs(5),
            ..Config::lan()
        }
    }

    /// The (shortest, longest) suspicion timeout among `live_members`
    /// (ALGORITHM.md, section 2).
    pub fn suspicion_bounds(&self, live_members: usize) -> (Duration, Duration) {
        let min = self.lifeguard_min(live_members).max(self.suspicion_floor);
        (min, min.saturating_mul(self.suspicion_max_timeout_mult))
    }

    /// The same bounds without `suspicion_floor`, for a member whose process
    /// is known to be gone (the floor is there to outlast a paused one).
    pub fn suspicion_bounds_without_floor(&self, live_members: usize) -> (Duration, Duration) {
        let min = self.lifeguard_min(live_members);
        (min, min.saturating_mul(self.suspicion_max_timeout_mult))
    }

    /// Lifeguard's shortest suspicion: `suspicion_mult · max(1, log10 N) · T`.
    fn lifeguard_min(&self, live_members: usize) -> Duration {
        #[allow(clippy::cast_precision_loss)]
        let node_scale = (live_members.max(1) as f64).log10().max(1.0);
        self.probe_interval.mul_f64(f64::from(self.suspicion_mult) * node_scale)
    }

    /// Checks every field, returning the config unchanged if all are in range.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let positive_durations = [
            ("probe_interval", self.probe_interval),
            ("probe_timeout", self.probe_timeout),
            ("gossip_interval", self.gossip_interval),
            ("push_pull_interval", self.push_pull_interval),
            ("reconnect_interval", self.reconnect_interval),
            ("dead_retention", self.dead_retention),
        ];
        for (field, value) in positive_durations {
            if value.is_zero() {
                return Err(ConfigError::Zero { field });
            }
        }
        let positive_counts = [
            ("retransmit_mult", self.retransmit_mult),
            ("suspicion_mult", self.suspicion_mult),
            ("suspicion_max_timeout_mult", self.suspicion_max_timeout_mult),
            ("sync_max_rounds", u32::from(self.sync_max_rounds)),
        ];
        for (field, value) in positive_counts {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        if self.gossip_fanout == 0 {
            return Err(ConfigError::Zero { field: "gossip_fanout" });
        }
        if self.probe_timeout >= self.probe_interval {
            return Err(ConfigError::ProbeTimeoutTooLong {
                timeout: self.probe_timeout,
                interval: self.probe_interval,
            });
        }
        for (field, value) in [("datagram_budget", self.datagram_budget), ("sync_budget", self.sync_budget)] {
            if !(Self::MIN_DATAGRAM_BUDGET..=Self::MAX_MESSAGE_LEN).contains(&value) {
                return Err(ConfigError::Budget {
                    field,
                    value,
                    min: Self::MIN_DATAGRAM_BUDGET,
                    max: Self::MAX_MESSAGE_LEN,
                });
            }
        }
        self.coordinate.validate()?;
        Ok(self)
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::lan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for config in [Config::lan(), Config::wan(), Config::local()] {
            assert_eq!(config.clone().validate(), Ok(config));
        }
    }

    #[test]
    fn validate_names_the_bad_field() {
        let config = Config { gossip_fanout: 0, ..Config::lan() };
        assert_eq!(config.validate(), Err(ConfigError::Zero { field: "gossip_fanout" }));

        let config = Config { probe_timeout: Duration::from_secs(2), ..Config::lan() };
        assert!(matches!(config.validate(), Err(ConfigError::ProbeTimeoutTooLong { .. })));

        let config = Config { datagram_budget: 100, ..Config::lan() };
        assert!(matches!(config.validate(), Err(ConfigError::Budget { field: "datagram_budget", .. })));
    }
}
