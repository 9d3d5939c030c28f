//! Whole-cluster behaviour on the in-crate harness: join, crash, partition
//! and heal, determinism. Seeds are constants so every failure replays.
//! Each test prints the time it measured (`--nocapture` shows them).
#![allow(clippy::print_stderr)]

use std::time::Duration;

use crate::harness::Cluster;
use crate::{Config, Event, State};

const SEED: u64 = 0x5eed_0001;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn ten_nodes_joining_through_one_seed_all_see_each_other() {
    let mut cluster = Cluster::new(10, Config::lan(), SEED);
    cluster.join_all_via(0);
    let took = cluster.run_until_true(Duration::from_millis(100), secs(10), Cluster::converged);
    let took = took.expect("10 nodes converge within 10 s");
    assert!(took <= secs(3), "converged in {took:?}");
    eprintln!("join converged in {took:?}");
    for i in 0..10 {
        assert_eq!(cluster.node(i).live_members(), 10);
    }
}

#[test]
fn a_crashed_node_is_dead_at_all_others_within_the_bound() {
    let config = Config::lan();
    let mut cluster = Cluster::new(10, config.clone(), SEED);
    cluster.join_all_via(0);
    cluster.run_for(secs(5));
    assert!(cluster.converged());

    cluster.crash(7);
    let crashed_at = cluster.now;
    let all_dead = |c: &Cluster| (0..10).filter(|&i| i != 7).all(|i| c.view(i, 7) == Some(State::Dead));
    let took = cluster
        .run_until_true(Duration::from_millis(100), secs(60), all_dead)
        .expect("everyone declares the crashed node Dead");
    // Bound: the target is probed within ~2 periods by someone (a pass
    // visits it at most once per n-1 periods per prober), suspicion lasts at
    // most max = 6·4·1 s = 24 s (with 2 expected confirmations it shrinks to
    // 4 s), then gossip spreads in a few 200 ms rounds.
    let (_, max) = config.suspicion_bounds(10);
    let bound = max + config.probe_interval * 3 + secs(2);
    assert!(took <= bound, "all saw Dead after {took:?}, bound {bound:?}");
    eprintln!("crash known to all after {took:?}");
    // And no one else was declared dead.
    let false_downs = cluster
        .events
        .iter()
        .filter(|(at, _, e)| *at >= crashed_at && matches!(e, Event::MemberDown { id } if *id != crate::harness::id(7)))
        .count();
    assert_eq!(false_downs, 0);
}

#[test]
fn a_split_longer_than_the_dead_timeout_heals_by_itself() {
    let mut cluster = Cluster::new(10, Config::lan(), SEED);
    cluster.join_all_via(0);
    cluster.run_for(secs(5));
    assert!(cluster.converged());

    let (a, b): (Vec<usize>, Vec<usize>) = (0..10).partition(|&i| i < 5);
    cluster.partition(&a, &b);
    cluster.run_for(secs(60));
    for &x in &a {
        for &y in &b {
            assert_eq!(cluster.view(x, y), Some(State::Dead), "{x} sees {y}");
            assert_eq!(cluster.view(y, x), Some(State::Dead), "{y} sees {x}");
        }
    }

    cluster.heal();
    let healed_at = cluster.now;
    let took = cluster
        .run_until_true(Duration::from_millis(250), secs(120), Cluster::converged)
        .expect("the two sides find each other again with no operator");
    // Each side declared the other Dead; when the sides meet, those verdicts
    // must not kill members a node can still hear on its own side.
    let same_side = |x: usize, y: usize| (x < 5) == (y < 5);
    let index = |id: crate::NodeId| (0..10).find(|&i| crate::harness::id(i) == id).unwrap_or(usize::MAX);
    let same_side_downs: Vec<_> = cluster
        .events
        .iter()
        .filter(|(at, node, e)| {
            *at >= healed_at && matches!(e, Event::MemberDown { id } if same_side(*node, index(*id)))
        })
        .collect();
    assert!(same_side_downs.is_empty(), "reachable members declared Dead after the heal: {same_side_downs:?}");
    // Reconnect attempts run every reconnect_interval (10 s); one success
    // starts the refutations, which then spread by gossip.
    assert!(took <= secs(45), "healed in {took:?}");
    eprintln!("healed in {took:?}");
}

#[test]
fn the_same_seed_gives_the_same_events_twice() {
    let run = |seed| {
        let mut cluster = Cluster::new(8, Config::lan(), seed);
        cluster.set_loss(0.05);
        cluster.join_all_via(0);
        cluster.run_for(secs(10));
        cluster.crash(3);
        cluster.run_for(secs(40));
        cluster.events
    };
    let first = run(SEED);
    assert!(first.len() > 50, "the run does something: {} events", first.len());
    assert_eq!(first, run(SEED));
    assert_ne!(first, run(SEED + 1), "a different seed gives a different run");
}

#[test]
fn no_healthy_member_is_declared_dead_under_five_percent_loss() {
    let mut cluster = Cluster::new(10, Config::lan(), SEED);
    cluster.join_all_via(0);
    cluster.run_for(secs(5));
    cluster.set_loss(0.05);
    cluster.run_for(secs(300));
    let downs = cluster.events.iter().filter(|(_, _, e)| matches!(e, Event::MemberDown { .. })).count();
    assert_eq!(downs, 0, "false Dead declarations under 5% loss");
    cluster.set_loss(0.0);
    cluster.run_for(secs(5));
    assert!(cluster.converged());
}

#[test]
fn a_node_whose_inbound_link_is_cut_one_way_is_suspected_then_refutes_after_repair() {
    let mut cluster = Cluster::new(5, Config::lan(), SEED);
    cluster.join_all_via(0);
    cluster.run_for(secs(5));
    // Node 4 hears nothing from anyone; it can still talk.
    for i in 0..4 {
        cluster.cut_one_way(i, 4);
    }
    cluster.run_for(secs(60));
    assert!((0..4).all(|i| cluster.view(i, 4) == Some(State::Dead)));
    cluster.heal();
    let took = cluster.run_until_true(Duration::from_millis(250), secs(60), Cluster::converged);
    assert!(took.is_some(), "node 4 comes back after the link is repaired");
}

#[test]
fn a_crashed_node_restarted_with_a_new_generation_is_alive_everywhere() {
    let mut cluster = Cluster::new(6, Config::lan(), SEED);
    cluster.join_all_via(0);
    cluster.run_for(secs(5));
    cluster.crash(4);
    cluster.run_for(secs(2));
    cluster.restart(4, 2, 0);
    let new_run_everywhere =
        |c: &Cluster| (0..6).all(|i| c.node(i).member(crate::harness::id(4)).is_some_and(|m| m.generation == 2));
    let took = cluster
        .run_until_true(Duration::from_millis(100), secs(10), |c| new_run_everywhere(c) && c.converged())
        .expect("the new run is known and alive everywhere");
    eprintln!("restart known everywhere after {took:?}");
    assert_eq!(cluster.node(4).live_members(), 6);
}

/// A larger run for a person to read (`cargo test --release -p shoal-protocol
/// scale -- --ignored --nocapture`); the simulator measures this properly.
#[test]
#[ignore = "slow; prints numbers rather than asserting tight bounds"]
fn scale_run_prints_join_detection_and_bandwidth() {
    let n: usize = std::env::var("SHOAL_SCALE_N").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let mut cluster = Cluster::new(n, Config::lan(), SEED);
    cluster.set_loss(0.01);
    cluster.join_all_via(0);
    let mut took = None;
    for second in 0..300 {
        let pairs: usize = (0..n).map(|i| cluster.node(i).live_members()).sum();
        let syncs: u64 = (0..n).map(|i| cluster.node(i).counters().messages_out.sync).sum();
        let gossip: u64 = (0..n).map(|i| cluster.node(i).counters().messages_out.gossip).sum();
        if std::env::var("SHOAL_SCALE_VERBOSE").is_ok() {
            eprintln!("t={second}s known pairs {pairs}/{} syncs {syncs} gossips {gossip}", n * n);
        }
        if cluster.converged() {
            took = Some(secs(second));
            break;
        }
        cluster.run_for(secs(1));
    }
    eprintln!("N={n}: join converged after {took:?}");
    let bytes_before: u64 = (0..n).map(|i| cluster.node(i).counters().bytes_out.total()).sum();
    cluster.run_for(secs(60));
    let bytes_after: u64 = (0..n).map(|i| cluster.node(i).counters().bytes_out.total()).sum();
    eprintln!("N={n}: steady state {} bytes/node/s out", (bytes_after - bytes_before) / 60 / n as u64);
    cluster.crash(n / 2);
    let victim = n / 2;
    let first = |c: &Cluster| (0..n).any(|i| i != victim && c.view(i, victim) == Some(State::Suspect));
    let t_first = cluster.run_until_true(Duration::from_millis(100), secs(60), first);
    let all_dead = |c: &Cluster| (0..n).filter(|&i| i != victim).all(|i| c.view(i, victim) == Some(State::Dead));
    let t_all = cluster.run_until_true(Duration::from_millis(250), secs(200), all_dead);
    eprintln!("N={n}: crash first suspected after {t_first:?}, then Dead at all after a further {t_all:?}");
    let downs = cluster
        .events
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::MemberDown { id } if *id != crate::harness::id(victim)))
        .count();
    eprintln!("N={n}: false Dead declarations: {downs}");
}

#[test]
fn an_isolated_node_passes_no_verdicts_that_outlive_its_isolation() {
    let mut cluster = Cluster::new(10, Config::lan(), SEED);
    cluster.join_all_via(0);
    cluster.run_for(secs(5));
    let others: Vec<usize> = (0..10).filter(|&i| i != 3).collect();
    cluster.partition(&[3], &others);
    cluster.run_for(secs(40));
    assert!(others.iter().all(|&i| cluster.view(i, 3) == Some(State::Dead)), "the cut-off node is Dead to the rest");
    let counters = cluster.node(3).counters();
    assert!(counters.probes_unanswered > 0, "it knew its probes tested only itself");
    assert_eq!(counters.suspicions_raised, 0, "so it suspected no one");
    cluster.heal();
    cluster.run_until_true(Duration::from_millis(250), secs(60), Cluster::converged).expect("rejoins");
    let isolated = crate::harness::id(3);
    let healthy_downs: Vec<_> = cluster
        .events
        .iter()
        .filter(|(_, node, e)| *node != 3 && matches!(e, Event::MemberDown { id } if *id != isolated))
        .collect();
    assert!(healthy_downs.is_empty(), "healthy members declared Dead: {healthy_downs:?}");
}

fn web(replicas: u32) -> crate::WorkloadSpec {
    crate::workload::tests::spec("web", replicas)
}

fn catalog_everywhere(cluster: &Cluster, replicas: Option<u32>) -> bool {
    (0..cluster.nodes.len()).filter(|&i| cluster.nodes[i].is_some()).all(|i| {
        let held = cluster.workloads(i).specs().find(|w| w.name == "web").map(|w| w.replicas);
        held == replicas
    })
}

#[test]
fn a_submitted_workload_reaches_every_node_and_so_does_its_delete() {
    let mut cluster = Cluster::new(10, Config::lan(), SEED);
    cluster.join_all_via(0);
    cluster.run_for(secs(5));
    cluster.submit(3, web(2));
    let took = cluster
        .run_until_true(Duration::from_millis(50), secs(10), |c| catalog_everywhere(c, Some(2)))
        .expect("the spec spreads to all");
    eprintln!("workload known everywhere after {took:?}");
    cluster.delete(7, "web");
    cluster
        .run_until_true(Duration::from_millis(50), secs(10), |c| catalog_everywhere(c, None))
        .expect("the delete spreads to all");
}

#[test]
fn a_node_that_joins_later_learns_the_catalog_by_anti_entropy() {
    let mut cluster = Cluster::new(6, Config::lan(), SEED);
    cluster.crash(5);
    cluster.join_all_via(0);
    cluster.submit(2, web(3));
    cluster.run_for(secs(60));
    // Long after the gossip has died down, a new node joins.
    cluster.restart(5, 1, 0);
    cluster
        .run_until_true(Duration::from_millis(100), secs(10), |c| catalog_everywhere(c, Some(3)))
        .expect("the newcomer has the catalog");
}

#[test]
fn concurrent_writes_on_both_sides_of_a_split_converge_to_one_after_the_heal() {
    let mut cluster = Cluster::new(6, Config::lan(), SEED);
    cluster.join_all_via(0);
    cluster.run_for(secs(5));
    cluster.partition(&[0, 1, 2], &[3, 4, 5]);
    cluster.submit(1, web(1));
    cluster.submit(4, web(4));
    // Gossip may spend a write's transmissions on the far side, which cannot
    // hear them; anti-entropy (every 30 s) brings it to the near side.
    cluster.run_for(secs(45));
    assert_eq!(cluster.workloads(0).specs().next().map(|w| w.replicas), Some(1), "each side keeps its own write");
    assert_eq!(cluster.workloads(5).specs().next().map(|w| w.replicas), Some(4));
    // The later stamp wins: the higher Lamport clock, then the higher writer id.
    let stamp = |i: usize| cluster.workloads(i).catalog_entries().next().map(|e| (e.stamp.clock, e.stamp.node));
    let winner = if stamp(4) > stamp(1) { 4 } else { 1 };
    cluster.heal();
    let one_answer = |c: &Cluster| {
        let first = c.workloads(0).catalog_entries().cloned().collect::<Vec<_>>();
        (1..6).all(|i| c.workloads(i).catalog_entries().cloned().collect::<Vec<_>>() == first)
    };
    cluster.run_until_true(Duration::from_millis(250), secs(60), one_answer).expect("one catalog after the heal");
    assert_eq!(cluster.workloads(0).specs().next().map(|w| w.replicas), Some(winner));
}

#[test]
fn a_preloaded_mesh_starts_converged_stays_quiet_and_still_detects_a_crash() {
    let config = Config::lan();
    let mut cluster = Cluster::new(8, config.clone(), SEED);
    cluster.form();
    assert!(cluster.converged(), "formed before anything ran");
    let digest = |c: &Cluster, i: usize| c.node(i).members().map(|m| (m.id, m.generation, m.state)).collect::<Vec<_>>();
    for i in 0..8 {
        assert_eq!(cluster.node(i).live_members(), 8);
        assert_eq!(cluster.node(i).pending_broadcasts(), 0, "node {i} has nothing to gossip");
        assert_eq!(digest(&cluster, i), digest(&cluster, 0), "node {i} sees what node 0 sees");
    }

    // A minute of steady state: probes and anti-entropy run, and nothing
    // they carry is news to anyone.
    cluster.run_for(secs(60));
    assert!(cluster.events.is_empty(), "no member changed state: {:?}", cluster.events);
    for i in 0..8 {
        let counters = cluster.node(i).counters();
        assert!(counters.probes_acked >= 50, "node {i} kept probing: {}", counters.probes_acked);
        assert!(counters.syncs_started >= 1, "node {i} ran anti-entropy");
        assert_eq!(counters.updates_applied, 0, "node {i} learned nothing new");
        assert_eq!(counters.suspicions_raised, 0);
    }

    cluster.crash(3);
    let all_dead = |c: &Cluster| (0..8).filter(|&i| i != 3).all(|i| c.view(i, 3) == Some(State::Dead));
    let took = cluster
        .run_until_true(Duration::from_millis(100), secs(60), all_dead)
        .expect("everyone declares the crashed node Dead");
    let (_, max) = config.suspicion_bounds(8);
    let bound = max + config.probe_interval * 3 + secs(2);
    assert!(took <= bound, "all saw Dead after {took:?}, bound {bound:?}");
    eprintln!("crash in a preloaded mesh known to all after {took:?}");
}
