//! The data dir: the node's id (created once, kept forever), its generation
//! counter (raised on every start, written crash-safely before the node says
//! anything to anyone), the keyring ([`keyring`]) and the workload catalog
//! ([`catalog`]).

pub mod catalog;
pub mod keyring;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;
use shoal_protocol::NodeId;

const ID_FILE: &str = "node.id";
/// Where agents before 0.2 kept a libp2p ed25519 key, whose public half
/// gave the node id: read once so an upgraded node keeps its id.
const LEGACY_KEY_FILE: &str = "node.key";
const GENERATION_FILE: &str = "generation";

/// Why the data dir could not be used. The node did not start.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The folder cannot be created or written (permissions, full disk, read-only).
    #[error("data dir {path} is not writable ({source}): pass --data-dir with a folder this user can write")]
    Unwritable { path: PathBuf, source: std::io::Error },
    /// A file in it could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// A file in it holds something else than expected.
    #[error("{path} is corrupt ({why}); {fix}")]
    Corrupt { path: PathBuf, why: String, fix: &'static str },
}

/// What to do about a corrupt identity or generation file.
const NEW_IDENTITY: &str = "move it away to start this node under a new identity";

/// An opened data dir.
#[derive(Clone, Debug)]
pub struct DataDir {
    path: PathBuf,
}

/// Who this node is, as loaded from its data dir.
#[derive(Debug)]
pub struct Loaded {
    /// The protocol's node id: 16 random bytes chosen on the first start.
    pub id: NodeId,
    /// This run's generation: one more than the last run's.
    pub generation: u64,
}

impl DataDir {
    /// Creates the folder if needed and checks it can be written.
    pub fn open(path: &Path) -> Result<DataDir, StoreError> {
        let unwritable = |source| StoreError::Unwritable { path: path.to_path_buf(), source };
        fs::create_dir_all(path).map_err(unwritable)?;
        let dir = DataDir { path: path.to_path_buf() };
        dir.write_atomic(".write-test", b"ok").map_err(unwritable)?;
        let _ = fs::remove_file(path.join(".write-test"));
        Ok(dir)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads (or creates) the node id and raises the generation.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let id = self.node_id()?;
        let generation = self.bump_generation()?;
        Ok(Loaded { id, generation })
    }

    fn node_id(&self) -> Result<NodeId, StoreError> {
        let path = self.path.join(ID_FILE);
        let corrupt = |why: String| StoreError::Corrupt { path: path.clone(), why, fix: NEW_IDENTITY };
        match fs::read_to_string(&path) {
            Ok(text) => return parse_id(text.trim()).ok_or_else(|| corrupt("not 32 hex digits".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Read { path, source }),
        }
        let id = match fs::read(self.path.join(LEGACY_KEY_FILE)) {
            Ok(bytes) => legacy_id(&bytes).ok_or_else(|| StoreError::Corrupt {
                path: self.path.join(LEGACY_KEY_FILE),
                why: "not an ed25519 key".into(),
                fix: NEW_IDENTITY,
            })?,
            Err(_) => {
                let mut id = [0; 16];
                rand::rng().fill_bytes(&mut id);
                NodeId(id)
            }
        };
        let text = format!("{}\n", crate::view::node_id_hex(id));
        self.write_atomic(ID_FILE, text.as_bytes()).map_err(|source| StoreError::Unwritable { path, source })?;
        Ok(id)
    }

    fn bump_generation(&self) -> Result<u64, StoreError> {
        let path = self.path.join(GENERATION_FILE);
        let last = match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                why: e.to_string(),
                fix: NEW_IDENTITY,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        let next = last.saturating_add(1);
        self.write_atomic(GENERATION_FILE, format!("{next}\n").as_bytes())
            .map_err(|source| StoreError::Unwritable { path, source })?;
        Ok(next)
    }

    /// Writes a temp file, fsyncs it, renames it over `name`, fsyncs the folder.
    pub(crate) fn write_atomic(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.path.join(format!(".{name}.tmp"));
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, self.path.join(name))?;
        File::open(&self.path)?.sync_all()
    }
}

fn parse_id(text: &str) -> Option<NodeId> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut id = [0; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(NodeId(id))
}

/// The id an old agent derived from its libp2p key file: the first 16 bytes
/// of the ed25519 public key. The file is the key's protobuf encoding:
/// `08 01 12 40`, then the 32-byte secret and the 32-byte public key.
fn legacy_id(bytes: &[u8]) -> Option<NodeId> {
    let public = bytes.strip_prefix(&[0x08, 0x01, 0x12, 0x40])?.get(32..64)?;
    let mut id = [0; 16];
    id.copy_from_slice(&public[..16]);
    Some(NodeId(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_kept_and_generation_rises() {
        let dir = std::env::temp_dir().join(format!("shoal-store-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let first = DataDir::open(&dir).and_then(|d| d.load()).expect("first start");
        let second = DataDir::open(&dir).and_then(|d| d.load()).expect("second start");
        assert_eq!(first.id, second.id);
        assert_eq!((first.generation, second.generation), (1, 2));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_upgraded_node_keeps_the_id_of_its_libp2p_key() {
        let dir = std::env::temp_dir().join(format!("shoal-store-legacy-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let mut key = vec![0x08, 0x01, 0x12, 0x40];
        key.extend(0..64u8);
        fs::write(dir.join(LEGACY_KEY_FILE), &key).expect("write");
        let loaded = DataDir::open(&dir).and_then(|d| d.load()).expect("start");
        let expected: Vec<u8> = (32..48).collect();
        assert_eq!(loaded.id.0.to_vec(), expected);
        fs::remove_file(dir.join(LEGACY_KEY_FILE)).expect("remove");
        assert_eq!(DataDir::open(&dir).and_then(|d| d.load()).expect("restart").id, loaded.id);
        let _ = fs::remove_dir_all(&dir);
    }
}
