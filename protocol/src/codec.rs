//! The one encoding every node agrees on: bincode 2, standard config
//! (varints, little endian), with every claimed length bounded by
//! [`Config::MAX_MESSAGE_LEN`]. Digests of content (a catalog entry's
//! precedence) and sizes (a spec's bound) are taken over it, so it lives
//! below every type that is encoded, and `wire` builds messages from it.

use bincode::config::{Configuration, Limit, Varint};
use serde::Serialize;

use crate::Config;

pub(crate) type WireConfig = Configuration<bincode::config::LittleEndian, Varint, Limit<{ Config::MAX_MESSAGE_LEN }>>;

pub(crate) fn wire_config() -> WireConfig {
    bincode::config::standard().with_limit::<{ Config::MAX_MESSAGE_LEN }>()
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
