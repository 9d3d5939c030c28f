//! Fuzz targets for everything that parses bytes from the network.
//!
//! A target is a plain `fn(&[u8])` that panics when a property breaks, listed
//! in [`TARGETS`] under the name of its corpus directory. The same function
//! is driven by AFL++ (`fuzz/afl`, through `scripts/fuzz.sh`) and by the
//! workspace test run (`fuzz/tests/corpus.rs`, which replays every corpus and
//! regression file and a few thousand seeded mutations of them), so a crash
//! the fuzzer finds becomes a regression file that `cargo test` replays.
//!
//! Adding a target: write the function here (or in a module of this crate),
//! add one [`Target`] line to [`TARGETS`], and give it seeds in
//! `fuzz/corpus/<name>/` (see [`seeds`] for how the protocol's are made).

pub mod mutate;
pub mod seeds;
pub mod transport;

use std::time::Duration;

use shoal_protocol::wire::{self, Body};
use shoal_protocol::{Address, Counters, Instant, Node, NodeId, Peer, WorkloadConfig};

/// One fuzz target: the name of its corpus and regression directories, and
/// the function that takes one input and panics if a property breaks.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Directory name under `fuzz/corpus/` and `fuzz/regressions/`; also the
    /// argument `scripts/fuzz.sh` and the AFL binary take.
    pub name: &'static str,
    /// Runs one input. Must be deterministic: the same bytes always take the
    /// same path, or AFL's coverage and its crash reproduction mean nothing.
    pub run: fn(&[u8]),
}

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    Target { name: "wire_decode", run: wire_decode },
    Target { name: "wire_decode_after_preamble", run: wire_decode_after_preamble },
    Target { name: "handle_message", run: handle_message },
    Target { name: "datagram_open", run: transport::datagram_open },
    Target { name: "stream_frames", run: transport::stream_frames },
    Target { name: "stream_message_decode", run: transport::stream_message_decode },
];

/// The target called `name`, if there is one.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|target| target.name == name)
}

/// The cluster id every seed is encoded for and every target decodes with.
/// Not zero, so the fuzzer has to keep the varint of a real id intact.
pub const CLUSTER_ID: u64 = 0x5e0a_1f22;

/// `wire::decode` on arbitrary bytes. Whatever it accepts must survive a
/// round trip (decode, encode, decode gives the same message, and encoding
/// is canonical: re-encoding the result gives the same bytes), and no strict
/// prefix of an accepted message is itself accepted.
pub fn wire_decode(bytes: &[u8]) {
    let Ok(message) = wire::decode(bytes, CLUSTER_ID) else { return };
    let encoded = wire::encode(CLUSTER_ID, &message);
    assert!(encoded.len() <= bytes.len(), "re-encoding grew the message: {} > {} bytes", encoded.len(), bytes.len());
    let again =
        wire::decode(&encoded, CLUSTER_ID).unwrap_or_else(|error| panic!("re-encoded message refused: {error}"));
    assert_eq!(again, message, "decode -> encode -> decode changed the message");
    assert_eq!(wire::encode(CLUSTER_ID, &again), encoded, "encoding is not canonical");
    assert!(wire::decode(&bytes[..bytes.len() - 1], CLUSTER_ID).is_err(), "a strict prefix of a message decoded");
}

/// The same as [`wire_decode`], with a valid preamble and cluster id put in
/// front of the input, so every input reaches the bincode decoder (the
/// fuzzer need not rediscover the magic and the cluster-id varint).
pub fn wire_decode_after_preamble(body: &[u8]) {
    let mut bytes = preamble();
    bytes.extend_from_slice(body);
    wire_decode(&bytes);
}

/// The magic, the wire version and [`CLUSTER_ID`]: what every message this
/// cluster accepts starts with.
pub fn preamble() -> Vec<u8> {
    let empty = wire::Message { from: NodeId::default(), body: Body::Gossip, updates: Vec::new() };
    let encoded = wire::encode(CLUSTER_ID, &empty);
    // The empty message ends with the 16-byte id, the Gossip tag and a zero
    // update count: what is left is the preamble.
    encoded[..encoded.len() - 16 - 2].to_vec()
}

/// When the fixture node handles the input: one second in, after its first
/// timers fired (a probe is in flight, so an Ack can match it).
const FIXTURE_NOW: Instant = Instant::from_millis(1_000);

/// The address the input arrives from: peer 2's, as in the seed capture.
fn sender_addr() -> Address {
    seeds::addr(2)
}

/// Node 1 of the seed capture ([`seeds::identity`]), knowing peers 2 to 4 as
/// Alive, with its timers run up to [`FIXTURE_NOW`]. Built afresh for every
/// input, so inputs do not depend on each other.
pub fn fixture() -> Node {
    let config = seeds::config();
    let mut node = Node::new(config, WorkloadConfig::lan(), seeds::identity(1), seeds::node_seed(1), Instant::ZERO)
        .unwrap_or_else(|error| panic!("the fixture's config and identity are valid: {error}"));
    let peers: Vec<Peer> = (2..=seeds::NODES)
        .map(|index| {
            let identity = seeds::identity(index);
            Peer::new(identity.id, identity.generation, 0, identity.meta.into())
                .unwrap_or_else(|error| panic!("the seed metadata is valid: {error}"))
        })
        .collect();
    node.preload(Instant::ZERO, &peers);
    node.handle_timeout(FIXTURE_NOW);
    drain(&mut node);
    node
}

/// Messages this node refused, whatever the reason.
fn refused(counters: &Counters) -> u64 {
    counters.decode_failures + counters.wrong_cluster + counters.wrong_version
}

/// `Node::handle_message` on arbitrary bytes, through a fixture node
/// that knows a few peers: this exercises the lazy incoming decoder, metadata
/// validation, the merges of member, catalog and status facts, probes, relays
/// and anti-entropy. Checks that the node refuses exactly what `wire::decode`
/// refuses, that everything it sends in answer (then, and when the timers the
/// message set go off) decodes, and that datagrams fit the datagram budget.
pub fn handle_message(bytes: &[u8]) {
    let mut node = fixture();
    let accepted = wire::decode(bytes, CLUSTER_ID).is_ok();
    let refused_before = refused(node.membership().counters());
    node.handle_message(FIXTURE_NOW, &sender_addr(), bytes);
    let was_refused = refused(node.membership().counters()) > refused_before;
    assert_eq!(!was_refused, accepted, "handle_message and wire::decode disagree on the input");
    drain(&mut node);
    // The probe and relay timeouts, so an Ack, PingReq or Nack is followed
    // through to the indirect probe, the nack and the suspicion.
    node.handle_timeout(FIXTURE_NOW + node.membership().config().probe_timeout + Duration::from_millis(1));
    drain(&mut node);
}

/// Takes every transmit and event, checking that each transmit decodes and
/// that everything but an anti-entropy message fits one datagram.
fn drain(node: &mut Node) {
    let datagram_budget = node.membership().config().datagram_budget;
    while let Some(transmit) = node.poll_transmit() {
        let message = wire::decode(&transmit.payload, CLUSTER_ID)
            .unwrap_or_else(|error| panic!("the node sent a message it would refuse: {error}"));
        if !matches!(message.body, Body::Sync(_)) {
            assert!(
                transmit.payload.len() <= datagram_budget,
                "a {:?} of {} bytes exceeds the {datagram_budget}-byte datagram budget",
                message.body,
                transmit.payload.len()
            );
        }
    }
    while node.poll_event().is_some() {}
}
