//! Workloads end to end on the harness: every node plans from its own view,
//! an instant driver runs what the plan says, and the tests check where
//! replicas run through crashes, joins, suspicion, flaps and deletes.

// Tests report their timings, as the scenario tests do.
#![allow(clippy::print_stderr)]

use std::time::Duration;

use super::Workloads;
use crate::harness::{Cluster, id};
use crate::{Config, ReplicaState, WorkloadConfig};

const SEED: u64 = 0x5ca1ab1e;
const STEP: Duration = Duration::from_millis(100);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn web(replicas: u32) -> crate::WorkloadSpec {
    crate::workload::tests::spec("web", replicas)
}

/// A cluster of `n` with workloads driven, joined and settled.
fn settled_cluster(n: usize) -> Cluster {
    let mut cluster = Cluster::new(n, Config::lan(), SEED);
    cluster.drive_workloads = true;
    cluster.join_all_via(0);
    cluster.run_until_true(STEP, secs(30), Cluster::converged).expect("joins");
    cluster
}

/// Every replica of `web` runs on exactly one node, and there are `replicas`.
fn exactly_once(cluster: &Cluster, replicas: u16) -> bool {
    let copies = cluster.copies();
    copies.len() == usize::from(replicas)
        && copies.iter().all(|(key, nodes)| key.workload == "web" && key.replica < replicas && nodes.len() == 1)
}

#[test]
fn each_replica_runs_on_exactly_one_node_and_every_node_agrees_where() {
    let mut cluster = settled_cluster(6);
    cluster.submit(2, web(3));
    let took = cluster.run_until_true(STEP, secs(30), |c| exactly_once(c, 3)).expect("placed");
    eprintln!("3 replicas running once each after {took:?}");
    let mut placements = (0..6).map(|i| cluster.nodes[i].as_mut().map(|n| n.workloads().placement()));
    let first = placements.next().flatten().expect("node 0 runs");
    assert!(placements.all(|p| p.as_deref() == Some(&*first)), "every node computes the same placement");
    // Every node knows where each replica runs, from the gossiped statuses.
    cluster.run_until_true(STEP, secs(3), |_| false);
    for i in 0..6 {
        let running =
            cluster.workloads(i).replica_statuses().filter(|e| e.status.state == ReplicaState::Running).count();
        assert_eq!(running, 3, "node {i} sees all three replicas running");
    }
}

#[test]
fn a_crashed_owners_replica_moves_and_nothing_else_does() {
    let mut cluster = settled_cluster(6);
    cluster.submit(0, web(3));
    cluster.run_until_true(STEP, secs(30), |c| exactly_once(c, 3)).expect("placed");
    let before = cluster.copies();
    let victim = before.values().next().and_then(|nodes| nodes.first().copied()).expect("a replica");
    let victim = if victim == 0 { before.values().nth(1).map_or(1, |n| n[0]) } else { victim };
    cluster.crash(victim);
    let took = cluster.run_until_true(STEP, secs(60), |c| exactly_once(c, 3)).expect("the replica moves");
    eprintln!("crashed owner's replica running elsewhere after {took:?}");
    let after = cluster.copies();
    let moved = before.iter().filter(|(key, nodes)| after.get(*key) != Some(*nodes)).count();
    assert_eq!(moved, 1, "only the crashed node's replica moved: before {before:?}, after {after:?}");
}

#[test]
fn a_suspect_keeps_its_work() {
    let mut cluster = settled_cluster(6);
    cluster.submit(0, web(5));
    cluster.run_until_true(STEP, secs(30), |c| exactly_once(c, 5)).expect("placed");
    let before = cluster.copies();
    let (starts, stops) = (cluster.starts, cluster.stops);
    // Cut off for less than the suspicion timeout (4 s) by more than the
    // time it takes the suspect to hear of it after the heal (its next
    // probe by a peer, about a period): suspected, never Dead.
    let others: Vec<usize> = (1..6).collect();
    cluster.partition(&[0], &others);
    cluster.run_until_true(STEP, secs(3), |_| false);
    cluster.heal();
    cluster.run_until_true(STEP, secs(20), |_| false);
    let suspected =
        cluster.events.iter().any(|(_, _, e)| matches!(e, crate::Event::MemberSuspect { id: s } if *s == id(0)));
    assert!(suspected, "the cut-off node was suspected");
    assert_eq!(cluster.copies(), before, "no replica moved");
    assert_eq!((cluster.starts, cluster.stops), (starts, stops), "nothing started or stopped");
}

/// Every replica of every workload runs on exactly one node, `total` in all.
fn all_once(cluster: &Cluster, total: usize) -> bool {
    let copies = cluster.copies();
    copies.len() == total && copies.values().all(|nodes| nodes.len() == 1)
}

#[test]
fn a_new_node_takes_work_only_after_settling_and_the_old_owner_stops_after_the_handover() {
    let mut cluster = Cluster::new(6, Config::lan(), SEED);
    cluster.drive_workloads = true;
    cluster.crash(5);
    cluster.join_all_via(0);
    cluster.run_until_true(STEP, secs(30), Cluster::converged).expect("joins");
    for w in 0..6 {
        cluster.submit(0, crate::workload::tests::spec(&format!("w{w}"), 2));
    }
    cluster.run_until_true(STEP, secs(30), |c| all_once(c, 12) && c.serving() == 12).expect("placed");
    cluster.run_for(secs(15));
    let before = cluster.copies();
    cluster.restart(5, 1, 0);
    cluster.run_until_true(STEP, secs(10), Cluster::converged).expect("the newcomer joins");
    let joined_at = cluster.now;
    // While it settles, it runs nothing, and every replica keeps running.
    let settle = WorkloadConfig::lan().settle_time;
    let never_down = std::cell::Cell::new(true);
    while cluster.now.saturating_since(joined_at) < settle.saturating_sub(secs(2)) {
        cluster.run_until_true(STEP, STEP, |_| false);
        assert!(cluster.running[5].is_empty(), "the newcomer took work before settling");
        never_down.set(never_down.get() && cluster.serving() == 12);
    }
    // Then it takes its share; each moved replica starts there before the
    // old copy stops.
    let took = cluster
        .run_until_true(STEP, secs(30), |c| {
            never_down.set(never_down.get() && c.serving() == 12);
            !c.running[5].is_empty() && all_once(c, 12)
        })
        .expect("the newcomer gets work and handovers finish");
    assert!(never_down.get(), "a replica stopped before its new owner ran it");
    eprintln!("newcomer runs {} of 12 replicas; handovers done {took:?} after settling", cluster.running[5].len());
    // Its fair share (12 over 6 equal nodes: 2), no more, and nothing else
    // moved: placement keeps every other replica where it runs.
    assert_eq!(cluster.running[5].len(), 2);
    let after = cluster.copies();
    let moved: Vec<&crate::ReplicaKey> = before.keys().filter(|key| after.get(*key) != before.get(*key)).collect();
    assert_eq!(moved.len(), 2, "only the newcomer's share moved: before {before:?}, after {after:?}");
    assert!(moved.iter().all(|key| after[*key] == [5]));
}

#[test]
fn deleting_a_workload_stops_every_copy() {
    let mut cluster = settled_cluster(5);
    cluster.submit(0, web(4));
    cluster.run_until_true(STEP, secs(30), |c| exactly_once(c, 4)).expect("placed");
    cluster.delete(3, "web");
    cluster.run_until_true(STEP, secs(10), |c| c.copies().is_empty()).expect("every copy stops");
}

#[test]
fn a_flapping_member_waits_longer_each_time() {
    let cluster = settled_cluster(4);
    let members = cluster.node(0).member_table();
    let mut node = Workloads::new(WorkloadConfig::lan(), id(0), 1).expect("valid");
    let base = node.config.settle_time;
    assert_eq!(node.settle_time_of(id(3), cluster.now), base);
    // (Node 3 is live in this table, so each down is noted at its own time.)
    let second = cluster.now + Duration::from_secs(1);
    node.note_member_down(id(3), cluster.now, members);
    node.note_member_down(id(3), second, members);
    assert_eq!(node.settle_time_of(id(3), second), base * 4, "two recent downs: four times as long");
    let later = second + node.config.flap_window;
    assert_eq!(node.settle_time_of(id(3), later), base, "downs outside the window are forgiven");
}

#[test]
fn a_late_joiner_learns_where_every_replica_runs_by_anti_entropy() {
    let mut cluster = Cluster::new(6, Config::lan(), SEED);
    cluster.drive_workloads = true;
    cluster.crash(5);
    cluster.join_all_via(0);
    cluster.submit(1, web(4));
    cluster.run_until_true(STEP, secs(30), |c| exactly_once(c, 4) && c.serving() == 4).expect("placed");
    // Long after the status gossip has died down, a new node joins.
    cluster.run_until_true(STEP, secs(60), |_| false);
    cluster.restart(5, 1, 0);
    let running = |c: &Cluster| {
        c.workloads(5).replica_statuses().filter(|e| e.status.state == ReplicaState::Running && e.node != id(5)).count()
    };
    let took = cluster.run_until_true(STEP, secs(10), |c| running(c) == 4).expect("the newcomer learns the statuses");
    eprintln!("newcomer knows where all 4 replicas run after {took:?}");
}
