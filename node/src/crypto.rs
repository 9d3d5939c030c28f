//! The cluster key: admission to the mesh.
//!
//! libp2p's private networks (pnet) do not work over QUIC, so admission lives
//! one layer up: every protocol message is sealed with XChaCha20-Poly1305
//! under a key derived from the cluster key, and the protocol's cluster id is
//! another hash of it. A peer without the key can neither read a message
//! (it cannot open it) nor inject one (it cannot seal one we would open).

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Bytes a sealed frame adds to its payload: nonce plus tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + 16;
const NONCE_LEN: usize = 24;

/// Why a cluster key was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key is not 64 hexadecimal digits.
    #[error("a cluster key is 64 hex digits (32 bytes); run `shoal keygen` to make one")]
    Format,
    /// The key file could not be read.
    #[error("cannot read cluster key file {path}: {source}")]
    File { path: String, source: std::io::Error },
}

/// A message could not be opened: wrong key, truncated or forged.
#[derive(Debug, thiserror::Error)]
#[error("frame does not open under this cluster key")]
pub struct OpenError;

/// The shared secret of one cluster.
#[derive(Clone)]
pub struct ClusterKey([u8; 32]);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    /// A fresh random key.
    pub fn generate() -> ClusterKey {
        let mut key = [0; 32];
        rand::rng().fill_bytes(&mut key);
        ClusterKey(key)
    }

    /// The key every node started without `--cluster-key` shares: it keeps
    /// strangers' meshes apart by accident, not by design.
    pub fn open_cluster() -> ClusterKey {
        ClusterKey(derive(b"shoal open cluster v1", &[]))
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<ClusterKey, KeyError> {
        let text = text.trim();
        if text.len() != 64 || !text.is_ascii() {
            return Err(KeyError::Format);
        }
        let mut key = [0; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| KeyError::Format)?;
        }
        Ok(ClusterKey(key))
    }

    /// Reads a key from a file holding its hex form.
    pub fn from_file(path: &std::path::Path) -> Result<ClusterKey, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| KeyError::File { path: path.display().to_string(), source })?;
        ClusterKey::parse(&text)
    }

    /// The hex form, as `shoal keygen` prints it.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The protocol's cluster id: a hash of the key.
    pub fn cluster_id(&self) -> u64 {
        let digest = derive(b"shoal cluster id v1", &self.0);
        let mut id = [0; 8];
        id.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(id)
    }

    /// The sealer for this cluster's frames.
    pub fn sealer(&self) -> Sealer {
        Sealer { cipher: XChaCha20Poly1305::new(&derive(b"shoal frame key v1", &self.0).into()) }
    }
}

fn derive(context: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(context);
    hash.update(key);
    hash.finalize().into()
}

/// Seals and opens frames under one cluster key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// `nonce || ciphertext || tag`, with a random nonce.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        // Encryption into a Vec cannot fail for inputs under 256 GiB.
        match self.cipher.encrypt(XNonce::from_slice(&nonce), plaintext) {
            Ok(ciphertext) => out.extend_from_slice(&ciphertext),
            Err(_) => out.clear(),
        }
        out
    }

    /// The plaintext of a sealed frame.
    pub fn open(&self, frame: &[u8]) -> Result<Vec<u8>, OpenError> {
        if frame.len() < SEAL_OVERHEAD {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = frame.split_at(NONCE_LEN);
        self.cipher.decrypt(XNonce::from_slice(nonce), ciphertext).map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_other_keys_fail() {
        let key = ClusterKey::generate();
        let sealed = key.sealer().seal(b"hello");
        assert_eq!(key.sealer().open(&sealed).ok(), Some(b"hello".to_vec()));
        assert!(ClusterKey::generate().sealer().open(&sealed).is_err());
        assert!(key.sealer().open(&sealed[..sealed.len() - 1]).is_err());
        assert!(key.sealer().open(b"short").is_err());
    }

    #[test]
    fn hex_round_trips_and_ids_differ() {
        let key = ClusterKey::generate();
        let parsed = ClusterKey::parse(&format!(" {}\n", key.to_hex())).expect("parses");
        assert_eq!(parsed.cluster_id(), key.cluster_id());
        assert_ne!(key.cluster_id(), ClusterKey::generate().cluster_id());
        assert!(ClusterKey::parse("abc").is_err());
        assert!(ClusterKey::parse(&"zz".repeat(32)).is_err());
    }
}
