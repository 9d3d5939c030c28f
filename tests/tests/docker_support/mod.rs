//! What the docker tests share: a test image built from scratch (a static C
//! program; nothing is pulled), and the containers of a node.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail, ensure};
use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use futures::StreamExt;
use shoal_node::driver::default_docker_socket;

/// The engine, or `None` (the test skips, saying so) without its socket.
/// With a socket, an engine that does not answer is an error.
pub(crate) async fn engine(test: &str) -> anyhow::Result<Option<Docker>> {
    let socket = default_docker_socket();
    if !socket.exists() {
        eprintln!("\n!!! SKIPPED the {test}: no Docker engine socket at {}", socket.display());
        return Ok(None);
    }
    let docker = Docker::connect_with_unix(&socket.display().to_string(), 120, bollard::API_DEFAULT_VERSION)?
        .negotiate_version()
        .await
        .with_context(|| format!("the engine at {} does not answer", socket.display()))?;
    Ok(Some(docker))
}

/// Prints its environment, exits with `argv[1]` if given, else runs until
/// SIGTERM (a handler is needed: PID 1 ignores unhandled SIGTERM).
const PROGRAM: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static const char *env(const char *name) { const char *v = getenv(name); return v ? v : "-"; }
static void on_term(int sig) { (void)sig; _exit(0); }
int main(int argc, char **argv) {
    signal(SIGTERM, on_term);
    printf("workload=%s replica=%s node=%s greeting=%s\n",
           env("SHOAL_WORKLOAD"), env("SHOAL_REPLICA"), env("SHOAL_NODE"), env("GREETING"));
    fflush(stdout);
    if (argc > 1) return atoi(argv[1]);
    for (;;) pause();
}
"#;

/// Ids of the containers labelled for `node` (and `workload`, if given).
pub(crate) async fn containers(docker: &Docker, node: &str, workload: Option<&str>) -> anyhow::Result<Vec<String>> {
    let mut labels = vec![format!("shoal.node={node}")];
    labels.extend(workload.map(|w| format!("shoal.workload={w}")));
    let filters = HashMap::from([("label", labels)]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    Ok(docker.list_containers(Some(options)).await?.into_iter().filter_map(|c| c.id).collect())
}

/// Compiles the program statically and builds `FROM scratch` around it.
pub(crate) async fn build_image(docker: &Docker, dir: &Path, tag: &str) -> anyhow::Result<()> {
    let context = dir.join("context");
    std::fs::create_dir_all(&context)?;
    std::fs::write(dir.join("prog.c"), PROGRAM)?;
    let gcc = Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(context.join("prog"))
        .arg(dir.join("prog.c"))
        .output()
        .context("running gcc (the test image is a static C program: install gcc and libc6-dev)")?;
    ensure!(gcc.status.success(), "gcc -static failed: {}", String::from_utf8_lossy(&gcc.stderr));
    std::fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY prog /prog\nENTRYPOINT [\"/prog\"]\n")?;
    let tar = Command::new("tar").arg("-cf").arg("-").arg("-C").arg(&context).arg(".").output()?;
    ensure!(tar.status.success(), "tar failed: {}", String::from_utf8_lossy(&tar.stderr));
    let options = BuildImageOptionsBuilder::new().t(tag).rm(true).build();
    let mut build = docker.build_image(options, None, Some(bollard::body_full(tar.stdout.into())));
    while let Some(step) = build.next().await {
        let step = step.context("docker build")?;
        if let Some(error) = step.error_detail {
            bail!("docker build: {error:?}");
        }
    }
    Ok(())
}

pub(crate) async fn clean_up(docker: &Docker, node: &str, tag: &str) {
    for id in containers(docker, node, None).await.unwrap_or_default() {
        let _ = docker.remove_container(&id, Some(RemoveContainerOptionsBuilder::new().force(true).build())).await;
    }
    let _ = docker.remove_image(tag, Some(RemoveImageOptionsBuilder::new().force(true).build()), None).await;
}
