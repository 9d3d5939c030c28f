//! Raw UDP garbage at the gossip port (random bytes, truncated and
//! undecryptable QUIC Initials, packets for unknown connections) is dropped
//! by QUIC, counted in `shoal_transport_datagrams_dropped_total`, and the
//! mesh keeps working.
#![allow(clippy::print_stderr)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use rand::{Rng, RngCore};
use shoal_protocol::State;
use shoal_tests::{Agent, count_in, new_key, test_dir, wait_until};

const METRIC: &str = "shoal_transport_datagrams_dropped_total";

fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A QUIC v1 Initial of `total` bytes: a well-formed long header (8-byte
/// connection ids, no token, the right length) and a payload of noise that
/// does not decrypt.
fn initial(total: usize) -> Vec<u8> {
    let mut packet = vec![0xc3]; // long header, fixed bit, Initial, 4-byte packet number
    packet.extend(1u32.to_be_bytes());
    for _ in 0..2 {
        packet.push(8);
        packet.extend(random(8));
    }
    packet.push(0); // no token
    let rest = total - packet.len() - 2;
    let rest16 = u16::try_from(rest).unwrap_or(0);
    packet.extend((0x4000 | rest16).to_be_bytes()); // two-byte varint
    packet.extend(random(rest));
    packet
}

/// A short-header packet for a connection id the agent never issued.
fn short_header() -> Vec<u8> {
    let mut rng = rand::rng();
    let mut packet = vec![0x40 | rng.random_range(0..0x40u8)];
    packet.extend(random(rng.random_range(8..200)));
    packet
}

/// The datagrams the kernel dropped at the socket bound to `port` (its receive
/// buffer was full), from /proc/net/udp: those never reached QUIC.
fn socket_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .filter(|line| line.split_whitespace().nth(1) == Some(local.as_str()))
        .filter_map(|line| line.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

/// The drop counter: its total, and by reason.
type Counts = (u64, Vec<(String, u64)>);

fn dropped(agent: &Agent) -> anyhow::Result<Counts> {
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
    let before = dropped(agent)?;
    let kernel_before = socket_drops(to.port());
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    for datagram in datagrams {
        socket.send_to(datagram, to)?;
        std::thread::sleep(Duration::from_millis(2));
    }
    let sent = datagrams.len() as u64;
    let _ = wait_until(Duration::from_secs(5), "every datagram is counted", || {
        let kernel = socket_drops(to.port()) - kernel_before;
        dropped(agent).is_ok_and(|(total, _)| total - before.0 + kernel >= sent)
    });
    std::thread::sleep(Duration::from_millis(300)); // anything counted late, or twice, shows up
    let kernel = socket_drops(to.port()) - kernel_before;
    Ok((before, dropped(agent)?, kernel))
}

#[test]
fn garbage_datagrams_are_dropped_and_counted_and_the_mesh_keeps_working() -> anyhow::Result<()> {
    let dir = test_dir("garbage");
    let keyed = vec!["--cluster-key".to_string(), new_key(), "--no-mdns".into()];
    let a = Agent::start(&dir, "a", &keyed)?;
    let b = Agent::start(&dir, "b", &[keyed.clone(), a.join_arg()].concat())?;
    let c = Agent::start(&dir, "c", &[keyed.clone(), a.join_arg()].concat())?;
    let agents = [&a, &b, &c];
    wait_until(Duration::from_secs(30), "3 alive everywhere", || {
        agents.iter().all(|x| count_in(x, State::Alive) == Some(3))
    })
    .map_err(|e| e.context(a.log_tail()))?;
    // Healthy traffic is not counted: a fresh, stable mesh has dropped nothing.
    for agent in agents {
        assert_eq!(dropped(agent)?.0, 0, "{} counted healthy traffic: {:?}", agent.name, dropped(agent)?.1);
    }

    let mut rng = rand::rng();
    let full = initial(1200);
    // What is sent, and the one reason all of it must be counted under.
    let phases: [(&str, Vec<_>, Option<&str>); 4] = [
        ("random bytes", (0..200).map(|_| random(rng.random_range(1..1400))).collect(), None),
        // Cut inside the header, at its end (23 bytes), and just after it.
        ("truncated Initials", (0..100).map(|i| full[..1 + i % 40].to_vec()).collect(), Some("malformed")),
        ("undecryptable Initials", (0..50).map(|_| initial(1200)).collect(), Some("bad_initial")),
        ("unknown connection ids", (0..50).map(|_| short_header()).collect(), Some("unknown_connection")),
    ];
    for (what, datagrams, expected) in &phases {
        let sent = datagrams.len() as u64;
        let (before, after, kernel) = blast(&a, a.gossip, datagrams)?;
        let counted = after.0 - before.0;
        eprintln!("{what}: sent {sent}, counted {counted}, dropped by the kernel {kernel}, now {:?}", after.1);
        // Exactly one count per datagram that reached QUIC: no tolerance
        // beyond what the kernel itself reports dropping at the socket.
        assert_eq!(counted + kernel, sent, "{what}: each datagram counted once; now {:?}", after.1);
        if let Some(reason_name) = expected {
            let by_reason = reason(&after.1, reason_name) - reason(&before.1, reason_name);
            assert_eq!(by_reason, counted, "{what} are counted as {reason_name}: {:?}", after.1);
        }
    }
    let health = a.client().health()?;
    assert!(health.datagrams_dropped >= 300, "/v1/health reports the drops: {health:?}");

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
