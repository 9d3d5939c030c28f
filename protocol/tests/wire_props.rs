//! Property tests of the wire format through the public API: every message
//! round-trips, and no input, however hostile, panics the decoder.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use shoal_protocol::PackedCoordinate;
use shoal_protocol::wire::{self, Body, KeyRange, Message, RangeDigest, Sync, Update};
use shoal_protocol::{
    Address, Capacity, CatalogEntry, Driver, Metadata, NodeId, ReplicaState, ReplicaStatus, Resources, RestartPolicy,
    Stamp, StatusEntry, WorkloadSpec,
};

fn node_id() -> impl Strategy<Value = NodeId> + Clone {
    any::<[u8; 16]>().prop_map(NodeId)
}

fn address() -> impl Strategy<Value = Address> {
    "[a-z0-9:/.]{1,60}".prop_map(|s| Address::new(s).expect("1..=60 bytes"))
}

fn metadata() -> impl Strategy<Value = Arc<Metadata>> {
    (
        "[a-z0-9-]{1,20}",
        prop::collection::vec(address(), 1..3),
        any::<(u32, u64)>(),
        prop::collection::btree_map("[a-z]{1,8}", "[a-z0-9]{0,8}", 0..4),
    )
        .prop_map(|(name, addrs, (cpu_millis, memory_bytes), labels)| {
            Arc::new(Metadata {
                name,
                addrs,
                capacity: Capacity { cpu_millis, memory_bytes },
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
            })
        })
}

fn update() -> impl Strategy<Value = Update> {
    let version = (node_id(), any::<u64>(), any::<u32>());
    prop_oneof![
        (version.clone(), metadata()).prop_map(|((id, generation, incarnation), meta)| Update::Alive {
            id,
            generation,
            incarnation,
            meta
        }),
        (version.clone(), node_id()).prop_map(|((id, generation, incarnation), by)| Update::Suspect {
            id,
            generation,
            incarnation,
            by
        }),
        (version.clone(), node_id()).prop_map(|((id, generation, incarnation), by)| Update::Dead {
            id,
            generation,
            incarnation,
            by
        }),
        version.prop_map(|(id, generation, incarnation)| Update::Left { id, generation, incarnation }),
        (node_id(), any::<u64>(), "[a-z][a-z0-9-]{0,20}", any::<bool>(), 0u32..5).prop_map(
            |(node, clock, name, live, replicas)| {
                let spec = WorkloadSpec {
                    name: name.clone(),
                    replicas,
                    resources: Resources { cpu_millis: 250, memory_bytes: 64 << 20 },
                    constraints: BTreeMap::from([("zone".to_string(), "edge-1".to_string())]),
                    driver: Driver::Exec {
                        command: "sleep".into(),
                        args: vec!["1".into()],
                        env: BTreeMap::new(),
                        workdir: None,
                    },
                    restart: RestartPolicy::default(),
                };
                Update::Workload(CatalogEntry {
                    name,
                    stamp: Stamp { clock, node },
                    spec: live.then(|| Arc::new(spec)),
                })
            }
        ),
        (node_id(), any::<u64>(), any::<u64>(), "[a-z][a-z0-9-]{0,20}", any::<u16>(), 0u8..4, "[ -~]{0,40}").prop_map(
            |(node, generation, version, workload, replica, state, detail)| {
                let state =
                    [ReplicaState::Starting, ReplicaState::Running, ReplicaState::Failed, ReplicaState::Stopped]
                        [usize::from(state)];
                let status = ReplicaStatus { workload, replica, state, restarts: 2, detail };
                Update::Status(StatusEntry { node, generation, version, status })
            }
        ),
    ]
}

fn key_range() -> impl Strategy<Value = KeyRange> {
    (0..=KeyRange::MAX_DEPTH, any::<u64>()).prop_map(|(depth, prefix)| KeyRange { depth, prefix })
}

fn body() -> impl Strategy<Value = Body> {
    let digest =
        (key_range(), any::<u64>(), any::<u32>()).prop_map(|(range, hash, count)| RangeDigest { range, hash, count });
    prop_oneof![
        (any::<u32>(), node_id()).prop_map(|(seq, target)| Body::Ping { seq, target }),
        any::<u32>().prop_map(|seq| Body::Ack { seq }),
        (any::<u32>(), any::<u8>(), any::<u8>(), prop::collection::vec(any::<[u8; 2]>(), 0..=18)).prop_map(
            |(seq, scale, error, lengths)| Body::AckCoordinate {
                seq,
                coordinate: PackedCoordinate { scale, error, lengths }
            }
        ),
        (any::<u32>(), node_id(), address(), any::<u32>()).prop_map(|(seq, target, target_addr, nack_after_micros)| {
            Body::PingReq { seq, target, target_addr, nack_after_micros }
        }),
        any::<u32>().prop_map(|seq| Body::Nack { seq }),
        Just(Body::Gossip),
        (any::<u8>(), prop::collection::vec(digest, 0..20), prop::collection::vec(key_range(), 0..20)).prop_map(
            |(round, ranges, want)| {
                let (catalog_ranges, catalog_want) = (ranges.iter().rev().copied().collect(), want.clone());
                let (status_ranges, status_want) = (ranges.clone(), want.clone());
                Body::Sync(Sync { round, ranges, want, catalog_ranges, catalog_want, status_ranges, status_want })
            }
        ),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (node_id(), body(), prop::collection::vec(update(), 0..12)).prop_map(|(from, body, updates)| Message {
        from,
        body,
        updates,
    })
}

proptest! {
    #[test]
    fn every_message_round_trips(cluster in any::<u64>(), message in message()) {
        let bytes = wire::encode(cluster, &message);
        let decoded = wire::decode(&bytes, cluster).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded, message);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = wire::decode(&bytes, 0);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_preamble_never_panic(tail in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut bytes = b"SHOL\x01".to_vec();
        bytes.extend_from_slice(&tail);
        let _ = wire::decode(&bytes, 0);
    }

    #[test]
    fn every_truncation_and_bit_flip_of_a_valid_message_is_refused_or_decodes(
        message in message(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let bytes = wire::encode(7, &message);
        let cut = cut.index(bytes.len());
        prop_assert!(wire::decode(&bytes[..cut], 7).is_err(), "a strict prefix is never a message");
        let mut flipped = bytes.clone();
        let at = flip.index(flipped.len());
        flipped[at] ^= 0x5a;
        let _ = wire::decode(&flipped, 7);
    }
}

#[test]
fn a_huge_claimed_length_is_refused_without_allocating_it() {
    // Preamble, cluster 0, a node id, Body::Gossip, then a Vec<Update> whose
    // length claims 2^40 elements.
    let mut bytes = b"SHOL\x01".to_vec();
    bytes.push(0); // cluster id 0
    bytes.extend_from_slice(&[0; 16]); // from
    bytes.push(4); // Body::Gossip
    bytes.push(253); // u64 varint follows
    bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(wire::decode(&bytes, 0).is_err());
}

/// A coordinate claiming more dimensions than any mesh may use is refused
/// with the message; one with a bad scale decodes (the receiver ignores the
/// coordinate and keeps the ack, `PackedCoordinate::unpack`).
#[test]
fn a_coordinate_with_too_many_dimensions_is_refused() {
    let ack = |lengths: usize, scale: u8| Message {
        from: NodeId::from_index(1),
        body: Body::AckCoordinate {
            seq: 3,
            coordinate: PackedCoordinate { scale, error: 10, lengths: vec![[1, 0]; lengths] },
        },
        updates: vec![],
    };
    let too_many = wire::encode(0, &ack(shoal_protocol::coordinate::MAX_DIMENSIONS + 3, 20));
    assert!(matches!(wire::decode(&too_many, 0), Err(wire::DecodeError::OutOfBounds("coordinate dimensions"))));
    let bad_scale = wire::encode(0, &ack(10, 200));
    let decoded = wire::decode(&bad_scale, 0).expect("the ack itself is well formed");
    let Body::AckCoordinate { coordinate, .. } = decoded.body else { panic!("an ack with a coordinate") };
    assert_eq!(coordinate.unpack(), None);
    let good = wire::encode(0, &ack(10, 20));
    let Body::AckCoordinate { coordinate, .. } = wire::decode(&good, 0).expect("decodes").body else { panic!() };
    assert_eq!(coordinate.unpack().map(|c| c.vec.len()), Some(8));
}
