//! The workload catalog on disk, so that a whole-cluster restart loses no
//! workload: every entry (tombstones included) in `<data-dir>/catalog.bin`.
//!
//! The file is `SHOALCAT`, a format number (u32, little endian), the SHA-256
//! of the body, then the body: the entries, bincode (serde, standard config).
//! It is written whole, as temp file, fsync, rename, fsync of the folder, so
//! a crash leaves the old file or the new one; the checksum catches what
//! that cannot (a disk that lies, an edit by hand).

use std::fs;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use shoal_protocol::{CatalogEntry, stable_hash64};

use super::{DataDir, StoreError};

const CATALOG_FILE: &str = "catalog.bin";
const MAGIC: &[u8; 8] = b"SHOALCAT";
const FORMAT: u32 = 1;
const HEADER_LEN: usize = MAGIC.len() + 4 + 32;
const FIX: &str = "move it away to start with an empty catalog (the mesh sends back the workloads other nodes hold)";

/// The file's bytes for these entries.
pub fn encode<'a>(entries: impl IntoIterator<Item = &'a CatalogEntry>) -> Vec<u8> {
    let entries: Vec<&CatalogEntry> = entries.into_iter().collect();
    // Encoding plain data into a Vec does not fail.
    let body = bincode::serde::encode_to_vec(&entries, bincode::config::standard()).unwrap_or_default();
    let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT.to_le_bytes());
    bytes.extend_from_slice(&Sha256::digest(&body));
    bytes.extend_from_slice(&body);
    bytes
}

/// The entries in a file's bytes, or why they cannot be read.
pub fn decode(bytes: &[u8]) -> Result<Vec<CatalogEntry>, String> {
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a shoal catalog file (bad header)".into());
    }
    let format = u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| "bad header")?);
    if format != FORMAT {
        return Err(format!("format {format}, this shoal reads format {FORMAT} (is it from a newer shoal?)"));
    }
    let (checksum, body) = bytes[12..].split_at(32);
    if Sha256::digest(body).as_slice() != checksum {
        return Err("checksum mismatch (torn or altered)".into());
    }
    let (entries, read) = bincode::serde::decode_from_slice::<Vec<CatalogEntry>, _>(body, bincode::config::standard())
        .map_err(|e| e.to_string())?;
    if read != body.len() {
        return Err(format!("{} bytes after the entries", body.len() - read));
    }
    Ok(entries)
}

/// A cheap summary that changes whenever an entry is added, replaced or
/// forgotten (every write carries a new stamp), to tell when to save.
pub fn fingerprint<'a>(entries: impl IntoIterator<Item = &'a CatalogEntry>) -> u64 {
    entries.into_iter().fold(0, |acc, entry| {
        let mut key = [0u8; 33];
        key[..8].copy_from_slice(&entry.stamp.clock.to_le_bytes());
        key[8..24].copy_from_slice(&entry.stamp.node.0);
        key[24..32].copy_from_slice(&stable_hash64(entry.name.as_bytes()).to_le_bytes());
        key[32] = u8::from(entry.spec.is_some());
        acc.wrapping_add(stable_hash64(&key))
    })
}

impl DataDir {
    fn catalog_path(&self) -> PathBuf {
        self.path.join(CATALOG_FILE)
    }

    /// The entries saved by an earlier run (none on a first start).
    pub fn load_catalog(&self) -> Result<Vec<CatalogEntry>, StoreError> {
        let path = self.catalog_path();
        match fs::read(&path) {
            Ok(bytes) => decode(&bytes).map_err(|why| StoreError::Corrupt { path, why, fix: FIX }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(StoreError::Read { path, source }),
        }
    }

    /// Replaces the saved catalog with `bytes` (from [`encode`]), crash-safely.
    pub fn save_catalog(&self, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_atomic(CATALOG_FILE, bytes)
            .map_err(|source| StoreError::Unwritable { path: self.catalog_path(), source })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use shoal_protocol::{Driver, NodeId, Resources, RestartPolicy, Stamp, WorkloadSpec};

    use super::*;

    fn entry(name: &str, clock: u64, live: bool) -> CatalogEntry {
        let spec = WorkloadSpec {
            name: name.into(),
            replicas: 2,
            resources: Resources { cpu_millis: 250, memory_bytes: 64 << 20 },
            constraints: BTreeMap::from([("zone".into(), "edge-1".into())]),
            driver: Driver::Exec {
                command: "sleep".into(),
                args: vec!["60".into()],
                env: BTreeMap::new(),
                workdir: None,
            },
            restart: RestartPolicy::default(),
        };
        CatalogEntry {
            name: name.into(),
            stamp: Stamp { clock, node: NodeId([3; 16]) },
            spec: live.then(|| Arc::new(spec)),
        }
    }

    fn temp_dir(name: &str) -> DataDir {
        let path = std::env::temp_dir().join(format!("shoal-catalog-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        DataDir::open(&path).expect("a data dir")
    }

    #[test]
    fn the_catalog_round_trips_through_the_data_dir() {
        let dir = temp_dir("round-trip");
        assert_eq!(dir.load_catalog().expect("no file is an empty catalog"), Vec::new());
        let entries = vec![entry("web", 4, true), entry("gone", 7, false)];
        dir.save_catalog(&encode(&entries)).expect("saved");
        assert_eq!(dir.load_catalog().expect("loaded"), entries);
        // A later save replaces the whole file.
        dir.save_catalog(&encode(&entries[..1])).expect("saved again");
        assert_eq!(dir.load_catalog().expect("loaded"), entries[..1]);
        let _ = fs::remove_dir_all(dir.path());
    }

    #[test]
    fn a_torn_or_corrupt_file_is_an_error_naming_the_file_and_the_fix() {
        let dir = temp_dir("corrupt");
        let good = encode(&[entry("web", 4, true), entry("db", 5, true)]);
        let flipped = {
            let mut bytes = good.clone();
            let last = bytes.len() - 3;
            bytes[last] ^= 0x20;
            bytes
        };
        for (what, bytes) in [
            ("torn", good[..good.len() / 2].to_vec()),
            ("cut in the header", good[..10].to_vec()),
            ("a flipped bit", flipped),
            ("another file", b"name = \"web\"\n".to_vec()),
        ] {
            fs::write(dir.path().join(CATALOG_FILE), &bytes).expect("write");
            let error = dir.load_catalog().expect_err(what).to_string();
            assert!(error.contains("catalog.bin") && error.contains("move it away"), "{what}: {error}");
        }
        let _ = fs::remove_dir_all(dir.path());
    }

    #[test]
    fn the_fingerprint_changes_with_any_write_or_forgetting() {
        let base = [entry("web", 4, true), entry("db", 5, true)];
        let print = fingerprint(&base);
        assert_eq!(print, fingerprint(base.iter().rev()), "order does not matter");
        assert_ne!(print, fingerprint(&[entry("web", 4, true), entry("db", 6, true)]));
        assert_ne!(print, fingerprint(&[entry("web", 4, true), entry("db", 5, false)]));
        assert_ne!(print, fingerprint(&base[..1]));
    }
}
