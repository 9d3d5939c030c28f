//! The reliable path's wire format: length-prefixed sealed frames.
//!
//! ```text
//! length (u32, big-endian) | sealed (see crate::crypto) of a bincode StreamMessage
//! ```
//!
//! Everything here is pure and bounded, so the fuzz targets drive the very
//! functions the transport uses: a length over the bound is refused before
//! anything is allocated, and decoding never panics.

use bincode::config::{BigEndian, Configuration, Fixint, Limit};
use serde::{Deserialize, Serialize};

use crate::crypto::{OpenError, SEAL_OVERHEAD};
use crate::keys::{KeyOp, KeyReply, KeyStore};

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// What a stream carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMessage {
    /// A protocol message too large for a datagram (anti-entropy). `reply_to`
    /// is the sender's gossip address: the connection comes from an
    /// ephemeral port, so the protocol must answer there instead.
    Protocol { reply_to: String, payload: Vec<u8> },
    /// A change to the receiver's keyring; answered with a `KeyReply` on the
    /// same connection.
    KeyRequest(KeyOp),
    /// The answer to a `KeyRequest`.
    KeyReply(KeyReply),
}

/// Why a frame was refused. The connection is closed; nothing was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix claims more than the bound (or less than a seal).
    #[error("frame length {0} out of bounds")]
    Length(usize),
    /// The frame did not open under the keyring.
    #[error("frame does not open: {0}")]
    Open(#[from] OpenError),
    /// It opened but does not decode as a stream message.
    #[error("frame opened but does not decode")]
    Decode,
}

impl FrameError {
    /// The label value metrics use.
    pub fn name(self) -> &'static str {
        match self {
            FrameError::Length(_) => "length",
            FrameError::Open(reason) => reason.name(),
            FrameError::Decode => "decode",
        }
    }
}

/// The most a frame's plaintext may claim: a protocol message at the
/// protocol's own bound plus room for the envelope.
const DECODE_LIMIT: usize = shoal_protocol::Config::MAX_MESSAGE_LEN + 1024;

/// bincode with fixed-width integers and a limit, so a length claimed inside
/// a frame cannot allocate past it.
fn config() -> Configuration<BigEndian, Fixint, Limit<DECODE_LIMIT>> {
    bincode::config::standard().with_big_endian().with_fixed_int_encoding().with_limit::<DECODE_LIMIT>()
}

impl StreamMessage {
    /// The sealed frame, length prefix included.
    pub fn seal(&self, keys: &KeyStore) -> Vec<u8> {
        let plaintext = bincode::serde::encode_to_vec(self, config()).unwrap_or_default();
        let sealed = keys.seal(&plaintext);
        let mut frame = Vec::with_capacity(PREFIX_LEN + sealed.len());
        frame.extend_from_slice(&u32::try_from(sealed.len()).unwrap_or(u32::MAX).to_be_bytes());
        frame.extend_from_slice(&sealed);
        frame
    }

    /// Opens and decodes the sealed part of a frame (what follows the prefix).
    pub fn open(keys: &KeyStore, sealed: &[u8]) -> Result<StreamMessage, FrameError> {
        let plaintext = keys.open(sealed)?;
        decode(&plaintext)
    }
}

/// Decodes an opened frame; trailing bytes are refused.
pub fn decode(plaintext: &[u8]) -> Result<StreamMessage, FrameError> {
    match bincode::serde::decode_from_slice(plaintext, config()) {
        Ok((message, used)) if used == plaintext.len() => Ok(message),
        _ => Err(FrameError::Decode),
    }
}

/// The length a prefix announces, if within `max_sealed`.
pub fn frame_len(prefix: [u8; PREFIX_LEN], max_sealed: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if !(SEAL_OVERHEAD..=max_sealed).contains(&len) {
        return Err(FrameError::Length(len));
    }
    Ok(len)
}
