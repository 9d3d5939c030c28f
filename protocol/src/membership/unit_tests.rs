//! Exact outputs and timers for each protocol rule, on hand-driven nodes.
//!
//! Only probes run on their own here: gossip, push-pull and reconnect
//! rounds are an hour apart, so every message a test sees is one it caused.

use std::sync::Arc;
use std::time::Duration;

use super::{Event, Membership, NoWorkloads};
use crate::harness::{addr, id, identity};
use crate::wire::{self, Body, Message, Update};
use crate::{Config, Instant, State};

const HOUR: Duration = Duration::from_secs(3_600);
const MS: Duration = Duration::from_millis(1);

fn config() -> Config {
    Config { gossip_interval: HOUR, push_pull_interval: HOUR, reconnect_interval: HOUR, ..Config::lan() }
}

/// A coordinate at the origin, as a fresh node sends it.
fn origin_packed() -> crate::PackedCoordinate {
    crate::PackedCoordinate::pack(&crate::Coordinate::origin(&config().coordinate)).expect("valid")
}

/// Nodes 0..n, each already knowing all the others (as if gossip had run),
/// with their queues drained.
fn mesh(n: usize) -> Vec<Membership> {
    mesh_of(n, &config())
}

fn mesh_of(n: usize, config: &Config) -> Vec<Membership> {
    let mut nodes: Vec<Membership> = (0..n)
        .map(|i| Membership::new(config.clone(), identity(i, 1), 100 + i as u64, Instant::ZERO).expect("valid"))
        .collect();
    for a in 0..n {
        for b in 0..n {
            if a != b {
                let alive = alive(&nodes[b]);
                deliver_updates(&mut nodes[a], b, vec![alive]);
            }
        }
    }
    for node in &mut nodes {
        drain_events(node);
        while node.poll_transmit().is_some() {}
        node.broadcasts = Default::default();
    }
    nodes
}

fn alive(node: &Membership) -> Update {
    Update::Alive {
        id: node.id,
        generation: node.generation,
        incarnation: node.incarnation,
        meta: Arc::clone(&node.meta),
    }
}

fn deliver_updates(to: &mut Membership, from: usize, updates: Vec<Update>) {
    let message = Message { from: id(from), body: Body::Gossip, updates };
    to.handle_message(Instant::ZERO, &addr(from), &wire::encode(0, &message), &mut NoWorkloads::default());
}

/// Every queued transmit, decoded, as (destination index, message).
fn sent(node: &mut Membership) -> Vec<(usize, Message, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(t) = node.poll_transmit() {
        let to: usize = t.addr.as_str()[4..].parse().expect("sim address");
        let message = wire::decode(&t.payload, 0).expect("own messages decode");
        out.push((to, message, t.payload));
    }
    out
}

fn bodies(node: &mut Membership) -> Vec<(usize, Body)> {
    sent(node).into_iter().map(|(to, m, _)| (to, m.body)).collect()
}

fn drain_events(node: &mut Membership) -> Vec<Event> {
    std::iter::from_fn(|| node.poll_event()).collect()
}

/// What a node sends at its ack timeout: a second direct ping to the target
/// first (same seq), then the relay requests, which are returned.
fn after_second_ping(out: Vec<(usize, Message, Vec<u8>)>, target_index: usize) -> Vec<(usize, Message, Vec<u8>)> {
    let mut out = out.into_iter();
    let (to, second, _) = out.next().expect("a second ping at the ack timeout");
    assert_eq!(to, target_index, "the second ping goes to the target");
    assert!(matches!(second.body, Body::Ping { .. }), "{:?}", second.body);
    out.collect()
}

/// Fires `node`'s timers up to its next probe, returning when it probed.
fn run_to_probe(node: &mut Membership) -> Instant {
    let at = node.poll_timeout().expect("a probe tick is always pending");
    node.handle_timeout(at, &NoWorkloads::default());
    at
}

#[test]
fn probe_is_acked_and_no_indirect_probe_follows() {
    let mut nodes = mesh(2);
    let t = run_to_probe(&mut nodes[0]);
    let out = sent(&mut nodes[0]);
    assert_eq!(out.len(), 1);
    let (to, ping, payload) = &out[0];
    assert_eq!((*to, &ping.body), (1, &Body::Ping { seq: 1, target: id(1) }));
    let timeout = config().probe_timeout;
    assert_eq!(nodes[0].poll_timeout(), Some(t + timeout), "ack timer armed");

    nodes[1].handle_message(t + MS, &addr(0), payload, &mut NoWorkloads::default());
    let reply = sent(&mut nodes[1]);
    assert_eq!(reply.len(), 1);
    // A young node's ack carries its coordinate (still the origin).
    let coordinate = origin_packed();
    assert_eq!((reply[0].0, &reply[0].1.body), (0, &Body::AckCoordinate { seq: 1, coordinate }));

    nodes[0].handle_message(t + MS * 2, &addr(1), &reply[0].2, &mut NoWorkloads::default());
    assert_eq!(nodes[0].counters().coordinate_samples, 1, "the round trip moved node 0's coordinate");
    let moved = nodes[0].coordinate().vec.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!(moved > 0.0, "away from the origin, where node 1 is");
    assert!(nodes[0].member_coordinate(id(1)).is_some());
    nodes[0].handle_timeout(t + timeout, &NoWorkloads::default());
    assert_eq!(bodies(&mut nodes[0]), vec![], "acked: nothing more to send");
    assert_eq!(nodes[0].poll_timeout(), Some(t + config().probe_interval), "next probe one period later");
    let counters = nodes[0].counters();
    assert_eq!((counters.probes, counters.probes_acked, counters.indirect_probes), (1, 1, 0));
    assert_eq!(counters.probe_rtt.buckets[2], 1, "2 ms round trip in the 1..5 ms bucket");
}

#[test]
fn indirect_probe_through_a_relay_when_the_direct_path_drops() {
    let mut nodes = mesh(3);
    let t = run_to_probe(&mut nodes[0]);
    let ping = sent(&mut nodes[0]);
    let Body::Ping { seq, target } = ping[0].1.body else { panic!("expected a ping, got {:?}", ping[0].1.body) };
    let target_index = ping[0].0;
    let relay_index = 3 - target_index; // the other one of {1, 2}
    // The direct ping is lost. At the ack timeout, node 0 asks the relay.
    let timeout = config().probe_timeout;
    nodes[0].handle_timeout(t + timeout, &NoWorkloads::default());
    let out = sent(&mut nodes[0]);
    assert_eq!(out.len(), 2, "a second direct ping, and the one relay asked");
    assert_eq!((out[0].0, &out[0].1.body), (target_index, &Body::Ping { seq, target }));
    let asks = after_second_ping(out, target_index);
    assert_eq!(
        (asks[0].0, &asks[0].1.body),
        (relay_index, &Body::PingReq { seq, target, target_addr: addr(target_index), nack_after_micros: 400_000 })
    );

    // The relay pings the target with a sequence number of its own...
    nodes[relay_index].handle_message(t + timeout + MS, &addr(0), &asks[0].2, &mut NoWorkloads::default());
    let relayed = sent(&mut nodes[relay_index]);
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].0, target_index);
    let Body::Ping { seq: relay_seq, target: relay_target } = relayed[0].1.body else {
        panic!("relay must ping the target")
    };
    assert_eq!(relay_target, target);
    // ...the target acks the relay, and the relay acks node 0 with node 0's seq.
    nodes[target_index].handle_message(
        t + timeout + MS * 2,
        &addr(relay_index),
        &relayed[0].2,
        &mut NoWorkloads::default(),
    );
    let ack = sent(&mut nodes[target_index]);
    let coordinate = origin_packed();
    assert_eq!((ack[0].0, &ack[0].1.body), (relay_index, &Body::AckCoordinate { seq: relay_seq, coordinate }));
    nodes[relay_index].handle_message(
        t + timeout + MS * 3,
        &addr(target_index),
        &ack[0].2,
        &mut NoWorkloads::default(),
    );
    let forwarded = sent(&mut nodes[relay_index]);
    // A relay forwards a plain ack: the coordinate was for its round trip.
    assert_eq!((forwarded[0].0, &forwarded[0].1.body), (0, &Body::Ack { seq }));
    nodes[0].handle_message(t + timeout + MS * 4, &addr(relay_index), &forwarded[0].2, &mut NoWorkloads::default());

    // The period ends with the target still Alive.
    nodes[0].handle_timeout(t + config().probe_interval, &NoWorkloads::default());
    assert_eq!(nodes[0].member(target).map(|m| m.state), Some(State::Alive));
    assert_eq!(drain_events(&mut nodes[0]), vec![]);
    assert_eq!(nodes[0].counters().indirect_probes, 1);
    assert_eq!(nodes[relay_index].counters().relayed_probes, 1);
}

#[test]
fn a_second_direct_ping_at_the_ack_timeout_saves_the_probe() {
    let mut nodes = mesh(3);
    let t = run_to_probe(&mut nodes[0]);
    let first = sent(&mut nodes[0]);
    let target_index = first[0].0;
    // The first ping is lost. At the ack timeout node 0 pings again, with
    // the same seq, alongside the relay request.
    let timeout = config().probe_timeout;
    nodes[0].handle_timeout(t + timeout, &NoWorkloads::default());
    let out = sent(&mut nodes[0]);
    let (_, _, second) = &out[0];
    nodes[target_index].handle_message(t + timeout + MS, &addr(0), second, &mut NoWorkloads::default());
    let ack = sent(&mut nodes[target_index]);
    assert_eq!(ack.len(), 1);
    nodes[0].handle_message(t + timeout + MS * 2, &addr(target_index), &ack[0].2, &mut NoWorkloads::default());
    nodes[0].handle_timeout(t + config().probe_interval, &NoWorkloads::default());
    assert_eq!(nodes[0].member(id(target_index)).map(|m| m.state), Some(State::Alive));
    assert_eq!(drain_events(&mut nodes[0]), vec![]);
    let counters = nodes[0].counters();
    assert_eq!((counters.probes_acked, counters.suspicions_raised), (1, 0));
    // Karn's rule: the ack may answer either ping, so no round trip is taken.
    assert_eq!(counters.probe_rtt.buckets.iter().sum::<u64>(), 0);
}

/// Node 0 probes its first target, which is unreachable; the relay nacks.
/// Returns (target index, time the suspicion started).
fn fail_one_probe(nodes: &mut [Membership]) -> (usize, Instant) {
    let t = run_to_probe(&mut nodes[0]);
    let target_index = sent(&mut nodes[0])[0].0;
    nodes[0].handle_timeout(t + config().probe_timeout, &NoWorkloads::default());
    for (relay, message, payload) in after_second_ping(sent(&mut nodes[0]), target_index) {
        assert!(matches!(message.body, Body::PingReq { .. }));
        nodes[relay].handle_message(t + config().probe_timeout, &addr(0), &payload, &mut NoWorkloads::default());
        let _ping_to_dead_target = sent(&mut nodes[relay]);
        nodes[relay].handle_timeout(t + config().probe_timeout * 2, &NoWorkloads::default());
        // (The relay's own probe may also fall in this window.)
        let nacks: Vec<_> =
            sent(&mut nodes[relay]).into_iter().filter(|(_, m, _)| matches!(m.body, Body::Nack { .. })).collect();
        assert_eq!(nacks.len(), 1, "the relay nacks");
        assert_eq!(nacks[0].0, 0);
        nodes[0].handle_message(t + config().probe_timeout * 2, &addr(relay), &nacks[0].2, &mut NoWorkloads::default());
    }
    let end = t + config().probe_interval;
    nodes[0].handle_timeout(end, &NoWorkloads::default());
    (target_index, end)
}

#[test]
fn an_unanswered_probe_makes_the_target_suspect_then_dead() {
    let mut nodes = mesh(3);
    let (target_index, start) = fail_one_probe(&mut nodes);
    let target = id(target_index);
    assert_eq!(drain_events(&mut nodes[0]), vec![Event::MemberSuspect { id: target }]);
    assert_eq!(nodes[0].counters().nacks_received, 1);
    assert_eq!(nodes[0].local_health(), 0, "the relay nacked: the fault is not ours");
    // N = 3: too few members to expect confirmations, so the timeout is the
    // minimum, 4·max(1, log10 3)·1 s = 4 s.
    assert_eq!(nodes[0].suspicions[&target].deadline, start + Duration::from_secs(4));

    let deadline = start + Duration::from_secs(4);
    let mut t = start;
    while let Some(next) = nodes[0].poll_timeout().filter(|&next| next < deadline) {
        t = next;
        nodes[0].handle_timeout(t, &NoWorkloads::default());
    }
    assert!(t < deadline);
    assert_eq!(nodes[0].member(target).map(|m| m.state), Some(State::Suspect));
    nodes[0].handle_timeout(deadline, &NoWorkloads::default());
    assert_eq!(nodes[0].member(target).map(|m| m.state), Some(State::Dead));
    assert!(drain_events(&mut nodes[0]).contains(&Event::MemberDown { id: target }));
    assert_eq!(nodes[0].counters().declared_dead, 1);
}

#[test]
fn a_suspect_refutes_with_a_higher_incarnation() {
    let mut nodes = mesh(3);
    let (target_index, start) = fail_one_probe(&mut nodes);
    drain_events(&mut nodes[0]);
    let target = id(target_index);
    // The buddy system: node 0's next probe of the suspect carries the
    // suspicion first, so the suspect learns of it directly.
    let suspicion = Update::Suspect { id: target, generation: 1, incarnation: 0, by: id(0) };
    let mut ping_payload = None;
    let mut t = start;
    while ping_payload.is_none() {
        t = run_to_probe(&mut nodes[0]);
        for (to, message, payload) in sent(&mut nodes[0]) {
            if to == target_index && matches!(message.body, Body::Ping { .. }) {
                assert_eq!(message.updates.first(), Some(&suspicion), "suspicion rides first");
                ping_payload = Some(payload);
            }
        }
    }
    let payload = ping_payload.unwrap_or_default();
    nodes[target_index].handle_message(t, &addr(0), &payload, &mut NoWorkloads::default());
    // (Node 0 may meanwhile suspect the other node too: its probes here go
    // nowhere; that news rides along.)
    let events = drain_events(&mut nodes[target_index]);
    assert_eq!(events.first(), Some(&Event::SelfRefuted { incarnation: 1, declared_gone: false }));
    assert_eq!(nodes[target_index].local_health(), 1, "being accused worsens local health");
    let ack = sent(&mut nodes[target_index]);
    let refutation =
        Update::Alive { id: target, generation: 1, incarnation: 1, meta: Arc::clone(&nodes[target_index].meta) };
    assert!(ack[0].1.updates.contains(&refutation));
    drain_events(&mut nodes[0]);
    nodes[0].handle_message(t, &addr(target_index), &ack[0].2, &mut NoWorkloads::default());
    assert_eq!(drain_events(&mut nodes[0]), vec![Event::MemberAlive { id: target }]);
    assert_eq!(nodes[0].member(target).map(|m| (m.state, m.incarnation)), Some((State::Alive, 1)));
    assert!(!nodes[0].suspicions.contains_key(&target), "suspicion cancelled");
    assert_eq!(nodes[0].counters().suspicions_refuted, 1);
}

#[test]
fn leave_is_seen_as_left_not_dead_and_stops_probing() {
    let mut nodes = mesh(3);
    nodes[1].leave(Instant::ZERO);
    let out = sent(&mut nodes[1]);
    let left = Update::Left { id: id(1), generation: 1, incarnation: 0 };
    assert_eq!(out.len(), 2, "the leave goes straight to both peers");
    for (to, message, payload) in out {
        assert_eq!((message.body.clone(), message.updates.clone()), (Body::Gossip, vec![left.clone()]));
        nodes[to].handle_message(Instant::ZERO, &addr(1), &payload, &mut NoWorkloads::default());
        assert_eq!(drain_events(&mut nodes[to]), vec![Event::MemberLeft { id: id(1) }]);
        assert_eq!(nodes[to].member(id(1)).map(|m| m.state), Some(State::Left));
    }
    for _ in 0..3 {
        run_to_probe(&mut nodes[1]);
        assert!(bodies(&mut nodes[1]).iter().all(|(_, b)| !matches!(b, Body::Ping { .. })));
    }
}

#[test]
fn a_leaving_node_tells_every_member_of_a_small_cluster_directly() {
    let mut nodes = mesh(12);
    nodes[4].leave(Instant::ZERO);
    let left = Update::Left { id: id(4), generation: 1, incarnation: 0 };
    let mut told: Vec<usize> = sent(&mut nodes[4])
        .into_iter()
        .filter(|(_, message, _)| message.updates.contains(&left))
        .map(|(to, _, _)| to)
        .collect();
    told.sort_unstable();
    assert_eq!(told, vec![0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11], "beyond the retransmit limit of 8");
    assert_eq!(nodes[4].pending_broadcasts(), 1, "and it is still gossiped");
}

#[test]
fn a_port_unreachable_ends_the_probe_at_once_as_failed() {
    let mut nodes = mesh(3);
    let start = run_to_probe(&mut nodes[0]);
    let (target_index, _) = bodies(&mut nodes[0])
        .into_iter()
        .find(|(_, body)| matches!(body, Body::Ping { .. }))
        .expect("node 0 probes someone");
    let bystander = 3 - target_index;
    let target = id(target_index);

    // News about another address, or before any datagram went there, is
    // not about this probe.
    nodes[0].handle_unreachable(start + MS, &addr(bystander));
    assert_eq!(nodes[0].member(target).map(|m| m.state), Some(State::Alive));

    // The target's host says nothing listens: suspect now, a whole period
    // before the probe would have ended, and without blaming ourselves.
    nodes[0].handle_unreachable(start + MS, &addr(target_index));
    assert_eq!(nodes[0].member(target).map(|m| m.state), Some(State::Suspect));
    assert_eq!(drain_events(&mut nodes[0]), vec![Event::MemberSuspect { id: target }]);
    assert_eq!(nodes[0].counters().probes_unreachable, 1);
    assert_eq!(nodes[0].local_health(), 0);
    assert_eq!(nodes[0].suspicions[&target].deadline, start + MS + Duration::from_secs(4));

    // The probe is over: its timeout asks no relay, and a repeat changes
    // nothing.
    nodes[0].handle_timeout(start + Duration::from_millis(500), &NoWorkloads::default());
    assert!(bodies(&mut nodes[0]).iter().all(|(_, b)| !matches!(b, Body::PingReq { .. })));
    nodes[0].handle_unreachable(start + 2 * MS, &addr(target_index));
    assert_eq!(nodes[0].counters().probes_unreachable, 1);
}

#[test]
fn a_port_unreachable_lifts_the_floor_and_the_wait_for_confirmations() {
    // `fast` keeps a suspicion at least 2.75 s so a paused member can come
    // back; a port unreachable says the process is gone, not paused.
    let fast = Config { gossip_interval: HOUR, push_pull_interval: HOUR, reconnect_interval: HOUR, ..Config::fast() };
    let mut nodes = mesh_of(10, &fast);
    let start = run_to_probe(&mut nodes[0]);
    let (target_index, _) = bodies(&mut nodes[0])
        .into_iter()
        .find(|(_, body)| matches!(body, Body::Ping { .. }))
        .expect("node 0 probes someone");
    nodes[0].handle_unreachable(start + MS, &addr(target_index));
    let target = id(target_index);
    // Lifeguard's own shortest timeout at N = 10, 2 · 1 · 0.75 s = 1.5 s,
    // with no confirmation awaited; otherwise 16.5 s until one came.
    let (min, _) = fast.suspicion_bounds_without_floor(10);
    assert_eq!(min, Duration::from_millis(1_500));
    assert_eq!(nodes[0].suspicions[&target].deadline, start + MS + min);
}

#[test]
fn an_answered_probe_ignores_a_late_port_unreachable() {
    let mut nodes = mesh(2);
    let start = run_to_probe(&mut nodes[0]);
    let (_, ping, _) = sent(&mut nodes[0]).remove(0);
    let Body::Ping { seq, .. } = ping.body else { panic!("a ping, got {ping:?}") };
    let ack = Message { from: id(1), body: Body::Ack { seq }, updates: vec![] };
    nodes[0].handle_message(start + MS, &addr(1), &wire::encode(0, &ack), &mut NoWorkloads::default());
    nodes[0].handle_unreachable(start + 2 * MS, &addr(1));
    assert_eq!(nodes[0].member(id(1)).map(|m| m.state), Some(State::Alive));
    assert_eq!(nodes[0].counters().probes_unreachable, 0);
}

#[test]
fn a_join_handshake_is_gossiped_at_once_at_both_ends() {
    // Nodes 0..4 know each other; node 4 is new and joins through node 0.
    let mut nodes = mesh(4);
    let mut joiner = Membership::new(config(), identity(4, 1), 104, Instant::ZERO).expect("valid");
    joiner.join(Instant::ZERO, [addr(0)], &NoWorkloads::default());
    let out = sent(&mut joiner);
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].1.body, Body::Sync(_)), "the join is one sync to the seed");
    nodes[0].handle_message(Instant::ZERO, &addr(4), &out[0].2, &mut NoWorkloads::default());

    // The seed answers the sync, and gossips the newcomer to every other
    // member (fanout 3) at the same instant, not an interval later.
    let out = sent(&mut nodes[0]);
    let joiner_alive = alive(&joiner);
    let mut gossiped: Vec<usize> = out
        .iter()
        .filter(|(_, m, _)| m.body == Body::Gossip && m.updates.contains(&joiner_alive))
        .map(|(to, ..)| *to)
        .collect();
    gossiped.sort_unstable();
    assert_eq!(gossiped, vec![1, 2, 3]);
    let answer = out.iter().find(|(to, m, _)| *to == 4 && matches!(m.body, Body::Sync(_))).expect("an answer");

    // The joiner, told of the mesh by the answer, announces itself to
    // members other than the seed at once as well.
    joiner.handle_message(Instant::ZERO, &addr(0), &answer.2, &mut NoWorkloads::default());
    let mut announced: Vec<usize> = sent(&mut joiner)
        .into_iter()
        .filter(|(_, m, _)| m.body == Body::Gossip && m.updates.contains(&joiner_alive))
        .map(|(to, ..)| to)
        .collect();
    announced.sort_unstable();
    assert_eq!(announced, vec![1, 2, 3]);

    // A sync from a member already known is anti-entropy, not news.
    joiner.handle_message(Instant::ZERO, &addr(0), &answer.2, &mut NoWorkloads::default());
    assert!(sent(&mut joiner).iter().all(|(_, m, _)| m.body != Body::Gossip));
}

#[test]
fn a_restarted_node_is_known_by_its_new_generation_and_old_suspicions_lapse() {
    let mut nodes = mesh(3);
    let (target_index, start) = fail_one_probe(&mut nodes);
    drain_events(&mut nodes[0]);
    let target = id(target_index);
    // The target restarts with empty state and generation 2, and rejoins.
    let mut restarted = Membership::new(config(), identity(target_index, 2), 7, start).expect("valid");
    restarted.join(start, [addr(0)], &NoWorkloads::default());
    let hello = sent(&mut restarted);
    assert_eq!(hello.len(), 1);
    assert!(matches!(hello[0].1.body, Body::Sync(_)));
    nodes[0].handle_message(start, &addr(target_index), &hello[0].2, &mut NoWorkloads::default());
    assert_eq!(drain_events(&mut nodes[0]), vec![Event::MemberUp { id: target }]);
    let member = nodes[0].member(target).cloned();
    assert_eq!(member.map(|m| (m.state, m.generation, m.incarnation)), Some((State::Alive, 2, 0)));
    // The reply carries node 0's view back to the newcomer.
    let reply: Vec<_> = sent(&mut nodes[0]).into_iter().filter(|(_, m, _)| matches!(m.body, Body::Sync(_))).collect();
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0].0, target_index);
    restarted.handle_message(start, &addr(0), &reply[0].2, &mut NoWorkloads::default());
    assert_eq!(restarted.live_members(), 3);
    drain_events(&mut restarted);
    // The old suspicion (generation 1) expires harmlessly.
    nodes[0].handle_timeout(start + Duration::from_secs(30), &NoWorkloads::default());
    assert_eq!(nodes[0].member(target).map(|m| m.state), Some(State::Alive));
    assert!(!drain_events(&mut nodes[0]).contains(&Event::MemberDown { id: target }));
    // Facts about the old run are ignored by the new one.
    let stale = Update::Dead { id: target, generation: 1, incarnation: 5, by: id(0) };
    deliver_updates(&mut restarted, 0, vec![stale]);
    assert_eq!(drain_events(&mut restarted), vec![]);
    assert_eq!(restarted.incarnation(), 0);
}

#[test]
fn local_health_stretches_probe_interval_and_timeout() {
    let mut nodes = mesh(3);
    // Everything node 0 sends is lost: its probe fails and its relay never
    // nacks, which Lifeguard reads as "the fault is mine".
    let t = run_to_probe(&mut nodes[0]);
    sent(&mut nodes[0]);
    let base = config();
    nodes[0].handle_timeout(t + base.probe_timeout, &NoWorkloads::default());
    assert_eq!(sent(&mut nodes[0]).len(), 2, "a second ping and one relay asked");
    let end = t + base.probe_interval;
    nodes[0].handle_timeout(end, &NoWorkloads::default());
    assert_eq!(nodes[0].local_health(), 1);
    sent(&mut nodes[0]);
    // Score 1: the next probe's ack timeout and the period both double.
    assert_eq!(nodes[0].poll_timeout(), Some(end + base.probe_timeout * 2));
    nodes[0].handle_timeout(end + base.probe_timeout * 2, &NoWorkloads::default());
    sent(&mut nodes[0]);
    assert_eq!(nodes[0].poll_timeout(), Some(end + base.probe_interval * 2));
    // Bounded by max_local_health.
    nodes[0].health.worsen(100);
    assert_eq!(nodes[0].local_health(), base.max_local_health);
}

#[test]
fn a_late_timer_worsens_health_and_makes_the_probe_inconclusive() {
    let mut nodes = mesh(2);
    let t = run_to_probe(&mut nodes[0]);
    sent(&mut nodes[0]);
    // The node stalls for 3 s: its timers fire long after their deadlines.
    nodes[0].handle_timeout(t + Duration::from_secs(3), &NoWorkloads::default());
    assert_eq!(nodes[0].counters().late_timers, 1);
    assert_eq!(nodes[0].local_health(), 1);
    assert_eq!(nodes[0].member(id(1)).map(|m| m.state), Some(State::Alive), "no accusation from a stalled node");
}

#[test]
fn suspicion_timeout_shrinks_as_independent_confirmations_arrive() {
    let mut nodes = mesh(5);
    let target = id(4);
    let suspect_by = |by: usize| Update::Suspect { id: target, generation: 1, incarnation: 0, by: id(by) };
    let start = Instant::ZERO;
    deliver_updates(&mut nodes[0], 1, vec![suspect_by(1)]);
    // N = 5: min = 4 s, max = 6·4 = 24 s, expecting k = 4 − 2 = 2 confirmations.
    assert_eq!(nodes[0].suspicions[&target].deadline, start + Duration::from_secs(24));
    deliver_updates(&mut nodes[0], 2, vec![suspect_by(2)]);
    let one = 24.0 - 20.0 * 2f64.ln() / 3f64.ln();
    assert_eq!(nodes[0].suspicions[&target].deadline, start + Duration::from_secs_f64(one));
    deliver_updates(&mut nodes[0], 2, vec![suspect_by(2)]);
    assert_eq!(
        nodes[0].suspicions[&target].deadline,
        start + Duration::from_secs_f64(one),
        "a repeated confirmer does not count twice"
    );
    deliver_updates(&mut nodes[0], 3, vec![suspect_by(3)]);
    assert_eq!(nodes[0].suspicions[&target].deadline, start + Duration::from_secs(4));
    // Each new confirmation is passed on.
    assert_eq!(nodes[0].pending_broadcasts(), 1);
    nodes[0].handle_timeout(start + Duration::from_secs(4), &NoWorkloads::default());
    assert_eq!(nodes[0].member(target).map(|m| m.state), Some(State::Dead));
}

#[test]
fn messages_from_another_cluster_or_garbage_are_dropped_and_counted() {
    let mut nodes = mesh(2);
    let before = nodes[0].member(id(1)).cloned();
    let message = Message {
        from: id(1),
        body: Body::Gossip,
        updates: vec![Update::Dead { id: id(1), generation: 1, incarnation: 9, by: id(1) }],
    };
    nodes[0].handle_message(Instant::ZERO, &addr(1), &wire::encode(0xbad, &message), &mut NoWorkloads::default());
    let mut bad_version = wire::encode(0, &message);
    bad_version[4] = 99;
    nodes[0].handle_message(Instant::ZERO, &addr(1), &bad_version, &mut NoWorkloads::default());
    nodes[0].handle_message(Instant::ZERO, &addr(1), b"GET / HTTP/1.1\r\n", &mut NoWorkloads::default());
    let good = wire::encode(0, &message);
    nodes[0].handle_message(Instant::ZERO, &addr(1), &good[..good.len() - 3], &mut NoWorkloads::default());
    let counters = nodes[0].counters();
    assert_eq!((counters.wrong_cluster, counters.wrong_version, counters.decode_failures), (1, 1, 2));
    assert_eq!(nodes[0].member(id(1)).cloned(), before, "nothing changed");
}

/// Node 0 probes its first target and asks every relay; nothing it sends
/// arrives (it is the one cut off). Returns (target index, relays asked,
/// time the period ended).
fn probe_into_silence(nodes: &mut [Membership]) -> (usize, Vec<usize>, Instant) {
    let t = run_to_probe(&mut nodes[0]);
    let target_index = sent(&mut nodes[0])[0].0;
    nodes[0].handle_timeout(t + config().probe_timeout, &NoWorkloads::default());
    let relays: Vec<usize> = after_second_ping(sent(&mut nodes[0]), target_index)
        .into_iter()
        .map(|(relay, message, _)| {
            assert!(matches!(message.body, Body::PingReq { .. }), "{:?}", message.body);
            relay
        })
        .collect();
    let end = t + config().probe_interval;
    nodes[0].handle_timeout(end, &NoWorkloads::default());
    (target_index, relays, end)
}

#[test]
fn a_probe_that_no_one_answers_suspects_no_one() {
    let mut nodes = mesh(4);
    let (target_index, relays, end) = probe_into_silence(&mut nodes);
    assert_eq!(relays.len(), 2, "every other member was asked");
    // Neither the target nor a relay answered: the probe tested node 0's
    // links, not the target. Lifeguard still counts the missed nacks.
    assert_eq!(nodes[0].member(id(target_index)).map(|m| m.state), Some(State::Alive));
    assert_eq!(drain_events(&mut nodes[0]), vec![]);
    assert!(nodes[0].suspicions.is_empty());
    assert_eq!(nodes[0].pending_broadcasts(), 0, "nothing to gossip");
    let counters = nodes[0].counters();
    assert_eq!((counters.probes_unanswered, counters.suspicions_raised), (1, 0));
    assert_eq!(nodes[0].local_health(), 2, "one point per relay that did not nack");
    sent(&mut nodes[0]);
    assert_eq!(nodes[0].poll_timeout(), Some(end + config().probe_timeout * 3), "the next probe waits 3τ");
}

#[test]
fn one_nack_is_enough_to_suspect() {
    let mut nodes = mesh(4);
    let t = run_to_probe(&mut nodes[0]);
    let target_index = sent(&mut nodes[0])[0].0;
    nodes[0].handle_timeout(t + config().probe_timeout, &NoWorkloads::default());
    let asks = after_second_ping(sent(&mut nodes[0]), target_index);
    assert_eq!(asks.len(), 2);
    // The first relay gets the request and nacks; the second never does.
    let (relay, _, request) = &asks[0];
    nodes[*relay].handle_message(t + config().probe_timeout, &addr(0), request, &mut NoWorkloads::default());
    sent(&mut nodes[*relay]);
    nodes[*relay].handle_timeout(t + config().probe_timeout * 2, &NoWorkloads::default());
    let nack = sent(&mut nodes[*relay]).into_iter().find(|(_, m, _)| matches!(m.body, Body::Nack { .. }));
    let (_, _, nack) = nack.expect("the relay nacks");
    // The network delivers the nack twice: the copy must not stand in for
    // the relay that stayed silent.
    nodes[0].handle_message(t + config().probe_timeout * 2, &addr(*relay), &nack, &mut NoWorkloads::default());
    nodes[0].handle_message(t + config().probe_timeout * 2, &addr(*relay), &nack, &mut NoWorkloads::default());
    nodes[0].handle_timeout(t + config().probe_interval, &NoWorkloads::default());
    // Node 0's messages do get out (a relay answered), so the target's
    // silence counts against the target.
    assert_eq!(drain_events(&mut nodes[0]), vec![Event::MemberSuspect { id: id(target_index) }]);
    let counters = nodes[0].counters();
    assert_eq!((counters.probes_unanswered, counters.suspicions_raised, counters.nacks_received), (0, 1, 2));
    assert_eq!(nodes[0].local_health(), 1, "the relay that did not nack still costs a point");
}

#[test]
fn anti_entropy_names_the_suspecter_not_the_sender() {
    let mut nodes = mesh(4);
    // Node 2 suspected node 3; node 1 heard of it by gossip.
    let suspicion = Update::Suspect { id: id(3), generation: 1, incarnation: 0, by: id(2) };
    deliver_updates(&mut nodes[1], 2, vec![suspicion.clone()]);
    assert_eq!(drain_events(&mut nodes[1]), vec![Event::MemberSuspect { id: id(3) }]);
    let deadline = nodes[1].suspicions[&id(3)].deadline;
    assert_eq!(deadline, Instant::ZERO + Duration::from_secs(24), "a lone suspecter: the longest timeout");

    // Node 0 opens an exchange with node 1. Their views differ, so node 1
    // sends its entries: node 3's Suspect names node 2, who suspected it,
    // not node 1, who only heard of it.
    nodes[0].start_sync(Some(id(1)), addr(1), false, &NoWorkloads::default());
    let open = sent(&mut nodes[0]);
    assert_eq!(open.len(), 1);
    nodes[1].handle_message(Instant::ZERO, &addr(0), &open[0].2, &mut NoWorkloads::default());
    let reply = sent(&mut nodes[1]);
    assert_eq!(reply.len(), 1);
    assert!(matches!(reply[0].1.body, Body::Sync(_)));
    let suspects: Vec<&Update> = reply[0].1.updates.iter().filter(|u| matches!(u, Update::Suspect { .. })).collect();
    assert_eq!(suspects, vec![&suspicion]);

    // Node 0 now suspects node 3 too, on node 2's word, and when its entries
    // go back to node 1 they name node 2 again: no confirmation, node 1's
    // deadline stays where it was.
    nodes[0].handle_message(Instant::ZERO, &addr(1), &reply[0].2, &mut NoWorkloads::default());
    assert_eq!(drain_events(&mut nodes[0]), vec![Event::MemberSuspect { id: id(3) }]);
    assert_eq!(nodes[0].suspicions[&id(3)].raised_by, id(2));
    let back = sent(&mut nodes[0]);
    let back: Vec<_> = back.into_iter().filter(|(to, m, _)| *to == 1 && matches!(m.body, Body::Sync(_))).collect();
    assert_eq!(back.len(), 1, "node 1 asked for node 0's entries");
    assert!(back[0].1.updates.contains(&suspicion));
    nodes[1].handle_message(Instant::ZERO, &addr(0), &back[0].2, &mut NoWorkloads::default());
    assert_eq!(nodes[1].suspicions[&id(3)].confirmations(), 0);
    assert_eq!(nodes[1].suspicions[&id(3)].deadline, deadline);
}

/// After its warm-up, a node puts its coordinate in one ack of
/// `share_one_in`; before, in every one (here the warm-up is over at once).
#[test]
fn a_settled_node_shares_its_coordinate_in_one_ack_of_n() {
    let coordinate = crate::CoordinateConfig { warmup_samples: 0, share_one_in: 3, ..config().coordinate };
    let mut nodes = mesh_of(2, &Config { coordinate, ..config() });
    let mut with_coordinate = Vec::new();
    for seq in 1..=6 {
        let ping = Message { from: id(0), body: Body::Ping { seq, target: id(1) }, updates: vec![] };
        nodes[1].handle_message(Instant::ZERO, &addr(0), &wire::encode(0, &ping), &mut NoWorkloads::default());
        let reply = bodies(&mut nodes[1]);
        with_coordinate.push(matches!(reply[0].1, Body::AckCoordinate { .. }));
    }
    assert_eq!(with_coordinate, vec![false, false, true, false, false, true]);
    assert_eq!(nodes[1].counters().coordinates_sent, 2);
}

/// A malformed coordinate (a scale that would allow lengths of 2 hours) is
/// counted and ignored; the ack still answers the probe.
#[test]
fn a_malformed_coordinate_is_counted_and_ignored_but_the_ack_counts() {
    let mut nodes = mesh(2);
    let t = run_to_probe(&mut nodes[0]);
    let out = sent(&mut nodes[0]);
    let Body::Ping { seq, .. } = out[0].1.body else { panic!("expected a ping") };
    let coordinate = crate::PackedCoordinate { scale: 2, ..origin_packed() };
    let ack = Message { from: id(1), body: Body::AckCoordinate { seq, coordinate }, updates: vec![] };
    nodes[0].handle_message(t + MS, &addr(1), &wire::encode(0, &ack), &mut NoWorkloads::default());
    let counters = nodes[0].counters();
    assert_eq!((counters.probes_acked, counters.coordinates_rejected, counters.coordinate_samples), (1, 1, 0));
    assert_eq!(nodes[0].coordinate(), &crate::Coordinate::origin(&config().coordinate));
    assert_eq!(nodes[0].member_coordinate(id(1)), None);
}

/// A restart first heard of as a suspicion of the new run is a new run: the
/// layer above hears `MemberUp` (and forgets the old run's replicas) before
/// `MemberSuspect`.
#[test]
fn a_restart_first_heard_of_as_a_suspicion_is_announced_as_up() {
    let mut nodes = mesh(3);
    let suspect = Update::Suspect { id: id(1), generation: 2, incarnation: 0, by: id(2) };
    deliver_updates(&mut nodes[0], 2, vec![suspect]);
    assert_eq!(drain_events(&mut nodes[0]), [Event::MemberUp { id: id(1) }, Event::MemberSuspect { id: id(1) }]);
    assert_eq!(nodes[0].member(id(1)).map(|m| (m.generation, m.state)), Some((2, State::Suspect)));
}

/// New metadata given while leaving waits for the next join: publishing it
/// would make the node Alive again mid-leave.
#[test]
fn metadata_set_while_leaving_does_not_undo_the_leave() {
    let mut nodes = mesh(2);
    nodes[0].leave(Instant::ZERO);
    let mut meta = (*nodes[0].meta).clone();
    meta.labels.insert("zone".into(), "b".into());
    nodes[0].set_metadata(Instant::ZERO, meta).expect("valid");
    assert_eq!(nodes[0].member(id(0)).map(|m| m.state), Some(State::Left));
    nodes[0].join(Instant::ZERO, [addr(1)], &NoWorkloads::default());
    let me = nodes[0].member(id(0)).expect("self");
    assert_eq!((me.state, me.meta.labels.get("zone").map(String::as_str)), (State::Alive, Some("b")));
}
