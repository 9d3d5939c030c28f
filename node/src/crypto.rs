//! Cluster keys and the seal every byte between agents travels under.
//!
//! Admission to the mesh is the cluster key: every datagram and every stream
//! frame is sealed with XChaCha20-Poly1305 under a key derived from it, so a
//! peer without the key can neither read a message nor inject one. An agent
//! holds a [`Keyring`] of several keys (memberlist's keyring): it seals with
//! the primary and opens with any, and every sealed message names the key
//! that sealed it, so a mesh moves from one key to another with no agent cut
//! off (`shoal keys`).
//!
//! A sealed message is
//!
//! ```text
//! format (1) | key id (4) | nonce (24) | ciphertext | tag (16)
//! ```
//!
//! 45 bytes more than its plaintext ([`SEAL_OVERHEAD`]). The format byte and
//! the key id are authenticated as associated data. The nonce is random:
//! 192 bits never repeat in practice, so no counter has to survive a restart.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The one sealed format so far.
const FORMAT: u8 = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN;

/// Bytes a sealed message adds to its plaintext: format, key id, nonce, tag.
pub const SEAL_OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

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

/// Why a sealed message did not open. Nothing was read from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Too short, or not a format this agent knows: garbage.
    #[error("not a sealed message")]
    Malformed,
    /// Sealed under a key this agent does not hold.
    #[error("sealed under a key this agent does not hold")]
    UnknownKey,
    /// The key is held but the message does not authenticate: forged,
    /// altered or truncated.
    #[error("does not authenticate under the key it names")]
    Forged,
}

impl OpenError {
    /// Every reason, in the order metrics list them.
    pub const ALL: [OpenError; 3] = [OpenError::Malformed, OpenError::UnknownKey, OpenError::Forged];

    /// The label value metrics use.
    pub fn name(self) -> &'static str {
        match self {
            OpenError::Malformed => "malformed",
            OpenError::UnknownKey => "unknown_key",
            OpenError::Forged => "forged",
        }
    }
}

/// The shared secret of one cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; 32]);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterKey({})", self.id())
    }
}

/// A short public name for a key: the first 4 bytes of a hash of it. It
/// tells which key sealed a message, and names keys in `shoal keys list`,
/// without revealing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
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

    /// The key's public name.
    pub fn id(&self) -> KeyId {
        let digest = derive(b"shoal key id v1", &self.0);
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        KeyId(id)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&derive(b"shoal frame key v1", &self.0).into())
    }
}

fn derive(context: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(context);
    hash.update(key);
    hash.finalize().into()
}

/// One key with its cipher, ready to use.
#[derive(Clone)]
struct Held {
    key: ClusterKey,
    id: KeyId,
    cipher: XChaCha20Poly1305,
}

impl Held {
    fn new(key: ClusterKey) -> Held {
        Held { id: key.id(), cipher: key.cipher(), key }
    }
}

/// The keys an agent holds: it seals with the primary (the first) and opens
/// with any. Never empty.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Held>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|k| k.id)).finish()
    }
}

/// Why a keyring change was refused. The keyring is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// `use` or `remove` named a key that is not installed.
    #[error("key {0} is not installed here (`shoal keys install` it first)")]
    NotInstalled(KeyId),
    /// `remove` named the primary key.
    #[error("key {0} is the primary key; make another key primary with `shoal keys use` before removing it")]
    RemovePrimary(KeyId),
}

impl Keyring {
    /// A keyring holding `primary` first, then `others` (duplicates dropped).
    pub fn new(primary: ClusterKey, others: impl IntoIterator<Item = ClusterKey>) -> Keyring {
        let mut ring = Keyring { keys: vec![Held::new(primary)] };
        for key in others {
            ring.install(key);
        }
        ring
    }

    /// The key messages are sealed with.
    pub fn primary(&self) -> &ClusterKey {
        &self.keys[0].key
    }

    /// Every key, the primary first.
    pub fn keys(&self) -> impl Iterator<Item = &ClusterKey> {
        self.keys.iter().map(|k| &k.key)
    }

    /// Every key's id, the primary first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// Whether a key with this id is held.
    pub fn holds(&self, id: KeyId) -> bool {
        self.keys.iter().any(|k| k.id == id)
    }

    /// Adds a key to open with. Returns whether it was new.
    pub fn install(&mut self, key: ClusterKey) -> bool {
        if self.keys.iter().any(|k| k.key == key) {
            return false;
        }
        self.keys.push(Held::new(key));
        true
    }

    /// Makes an installed key the primary. Returns whether it changed.
    pub fn use_key(&mut self, id: KeyId) -> Result<bool, KeyringError> {
        let at = self.keys.iter().position(|k| k.id == id).ok_or(KeyringError::NotInstalled(id))?;
        self.keys[..=at].rotate_right(1);
        Ok(at != 0)
    }

    /// Removes a key that is not the primary. Returns whether it was held.
    pub fn remove(&mut self, id: KeyId) -> Result<bool, KeyringError> {
        if self.keys[0].id == id {
            return Err(KeyringError::RemovePrimary(id));
        }
        let before = self.keys.len();
        self.keys.retain(|k| k.id != id);
        Ok(self.keys.len() != before)
    }

    /// Seals `plaintext` under the primary key.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let primary = &self.keys[0];
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        out.push(FORMAT);
        out.extend_from_slice(&primary.id.0);
        let mut nonce = [0; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        out.extend_from_slice(&nonce);
        let payload = Payload { msg: plaintext, aad: &out[..HEADER_LEN] };
        // Encryption into a Vec cannot fail for inputs under 256 GiB.
        match primary.cipher.encrypt(XNonce::from_slice(&nonce), payload) {
            Ok(ciphertext) => out.extend_from_slice(&ciphertext),
            Err(_) => out.clear(),
        }
        out
    }

    /// The plaintext of a sealed message, opened with the key it names.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < SEAL_OVERHEAD || sealed[0] != FORMAT {
            return Err(OpenError::Malformed);
        }
        let (header, rest) = sealed.split_at(HEADER_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let mut named = [0; KEY_ID_LEN];
        named.copy_from_slice(&header[1..]);
        let named = KeyId(named);
        let mut held = self.keys.iter().filter(|k| k.id == named).peekable();
        if held.peek().is_none() {
            return Err(OpenError::UnknownKey);
        }
        // Two keys may share an id (a 1 in 2^32 chance): try each.
        held.find_map(|k| k.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: header }).ok())
            .ok_or(OpenError::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_other_keys_fail() {
        let ring = Keyring::new(ClusterKey::generate(), []);
        let sealed = ring.seal(b"hello");
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(ring.open(&sealed), Ok(b"hello".to_vec()));
        assert_eq!(Keyring::new(ClusterKey::generate(), []).open(&sealed), Err(OpenError::UnknownKey));
        assert_eq!(ring.open(&sealed[..sealed.len() - 1]), Err(OpenError::Forged));
        assert_eq!(ring.open(b"short"), Err(OpenError::Malformed));
        let mut other_format = sealed.clone();
        other_format[0] = 2;
        assert_eq!(ring.open(&other_format), Err(OpenError::Malformed));
    }

    #[test]
    fn the_key_id_is_authenticated() {
        let (a, b) = (ClusterKey::generate(), ClusterKey::generate());
        let ring = Keyring::new(a.clone(), [b.clone()]);
        let mut sealed = Keyring::new(a, []).seal(b"x");
        sealed[1..5].copy_from_slice(&b.id().0);
        assert_eq!(ring.open(&sealed), Err(OpenError::Forged));
    }

    #[test]
    fn rotation_opens_with_any_key_and_seals_with_the_primary() {
        let (a, b) = (ClusterKey::generate(), ClusterKey::generate());
        let old = Keyring::new(a.clone(), []);
        let mut ring = Keyring::new(a.clone(), []);
        assert!(ring.install(b.clone()));
        assert!(!ring.install(b.clone()));
        let from_new = Keyring::new(b.clone(), []).seal(b"new");
        assert_eq!(ring.open(&from_new), Ok(b"new".to_vec()));
        assert_eq!(ring.remove(a.id()), Err(KeyringError::RemovePrimary(a.id())));
        assert_eq!(ring.use_key(b.id()), Ok(true));
        assert_eq!(ring.ids(), vec![b.id(), a.id()]);
        // Still opens what agents that have not switched yet seal.
        assert_eq!(ring.open(&old.seal(b"old")), Ok(b"old".to_vec()));
        assert_eq!(ring.remove(a.id()), Ok(true));
        assert_eq!(ring.open(&old.seal(b"old")), Err(OpenError::UnknownKey));
        assert_eq!(ring.use_key(a.id()), Err(KeyringError::NotInstalled(a.id())));
        assert_eq!(Keyring::new(a, []).open(&ring.seal(b"x")), Err(OpenError::UnknownKey));
    }

    #[test]
    fn hex_round_trips_and_ids_differ() {
        let key = ClusterKey::generate();
        let parsed = ClusterKey::parse(&format!(" {}\n", key.to_hex())).expect("parses");
        assert_eq!(parsed, key);
        assert_eq!(parsed.id(), key.id());
        assert_ne!(key.id(), ClusterKey::generate().id());
        assert_eq!(key.id().to_string().len(), 8);
        assert!(ClusterKey::parse("abc").is_err());
        assert!(ClusterKey::parse(&"zz".repeat(32)).is_err());
    }
}
