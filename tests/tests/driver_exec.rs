//! The exec driver through the supervisor: environment, logs, restarts with
//! backoff, graceful and forced stops, spec changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shoal_node::driver::{ReplicaState, ReplicaStatus, Supervisor, SupervisorConfig};
use shoal_protocol::{Driver, Resources, RestartMode, RestartPolicy, WorkloadSpec};
use shoal_tests::test_dir;

mod driver_support;
use driver_support::wait_status;

fn supervisor(dir: &Path, grace: Duration) -> Supervisor {
    let mut config = SupervisorConfig::new(dir, "node-a");
    config.stop_grace = grace;
    Supervisor::new(config)
}

/// A workload running `sh -c script`.
fn shell(name: &str, script: &str, mode: RestartMode) -> WorkloadSpec {
    WorkloadSpec {
        name: name.into(),
        replicas: 1,
        resources: Resources::default(),
        constraints: BTreeMap::new(),
        driver: Driver::Exec {
            command: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: BTreeMap::new(),
            workdir: None,
        },
        restart: RestartPolicy { mode, backoff_initial_ms: 100, backoff_max_ms: 400 },
    }
}

fn replica_dir(data: &Path, name: &str, replica: u16) -> PathBuf {
    data.join("workloads").join(format!("{name}-{replica}"))
}

/// Waits until the file holds at least `lines` whole lines.
async fn wait_lines(path: &Path, lines: usize, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) if text.ends_with('\n') && text.lines().count() >= lines => return Ok(text),
            _ if Instant::now() > deadline => bail!("{} never written", path.display()),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Gone, or a zombie nobody reaped yet: either way, not running.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(false)
}

fn pid_of(status: &ReplicaStatus) -> anyhow::Result<u32> {
    status.detail.strip_prefix("pid ").context("detail names the pid")?.parse().context("a pid")
}

#[tokio::test]
async fn env_and_logs_reach_the_workload() -> anyhow::Result<()> {
    let data = test_dir("driver-env");
    let sup = supervisor(&data, Duration::from_secs(5));
    let mut spec = shell(
        "envy",
        "echo out-line; echo err-line >&2; echo \"$SHOAL_WORKLOAD $SHOAL_REPLICA $SHOAL_NODE $GREETING\" > env.txt; exec sleep 60",
        RestartMode::Always,
    );
    if let Driver::Exec { env, .. } = &mut spec.driver {
        env.insert("GREETING".into(), "hello".into());
    }
    sup.ensure_running(&spec, 3).await;
    let status = wait_status(&sup, "envy", 3, Duration::from_secs(10), |s| s.state == ReplicaState::Running).await?;
    let dir = replica_dir(&data, "envy", 3);
    assert_eq!(wait_lines(&dir.join("env.txt"), 1, Duration::from_secs(10)).await?, "envy 3 node-a hello\n");
    assert_eq!(std::fs::read_to_string(dir.join("stdout.log"))?, "out-line\n");
    assert_eq!(std::fs::read_to_string(dir.join("stderr.log"))?, "err-line\n");
    assert_eq!(status.restarts, 0);
    sup.stop_all().await;
    assert!(sup.statuses().is_empty());
    Ok(())
}

#[tokio::test]
async fn on_failure_restarts_with_growing_backoff() -> anyhow::Result<()> {
    let data = test_dir("driver-backoff");
    let sup = supervisor(&data, Duration::from_secs(5));
    // Each start appends its time (ms since the epoch) before failing.
    let spec = shell("crashy", "date +%s%3N >> starts.txt; exit 3", RestartMode::OnFailure);
    sup.ensure_running(&spec, 0).await;
    let status =
        wait_status(&sup, "crashy", 0, Duration::from_secs(20), |s| s.restarts >= 4 && s.state == ReplicaState::Failed)
            .await?;
    assert!(status.detail.starts_with("exited with status 3; restart in "), "{status:?}");
    sup.stop("crashy", 0).await;
    assert_eq!(sup.status("crashy", 0), None);
    let starts: Vec<u64> = std::fs::read_to_string(replica_dir(&data, "crashy", 0).join("starts.txt"))?
        .lines()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    assert!(starts.len() >= 5, "{starts:?}");
    // Delays 100, 200, 400, 400 ms (the ceiling): gaps are at least that.
    for (gap, min) in starts.windows(2).map(|w| w[1] - w[0]).zip([100, 200, 400, 400]) {
        assert!(gap >= min, "gap {gap} ms < backoff {min} ms: {starts:?}");
    }
    Ok(())
}

#[tokio::test]
async fn never_and_a_clean_exit_under_on_failure_stay_down() -> anyhow::Result<()> {
    let data = test_dir("driver-never");
    let sup = supervisor(&data, Duration::from_secs(5));
    sup.ensure_running(&shell("once", "exit 3", RestartMode::Never), 0).await;
    sup.ensure_running(&shell("clean", "exit 0", RestartMode::OnFailure), 0).await;
    let failed = wait_status(&sup, "once", 0, Duration::from_secs(10), |s| s.state == ReplicaState::Failed).await?;
    assert_eq!(failed.detail, "exited with status 3");
    // Down but not stopped on purpose: `Failed`, saying how it ended.
    let clean = wait_status(&sup, "clean", 0, Duration::from_secs(10), |s| s.state == ReplicaState::Failed).await?;
    assert_eq!(clean.detail, "exited with status 0");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Still down, never restarted; ensuring the same spec again changes nothing.
    sup.ensure_running(&shell("once", "exit 3", RestartMode::Never), 0).await;
    assert_eq!(sup.status("once", 0), Some(failed));
    assert_eq!(sup.status("clean", 0), Some(clean));
    // A new policy alone (same command) brings the failed one back.
    sup.ensure_running(&shell("once", "exit 3", RestartMode::OnFailure), 0).await;
    wait_status(&sup, "once", 0, Duration::from_secs(10), |s| s.restarts >= 2).await?;
    sup.stop_all().await;
    Ok(())
}

#[tokio::test]
async fn a_missing_command_is_a_failed_status() -> anyhow::Result<()> {
    let data = test_dir("driver-missing");
    let sup = supervisor(&data, Duration::from_secs(5));
    let mut spec = shell("ghost", "", RestartMode::Never);
    spec.driver =
        Driver::Exec { command: "shoal-no-such-program".into(), args: vec![], env: BTreeMap::new(), workdir: None };
    sup.ensure_running(&spec, 0).await;
    let status = wait_status(&sup, "ghost", 0, Duration::from_secs(10), |s| s.state == ReplicaState::Failed).await?;
    assert!(status.detail.contains("cannot start `shoal-no-such-program`"), "{}", status.detail);
    assert!(status.detail.contains("PATH"), "{}", status.detail);
    sup.stop_all().await;
    Ok(())
}

#[tokio::test]
async fn stop_sends_sigterm_first() -> anyhow::Result<()> {
    let data = test_dir("driver-term");
    let sup = supervisor(&data, Duration::from_secs(20));
    let spec = shell(
        "polite",
        "trap 'echo term > term.txt; exit 0' TERM; echo ready > ready.txt; while :; do sleep 0.05; done",
        RestartMode::Always,
    );
    sup.ensure_running(&spec, 0).await;
    let pid =
        pid_of(&wait_status(&sup, "polite", 0, Duration::from_secs(10), |s| s.state == ReplicaState::Running).await?)?;
    // The trap is set once the shell says so.
    wait_lines(&replica_dir(&data, "polite", 0).join("ready.txt"), 1, Duration::from_secs(10)).await?;
    let before = Instant::now();
    sup.stop("polite", 0).await;
    assert!(before.elapsed() < Duration::from_secs(10), "took the SIGTERM, well before the 20 s grace");
    assert_eq!(std::fs::read_to_string(replica_dir(&data, "polite", 0).join("term.txt"))?, "term\n");
    assert!(!running(pid));
    Ok(())
}

#[tokio::test]
async fn sigterm_ignored_means_sigkill_after_the_grace_and_no_orphans() -> anyhow::Result<()> {
    let data = test_dir("driver-kill");
    let grace = Duration::from_millis(500);
    let sup = supervisor(&data, grace);
    // The background child inherits the ignored SIGTERM too.
    let spec = shell("stubborn", "trap '' TERM; sleep 600 & echo $! > child.txt; wait", RestartMode::Always);
    sup.ensure_running(&spec, 0).await;
    let pid = pid_of(
        &wait_status(&sup, "stubborn", 0, Duration::from_secs(10), |s| s.state == ReplicaState::Running).await?,
    )?;
    let child: u32 = wait_lines(&replica_dir(&data, "stubborn", 0).join("child.txt"), 1, Duration::from_secs(10))
        .await?
        .trim()
        .parse()?;
    assert!(running(pid) && running(child));
    let before = Instant::now();
    sup.stop("stubborn", 0).await;
    assert!(before.elapsed() >= grace, "waited the grace before SIGKILL");
    // The child may take a moment to be reaped by init.
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(child) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!running(pid), "leader killed");
    assert!(!running(child), "the group's other process killed too");
    Ok(())
}

#[tokio::test]
async fn a_changed_spec_replaces_the_process_and_the_same_spec_does_not() -> anyhow::Result<()> {
    let data = test_dir("driver-replace");
    let sup = supervisor(&data, Duration::from_secs(5));
    let spec =
        |version: &str| shell("web", &format!("echo {version} >> versions.txt; exec sleep 60"), RestartMode::Always);
    sup.ensure_running(&spec("v1"), 0).await;
    let first =
        pid_of(&wait_status(&sup, "web", 0, Duration::from_secs(10), |s| s.state == ReplicaState::Running).await?)?;
    // Same spec (even with another replica count): nothing happens.
    let mut same = spec("v1");
    same.replicas = 5;
    sup.ensure_running(&same, 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pid_of(&sup.status("web", 0).context("status")?)?, first);

    sup.ensure_running(&spec("v2"), 0).await;
    let second = pid_of(
        &wait_status(&sup, "web", 0, Duration::from_secs(10), |s| {
            s.state == ReplicaState::Running && s.detail != format!("pid {first}")
        })
        .await?,
    )?;
    assert_ne!(first, second);
    assert!(!running(first), "the old process is gone");
    let versions = wait_lines(&replica_dir(&data, "web", 0).join("versions.txt"), 2, Duration::from_secs(5)).await?;
    assert_eq!(versions, "v1\nv2\n");
    sup.stop_all().await;
    assert!(!running(second));
    Ok(())
}

#[tokio::test]
async fn a_new_supervisor_kills_what_a_dropped_one_left() -> anyhow::Result<()> {
    let data = test_dir("driver-orphans");
    let spec = shell("left", "sleep 600 & echo $! > child.txt; wait", RestartMode::Always);
    let child: u32 = {
        let sup = supervisor(&data, Duration::from_secs(5));
        sup.ensure_running(&spec, 0).await;
        wait_status(&sup, "left", 0, Duration::from_secs(10), |s| s.state == ReplicaState::Running).await?;
        let child = wait_lines(&replica_dir(&data, "left", 0).join("child.txt"), 1, Duration::from_secs(10)).await?;
        // Dropped without stop_all, as when an agent dies: only the leader
        // is killed (kill-on-drop); the background child survives for now.
        child.trim().parse()?
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The leader is dead: the child is found by its group and environment.
    let _sup = supervisor(&data, Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(child) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!running(child), "the orphaned child was killed");
    Ok(())
}
