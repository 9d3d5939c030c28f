//! An agent offers only the drivers it is given (`--drivers`): three agents
//! on loopback, one of them `--drivers docker`. An exec workload of 2
//! replicas runs on the other two and never on it; asked for 3, it places 2
//! and `shoal workload` says why in the words of the flag.
#![allow(clippy::print_stdout)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_protocol::{State, WorkloadConfig};
use shoal_tests::{Agent, count_in, new_key, replica_processes, shoal_bin, test_dir, wait_until};

const NAME: &str = "pinger";

fn spec(replicas: u32) -> String {
    format!(
        "name = \"{NAME}\"\nreplicas = {replicas}\n[resources]\ncpu = 100\nmemory = \"16MiB\"\n\
         [driver]\nkind = \"exec\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n"
    )
}

/// `shoal ARGS --api API`, which must succeed; its stdout.
fn shoal(agent: &Agent, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(shoal_bin()).args(args).args(["--api", &agent.api.to_string()]).output()?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    anyhow::ensure!(output.status.success(), "shoal {args:?}: {}", text(&output.stderr));
    Ok(text(&output.stdout))
}

/// The agents that run a replica of the workload, by name.
fn runners(agents: &[Agent]) -> BTreeSet<String> {
    agents
        .iter()
        .filter(|a| replica_processes(&a.data_dir).iter().any(|p| p.workload == NAME))
        .map(|a| a.name.clone())
        .collect()
}

#[test]
fn an_agent_without_the_exec_driver_never_runs_exec_replicas() -> anyhow::Result<()> {
    let dir = test_dir("drivers");
    let key = vec!["--cluster-key".to_string(), new_key(), "--no-mdns".into()];
    let docker_only = [key.clone(), vec!["--drivers".into(), "docker".into()]].concat();
    let mut agents = vec![Agent::start(&dir, "a", &docker_only)?];
    for name in ["b", "c"] {
        let args = [key.clone(), agents[0].join_arg()].concat();
        agents.push(Agent::start(&dir, name, &args)?);
    }
    wait_until(Duration::from_secs(30), "3 alive everywhere", || {
        agents.iter().all(|x| count_in(x, State::Alive) == Some(agents.len()))
    })
    .map_err(|e| e.context(agents[0].log_tail()))?;
    std::thread::sleep(WorkloadConfig::local().settle_time + Duration::from_secs(1));
    let members = shoal(&agents[1], &["members"])?;
    println!("{members}");

    // Submitted to the docker-only agent itself: it runs on b and c.
    let path = dir.join("pinger.toml");
    std::fs::write(&path, spec(2))?;
    shoal(&agents[0], &["submit", &path.display().to_string()])?;
    let both = BTreeSet::from(["b".to_string(), "c".to_string()]);
    wait_until(Duration::from_secs(30), "the replicas run on b and c", || runners(&agents) == both)
        .map_err(|e| e.context(format!("runners {:?}\n{}", runners(&agents), agents[0].log_tail())))?;
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_secs(3) {
        assert_eq!(runners(&agents), both, "an exec replica ran on the docker-only agent");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Three replicas on distinct nodes: only two agents offer exec.
    std::fs::write(&path, spec(3))?;
    shoal(&agents[1], &["submit", &path.display().to_string()])?;
    let why = "2 of 3 replicas placed: only 2 alive nodes match `constraints` and offer the driver";
    wait_until(Duration::from_secs(10), "every agent says why one replica is unplaced", || {
        agents.iter().all(|a| shoal(a, &["workload", NAME]).is_ok_and(|out| out.contains(why)))
    })
    .map_err(|e| e.context(shoal(&agents[2], &["workload", NAME]).unwrap_or_default()))?;
    assert_eq!(runners(&agents), both, "still nothing on the docker-only agent");
    Ok(())
}
