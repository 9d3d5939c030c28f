//! The exec driver: a host process in a process group of its own, so a stop
//! reaches everything it spawned.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::DriverError;
use super::status::{Exit, ReplicaKey};

/// Logs are rotated (one old copy kept) when a replica starts with a log
/// larger than this, so a crash-looping replica cannot fill the disk.
const LOG_ROTATE_BYTES: u64 = 16 << 20;

/// What an exec replica runs, borrowed from its spec.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExecSpec<'a> {
    pub(crate) command: &'a str,
    pub(crate) args: &'a [String],
    pub(crate) env: &'a BTreeMap<String, String>,
    pub(crate) workdir: Option<&'a str>,
}

/// A running replica's process group.
#[derive(Debug)]
pub(crate) struct Process {
    child: Child,
    /// The leader's pid, which is also the group id.
    pgid: Option<Pid>,
    pid_file: PathBuf,
}

/// Starts `spec` for `key` with its logs and pid file in `dir`.
pub(crate) fn start(spec: ExecSpec<'_>, key: &ReplicaKey, node_id: &str, dir: &Path) -> Result<Process, DriverError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DriverError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let stdout = open_log(&dir.join("stdout.log")).map_err(io_err(&dir.join("stdout.log")))?;
    let stderr = open_log(&dir.join("stderr.log")).map_err(io_err(&dir.join("stderr.log")))?;
    let mut command = Command::new(spec.command);
    command
        .args(spec.args)
        .envs(spec.env)
        .env("SHOAL_WORKLOAD", &key.workload)
        .env("SHOAL_REPLICA", key.replica.to_string())
        .env("SHOAL_NODE", node_id)
        .current_dir(spec.workdir.map_or(dir, Path::new))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        // The backstop: a supervisor dropped without `stop` still kills the
        // leader. A graceful stop signals the whole group first.
        .kill_on_drop(true);
    let child = command.spawn().map_err(|source| {
        let hint = match source.kind() {
            std::io::ErrorKind::NotFound if spec.workdir.is_some_and(|w| !Path::new(w).is_dir()) => {
                "; the workdir does not exist"
            }
            std::io::ErrorKind::NotFound => "; is it installed and on the agent's PATH?",
            std::io::ErrorKind::PermissionDenied => "; is it executable?",
            _ => "",
        };
        DriverError::Spawn { command: spec.command.to_string(), source, hint }
    })?;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    let pid_file = dir.join("pid");
    // Lets the next agent on this data dir kill the group if this one dies
    // without stopping it (see `reap_orphans`).
    if let Some((pid, start)) = pgid.and_then(|pid| Some((pid, proc_start_time(pid)?))) {
        if let Err(e) = std::fs::write(&pid_file, format!("{pid} {start}\n")) {
            tracing::warn!(replica = %key, error = %e, "cannot write the pid file");
        }
    }
    Ok(Process { child, pgid, pid_file })
}

impl Process {
    pub(crate) fn describe(&self) -> String {
        self.pgid.map_or_else(|| "running".to_string(), |pid| format!("pid {pid}"))
    }

    /// Waits for the leader to exit, then kills what is left of its group.
    /// Cancel-safe: dropping the future leaves the process running.
    pub(crate) async fn wait(&mut self) -> Exit {
        let status = self.child.wait().await;
        self.finish();
        match status {
            Ok(status) => Exit::from_code_or_signal(status.code().map(i64::from), status.signal()),
            Err(e) => Exit::failed(format!("lost the process: {e}")),
        }
    }

    /// SIGTERM to the group; SIGKILL if the leader is still there after `grace`.
    pub(crate) async fn stop(mut self, grace: Duration) -> Exit {
        self.signal(Signal::SIGTERM);
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            tracing::info!(pid = ?self.pgid, ?grace, "still running after the grace: SIGKILL");
            self.signal(Signal::SIGKILL);
        }
        self.wait().await
    }

    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            // ESRCH (the group is already gone) is the expected outcome of a
            // kill after exit.
            let _ = killpg(pgid, signal);
        }
    }

    /// The leader has exited: nothing it spawned may outlive it. The group id
    /// is not reused while any member is alive, so this reaches only them.
    fn finish(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

fn open_log(path: &Path) -> std::io::Result<File> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        std::fs::rename(path, path.with_extension("log.1"))?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Fields of `/proc/<pid>/stat` from the third (the state) on. The command
/// name (field 2) may hold spaces and parentheses: count from the last ')'.
fn proc_stat(pid: Pid) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().map(str::to_string).collect())
}

/// The process's start time in clock ticks since boot (field 22): with the
/// pid it names one process, even after the pid is reused.
fn proc_start_time(pid: Pid) -> Option<u64> {
    proc_stat(pid)?.get(19)?.parse().ok()
}

/// Kills the process groups that a previous agent on this data dir left
/// running (it crashed or was SIGKILLed), found by their pid files.
pub(crate) fn reap_orphans(workloads_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(workloads_dir) else { return };
    for entry in entries.flatten() {
        let pid_file = entry.path().join("pid");
        let Ok(text) = std::fs::read_to_string(&pid_file) else { continue };
        let mut fields = text.split_whitespace();
        let pid = fields.next().and_then(|f| f.parse::<i32>().ok()).map(Pid::from_raw);
        let start = fields.next().and_then(|f| f.parse::<u64>().ok());
        let dir_name = entry.file_name().to_string_lossy().into_owned();
        if let (Some(pgid), Some(start)) = (pid, start) {
            if proc_start_time(pgid) == Some(start) || group_is_ours(pgid, &dir_name) {
                tracing::warn!(%pgid, dir = %entry.path().display(), "killing a workload left by a previous agent");
                let _ = killpg(pgid, Signal::SIGKILL);
            }
        }
        let _ = std::fs::remove_file(&pid_file);
    }
}

/// The leader is gone but members of its group may live on. Its number may
/// since have been reused for an unrelated group, so a member must also
/// carry the replica's environment (`SHOAL_WORKLOAD`, `SHOAL_REPLICA`).
fn group_is_ours(pgid: Pid, dir_name: &str) -> bool {
    let Some((workload, replica)) = dir_name.rsplit_once('-') else { return false };
    let markers = [format!("SHOAL_WORKLOAD={workload}"), format!("SHOAL_REPLICA={replica}")];
    let Ok(procs) = std::fs::read_dir("/proc") else { return false };
    procs.flatten().filter_map(|p| p.file_name().to_str()?.parse::<i32>().ok()).map(Pid::from_raw).any(|pid| {
        let in_group = proc_stat(pid).and_then(|f| f.get(2)?.parse::<i32>().ok()) == Some(pgid.as_raw());
        in_group
            && std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                let vars: Vec<&[u8]> = env.split(|&b| b == 0).collect();
                markers.iter().all(|m| vars.contains(&m.as_bytes()))
            })
    })
}
