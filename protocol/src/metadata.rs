//! What a member says about itself: name, addresses, capacity, labels.
//!
//! Metadata rides inside every Alive update, so it is bounded: encoded, it is
//! at most [`Metadata::MAX_ENCODED_LEN`] bytes, which leaves room for several
//! updates in one datagram.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::Address;

/// How much work a member can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Capacity {
    /// CPU in millicores (1000 = one core).
    pub cpu_millis: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

/// A member's self-description, spread with its Alive updates.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Metadata {
    /// Human name, unique by convention (default: the host name). At most
    /// [`Metadata::MAX_NAME_LEN`] bytes.
    pub name: String,
    /// Where the member can be reached, most preferred first. At least one, at
    /// most [`Metadata::MAX_ADDRS`].
    pub addrs: Vec<Address>,
    /// What the member offers to workloads.
    pub capacity: Capacity,
    /// `key=value` labels (zone, arch, ...), used by placement constraints.
    pub labels: BTreeMap<String, String>,
}

/// Why metadata or an address was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// An address is empty or too long.
    #[error("address is {len} bytes; it must be 1 to {max} bytes")]
    AddressLength { len: usize, max: usize },
    /// The name is empty or too long.
    #[error("name is {len} bytes; it must be 1 to {max} bytes")]
    NameLength { len: usize, max: usize },
    /// No address, or too many.
    #[error("{count} addresses given; give 1 to {max}")]
    AddressCount { count: usize, max: usize },
    /// A label key is empty, too long, or holds a character other than
    /// `[A-Za-z0-9._/-]`.
    #[error("label key {key:?} is invalid: use 1 to {max} characters from A-Z a-z 0-9 . _ - /")]
    LabelKey { key: String, max: usize },
    /// The whole encoded metadata is too large.
    #[error("metadata encodes to {len} bytes; the limit is {max} (shorten labels or addresses)")]
    TooLarge { len: usize, max: usize },
}

impl Metadata {
    /// Longest name, in bytes.
    pub const MAX_NAME_LEN: usize = 64;
    /// Most advertised addresses.
    pub const MAX_ADDRS: usize = 4;
    /// Longest label key, in bytes.
    pub const MAX_LABEL_KEY_LEN: usize = 63;
    /// Bound on the encoded size of the whole metadata, in bytes.
    pub const MAX_ENCODED_LEN: usize = 512;

    /// Metadata with just a name and one address.
    pub fn new(name: impl Into<String>, addr: Address) -> Metadata {
        Metadata { name: name.into(), addrs: vec![addr], ..Metadata::default() }
    }

    /// Checks every bound; the protocol refuses metadata that fails it.
    pub fn validate(&self) -> Result<(), MetadataError> {
        if self.name.is_empty() || self.name.len() > Self::MAX_NAME_LEN {
            return Err(MetadataError::NameLength { len: self.name.len(), max: Self::MAX_NAME_LEN });
        }
        if self.addrs.is_empty() || self.addrs.len() > Self::MAX_ADDRS {
            return Err(MetadataError::AddressCount { count: self.addrs.len(), max: Self::MAX_ADDRS });
        }
        for addr in &self.addrs {
            Address::new(addr.as_str())?;
        }
        for key in self.labels.keys() {
            let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/');
            if key.is_empty() || key.len() > Self::MAX_LABEL_KEY_LEN || !key.chars().all(valid_char) {
                return Err(MetadataError::LabelKey { key: key.clone(), max: Self::MAX_LABEL_KEY_LEN });
            }
        }
        let len = crate::codec::encoded_len(self);
        if len > Self::MAX_ENCODED_LEN {
            return Err(MetadataError::TooLarge { len, max: Self::MAX_ENCODED_LEN });
        }
        Ok(())
    }

    /// The address others should use first.
    pub fn primary_addr(&self) -> Option<&Address> {
        self.addrs.first()
    }
}

/// Decoded metadata shared between protocol instances in one process.
///
/// Every member holds every other member's metadata, so a process running N
/// instances (the simulator) would otherwise hold N² decoded copies. Give
/// each instance a clone of one cache ([`crate::Node::share_metadata`])
/// and each distinct metadata is decoded once and held once. The cache
/// changes nothing an instance does: it hands out a value equal to what
/// decoding would have produced. Instances on their own need none.
#[derive(Clone, Default)]
pub struct MetadataCache {
    inner: Arc<Mutex<CacheInner>>,
}

#[derive(Default)]
struct CacheInner {
    /// By encoded bytes.
    by_bytes: BTreeMap<Box<[u8]>, Arc<Metadata>>,
    /// Entries after the last sweep of unused ones.
    after_sweep: usize,
}

impl MetadataCache {
    /// The metadata encoded as `bytes`, decoded by `decode` the first time.
    pub(crate) fn get_or_insert_with<E>(
        &self,
        bytes: &[u8],
        decode: impl FnOnce() -> Result<Arc<Metadata>, E>,
    ) -> Result<Arc<Metadata>, E> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(meta) = inner.by_bytes.get(bytes) {
            return Ok(Arc::clone(meta));
        }
        let meta = decode()?;
        // Metadata that no instance holds any more is dropped whenever the
        // cache has doubled since the last sweep.
        if inner.by_bytes.len() >= 2 * inner.after_sweep.max(1024) {
            inner.by_bytes.retain(|_, meta| Arc::strong_count(meta) > 1);
            inner.after_sweep = inner.by_bytes.len();
        }
        inner.by_bytes.insert(bytes.into(), Arc::clone(&meta));
        Ok(meta)
    }

    /// Distinct metadata held.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).by_bytes.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for MetadataCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataCache").field("len", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Metadata {
        Metadata::new("edge-1", Address::new("sim:1").expect("valid"))
    }

    #[test]
    fn valid_metadata_passes() {
        let mut m = meta();
        m.labels.insert("zone".into(), "eu-west".into());
        m.labels.insert("kubernetes.io/arch".into(), "arm64".into());
        assert_eq!(m.validate(), Ok(()));
    }

    #[test]
    fn each_bound_is_named_in_its_error() {
        let mut m = meta();
        m.name = String::new();
        assert!(matches!(m.validate(), Err(MetadataError::NameLength { .. })));

        let mut m = meta();
        m.addrs.clear();
        assert!(matches!(m.validate(), Err(MetadataError::AddressCount { .. })));

        let mut m = meta();
        m.labels.insert("bad key".into(), "v".into());
        assert!(matches!(m.validate(), Err(MetadataError::LabelKey { .. })));

        let mut m = meta();
        for i in 0..20 {
            m.labels.insert(format!("k{i}"), "v".repeat(40));
        }
        assert!(matches!(m.validate(), Err(MetadataError::TooLarge { .. })));
    }
}
