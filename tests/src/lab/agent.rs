//! One agent process inside its namespace, and the threads that read its
//! log into the shared [`Views`].

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::system::{AgentSpec, System};
use super::view::Views;

/// A running agent. Killed (SIGKILL) on drop.
#[derive(Debug)]
pub struct Agent {
    child: Child,
    /// Its process id (`ip netns exec` execs the agent: the same process).
    pub pid: u32,
    /// When it was started.
    pub started: Instant,
}

impl Agent {
    /// Starts `system`'s agent `index` in namespace `ns`; its output goes to
    /// `log` (appended) and its membership events to `views`.
    pub fn spawn(
        system: &System,
        spec: &AgentSpec,
        ns: &str,
        index: usize,
        log: &Path,
        views: &Views,
    ) -> Result<Agent> {
        std::fs::create_dir_all(&spec.data_dir)?;
        let argv = system.argv(spec);
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let file = Arc::new(Mutex::new(file));
        views.reset(index);
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} in {ns}", argv.join(" ")))?;
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        read_lines(stdout, system, index, &file, views)?;
        read_lines(stderr, system, index, &file, views)?;
        Ok(Agent { pid: child.id(), child, started: Instant::now() })
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = i32::try_from(self.pid).context("pid")?;
        kill(Pid::from_raw(pid), signal).with_context(|| format!("sending {signal} to {}", self.pid))
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM (after SIGCONT, in case it was paused); SIGKILL (on drop) if
    /// it has not exited by `deadline`.
    pub fn stop(mut self, deadline: Instant) {
        let _ = self.signal(Signal::SIGCONT);
        let _ = self.signal(Signal::SIGTERM);
        while Instant::now() < deadline {
            if !self.running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn read_lines(
    stream: impl Read + Send + 'static,
    system: &System,
    index: usize,
    file: &Arc<Mutex<File>>,
    views: &Views,
) -> Result<()> {
    let (system, file, views) = (system.clone(), Arc::clone(file), views.clone());
    std::thread::Builder::new().name(format!("log-a{index}")).stack_size(128 * 1024).spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some((member, seen)) = system.parse_line(&line) {
                views.record(index, &member, seen);
            }
            if let Ok(mut file) = file.lock() {
                let _ = writeln!(file, "{line}");
            }
        }
    })?;
    Ok(())
}
