//! The wire format: a fixed preamble, then bincode 2 (standard config).
//!
//! ```text
//! magic "SHOL" (4 bytes) | version (1 byte) | bincode: cluster_id u64, from NodeId, Body, Vec<Update>
//! ```
//!
//! The magic and version come first and raw, so a future version can change
//! everything after them and still be refused cleanly by this one. Decoding
//! never panics and never allocates more than [`Config::MAX_MESSAGE_LEN`]
//! (bincode's limit checks every claimed length against it before allocating).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::codec::wire_config;
pub(crate) use crate::codec::{encode_append, encode_value, encoded_len};
use crate::coordinate::{MAX_DIMENSIONS, PackedCoordinate};
use crate::member::{Member, State, Version};
pub use crate::table::{KeyRange, RangeDigest};
use crate::{Address, CatalogEntry, Config, Metadata, NodeId, StatusEntry};

mod incoming;

pub(crate) use incoming::{RawUpdate, decode_incoming};

/// The first four bytes of every Shoal message.
pub const MAGIC: [u8; 4] = *b"SHOL";
/// The wire version this build speaks. Messages of any other are refused.
pub const PROTOCOL_VERSION: u8 = 1;
const PREAMBLE_LEN: usize = MAGIC.len() + 1;

/// One message: who sent it, what it says, and the membership updates it
/// carries (piggybacked gossip, or anti-entropy entries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender's id. The node's transport checks it against the
    /// authenticated peer.
    pub from: NodeId,
    /// The message proper.
    pub body: Body,
    /// Membership updates, applied by the receiver whatever the body.
    pub updates: Vec<Update>,
}

/// What a message asks or answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// "Are you alive?" `target` guards against a different node now living
    /// at the address.
    Ping { seq: u32, target: NodeId },
    /// "I am": answers the `Ping` (or, from a relay, the `PingReq`) with `seq`.
    Ack { seq: u32 },
    /// "Please probe `target` for me and relay its ack; if it has not
    /// answered within `nack_after_micros`, say so" (indirect probe). The
    /// asker sets the wait so the nack lands before its probe period ends.
    PingReq { seq: u32, target: NodeId, target_addr: Address, nack_after_micros: u32 },
    /// From a relay: "I asked, and `target` did not answer me in time."
    /// Lifeguard uses missing nacks as a sign that the asker is the slow one.
    Nack { seq: u32 },
    /// Nothing but the piggybacked updates.
    Gossip,
    /// One step of a push-pull anti-entropy exchange.
    Sync(Sync),
    /// An [`Body::Ack`] that also carries the sender's network coordinate
    /// (ALGORITHM.md section 15). A separate variant rather than an optional
    /// field, so a plain ack costs not one byte more. Only a target answering
    /// a probe sends it; a relay forwards a plain `Ack`.
    AckCoordinate { seq: u32, coordinate: PackedCoordinate },
}

/// One membership fact. Facts about a member are totally ordered by
/// (generation, incarnation, status rank), so merging is taking the maximum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Update {
    /// The member (this generation, this incarnation) is alive, and describes
    /// itself thus.
    Alive { id: NodeId, generation: u64, incarnation: u32, meta: Arc<Metadata> },
    /// `by` could not reach the member.
    Suspect { id: NodeId, generation: u64, incarnation: u32, by: NodeId },
    /// `by` declared the member failed after its suspicion timed out.
    Dead { id: NodeId, generation: u64, incarnation: u32, by: NodeId },
    /// The member left gracefully.
    Left { id: NodeId, generation: u64, incarnation: u32 },
    /// A version of a workload catalog entry (or its tombstone).
    Workload(CatalogEntry),
    /// What a node reports about one replica it runs (or has stopped).
    Status(StatusEntry),
}

/// What an update is about, which is also what a newer update replaces in
/// the gossip queue.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    Member(NodeId),
    Workload(String),
    Status(NodeId, String, u16),
}

impl Update {
    /// The facts that bring a peer to `member`'s entry: the Alive fact
    /// (which carries metadata), then the state's own fact if it is not
    /// Alive. A Dead or Left member is sent without its Alive fact, so a
    /// peer that never knew it does not first see it come up. `by` is the
    /// accuser named in a Suspect or Dead fact (this node).
    pub(crate) fn facts_of(member: &Member, by: NodeId) -> impl Iterator<Item = Update> + use<> {
        let (id, generation, incarnation) = (member.id, member.generation, member.incarnation);
        let alive = (member.state.is_live()).then(|| Update::Alive {
            id,
            generation,
            incarnation,
            meta: Arc::clone(&member.meta),
        });
        let other = match member.state {
            State::Alive => None,
            State::Suspect => Some(Update::Suspect { id, generation, incarnation, by }),
            State::Dead => Some(Update::Dead { id, generation, incarnation, by }),
            State::Left => Some(Update::Left { id, generation, incarnation }),
        };
        alive.into_iter().chain(other)
    }

    /// A membership fact's version. Not a membership fact: callers only
    /// ask about membership facts, and get the least version.
    pub(crate) fn version(&self) -> Version {
        match *self {
            Update::Alive { generation, incarnation, .. } => Version::new(generation, incarnation, State::Alive),
            Update::Suspect { generation, incarnation, .. } => Version::new(generation, incarnation, State::Suspect),
            Update::Dead { generation, incarnation, .. } => Version::new(generation, incarnation, State::Dead),
            Update::Left { generation, incarnation, .. } => Version::new(generation, incarnation, State::Left),
            Update::Workload(_) | Update::Status(_) => Version::new(0, 0, State::Alive),
        }
    }

    /// The member this update is about, if it is a membership fact.
    pub fn member(&self) -> Option<NodeId> {
        match self {
            Update::Alive { id, .. }
            | Update::Suspect { id, .. }
            | Update::Dead { id, .. }
            | Update::Left { id, .. } => Some(*id),
            Update::Workload(_) | Update::Status(_) => None,
        }
    }

    /// What the update is about.
    pub fn subject(&self) -> Subject {
        match self {
            Update::Workload(entry) => Subject::Workload(entry.name.clone()),
            Update::Status(entry) => Subject::Status(entry.node, entry.status.workload.clone(), entry.status.replica),
            Update::Alive { id, .. }
            | Update::Suspect { id, .. }
            | Update::Dead { id, .. }
            | Update::Left { id, .. } => Subject::Member(*id),
        }
    }
}

/// One step of an anti-entropy exchange. See ALGORITHM.md, "Anti-entropy".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sync {
    /// Messages so far in this exchange; it stops at `sync_max_rounds`.
    pub round: u8,
    /// "Here is my summary of these ranges: compare."
    pub ranges: Vec<RangeDigest>,
    /// "Send me every entry you have in these ranges."
    pub want: Vec<KeyRange>,
    /// The same two, for the workload catalog (keyed by hashed name).
    pub catalog_ranges: Vec<RangeDigest>,
    pub catalog_want: Vec<KeyRange>,
    /// The same two, for replica statuses (keyed by hashed node and replica).
    pub status_ranges: Vec<RangeDigest>,
    pub status_want: Vec<KeyRange>,
}

/// Why a message was refused. The receiver's state did not change.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the preamble.
    #[error("message of {len} bytes is shorter than the {PREAMBLE_LEN}-byte preamble")]
    TooShort { len: usize },
    /// Longer than any valid message.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    /// Not a Shoal message.
    #[error("bad magic {got:02x?}: not a Shoal message")]
    BadMagic { got: [u8; 4] },
    /// A Shoal message of another wire version.
    #[error("wire version {got}, this build speaks {PROTOCOL_VERSION}: upgrade the older node")]
    Version { got: u8 },
    /// A Shoal message from another cluster.
    #[error("cluster id {got:#x} is not ours ({ours:#x}): check the cluster key")]
    Cluster { got: u64, ours: u64 },
    /// The bytes after the preamble are not a valid message.
    #[error("malformed message: {0}")]
    Malformed(#[from] bincode::error::DecodeError),
    /// A valid message followed by extra bytes.
    #[error("{extra} unexpected bytes after the message")]
    TrailingBytes { extra: usize },
    /// A field is outside its documented bound.
    #[error("field out of bounds: {0}")]
    OutOfBounds(&'static str),
}

/// Most ranges or wants in one [`Sync`].
pub const MAX_SYNC_RANGES: usize = 1_024;

/// Decodes one message, checking the preamble, the cluster id and every bound.
pub fn decode(bytes: &[u8], cluster_id: u64) -> Result<Message, DecodeError> {
    let rest = open(bytes, cluster_id)?;
    let (message, used): (Message, usize) = bincode::serde::decode_from_slice(rest, wire_config())?;
    if used != rest.len() {
        return Err(DecodeError::TrailingBytes { extra: rest.len() - used });
    }
    check_bounds(&message.body)?;
    Ok(message)
}

/// Checks the preamble and the cluster id; returns the bytes after them.
fn open(bytes: &[u8], cluster_id: u64) -> Result<&[u8], DecodeError> {
    if bytes.len() < PREAMBLE_LEN {
        return Err(DecodeError::TooShort { len: bytes.len() });
    }
    if bytes.len() > Config::MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLong { len: bytes.len(), max: Config::MAX_MESSAGE_LEN });
    }
    let (magic, rest) = bytes.split_at(MAGIC.len());
    if magic != MAGIC {
        let mut got = [0; 4];
        got.copy_from_slice(magic);
        return Err(DecodeError::BadMagic { got });
    }
    if rest[0] != PROTOCOL_VERSION {
        return Err(DecodeError::Version { got: rest[0] });
    }
    let rest = &rest[1..];
    let (got, used): (u64, usize) = bincode::serde::decode_from_slice(rest, wire_config())?;
    if got != cluster_id {
        return Err(DecodeError::Cluster { got, ours: cluster_id });
    }
    Ok(&rest[used..])
}

impl Sync {
    /// How many replicated tables an exchange covers: members, the
    /// catalog, replica statuses, in that order.
    pub const TABLES: usize = 3;

    /// One step of an exchange from each table's (summaries to compare,
    /// ranges wanted), in [`Sync::TABLES`] order.
    pub(crate) fn new(round: u8, tables: [(Vec<RangeDigest>, Vec<KeyRange>); Sync::TABLES]) -> Sync {
        let [(ranges, want), (catalog_ranges, catalog_want), (status_ranges, status_want)] = tables;
        Sync { round, ranges, want, catalog_ranges, catalog_want, status_ranges, status_want }
    }

    /// Table `index`'s (summaries, wanted ranges); empty past the last.
    pub(crate) fn table(&self, index: usize) -> (&[RangeDigest], &[KeyRange]) {
        match index {
            0 => (&self.ranges, &self.want),
            1 => (&self.catalog_ranges, &self.catalog_want),
            2 => (&self.status_ranges, &self.status_want),
            _ => (&[], &[]),
        }
    }
}

/// The bounds serde cannot express. (A coordinate's scale and values are
/// checked where it is used, so that a bad one costs the coordinate, not the
/// ack: `PackedCoordinate::unpack`.)
fn check_bounds(body: &Body) -> Result<(), DecodeError> {
    if let Body::AckCoordinate { coordinate, .. } = body {
        if coordinate.lengths.len() > MAX_DIMENSIONS + 2 {
            return Err(DecodeError::OutOfBounds("coordinate dimensions"));
        }
    }
    if let Body::Sync(sync) = body {
        for (ranges, want) in (0..Sync::TABLES).map(|table| sync.table(table)) {
            if ranges.len() > MAX_SYNC_RANGES || want.len() > MAX_SYNC_RANGES {
                return Err(DecodeError::OutOfBounds("sync ranges"));
            }
            let mut depths = ranges.iter().map(|d| d.range).chain(want.iter().copied()).map(|r| r.depth);
            if depths.any(|d| d > KeyRange::MAX_DEPTH) {
                return Err(DecodeError::OutOfBounds("sync range depth"));
            }
        }
    }
    Ok(())
}

/// Bytes bincode uses for a collection length (a varint u64).
fn len_prefix_len(count: usize) -> usize {
    match count {
        0..=250 => 1,
        251..=0xffff => 3,
        _ => 5,
    }
}

/// Builds one message, adding pre-encoded updates while they fit a budget.
///
/// The result is byte-for-byte what bincode would produce for the whole
/// [`Message`], so [`decode`] reads it back.
#[derive(Debug)]
pub(crate) struct MessageBuilder {
    /// The header, then the updates (the update count goes between them at
    /// the end, once its width is known).
    buf: Vec<u8>,
    head_len: usize,
    count: usize,
    budget: usize,
}

impl MessageBuilder {
    pub(crate) fn new(cluster_id: u64, from: NodeId, body: &Body, budget: usize) -> MessageBuilder {
        // One allocation, reserved up front: messages are usually filled
        // close to the budget.
        let mut buf = Vec::with_capacity(budget.min(64 * 1024));
        buf.extend_from_slice(&MAGIC);
        buf.push(PROTOCOL_VERSION);
        encode_append(&cluster_id, &mut buf);
        encode_append(&from, &mut buf);
        encode_append(body, &mut buf);
        let head_len = buf.len();
        MessageBuilder { buf, head_len, count: 0, budget }
    }

    /// Bytes the message would take with one more update of `len` bytes.
    fn len_with(&self, len: usize) -> usize {
        self.buf.len() + len_prefix_len(self.count + 1) + len
    }

    /// Appends an encoded update if the message stays within budget.
    pub(crate) fn try_push(&mut self, encoded_update: &[u8]) -> bool {
        if self.len_with(encoded_update.len()) > self.budget {
            return false;
        }
        self.buf.extend_from_slice(encoded_update);
        self.count += 1;
        true
    }

    /// Bytes left for updates.
    pub(crate) fn remaining(&self) -> usize {
        self.budget.saturating_sub(self.len_with(0))
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        let MessageBuilder { mut buf, head_len, count, .. } = self;
        let prefix = encode_value(&(count as u64));
        buf.splice(head_len..head_len, prefix);
        buf
    }
}

/// Whether an encoded message is anti-entropy (`Body::Sync`), which needs a
/// reliable path and is not bound by the datagram budget (the node sends it
/// over a stream, the simulator exempts it from loss and the MTU). Read from
/// the header without decoding: magic and version (5 bytes), the cluster id
/// (bincode varint), the sender's 16-byte id, then the body's variant index.
pub fn is_sync(payload: &[u8]) -> bool {
    /// `Body::Sync` is the sixth variant.
    const SYNC_VARIANT: u8 = 5;
    let Some(&first) = payload.get(5) else { return false };
    let varint_len = match first {
        0..=250 => 1,
        251 => 3,
        252 => 5,
        253 => 9,
        _ => 17,
    };
    payload.get(5 + varint_len + 16) == Some(&SYNC_VARIANT)
}

/// Encodes a whole message with no budget (for tests and tools).
pub fn encode(cluster_id: u64, message: &Message) -> Vec<u8> {
    let mut builder = MessageBuilder::new(cluster_id, message.from, &message.body, usize::MAX);
    for update in &message.updates {
        builder.try_push(&encode_value(update));
    }
    builder.finish()
}
