//! The systems the lab runs, behind one enum so every figure is measured
//! the same way for each: how to start an agent, how to read its log, how to
//! ask it for its members.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use super::view::Seen;

/// The gossip port every agent binds (one namespace each, so all the same).
pub const GOSSIP_PORT: u16 = 7946;
/// The `shoal` agent's HTTP API, on the namespace's loopback.
pub const SHOAL_API: &str = "127.0.0.1:7947";
/// Serf's RPC, on the namespace's loopback.
pub const SERF_RPC: &str = "127.0.0.1:7373";

/// A system under test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum System {
    /// The `shoal` agent: the binary at `bin`, run with `--profile PROFILE`.
    Shoal {
        /// The `shoal` binary.
        bin: PathBuf,
        /// `lan`, `fast`, `wan` or `local`.
        profile: String,
    },
    /// HashiCorp Serf (`serf` on the PATH; Debian package `serf`).
    Serf,
}

/// Everything one agent is started with.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    /// Its name (`a0`, `a1`, ...).
    pub name: String,
    /// Its address on the bridge.
    pub addr: Ipv4Addr,
    /// Addresses it joins through (gossip port implied).
    pub join: Vec<Ipv4Addr>,
    /// The cluster key.
    pub key: String,
    /// Its data directory (kept across restarts).
    pub data_dir: PathBuf,
}

impl System {
    /// The `shoal` agent at `bin` with its default profile, `lan`.
    pub fn shoal(bin: PathBuf) -> System {
        System::Shoal { bin, profile: "lan".into() }
    }

    /// `shoal` (profile `lan`), `shoal-PROFILE`, or `serf`: the name rows,
    /// logs and data directories go by.
    pub fn name(&self) -> String {
        match self {
            System::Shoal { profile, .. } if profile == "lan" => "shoal".into(),
            System::Shoal { profile, .. } => format!("shoal-{profile}"),
            System::Serf => "serf".into(),
        }
    }

    /// The configuration in words (for reports).
    pub fn describe(&self) -> String {
        match self {
            System::Shoal { bin, profile } => {
                format!("shoal agent --profile {profile}, encrypted ({})", version(bin.as_os_str()))
            }
            System::Serf => format!("Serf {} -profile lan, encrypted", version("serf".as_ref())),
        }
    }

    /// A new cluster key, from the system's own `keygen`.
    pub fn keygen(&self) -> Result<String> {
        let out = match self {
            System::Shoal { bin, .. } => Command::new(bin).arg("keygen").output(),
            System::Serf => Command::new("serf").arg("keygen").output(),
        }
        .with_context(|| format!("running {} keygen", self.name()))?;
        ensure!(out.status.success(), "{} keygen failed", self.name());
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The agent's command line.
    pub fn argv(&self, spec: &AgentSpec) -> Vec<String> {
        let bind = format!("{}:{GOSSIP_PORT}", spec.addr);
        let joins = spec.join.iter().map(|a| format!("{a}:{GOSSIP_PORT}"));
        let mut argv: Vec<String> = match self {
            System::Shoal { bin, profile } => {
                let mut argv = vec![bin.display().to_string()];
                argv.extend(["--log-format", "json", "agent", "--profile", profile, "--no-mdns"].map(String::from));
                argv.extend([
                    "--name".into(),
                    spec.name.clone(),
                    "--data-dir".into(),
                    spec.data_dir.display().to_string(),
                ]);
                argv.extend([
                    "--bind".into(),
                    bind,
                    "--api".into(),
                    SHOAL_API.into(),
                    "--cluster-key".into(),
                    spec.key.clone(),
                ]);
                argv
            }
            System::Serf => {
                let mut argv: Vec<String> =
                    ["serf", "agent", "-profile", "lan", "-log-level", "info"].map(String::from).into();
                argv.extend([
                    "-node".into(),
                    spec.name.clone(),
                    "-bind".into(),
                    bind,
                    "-rpc-addr".into(),
                    SERF_RPC.into(),
                ]);
                argv.extend(["-encrypt".into(), spec.key.clone()]);
                argv
            }
        };
        let flag = if matches!(self, System::Shoal { .. }) { "--join" } else { "-join" };
        for join in joins {
            argv.push(flag.into());
            argv.push(join);
        }
        argv
    }

    /// The membership event in one log line, if any: (member, what it is now).
    pub fn parse_line(&self, line: &str) -> Option<(String, Seen)> {
        match self {
            System::Shoal { .. } => {
                let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
                let fields = value.get("fields")?;
                let seen = match fields.get("message")?.as_str()? {
                    "member up" | "member refuted suspicion" => Seen::Alive,
                    "member suspect" => Seen::Suspect,
                    "member dead" => Seen::Failed,
                    "member left" => Seen::Left,
                    _ => return None,
                };
                Some((fields.get("member")?.as_str()?.to_owned(), seen))
            }
            System::Serf => {
                let rest = &line[line.find("serf: EventMember")? + "serf: EventMember".len()..];
                let (kind, rest) = rest.split_once(": ")?;
                let seen = match kind {
                    "Join" => Seen::Alive,
                    "Failed" => Seen::Failed,
                    "Leave" | "Reap" => Seen::Left,
                    _ => return None,
                };
                Some((rest.split_whitespace().next()?.to_owned(), seen))
            }
        }
    }

    /// Asks the agent in namespace `ns` for its member list: (name, state),
    /// state one of `alive`, `suspect`, `failed`, `left`.
    pub fn members(&self, ns: &str) -> Result<Vec<(String, String)>> {
        match self {
            System::Shoal { .. } => {
                let body = super::http_get(ns, SHOAL_API, "/v1/members")?;
                let list: Vec<serde_json::Value> = serde_json::from_str(&body).context("parsing /v1/members")?;
                Ok(list.iter().filter_map(|m| Some((field(m, "name")?, normalise(&field(m, "state")?)))).collect())
            }
            System::Serf => {
                let out = in_netns(ns, &["serf", "members", "-rpc-addr", SERF_RPC, "-format", "json"])?;
                let value: serde_json::Value = serde_json::from_str(&out).context("parsing serf members")?;
                let list = value.get("members").and_then(|m| m.as_array()).cloned().unwrap_or_default();
                Ok(list.iter().filter_map(|m| Some((field(m, "name")?, normalise(&field(m, "status")?)))).collect())
            }
        }
    }
}

fn field(value: &serde_json::Value, name: &str) -> Option<String> {
    value.get(name)?.as_str().map(str::to_owned)
}

fn normalise(state: &str) -> String {
    match state {
        "dead" => "failed".into(),
        "leaving" => "left".into(),
        other => other.into(),
    }
}

fn version(bin: &std::ffi::OsStr) -> String {
    Command::new(bin)
        .arg("version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_owned))
        .filter(|v| !v.is_empty())
        .or_else(|| {
            let out = Command::new(bin).arg("--version").output().ok()?;
            String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_owned)
        })
        .unwrap_or_else(|| Path::new(bin).display().to_string())
}

/// Runs `argv` inside namespace `ns` (`ip netns exec`); its standard output.
pub fn in_netns(ns: &str, argv: &[&str]) -> Result<String> {
    let out = Command::new("ip").args(["netns", "exec", ns]).args(argv).output().context("running ip netns exec")?;
    ensure!(
        out.status.success(),
        "{} (in {ns}): {}{}",
        argv.join(" "),
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
