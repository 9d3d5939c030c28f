//! The workload layer's tuning, apart from the membership layer's
//! ([`crate::Config`]): when members take work, how long handovers and
//! tombstones last, and placement's parameters.

use std::time::Duration;

use crate::ConfigError;
use crate::placement::PlacementConfig;

/// Tuning for one [`crate::Workloads`] instance. Build one from a preset
/// (the same names as [`crate::Config`]'s), adjust fields, then
/// [`WorkloadConfig::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Deleted workloads' tombstones are forgotten after this. A node cut off
    /// for longer may bring a deleted workload back when it returns.
    pub tombstone_retention: Duration,
    /// A member that becomes Alive (first seen, or back from Dead or Left)
    /// receives work only after this long, doubled for each time it went down
    /// in the last `flap_window`: a flapping member does not drag work back
    /// and forth. Suspect members keep their work.
    pub settle_time: Duration,
    /// Downs within this long count towards a member's settle time.
    pub flap_window: Duration,
    /// A node keeps running a replica it no longer owns until the new owner
    /// reports it running (make-before-break), or for at most this long.
    pub handover_grace: Duration,
    /// Stopped replicas' status tombstones are forgotten after this.
    pub status_retention: Duration,
    /// Placement's load slack ε, in thousandths: no node gets more than
    /// `(1 + ε)` times its capacity-weighted share of replicas (100 is
    /// ε = 0.10; ALGORITHM.md section 13). At least 1. Every node must use
    /// the same value, or their placements differ.
    pub placement_slack_permille: u32,
    /// Placement's ring tokens per core of CPU capacity: more smooths the
    /// arcs and costs memory (10; at least 1). Every node must use the same.
    pub placement_tokens_per_core: u32,
}

impl WorkloadConfig {
    /// A local network (goes with [`crate::Config::lan`] and
    /// [`crate::Config::fast`]).
    pub fn lan() -> WorkloadConfig {
        WorkloadConfig {
            tombstone_retention: Duration::from_secs(7 * 24 * 3600),
            settle_time: Duration::from_secs(10),
            flap_window: Duration::from_secs(3600),
            handover_grace: Duration::from_secs(30),
            status_retention: Duration::from_secs(300),
            placement_slack_permille: 100,
            placement_tokens_per_core: 10,
        }
    }

    /// Links across sites (goes with [`crate::Config::wan`]): slower to
    /// trust a member, slower to give up a handover.
    pub fn wan() -> WorkloadConfig {
        WorkloadConfig {
            settle_time: Duration::from_secs(30),
            handover_grace: Duration::from_secs(60),
            ..WorkloadConfig::lan()
        }
    }

    /// Loopback, one machine (goes with [`crate::Config::local`]): fast
    /// enough for tests with real processes.
    pub fn local() -> WorkloadConfig {
        WorkloadConfig {
            settle_time: Duration::from_secs(2),
            handover_grace: Duration::from_secs(10),
            ..WorkloadConfig::lan()
        }
    }

    /// Placement's parameters.
    pub fn placement(&self) -> PlacementConfig {
        PlacementConfig {
            epsilon: f64::from(self.placement_slack_permille) / 1_000.0,
            tokens_per_core: self.placement_tokens_per_core,
        }
    }

    /// Checks every field, returning the config unchanged if all are in range.
    pub fn validate(self) -> Result<WorkloadConfig, ConfigError> {
        let positive_durations = [
            ("tombstone_retention", self.tombstone_retention),
            ("handover_grace", self.handover_grace),
            ("status_retention", self.status_retention),
        ];
        for (field, value) in positive_durations {
            if value.is_zero() {
                return Err(ConfigError::Zero { field });
            }
        }
        let positive_counts = [
            ("placement_slack_permille", self.placement_slack_permille),
            ("placement_tokens_per_core", self.placement_tokens_per_core),
        ];
        for (field, value) in positive_counts {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        Ok(self)
    }
}

impl Default for WorkloadConfig {
    fn default() -> WorkloadConfig {
        WorkloadConfig::lan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for config in [WorkloadConfig::lan(), WorkloadConfig::wan(), WorkloadConfig::local()] {
            assert_eq!(config.clone().validate(), Ok(config));
        }
    }

    #[test]
    fn validate_names_the_bad_field() {
        let config = WorkloadConfig { placement_slack_permille: 0, ..WorkloadConfig::lan() };
        assert_eq!(config.validate(), Err(ConfigError::Zero { field: "placement_slack_permille" }));
        let config = WorkloadConfig { handover_grace: Duration::ZERO, ..WorkloadConfig::lan() };
        assert_eq!(config.validate(), Err(ConfigError::Zero { field: "handover_grace" }));
    }
}
