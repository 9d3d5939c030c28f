//! Workloads in the simulator: each Shoal node carries a stand-in driver that
//! does what the node's plan says, as the real agent's supervisor would, and
//! reports the replicas back to the protocol. A replica takes the scenario's
//! `start_time` to go from Starting to Running; a crash or restart loses
//! every replica the node ran.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_protocol::{Instant, Membership, ReplicaKey, ReplicaState, ReplicaStatus, WorkloadSpec};

use crate::scenario::WorkloadLoad;

/// What one node's driver runs: replica → Starting or Running.
pub type Replicas = BTreeMap<ReplicaKey, ReplicaState>;

/// How often the driver asks for a plan, as the agent does.
const TICK: Duration = Duration::from_millis(500);

/// One node's stand-in driver.
#[derive(Debug)]
pub struct WorkloadDriver {
    /// Still to submit (node 0's first run only), and when.
    to_submit: Vec<WorkloadSpec>,
    submit_at: Instant,
    start_time: Duration,
    next_tick: Instant,
    started: BTreeMap<ReplicaKey, Instant>,
    replicas: Replicas,
}

impl WorkloadDriver {
    /// A driver for `load`; `submits` makes this the node that submits it.
    pub fn new(load: &WorkloadLoad, submits: bool, now: Instant) -> WorkloadDriver {
        WorkloadDriver {
            to_submit: if submits { load.specs() } else { Vec::new() },
            submit_at: Instant::from_micros(load.submit_at.micros()),
            start_time: load.start_time.0,
            next_tick: now + TICK,
            started: BTreeMap::new(),
            replicas: Replicas::new(),
        }
    }

    /// When the driver next wants to run.
    pub fn next_tick(&self) -> Instant {
        self.next_tick
    }

    /// What it runs now.
    pub fn replicas(&self) -> &Replicas {
        &self.replicas
    }

    /// Submits when due, then starts and stops replicas per the plan and
    /// reports them.
    pub fn on_timeout(&mut self, membership: &mut Membership, now: Instant) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        if !self.to_submit.is_empty() && now >= self.submit_at {
            for spec in self.to_submit.drain(..) {
                // Specs are generated valid; a refusal would show up as a
                // missing workload in the checks.
                let _ = membership.submit(now, spec);
            }
        }
        let plan = membership.plan(now);
        for duty in plan.run {
            self.started.entry(duty.key()).or_insert(now);
        }
        for key in plan.stop {
            self.started.remove(&key);
        }
        let start_time = self.start_time;
        self.replicas = self
            .started
            .iter()
            .map(|(key, since)| {
                let up = now.saturating_since(*since) >= start_time;
                (key.clone(), if up { ReplicaState::Running } else { ReplicaState::Starting })
            })
            .collect();
        let report =
            self.replicas.iter().map(|(key, state)| ReplicaStatus::new(key.workload.clone(), key.replica, *state));
        membership.report_replicas(now, report.collect::<Vec<_>>());
    }
}
