//! One task per replica: start it, watch it, restart it by its policy, and
//! stop it when asked.

use std::sync::Arc;
use std::time::Instant;

use shoal_protocol::{Driver, RestartMode, RestartPolicy, WorkloadSpec};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::backoff::Backoff;
use super::docker::{Container, DockerSpec};
use super::exec::{ExecSpec, Process};
use super::status::{Exit, ReplicaKey};
use super::{DriverError, ReplicaState, Shared};

/// The handle the supervisor keeps for a replica's task. Dropping it aborts
/// the task: exec processes die with it (kill-on-drop), containers keep
/// running for the next agent to adopt.
#[derive(Debug)]
pub(crate) struct Runner {
    /// Which spec the task runs ([`run_hash`]).
    pub(crate) run_hash: String,
    stop: watch::Sender<bool>,
    policy: watch::Sender<RestartPolicy>,
    task: Option<JoinHandle<()>>,
}

impl Runner {
    /// Starts a task for `spec`; it first waits for `previous` (a runner of an
    /// older spec for the same replica) to stop, so the two never overlap.
    pub(crate) fn spawn(shared: Arc<Shared>, spec: WorkloadSpec, key: ReplicaKey, previous: Option<Runner>) -> Runner {
        let (stop, stop_rx) = watch::channel(false);
        let (policy, policy_rx) = watch::channel(spec.restart);
        let run_hash = run_hash(&spec);
        let task = tokio::spawn(async move {
            if let Some(previous) = previous {
                shared.set(&key, ReplicaState::Starting, 0, "replacing the previous spec");
                previous.stop().await;
            }
            run(&shared, &spec, &key, stop_rx, policy_rx).await;
        });
        Runner { run_hash, stop, policy, task: Some(task) }
    }

    /// A policy change needs no restart: it applies at the next exit.
    pub(crate) fn set_policy(&self, policy: RestartPolicy) {
        self.policy.send_if_modified(|p| std::mem::replace(p, policy) != policy);
    }

    /// Stops the replica gracefully and waits until it is gone.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "a replica task ended abnormally");
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// What makes two specs need different processes: the driver section only.
/// Replicas, constraints and resources are placement's business; the restart
/// policy is applied in place.
pub(crate) fn run_hash(spec: &WorkloadSpec) -> String {
    let bytes = serde_json::to_vec(&spec.driver).unwrap_or_default();
    format!("{:016x}", shoal_protocol::stable_hash64(&bytes))
}

enum Instance {
    Exec(Process),
    Docker(Container),
}

impl Instance {
    async fn start(shared: &Shared, spec: &WorkloadSpec, key: &ReplicaKey) -> Result<Instance, DriverError> {
        spec.validate().map_err(DriverError::BadSpec)?;
        let node_id = &shared.config.node_id;
        match &spec.driver {
            Driver::Exec { command, args, env, workdir } => {
                let exec = ExecSpec { command, args, env, workdir: workdir.as_deref() };
                super::exec::start(exec, key, node_id, &shared.replica_dir(key)).map(Instance::Exec)
            }
            Driver::Docker { image, args, env, ports } => {
                let docker = DockerSpec { image, args, env, ports };
                shared.docker.start(docker, key, node_id, &run_hash(spec)).await.map(Instance::Docker)
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Instance::Exec(p) => p.describe(),
            Instance::Docker(c) => c.describe(),
        }
    }

    async fn wait(&mut self) -> Exit {
        match self {
            Instance::Exec(p) => p.wait().await,
            Instance::Docker(c) => c.wait().await,
        }
    }

    async fn stop(self, shared: &Shared) -> Exit {
        match self {
            Instance::Exec(p) => p.stop(shared.config.stop_grace).await,
            Instance::Docker(c) => c.stop(shared.config.stop_grace).await,
        }
    }
}

fn restarts_after(mode: RestartMode, success: bool) -> bool {
    match mode {
        RestartMode::Always => true,
        RestartMode::OnFailure => !success,
        RestartMode::Never => false,
    }
}

/// Resolves when the supervisor asks for a stop (or has dropped the runner).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&stop| stop).await;
}

async fn run(
    shared: &Shared,
    spec: &WorkloadSpec,
    key: &ReplicaKey,
    mut stop: watch::Receiver<bool>,
    mut policy: watch::Receiver<RestartPolicy>,
) {
    let mut backoff = Backoff::new(&policy.borrow_and_update());
    let mut restarts = 0u32;
    loop {
        if *stop.borrow() {
            break;
        }
        shared.set(key, ReplicaState::Starting, restarts, "");
        let started = Instant::now();
        let start = tokio::select! {
            start = Instance::start(shared, spec, key) => start,
            () = stop_requested(&mut stop) => break,
        };
        let exit = match start {
            Ok(mut instance) => {
                shared.set(key, ReplicaState::Running, restarts, &instance.describe());
                tokio::select! {
                    exit = instance.wait() => exit,
                    () = stop_requested(&mut stop) => {
                        let exit = instance.stop(shared).await;
                        tracing::info!(replica = %key, exit = %exit.detail, "stopped");
                        break;
                    }
                }
            }
            Err(e) => Exit::failed(e.to_string()),
        };
        tracing::info!(replica = %key, exit = %exit.detail, "replica exited");
        if policy.has_changed().unwrap_or(false) {
            backoff = Backoff::new(&policy.borrow_and_update());
        } else if started.elapsed() >= shared.config.stable_after {
            backoff.reset();
        }
        // Even a clean exit is `Failed` ("exited with status 0"): `Stopped`
        // means the node stopped it on purpose and no longer runs it.
        let success = exit.success;
        if !restarts_after(policy.borrow().mode, success) {
            shared.set(key, ReplicaState::Failed, restarts, &exit.detail);
            // Stays down until stopped, or until a new policy says otherwise.
            tokio::select! {
                () = stop_requested(&mut stop) => break,
                changed = policy.wait_for(|p| restarts_after(p.mode, success)) => if changed.is_err() { break },
            }
            backoff = Backoff::new(&policy.borrow_and_update());
        }
        let delay = backoff.next_delay();
        shared.set(key, ReplicaState::Failed, restarts, &format!("{}; restart in {delay:?}", exit.detail));
        tokio::select! {
            () = tokio::time::sleep(delay) => restarts = restarts.saturating_add(1),
            () = stop_requested(&mut stop) => break,
        }
    }
    // A docker replica that exited, or was being created when the stop came,
    // may still have a container: remove it.
    if let Driver::Docker { .. } = spec.driver {
        if let Err(e) = shared.docker.remove_all(&shared.config.node_id, key).await {
            tracing::warn!(replica = %key, error = %e, "cannot remove the replica's containers");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::Resources;
    use std::collections::BTreeMap;

    #[test]
    fn only_the_driver_section_changes_the_run_hash() {
        let driver =
            |command: &str| Driver::Exec { command: command.into(), args: vec![], env: BTreeMap::new(), workdir: None };
        let spec = WorkloadSpec {
            name: "web".into(),
            replicas: 1,
            resources: Resources::default(),
            constraints: BTreeMap::new(),
            driver: driver("a"),
            restart: RestartPolicy::default(),
        };
        let mut other = spec.clone();
        other.replicas = 7;
        other.restart.mode = RestartMode::Never;
        other.resources.cpu_millis = 500;
        assert_eq!(run_hash(&spec), run_hash(&other));
        other.driver = driver("b");
        assert_ne!(run_hash(&spec), run_hash(&other));
    }
}
