//! Decoding a received message without decoding what the receiver will not
//! use.
//!
//! Most updates a node receives repeat what it already knows (gossip sends
//! each one λ·⌈log10(N+1)⌉ times), and most are Alive facts whose metadata
//! costs several allocations to decode. So the updates are checked in full,
//! exactly as [`super::decode`] checks them, but only their heads (member,
//! generation, incarnation, state) are kept; an Alive fact's metadata is
//! decoded from its bytes only when the fact is news.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{Body, DecodeError, Update, check_bounds, open, wire_config};
use crate::catalog::CatalogEntry;
use crate::member::State;
use crate::status::StatusEntry;
use crate::{Address, Capacity, Metadata, MetadataCache, NodeId};

/// A received message whose updates are decoded lazily.
#[derive(Debug)]
pub(crate) struct Incoming<'a> {
    pub(crate) from: NodeId,
    pub(crate) body: Body,
    pub(crate) updates: Vec<RawUpdate<'a>>,
}

/// One received update: its head, and its bytes for decoding in full.
#[derive(Debug)]
pub(crate) struct RawUpdate<'a> {
    head: Head<'a>,
    bytes: &'a [u8],
}

/// [`Update`] as it is encoded, with the metadata checked but not kept.
/// (Variant order and field types must match [`Update`]'s.)
#[derive(Debug, Deserialize)]
enum Head<'a> {
    Alive {
        id: NodeId,
        generation: u64,
        incarnation: u32,
        #[serde(borrow)]
        #[allow(dead_code)]
        meta: MetadataView<'a>,
    },
    Suspect {
        id: NodeId,
        generation: u64,
        incarnation: u32,
        by: NodeId,
    },
    Dead {
        id: NodeId,
        generation: u64,
        incarnation: u32,
        by: NodeId,
    },
    Left {
        id: NodeId,
        generation: u64,
        incarnation: u32,
    },
    Workload(CatalogEntry),
    Status(StatusEntry),
}

/// [`Metadata`] as it is encoded, checked as strictly as decoding it would
/// be (UTF-8, address bounds), without allocating.
#[derive(Debug, Deserialize)]
struct MetadataView<'a> {
    #[allow(dead_code)]
    name: &'a str,
    #[serde(borrow)]
    #[allow(dead_code)]
    addrs: Addresses<'a>,
    #[allow(dead_code)]
    capacity: Capacity,
    #[serde(borrow)]
    #[allow(dead_code)]
    labels: Labels<'a>,
}

/// A list of addresses, each checked against [`Address::MAX_LEN`], not kept.
#[derive(Debug)]
struct Addresses<'a>(PhantomData<&'a str>);

impl<'de: 'a, 'a> Deserialize<'de> for Addresses<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Each;
        impl<'de> Visitor<'de> for Each {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of addresses")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                while let Some(addr) = seq.next_element::<&str>()? {
                    if addr.is_empty() || addr.len() > Address::MAX_LEN {
                        return Err(de::Error::custom(crate::MetadataError::AddressLength {
                            len: addr.len(),
                            max: Address::MAX_LEN,
                        }));
                    }
                }
                Ok(())
            }
        }
        deserializer.deserialize_seq(Each).map(|()| Addresses(PhantomData))
    }
}

/// A label map, checked for UTF-8, not kept.
#[derive(Debug)]
struct Labels<'a>(PhantomData<&'a str>);

impl<'de: 'a, 'a> Deserialize<'de> for Labels<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Each;
        impl<'de> Visitor<'de> for Each {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of labels")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                while map.next_entry::<&str, &str>()?.is_some() {}
                Ok(())
            }
        }
        deserializer.deserialize_map(Each).map(|()| Labels(PhantomData))
    }
}

/// Decodes a message as [`super::decode`] does (same checks, same errors for
/// the same input), keeping updates as [`RawUpdate`]s.
pub(crate) fn decode_incoming(bytes: &[u8], cluster_id: u64) -> Result<Incoming<'_>, DecodeError> {
    let rest = open(bytes, cluster_id)?;
    let ((from, body), used): ((NodeId, Body), usize) = bincode::serde::decode_from_slice(rest, wire_config())?;
    let rest = &rest[used..];
    let (count, used): (u64, usize) = bincode::serde::decode_from_slice(rest, wire_config())?;
    let mut rest = &rest[used..];
    // Every update takes at least one byte, which bounds what a bogus count
    // can make us reserve.
    let mut updates = Vec::with_capacity(usize::try_from(count).unwrap_or(usize::MAX).min(rest.len()));
    for _ in 0..count {
        let (head, used): (Head<'_>, usize) = bincode::serde::borrow_decode_from_slice(rest, wire_config())?;
        let (bytes, tail) = rest.split_at(used);
        updates.push(RawUpdate { head, bytes });
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { extra: rest.len() });
    }
    check_bounds(&body)?;
    Ok(Incoming { from, body, updates })
}

impl RawUpdate<'_> {
    /// The membership fact's member, generation, incarnation and state, or
    /// `None` for a catalog entry or a replica status.
    pub(crate) fn fact(&self) -> Option<(NodeId, u64, u32, State)> {
        match self.head {
            Head::Alive { id, generation, incarnation, .. } => Some((id, generation, incarnation, State::Alive)),
            Head::Suspect { id, generation, incarnation, .. } => Some((id, generation, incarnation, State::Suspect)),
            Head::Dead { id, generation, incarnation, .. } => Some((id, generation, incarnation, State::Dead)),
            Head::Left { id, generation, incarnation } => Some((id, generation, incarnation, State::Left)),
            Head::Workload(_) | Head::Status(_) => None,
        }
    }

    /// The member this update is about, if it is a membership fact.
    pub(crate) fn member(&self) -> Option<NodeId> {
        self.fact().map(|(id, ..)| id)
    }

    /// The whole update. An Alive fact's metadata comes from `cache` when it
    /// holds the same bytes (decoded once for every instance sharing it).
    pub(crate) fn decode(&self, cache: Option<&MetadataCache>) -> Result<Update, DecodeError> {
        Ok(match &self.head {
            Head::Alive { id, generation, incarnation, .. } => {
                // The metadata follows the variant index, the id and two
                // varints. Their width is measured by decoding them, not
                // computed from their values: bincode accepts a varint wider
                // than it needs (5 as `251, 5, 0`), and `super::decode` reads
                // the metadata after whatever width the sender used.
                let (_, at): ((u32, NodeId, u64, u32), usize) =
                    bincode::serde::decode_from_slice(self.bytes, wire_config())?;
                let meta_bytes = self.bytes.get(at..).unwrap_or_default();
                let decode = || -> Result<Arc<Metadata>, DecodeError> {
                    let (meta, used): (Metadata, usize) = bincode::serde::decode_from_slice(meta_bytes, wire_config())?;
                    // The metadata ends the update: anything after it means
                    // it was read from the wrong place.
                    if used != meta_bytes.len() {
                        return Err(DecodeError::TrailingBytes { extra: meta_bytes.len() - used });
                    }
                    Ok(Arc::new(meta))
                };
                let meta = match cache {
                    Some(cache) => cache.get_or_insert_with(meta_bytes, decode)?,
                    None => decode()?,
                };
                Update::Alive { id: *id, generation: *generation, incarnation: *incarnation, meta }
            }
            &Head::Suspect { id, generation, incarnation, by } => Update::Suspect { id, generation, incarnation, by },
            &Head::Dead { id, generation, incarnation, by } => Update::Dead { id, generation, incarnation, by },
            &Head::Left { id, generation, incarnation } => Update::Left { id, generation, incarnation },
            Head::Workload(entry) => Update::Workload(entry.clone()),
            Head::Status(entry) => Update::Status(entry.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Message, decode, encode as encode_message, encode_value as encode};

    fn alive(index: u64, generation: u64, incarnation: u32, name: &str) -> Update {
        let mut meta = Metadata::new(name, Address::new(format!("sim:{index}")).expect("valid"));
        meta.labels.insert("zone".into(), "eu-west".into());
        meta.capacity.memory_bytes = 1 << 40;
        Update::Alive { id: NodeId::from_index(index), generation, incarnation, meta: Arc::new(meta) }
    }

    #[test]
    fn lazy_decoding_gives_back_every_update_and_shares_metadata() {
        let updates = vec![
            alive(1, 1, 0, "n1"),
            alive(2, 300, 70_000, "a-longer-name"),
            alive(3, u64::MAX, u32::MAX, "n3"),
            Update::Suspect { id: NodeId::from_index(4), generation: 2, incarnation: 9, by: NodeId::from_index(1) },
            Update::Left { id: NodeId::from_index(5), generation: 1, incarnation: 0 },
            Update::Status(StatusEntry {
                node: NodeId::from_index(6),
                generation: 1,
                version: 3,
                status: crate::ReplicaStatus::new("web", 0, crate::ReplicaState::Running),
            }),
        ];
        let message = Message { from: NodeId::from_index(9), body: Body::Gossip, updates: updates.clone() };
        let bytes = encode_message(7, &message);
        let incoming = decode_incoming(&bytes, 7).expect("decodes");
        assert_eq!(incoming.from, message.from);
        let cache = MetadataCache::default();
        let decoded: Vec<Update> = incoming.updates.iter().map(|u| u.decode(Some(&cache)).expect("ok")).collect();
        assert_eq!(decoded, updates);
        let again = incoming.updates[0].decode(Some(&cache)).expect("ok");
        match (&decoded[0], &again) {
            (Update::Alive { meta: a, .. }, Update::Alive { meta: b, .. }) => assert!(Arc::ptr_eq(a, b)),
            _ => unreachable!("alive"),
        }
        assert_eq!(incoming.updates[3].fact(), Some((NodeId::from_index(4), 2, 9, State::Suspect)));
        assert_eq!(encode(&updates[0]).len(), incoming.updates[0].bytes.len());
    }

    #[test]
    fn lazy_decoding_refuses_what_full_decoding_refuses() {
        let message = Message { from: NodeId::from_index(1), body: Body::Gossip, updates: vec![alive(2, 1, 0, "n2")] };
        let bytes = encode_message(0, &message);
        // An address over the bound (its length prefix is the byte before it).
        let mut long_addr = bytes.clone();
        let at = long_addr.windows(5).position(|w| w == b"sim:2").expect("address present");
        long_addr.splice(at - 1..at + 5, encode(&"x".repeat(Address::MAX_LEN + 1)));
        // Bytes that are not UTF-8, in the name and the address.
        let not_utf8: Vec<u8> = bytes.iter().map(|b| if matches!(*b, b'n' | b's') { 0xff } else { *b }).collect();
        for bad in [long_addr, not_utf8] {
            assert!(decode(&bad, 0).is_err());
            assert!(decode_incoming(&bad, 0).is_err());
        }
        // Truncation anywhere, and trailing bytes.
        for len in 0..bytes.len() {
            assert!(decode_incoming(&bytes[..len], 0).is_err(), "truncated to {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_incoming(&longer, 0).is_err());
        assert!(decode_incoming(&bytes, 0).is_ok());
    }

    /// Found by the `handle_message` fuzz target: with a varint wider than
    /// needed before the metadata, the lazy decoder read the metadata from
    /// the wrong offset and dropped (or could misread) a fact that `decode`
    /// accepts.
    #[test]
    fn lazy_decoding_reads_metadata_after_varints_of_any_width() {
        let meta = Metadata::new("n2", Address::new("sim:2").expect("valid"));
        let gossip = Message { from: NodeId::from_index(1), body: Body::Gossip, updates: vec![] };
        let mut bytes = encode_message(0, &gossip);
        *bytes.last_mut().expect("ends with the update count") = 1;
        bytes.extend_from_slice(&[251, 0, 0]); // variant 0 (Alive), as a u16
        bytes.extend_from_slice(&NodeId::from_index(2).0);
        bytes.extend_from_slice(&[251, 5, 0]); // generation 5, as a u16
        bytes.extend_from_slice(&[252, 3, 0, 0, 0]); // incarnation 3, as a u32
        bytes.extend_from_slice(&encode(&meta));
        let expected = Update::Alive { id: NodeId::from_index(2), generation: 5, incarnation: 3, meta: Arc::new(meta) };
        assert_eq!(decode(&bytes, 0).expect("decode accepts wide varints").updates, vec![expected.clone()]);
        let incoming = decode_incoming(&bytes, 0).expect("so does the lazy decoder");
        assert_eq!(incoming.updates[0].decode(None).expect("metadata found"), expected);
        let cache = MetadataCache::default();
        assert_eq!(incoming.updates[0].decode(Some(&cache)).expect("metadata found"), expected);
    }

    proptest::proptest! {
        /// Whatever the bytes, the lazy decoder accepts exactly what the full
        /// decoder accepts.
        #[test]
        fn lazy_and_full_decoding_agree_on_corrupted_messages(
            flips in proptest::collection::vec((0usize..200, proptest::prelude::any::<u8>()), 0..4),
        ) {
            let message = Message {
                from: NodeId::from_index(1),
                body: Body::Ping { seq: 7, target: NodeId::from_index(2) },
                updates: vec![alive(2, 1, 3, "n2"), alive(3, 1, 0, "n3")],
            };
            let mut bytes = encode_message(0, &message);
            for (at, value) in flips {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            proptest::prop_assert_eq!(decode(&bytes, 0).is_ok(), decode_incoming(&bytes, 0).is_ok());
        }
    }
}
