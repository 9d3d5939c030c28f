//! Raw garbage at the gossip port is dropped and counted, each datagram
//! exactly once under its reason, and the mesh keeps working: random bytes
//! and short datagrams (`malformed`), datagrams sealed under another key
//! (`unknown_key`), datagrams naming our key that do not authenticate
//! (`forged`), and garbage on a TCP connection (the connection is closed).
#![allow(clippy::print_stderr)]

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use rand::{Rng, RngCore};
use shoal_node::crypto::{ClusterKey, Keyring, SEAL_OVERHEAD};
use shoal_protocol::State;
use shoal_tests::{Agent, count_in, new_key, test_dir, wait_until};

const METRIC: &str = "shoal_transport_datagrams_rejected_total";

fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// The datagrams the kernel dropped at the socket bound to `port` (its
/// receive buffer was full), from /proc/net/udp: those never reached the agent.
fn socket_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .filter(|line| line.split_whitespace().nth(1) == Some(local.as_str()))
        .filter_map(|line| line.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

/// The rejection counter: its total, and by reason.
type Counts = (u64, Vec<(String, u64)>);

fn rejected(agent: &Agent) -> anyhow::Result<Counts> {
    let text = agent.client().metrics()?;
    let mut reasons = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(METRIC)) {
        let reason = line.split('"').nth(1).unwrap_or_default().to_string();
        let value = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0);
        reasons.push((reason, value));
    }
    Ok((reasons.iter().map(|(_, n)| n).sum(), reasons))
}

fn reason(counts: &[(String, u64)], name: &str) -> u64 {
    counts.iter().find(|(r, _)| r == name).map_or(0, |(_, n)| *n)
}

/// Sends `datagrams` to `to`, paced so a debug-build agent keeps up, then
/// waits until the counter has moved by all of them (less any the kernel
/// dropped) or a few seconds pass. Returns the counts before and after, and
/// the kernel's drops.
fn blast(agent: &Agent, to: SocketAddr, datagrams: &[Vec<u8>]) -> anyhow::Result<(Counts, Counts, u64)> {
    let before = rejected(agent)?;
    let kernel_before = socket_drops(to.port());
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    for datagram in datagrams {
        socket.send_to(datagram, to)?;
        std::thread::sleep(Duration::from_millis(2));
    }
    let sent = datagrams.len() as u64;
    let _ = wait_until(Duration::from_secs(5), "every datagram is counted", || {
        let kernel = socket_drops(to.port()) - kernel_before;
        rejected(agent).is_ok_and(|(total, _)| total - before.0 + kernel >= sent)
    });
    std::thread::sleep(Duration::from_millis(300)); // anything counted late, or twice, shows up
    let kernel = socket_drops(to.port()) - kernel_before;
    Ok((before, rejected(agent)?, kernel))
}

#[test]
fn garbage_datagrams_are_dropped_and_counted_and_the_mesh_keeps_working() -> anyhow::Result<()> {
    let dir = test_dir("garbage");
    let key = new_key();
    let keyed = vec!["--cluster-key".to_string(), key.clone(), "--no-mdns".into()];
    let a = Agent::start(&dir, "a", &keyed)?;
    let b = Agent::start(&dir, "b", &[keyed.clone(), a.join_arg()].concat())?;
    let c = Agent::start(&dir, "c", &[keyed.clone(), a.join_arg()].concat())?;
    let agents = [&a, &b, &c];
    wait_until(Duration::from_secs(30), "3 alive everywhere", || {
        agents.iter().all(|x| count_in(x, State::Alive) == Some(3))
    })
    .map_err(|e| e.context(a.log_tail()))?;
    // Healthy traffic is not counted: a fresh, stable mesh has rejected nothing.
    for agent in agents {
        assert_eq!(rejected(agent)?.0, 0, "{} counted healthy traffic: {:?}", agent.name, rejected(agent)?.1);
    }

    let mut rng = rand::rng();
    let ours = ClusterKey::parse(&key)?.id();
    let other = Keyring::new(ClusterKey::generate(), []);
    let forged = |len: usize| {
        let mut datagram = vec![1];
        datagram.extend(ours.0);
        datagram.extend(random(len));
        datagram
    };
    // What is sent, and the one reason all of it must be counted under.
    let phases: [(&str, Vec<_>, Option<&str>); 4] = [
        ("random bytes", (0..200).map(|_| random(rng.random_range(1..1400))).collect(), None),
        ("short datagrams", (0..100).map(|i| random(i % SEAL_OVERHEAD)).collect(), Some("malformed")),
        ("another key", (0..50).map(|i| other.seal(&random(i * 20))).collect(), Some("unknown_key")),
        ("forged under our key id", (0..50).map(|i| forged(SEAL_OVERHEAD + i * 20)).collect(), Some("forged")),
    ];
    for (what, datagrams, expected) in &phases {
        let sent = datagrams.len() as u64;
        let (before, after, kernel) = blast(&a, a.gossip, datagrams)?;
        let counted = after.0 - before.0;
        eprintln!("{what}: sent {sent}, counted {counted}, dropped by the kernel {kernel}, now {:?}", after.1);
        // Exactly one count per datagram that reached the agent: no tolerance
        // beyond what the kernel itself reports dropping at the socket.
        assert_eq!(counted + kernel, sent, "{what}: each datagram counted once; now {:?}", after.1);
        if let Some(reason_name) = expected {
            let by_reason = reason(&after.1, reason_name) - reason(&before.1, reason_name);
            assert_eq!(by_reason, counted, "{what} are counted as {reason_name}: {:?}", after.1);
        }
    }
    let health = a.client().health()?;
    assert!(health.datagrams_dropped >= 400, "/v1/health reports the drops: {health:?}");

    // Garbage on the stream port: a huge length prefix, then random frames.
    let mut huge = TcpStream::connect(a.gossip)?;
    huge.write_all(&u32::MAX.to_be_bytes())?;
    for _ in 0..5 {
        let mut stream = TcpStream::connect(a.gossip)?;
        let body = random(200);
        stream.write_all(&(body.len() as u32).to_be_bytes())?;
        stream.write_all(&body)?;
    }
    wait_until(Duration::from_secs(5), "the bad frames are counted", || {
        let malformed = a.metric("shoal_transport_frames_malformed_total").unwrap_or(0.0);
        let refused = a.metric("shoal_transport_frames_rejected_total{reason=\"malformed\"}").unwrap_or(0.0)
            + a.metric("shoal_transport_frames_rejected_total{reason=\"unknown_key\"}").unwrap_or(0.0);
        malformed >= 1.0 && malformed + refused >= 6.0
    })?;

    // The mesh still works: everyone alive, and a new member joins through `a`.
    for agent in agents {
        assert_eq!(count_in(agent, State::Alive), Some(3), "{} sees all 3 alive after the garbage", agent.name);
    }
    let d = Agent::start(&dir, "d", &[keyed, a.join_arg()].concat())?;
    wait_until(Duration::from_secs(30), "4 alive everywhere", || {
        [&a, &b, &c, &d].iter().all(|x| count_in(x, State::Alive) == Some(4))
    })
    .map_err(|e| e.context(d.log_tail()))?;
    Ok(())
}
