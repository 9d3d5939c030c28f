//! What the kernel says about an agent: memory, CPU time and sockets from
//! `/proc/PID`, bytes sent from its namespace's `eth0` counters.

use std::collections::BTreeSet;

use anyhow::{Context, Result};

/// Resident memory, KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU time, in clock ticks (`/proc/PID/stat`).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
pub fn ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// An agent's open sockets by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sockets {
    /// UDP sockets (v4 and v6).
    pub udp: u32,
    /// TCP sockets (listening and connected, v4 and v6).
    pub tcp: u32,
    /// Any other socket (unix, netlink, ...).
    pub other: u32,
}

/// Counts the sockets among `/proc/PID/fd`, classified by looking their
/// inodes up in the tables of the process's namespace (`/proc/PID/net/*`).
pub fn sockets(pid: u32) -> Result<Sockets> {
    let mut inodes = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).with_context(|| format!("reading /proc/{pid}/fd"))? {
        let Ok(link) = std::fs::read_link(entry?.path()) else { continue };
        let link = link.to_string_lossy().into_owned();
        if let Some(inode) = link.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
            inodes.push(inode.to_owned());
        }
    }
    let table = |names: &[&str]| -> BTreeSet<String> {
        names
            .iter()
            .filter_map(|n| std::fs::read_to_string(format!("/proc/{pid}/net/{n}")).ok())
            .flat_map(|t| {
                t.lines().skip(1).filter_map(|l| l.split_whitespace().nth(9).map(str::to_owned)).collect::<Vec<_>>()
            })
            .collect()
    };
    let (udp, tcp) = (table(&["udp", "udp6"]), table(&["tcp", "tcp6"]));
    let mut s = Sockets::default();
    for inode in inodes {
        if udp.contains(&inode) {
            s.udp += 1;
        } else if tcp.contains(&inode) {
            s.tcp += 1;
        } else {
            s.other += 1;
        }
    }
    Ok(s)
}

/// Whether the process has a UDP socket bound to `port` (its namespace's
/// `/proc/PID/net/udp`): the agent is up.
pub fn listens_udp(pid: u32, port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["udp", "udp6"].iter().any(|n| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{n}"))
            .map(|t| t.lines().skip(1).any(|l| l.split_whitespace().nth(1).is_some_and(|a| a.ends_with(&want))))
            .unwrap_or(false)
    })
}

/// Bytes sent through `eth0` in namespace `ns` (its TX counter: every
/// frame's IP, UDP/TCP headers and payload, plus the Ethernet header).
pub fn tx_bytes(ns: &str) -> Result<u64> {
    super::netns::run_in(ns, || {
        let dev = std::fs::read_to_string("/proc/thread-self/net/dev").context("reading net/dev")?;
        let line = dev.lines().find(|l| l.trim_start().starts_with("eth0:")).context("no eth0")?;
        let fields: Vec<&str> = line.split(':').nth(1).context("net/dev line")?.split_whitespace().collect();
        // receive: bytes packets errs drop fifo frame compressed multicast; then transmit bytes.
        Ok(fields.get(8).context("net/dev fields")?.parse()?)
    })
}

/// Bytes of the IP packets namespace `ns` has sent (`IpExt: OutOctets` in
/// its `/proc/net/netstat`): what its processes sent, IP and UDP/TCP headers
/// included, without Ethernet framing or the kernel's ARP traffic (which
/// grows with the number of peers a host talks to, whatever talks).
pub fn ip_out_octets(ns: &str) -> Result<u64> {
    super::netns::run_in(ns, || {
        let text = std::fs::read_to_string("/proc/thread-self/net/netstat").context("reading net/netstat")?;
        let mut ip_ext = text.lines().filter(|l| l.starts_with("IpExt:"));
        let (names, values) = (ip_ext.next().context("no IpExt header")?, ip_ext.next().context("no IpExt values")?);
        let at = names.split_whitespace().position(|n| n == "OutOctets").context("no OutOctets")?;
        Ok(values.split_whitespace().nth(at).context("IpExt values")?.parse()?)
    })
}
