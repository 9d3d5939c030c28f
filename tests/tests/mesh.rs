//! Five real agents on loopback: join through one bootstrap, `kill -9`,
//! restart from the data dir, SIGTERM.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use shoal_protocol::{Config, State};
use shoal_tests::{Agent, count_in, new_key, state_of, test_dir, wait_until};

/// The longest a crash may take to be seen Dead by everyone with the local
/// profile at N=5: a full probe round over the others, the probe timeout,
/// and the longest suspicion (`Config::suspicion_bounds`), plus slack for a
/// loaded CI machine.
fn suspicion_bound() -> Duration {
    let c = Config::local();
    let round = c.probe_interval * 5;
    let (_, suspicion) = c.suspicion_bounds(5);
    round + c.probe_timeout + suspicion + Duration::from_secs(3)
}

#[test]
fn five_agents_join_crash_restart_and_leave() -> anyhow::Result<()> {
    let dir = test_dir("mesh");
    let key = vec!["--cluster-key".to_string(), new_key(), "--no-mdns".into()];
    let bootstrap = Agent::start(&dir, "node-0", &key)?;
    let mut agents = vec![bootstrap];
    for i in 1..5 {
        let args = [key.clone(), agents[0].join_arg()].concat();
        agents.push(Agent::start(&dir, &format!("node-{i}"), &args)?);
    }

    let took = wait_until(Duration::from_secs(30), "all 5 list 5 alive", || {
        agents.iter().all(|a| count_in(a, State::Alive) == Some(5))
    })
    .map_err(|e| e.context(agents[0].log_tail()))?;
    println!("5 agents converged in {took:?}");

    // kill -9 one: everyone else sees it Dead within the suspicion bound.
    let old_generation = state_of(&agents[0], "node-4").map(|m| m.generation).unwrap_or(0);
    agents[4].kill9();
    let others = &agents[..4];
    let took = wait_until(suspicion_bound(), "all others see node-4 dead", || {
        others.iter().all(|a| state_of(a, "node-4").is_some_and(|m| m.state == State::Dead))
    })
    .map_err(|e| e.context(agents[0].log_tail()))?;
    println!("kill -9 seen Dead everywhere after {took:?} (bound {:?})", suspicion_bound());
    // Its host stayed up, so the kernel answered the first probe with "port
    // unreachable", and that probe ended at once instead of a period later.
    let ended_early: f64 = others.iter().filter_map(|a| a.metric("shoal_probes_unreachable_total")).sum();
    assert!(ended_early >= 1.0, "no probe of node-4 ended on a port unreachable");

    // Restart it with its data dir: same identity, higher generation, alive everywhere.
    let old_id = state_of(&agents[0], "node-4").map(|m| m.id).unwrap_or_default();
    agents[4].spawn()?;
    let took = wait_until(Duration::from_secs(30), "node-4 alive again everywhere", || {
        agents
            .iter()
            .all(|a| state_of(a, "node-4").is_some_and(|m| m.state == State::Alive && m.generation > old_generation))
            && agents.iter().all(|a| count_in(a, State::Alive) == Some(5))
    })
    .map_err(|e| e.context(agents[4].log_tail()))?;
    let restarted = state_of(&agents[1], "node-4").expect("known");
    assert_eq!(restarted.id, old_id, "a restart keeps the identity");
    println!("restart seen alive everywhere after {took:?} (generation {})", restarted.generation);

    // SIGTERM another: it exits within the bound, and the others see Left.
    let status = agents[3].sigterm(Duration::from_secs(10))?;
    assert!(status.success(), "SIGTERM exits cleanly, got {status}");
    let rest = [&agents[0], &agents[1], &agents[2], &agents[4]];
    // Gossip carries the leave to most members at once; anti-entropy
    // guarantees the rest within a push-pull interval.
    let leave_bound = Config::local().push_pull_interval + Duration::from_secs(10);
    let took = wait_until(leave_bound, "all others see node-3 left", || {
        rest.iter().all(|a| state_of(a, "node-3").is_some_and(|m| m.state == State::Left))
    })
    .map_err(|e| e.context(agents[3].log_tail()))?;
    println!("SIGTERM seen Left everywhere after {took:?}");
    Ok(())
}
