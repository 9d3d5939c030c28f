//! Drivers: run this node's replicas as host processes (`exec`) or Docker
//! containers (`docker`), restart them by their policy, and report their
//! state.
//!
//! The [`Supervisor`] knows nothing of placement: the agent tells it which
//! replicas to run ([`Supervisor::ensure_running`]) and to stop
//! ([`Supervisor::stop`]), reads [`Supervisor::statuses`] to gossip them, and
//! waits on [`Supervisor::subscribe`] to learn when they change.

pub(crate) mod backoff;
mod docker;
mod exec;
mod runner;
mod status;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use shoal_protocol::{ReplicaState, ReplicaStatus};
use shoal_protocol::{SpecError, WorkloadSpec};
use tokio::sync::watch;

pub use status::ReplicaKey;

use docker::DockerConn;
use runner::Runner;

/// How the supervisor runs replicas.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    /// The agent's data dir; replica logs go to `workloads/<name>-<replica>/`.
    pub data_dir: PathBuf,
    /// This node's id: `SHOAL_NODE` for workloads, and the `shoal.node`
    /// label that tells this node's containers from others'.
    pub node_id: String,
    /// How long a stopped replica has between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// A replica that ran this long before exiting restarts after the
    /// initial backoff again, not the doubled one.
    pub stable_after: Duration,
    /// The Docker Engine's unix socket.
    pub docker_socket: PathBuf,
}

impl SupervisorConfig {
    /// Defaults: 10 s grace, 10 s to count as stable, the socket from
    /// `DOCKER_HOST` (when it is `unix://…`) or `/var/run/docker.sock`.
    pub fn new(data_dir: impl Into<PathBuf>, node_id: impl Into<String>) -> SupervisorConfig {
        SupervisorConfig {
            data_dir: data_dir.into(),
            node_id: node_id.into(),
            stop_grace: Duration::from_secs(10),
            stable_after: Duration::from_secs(10),
            docker_socket: default_docker_socket(),
        }
    }
}

/// `DOCKER_HOST` if it names a unix socket, else the standard socket.
pub fn default_docker_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// Why a replica could not start, or a docker query failed. A replica's
/// error becomes its status detail; no state changed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    BadSpec(SpecError),
    #[error("cannot prepare {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot start `{command}`: {source}{hint}")]
    Spawn { command: String, source: std::io::Error, hint: &'static str },
    #[error("docker engine not reachable at {socket}: is dockerd running? ({source})")]
    DockerUnreachable { socket: String, source: bollard::errors::Error },
    #[error("docker {action} failed: {source}")]
    Docker { action: &'static str, source: bollard::errors::Error },
}

/// What the supervisor and its replica tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    config: SupervisorConfig,
    statuses: Mutex<BTreeMap<ReplicaKey, ReplicaStatus>>,
    /// Bumped on every status change.
    changes: watch::Sender<u64>,
    docker: DockerConn,
}

impl Shared {
    fn statuses(&self) -> MutexGuard<'_, BTreeMap<ReplicaKey, ReplicaStatus>> {
        // A panic elsewhere while holding the lock leaves a map that is still
        // consistent (every write is one insert or remove).
        self.statuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, key: &ReplicaKey, state: ReplicaState, restarts: u32, detail: &str) {
        // Statuses ride in datagrams: cut the detail to the protocol's bound.
        let mut end = detail.len().min(ReplicaStatus::MAX_DETAIL_LEN);
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        let status = ReplicaStatus {
            workload: key.workload.clone(),
            replica: key.replica,
            state,
            restarts,
            detail: detail[..end].to_string(),
        };
        let changed = self.statuses().insert(key.clone(), status.clone()).is_none_or(|old| old != status);
        if changed {
            tracing::debug!(replica = %key, ?state, restarts, detail, "replica status");
            self.changes.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    fn remove(&self, key: &ReplicaKey) {
        if self.statuses().remove(key).is_some() {
            self.changes.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    fn replica_dir(&self, key: &ReplicaKey) -> PathBuf {
        workloads_dir(&self.config.data_dir).join(key.dir_name())
    }
}

fn workloads_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("workloads")
}

/// Runs this node's replicas, as tasks on the tokio runtime that calls it
/// (which needs time, io and process support: `enable_all`). Dropping it without [`Supervisor::stop_all`] kills exec
/// replicas and leaves containers running, for the next agent to adopt.
#[derive(Debug)]
pub struct Supervisor {
    shared: Arc<Shared>,
    runners: tokio::sync::Mutex<BTreeMap<ReplicaKey, Runner>>,
}

impl Supervisor {
    /// Kills exec replicas that a previous agent on this data dir left
    /// running. Containers are not touched: they are adopted on
    /// [`Supervisor::ensure_running`], or found by [`Supervisor::leftovers`].
    pub fn new(config: SupervisorConfig) -> Supervisor {
        exec::reap_orphans(&workloads_dir(&config.data_dir));
        let docker = DockerConn::new(config.docker_socket.clone(), config.stop_grace);
        let shared = Shared { config, statuses: Mutex::new(BTreeMap::new()), changes: watch::channel(0).0, docker };
        Supervisor { shared: Arc::new(shared), runners: tokio::sync::Mutex::new(BTreeMap::new()) }
    }

    /// Runs replica `replica` of `spec` unless it already runs this spec.
    /// A changed driver section replaces the replica (the old one is stopped
    /// first); a changed restart policy applies at its next exit, or at once
    /// to a replica that the old policy left down. Returns at
    /// once: starting, and any failure, show in [`Supervisor::statuses`].
    pub async fn ensure_running(&self, spec: &WorkloadSpec, replica: u16) {
        let key = ReplicaKey::new(spec.name.clone(), replica);
        let mut runners = self.runners.lock().await;
        match runners.get(&key) {
            Some(runner) if runner.run_hash == runner::run_hash(spec) => runner.set_policy(spec.restart),
            _ => {
                let previous = runners.remove(&key);
                self.shared.set(&key, ReplicaState::Starting, 0, "");
                let runner = Runner::spawn(Arc::clone(&self.shared), spec.clone(), key.clone(), previous);
                runners.insert(key, runner);
            }
        }
    }

    /// Stops a replica gracefully (SIGTERM or `docker stop`, SIGKILL after
    /// the grace), removes its container, and forgets its status (the
    /// supervisor never reports `Stopped`: the agent gossips that tombstone
    /// once this returns). Also
    /// removes this node's containers for a replica it does not run (see
    /// [`Supervisor::leftovers`]).
    pub async fn stop(&self, workload: &str, replica: u16) {
        let key = ReplicaKey::new(workload, replica);
        let runner = self.runners.lock().await.remove(&key);
        match runner {
            Some(runner) => runner.stop().await,
            None if self.shared.config.docker_socket.exists() => {
                if let Err(e) = self.shared.docker.remove_all(&self.shared.config.node_id, &key).await {
                    tracing::debug!(replica = %key, error = %e, "no leftover container removed");
                }
            }
            None => {}
        }
        self.shared.remove(&key);
    }

    /// Stops every replica, all at once.
    pub async fn stop_all(&self) {
        let runners = std::mem::take(&mut *self.runners.lock().await);
        let keys: Vec<ReplicaKey> = runners.keys().cloned().collect();
        futures::future::join_all(runners.into_values().map(Runner::stop)).await;
        for key in &keys {
            self.shared.remove(key);
        }
    }

    /// Every replica this supervisor runs, by workload then replica.
    /// How long one replica may take to stop gracefully before it is killed.
    pub fn stop_grace(&self) -> Duration {
        self.shared.config.stop_grace
    }

    pub fn statuses(&self) -> Vec<ReplicaStatus> {
        self.shared.statuses().values().cloned().collect()
    }

    /// One replica's status.
    pub fn status(&self, workload: &str, replica: u16) -> Option<ReplicaStatus> {
        self.shared.statuses().get(&ReplicaKey::new(workload, replica)).cloned()
    }

    /// Changes whenever any status does (the value is a counter).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Replicas that have containers on this node's engine but are not run
    /// by this supervisor: after a restart, what the previous agent ran and
    /// nobody has claimed. Stop the ones this node no longer owns.
    pub async fn leftovers(&self) -> Result<Vec<ReplicaKey>, DriverError> {
        let found = self.shared.docker.replicas(&self.shared.config.node_id).await?;
        let runners = self.runners.lock().await;
        Ok(found.into_iter().filter(|key| !runners.contains_key(key)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send<T: Send>(_: &T) {}

    #[test]
    fn the_supervisor_and_its_futures_can_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Supervisor>();
        // The futures are only built, never run: this checks types.
        let sup = Supervisor::new(SupervisorConfig::new(std::env::temp_dir().join("shoal-send-check"), "n"));
        let spec = WorkloadSpec {
            name: "w".into(),
            replicas: 1,
            resources: shoal_protocol::Resources::default(),
            constraints: BTreeMap::new(),
            driver: shoal_protocol::Driver::Exec {
                command: "true".into(),
                args: vec![],
                env: BTreeMap::new(),
                workdir: None,
            },
            restart: shoal_protocol::RestartPolicy::default(),
        };
        send(&sup.ensure_running(&spec, 0));
        send(&sup.stop("w", 0));
        send(&sup.stop_all());
        send(&sup.leftovers());
    }
}
