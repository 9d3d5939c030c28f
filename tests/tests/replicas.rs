//! Workloads really run: four agents on loopback, a spec with 2 replicas
//! (exec driver, `sleep`) submitted to one of them. Each replica runs once,
//! on 2 agents; a `kill -9` of an owner gets its replica running on another
//! agent within the suspicion bound; a graceful stop of every agent stops
//! every replica, and their restart runs the workload again from the kept
//! catalog; a delete stops every copy. Replicas are found as processes (by
//! their working directory in an agent's data dir, and the `SHOAL_*`
//! environment the driver gives them), and through each agent's API.
#![allow(clippy::print_stdout)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_protocol::{Config, State, WorkloadConfig};
use shoal_tests::{Agent, count_in, kill_replicas, new_key, replica_processes, shoal_bin};
use shoal_tests::{test_dir, wait_until};

const NAME: &str = "sleeper";
/// Sleeps; a graceful stop (SIGTERM, not SIGKILL) leaves a `stopped` file
/// in its working directory, after 4 s of "shutting down": longer than the
/// leave itself may take, well within the driver's 10 s grace, so an agent
/// that exits before its replicas' grace is over fails the test.
const SPEC: &str = r#"name = "sleeper"
replicas = 2
[resources]
cpu = 100
memory = "16MiB"
[driver]
kind = "exec"
command = "sh"
args = ["-c", "trap 'sleep 4; echo $SHOAL_REPLICA > stopped; exit 0' TERM; sleep 3600 & wait"]
[restart]
policy = "always"
"#;
const AGENTS: u32 = 4;

/// As in mesh.rs: the longest a crash may take to be seen Dead by everyone
/// with the local profile (a full probe round over the others, the probe
/// timeout, the longest suspicion), plus slack for a loaded machine.
fn suspicion_bound() -> Duration {
    let c = Config::local();
    let round = c.probe_interval * AGENTS;
    let (_, suspicion) = c.suspicion_bounds(AGENTS as usize);
    round + c.probe_timeout + suspicion + Duration::from_secs(3)
}

/// How long a replica's status may take to reach every agent: gossip
/// usually carries it within a second, but with few members an update can
/// miss one, which then learns it by anti-entropy (every push-pull
/// interval), plus slack for a loaded machine.
fn status_bound() -> Duration {
    Config::local().push_pull_interval + Duration::from_secs(10)
}

/// `shoal ARGS --api API`, which must succeed; its stdout.
fn shoal(agent: &Agent, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(shoal_bin()).args(args).args(["--api", &agent.api.to_string()]).output()?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    anyhow::ensure!(output.status.success(), "shoal {args:?}: {}", text(&output.stderr));
    Ok(text(&output.stdout))
}

/// The replicas of the workload that have processes (a replica is a shell
/// and its `sleep`), as (agent name, replica), of `agents`.
fn processes<'a>(agents: impl IntoIterator<Item = &'a Agent>) -> BTreeSet<(String, u16)> {
    agents
        .into_iter()
        .flat_map(|a| replica_processes(&a.data_dir).into_iter().map(|p| (a.name.clone(), p)))
        .filter(|(_, p)| p.workload == NAME)
        .map(|(agent, p)| (agent, p.replica))
        .collect()
}

/// Replicas 0 and 1 each run once, on two distinct agents.
fn runs_exactly_twice(found: &BTreeSet<(String, u16)>) -> bool {
    let mut replicas: Vec<u16> = found.iter().map(|(_, r)| *r).collect();
    replicas.sort_unstable();
    let nodes: BTreeSet<&String> = found.iter().map(|(node, _)| node).collect();
    replicas == [0, 1] && nodes.len() == 2
}

/// The `stopped` files replicas left in `agent`'s data dir (graceful stops).
fn stopped_files(agent: &Agent) -> Vec<std::path::PathBuf> {
    (0..2).map(|r| agent.data_dir.join("workloads").join(format!("{NAME}-{r}")).join("stopped")).collect()
}

/// How many replicas `agent`'s API says run (`None`: no answer, or no such workload).
fn running(agent: &Agent) -> Option<u32> {
    agent.client().workloads().ok()?.into_iter().find(|w| w.name == NAME).map(|w| w.running)
}

/// Whether the API shows no replica placed on, or run by, `gone`.
fn nothing_on(agent: &Agent, gone: &str) -> bool {
    agent.client().workloads().is_ok_and(|ws| {
        ws.iter().all(|w| {
            w.placement
                .iter()
                .all(|r| r.node.as_deref() != Some(gone) && !r.elsewhere.iter().any(|e| e.starts_with(gone)))
        })
    })
}

/// The replicas `agent` knows any node reports, in any state but stopped.
fn reported(agent: &Agent) -> Option<f64> {
    let states = ["starting", "running", "failed"];
    states.iter().map(|s| agent.metric(&format!("shoal_replicas{{state=\"{s}\"}}"))).sum()
}

fn describe(agents: &[Agent]) -> String {
    let api: Vec<String> = agents.iter().map(|a| format!("{}: {:?}", a.name, a.client().workloads())).collect();
    format!("processes {:?}\n{}", processes(agents), api.join("\n"))
}

#[test]
fn replicas_run_once_move_on_a_crash_survive_a_restart_and_stop_on_delete() -> anyhow::Result<()> {
    let dir = test_dir("replicas");
    let key = vec!["--cluster-key".to_string(), new_key(), "--no-mdns".into()];
    let mut agents = vec![Agent::start(&dir, "a", &key)?];
    for name in ["b", "c", "d"] {
        let args = [key.clone(), agents[0].join_arg()].concat();
        agents.push(Agent::start(&dir, name, &args)?);
    }
    let all_alive = |agents: &[Agent]| agents.iter().all(|x| count_in(x, State::Alive) == Some(agents.len()));
    wait_until(Duration::from_secs(30), "4 alive everywhere", || all_alive(&agents))
        .map_err(|e| e.context(agents[0].log_tail()))?;
    // Every agent has settled (takes work) `settle_time` after it saw the
    // others alive: submitting earlier would move replicas as they settle.
    std::thread::sleep(WorkloadConfig::local().settle_time + Duration::from_secs(1));

    // (a) Submitted to one agent: runs on exactly two, each replica once,
    // and every agent's API counts 2 running.
    let spec = dir.join("sleeper.toml");
    std::fs::write(&spec, SPEC)?;
    let submitted = Instant::now();
    shoal(&agents[0], &["submit", &spec.display().to_string()])?;
    let took = wait_until(Duration::from_secs(30), "2 replicas run, each once, on 2 agents", || {
        runs_exactly_twice(&processes(&agents))
    })
    .map_err(|e| e.context(describe(&agents)))?;
    println!("submit to both replicas running: {took:?}");
    wait_until(status_bound(), "every agent's API counts 2 running", || agents.iter().all(|x| running(x) == Some(2)))
        .map_err(|e| e.context(describe(&agents)))?;
    println!("submit to every agent's API showing 2 running: {:?}", submitted.elapsed());
    // And it stays so: nothing starts a third copy.
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_secs(3) {
        let found = processes(&agents);
        assert!(runs_exactly_twice(&found), "{found:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let table = shoal(&agents[3], &["workloads"])?;
    let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert!(row.len() == 5 && row[..3] == [NAME, "2", "2"] && row[4] == "running", "{table}");

    // (b) kill -9 an agent running a replica (its orphaned `sleep` goes too):
    // the replica runs on another agent within the suspicion bound.
    let found = processes(&agents);
    let (owner, moved) = found.first().cloned().expect("an owner");
    let victim = agents.iter().position(|a| a.name == owner).expect("an agent");
    agents[victim].kill9();
    let crashed = Instant::now();
    kill_replicas(&agents[victim].data_dir);
    let gone = agents[victim].name.clone();
    let survivors: Vec<&Agent> = agents.iter().filter(|a| a.name != gone).collect();
    let bound = suspicion_bound() + Duration::from_secs(5);
    wait_until(bound, "the replica runs on another agent", || {
        runs_exactly_twice(&processes(survivors.iter().copied()))
    })
    .map_err(|e| e.context(describe(&agents)))?;
    let took = crashed.elapsed();
    println!("kill -9 of {gone} (running replica {moved}) to it running elsewhere: {took:?} (bound {bound:?})");
    wait_until(status_bound(), "every survivor's API counts 2 running, none on the dead agent", || {
        survivors.iter().all(|x| running(x) == Some(2) && nothing_on(x, &gone))
    })
    .map_err(|e| e.context(describe(&agents)))?;
    println!("kill -9 to every survivor's API showing it: {:?}", crashed.elapsed());

    // (d) Every agent stops gracefully: each stops its replicas (SIGTERM)
    // as it leaves.
    let owners = processes(&agents);
    clear_stopped_files(&agents);
    for agent in agents.iter().filter(|a| a.name != gone) {
        agent.send_sigterm()?;
    }
    for agent in agents.iter_mut().filter(|a| a.name != gone) {
        let status = agent.wait_exit(Duration::from_secs(15))?;
        assert!(status.success(), "{} exits cleanly on SIGTERM: {status}\n{}", agent.name, agent.log_tail());
    }
    let found = processes(&agents);
    assert!(found.is_empty(), "replicas outlived their agents' graceful stop: {found:?}");
    assert_stopped_gracefully(&agents, &owners);
    // They start again from their data dirs: the catalog is kept and the
    // workload runs again on 2 agents.
    for agent in &mut agents {
        agent.spawn()?;
    }
    let restarted = Instant::now();
    wait_until(Duration::from_secs(30), "4 alive again everywhere", || all_alive(&agents))
        .map_err(|e| e.context(agents[0].log_tail()))?;
    for agent in &agents {
        let names: Vec<String> = agent.client().workloads()?.into_iter().map(|w| w.name).collect();
        assert_eq!(names, [NAME], "{} lists its catalog after the restart", agent.name);
    }
    wait_until(Duration::from_secs(30), "after the restart, 2 replicas run, each once", || {
        runs_exactly_twice(&processes(&agents))
    })
    .map_err(|e| e.context(describe(&agents)))?;
    println!("restart of every agent to 2 replicas running: {:?}", restarted.elapsed());
    wait_until(status_bound(), "after the restart, every agent's API counts 2 running", || {
        agents.iter().all(|x| running(x) == Some(2))
    })
    .map_err(|e| e.context(describe(&agents)))?;

    // (c) Deleted through another agent: every copy stops (gracefully), and
    // no agent knows of any replica any more.
    let owners = processes(&agents);
    clear_stopped_files(&agents);
    shoal(&agents[2], &["delete", NAME])?;
    let deleted = Instant::now();
    wait_until(Duration::from_secs(15), "no copy runs", || processes(&agents).is_empty())
        .map_err(|e| e.context(describe(&agents)))?;
    println!("delete to every copy stopped: {:?}", deleted.elapsed());
    wait_until(status_bound(), "no agent lists the workload or knows of a replica", || {
        agents.iter().all(|x| x.client().workloads().is_ok_and(|w| w.is_empty()) && reported(x) == Some(0.0))
    })
    .map_err(|e| e.context(describe(&agents)))?;
    println!("delete to every agent forgetting every replica: {:?}", deleted.elapsed());
    assert_stopped_gracefully(&agents, &owners);
    assert_no_orphans(&dir);
    Ok(())
}

fn clear_stopped_files(agents: &[Agent]) {
    for file in agents.iter().flat_map(stopped_files) {
        let _ = std::fs::remove_file(file);
    }
}

/// Each of `owners`' replicas got a SIGTERM (and wrote its `stopped` file).
fn assert_stopped_gracefully(agents: &[Agent], owners: &BTreeSet<(String, u16)>) {
    for (owner, replica) in owners {
        let agent = agents.iter().find(|a| &a.name == owner).expect("an agent");
        let file = &stopped_files(agent)[usize::from(*replica)];
        assert!(file.exists(), "{owner} stopped replica {replica} gracefully (no {})", file.display());
    }
}

/// Nothing in the test's folder outlived the test's own checks.
fn assert_no_orphans(dir: &Path) {
    for name in ["a", "b", "c", "d"] {
        let left = replica_processes(&dir.join(name));
        assert!(left.is_empty(), "{name}: {left:?}");
    }
}
