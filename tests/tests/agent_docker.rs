//! Agents with the docker driver against the real engine (an image built
//! from scratch during the test; nothing is pulled): a restarted agent
//! adopts the container it ran instead of starting a second one, and stops a
//! container it finds but no longer owns (its workload was deleted while it
//! was down). With no engine socket the test skips, saying so; with one,
//! any failure fails it.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use bollard::Docker;
use shoal_protocol::State;
use shoal_tests::{Agent, count_in, new_key, shoal_bin, test_dir};

mod docker_support;
use docker_support::{build_image, clean_up, containers, engine};

/// Polls `check` every 200 ms until it holds or `within` passes.
async fn wait_for<F: Future<Output = anyhow::Result<bool>>>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if check().await? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            bail!("timed out after {within:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn shoal(agent: &Agent, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(shoal_bin()).args(args).args(["--api", &agent.api.to_string()]).output()?;
    ensure!(output.status.success(), "shoal {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    Ok(())
}

/// How many replicas of `boat` the agent's API says run.
fn running(agent: &Agent) -> Option<u32> {
    agent.client().workloads().ok()?.into_iter().find(|w| w.name == "boat").map(|w| w.running)
}

#[tokio::test]
async fn a_restarted_agent_adopts_its_container_and_stops_one_it_no_longer_owns() -> anyhow::Result<()> {
    // From here on, with an engine, every problem is a failure.
    let Some(docker) = engine("agent docker test").await? else { return Ok(()) };
    let dir = test_dir("agent-docker");
    let tag = format!("shoal-agent-docker-test:{}", std::process::id());
    build_image(&docker, &dir, &tag).await?;

    let key = vec!["--cluster-key".to_string(), new_key(), "--no-mdns".into()];
    let b = Agent::start(&dir, "b", &key)?;
    // `a` joins through `b` whenever it starts, so a restarted `a` learns
    // the catalog (and the delete) before it settles.
    let label = vec!["--label".to_string(), "role=boat".into()];
    let mut a = Agent::start(&dir, "a", &[key, label, b.join_arg()].concat())?;
    let node = wait_for(Duration::from_secs(30), "2 alive on both", || async {
        Ok([&a, &b].iter().all(|x| count_in(x, State::Alive) == Some(2)))
    })
    .await
    .and_then(|_| Ok(a.client().self_info()?.member.id));
    let node = match node {
        Ok(node) => node,
        Err(e) => return Err(e.context(a.log_tail())),
    };
    let result = scenario(&docker, &dir, &tag, &node, &mut a, &b).await;
    clean_up(&docker, &node, &tag).await;
    result.map_err(|e| e.context(format!("a:\n{}\nb:\n{}", a.log_tail(), b.log_tail())))
}

async fn scenario(
    docker: &Docker,
    dir: &std::path::Path,
    tag: &str,
    node: &str,
    a: &mut Agent,
    b: &Agent,
) -> anyhow::Result<()> {
    // Only `a` carries the label: the replica runs there.
    let spec = dir.join("boat.toml");
    let text = format!(
        "name = \"boat\"\n[constraints]\nrole = \"boat\"\n[driver]\nkind = \"docker\"\nimage = \"{tag}\"\n[restart]\npolicy = \"always\"\n"
    );
    std::fs::write(&spec, text)?;
    shoal(b, &["submit", &spec.display().to_string()])?;
    let took = wait_for(Duration::from_secs(60), "a runs boat in a container, and says so", || async {
        Ok(containers(docker, node, Some("boat")).await?.len() == 1 && running(a) == Some(1))
    })
    .await?;
    println!("submit to the container running: {took:?}");
    let first = containers(docker, node, Some("boat")).await?;

    // kill -9: the container lives on, and the restarted agent adopts it.
    a.kill9();
    a.spawn()?;
    let took = wait_for(Duration::from_secs(60), "the restarted agent reports boat running", || async {
        ensure!(containers(docker, node, Some("boat")).await?.len() <= 1, "a second container was started");
        Ok(running(a) == Some(1) && running(b) == Some(1))
    })
    .await?;
    println!("restart to the container adopted: {took:?}");
    ensure!(containers(docker, node, Some("boat")).await? == first, "the container was adopted, not replaced");

    // Deleted while `a` is down: the restarted agent learns the delete and
    // stops the container it found.
    a.kill9();
    shoal(b, &["delete", "boat"])?;
    ensure!(containers(docker, node, Some("boat")).await? == first, "a dead agent's container lives on");
    a.spawn()?;
    let took = wait_for(Duration::from_secs(60), "the restarted agent removes the container", || async {
        Ok(containers(docker, node, Some("boat")).await?.is_empty())
    })
    .await?;
    println!("restart to the leftover container removed: {took:?}");
    Ok(())
}
