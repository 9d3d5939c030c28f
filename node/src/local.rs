//! `shoal local --nodes N`: a mesh of N agents on this machine.
#![allow(clippy::print_stdout)]

use std::fs::File;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shoal_node::client::Client;
use shoal_node::crypto::ClusterKey;
use shoal_protocol::State;

#[derive(Clone, Debug, clap::Args)]
pub(crate) struct LocalArgs {
    /// How many agents to start.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Folder for the agents' data dirs and logs [default: a new temp folder].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Protocol timing preset for the agents.
    #[arg(long, default_value = "local")]
    profile: String,
    /// How long to wait for the mesh to converge, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

/// A workload to try `shoal submit` with.
const EXAMPLE_SPEC: &str = r#"name = "example"
replicas = 2
[resources]
cpu = 100            # millicores
memory = "16MiB"
[driver]
kind = "exec"
command = "sleep"
args = ["3600"]
[restart]
policy = "always"
"#;

struct Node {
    name: String,
    api: SocketAddr,
    child: Child,
    log: PathBuf,
}

pub(crate) async fn run(args: LocalArgs, log_args: Vec<String>) -> anyhow::Result<()> {
    if args.nodes == 0 || args.nodes > 200 {
        bail!("--nodes must be between 1 and 200");
    }
    let dir = match args.dir.clone() {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("shoal-local-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key_file = dir.join("cluster.key");
    std::fs::write(&key_file, ClusterKey::generate().to_hex())?;
    let example = dir.join("example.toml");
    std::fs::write(&example, EXAMPLE_SPEC)?;
    let exe = std::env::current_exe().context("cannot find the shoal binary")?;
    println!("starting {} agents; data dirs and logs in {}", args.nodes, dir.display());

    let mut nodes: Vec<Node> = Vec::new();
    let mut bootstrap = None;
    for i in 0..args.nodes {
        let (gossip, api) = (free_udp_port()?, free_tcp_port()?);
        let name = format!("node-{i}");
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(&exe);
        command.args(&log_args).arg("agent").arg("--name").arg(&name);
        command.arg("--data-dir").arg(dir.join(&name)).arg("--cluster-key-file").arg(&key_file);
        command.args(["--bind", &gossip.to_string(), "--api", &api.to_string(), "--no-mdns"]);
        command.args(["--profile", &args.profile]);
        if let Some(seed) = bootstrap {
            command.arg("--join").arg(format!("{seed}"));
        }
        let out = File::create(&log)?;
        command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        let child = command.spawn().with_context(|| format!("cannot start {}", exe.display()))?;
        nodes.push(Node { name, api, child, log });
        bootstrap.get_or_insert(gossip);
    }

    let outcome = watch(&mut nodes, &args, &exe, &dir).await;
    println!("\nstopping {} agents (each leaves the mesh gracefully)...", nodes.len());
    stop_all(&mut nodes);
    outcome
}

async fn watch(nodes: &mut [Node], args: &LocalArgs, exe: &Path, dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout);
    let mut interrupted = std::pin::pin!(crate::shutdown_signal());
    loop {
        check_alive(nodes)?;
        let views = nodes.iter().filter_map(|n| Client::new(n.api).members().ok()).collect::<Vec<_>>();
        let converged = views.len() == nodes.len()
            && views.iter().all(|v| v.iter().filter(|m| m.state == State::Alive).count() == nodes.len());
        if converged {
            break;
        }
        if Instant::now() > deadline {
            bail!("the mesh did not converge within {} s; see the logs in {}", args.timeout, dir.display());
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = &mut interrupted => return Ok(()),
        }
    }
    let first = &nodes[0];
    let members = Client::new(first.api).members()?;
    println!("all {} agents see each other alive after {:.1} s:\n", nodes.len(), started.elapsed().as_secs_f64());
    print!("{}", crate::output::render_members(&members));
    let shoal = display_exe(exe);
    let apis: Vec<String> = nodes.iter().map(|n| format!("{} {}", n.name, n.api)).collect();
    println!("\nAPIs: {}", apis.join(", "));
    println!("Web view: http://{}/ui/ (any agent's API serves it)", first.api);
    println!("\nTry, in another terminal:");
    let mut tries = vec![
        (format!("{shoal} members --api {}", first.api), "the member table".to_string()),
        (format!("{shoal} status --api {}", first.api), "one agent's own view".to_string()),
        (format!("curl -s http://{}/metrics", first.api), "Prometheus metrics".to_string()),
        (
            format!("{shoal} submit {} --api {}", dir.join("example.toml").display(), first.api),
            "submit a workload".to_string(),
        ),
        (format!("{shoal} workloads --api {}", nodes[nodes.len() - 1].api), "any agent lists it".to_string()),
    ];
    if let Some(last) = nodes.last() {
        tries.push((
            format!("{shoal} leave --api {}", last.api),
            format!("{} leaves; the others see it Left", last.name),
        ));
        tries.push((format!("kill -9 {}", last.child.id()), format!("{} crashes; the others see it Dead", last.name)));
    }
    let width = tries.iter().map(|(command, _)| command.len()).max().unwrap_or(0);
    for (command, what) in tries {
        println!("  {command:<width$}  # {what}");
    }
    println!("\nPress Ctrl-C to stop them all.");
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = &mut interrupted => return Ok(()),
        }
    }
}

fn check_alive(nodes: &mut [Node]) -> anyhow::Result<()> {
    for node in nodes.iter_mut() {
        if let Ok(Some(status)) = node.child.try_wait() {
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
            bail!(
                "{} exited early ({status}); its log ({}) ends with:\n{}",
                node.name,
                node.log.display(),
                tail.join("\n")
            );
        }
    }
    Ok(())
}

/// SIGTERM to each, then wait (bounded) for all; kill what is left.
fn stop_all(nodes: &mut [Node]) {
    for node in nodes.iter() {
        let _ = Command::new("kill").args(["-TERM", &node.child.id().to_string()]).status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in nodes.iter_mut() {
        while Instant::now() < deadline {
            if !matches!(node.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(node.child.try_wait(), Ok(None)) {
            let _ = node.child.kill();
        }
        let _ = node.child.wait();
    }
    println!("stopped.");
}

fn display_exe(exe: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    exe.strip_prefix(&cwd).map_or_else(|_| exe.display().to_string(), |p| p.display().to_string())
}

fn free_udp_port() -> anyhow::Result<SocketAddr> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

fn free_tcp_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
