//! mDNS: two agents started with no `--join` find each other.
//!
//! mDNS is multicast on a LAN interface (and the agent ignores finds on
//! loopback), so the two agents run in two network namespaces joined by a
//! bridge (in a third namespace), all created here and removed afterwards. Needs root and `ip netns`; without them the
//! test says so loudly and passes.
#![allow(clippy::print_stderr)]

use std::process::Command;
use std::time::Duration;

use shoal_protocol::State;
use shoal_tests::{Agent, count_in, new_key, test_dir, wait_until};

/// Namespaces created by this test; deleted on drop.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip").args(args).output()?;
    anyhow::ensure!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    Ok(())
}

/// Two namespaces, each with `eth0` at 10.213.0.{1,2}/24 on one bridge.
fn two_hosts(id: u32) -> anyhow::Result<(Namespaces, [String; 2])> {
    let bridge = format!("shoal-br-{id}");
    let hosts = [format!("shoal-a-{id}"), format!("shoal-b-{id}")];
    let mut created = Namespaces(Vec::new());
    for ns in std::iter::once(&bridge).chain(&hosts) {
        ip(&["netns", "add", ns])?;
        created.0.push(ns.clone());
    }
    ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &bridge, "link", "set", "br0", "up"])?;
    for (i, ns) in hosts.iter().enumerate() {
        let (host_end, bridge_end) = (format!("sh{id}h{i}"), format!("sh{id}b{i}"));
        ip(&["link", "add", &host_end, "type", "veth", "peer", "name", &bridge_end])?;
        ip(&["link", "set", &host_end, "netns", ns])?;
        ip(&["link", "set", &bridge_end, "netns", &bridge])?;
        ip(&["-n", ns, "link", "set", &host_end, "name", "eth0"])?;
        ip(&["-n", ns, "addr", "add", &format!("10.213.0.{}/24", i + 1), "dev", "eth0"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        ip(&["-n", &bridge, "link", "set", &bridge_end, "master", "br0"])?;
        ip(&["-n", &bridge, "link", "set", &bridge_end, "up"])?;
    }
    Ok((created, hosts))
}

#[test]
fn two_agents_without_join_find_each_other_over_mdns() -> anyhow::Result<()> {
    let id = std::process::id() % 100_000;
    let (namespaces, hosts) = match two_hosts(id) {
        Ok(made) => made,
        Err(error) => {
            eprintln!("\n!!! SKIPPED the mDNS test: cannot create network namespaces ({error:#}).");
            eprintln!("!!! It needs root and `ip netns` (iproute2).\n");
            return Ok(());
        }
    };
    let dir = test_dir("mdns");
    let key = vec!["--cluster-key".to_string(), new_key()];
    let mut agents = Vec::new();
    for (i, ns) in hosts.iter().enumerate() {
        let mut agent = Agent::prepare(&dir, &format!("mdns-{i}"), &key);
        agent.netns = Some(ns.clone());
        agent.gossip = "0.0.0.0:7946".parse()?;
        agent.api = "127.0.0.1:7947".parse()?;
        agent.spawn()?;
        agents.push(agent);
    }
    let result = wait_until(Duration::from_secs(40), "both agents see 2 alive through mDNS", || {
        agents.iter().all(|a| count_in(a, State::Alive) == Some(2))
    });
    let logs = agents.iter().map(Agent::log_tail).collect::<Vec<_>>().join("\n----\n");
    drop(agents);
    drop(namespaces);
    result.map_err(|e| e.context(logs))?;
    Ok(())
}
