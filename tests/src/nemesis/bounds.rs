//! How long each check may take after a heal, derived from the protocol's
//! timing (the `local` profile's [`Config`]) and the agent's, not picked by
//! hand. The formulas are in the module doc of [`super`]; [`Bounds::describe`]
//! prints them with the numbers.

use std::time::Duration;

use shoal_protocol::{Config, WorkloadConfig};

/// The agent retries a join with backoff doubling up to this
/// (`node/src/agent.rs`, `JOIN_BACKOFF_MAX`): a restarted agent whose seed was
/// unreachable tries again at most this long after the heal.
const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Downs remembered per member for its settle time (`protocol`, `MAX_DOWNS`):
/// the settle time doubles at most this many times.
const MAX_DOWNS: u32 = 6;
/// For the harness itself: polling, a 2-core machine running 7 agents, a
/// start of the agent process, a replica's start.
const SLACK: Duration = Duration::from_secs(10);

/// The bounds of one run.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// The longest a suspicion lasts (no confirmations).
    pub suspicion_max: Duration,
    /// Every running agent lists every running agent alive, after the heal.
    pub membership: Duration,
    /// Every running agent's catalog holds exactly the expected workloads.
    pub catalog: Duration,
    /// The settle time before any doubling.
    pub settle: Duration,
    /// What `copies` adds to `membership` besides the settle time.
    pub handover_and_stop: Duration,
    /// A leaving agent's replicas are gone this long after its SIGTERM.
    pub leave: Duration,
    /// Downs within this long count towards a member's settle time.
    pub flap_window: Duration,
}

impl Bounds {
    /// The bounds for `agents` agents running `config` and `workloads`, whose replicas get
    /// `stop_grace` between SIGTERM and SIGKILL and whose leave is gossiped
    /// for at most `leave_timeout`.
    pub fn new(
        config: &Config,
        workloads: &WorkloadConfig,
        agents: usize,
        stop_grace: Duration,
        leave_timeout: Duration,
    ) -> Bounds {
        let (_, suspicion_max) = config.suspicion_bounds(agents);
        // The two sides find each other through the reconnect tick (a random
        // Dead member each interval: two intervals make it likely for the
        // few members a 7-agent lab has dead), a restarted agent through its
        // join backoff, and whatever a stale suspicion needs to run out or
        // be refuted; one push-pull exchange repairs what gossip missed.
        let membership =
            suspicion_max + config.reconnect_interval * 2 + config.push_pull_interval + JOIN_BACKOFF_MAX + SLACK;
        Bounds {
            suspicion_max,
            membership,
            // Catalog entries written on one side reach the other by
            // anti-entropy: one more push-pull after the mesh is whole.
            catalog: membership + config.push_pull_interval,
            settle: workloads.settle_time,
            // Make-before-break waits for the new owner's Running or the
            // handover grace; the old copy then gets the stop grace.
            handover_and_stop: workloads.handover_grace + stop_grace + SLACK,
            leave: leave_timeout + stop_grace + Duration::from_secs(2) + SLACK,
            flap_window: workloads.flap_window,
        }
    }

    /// The settle time of a member that went down `downs` times in the last
    /// `flap_window`: doubled per down, at most 2^6 times.
    pub fn settle_after(&self, downs: usize) -> Duration {
        let doublings = u32::try_from(downs).unwrap_or(u32::MAX).min(MAX_DOWNS);
        self.settle * (1u32 << doublings)
    }

    /// Exactly the requested copies run, each on a distinct agent in the
    /// mesh, when the agents involved went down at most `downs` times in
    /// the last `flap_window`: the mesh has re-formed, the returning members
    /// have settled in every view (until then each side keeps the copies it
    /// started while they were gone), and the surplus copies were handed
    /// over and stopped.
    pub fn copies(&self, downs: usize) -> Duration {
        self.membership + self.settle_after(downs) + self.handover_and_stop
    }

    /// The formulas with their numbers, for the run's header.
    pub fn describe(&self) -> String {
        format!(
            "bounds after each heal: membership {:.0} s (suspicion max {:.0} s + 2 reconnect + push-pull + join \
             backoff + slack); catalog {:.0} s (membership + push-pull); exactly-R {:.0} s + settle {:.0} s x 2^downs \
             (at most 2^{MAX_DOWNS}: {:.0} s) + {:.0} s (handover grace + stop grace + slack); leave: copies gone \
             {:.0} s after SIGTERM",
            self.membership.as_secs_f64(),
            self.suspicion_max.as_secs_f64(),
            self.catalog.as_secs_f64(),
            self.membership.as_secs_f64(),
            self.settle.as_secs_f64(),
            self.settle_after(usize::MAX).as_secs_f64(),
            self.handover_and_stop.as_secs_f64(),
            self.leave.as_secs_f64(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_bounds_at_seven_agents() {
        let b =
            Bounds::new(&Config::local(), &WorkloadConfig::local(), 7, Duration::from_secs(10), Duration::from_secs(3));
        assert_eq!(b.suspicion_max, Duration::from_secs(18));
        assert_eq!(b.membership, Duration::from_secs(18 + 10 + 15 + 10 + 10));
        assert_eq!(b.settle_after(0), Duration::from_secs(2));
        assert_eq!(b.settle_after(3), Duration::from_secs(16));
        assert_eq!(b.settle_after(40), Duration::from_secs(128));
        assert_eq!(b.copies(0), Duration::from_secs(63 + 2 + 30));
    }
}
