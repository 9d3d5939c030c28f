//! The seed corpus: real messages, captured from a small cluster driven
//! through joins, a workload submitted and deleted, replica reports, a crash
//! (so probes go indirect and nack, and suspicion ends in death) and a
//! graceful leave; plus a few built by hand for what the run may not reach
//! (every update kind together, anti-entropy with all six range lists).
//!
//! Regenerate after a wire change (a test fails when a committed seed no
//! longer decodes):
//! `cargo test -p shoal-fuzz --test corpus -- --ignored regenerate_seed_corpus`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use shoal_protocol::wire::{self, Body, KeyRange, Message, RangeDigest, Sync, Update};
use shoal_protocol::{
    Address, CatalogEntry, Config, Driver, Identity, Instant, Metadata, Node, NodeId, ReplicaState, ReplicaStatus,
    Resources, RestartPolicy, Stamp, StatusEntry, WorkloadConfig, WorkloadSpec,
};

use crate::CLUSTER_ID;

/// Nodes in the capture cluster, numbered from 1. Node 1 is the one the
/// `handle_message` fixture plays.
pub const NODES: u64 = 4;

/// One seed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// The target whose corpus it belongs to.
    pub target: &'static str,
    /// Its file name: `seed-` and what the message holds.
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The transport address of node `index` (the simulator's form).
pub fn addr(index: u64) -> Address {
    Address::new(format!("sim:{index}")).unwrap_or_else(|error| panic!("a short address is valid: {error}"))
}

/// The configuration every capture node and the fixture use.
pub fn config() -> Config {
    Config { cluster_id: CLUSTER_ID, ..Config::lan() }
}

/// Node `index`'s identity: its id, generation 1, and metadata with a label
/// and a capacity (so placement has something to work with).
pub fn identity(index: u64) -> Identity {
    let mut meta = Metadata::new(format!("node-{index}"), addr(index));
    meta.labels.insert("zone".into(), if index % 2 == 0 { "eu-west".into() } else { "eu-north".into() });
    meta.capacity.cpu_millis = 4_000;
    meta.capacity.memory_bytes = 8 << 30;
    Identity { id: NodeId::from_index(index), generation: 1, meta }
}

/// The rng seed of node `index`.
pub fn node_seed(index: u64) -> u64 {
    0xf022_0000 + index
}

/// Every seed, for every target, in a stable order.
pub fn seed_corpus() -> Vec<Seed> {
    let mut whole_messages: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut to_node_one: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for sent in capture() {
        let Ok(message) = wire::decode(&sent.payload, CLUSTER_ID) else {
            panic!("the capture cluster sent a message it cannot decode");
        };
        let name = describe(&message);
        if sent.to == Some(1) {
            to_node_one.entry(name.clone()).or_insert_with(|| sent.payload.clone());
        }
        whole_messages.entry(name).or_insert(sent.payload);
    }
    for (name, message) in built() {
        let bytes = wire::encode(CLUSTER_ID, &message);
        whole_messages.insert(name.clone(), bytes.clone());
        to_node_one.insert(name, bytes);
    }
    let preamble_len = crate::preamble().len();
    let mut seeds = Vec::new();
    for (name, bytes) in &whole_messages {
        seeds.push(Seed { target: "wire_decode", name: format!("seed-{name}"), bytes: bytes.clone() });
        let body = bytes[preamble_len..].to_vec();
        seeds.push(Seed { target: "wire_decode_after_preamble", name: format!("seed-{name}"), bytes: body });
    }
    for (name, bytes) in to_node_one {
        seeds.push(Seed { target: "handle_message", name: format!("seed-{name}"), bytes });
    }
    let named: Vec<(String, Vec<u8>)> =
        whole_messages.into_iter().map(|(name, b)| (format!("seed-{name}"), b)).collect();
    let transport_seeds = crate::transport::seeds(&named);
    seeds.extend(transport_seeds.into_iter().map(|s| Seed { name: prefixed(s.name), ..s }));
    seeds
}

/// What a message holds, as a file name: the body kind, then each update
/// kind it carries (`sync-ranges-want-alive-workload`).
pub fn describe(message: &Message) -> String {
    let mut parts = vec![body_kind(&message.body).to_string()];
    if let Body::Sync(sync) = &message.body {
        let lists = [
            ("ranges", sync.ranges.is_empty()),
            ("want", sync.want.is_empty()),
            ("catalog_ranges", sync.catalog_ranges.is_empty()),
            ("catalog_want", sync.catalog_want.is_empty()),
            ("status_ranges", sync.status_ranges.is_empty()),
            ("status_want", sync.status_want.is_empty()),
        ];
        parts.extend(lists.iter().filter(|(_, empty)| !empty).map(|(name, _)| name.to_string()));
    }
    let kinds: BTreeSet<&str> = message.updates.iter().map(update_kind).collect();
    parts.extend(kinds.into_iter().map(str::to_string));
    parts.join("-")
}

/// The body's kind. An exhaustive match, so a new kind fails to compile
/// here until the seeds cover it.
pub fn body_kind(body: &Body) -> &'static str {
    match body {
        Body::Ping { .. } => "ping",
        Body::Ack { .. } => "ack",
        Body::AckCoordinate { .. } => "ackcoordinate",
        Body::PingReq { .. } => "pingreq",
        Body::Nack { .. } => "nack",
        Body::Gossip => "gossip",
        Body::Sync(_) => "sync",
    }
}

/// The update's kind (exhaustive, as [`body_kind`]).
pub fn update_kind(update: &Update) -> &'static str {
    match update {
        Update::Alive { .. } => "alive",
        Update::Suspect { .. } => "suspect",
        Update::Dead { .. } => "dead",
        Update::Left { .. } => "left",
        Update::Workload(_) => "workload",
        Update::Status(_) => "status",
    }
}

/// Every body kind and every update kind the seeds must cover.
pub const BODY_KINDS: [&str; 7] = ["ping", "ack", "ackcoordinate", "pingreq", "nack", "gossip", "sync"];
pub const UPDATE_KINDS: [&str; 6] = ["alive", "suspect", "dead", "left", "workload", "status"];

/// One message the capture cluster sent.
#[derive(Debug)]
struct Sent {
    to: Option<u64>,
    payload: Vec<u8>,
}

/// The node index an address of the form `sim:N` names.
fn index_of(addr: &Address) -> Option<u64> {
    addr.as_str().strip_prefix("sim:")?.parse().ok()
}

fn spec(name: &str, replicas: u32, driver: Driver) -> WorkloadSpec {
    WorkloadSpec {
        name: name.into(),
        replicas,
        resources: Resources { cpu_millis: 250, memory_bytes: 64 << 20 },
        constraints: BTreeMap::new(),
        driver,
        restart: RestartPolicy::default(),
    }
}

fn exec_driver() -> Driver {
    Driver::Exec {
        command: "sleep".into(),
        args: vec!["3600".into()],
        env: BTreeMap::from([("RUST_LOG".into(), "info".into())]),
        workdir: Some("/tmp".into()),
    }
}

fn docker_driver() -> Driver {
    Driver::Docker { image: "nginx:1".into(), args: vec![], env: BTreeMap::new(), ports: vec![(8080, 80)] }
}

/// Runs the capture cluster for a simulated minute, messages taking 10 ms,
/// and returns every message sent, in order.
fn capture() -> Vec<Sent> {
    const STEP_MILLIS: u64 = 10;
    const END_MILLIS: u64 = 60_000;
    const CRASH_AT_MILLIS: u64 = 20_000;
    const CRASHED: u64 = 4;
    let mut nodes: Vec<Node> = (1..=NODES)
        .map(|index| {
            Node::new(config(), WorkloadConfig::lan(), identity(index), node_seed(index), Instant::ZERO)
                .unwrap_or_else(|error| panic!("the capture nodes are valid: {error}"))
        })
        .collect();
    let mut sent = Vec::new();
    let mut in_flight: VecDeque<(u64, u64, Vec<u8>)> = VecDeque::new();
    for millis in (0..=END_MILLIS).step_by(usize::try_from(STEP_MILLIS).unwrap_or(10)) {
        let now = Instant::from_millis(millis);
        let crashed = |index: u64| index == CRASHED && millis >= CRASH_AT_MILLIS;
        match millis {
            0 => nodes.iter_mut().skip(1).for_each(|node| node.join(now, [addr(1)])),
            3_000 => {
                let _ = nodes[0].submit(now, spec("web", 2, exec_driver()));
                let _ = nodes[1].submit(now, spec("cache", 1, docker_driver()));
            }
            6_000 => {
                let running = ReplicaStatus::new("web", 0, ReplicaState::Running);
                let failed = ReplicaStatus { restarts: 3, detail: "exit 1".into(), ..running.clone() };
                nodes[1].report_replicas(now, [running]);
                nodes[2].report_replicas(now, [ReplicaStatus { replica: 1, ..failed }]);
            }
            9_000 => {
                let _ = nodes[1].delete_workload(now, "cache");
            }
            50_000 => nodes[2].leave(now),
            _ => {}
        }
        for _ in 0..in_flight.len() {
            let Some((to, from, payload)) = in_flight.pop_front() else { break };
            if !crashed(to) && !crashed(from) {
                nodes[usize::try_from(to - 1).unwrap_or(0)].handle_message(now, &addr(from), &payload);
            }
        }
        for (from, node) in (1..).zip(nodes.iter_mut()) {
            if crashed(from) {
                continue;
            }
            if node.poll_timeout().is_some_and(|deadline| deadline <= now) {
                node.handle_timeout(now);
            }
            while let Some(transmit) = node.poll_transmit() {
                let to = index_of(&transmit.addr);
                if let Some(to) = to.filter(|to| (1..=NODES).contains(to)) {
                    in_flight.push_back((to, from, transmit.payload.clone()));
                }
                sent.push(Sent { to, payload: transmit.payload });
            }
            while node.poll_event().is_some() {}
        }
    }
    sent
}

/// Messages built by hand, for what the capture may not produce: every
/// update kind in one message, all six anti-entropy lists at every depth,
/// every replica state, a Docker spec and a tombstone, and a plain ack.
fn built() -> Vec<(String, Message)> {
    let node = NodeId::from_index;
    let mut meta = identity(7).meta;
    meta.addrs.extend([addr(70), addr(71), addr(72)]);
    meta.labels.insert("arch".into(), "aarch64".into());
    let states = [
        ReplicaState::Starting,
        ReplicaState::Running,
        ReplicaState::Releasing,
        ReplicaState::Failed,
        ReplicaState::Stopped,
    ];
    let mut updates = vec![
        Update::Alive { id: node(7), generation: 3, incarnation: 300, meta: Arc::new(meta) },
        Update::Suspect { id: node(8), generation: u64::MAX, incarnation: u32::MAX, by: node(2) },
        Update::Dead { id: node(9), generation: 1, incarnation: 70_000, by: node(3) },
        Update::Left { id: node(10), generation: 1 << 40, incarnation: 0 },
        Update::Workload(CatalogEntry {
            name: "cache".into(),
            stamp: Stamp { clock: 12, node: node(2) },
            spec: Some(Arc::new(spec("cache", 3, docker_driver()))),
        }),
        Update::Workload(CatalogEntry { name: "gone".into(), stamp: Stamp { clock: 99, node: node(3) }, spec: None }),
    ];
    updates.extend((0..).zip(states).map(|(replica, state)| {
        let status = ReplicaStatus { workload: "web".into(), replica, state, restarts: 1, detail: "ok".into() };
        Update::Status(StatusEntry { node: node(2), generation: 1, version: u64::from(replica) + 1, status })
    }));
    let digest =
        |depth: u8, prefix: u64| RangeDigest { range: KeyRange { depth, prefix }, hash: prefix ^ 0xabc, count: 3 };
    let ranges = vec![digest(0, 0), digest(1, 0x3000_0000_0000_0000), digest(KeyRange::MAX_DEPTH, u64::MAX)];
    let want = vec![KeyRange::ROOT, KeyRange { depth: 2, prefix: 0x4500_0000_0000_0000 }];
    let sync = Sync {
        round: 2,
        ranges: ranges.clone(),
        want: want.clone(),
        catalog_ranges: ranges.clone(),
        catalog_want: want.clone(),
        status_ranges: ranges,
        status_want: want,
    };
    let ping_req = Body::PingReq { seq: 9, target: node(3), target_addr: addr(3), nack_after_micros: 400_000 };
    vec![
        ("built-gossip-every-update".into(), Message { from: node(2), body: Body::Gossip, updates }),
        ("built-sync-every-list".into(), Message { from: node(2), body: Body::Sync(sync), updates: vec![] }),
        ("built-pingreq".into(), Message { from: node(2), body: ping_req, updates: vec![] }),
        // A young node's direct acks carry its coordinate, and the capture
        // is young throughout: a plain ack (as relays forward, and settled
        // nodes send four times in five) is built here.
        ("built-ack".into(), Message { from: node(2), body: Body::Ack { seq: 7 }, updates: vec![] }),
    ]
}

fn prefixed(name: String) -> String {
    if name.starts_with("seed-") { name } else { format!("seed-{name}") }
}
