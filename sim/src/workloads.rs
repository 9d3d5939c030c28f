//! Workloads in the simulator: each Shoal node carries a stand-in driver that
//! does what the node's plan says, as the real agent's supervisor would, and
//! reports the replicas back to the protocol, when the protocol says the
//! plan changed. A replica takes the scenario's
//! `start_time` to go from Starting to Running; a crash or restart loses
//! every replica the node ran.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_protocol::{Instant, Node, ReplicaKey, ReplicaState, ReplicaStatus, WorkloadEvent, WorkloadSpec};

use crate::scenario::WorkloadLoad;

/// What one node's driver runs: replica → Starting or Running.
pub type Replicas = BTreeMap<ReplicaKey, ReplicaState>;

/// One node's stand-in driver. It wakes only when the protocol announces a
/// change to its plan, when the workloads are due to be submitted, or when
/// a replica it started is due to be Running: it never polls.
#[derive(Debug)]
pub struct WorkloadDriver {
    /// Still to submit (node 0's first run only), and when.
    to_submit: Vec<WorkloadSpec>,
    submit_at: Instant,
    start_time: Duration,
    started: BTreeMap<ReplicaKey, Instant>,
    replicas: Replicas,
}

/// Rounds of plan, report, plan within one input: a report can change
/// the plan (a replica this node now reports is one it keeps).
const MAX_ROUNDS: usize = 4;

impl WorkloadDriver {
    /// A driver for `load`; `submits` makes this the node that submits it.
    pub fn new(load: &WorkloadLoad, submits: bool) -> WorkloadDriver {
        WorkloadDriver {
            to_submit: if submits { load.specs() } else { Vec::new() },
            submit_at: Instant::from_micros(load.submit_at.micros()),
            start_time: load.start_time.0,
            started: BTreeMap::new(),
            replicas: Replicas::new(),
        }
    }

    /// When the driver next wants to run with no input: the submission, or
    /// a Starting replica becoming Running.
    pub fn next_tick(&self) -> Option<Instant> {
        let submit = (!self.to_submit.is_empty()).then_some(self.submit_at);
        let starting = self
            .started
            .iter()
            .filter(|(key, _)| self.replicas.get(*key) != Some(&ReplicaState::Running))
            .map(|(_, since)| *since + self.start_time);
        submit.into_iter().chain(starting).min()
    }

    /// What it runs now.
    pub fn replicas(&self) -> &Replicas {
        &self.replicas
    }

    /// After every input to the node: submits when due, and follows the
    /// plan when the protocol announced a change or a replica finished
    /// starting, reporting what runs.
    pub fn step(&mut self, node: &mut Node, now: Instant) {
        let mut changed = false;
        if !self.to_submit.is_empty() && now >= self.submit_at {
            for spec in self.to_submit.drain(..) {
                // Specs are generated valid; a refusal would show up as a
                // missing workload in the checks.
                let _ = node.submit(now, spec);
            }
        }
        for _ in 0..MAX_ROUNDS {
            while let Some(event) = node.poll_workload_event() {
                changed |= matches!(event, WorkloadEvent::ReplicaStart { .. } | WorkloadEvent::ReplicaStop { .. });
            }
            let up = self.next_tick().is_some_and(|at| at <= now);
            if !changed && !up {
                return;
            }
            changed = false;
            self.follow(node, now);
        }
    }

    fn follow(&mut self, node: &mut Node, now: Instant) {
        let plan = node.workloads().plan();
        for duty in &plan.run {
            self.started.entry(duty.key()).or_insert(now);
        }
        for key in &plan.stop {
            self.started.remove(key);
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
        node.report_replicas(now, report.collect::<Vec<_>>());
    }
}
