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

use bincode::config::{Configuration, Limit, Varint};
use serde::{Deserialize, Serialize};

use crate::catalog::CatalogEntry;
use crate::status::StatusEntry;
use crate::{Address, Config, Metadata, NodeId};

mod incoming;

pub(crate) use incoming::{RawUpdate, decode_incoming};

/// The first four bytes of every Shoal message.
pub const MAGIC: [u8; 4] = *b"SHOL";
/// The wire version this build speaks. Messages of any other are refused.
pub const PROTOCOL_VERSION: u8 = 1;
const PREAMBLE_LEN: usize = MAGIC.len() + 1;

type WireConfig = Configuration<bincode::config::LittleEndian, Varint, Limit<{ Config::MAX_MESSAGE_LEN }>>;

fn wire_config() -> WireConfig {
    bincode::config::standard().with_limit::<{ Config::MAX_MESSAGE_LEN }>()
}

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

/// A slice of the anti-entropy key space: the keys whose top `4·depth` bits
/// equal those of `prefix`. Depth 0 is the whole space; each level splits a
/// range into 16.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyRange {
    /// Levels below the root, 0 to [`KeyRange::MAX_DEPTH`].
    pub depth: u8,
    /// Any key in the range; only its top `4·depth` bits are significant.
    pub prefix: u64,
}

/// A summary of one side's members in a key range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDigest {
    /// The range summarised.
    pub range: KeyRange,
    /// XOR of the entry hashes of the live members (not Dead, not Left) in it.
    pub hash: u64,
    /// How many live members are in it.
    pub count: u32,
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

impl RangeDigest {
    /// The summary of `range` from the hashes of its live entries; the whole
    /// space (depth 0) uses the table's running totals, `root`, instead of a
    /// scan.
    pub(crate) fn summarise(range: KeyRange, root: (u64, usize), live: impl Iterator<Item = u64>) -> RangeDigest {
        let (hash, count) = if range.depth == 0 { root } else { live.fold((0, 0), |(h, c), e| (h ^ e, c + 1)) };
        RangeDigest { range, hash, count: u32::try_from(count).unwrap_or(u32::MAX) }
    }
}

impl KeyRange {
    /// The deepest level: 16 levels of 4 bits cover a 64-bit key.
    pub const MAX_DEPTH: u8 = 16;
    /// The whole key space.
    pub const ROOT: KeyRange = KeyRange { depth: 0, prefix: 0 };

    fn mask(self) -> u64 {
        match self.depth {
            0 => 0,
            d if d >= Self::MAX_DEPTH => u64::MAX,
            d => !(u64::MAX >> (4 * u32::from(d))),
        }
    }

    /// The smallest key in the range.
    pub fn start(self) -> u64 {
        self.prefix & self.mask()
    }

    /// The largest key in the range.
    pub fn end(self) -> u64 {
        self.start() | !self.mask()
    }

    /// Whether `key` falls in the range.
    pub fn contains(self, key: u64) -> bool {
        key & self.mask() == self.start()
    }

    /// The 16 sub-ranges, in key order; `None` at the deepest level.
    pub fn children(self) -> Option<impl Iterator<Item = KeyRange>> {
        if self.depth >= Self::MAX_DEPTH {
            return None;
        }
        let depth = self.depth + 1;
        let shift = 64 - 4 * u32::from(depth);
        let start = self.start();
        Some((0..16u64).map(move |i| KeyRange { depth, prefix: start | (i << shift) }))
    }
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

/// The bounds serde cannot express.
fn check_bounds(body: &Body) -> Result<(), DecodeError> {
    if let Body::Sync(sync) = body {
        let lens = [
            sync.ranges.len(),
            sync.want.len(),
            sync.catalog_ranges.len(),
            sync.catalog_want.len(),
            sync.status_ranges.len(),
            sync.status_want.len(),
        ];
        if lens.iter().any(|len| *len > MAX_SYNC_RANGES) {
            return Err(DecodeError::OutOfBounds("sync ranges"));
        }
        let digests = sync.ranges.iter().chain(&sync.catalog_ranges).chain(&sync.status_ranges).map(|d| d.range.depth);
        let wants = sync.want.iter().chain(&sync.catalog_want).chain(&sync.status_want);
        let mut depths = digests.chain(wants.map(|r| r.depth));
        if depths.any(|d| d > KeyRange::MAX_DEPTH) {
            return Err(DecodeError::OutOfBounds("sync range depth"));
        }
    }
    Ok(())
}

/// Encodes `value` alone, as it appears inside a message.
pub(crate) fn encode_value<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding into a Vec only fails if a type's Serialize impl fails, and
    // ours are derived; an empty result would be refused by every receiver.
    bincode::serde::encode_to_vec(value, wire_config()).unwrap_or_default()
}

/// Appends the encoding of `value` to `out`; returns its length.
pub(crate) fn encode_append<T: Serialize>(value: &T, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    // As in encode_value: only a failing Serialize impl fails, and ours are derived.
    if bincode::serde::encode_into_std_write(value, out, wire_config()).is_err() {
        out.truncate(start);
    }
    out.len() - start
}

/// The encoded size of `value`, in bytes (counted, not allocated).
pub(crate) fn encoded_len<T: Serialize>(value: &T) -> usize {
    let mut size = bincode::enc::write::SizeWriter::default();
    // As in encode_value: only a failing Serialize impl fails, and ours are derived.
    match bincode::serde::encode_into_writer(value, &mut size, wire_config()) {
        Ok(()) => size.bytes_written,
        Err(_) => 0,
    }
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
