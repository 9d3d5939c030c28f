//! Key rotation without downtime: a mesh moves from key A to key B with
//! `shoal keys install|use|remove` through one agent, nobody is ever cut
//! off, nothing sealed under A arrives after it is removed, a restart keeps
//! the rotated keyring (not the `--cluster-key` flag), and an agent holding
//! neither key never gets in.

use std::time::Duration;

use shoal_node::client::Client;
use shoal_node::crypto::ClusterKey;
use shoal_protocol::State;
use shoal_tests::{Agent, count_in, new_key, state_of, test_dir, wait_until};

/// Datagrams and frames an agent refused, over every reason.
fn refused(agent: &Agent) -> f64 {
    ["datagrams", "frames"]
        .iter()
        .flat_map(|what| {
            ["malformed", "unknown_key", "forged"].map(|reason| {
                agent.metric(&format!("shoal_transport_{what}_rejected_total{{reason=\"{reason}\"}}")).unwrap_or(0.0)
            })
        })
        .sum()
}

fn suspicions_or_deaths(agent: &Agent) -> usize {
    agent.members().map_or(usize::MAX, |m| m.iter().filter(|m| m.state != State::Alive).count())
}

#[test]
fn a_mesh_rotates_its_key_with_no_agent_cut_off() -> anyhow::Result<()> {
    let dir = test_dir("keys");
    let old = new_key();
    let keyed = vec!["--cluster-key".to_string(), old.clone(), "--no-mdns".into()];
    let a = Agent::start(&dir, "a", &keyed)?;
    let mut agents = vec![a];
    for name in ["b", "c"] {
        let join = agents[0].join_arg();
        agents.push(Agent::start(&dir, name, &[keyed.clone(), join].concat())?);
    }
    let all_alive = |agents: &[Agent], n| agents.iter().all(|x| count_in(x, State::Alive) == Some(n));
    wait_until(Duration::from_secs(30), "3 alive everywhere", || all_alive(&agents, 3))
        .map_err(|e| e.context(agents[0].log_tail()))?;

    let new = ClusterKey::generate();
    let client = Client::new(agents[1].api);
    // `use` before `install` would cut everyone off: refused, naming them.
    let early = client.change_keys("use", &new.to_hex()).expect_err("use of a key nobody holds is refused");
    assert!(early.to_string().contains("not installed"), "{early}");

    let installed = client.change_keys("install", &new.to_hex())?;
    assert_eq!((installed.agents, installed.ok), (3, 3), "{installed:?}");
    let used = Client::new(agents[2].api).change_keys("use", &new.id().to_string())?;
    assert_eq!(used.keys[0].id, new.id().to_string());
    assert_eq!(used.keys[0].primary, 3, "every agent seals with the new key: {used:?}");
    let old_id = ClusterKey::parse(&old)?.id().to_string();
    let still_primary = client.change_keys("remove", &new.to_hex()).expect_err("the primary cannot be removed");
    assert!(still_primary.to_string().contains("primary"), "{still_primary}");
    let removed = client.change_keys("remove", &old_id)?;
    assert_eq!((removed.ok, removed.keys.len()), (3, 1), "{removed:?}");

    // Nothing under the old key arrives after it is removed, and nobody was
    // ever suspected during the rotation.
    let before: Vec<f64> = agents.iter().map(refused).collect();
    std::thread::sleep(Duration::from_secs(4));
    let after: Vec<f64> = agents.iter().map(refused).collect();
    assert_eq!(before, after, "datagrams refused after the rotation");
    assert_eq!(before, vec![0.0; 3], "nothing was refused during it");
    assert!(agents.iter().all(|x| suspicions_or_deaths(x) == 0), "someone was suspected");

    // A restart keeps the rotated keyring, whatever --cluster-key says.
    agents[2].kill9();
    agents[2].spawn()?;
    wait_until(Duration::from_secs(30), "the restarted agent is back", || {
        agents.iter().all(|x| state_of(x, "c").is_some_and(|m| m.state == State::Alive && m.generation == 2))
    })
    .map_err(|e| e.context(agents[2].log_tail()))?;
    assert_eq!(agents[2].client().self_info()?.keys, vec![new.id().to_string()]);

    // An agent holding only the old key never gets in; its traffic is refused.
    let join = agents[0].join_arg();
    let stranger = Agent::start(&dir, "stranger", &[keyed, join].concat())?;
    wait_until(Duration::from_secs(20), "the stranger's traffic is refused", || refused(&agents[0]) >= 1.0)?;
    std::thread::sleep(Duration::from_secs(2));
    assert!(agents.iter().all(|x| state_of(x, "stranger").is_none()), "the stranger got in");
    assert_eq!(stranger.members().map(|m| m.len()), Some(1), "the stranger learnt nothing");
    Ok(())
}
