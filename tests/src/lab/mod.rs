//! The real-network lab: N real agents (the `shoal` agent or Serf), one
//! network namespace each, on a bridge in a namespace of its own; faults
//! with iptables and signals; measurements from the kernel's counters.
//! `shoal-lab` (tests/src/bin/shoal-lab.rs) drives it, and the Jepsen-style
//! nemesis is meant to be built on the same [`Lab`].
//!
//! How the harness observes N agents cheaply (N=100 on 2 cores):
//!
//! - **Membership timing comes from the agents' logs**, read through pipes
//!   and stamped by the harness as each line arrives ([`view`]). Both
//!   systems log every membership change (Serf's `serf: EventMemberJoin`,
//!   the `shoal` agent's `member up`/`member dead` with `--log-format
//!   json`), so a join, a failure or a false failure is seen within
//!   milliseconds, without spawning a process or polling an API during a
//!   measurement.
//! - **APIs are reached from a thread that entered the agent's namespace**
//!   (`nix::sched::setns`, safe; [`netns::run_in`]). The APIs stay on each
//!   namespace's loopback (`127.0.0.1:7947` for shoal, `:7373` for Serf's
//!   RPC), as an operator runs them: the design keeps the `shoal` API on
//!   loopback only (any other address will need TLS and a token), so a
//!   harness that needed it on the bridge address would test a setup nobody
//!   runs, and would break when that rule lands. A host-side veth into the
//!   bridge would also put one more chatty interface on the bridge.
//!   Serf's RPC is msgpack, not HTTP: its member list is read with `serf
//!   members` run in the namespace (`ip netns exec`), only at checkpoints.
//! - **Bytes sent are the TX counter of each host's `eth0`**
//!   (`/proc/thread-self/net/dev` read from inside the namespace): every
//!   frame the agent sent, headers included, whatever the agent says about
//!   itself. Memory, CPU and sockets come from `/proc/PID`.

pub mod agent;
pub mod bench;
pub mod faults;
mod guard;
pub mod netns;
pub mod procfs;
pub mod system;
pub mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

pub use faults::Fault;
pub use guard::install_signal_cleanup;
pub use system::System;

use agent::Agent;
use netns::Network;
use system::{AgentSpec, GOSSIP_PORT, SHOAL_API};
use view::Views;

/// N agents of one system, each in its own namespace. Dropping it kills the
/// agents and removes the namespaces.
#[derive(Debug)]
pub struct Lab {
    // Field order is drop order: agents before their namespaces.
    agents: Vec<Option<Agent>>,
    /// The system under test.
    pub system: System,
    /// What every agent has logged about its members.
    pub views: Views,
    /// Agent `i`'s name (`a{i}`).
    pub names: Vec<String>,
    specs: Vec<AgentSpec>,
    faulted: BTreeSet<usize>,
    dir: PathBuf,
    prefix: String,
    /// The namespaces.
    pub net: Network,
}

impl Lab {
    /// Creates `hosts` namespaces named `shlab-{tag}-*` (addresses
    /// `10.{octet}.0.0/16`) and prepares (does not start) one agent of
    /// `system` in each, logs and data under `dir`.
    pub fn new(system: System, hosts: usize, tag: &str, octet: u8, dir: &Path) -> Result<Lab> {
        let prefix = format!("{}{tag}-", netns::PREFIX);
        guard::register(&prefix);
        let net = Network::create(tag, octet, hosts)?;
        faults::prepare(&net)?;
        std::fs::create_dir_all(dir)?;
        let key = system.keygen()?;
        let names: Vec<String> = (0..hosts).map(|i| format!("a{i}")).collect();
        let specs = (0..hosts)
            .map(|i| AgentSpec {
                name: names[i].clone(),
                addr: net.addr(i),
                join: if i == 0 { Vec::new() } else { vec![net.addr(0)] },
                key: key.clone(),
                data_dir: dir.join(format!("{}-data-{i}", system.name())),
            })
            .collect();
        let agents = (0..hosts).map(|_| None).collect();
        Ok(Lab {
            agents,
            system,
            views: Views::default(),
            names,
            specs,
            faulted: BTreeSet::new(),
            dir: dir.into(),
            prefix,
            net,
        })
    }

    /// Agents (running or not).
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// No agents.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The cluster key every agent starts with.
    pub fn key(&self) -> &str {
        &self.specs[0].key
    }

    /// Agent `i`'s log file.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}-{i}.log", self.system.name()))
    }

    /// Agent `i`'s data directory (kept across its restarts).
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.specs[i].data_dir
    }

    /// Starts agent `i` (it joins through agent 0; agent 0 through agent 1
    /// when restarted).
    pub fn start(&mut self, i: usize) -> Result<()> {
        let key = self.specs[i].key.clone();
        self.start_with_key(i, &key)
    }

    /// Starts agent `i` with cluster key `key` instead of the lab's.
    pub fn start_with_key(&mut self, i: usize, key: &str) -> Result<()> {
        if self.agents[i].is_some() {
            bail!("agent {i} is already running");
        }
        let mut spec = self.specs[i].clone();
        spec.key = key.to_owned();
        if i == 0 && self.agents.iter().any(Option::is_some) && self.len() > 1 {
            spec.join = vec![self.net.addr(1)];
        }
        let agent = Agent::spawn(&self.system, &spec, self.net.host(i), i, &self.log_path(i), &self.views)?;
        self.agents[i] = Some(agent);
        Ok(())
    }

    /// Waits until agent `i` has bound its gossip port.
    pub fn wait_up(&mut self, i: usize, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let agent = self.agents[i].as_mut().context("agent not started")?;
            if !agent.running() {
                bail!("agent {i} exited; see {}", self.log_path(i).display());
            }
            if procfs::listens_udp(agent.pid, GOSSIP_PORT) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("agent {i} did not bind its port within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Agent `i`'s process id, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.agents[i].as_ref().map(|a| a.pid)
    }

    /// Indices of the agents started (and not killed through the lab).
    pub fn running(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.agents[i].is_some()).collect()
    }

    /// Sends `signal` to agent `i` (SIGSTOP pauses it, SIGCONT resumes it).
    pub fn signal(&self, i: usize, signal: Signal) -> Result<()> {
        self.agents[i].as_ref().context("agent not running")?.signal(signal)
    }

    /// `kill -9` agent `i`.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let agent = self.agents[i].take().context("agent not running")?;
        agent.signal(Signal::SIGKILL)?;
        drop(agent);
        Ok(())
    }

    /// Stops agent `i` with SIGTERM (SIGKILL after 10 s).
    pub fn stop(&mut self, i: usize) {
        if let Some(agent) = self.agents[i].take() {
            agent.stop(Instant::now() + Duration::from_secs(10));
        }
    }

    /// `kill -9` then start again, with the same data directory.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i)?;
        self.start(i)
    }

    /// Stops every agent: SIGTERM to all at once, SIGKILL to those still
    /// running 10 s later (agents that all leave at once may wait for peers
    /// that are gone).
    pub fn stop_all(&mut self) {
        let agents: Vec<Agent> = self.agents.iter_mut().filter_map(Option::take).collect();
        for agent in &agents {
            let _ = agent.signal(Signal::SIGCONT);
            let _ = agent.signal(Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for agent in agents {
            agent.stop(deadline);
        }
    }

    /// Starts agent 0, waits until it is up, then starts every other agent
    /// (each joining through agent 0); the instant the last one started.
    pub fn start_all(&mut self) -> Result<Instant> {
        self.start(0)?;
        self.wait_up(0, Duration::from_secs(30))?;
        for i in 1..self.len() {
            self.start(i)?;
        }
        Ok(Instant::now())
    }

    /// Waits until every running agent's log says every other running agent
    /// is alive; the instant of the event that completed the views, or
    /// `None` after `within`.
    pub fn wait_all_see_all(&self, within: Duration) -> Option<Instant> {
        let live = self.running();
        let deadline = Instant::now() + within;
        loop {
            if self.views.all_alive(&self.names, &live, &live) {
                return self.views.last_alive_before(Instant::now());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Applies a network fault (on top of any already applied).
    pub fn fault(&mut self, fault: &Fault) -> Result<()> {
        let touched = faults::apply(&self.net, fault)?;
        self.faulted.extend(touched);
        Ok(())
    }

    /// Removes every network fault.
    pub fn heal(&mut self) -> Result<()> {
        let hosts = std::mem::take(&mut self.faulted);
        faults::heal(&self.net, hosts)
    }

    /// Agent `i`'s member list, from its API: (name, alive|suspect|failed|left).
    pub fn members(&self, i: usize) -> Result<Vec<(String, String)>> {
        self.system.members(self.net.host(i))
    }

    /// Agent `i`'s `/metrics` (`shoal` only): `name{labels}` to value.
    pub fn metrics(&self, i: usize) -> Result<BTreeMap<String, f64>> {
        let text = http_get(self.net.host(i), SHOAL_API, "/metrics")?;
        Ok(parse_metrics(&text))
    }

    /// Runs the system's CLI against agent `i` from inside its namespace
    /// (`shoal ARGS --api 127.0.0.1:7947`, `serf ARGS -rpc-addr ...`),
    /// e.g. `lab.cli(3, &["keys", "install", KEY])`; its standard output.
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<String> {
        let (bin, api) = match &self.system {
            System::Shoal { bin, .. } => (bin.display().to_string(), ["--api", SHOAL_API]),
            System::Serf => ("serf".to_owned(), ["-rpc-addr", system::SERF_RPC]),
        };
        let mut argv: Vec<&str> = vec![&bin];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&api);
        system::in_netns(self.net.host(i), &argv)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.agents.clear();
        guard::unregister(&self.prefix);
    }
}

/// `GET http://{addr}{path}` from inside namespace `ns`.
pub fn http_get(ns: &str, addr: &str, path: &str) -> Result<String> {
    let url = format!("http://{addr}{path}");
    netns::run_in(ns, move || {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(3)).build();
        Ok(agent.get(&url).call().with_context(|| format!("GET {url}"))?.into_string()?)
    })
}

/// Prometheus text to `name{labels}` -> value.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.trim().to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}
