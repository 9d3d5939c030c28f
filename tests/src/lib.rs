//! Helpers for the cross-crate tests: build the real `shoal` binary once, run
//! agents as child processes on loopback, and poll their HTTP APIs.

pub mod browser;
pub mod lab;
pub mod nemesis;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shoal_node::client::Client;
use shoal_node::view::MemberView;
use shoal_protocol::State;

/// The `shoal` binary, built once per test process with the same cargo.
pub fn shoal_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = workspace_root();
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-p", "shoal-node", "--bin", "shoal"]).current_dir(&root);
        // The variables cargo set for this test (CARGO_PKG_*, CARGO_MANIFEST_DIR,
        // ...) would change build scripts' fingerprints and rebuild half the tree.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            let keep = ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_BUILD_", "CARGO_NET_", "CARGO_TERM_", "CARGO_REGISTR"];
            if (name.starts_with("CARGO_") && !keep.iter().any(|k| name.starts_with(k))) || name == "OUT_DIR" {
                cargo.env_remove(&name);
            }
        }
        let status = cargo.status().expect("cargo runs");
        assert!(status.success(), "cargo build -p shoal-node failed");
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        // The target dir may be shared with other checkouts, whose builds
        // would replace the binary under a running test: keep a private link
        // (builds write a new file rather than rewrite this one).
        let built = target.join("debug").join("shoal");
        remove_stale_links(&target.join("debug"));
        let private = target.join("debug").join(format!("shoal-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&private);
        if std::fs::hard_link(&built, &private).is_err() {
            std::fs::copy(&built, &private).expect("copy the shoal binary");
        }
        private
    })
    .clone()
}

/// Removes the links earlier test processes (no longer running) left.
fn remove_stale_links(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("shoal-test-") else { continue };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A fresh folder for one test.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shoal-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A free loopback port for gossip: free for UDP and for TCP, which the
/// agent binds on the same port (the kernel hands out TCP's ephemeral ports
/// from the same range, so a port free for UDP alone may not be).
pub fn free_udp() -> SocketAddr {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("free udp port");
        if TcpListener::bind(udp).is_ok() {
            return udp;
        }
    }
}

/// A free loopback TCP port (for the API).
pub fn free_tcp() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("free tcp port")
}

/// A new cluster key, as hex.
pub fn new_key() -> String {
    shoal_node::crypto::ClusterKey::generate().to_hex()
}

/// One `shoal agent` child process.
#[derive(Debug)]
pub struct Agent {
    pub name: String,
    pub gossip: SocketAddr,
    pub api: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// The network namespace it runs in (its API is reached through the CLI there).
    pub netns: Option<String>,
}

impl Agent {
    /// Starts `shoal agent --profile local` named `name` under `dir`, with
    /// extra `args` (for example `--join`, `--cluster-key`).
    pub fn start(dir: &Path, name: &str, args: &[String]) -> anyhow::Result<Agent> {
        let mut agent = Agent::prepare(dir, name, args);
        agent.spawn()?;
        Ok(agent)
    }

    /// Like [`Agent::start`], without starting it (so a test can change the
    /// gossip address first).
    pub fn prepare(dir: &Path, name: &str, args: &[String]) -> Agent {
        Agent {
            name: name.to_string(),
            gossip: free_udp(),
            api: free_tcp(),
            data_dir: dir.join(name),
            log: dir.join(format!("{name}.log")),
            args: args.to_vec(),
            child: None,
            netns: None,
        }
    }

    /// (Re)starts the process with the same data dir and ports.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut command = match &self.netns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns]).arg(shoal_bin());
                command
            }
            None => Command::new(shoal_bin()),
        };
        let child = command
            .arg("agent")
            .args(["--name", &self.name, "--profile", "local"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--bind", &self.gossip.to_string(), "--api", &self.api.to_string()])
            .args(&self.args)
            .env("RUST_LOG", "info,shoal_node=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn shoal agent")?;
        self.child = Some(child);
        Ok(())
    }

    /// The gossip address as `--join` takes it.
    pub fn join_arg(&self) -> Vec<String> {
        vec!["--join".into(), self.gossip.to_string()]
    }

    pub fn client(&self) -> Client {
        Client::new(self.api)
    }

    /// Its member list, or `None` if the API does not answer.
    pub fn members(&self) -> Option<Vec<MemberView>> {
        let Some(ns) = &self.netns else { return self.client().members().ok() };
        let output = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(shoal_bin())
            .args(["members", "--json", "--api", &self.api.to_string()])
            .output()
            .ok()?;
        serde_json::from_slice(&output.stdout).ok()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for the process to exit.
    pub fn sigterm(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        self.send_sigterm()?;
        self.wait_exit(within)
    }

    /// SIGTERM, without waiting (so that several agents get it at once).
    pub fn send_sigterm(&self) -> anyhow::Result<()> {
        let Some(child) = &self.child else { bail!("{} is not running", self.name) };
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        Ok(())
    }

    /// Waits (bounded) for the process to exit; kills it if it does not.
    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else { bail!("{} is not running", self.name) };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("{} did not exit within {within:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// A metric's value from `/metrics` (the first line that starts with `name`).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = self.client().metrics().ok()?;
        text.lines().find(|l| l.starts_with(name) && !l.starts_with('#'))?.rsplit(' ').next()?.parse().ok()
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        // What its exec driver ran would outlive it.
        kill_replicas(&self.data_dir);
    }
}

/// A process the exec driver of an agent runs for a replica.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReplicaProcess {
    pub workload: String,
    pub replica: u16,
    pub pid: u32,
}

/// The live processes whose working directory is in `data_dir`'s workloads
/// folder (where the exec driver starts replicas without a `workdir`), with
/// the replica their environment names. Found through `/proc`, so they are
/// seen even after their agent died.
pub fn replica_processes(data_dir: &Path) -> Vec<ReplicaProcess> {
    let Ok(workloads) = data_dir.join("workloads").canonicalize() else { return Vec::new() };
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found: Vec<ReplicaProcess> = procs
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            // A zombie has no working directory: it is not running.
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            if !cwd.starts_with(&workloads) {
                return None;
            }
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            let var = |name: &str| {
                environ.split(|&b| b == 0).find_map(|v| {
                    let v = std::str::from_utf8(v).ok()?;
                    Some(v.strip_prefix(name)?.strip_prefix('=')?.to_string())
                })
            };
            Some(ReplicaProcess { workload: var("SHOAL_WORKLOAD")?, replica: var("SHOAL_REPLICA")?.parse().ok()?, pid })
        })
        .collect();
    found.sort();
    found
}

/// SIGKILLs the replica processes under `data_dir` (and their process groups,
/// which the exec driver makes them lead).
pub fn kill_replicas(data_dir: &Path) {
    for process in replica_processes(data_dir) {
        let group = format!("-{}", process.pid);
        let _ =
            Command::new("kill").args(["-KILL", "--", &group, &process.pid.to_string()]).stderr(Stdio::null()).status();
    }
}

/// The state `viewer` holds for the member named `name`.
pub fn state_of(viewer: &Agent, name: &str) -> Option<MemberView> {
    viewer.members()?.into_iter().find(|m| m.name == name)
}

/// How many members `viewer` sees in `state`.
pub fn count_in(viewer: &Agent, state: State) -> Option<usize> {
    Some(viewer.members()?.iter().filter(|m| m.state == state).count())
}

/// Polls `check` every 100 ms until it holds or `within` passes; returns the
/// time it took.
pub fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if check() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            bail!("timed out after {within:?} waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
