//! Saving the catalog while the agent runs: at most ~200 ms after it changes,
//! and once more on a clean stop. The file is written by its own task (on
//! the blocking pool: two fsyncs can take tens of milliseconds), so the agent
//! never waits on the disk; a newer catalog replaces one not yet written.

use std::time::Duration;

use shoal_protocol::Node;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::store::DataDir;
use crate::store::catalog::{encode, fingerprint};

/// How long after a change the catalog is saved: writes that come together
/// (a burst of submits, a sync with a peer) are saved together.
pub const SAVE_DELAY: Duration = Duration::from_millis(200);
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// The agent's side of the catalog file.
#[derive(Debug)]
pub struct CatalogSaver {
    latest: watch::Sender<Vec<u8>>,
    writer: JoinHandle<()>,
    /// The fingerprint of the catalog last handed to the writer.
    saved: u64,
    changed_at: Option<tokio::time::Instant>,
    checked_at: Option<tokio::time::Instant>,
}

impl CatalogSaver {
    /// Starts the writer; `membership`'s catalog is what is on disk now.
    pub fn start(dir: DataDir, protocol: &Node) -> CatalogSaver {
        let (latest, updates) = watch::channel(Vec::new());
        let writer = tokio::spawn(write_loop(dir, updates));
        let saved = fingerprint(protocol.workloads().catalog_entries());
        CatalogSaver { latest, writer, saved, changed_at: None, checked_at: None }
    }

    /// Notes whether the catalog changed since it was last saved. Call after
    /// anything that may have changed it.
    pub fn note(&mut self, protocol: &Node) {
        // The fingerprint reads the whole catalog: under a flood of messages,
        // look at most every CHECK_EVERY (a save is ~200 ms away anyway).
        let now = tokio::time::Instant::now();
        if self.changed_at.is_some() || self.checked_at.is_some_and(|at| now - at < CHECK_EVERY) {
            return;
        }
        self.checked_at = Some(now);
        if fingerprint(protocol.workloads().catalog_entries()) != self.saved {
            self.changed_at = Some(now);
        }
    }

    /// When the catalog should be saved, if it changed.
    pub fn due(&self) -> Option<tokio::time::Instant> {
        self.changed_at.map(|at| at + SAVE_DELAY)
    }

    /// Hands the catalog to the writer.
    pub fn save(&mut self, protocol: &Node) {
        self.changed_at = None;
        let print = fingerprint(protocol.workloads().catalog_entries());
        if print != self.saved {
            self.saved = print;
            self.latest.send_replace(encode(protocol.workloads().catalog_entries()));
        }
    }

    /// Saves what changed, and waits (up to `within`) until it is on disk.
    pub async fn finish(mut self, protocol: &Node, within: Duration) {
        self.save(protocol);
        let CatalogSaver { latest, writer, .. } = self;
        drop(latest);
        if tokio::time::timeout(within, writer).await.is_err() {
            warn!("the catalog was not saved within {within:?} of stopping; its last changes may be lost");
        }
    }
}

async fn write_loop(dir: DataDir, mut updates: watch::Receiver<Vec<u8>>) {
    // Ends once the agent drops its sender, after writing any last update.
    while updates.changed().await.is_ok() {
        let bytes = updates.borrow_and_update().clone();
        let dir = dir.clone();
        let len = bytes.len();
        match tokio::task::spawn_blocking(move || dir.save_catalog(&bytes)).await {
            Ok(Ok(())) => debug!(bytes = len, "catalog saved"),
            Ok(Err(error)) => {
                warn!(%error, "cannot save the catalog; retrying on its next change (a restart of every node would lose the changes since)");
            }
            Err(error) => warn!(%error, "the catalog writer failed"),
        }
    }
}
