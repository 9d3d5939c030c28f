//! Only holders of the cluster key get in; garbage is dropped and counted;
//! IPv6 works.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, RngCore};
use shoal_node::crypto::{ClusterKey, Keyring};
use shoal_node::keys::KeyStore;
use shoal_node::store::DataDir;
use shoal_node::transport::{Transport, TransportConfig};
use shoal_protocol::{Address, Config, Identity, Instant, Metadata, Node, NodeId, State, WorkloadConfig};
use shoal_tests::{Agent, count_in, new_key, state_of, test_dir, wait_until};

/// Random bytes of random length up to `max`.
fn random_bytes(max: usize) -> Vec<u8> {
    let mut rng = rand::rng();
    let mut bytes = vec![0; rng.random_range(0..max)];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// A genuine protocol message (a join's anti-entropy request).
fn genuine_message(to: &Address) -> anyhow::Result<Vec<u8>> {
    let config = Config { cluster_id: shoal_node::agent::CLUSTER_ID, ..Config::local() };
    let me =
        Identity { id: NodeId([7; 16]), generation: 1, meta: Metadata::new("forger", Address::new("127.0.0.1:9")?) };
    let mut node = Node::new(config, WorkloadConfig::local(), me, 1, Instant::ZERO)?;
    node.join(Instant::ZERO, [to.clone()]);
    Ok(node.poll_transmit().map(|t| t.payload).unwrap_or_default())
}

/// Plays a peer that sends `messages` to `target` through a real transport,
/// sealed under `key` (or raw datagrams, when `key` is `None`), a few at a
/// time.
fn hostile_peer(
    dir: &std::path::Path,
    target: &Address,
    key: Option<&ClusterKey>,
    messages: &[Vec<u8>],
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let config = TransportConfig { bind: "127.0.0.1:0".parse()?, max_datagram: 1400, max_message: 1 << 16 };
        let ring = Keyring::new(key.cloned().unwrap_or_else(ClusterKey::generate), []);
        let keys = Arc::new(KeyStore::in_memory(ring, DataDir::open(dir)?));
        let (mut transport, _events) = Transport::start(&config, keys).await?;
        transport.set_advertised(&Address::new(transport.local_addr().to_string())?);
        let dest = target.as_str().parse()?;
        for chunk in messages.chunks(16) {
            for message in chunk {
                match key {
                    Some(_) => transport.send(target, message),
                    None => transport.send_datagram(dest, message),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        transport.shutdown(Duration::from_secs(1)).await;
        anyhow::Ok(())
    })
}

#[test]
fn wrong_key_and_garbage_are_kept_out_and_the_node_keeps_working() -> anyhow::Result<()> {
    let dir = test_dir("admission");
    let key_hex = new_key();
    let key = ClusterKey::parse(&key_hex)?;
    let keyed = vec!["--cluster-key".to_string(), key_hex, "--no-mdns".into()];
    let a = Agent::start(&dir, "a", &keyed)?;
    wait_until(Duration::from_secs(30), "a answers", || a.members().is_some())?;

    // An agent holding another key tries to join through `a`.
    let other_key = vec!["--cluster-key".to_string(), new_key(), "--no-mdns".into()];
    let intruder = Agent::start(&dir, "intruder", &[other_key, a.join_arg()].concat())?;
    let unknown_key = |agent: &Agent| {
        agent.metric("shoal_transport_frames_rejected_total{reason=\"unknown_key\"}").unwrap_or(0.0)
            + agent.metric("shoal_transport_datagrams_rejected_total{reason=\"unknown_key\"}").unwrap_or(0.0)
    };
    wait_until(Duration::from_secs(30), "a rejects what the intruder sends", || unknown_key(&a) >= 1.0)
        .map_err(|e| e.context(a.log_tail()))?;

    // Random datagrams at the gossip port...
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    for _ in 0..200 {
        socket.send_to(&random_bytes(1500), a.gossip)?;
        std::thread::sleep(Duration::from_millis(1));
    }
    // ...and, from a peer holding the key, sealed garbage and truncated
    // messages, as datagrams (short ones) and on streams (the join's sync).
    let target = Address::new(a.gossip.to_string())?;
    let genuine = genuine_message(&target)?;
    let mut messages: Vec<Vec<u8>> = (0..30).map(|_| random_bytes(1400)).collect();
    messages.extend((1..genuine.len()).step_by((genuine.len() / 30).max(1)).map(|cut| genuine[..cut].to_vec()));
    let sent = messages.len() as f64;
    hostile_peer(&dir, &target, Some(&key), &messages)?;

    wait_until(Duration::from_secs(10), "a counts the undecodable messages", || {
        a.metric("shoal_decode_failures_total").unwrap_or(0.0) >= sent * 0.8
    })
    .map_err(|e| {
        let transport = a.client().metrics().unwrap_or_default();
        let transport: Vec<&str> =
            transport.lines().filter(|l| !l.starts_with("#") && !l.contains("_bucket")).collect();
        e.context(format!("decode failures {:?} of {sent}; {transport:#?}", a.metric("shoal_decode_failures_total")))
    })?;
    let malformed = a.metric("shoal_transport_datagrams_rejected_total{reason=\"malformed\"}").unwrap_or(0.0);
    assert!(malformed >= 150.0, "random datagrams are rejected: {malformed}");

    // `a` still works: a keyed agent joins it, and neither sees the intruder.
    let b = Agent::start(&dir, "b", &[keyed, a.join_arg()].concat())?;
    wait_until(Duration::from_secs(20), "a and b see each other alive", || {
        count_in(&a, State::Alive) == Some(2) && count_in(&b, State::Alive) == Some(2)
    })
    .map_err(|e| e.context(a.log_tail()))?;
    assert!(state_of(&a, "intruder").is_none() && state_of(&b, "intruder").is_none(), "the intruder got in");
    assert_eq!(intruder.members().map(|m| m.len()), Some(1), "the intruder learnt nothing");
    assert!(a.members().is_some_and(|m| m.len() == 2), "no forged member got in: {:?}", a.members());
    Ok(())
}

#[test]
fn agents_mesh_over_ipv6() -> anyhow::Result<()> {
    let dir = test_dir("ipv6");
    let key = vec!["--cluster-key".to_string(), new_key(), "--no-mdns".into()];
    let port = |_| UdpSocket::bind("[::1]:0").and_then(|s| s.local_addr());
    let mut a = Agent::prepare(&dir, "v6-a", &key);
    a.gossip = port(())?;
    a.spawn()?;
    let mut b = Agent::prepare(&dir, "v6-b", &[key, a.join_arg()].concat());
    b.gossip = port(())?;
    b.spawn()?;
    wait_until(Duration::from_secs(30), "both see 2 alive over IPv6", || {
        count_in(&a, State::Alive) == Some(2) && count_in(&b, State::Alive) == Some(2)
    })
    .map_err(|e| e.context(b.log_tail()))?;
    let seen = state_of(&a, "v6-b").map(|m| m.addr).unwrap_or_default();
    assert!(seen.starts_with("[::1]:"), "advertised over IPv6: {seen}");
    Ok(())
}
