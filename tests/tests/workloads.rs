//! Workloads through the CLI and the HTTP API, and the catalog across a
//! mesh: submitted to one agent, listed by all, deleted everywhere, and kept
//! when every agent restarts (`kill -9`, same data dirs).
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use shoal_protocol::State;
use shoal_tests::{Agent, count_in, new_key, shoal_bin, test_dir, wait_until};

const WEB: &str = r#"name = "web"
replicas = 2
[resources]
cpu = 250            # millicores
memory = "64MiB"
[driver]
kind = "exec"
command = "sleep"
args = ["3600"]
[restart]
policy = "always"
"#;

/// `shoal ARGS --api API`: (succeeded, stdout, stderr).
fn shoal(api: &Agent, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let output = Command::new(shoal_bin()).args(args).args(["--api", &api.api.to_string()]).output()?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok((output.status.success(), text(&output.stdout), text(&output.stderr)))
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

/// The workload names an agent lists (`None` if its API does not answer).
fn names(agent: &Agent) -> Option<Vec<String>> {
    Some(agent.client().workloads().ok()?.into_iter().map(|w| w.name).collect())
}

/// A raw HTTP call to the agent's API: (status, body).
fn http(agent: &Agent, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let request = ureq::request(method, &format!("http://{}{path}", agent.api));
    let outcome = match body {
        Some(body) => request.set("content-type", "application/json").send_string(body),
        None => request.call(),
    };
    let response = match outcome {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("{method} {path}: {error}"),
    };
    let status = response.status();
    (status, response.into_json().unwrap_or(serde_json::Value::Null))
}

#[test]
fn workloads_through_the_cli_and_the_api() -> anyhow::Result<()> {
    let dir = test_dir("workloads-cli");
    let a = Agent::start(&dir, "a", &["--no-mdns".into()])?;
    wait_until(Duration::from_secs(30), "a answers", || a.members().is_some())?;

    let (ok, out, err) = shoal(&a, &["workloads"])?;
    assert!(ok && out.contains("no workloads"), "{out}{err}");
    let web = write(&dir, "web.toml", WEB)?;
    let (ok, out, err) = shoal(&a, &["submit", &web])?;
    assert!(ok, "{err}");
    assert!(out.contains("workload web submitted") && out.contains("replica 0"), "{out}");
    let (ok, out, _) = shoal(&a, &["submit", &web])?;
    assert!(ok && out.contains("workload web replaced"), "{out}");

    // A bad spec: the file, the field and the fix; nothing is stored.
    let typo = write(&dir, "typo.toml", &WEB.replace("command =", "comand ="))?;
    let (ok, _, err) = shoal(&a, &["submit", &typo])?;
    assert!(!ok && err.contains("typo.toml") && err.contains("`driver.comand`") && err.contains("line 8"), "{err}");
    let memory = write(&dir, "memory.toml", &WEB.replace("\"64MiB\"", "\"lots\"").replace("\"web\"", "\"m\""))?;
    let (ok, _, err) = shoal(&a, &["submit", &memory])?;
    assert!(!ok && err.contains("`resources.memory`") && err.contains("64MiB"), "{err}");
    assert_eq!(names(&a), Some(vec!["web".to_string()]));

    // One agent: a single replica fits (once the agent has settled, 2 s with
    // the local profile), and runs there; the table says so.
    wait_until(Duration::from_secs(15), "a replica of web runs on a", || {
        a.client().workloads().is_ok_and(|w| {
            w[0].placement
                .iter()
                .any(|r| r.node.as_deref() == Some("a") && r.state == shoal_node::view::ReplicaPhase::Running)
        })
    })
    .map_err(|e| e.context(format!("{:?}", a.client().workloads())))?;
    let (ok, out, _) = shoal(&a, &["workloads"])?;
    println!("{out}");
    let row: Vec<&str> = out.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert!(ok && row == ["web", "2", "1", "a", "partly-placed"], "{out}");
    let (ok, out, _) = shoal(&a, &["workloads", "--json"])?;
    let listed: serde_json::Value = serde_json::from_str(&out)?;
    assert!(ok && listed[0]["name"] == "web" && listed[0]["placement"].as_array().map(Vec::len) == Some(2), "{out}");
    let (ok, out, _) = shoal(&a, &["workload", "web"])?;
    assert!(ok && out.contains("250m cpu, 64.0MiB") && out.contains("unplaced:"), "{out}");
    // Events are noticed within about a second.
    wait_until(Duration::from_secs(5), "web's events say it was submitted and placed", || {
        shoal(&a, &["workload", "web"]).is_ok_and(|(_, out, _)| {
            out.contains("recent events") && out.contains("submitted by a") && out.contains("placed on a")
        })
    })
    .map_err(|e| e.context(format!("{:?}", shoal(&a, &["workload", "web"]))))?;
    assert!(out.contains("running  on a (") && out.contains("unplaced on no node"), "{out}");

    // The API: 201 new, 200 replaced, 400 with the field, 404 unknown.
    let spec = r#"{"name": "api", "driver": {"kind": "exec", "command": "sleep", "args": ["60"]}}"#;
    assert_eq!(http(&a, "POST", "/v1/workloads", Some(spec)).0, 201);
    let (status, body) = http(&a, "POST", "/v1/workloads", Some(spec));
    assert!(status == 200 && body["replicas"] == 1 && body["spec"]["driver"]["command"] == "sleep", "{body}");
    for (bad, field) in [
        (r#"{"name": "Api", "driver": {"kind": "exec", "command": "x"}}"#, "name"),
        (r#"{"name": "api", "driver": {"kind": "exec", "command": "x"}, "replica": 3}"#, "replica"),
        (r#"{"name": "api", "driver": {"kind": "docker"}}"#, "driver.image"),
        (r#"{"name": "api""#, "spec"),
    ] {
        let (status, body) = http(&a, "POST", "/v1/workloads", Some(bad));
        assert!(status == 400 && body["field"] == field && body["error"].is_string(), "{bad}: {status} {body}");
    }
    assert_eq!(http(&a, "GET", "/v1/workloads/api", None).0, 200);
    assert_eq!(http(&a, "GET", "/v1/workloads/nope", None).0, 404);
    assert_eq!(http(&a, "DELETE", "/v1/workloads/api", None).0, 200);
    assert_eq!(http(&a, "DELETE", "/v1/workloads/api", None).0, 404);

    let (ok, out, _) = shoal(&a, &["delete", "web"])?;
    assert!(ok && out.contains("web deleted"), "{out}");
    let (ok, _, err) = shoal(&a, &["delete", "web"])?;
    assert!(!ok && err.contains("no workload named \"web\"") && err.contains("shoal workloads"), "{err}");
    let (ok, _, err) = shoal(&a, &["workload", "web"])?;
    assert!(!ok && err.contains("404"), "{err}");
    assert_eq!(names(&a), Some(vec![]));
    Ok(())
}

#[test]
fn the_catalog_spreads_deletes_everywhere_and_survives_a_whole_cluster_restart() -> anyhow::Result<()> {
    let dir = test_dir("workloads-mesh");
    let key = vec!["--cluster-key".to_string(), new_key(), "--no-mdns".into()];
    let mut agents = vec![Agent::start(&dir, "a", &key)?];
    for name in ["b", "c"] {
        let args = [key.clone(), agents[0].join_arg()].concat();
        agents.push(Agent::start(&dir, name, &args)?);
    }
    wait_until(Duration::from_secs(30), "3 alive everywhere", || {
        agents.iter().all(|x| count_in(x, State::Alive) == Some(3))
    })?;

    // Submitted to one agent, listed by every agent, placed the same everywhere.
    let web = write(&dir, "web.toml", WEB)?;
    assert!(shoal(&agents[1], &["submit", &web])?.0);
    let db = write(&dir, "db.toml", &WEB.replace("\"web\"", "\"db\"").replace("replicas = 2", "replicas = 3"))?;
    assert!(shoal(&agents[2], &["submit", &db])?.0);
    let both = vec!["db".to_string(), "web".to_string()];
    let sorted = |agent: &Agent| {
        names(agent).map(|mut n| {
            n.sort();
            n
        })
    };
    let took = wait_until(Duration::from_secs(10), "every agent lists web and db", || {
        agents.iter().all(|x| sorted(x).as_ref() == Some(&both))
    })?;
    println!("a submit reached every agent in {took:?}");
    // Once every agent has settled, all compute the same placement: db's 3
    // replicas on the 3 agents, web's 2 on two of them.
    let placements = || -> Vec<Option<Vec<shoal_node::workloads::WorkloadView>>> {
        agents.iter().map(|x| x.client().workloads().ok()).collect()
    };
    wait_until(Duration::from_secs(15), "every agent places every replica, the same way", || {
        let all = placements();
        let placed = |views: &Option<Vec<shoal_node::workloads::WorkloadView>>| {
            views.as_ref().is_some_and(|v| v.iter().all(|w| w.placement.iter().all(|r| r.node.is_some())))
        };
        all.iter().all(placed) && all.windows(2).all(|w| w[0] == w[1])
    })
    .map_err(|e| e.context(format!("{:?}", placements())))?;

    // Deleted through another agent: gone everywhere.
    assert!(shoal(&agents[0], &["delete", "db"])?.0);
    let took = wait_until(Duration::from_secs(10), "db is gone everywhere", || {
        agents.iter().all(|x| names(x) == Some(vec!["web".to_string()]))
    })?;
    println!("a delete reached every agent in {took:?}");

    // Every agent crashes at once, then restarts from its data dir: web is
    // still there, and db stays deleted (its tombstone was kept too).
    std::thread::sleep(Duration::from_secs(1)); // the save follows a change within ~200 ms
    for agent in &mut agents {
        agent.kill9();
    }
    for agent in &mut agents {
        agent.spawn()?;
    }
    wait_until(Duration::from_secs(30), "3 alive again everywhere", || {
        agents.iter().all(|x| count_in(x, State::Alive) == Some(3))
    })?;
    for agent in &agents {
        assert_eq!(names(agent), Some(vec!["web".to_string()]), "{} after the restart", agent.name);
        let detail = agent.client().workload("web")?;
        assert_eq!(detail.workload.replicas, 2, "{detail:?}");
    }
    wait_until(Duration::from_secs(15), "web's 2 replicas placed again everywhere", || {
        agents
            .iter()
            .all(|x| x.client().workload("web").is_ok_and(|d| d.workload.placement.iter().all(|r| r.node.is_some())))
    })?;
    Ok(())
}

#[test]
fn a_clean_stop_saves_a_catalog_change_made_just_before() -> anyhow::Result<()> {
    let dir = test_dir("workloads-stop");
    let mut a = Agent::start(&dir, "a", &["--no-mdns".into()])?;
    wait_until(Duration::from_secs(30), "a answers", || a.members().is_some())?;
    let web = write(&dir, "web.toml", WEB)?;
    assert!(shoal(&a, &["submit", &web])?.0);
    // SIGTERM at once, well inside the ~200 ms the running agent waits before saving.
    let status = a.sigterm(Duration::from_secs(10))?;
    assert!(status.success(), "{status}");
    assert!(dir.join("a").join("catalog.bin").exists(), "saved on the way out");
    a.spawn()?;
    wait_until(Duration::from_secs(30), "a lists web after its restart", || names(&a) == Some(vec!["web".into()]))
        .map_err(|e| e.context(a.log_tail()))?;
    Ok(())
}
