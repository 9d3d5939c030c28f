//! The docker driver against the real engine, with an image built here from
//! scratch (a static C program; nothing is pulled). With no engine socket the
//! engine test skips, saying so; with a socket, any failure fails it.

#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::ensure;
use bollard::Docker;
use bollard::query_parameters::LogsOptionsBuilder;
use futures::StreamExt;
use shoal_node::driver::{ReplicaKey, ReplicaState, ReplicaStatus, Supervisor, SupervisorConfig};
use shoal_protocol::{Driver, Resources, RestartMode, RestartPolicy, WorkloadSpec};
use shoal_tests::test_dir;

mod docker_support;
mod driver_support;
use docker_support::{build_image, clean_up, containers, engine};
use driver_support::wait_status;

fn spec(name: &str, image: &str, args: &[&str], greeting: &str, mode: RestartMode) -> WorkloadSpec {
    WorkloadSpec {
        name: name.into(),
        replicas: 1,
        resources: Resources::default(),
        constraints: BTreeMap::new(),
        driver: Driver::Docker {
            image: image.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: BTreeMap::from([("GREETING".to_string(), greeting.to_string())]),
            ports: vec![],
        },
        restart: RestartPolicy { mode, backoff_initial_ms: 100, backoff_max_ms: 400 },
    }
}

fn supervisor(data: &Path, node: &str) -> Supervisor {
    let mut config = SupervisorConfig::new(data, node);
    config.stop_grace = Duration::from_secs(5);
    Supervisor::new(config)
}

fn running(s: &ReplicaStatus) -> bool {
    s.state == ReplicaState::Running
}

async fn logs(docker: &Docker, id: &str) -> anyhow::Result<String> {
    let options = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
    let mut stream = docker.logs(id, Some(options));
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        text.push_str(&chunk?.to_string());
    }
    Ok(text)
}

#[tokio::test]
async fn docker_driver_runs_adopts_replaces_and_stops_containers() -> anyhow::Result<()> {
    // From here on, with an engine, every problem is a failure.
    let Some(docker) = engine("docker driver test").await? else { return Ok(()) };
    let pid = std::process::id();
    let node = format!("driver-test-{pid}");
    let tag = format!("shoal-driver-test:{pid}");
    let dir = test_dir("driver-docker");
    let result = async {
        build_image(&docker, &dir, &tag).await?;
        scenario(&docker, &dir, &node, &tag).await
    }
    .await;
    clean_up(&docker, &node, &tag).await;
    result
}

async fn scenario(docker: &Docker, dir: &Path, node: &str, tag: &str) -> anyhow::Result<()> {
    let mut boat = spec("boat", tag, &[], "hi", RestartMode::Always);
    let host_port = shoal_tests::free_tcp().port();
    if let Driver::Docker { ports, .. } = &mut boat.driver {
        ports.push((host_port, 8080));
    }
    let first_id = {
        let sup = supervisor(dir, node);
        sup.ensure_running(&boat, 0).await;
        let status = wait_status(&sup, "boat", 0, Duration::from_secs(60), running).await?;
        let ids = containers(docker, node, Some("boat")).await?;
        ensure!(ids.len() == 1, "one container: {ids:?}");
        ensure!(status.detail == format!("container {}", &ids[0][..12]), "{status:?}");
        let inspect = docker.inspect_container(&ids[0], None).await?;
        let bindings = inspect.host_config.and_then(|h| h.port_bindings).unwrap_or_default();
        let bound = bindings.get("8080/tcp").cloned().flatten().unwrap_or_default();
        ensure!(
            bound.iter().any(|b| b.host_port == Some(host_port.to_string())),
            "port 8080 published on {host_port}: {bindings:?}"
        );
        let expected = format!("workload=boat replica=0 node={node} greeting=hi\n");
        let deadline = Instant::now() + Duration::from_secs(10);
        while logs(docker, &ids[0]).await? != expected {
            ensure!(Instant::now() < deadline, "logs: {:?}", logs(docker, &ids[0]).await?);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Dropped without stopping, as when the agent dies: the container lives on.
        ids[0].clone()
    };

    // A new agent with the same node id adopts it: no second container.
    let sup = supervisor(dir, node);
    ensure!(sup.leftovers().await? == vec![ReplicaKey::new("boat", 0)], "the previous agent's container is found");
    sup.ensure_running(&boat, 0).await;
    let status = wait_status(&sup, "boat", 0, Duration::from_secs(30), running).await?;
    ensure!(status.detail == format!("container {}", &first_id[..12]), "adopted, not recreated: {status:?}");
    ensure!(containers(docker, node, Some("boat")).await? == vec![first_id.clone()], "still one container");
    ensure!(sup.leftovers().await?.is_empty());

    // A changed spec replaces the container.
    sup.ensure_running(&spec("boat", tag, &[], "bye", RestartMode::Always), 0).await;
    let status = wait_status(&sup, "boat", 0, Duration::from_secs(30), |s| {
        running(s) && s.detail != format!("container {}", &first_id[..12])
    })
    .await?;
    let ids = containers(docker, node, Some("boat")).await?;
    ensure!(ids.len() == 1 && ids[0] != first_id, "the old container is gone: {ids:?}");
    ensure!(status.detail == format!("container {}", &ids[0][..12]));

    // A container exiting 3 is restarted by the supervisor with backoff.
    sup.ensure_running(&spec("sinker", tag, &["3"], "hi", RestartMode::OnFailure), 0).await;
    let status =
        wait_status(&sup, "sinker", 0, Duration::from_secs(60), |s| s.restarts >= 2 && s.state == ReplicaState::Failed)
            .await?;
    ensure!(status.detail.starts_with("exited with status 3; restart in"), "{status:?}");
    ensure!(containers(docker, node, Some("sinker")).await?.len() == 1, "restarts reuse the one container");

    // Stop: SIGTERM (the program exits at once), then remove.
    let before = Instant::now();
    sup.stop("boat", 0).await;
    ensure!(before.elapsed() < Duration::from_secs(5), "stopped by SIGTERM, not after the grace");
    ensure!(containers(docker, node, Some("boat")).await?.is_empty(), "removed");
    ensure!(sup.status("boat", 0).is_none());
    sup.stop_all().await;
    ensure!(containers(docker, node, None).await?.is_empty(), "stop_all removes every container");
    Ok(())
}

#[tokio::test]
async fn an_unreachable_engine_is_a_failed_status_with_the_reason() -> anyhow::Result<()> {
    let data = test_dir("driver-docker-absent");
    let mut config = SupervisorConfig::new(&data, "node-a");
    config.docker_socket = data.join("no-docker.sock");
    let sup = Supervisor::new(config);
    sup.ensure_running(&spec("boat", "anything:latest", &[], "hi", RestartMode::Never), 0).await;
    let status = wait_status(&sup, "boat", 0, Duration::from_secs(10), |s| s.state == ReplicaState::Failed).await?;
    let expected =
        format!("docker engine not reachable at {}: is dockerd running?", data.join("no-docker.sock").display());
    ensure!(status.detail.starts_with(&expected), "{}", status.detail);
    sup.stop_all().await;
    Ok(())
}
