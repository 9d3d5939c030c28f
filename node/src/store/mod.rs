//! The data dir: the node's ed25519 identity (created once, kept forever),
//! its generation counter (raised on every start, written crash-safely before
//! the node says anything to anyone), and the workload catalog ([`catalog`]).

pub mod catalog;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;
use shoal_protocol::NodeId;

const KEY_FILE: &str = "node.key";
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
    /// The libp2p identity (its peer id is derived from it).
    pub keypair: Keypair,
    /// The protocol's node id: the first 16 bytes of the public key.
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

    /// Loads (or creates) the identity and raises the generation.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let keypair = self.keypair()?;
        let id = node_id(&keypair);
        let generation = self.bump_generation()?;
        Ok(Loaded { keypair, id, generation })
    }

    fn keypair(&self) -> Result<Keypair, StoreError> {
        let path = self.path.join(KEY_FILE);
        match fs::read(&path) {
            Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| StoreError::Corrupt {
                path,
                why: e.to_string(),
                fix: NEW_IDENTITY,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keypair = Keypair::generate_ed25519();
                let bytes = keypair.to_protobuf_encoding().map_err(|e| StoreError::Corrupt {
                    path: path.clone(),
                    why: e.to_string(),
                    fix: NEW_IDENTITY,
                })?;
                self.write_atomic(KEY_FILE, &bytes).map_err(|source| StoreError::Unwritable { path, source })?;
                Ok(keypair)
            }
            Err(source) => Err(StoreError::Read { path, source }),
        }
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

/// The protocol's id for a libp2p identity: the first 16 bytes of its public key.
pub fn node_id(keypair: &Keypair) -> NodeId {
    let mut id = [0; 16];
    if let Ok(ed) = keypair.clone().try_into_ed25519() {
        id.copy_from_slice(&ed.public().to_bytes()[..16]);
    } else {
        let bytes = keypair.public().encode_protobuf();
        for (slot, byte) in id.iter_mut().zip(bytes.iter().rev()) {
            *slot = *byte;
        }
    }
    NodeId(id)
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
        assert_eq!(first.keypair.public(), second.keypair.public());
        assert_eq!((first.generation, second.generation), (1, 2));
        let _ = fs::remove_dir_all(&dir);
    }
}
