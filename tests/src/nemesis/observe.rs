//! What the lab looks like, from outside the agents: the replica processes
//! in `/proc` (not what agents report), and each agent's catalog and member
//! list from its API.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::lab::system::SHOAL_API;
use crate::lab::{Lab, http_get};

/// One running copy of a workload: a process whose working directory is in
/// an agent's `<data-dir>/workloads/` (where the exec driver starts it) and
/// whose environment names the workload and replica.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Copy {
    /// `SHOAL_WORKLOAD`.
    pub workload: String,
    /// `SHOAL_REPLICA`.
    pub replica: u16,
    /// The agent whose data dir holds its working directory.
    pub agent: usize,
    /// Its process id.
    pub pid: u32,
    /// Its parent: the agent process that started it, or whoever adopted it
    /// after that agent died.
    pub parent: u32,
}

/// The agents' data dirs as the lab lays them out ([`Lab::data_dir`]),
/// each with its `workloads` folder, canonical so `/proc/PID/cwd` matches.
#[derive(Clone, Debug)]
pub struct DataDirs(Vec<PathBuf>);

impl DataDirs {
    /// The data dirs of `lab`'s agents.
    pub fn of(lab: &Lab) -> DataDirs {
        DataDirs((0..lab.len()).map(|i| lab.data_dir(i).join("workloads")).collect())
    }

    /// Every running copy of any workload, on any agent, dead or alive.
    pub fn copies(&self) -> Vec<Copy> {
        let roots: Vec<Option<PathBuf>> = self.0.iter().map(|d| d.canonicalize().ok()).collect();
        let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
        let mut found: Vec<Copy> = procs
            .flatten()
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                // A zombie has no working directory: it does not run.
                let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
                let agent = roots.iter().position(|r| r.as_ref().is_some_and(|r| cwd.starts_with(r)))?;
                let environ = std::fs::read(entry.path().join("environ")).ok()?;
                let var = |name: &str| {
                    environ.split(|&b| b == 0).find_map(|v| {
                        let v = std::str::from_utf8(v).ok()?;
                        Some(v.strip_prefix(name)?.strip_prefix('=')?.to_owned())
                    })
                };
                Some(Copy {
                    workload: var("SHOAL_WORKLOAD")?,
                    replica: var("SHOAL_REPLICA")?.parse().ok()?,
                    agent,
                    pid,
                    parent: parent_of(pid)?,
                })
            })
            .collect();
        found.sort();
        found
    }
}

/// The parent process id (`/proc/PID/stat`, field 4).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: count from its ')'.
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// Agent `i`'s catalog: the names of the workloads it lists.
pub fn catalog(lab: &Lab, i: usize) -> Result<BTreeSet<String>> {
    let body = http_get(lab.net.host(i), SHOAL_API, "/v1/workloads")?;
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).context("parsing /v1/workloads")?;
    Ok(list.iter().filter_map(|w| Some(w.get("name")?.as_str()?.to_owned())).collect())
}

/// The members agent `i` lists alive.
pub fn alive(lab: &Lab, i: usize) -> Result<BTreeSet<String>> {
    Ok(lab.members(i)?.into_iter().filter(|(_, state)| state == "alive").map(|(name, _)| name).collect())
}

/// One look at the whole lab.
#[derive(Clone, Debug, Default)]
pub struct World {
    /// Every running copy.
    pub copies: Vec<Copy>,
    /// Per agent: its catalog, or why it could not be read.
    pub catalogs: Vec<Result<BTreeSet<String>, String>>,
    /// Per agent: the members it lists alive, or why they could not be read.
    pub alive: Vec<Result<BTreeSet<String>, String>>,
    /// Per agent: its process id, if it runs.
    pub pids: Vec<Option<u32>>,
}

impl World {
    /// Looks at the lab (the agents in `running` answer; the others are
    /// not asked).
    pub fn observe(lab: &Lab, dirs: &DataDirs, running: &[usize]) -> World {
        let ask = |what: &dyn Fn(usize) -> Result<BTreeSet<String>>| {
            (0..lab.len())
                .map(|i| if running.contains(&i) { what(i).map_err(|e| format!("{e:#}")) } else { Err("down".into()) })
                .collect()
        };
        World {
            catalogs: ask(&|i| catalog(lab, i)),
            alive: ask(&|i| alive(lab, i)),
            pids: (0..lab.len()).map(|i| lab.pid(i)).collect(),
            copies: dirs.copies(),
        }
    }
}
