//! Network coordinates on real agents: three agents on loopback learn each
//! other's coordinates from their probes' acks; `GET /v1/coordinates`,
//! `shoal rtt` and the RTT column of `shoal members` read them.

use std::process::Command;
use std::time::Duration;

use shoal_tests::{Agent, new_key, shoal_bin, test_dir, wait_until};

fn shoal(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let output = Command::new(shoal_bin()).args(args).output()?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok((output.status.success(), text(&output.stdout), text(&output.stderr)))
}

#[test]
fn agents_estimate_round_trips_from_coordinates() -> anyhow::Result<()> {
    let dir = test_dir("coordinates");
    let key = vec!["--cluster-key".to_string(), new_key(), "--no-mdns".into()];
    let first = Agent::start(&dir, "node-0", &key)?;
    let mut agents = vec![first];
    for i in 1..3 {
        let args = [key.clone(), agents[0].join_arg()].concat();
        agents.push(Agent::start(&dir, &format!("node-{i}"), &args)?);
    }
    // node-0 holds a coordinate for both others once it has probed each
    // (the `local` profile probes every second, and young agents share
    // their coordinate in every ack).
    wait_until(Duration::from_secs(30), "node-0 holds everyone's coordinate", || {
        agents[0].client().coordinates().is_ok_and(|view| {
            view.members.len() == 3 && view.members.iter().all(|m| m.coordinate.is_some() && m.rtt_ms.is_some())
        })
    })
    .map_err(|e| e.context(agents[0].log_tail()))?;
    let view = agents[0].client().coordinates()?;
    assert_eq!(view.coordinate.vec.len(), 8);
    for member in &view.members {
        let rtt = member.rtt_ms.unwrap_or(f64::INFINITY);
        assert!((0.0..100.0).contains(&rtt), "{}: {rtt} ms on loopback", member.name);
    }

    let api = agents[0].api.to_string();
    let (ok, out, err) = shoal(&["rtt", "node-1", "node-2", "--api", &api])?;
    assert!(ok, "{err}");
    assert!(out.starts_with("estimated rtt from node-1 to node-2: "), "{out}");
    let (ok, out, err) = shoal(&["rtt", "node-1", "--api", &api])?;
    assert!(ok, "{err}");
    assert!(out.starts_with("estimated rtt from node-1 to node-0: "), "{out}");
    let (ok, _, err) = shoal(&["rtt", "nobody", "--api", &api])?;
    assert!(!ok && err.contains("no live member named `nobody`"), "{err}");

    let (ok, out, err) = shoal(&["members", "--api", &api])?;
    assert!(ok, "{err}");
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header.get(3), Some(&"RTT"), "{out}");
    assert!(out.lines().skip(1).all(|line| line.split_whitespace().nth(3).is_some_and(|c| c.ends_with("ms"))), "{out}");
    Ok(())
}
