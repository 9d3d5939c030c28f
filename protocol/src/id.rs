//! Who a member is, and where to reach it. Both are opaque to the protocol.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A member's stable identity: 16 bytes chosen by the driver.
///
/// The real node derives it from its ed25519 public key, so it survives
/// restarts; the simulator derives it from the node's index. The protocol
/// compares ids and hashes them, nothing more.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct NodeId(pub [u8; 16]);

impl NodeId {
    /// A deterministic id for tests and the simulator: the index, big-endian,
    /// in the first eight bytes, so ids sort like their indexes and print as
    /// their index in hex (`NodeId::from_index(26)` shows as `0000001a`).
    pub const fn from_index(index: u64) -> NodeId {
        let b = index.to_be_bytes();
        NodeId([b[4], b[5], b[6], b[7], b[0], b[1], b[2], b[3], 0, 0, 0, 0, 0, 0, 0, 0])
    }

    /// A stable 64-bit hash of the id (the same on every build and platform),
    /// which places the member in the anti-entropy key space.
    pub fn key(&self) -> u64 {
        crate::hash::stable_hash64(&self.0)
    }
}

impl fmt::Display for NodeId {
    /// The first 8 hex digits: enough to tell members apart in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeId(")?;
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// Where a member can be reached, in whatever form its driver understands
/// (a multiaddr for the real node, `sim:17` in the simulator). At most
/// [`Address::MAX_LEN`] bytes, checked on decode too.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct Address(String);

impl TryFrom<String> for Address {
    type Error = crate::MetadataError;

    fn try_from(address: String) -> Result<Address, Self::Error> {
        Address::new(address)
    }
}

impl Address {
    /// The longest address the protocol accepts, in bytes of UTF-8.
    pub const MAX_LEN: usize = 200;

    /// Wraps `address`, refusing one longer than [`Address::MAX_LEN`] or empty.
    pub fn new(address: impl Into<String>) -> Result<Address, crate::MetadataError> {
        let address = address.into();
        if address.is_empty() || address.len() > Address::MAX_LEN {
            return Err(crate::MetadataError::AddressLength { len: address.len(), max: Address::MAX_LEN });
        }
        Ok(Address(address))
    }

    /// The address as the driver gave it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_ids_sort_like_indexes_and_hash_apart() {
        assert!(NodeId::from_index(2) < NodeId::from_index(10));
        assert_ne!(NodeId::from_index(1).key(), NodeId::from_index(2).key());
        assert_eq!(NodeId::from_index(26).to_string(), "0000001a");
        assert_ne!(NodeId::from_index(1 << 32), NodeId::from_index(0));
    }

    #[test]
    fn address_bounds_are_enforced() {
        assert!(Address::new("").is_err());
        assert!(Address::new("x".repeat(Address::MAX_LEN + 1)).is_err());
        assert_eq!(Address::new("sim:3").map(|a| a.to_string()).ok(), Some("sim:3".into()));
    }

    #[test]
    fn decoding_enforces_address_bounds() {
        let config = bincode::config::standard();
        for bad in [String::new(), "x".repeat(Address::MAX_LEN + 1)] {
            let bytes = crate::wire::encode_value(&bad);
            assert!(bincode::serde::decode_from_slice::<Address, _>(&bytes, config).is_err());
        }
        let bytes = crate::wire::encode_value(&"sim:1".to_string());
        let decoded = bincode::serde::decode_from_slice::<Address, _>(&bytes, config).map(|(a, _)| a).ok();
        assert_eq!(decoded, Address::new("sim:1").ok());
    }
}
