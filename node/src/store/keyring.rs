//! `<data-dir>/keyring`: the cluster keys this agent holds, one hex key per
//! line, the primary first (mode 0600, written crash-safely).
//!
//! Once it exists the keyring wins over `--cluster-key`: after a rotation
//! the flag still names the old key, and an agent that went back to it on a
//! restart would be cut off from a mesh that has removed it.

use std::fs;

use crate::crypto::{ClusterKey, Keyring};

use super::{DataDir, StoreError};

const KEYRING_FILE: &str = "keyring";
const HEADER: &str = "# shoal keyring: one cluster key per line, the primary first. `shoal keys` changes it.\n";

impl DataDir {
    /// The saved keyring, if there is one.
    pub fn load_keyring(&self) -> Result<Option<Keyring>, StoreError> {
        let path = self.path.join(KEYRING_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        let corrupt = |why: String| StoreError::Corrupt {
            path: path.clone(),
            why,
            fix: "restore it from another agent's data dir, or move it away to start from --cluster-key",
        };
        let mut keys = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        let primary = keys.next().ok_or_else(|| corrupt("it holds no key".into()))?;
        let parse = |line: &str| ClusterKey::parse(line).map_err(|e| corrupt(e.to_string()));
        let primary = parse(primary)?;
        let others = keys.map(parse).collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Keyring::new(primary, others)))
    }

    /// Saves the keyring (temp file, fsync, rename, fsync of the folder).
    pub fn save_keyring(&self, ring: &Keyring) -> Result<(), StoreError> {
        let mut text = HEADER.to_string();
        for key in ring.keys() {
            text.push_str(&key.to_hex());
            text.push('\n');
        }
        self.write_atomic(KEYRING_FILE, text.as_bytes())
            .map_err(|source| StoreError::Unwritable { path: self.path.join(KEYRING_FILE), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keyring_round_trips_in_order() {
        let dir = std::env::temp_dir().join(format!("shoal-keyring-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let data = DataDir::open(&dir).expect("dir");
        assert!(data.load_keyring().expect("loads").is_none());
        let (a, b) = (ClusterKey::generate(), ClusterKey::generate());
        let ring = Keyring::new(b.clone(), [a.clone()]);
        data.save_keyring(&ring).expect("saves");
        let loaded = data.load_keyring().expect("loads").expect("present");
        assert_eq!(loaded.ids(), vec![b.id(), a.id()]);
        fs::write(dir.join(KEYRING_FILE), "# nothing\n").expect("write");
        assert!(matches!(data.load_keyring(), Err(StoreError::Corrupt { .. })));
        let _ = fs::remove_dir_all(&dir);
    }
}
