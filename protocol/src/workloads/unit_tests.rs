//! The workload layer on one hand-driven node: the exact events and plans
//! each input produces, and the workload timer that makes polling needless
//! (as `unit_tests.rs` asserts exact messages and timers for membership).

use std::time::Duration;

use std::sync::Arc;

use super::{WorkloadConfig, WorkloadEvent, Workloads};
use crate::harness::{id, identity};
use crate::member::MemberTable;
use crate::membership::Replicated;
use crate::table::Applied;
use crate::wire::Update;
use crate::{
    CatalogEntry, Config, Event, Instant, Member, Node, ReplicaKey, ReplicaState, ReplicaStatus, Stamp, State,
    StatusEntry,
};

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

// ---- the layer alone: a hand-made member table, no network ----

/// A member table holding this node (0) and `peers`, all Alive since time
/// zero at generation 1.
fn members(peers: &[usize]) -> MemberTable {
    let mut table = MemberTable::default();
    for index in std::iter::once(0).chain(peers.iter().copied()) {
        table.upsert(alive(index, 1, Instant::ZERO));
    }
    table
}

fn alive(index: usize, generation: u64, since: Instant) -> Member {
    Member {
        id: id(index),
        generation,
        incarnation: 0,
        state: State::Alive,
        meta: Arc::new(identity(index, generation).meta),
        state_since: since,
    }
}

fn fresh() -> Workloads {
    Workloads::new(WorkloadConfig::lan(), id(0), 1).expect("valid")
}

fn layer_events(layer: &mut Workloads) -> Vec<WorkloadEvent> {
    std::iter::from_fn(|| layer.poll_event()).collect()
}

fn updates(layer: &mut Workloads) -> Vec<Update> {
    std::iter::from_fn(|| layer.poll_update()).collect()
}

fn status_from(node: usize, generation: u64, version: u64, replica: u16, state: ReplicaState) -> StatusEntry {
    StatusEntry { node: id(node), generation, version, status: ReplicaStatus::new("web", replica, state) }
}

#[test]
fn a_submit_is_queued_for_gossip_and_a_peers_entry_spreads_on_unless_anti_entropy_brought_it() {
    let table = members(&[1]);
    let mut layer = fresh();
    let entry = layer.submit(at(20), web(1), &table).expect("valid");
    assert_eq!(updates(&mut layer), [Update::Workload(entry.clone())], "a write here is gossiped");

    // A peer's newer write, by gossip: applied, announced, spread on.
    let mut other = fresh();
    let newer = CatalogEntry { stamp: Stamp { clock: entry.stamp.clock + 1, node: id(1) }, ..entry.clone() };
    assert_eq!(other.handle_update(at(21), &Update::Workload(newer.clone()), false, &table), Applied::New);
    assert_eq!(updates(&mut other), [Update::Workload(newer.clone())]);
    assert_eq!(layer_events(&mut other)[0], WorkloadEvent::WorkloadWritten { name: "web".into() });
    // The same entry by anti-entropy at a third node: a first sighting, not spread.
    let mut third = fresh();
    assert_eq!(third.handle_update(at(21), &Update::Workload(newer.clone()), true, &table), Applied::New);
    assert_eq!(updates(&mut third), [], "a joiner's whole catalog is not re-gossiped");
    // But a change it brings (newer than what we hold) is.
    let newest = CatalogEntry { stamp: Stamp { clock: newer.stamp.clock + 1, node: id(1) }, ..newer };
    assert_eq!(third.handle_update(at(22), &Update::Workload(newest.clone()), true, &table), Applied::Changed);
    assert_eq!(updates(&mut third), [Update::Workload(newest)]);
}

#[test]
fn a_status_is_accepted_only_from_a_live_member_in_the_generation_it_reports() {
    let table = members(&[1]);
    let mut layer = fresh();
    let running = status_from(1, 1, 1, 0, ReplicaState::Running);
    assert_eq!(layer.handle_update(at(1), &Update::Status(running.clone()), false, &table), Applied::New);
    assert_eq!(layer_events(&mut layer), [WorkloadEvent::ReplicaStateChanged { node: id(1), replica: key(0) }]);
    assert_eq!(updates(&mut layer), [Update::Status(running.clone())], "gossip spreads on");
    assert_eq!(layer.handle_update(at(1), &Update::Status(running), false, &table), Applied::Ignored);

    let from_next_run = status_from(1, 2, 1, 1, ReplicaState::Running);
    assert_eq!(layer.handle_update(at(2), &Update::Status(from_next_run), false, &table), Applied::Ignored);
    let from_stranger = status_from(7, 1, 1, 1, ReplicaState::Running);
    assert_eq!(layer.handle_update(at(2), &Update::Status(from_stranger), false, &table), Applied::Ignored);
    let about_me = status_from(0, 1, 99, 1, ReplicaState::Running);
    assert_eq!(
        layer.handle_update(at(2), &Update::Status(about_me), false, &table),
        Applied::Ignored,
        "this node is the only writer of its own statuses"
    );
    assert_eq!(layer_events(&mut layer), []);
    assert_eq!(updates(&mut layer), []);
}

#[test]
fn a_member_down_forgets_what_it_reported_and_its_replica_moves_here() {
    let mut table = members(&[1]);
    let mut layer = fresh();
    layer.handle_own_change(at(0), &table);
    layer.submit(at(20), web(1), &table).expect("valid");
    // Node 1 reports replica 0 running: the placement keeps it there.
    let running = status_from(1, 1, 1, 0, ReplicaState::Running);
    layer.handle_update(at(21), &Update::Status(running), false, &table);
    layer.handle_member_events(at(21), &[], &table);
    assert_eq!(layer.placement().owner("web", 0), Some(id(1)));
    assert!(layer.plan().run.is_empty());
    let _ = (layer_events(&mut layer), updates(&mut layer));

    // Node 1 is declared Dead.
    table.upsert(Member { state: State::Dead, state_since: at(30), ..alive(1, 1, Instant::ZERO) });
    layer.handle_member_events(at(30), &[Event::MemberDown { id: id(1) }], &table);
    assert_eq!(layer.replica_statuses().count(), 0, "a dead member's statuses are forgotten");
    assert_eq!(
        layer_events(&mut layer),
        [WorkloadEvent::PlacementChanged, WorkloadEvent::ReplicaStart { replica: key(0) }]
    );
    assert_eq!(layer.plan().run.iter().map(crate::Duty::key).collect::<Vec<_>>(), [key(0)]);
    assert_eq!(layer.settle_time_of(id(1), at(30)), WorkloadConfig::lan().settle_time * 2, "the down counts");

    // It comes back in a new run: it must settle (20 s, doubled) before it takes work.
    table.upsert(alive(1, 2, at(40)));
    layer.handle_member_events(at(40), &[Event::MemberUp { id: id(1) }], &table);
    assert_eq!(layer_events(&mut layer), [], "an unsettled member changes no placement");
    assert_eq!(layer.poll_timeout(), Some(at(60)), "the deadline is the moment it settles");
}

#[test]
fn a_replica_handed_over_is_released_then_stopped_when_the_new_owner_runs_it() {
    let mut table = members(&[]);
    let mut layer = fresh();
    layer.handle_own_change(at(10), &table);
    let api = || crate::workload::tests::spec("api", 1);
    layer.submit(at(10), web(1), &table).expect("valid");
    layer.submit(at(10), api(), &table).expect("valid");
    let both =
        [ReplicaStatus::new("api", 0, ReplicaState::Running), ReplicaStatus::new("web", 0, ReplicaState::Running)];
    layer.report_replicas(at(11), both, &table);
    let _ = (layer_events(&mut layer), updates(&mut layer));

    // A peer joins; once it settles (10 s) it takes its fair share: one replica.
    table.upsert(alive(1, 1, at(20)));
    layer.handle_member_events(at(20), &[Event::MemberUp { id: id(1) }], &table);
    assert_eq!(layer_events(&mut layer), [], "not before it settles");
    assert_eq!(layer.poll_timeout(), Some(at(30)));
    layer.handle_timeout(at(30), &table);
    let moved = if layer.placement().owner("web", 0) == Some(id(1)) {
        ReplicaKey::new("web", 0)
    } else {
        ReplicaKey::new("api", 0)
    };
    assert_eq!(layer.placement().on_node(id(1)).count(), 1, "its share, no more");
    assert_eq!(
        layer_events(&mut layer),
        [WorkloadEvent::ReplicaStateChanged { node: id(0), replica: moved.clone() }, WorkloadEvent::PlacementChanged,],
        "this node's copy turns Releasing"
    );
    assert!(layer.plan().stop.is_empty(), "kept until the new owner runs it");
    let released = StatusEntry {
        node: id(0),
        generation: 1,
        version: 3,
        status: ReplicaStatus::new(moved.workload.clone(), moved.replica, ReplicaState::Releasing),
    };
    assert_eq!(updates(&mut layer), [Update::Status(released)], "said at once: the new owner may start");
    assert_eq!(layer.poll_timeout(), Some(at(60)), "the handover grace (30 s) is the next deadline");

    // The new owner reports it Running: stop now.
    let theirs = StatusEntry {
        node: id(1),
        generation: 1,
        version: 1,
        status: ReplicaStatus::new(moved.workload.clone(), moved.replica, ReplicaState::Running),
    };
    layer.handle_update(at(35), &Update::Status(theirs), false, &table);
    layer.handle_member_events(at(35), &[], &table);
    assert_eq!(
        layer_events(&mut layer),
        [
            WorkloadEvent::ReplicaStateChanged { node: id(1), replica: moved.clone() },
            WorkloadEvent::ReplicaStop { replica: moved.clone() },
        ]
    );
    assert_eq!(layer.plan().stop, [moved]);
}

#[test]
fn a_handover_the_new_owner_never_confirms_ends_with_the_grace() {
    let mut table = members(&[]);
    let mut layer = fresh();
    layer.handle_own_change(at(10), &table);
    layer.submit(at(10), web(1), &table).expect("valid");
    layer.submit(at(10), crate::workload::tests::spec("api", 1), &table).expect("valid");
    let both =
        [ReplicaStatus::new("api", 0, ReplicaState::Running), ReplicaStatus::new("web", 0, ReplicaState::Running)];
    layer.report_replicas(at(11), both, &table);
    table.upsert(alive(1, 1, at(20)));
    layer.handle_member_events(at(20), &[Event::MemberUp { id: id(1) }], &table);
    layer.handle_timeout(at(30), &table);
    let _ = layer_events(&mut layer);
    assert_eq!(layer.poll_timeout(), Some(at(60)));
    layer.handle_timeout(at(59), &table);
    assert_eq!(layer_events(&mut layer), [], "early: nothing");
    layer.handle_timeout(at(60), &table);
    let stopped = layer_events(&mut layer);
    assert!(matches!(stopped.as_slice(), [WorkloadEvent::ReplicaStop { .. }]), "{stopped:?}");
    assert_eq!(layer.plan().stop.len(), 1);
}

#[test]
fn a_node_declared_gone_and_back_tells_its_statuses_again() {
    let table = members(&[1]);
    let mut layer = fresh();
    layer.handle_own_change(at(10), &table);
    layer.submit(at(10), web(1), &table).expect("valid");
    layer.report_replicas(at(11), [ReplicaStatus::new("web", 0, ReplicaState::Running)], &table);
    let mine: Vec<Update> = updates(&mut layer).into_iter().filter(|u| matches!(u, Update::Status(_))).collect();
    assert_eq!(mine.len(), 1);
    layer.handle_member_events(at(12), &[Event::SelfRefuted { incarnation: 1, declared_gone: false }], &table);
    assert_eq!(updates(&mut layer), [], "a refuted suspicion forgot nothing");
    layer.handle_member_events(at(13), &[Event::SelfRefuted { incarnation: 2, declared_gone: true }], &table);
    assert_eq!(updates(&mut layer), mine, "whoever believed it dead forgot what it runs");
}

#[test]
fn a_down_counts_once_however_many_facts_say_so() {
    let mut table = members(&[1]);
    let mut layer = fresh();
    let base = WorkloadConfig::lan().settle_time;
    table.upsert(Member { state: State::Dead, state_since: at(30), ..alive(1, 1, Instant::ZERO) });
    layer.handle_member_events(at(30), &[Event::MemberDown { id: id(1) }], &table);
    // Dead again at a higher incarnation, then Left: the same down.
    layer.handle_member_events(at(31), &[Event::MemberDown { id: id(1) }], &table);
    table.upsert(Member { state: State::Left, state_since: at(30), ..alive(1, 1, Instant::ZERO) });
    layer.handle_member_events(at(32), &[Event::MemberLeft { id: id(1) }], &table);
    assert_eq!(layer.settle_time_of(id(1), at(32)), base * 2, "one down, not three");
    // Back, and down again: a second down.
    table.upsert(alive(1, 1, at(40)));
    layer.handle_member_events(at(40), &[Event::MemberUp { id: id(1) }], &table);
    table.upsert(Member { state: State::Dead, state_since: at(50), ..alive(1, 1, Instant::ZERO) });
    layer.handle_member_events(at(50), &[Event::MemberDown { id: id(1) }], &table);
    assert_eq!(layer.settle_time_of(id(1), at(50)), base * 4);
    // The downs are forgotten an hour after the last, with no input needed.
    let forgotten = at(50) + WorkloadConfig::lan().flap_window;
    assert_eq!(layer.poll_timeout(), Some(forgotten));
    layer.handle_timeout(forgotten, &table);
    assert_eq!(layer.settle_time_of(id(1), forgotten), base);
    assert_eq!(layer.poll_timeout(), None, "nothing left to wait for");
}

#[test]
fn a_due_tombstone_is_forgotten_by_whatever_input_comes_first() {
    let config = WorkloadConfig { tombstone_retention: Duration::from_secs(60), ..WorkloadConfig::lan() };
    let table = members(&[1]);
    let mut layer = Workloads::new(config, id(0), 1).expect("valid");
    layer.submit(at(1), web(1), &table).expect("valid");
    layer.delete(at(2), "web", &table).expect("live");
    assert_eq!(layer.catalog_entries().count(), 1, "a tombstone");
    assert_eq!(layer.poll_timeout(), Some(at(10)), "first, this node settles");
    layer.handle_timeout(at(10), &table);
    assert_eq!(layer.poll_timeout(), Some(at(62)), "then the tombstone's retention is the deadline");
    // A peer's status arrives after that moment, before the timer is served.
    let status = status_from(1, 1, 1, 0, ReplicaState::Running);
    layer.handle_update(at(63), &Update::Status(status), false, &table);
    layer.handle_member_events(at(63), &[], &table);
    assert_eq!(layer.catalog_entries().count(), 0, "forgotten on that input");
    assert!(layer.poll_timeout().is_none_or(|t| t > at(63)), "no deadline left in the past");
}
