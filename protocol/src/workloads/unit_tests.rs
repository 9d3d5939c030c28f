//! The workload layer on one hand-driven node: the exact events and plans
//! each input produces, and the workload timer that makes polling needless
//! (as `unit_tests.rs` asserts exact messages and timers for membership).

use std::time::Duration;

use super::{WorkloadConfig, WorkloadEvent};
use crate::harness::{id, identity};
use crate::{Config, Instant, Node, ReplicaKey, ReplicaState, ReplicaStatus};

const SEED: u64 = 0x0b5e55ed;

fn web(replicas: u32) -> crate::WorkloadSpec {
    crate::workload::tests::spec("web", replicas)
}

fn at(secs: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(secs)
}

fn key(replica: u16) -> ReplicaKey {
    ReplicaKey::new("web", replica)
}

/// A lone node, with `lan` timing (10 s settle, 30 s handover grace).
fn node() -> Node {
    Node::new(Config::lan(), WorkloadConfig::lan(), identity(0, 1), SEED, Instant::ZERO).expect("valid")
}

fn events(node: &mut Node) -> Vec<WorkloadEvent> {
    std::iter::from_fn(|| node.poll_workload_event()).collect()
}

fn run(node: &Node) -> Vec<ReplicaKey> {
    node.workloads().plan().run.iter().map(crate::Duty::key).collect()
}

#[test]
fn a_submit_before_settling_waits_for_the_settle_timer_then_starts_the_replica() {
    let mut node = node();
    assert_eq!(events(&mut node), [], "an empty catalog computes nothing");
    node.submit(at(1), web(1)).expect("valid");
    assert_eq!(
        events(&mut node),
        [WorkloadEvent::WorkloadWritten { name: "web".into() }, WorkloadEvent::PlacementChanged],
        "placed nowhere yet: this node has not settled"
    );
    assert!(run(&node).is_empty());
    assert!(node.workloads().placement().unplaced.contains_key("web"));
    // The workload timer is armed for the moment this node settles.
    let settles = at(10);
    assert!(node.poll_timeout().is_some_and(|t| t <= settles));
    while let Some(now) = node.poll_timeout().filter(|t| *t < settles) {
        node.handle_timeout(now);
        assert_eq!(events(&mut node), [], "nothing changes before {settles} ({now})");
    }
    node.handle_timeout(settles);
    assert_eq!(
        events(&mut node),
        [WorkloadEvent::PlacementChanged, WorkloadEvent::ReplicaStart { replica: key(0) }, WorkloadEvent::PlanSettled]
    );
    assert_eq!(run(&node), [key(0)]);
    assert_eq!(node.workloads().placement().owner("web", 0), Some(id(0)));
}

#[test]
fn reports_shrinks_and_deletes_produce_exact_events_and_plans() {
    let mut node = node();
    node.handle_timeout(at(10));
    node.submit(at(11), web(1)).expect("valid");
    assert_eq!(
        events(&mut node),
        [
            WorkloadEvent::WorkloadWritten { name: "web".into() },
            WorkloadEvent::PlacementChanged,
            WorkloadEvent::ReplicaStart { replica: key(0) },
            WorkloadEvent::PlanSettled,
        ]
    );
    assert_eq!(run(&node), [key(0)]);

    let running = ReplicaStatus::new("web", 0, ReplicaState::Running);
    node.report_replicas(at(12), [running.clone()]);
    assert_eq!(events(&mut node), [WorkloadEvent::ReplicaStateChanged { node: id(0), replica: key(0) }]);
    node.report_replicas(at(13), [running]);
    assert_eq!(events(&mut node), [], "the same report again changes nothing");

    // Shrunk to no replica: it stops at once (no handover to wait for).
    node.submit(at(14), web(0)).expect("valid");
    assert_eq!(
        events(&mut node),
        [
            WorkloadEvent::WorkloadWritten { name: "web".into() },
            WorkloadEvent::PlacementChanged,
            WorkloadEvent::ReplicaStop { replica: key(0) },
        ]
    );
    assert!(run(&node).is_empty());
    assert_eq!(node.workloads().plan().stop, [key(0)]);
    node.report_replicas(at(15), []);
    assert_eq!(events(&mut node), [WorkloadEvent::ReplicaStateChanged { node: id(0), replica: key(0) }]);
    assert!(node.workloads().plan().stop.is_empty(), "stopped, so nothing left to stop");

    node.delete_workload(at(16), "web");
    assert_eq!(
        events(&mut node),
        [WorkloadEvent::WorkloadDeleted { name: "web".into() }, WorkloadEvent::PlacementChanged]
    );
    assert_eq!(*node.workloads().plan(), crate::Plan { settled: true, ..crate::Plan::default() });
}
