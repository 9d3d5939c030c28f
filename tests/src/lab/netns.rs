//! Network namespaces: one bridge namespace holding `br0`, and one namespace
//! per host with `eth0` on that bridge.
//!
//! The bridge lives in a namespace of its own, not on the host: Docker sets
//! the host's iptables FORWARD policy to DROP, and frames bridged on the host
//! would pass through it (`br_netfilter`).

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use nix::sched::{CloneFlags, setns};

/// Every namespace the lab creates starts with this; `shoal-lab clean`
/// removes whatever carries it.
pub const PREFIX: &str = "shlab-";

/// The bridge and host namespaces of one lab; removed (with every process
/// in them) on drop.
#[derive(Debug)]
pub struct Network {
    tag: String,
    second_octet: u8,
    hosts: Vec<String>,
}

impl Network {
    /// Creates the bridge namespace and `hosts` host namespaces, addressed
    /// `10.{second_octet}.0.0/16`. `tag` (short, `[a-z0-9]`) names them.
    pub fn create(tag: &str, second_octet: u8, hosts: usize) -> Result<Network> {
        ensure!(hosts <= 200 * 250, "at most 50,000 hosts fit in one /16 here");
        ensure!(tag.len() <= 12 && tag.chars().all(|c| c.is_ascii_alphanumeric()), "bad tag {tag:?}");
        if hosts > 30 {
            raise_neighbour_limits()?;
        }
        let mut net = Network { tag: tag.to_owned(), second_octet, hosts: Vec::new() };
        let bridge = net.bridge();
        ip(&["netns", "add", &bridge])?;
        ip_batch(&bridge, "link add br0 type bridge\nlink set br0 up\nlink set lo up\n")?;
        let mut bridge_ports = String::new();
        for i in 0..hosts {
            let ns = format!("{PREFIX}{tag}-h{i}");
            ip(&["netns", "add", &ns])?;
            net.hosts.push(ns.clone());
            let port = format!("v{i}");
            ip(&["link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns", &bridge])?;
            ip_batch(&ns, &format!("addr add {}/16 dev eth0\nlink set eth0 up\nlink set lo up\n", net.addr(i)))?;
            bridge_ports.push_str(&format!("link set {port} master br0\nlink set {port} up\n"));
        }
        ip_batch(&bridge, &bridge_ports)?;
        Ok(net)
    }

    /// The bridge namespace's name.
    pub fn bridge(&self) -> String {
        format!("{PREFIX}{}-br", self.tag)
    }

    /// Host `i`'s namespace.
    pub fn host(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Host namespaces.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// No hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Host `i`'s address on the bridge.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        let (hi, lo) = (i / 200, i % 200 + 10);
        Ipv4Addr::new(10, self.second_octet, u8::try_from(hi).unwrap_or(u8::MAX), u8::try_from(lo).unwrap_or(0))
    }

    /// Every namespace of this lab, bridge first.
    fn all(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(self.bridge()).chain(self.hosts.iter().cloned())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let names: Vec<String> = self.all().collect();
        remove(&names);
    }
}

/// Runs `ip ARGS`.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().context("running ip")?;
    ensure!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

/// Runs the `ip` commands in `batch` (one a line) inside namespace `ns`.
fn ip_batch(ns: &str, batch: &str) -> Result<()> {
    feed("ip", &["-n", ns, "-batch", "-"], batch)
}

/// Runs `program ARGS` with `input` on its standard input; fails with its
/// standard error if it fails.
pub(crate) fn feed(program: &str, args: &[&str], input: &str) -> Result<()> {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "{program} {}: {}\n{input}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Kills every process in each namespace, then deletes the namespaces.
pub fn remove(names: &[String]) {
    for ns in names {
        for pid in pids_in(ns) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    for ns in names {
        let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
    }
}

fn pids_in(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// Namespaces whose name starts with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Removes every namespace (and process in it) whose name starts with
/// `prefix` (at least [`PREFIX`]); returns how many.
pub fn clean(prefix: &str) -> usize {
    let prefix = if prefix.starts_with(PREFIX) { prefix } else { PREFIX };
    let names = list(prefix);
    remove(&names);
    names.len()
}

/// Runs `f` on a new thread that entered namespace `ns`: sockets it opens
/// live there (its loopback is the namespace's loopback), files it reads
/// under `/proc/thread-self/net` describe it.
pub fn run_in<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let file = File::open(format!("/run/netns/{ns}")).with_context(|| format!("opening namespace {ns}"))?;
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new().stack_size(256 * 1024).spawn_scoped(scope, move || {
            setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("entering namespace {ns}"))?;
            f()
        })?;
        match worker.join() {
            Ok(result) => result,
            Err(_) => bail!("a thread in namespace {ns} panicked"),
        }
    })
}

/// The kernel's neighbour (ARP) table is shared by every namespace and
/// overflows at about 33 chatty ones ("neighbor table overflow", then silent
/// drops that look like flapping): raise its limits (never lowers them).
fn raise_neighbour_limits() -> Result<()> {
    for (name, want) in [("gc_thresh1", 4096u64), ("gc_thresh2", 8192), ("gc_thresh3", 16384)] {
        let path = format!("/proc/sys/net/ipv4/neigh/default/{name}");
        let now: u64 = std::fs::read_to_string(&path)?.trim().parse()?;
        if now < want {
            std::fs::write(&path, want.to_string()).with_context(|| format!("raising {path}"))?;
        }
    }
    Ok(())
}
