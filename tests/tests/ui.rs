//! The web view in a real browser (headless Chromium over CDP) against real
//! agents: it lists every member of a 3-agent mesh, shows a submitted
//! workload with its replicas, follows a `kill -9` within seconds, shows a
//! bad spec's error as the CLI words it, deletes, and asks for a token once.
//!
//! Chromium must be installed (`apt-get install -y chromium`; `.ci/run`
//! does): without it these tests fail, saying so.
//!
//! `cargo test -p shoal-tests --test ui -- --ignored --nocapture` also
//! writes `docs/ui.png`, the README's picture: a 10-agent mesh with
//! workloads.
#![allow(clippy::print_stdout)]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_node::view::WorkloadState;
use shoal_protocol::State;
use shoal_tests::browser::{Browser, js_string};
use shoal_tests::{Agent, count_in, new_key, shoal_bin, test_dir, wait_until, workspace_root};

const WEB: &str = r#"name = "web"
replicas = 2
[resources]
cpu = 250
memory = "64MiB"
[driver]
kind = "exec"
command = "sleep"
args = ["3600"]
"#;

/// `replicas` is a number: the CLI and the page must both name the field.
const BAD: &str = r#"name = "bad"
replicas = "two"
[driver]
kind = "exec"
command = "sleep"
"#;

/// Starts `n` agents joined through the first, with `labels(i)` as extra args.
fn mesh(dir: &std::path::Path, n: usize, extra: impl Fn(usize) -> Vec<String>) -> anyhow::Result<Vec<Agent>> {
    let key = new_key();
    let mut agents: Vec<Agent> = Vec::new();
    for i in 0..n {
        let mut args = vec!["--cluster-key".to_string(), key.clone()];
        if let Some(first) = agents.first() {
            args.extend(first.join_arg());
        }
        args.extend(extra(i));
        agents.push(Agent::start(dir, &format!("agent-{}", i + 1), &args)?);
    }
    for agent in &agents {
        wait_until(Duration::from_secs(30), &format!("{} sees {n} alive", agent.name), || {
            count_in(agent, State::Alive) == Some(n)
        })?;
    }
    Ok(agents)
}

/// The member names the page lists, with their states.
const MEMBERS_JS: &str = "Array.from(document.querySelectorAll('#members tbody tr[data-name]')).map(r => r.cells[0].textContent + ' ' + r.cells[1].textContent)";

/// Types `spec` into the submit dialog and submits it.
fn submit_through_the_page(browser: &mut Browser, spec: &str) -> anyhow::Result<()> {
    browser.eval(&format!(
        "document.getElementById('new-workload').click(); \
         document.getElementById('spec').value = {}; \
         document.getElementById('submit-form').requestSubmit(); true",
        js_string(spec)
    ))?;
    Ok(())
}

#[test]
fn the_page_shows_the_mesh_and_follows_it() -> anyhow::Result<()> {
    let mut browser = Browser::launch()?;
    let dir = test_dir("ui-mesh");
    let mut agents = mesh(&dir, 3, |_| Vec::new())?;
    let url = format!("http://{}/ui/", agents[0].api);
    browser.navigate(&url)?;

    // Every member, alive, and the map draws each.
    let listed = browser.wait_for(
        Duration::from_secs(10),
        "three alive members",
        &format!(
            "(() => {{ const m = {MEMBERS_JS}; return m.filter(t => t.endsWith(' alive')).length === 3 ? m : null }})()"
        ),
    )?;
    println!("members listed: {listed}");
    for agent in &agents {
        assert!(listed.to_string().contains(&format!("{} alive", agent.name)), "{} missing: {listed}", agent.name);
    }
    browser.wait_for(
        Duration::from_secs(5),
        "three nodes on the map",
        "document.querySelectorAll('#map .node').length === 3",
    )?;

    // A workload submitted through the page: its replicas and their nodes.
    submit_through_the_page(&mut browser, WEB)?;
    let row = browser.wait_for(
        Duration::from_secs(30),
        "web with 2 of 2 replicas running",
        "(() => { const r = document.querySelector('#workloads tbody tr[data-name=web]'); \
          return r && r.cells[2].textContent === '2 / 2' && r.querySelectorAll('.rep.running').length === 2 \
          ? r.textContent : null })()",
    )?;
    println!("workload row: {row}");
    let placed = agents[0].client().workload("web")?;
    for replica in &placed.workload.placement {
        let node = replica.node.clone().unwrap_or_default();
        assert!(row.to_string().contains(&node), "the page shows replica {} on {node}: {row}", replica.replica);
    }
    browser.wait_for(Duration::from_secs(5), "the workload's detail", "!document.getElementById('workload-detail').hidden && document.getElementById('detail-name').textContent === 'web'")?;

    // kill -9 one agent: the page shows it suspected or dead within a few
    // seconds of the agent knowing.
    let victim = agents.pop().ok_or_else(|| anyhow::anyhow!("no agent"))?;
    let name = victim.name.clone();
    let mut victim = victim;
    let killed = Instant::now();
    victim.kill9();
    let api_knew = wait_until(Duration::from_secs(30), "the API shows the kill", || {
        agents[0].members().is_some_and(|m| m.iter().any(|m| m.name == name && m.state != State::Alive))
    })?;
    let page_knew = browser.wait_for(
        Duration::from_secs(30),
        &format!("{name} no longer alive"),
        &format!("(() => {{ const m = {MEMBERS_JS}; return m.some(t => t.startsWith({} + ' ') && !t.endsWith(' alive')) }})()", js_string(&name)),
    );
    let page_after = killed.elapsed();
    page_knew?;
    println!("kill -9 {name}: the API showed it after {api_knew:?}, the page after {page_after:?}");
    assert!(
        page_after <= api_knew + Duration::from_secs(4),
        "the page lagged the API by {:?}",
        page_after.saturating_sub(api_knew)
    );
    browser.wait_for(
        Duration::from_secs(10),
        "the change in the feed",
        &format!("document.getElementById('feed').textContent.includes({})", js_string(&name)),
    )?;

    // A bad spec: the page shows the error, in the CLI's words.
    submit_through_the_page(&mut browser, BAD)?;
    let shown = browser.wait_for(
        Duration::from_secs(10),
        "the spec error",
        "document.getElementById('submit-error').textContent",
    )?;
    let shown = shown.as_str().unwrap_or_default().to_string();
    println!("the page says: {shown}");
    let file = dir.join("bad.toml");
    std::fs::write(&file, BAD)?;
    let cli =
        Command::new(shoal_bin()).arg("submit").arg(&file).args(["--api", &agents[0].api.to_string()]).output()?;
    let cli_says = String::from_utf8_lossy(&cli.stderr).to_string();
    println!("the CLI says: {cli_says}");
    assert!(!cli.status.success());
    assert!(shown.contains("`replicas`"), "the page names the field: {shown}");
    let reason = shown.split("`replicas`: ").nth(1).unwrap_or_default().trim();
    assert!(!reason.is_empty() && cli_says.contains(reason), "same words as the CLI: page {shown:?}, CLI {cli_says:?}");

    // Delete through the page: gone from the page and from the mesh.
    browser.eval(
        "document.getElementById('submit-dialog').close(); window.confirm = () => true; \
         document.querySelector('#workloads tbody tr[data-name=web]').click(); true",
    )?;
    browser.wait_for(
        Duration::from_secs(5),
        "the detail of web",
        "document.getElementById('detail-name').textContent === 'web'",
    )?;
    browser.eval("document.getElementById('detail-delete').click(); true")?;
    browser.wait_for(
        Duration::from_secs(10),
        "web gone",
        "!document.querySelector('#workloads tbody tr[data-name=web]')",
    )?;
    assert!(agents[0].client().workloads()?.is_empty(), "deleted in the mesh too");
    Ok(())
}

#[test]
fn the_page_asks_for_the_token_once() -> anyhow::Result<()> {
    let mut browser = Browser::launch_with(&["--ignore-certificate-errors"])?;
    let dir = test_dir("ui-token");
    let (admin, reader) = ("admin-0123456789abcdef0123", "read-0123456789abcdef01234");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("admin {admin}\nread {reader}\n"))?;
    let agent = Agent::start(
        &dir,
        "agent-1",
        &["--api-tls-self-signed".to_string(), "--api-token-file".to_string(), tokens.display().to_string()],
    )?;
    let url = format!("https://{}/ui/", agent.api);
    wait_until(Duration::from_secs(20), "the agent serves TLS", || {
        dir.join("agent-1/api-tls/fingerprint").exists() && std::net::TcpStream::connect(agent.api).is_ok()
    })?;
    browser.navigate(&url)?;
    browser.wait_for(Duration::from_secs(10), "the token prompt", "document.getElementById('token-dialog').open")?;
    browser.eval(&format!(
        "document.getElementById('token-input').value = {}; document.getElementById('token-form').requestSubmit(); true",
        js_string(reader)
    ))?;
    browser.wait_for(Duration::from_secs(10), "the member list", &format!("{MEMBERS_JS}.length === 1"))?;

    // Once: a reload in the same tab asks no more.
    browser.navigate(&url)?;
    browser.wait_for(Duration::from_secs(10), "the member list again", &format!("{MEMBERS_JS}.length === 1"))?;
    let asked = browser.eval("document.getElementById('token-dialog').open")?;
    assert_eq!(asked, Value::Bool(false), "the token is asked for once per tab");

    // A read-only token cannot submit: the page says why.
    submit_through_the_page(&mut browser, WEB)?;
    let shown = browser.wait_for(
        Duration::from_secs(10),
        "the refusal",
        "document.getElementById('submit-error').textContent",
    )?;
    assert!(shown.to_string().contains("read-only"), "{shown}");
    Ok(())
}

/// The README's picture: a 10-agent mesh in three zones with workloads,
/// one agent killed. Writes `docs/ui.png`.
#[test]
#[ignore = "writes docs/ui.png; run with --ignored"]
fn screenshot_of_a_ten_agent_mesh() -> anyhow::Result<()> {
    let mut browser = Browser::launch()?;
    let dir = test_dir("ui-screenshot");
    let zones = [
        "eu-west", "eu-west", "eu-west", "eu-west", "us-east", "us-east", "us-east", "ap-south", "ap-south", "ap-south",
    ];
    let cpus = ["4000", "2000", "2000", "1000", "8000", "2000", "4000", "2000", "1000", "4000"];
    let mut agents = mesh(&dir, 10, |i| {
        vec![
            "--label".into(),
            format!("zone={}", zones[i]),
            "--cpu".into(),
            cpus[i].into(),
            "--memory".into(),
            "8GiB".into(),
        ]
    })?;
    let specs = [
        ("web", 4, 500, ""),
        ("api", 3, 1000, ""),
        ("cache", 2, 250, "[constraints]\nzone = \"eu-west\"\n"),
        ("batch", 2, 1500, ""),
        ("metrics", 1, 250, "[constraints]\nzone = \"us-east\"\n"),
        ("gpu-train", 1, 500, "[constraints]\nzone = \"mars\"\n"),
    ];
    for (name, replicas, cpu, extra) in specs {
        let spec = format!(
            "name = \"{name}\"\nreplicas = {replicas}\n[resources]\ncpu = {cpu}\nmemory = \"256MiB\"\n{extra}[driver]\nkind = \"exec\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n"
        );
        let spec = shoal_node::spec::parse(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
        agents[0].client().submit(&shoal_node::spec::SpecFile::from_spec(&spec))?;
    }
    wait_until(Duration::from_secs(60), "the workloads run", || {
        agents[0]
            .client()
            .workloads()
            .is_ok_and(|w| w.iter().filter(|w| w.state == WorkloadState::Running).count() >= 5)
    })?;
    let mut victim = agents.remove(6);
    victim.kill9();
    wait_until(Duration::from_secs(60), "the kill is known everywhere", || {
        agents
            .iter()
            .all(|a| a.members().is_some_and(|m| m.iter().any(|m| m.name == victim.name && m.state == State::Dead)))
    })?;
    wait_until(Duration::from_secs(60), "the workloads run again", || {
        agents[0]
            .client()
            .workloads()
            .is_ok_and(|w| w.iter().filter(|w| w.state == WorkloadState::Running).count() >= 5)
    })?;
    std::thread::sleep(Duration::from_secs(3));
    browser.navigate(&format!("http://{}/ui/", agents[0].api))?;
    browser.wait_for(Duration::from_secs(10), "the members", &format!("{MEMBERS_JS}.length === 10"))?;
    browser.eval("document.querySelector('#workloads tbody tr[data-name=web]').click(); true")?;
    browser.wait_for(Duration::from_secs(10), "the detail", "!document.getElementById('workload-detail').hidden")?;
    std::thread::sleep(Duration::from_secs(2));
    browser.eval("window.scrollTo(0, 0); true")?;
    let path = workspace_root().join("docs").join("ui.png");
    browser.screenshot(&path, 1600, 1250)?;
    println!("wrote {}", path.display());
    Ok(())
}
