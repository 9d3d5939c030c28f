//! What the driver tests share.

use std::time::Duration;

use anyhow::bail;
use shoal_node::driver::{ReplicaStatus, Supervisor};

/// Waits (on the change notification) until replica `replica` of `name`
/// has a status satisfying `ok`.
pub(crate) async fn wait_status(
    sup: &Supervisor,
    name: &str,
    replica: u16,
    timeout: Duration,
    ok: impl Fn(&ReplicaStatus) -> bool,
) -> anyhow::Result<ReplicaStatus> {
    let mut changes = sup.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = sup.status(name, replica);
        if let Some(status) = status.as_ref().filter(|s| ok(s)) {
            return Ok(status.clone());
        }
        if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
            bail!("timed out waiting for {name}/{replica}; last status {status:?}");
        }
    }
}
