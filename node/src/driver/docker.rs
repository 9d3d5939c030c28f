//! The docker driver: one container per replica through the Docker Engine
//! API, labelled with its node, workload, replica and spec hash so that an
//! agent restarted on the same node adopts its containers instead of
//! creating duplicates.
//!
//! Restarts are the supervisor's, not Docker's (`RestartPolicy` "no"): exec
//! and docker replicas then share one backoff, one restart count and one
//! status path, and the agent sees every exit instead of Docker hiding them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, ContainerSummary, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use tokio::sync::OnceCell;

use super::DriverError;
use super::status::{Exit, ReplicaKey};

const LABEL_NODE: &str = "shoal.node";
const LABEL_WORKLOAD: &str = "shoal.workload";
const LABEL_REPLICA: &str = "shoal.replica";
const LABEL_SPEC: &str = "shoal.spec-hash";

/// What a docker replica runs, borrowed from its spec.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DockerSpec<'a> {
    pub(crate) image: &'a str,
    pub(crate) args: &'a [String],
    pub(crate) env: &'a BTreeMap<String, String>,
    pub(crate) ports: &'a [(u16, u16)],
}

/// A lazily opened connection to the engine: a node that runs no container
/// never needs one, and a failed attempt is retried on the next use.
#[derive(Debug)]
pub(crate) struct DockerConn {
    socket: PathBuf,
    timeout_secs: u64,
    client: OnceCell<Docker>,
}

impl DockerConn {
    pub(crate) fn new(socket: PathBuf, stop_grace: Duration) -> DockerConn {
        // A stop request lasts the whole grace: the request timeout must be longer.
        DockerConn { socket, timeout_secs: 120 + stop_grace.as_secs(), client: OnceCell::new() }
    }

    async fn client(&self) -> Result<&Docker, DriverError> {
        self.client
            .get_or_try_init(|| async {
                let path = self.socket.display().to_string();
                let docker = Docker::connect_with_unix(&path, self.timeout_secs, bollard::API_DEFAULT_VERSION)
                    .map_err(|e| self.unreachable(e))?;
                // The engine may speak an older API than bollard's default.
                docker.negotiate_version().await.map_err(|e| self.unreachable(e))
            })
            .await
    }

    fn unreachable(&self, source: BollardError) -> DriverError {
        DriverError::DockerUnreachable { socket: self.socket.display().to_string(), source }
    }

    /// Transport failures mean the engine went away; anything else (a 404, a
    /// 409, a bad answer) is the request's own failure.
    fn error(&self, action: &'static str, source: BollardError) -> DriverError {
        match source {
            BollardError::IOError { .. }
            | BollardError::HyperLegacyError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::RequestTimeoutError
            | BollardError::SocketNotFoundError(_) => self.unreachable(source),
            source => DriverError::Docker { action, source },
        }
    }

    /// Containers carrying this node's label, running or not.
    async fn list(&self, node_id: &str, key: Option<&ReplicaKey>) -> Result<Vec<ContainerSummary>, DriverError> {
        let docker = self.client().await?;
        let mut labels = vec![format!("{LABEL_NODE}={node_id}")];
        if let Some(key) = key {
            labels.push(format!("{LABEL_WORKLOAD}={}", key.workload));
            labels.push(format!("{LABEL_REPLICA}={}", key.replica));
        }
        let filters = HashMap::from([("label", labels)]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        docker.list_containers(Some(options)).await.map_err(|e| self.error("list", e))
    }

    /// The replicas this node has containers for.
    pub(crate) async fn replicas(&self, node_id: &str) -> Result<Vec<ReplicaKey>, DriverError> {
        let containers = self.list(node_id, None).await?;
        let mut keys: Vec<ReplicaKey> = containers.iter().filter_map(|c| key_of(c.labels.as_ref()?)).collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Removes every container of `key` on this node, running or not.
    pub(crate) async fn remove_all(&self, node_id: &str, key: &ReplicaKey) -> Result<(), DriverError> {
        let docker = self.client().await?;
        for container in self.list(node_id, Some(key)).await? {
            if let Some(id) = container.id {
                remove(docker, &id).await.map_err(|e| self.error("remove", e))?;
            }
        }
        Ok(())
    }

    /// Adopts this node's container for `key` if it runs `spec_hash`
    /// (restarting it if it had exited); otherwise replaces it with a new one.
    pub(crate) async fn start(
        &self,
        spec: DockerSpec<'_>,
        key: &ReplicaKey,
        node_id: &str,
        spec_hash: &str,
    ) -> Result<Container, DriverError> {
        let docker = self.client().await?;
        let mut adopted = None;
        for c in self.list(node_id, Some(key)).await? {
            let Some(id) = c.id else { continue };
            let same_spec = c.labels.as_ref().and_then(|l| l.get(LABEL_SPEC)).is_some_and(|h| h == spec_hash);
            if same_spec && adopted.is_none() {
                adopted = Some(id);
            } else {
                tracing::info!(replica = %key, container = %short(&id), "removing a container of another spec");
                remove(docker, &id).await.map_err(|e| self.error("remove", e))?;
            }
        }
        let id = match adopted {
            Some(id) => {
                tracing::info!(replica = %key, container = %short(&id), "adopting an existing container");
                id
            }
            None => self.create(docker, spec, key, node_id, spec_hash).await?,
        };
        // Starting a running container is a no-op (304), which bollard accepts.
        docker.start_container(&id, None).await.map_err(|e| self.error("start", e))?;
        Ok(Container { docker: docker.clone(), id })
    }

    async fn create(
        &self,
        docker: &Docker,
        spec: DockerSpec<'_>,
        key: &ReplicaKey,
        node_id: &str,
        spec_hash: &str,
    ) -> Result<String, DriverError> {
        let body = create_body(spec, key, node_id, spec_hash);
        let name = container_name(node_id, key);
        let options = || Some(CreateContainerOptionsBuilder::new().name(&name).build());
        match docker.create_container(options(), body.clone()).await {
            Ok(created) => Ok(created.id),
            Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => {
                tracing::info!(image = spec.image, "image not present: pulling it");
                let pull = CreateImageOptionsBuilder::new().from_image(spec.image).build();
                let mut progress = docker.create_image(Some(pull), None, None);
                while let Some(step) = progress.next().await {
                    step.map_err(|e| self.error("pull", e))?;
                }
                let created = docker.create_container(options(), body).await.map_err(|e| self.error("create", e))?;
                Ok(created.id)
            }
            Err(e) => Err(self.error("create", e)),
        }
    }
}

/// A started container of one replica.
#[derive(Debug)]
pub(crate) struct Container {
    docker: Docker,
    id: String,
}

impl Container {
    pub(crate) fn describe(&self) -> String {
        format!("container {}", short(&self.id))
    }

    /// Waits for the container to stop running. Cancel-safe.
    pub(crate) async fn wait(&self) -> Exit {
        let options = WaitContainerOptionsBuilder::new().condition("not-running").build();
        let waited = self.docker.wait_container(&self.id, Some(options)).next().await;
        match waited {
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Ok(_)) | Some(Err(BollardError::DockerContainerWaitError { .. })) => self.exit().await,
            Some(Err(e)) => Exit::failed(format!("lost the container: {e}")),
            None => Exit::failed("lost the container: the engine closed the wait"),
        }
    }

    /// How the container ended, from its state.
    async fn exit(&self) -> Exit {
        let state = match self.docker.inspect_container(&self.id, None).await {
            Ok(inspect) => inspect.state.unwrap_or_default(),
            Err(e) => return Exit::failed(format!("cannot inspect the container: {e}")),
        };
        let mut exit = Exit::from_code_or_signal(state.exit_code, None);
        if state.oom_killed == Some(true) {
            exit = Exit::failed(format!("{} (out of memory)", exit.detail));
        }
        match state.error.filter(|e| !e.is_empty()) {
            Some(error) => Exit::failed(format!("{}: {error}", exit.detail)),
            None => exit,
        }
    }

    /// `docker stop` (SIGTERM, SIGKILL after `grace`), then remove.
    pub(crate) async fn stop(self, grace: Duration) -> Exit {
        // Docker counts whole seconds: round up so the grace is never shortened.
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let secs = i32::try_from(secs).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(secs).build();
        let exit = match self.docker.stop_container(&self.id, Some(options)).await {
            Ok(()) => self.exit().await,
            Err(e) => Exit::failed(format!("docker stop failed: {e}")),
        };
        if let Err(e) = remove(&self.docker, &self.id).await {
            tracing::warn!(container = %short(&self.id), error = %e, "cannot remove the container");
        }
        exit
    }
}

async fn remove(docker: &Docker, id: &str) -> Result<(), BollardError> {
    let options = RemoveContainerOptionsBuilder::new().force(true).build();
    match docker.remove_container(id, Some(options)).await {
        // Already gone (removed by hand, or raced with another removal).
        Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        other => other,
    }
}

fn create_body(spec: DockerSpec<'_>, key: &ReplicaKey, node_id: &str, spec_hash: &str) -> ContainerCreateBody {
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.push(format!("SHOAL_WORKLOAD={}", key.workload));
    env.push(format!("SHOAL_REPLICA={}", key.replica));
    env.push(format!("SHOAL_NODE={node_id}"));
    let labels = HashMap::from([
        (LABEL_NODE.to_string(), node_id.to_string()),
        (LABEL_WORKLOAD.to_string(), key.workload.clone()),
        (LABEL_REPLICA.to_string(), key.replica.to_string()),
        (LABEL_SPEC.to_string(), spec_hash.to_string()),
    ]);
    let port = |container: u16| format!("{container}/tcp");
    let bindings = spec
        .ports
        .iter()
        .map(|&(host, container)| {
            let binding = PortBinding { host_ip: None, host_port: Some(host.to_string()) };
            (port(container), Some(vec![binding]))
        })
        .collect();
    ContainerCreateBody {
        image: Some(spec.image.to_string()),
        // Empty args keep the image's own CMD.
        cmd: (!spec.args.is_empty()).then(|| spec.args.to_vec()),
        env: Some(env),
        labels: Some(labels),
        exposed_ports: Some(spec.ports.iter().map(|&(_, c)| port(c)).collect()),
        host_config: Some(HostConfig { port_bindings: Some(bindings), ..HostConfig::default() }),
        ..ContainerCreateBody::default()
    }
}

/// `shoal-<workload>-<replica>-<node>`, the node part a hash of its id: two
/// agents sharing one engine (tests, or several agents on one host) must not
/// collide on the name. Identity is the labels; the name is for people.
pub(crate) fn container_name(node_id: &str, key: &ReplicaKey) -> String {
    let node = shoal_protocol::stable_hash64(node_id.as_bytes()) >> 16;
    format!("shoal-{}-{node:012x}", key.dir_name())
}

fn key_of(labels: &HashMap<String, String>) -> Option<ReplicaKey> {
    Some(ReplicaKey::new(labels.get(LABEL_WORKLOAD)?.clone(), labels.get(LABEL_REPLICA)?.parse().ok()?))
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_by_node_and_labels_give_the_replica_back() {
        let key = ReplicaKey::new("web", 1);
        let a = container_name("node-a", &key);
        assert!(a.starts_with("shoal-web-1-") && a.len() == "shoal-web-1-".len() + 12, "{a}");
        assert_ne!(a, container_name("node-b", &key));
        let body = create_body(
            DockerSpec { image: "img", args: &[], env: &BTreeMap::new(), ports: &[(8000, 80)] },
            &key,
            "node-a",
            "abc",
        );
        let labels = body.labels.unwrap_or_default();
        assert_eq!(key_of(&labels), Some(key));
        assert_eq!(labels.get(LABEL_SPEC).map(String::as_str), Some("abc"));
        assert_eq!(body.cmd, None, "no args keep the image's CMD");
        let env = body.env.unwrap_or_default();
        assert!(env.contains(&"SHOAL_REPLICA=1".to_string()) && env.contains(&"SHOAL_NODE=node-a".to_string()));
        let bindings = body.host_config.and_then(|h| h.port_bindings).unwrap_or_default();
        assert_eq!(bindings["80/tcp"].as_ref().map(|b| b[0].host_port.clone()), Some(Some("8000".into())));
    }
}
