//! The keyring at run time, and key rotation across the mesh.
//!
//! [`KeyStore`] is the agent's keyring, shared by the transport (which seals
//! with it and opens with it on every datagram) and the key service. A
//! [`KeyOp`] changes it, on this agent or, sent over a sealed stream, on a
//! peer; every change is saved to the data dir before it is acknowledged.
//! `shoal keys` fans one op out to every live member through any agent
//! (Serf's `serf keys`), so a mesh moves from key A to key B as
//! install B, use B, remove A with no agent ever cut off.

use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::crypto::{ClusterKey, KeyId, Keyring, OpenError};
use crate::store::{DataDir, StoreError};

/// A change to (or a question about) an agent's keyring. Its `Debug` never
/// shows key material.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOp {
    /// Which keys are held, the primary first.
    List,
    /// Hold this key (64 hex digits) too: open what it seals.
    Install { key: String },
    /// Seal with this installed key from now on.
    Use { id: [u8; 4] },
    /// Stop holding this key (not the primary).
    Remove { id: [u8; 4] },
}

/// An agent's answer to a [`KeyOp`]: the keys it holds afterwards (ids,
/// the primary first), or why it refused (its keyring unchanged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReply {
    pub keys: Vec<String>,
    pub error: Option<String>,
}

/// The agent's keyring, shared by the transport and the key service.
#[derive(Debug)]
pub struct KeyStore {
    ring: RwLock<Keyring>,
    dir: DataDir,
}

impl KeyStore {
    /// The saved keyring if there is one (it wins over `flag`, which may
    /// name a key rotated out since), else `flag` (saved), else the open
    /// cluster key (not saved, so a later `--cluster-key` takes effect).
    pub fn load(dir: &DataDir, flag: Option<ClusterKey>) -> Result<KeyStore, StoreError> {
        let ring = match (dir.load_keyring()?, flag) {
            (Some(ring), Some(flag)) => {
                if !ring.holds(flag.id()) {
                    warn!(
                        flag = %flag.id(), primary = %ring.primary().id(),
                        "--cluster-key is not in the saved keyring (rotated since?); using the keyring. \
                         Move <data-dir>/keyring away to start from --cluster-key instead"
                    );
                }
                ring
            }
            (Some(ring), None) => ring,
            (None, Some(flag)) => {
                let ring = Keyring::new(flag, []);
                dir.save_keyring(&ring)?;
                ring
            }
            (None, None) => Keyring::new(ClusterKey::open_cluster(), []),
        };
        Ok(KeyStore { ring: RwLock::new(ring), dir: dir.clone() })
    }

    /// A store that is never saved, for tests.
    pub fn in_memory(ring: Keyring, dir: DataDir) -> KeyStore {
        KeyStore { ring: RwLock::new(ring), dir }
    }

    /// Seals under the primary key.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        self.ring.read().unwrap_or_else(PoisonError::into_inner).seal(plaintext)
    }

    /// Opens with whichever held key sealed it.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        self.ring.read().unwrap_or_else(PoisonError::into_inner).open(sealed)
    }

    /// The held keys' ids, the primary first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.ring.read().unwrap_or_else(PoisonError::into_inner).ids()
    }

    /// Applies `op` and saves the result before answering. A failed save
    /// leaves the keyring as it was.
    pub fn apply(&self, op: &KeyOp) -> KeyReply {
        let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = ring.clone();
        let changed = match op {
            KeyOp::List => Ok(false),
            KeyOp::Install { key } => ClusterKey::parse(key).map(|k| next.install(k)).map_err(|e| e.to_string()),
            KeyOp::Use { id } => next.use_key(KeyId(*id)).map_err(|e| e.to_string()),
            KeyOp::Remove { id } => next.remove(KeyId(*id)).map_err(|e| e.to_string()),
        };
        let saved = match changed {
            Ok(true) => self.dir.save_keyring(&next).map(|()| true).map_err(|e| e.to_string()),
            other => other,
        };
        let error = match saved {
            Ok(true) => {
                info!(op = %op.describe(), keys = ?next.ids(), "keyring changed");
                *ring = next;
                None
            }
            Ok(false) => None,
            Err(error) => Some(error),
        };
        KeyReply { keys: ring.ids().iter().map(ToString::to_string).collect(), error }
    }
}

impl KeyOp {
    /// Never shows key material.
    pub fn describe(&self) -> String {
        match self {
            KeyOp::List => "list".into(),
            KeyOp::Install { key } => {
                ClusterKey::parse(key).map_or_else(|_| "install (bad key)".into(), |k| format!("install {}", k.id()))
            }
            KeyOp::Use { id } => format!("use {}", KeyId(*id)),
            KeyOp::Remove { id } => format!("remove {}", KeyId(*id)),
        }
    }
}

impl std::fmt::Debug for KeyOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// One key across the mesh: on how many agents it is installed, and on how
/// many it is the primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCount {
    pub id: String,
    pub installed: usize,
    pub primary: usize,
}

/// An agent that did not apply an op, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFailure {
    pub node: String,
    pub error: String,
}

/// `GET /v1/keys` and `POST /v1/keys/{op}`: what every live agent answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysView {
    /// What was done (`list`, `install 1a2b3c4d`, ...).
    pub op: String,
    /// Agents asked, this one included.
    pub agents: usize,
    /// Agents that answered without an error.
    pub ok: usize,
    pub keys: Vec<KeyCount>,
    pub failures: Vec<KeyFailure>,
}

impl KeysView {
    /// Tallies the answers of every agent asked.
    pub fn tally(op: &KeyOp, answers: Vec<(String, Result<KeyReply, String>)>) -> KeysView {
        let mut counts: Vec<KeyCount> = Vec::new();
        let mut failures = Vec::new();
        let agents = answers.len();
        for (node, answer) in answers {
            let reply = match answer {
                Ok(reply) => reply,
                Err(error) => {
                    failures.push(KeyFailure { node, error });
                    continue;
                }
            };
            for (at, id) in reply.keys.iter().enumerate() {
                let count = match counts.iter_mut().find(|c| &c.id == id) {
                    Some(count) => count,
                    None => {
                        counts.push(KeyCount { id: id.clone(), installed: 0, primary: 0 });
                        let last = counts.len() - 1;
                        &mut counts[last]
                    }
                };
                count.installed += 1;
                count.primary += usize::from(at == 0);
            }
            if let Some(error) = reply.error {
                failures.push(KeyFailure { node, error });
            }
        }
        counts.sort_by(|a, b| b.primary.cmp(&a.primary).then(b.installed.cmp(&a.installed)).then(a.id.cmp(&b.id)));
        failures.sort_by(|a, b| a.node.cmp(&b.node));
        KeysView { op: op.describe(), agents, ok: agents - failures.len(), keys: counts, failures }
    }
}

/// Parses a key given to `use` or `remove`: the key itself (64 hex digits)
/// or its id (8, as `shoal keys list` shows it).
pub fn parse_key_id(text: &str) -> Option<KeyId> {
    let text = text.trim();
    if let Ok(key) = ClusterKey::parse(text) {
        return Some(key.id());
    }
    if text.len() != 8 || !text.is_ascii() {
        return None;
    }
    let mut id = [0; 4];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(KeyId(id))
}
