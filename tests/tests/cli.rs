//! The CLI's errors say what to do; the agent refuses a bad data dir at start.

use std::process::Command;

use shoal_tests::{free_tcp, shoal_bin, test_dir};

fn run(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let output = Command::new(shoal_bin()).args(args).output()?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok((output.status.success(), text(&output.stdout), text(&output.stderr)))
}

#[test]
fn keygen_prints_a_key() -> anyhow::Result<()> {
    let (ok, out, _) = run(&["keygen"])?;
    assert!(ok);
    let key = out.trim();
    assert!(key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
    Ok(())
}

#[test]
fn client_commands_without_an_agent_say_what_to_do() -> anyhow::Result<()> {
    let api = free_tcp().to_string();
    let spec = test_dir("cli-no-agent").join("web.toml");
    std::fs::write(&spec, "name = \"web\"\n[driver]\nkind = \"exec\"\ncommand = \"sleep\"\n")?;
    let spec = spec.display().to_string();
    let commands: [&[&str]; 7] = [
        &["members"],
        &["status"],
        &["leave"],
        &["submit", &spec],
        &["workloads"],
        &["workload", "web"],
        &["delete", "web"],
    ];
    for command in commands {
        let (ok, _, err) = run(&[command, &["--api", &api]].concat())?;
        assert!(!ok, "{command:?} fails");
        assert!(err.contains(&format!("no agent at {api}: is `shoal agent` running?")), "{command:?}: {err}");
    }
    Ok(())
}

#[test]
fn an_unwritable_data_dir_is_a_clear_error_at_start() -> anyhow::Result<()> {
    let dir = test_dir("cli");
    let file = dir.join("not-a-dir");
    std::fs::write(&file, "x")?;
    let data_dir = file.join("data");
    let (ok, _, err) = run(&[
        "agent",
        "--data-dir",
        &data_dir.display().to_string(),
        "--bind",
        "127.0.0.1:0",
        "--api",
        "127.0.0.1:0",
        "--no-mdns",
    ])?;
    assert!(!ok);
    assert!(err.contains("is not writable") && err.contains("--data-dir"), "{err}");
    Ok(())
}

#[test]
fn a_bad_cluster_key_is_refused() -> anyhow::Result<()> {
    let (ok, _, err) = run(&["agent", "--cluster-key", "nope", "--data-dir", "/tmp/unused", "--no-mdns"])?;
    assert!(!ok);
    assert!(err.contains("shoal keygen"), "{err}");
    Ok(())
}

#[test]
fn shoal_local_starts_a_converged_mesh_and_stops_it_on_ctrl_c() -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::Duration;

    let dir = test_dir("local");
    let mut child = Command::new(shoal_bin())
        .args(["local", "--nodes", "3", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let converged = loop {
        match lines_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.starts_with("Press Ctrl-C") => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    Command::new("kill").args(["-INT", &child.id().to_string()]).status()?;
    let status = child.wait()?;
    assert!(converged, "no convergence; output so far:\n{}", seen.join("\n"));
    assert!(seen.iter().any(|l| l.starts_with("all 3 agents see each other alive")), "{}", seen.join("\n"));
    assert_eq!(
        seen.iter().filter(|l| l.starts_with("node-") && l.contains(" alive ")).count(),
        3,
        "{}",
        seen.join("\n")
    );
    assert!(status.success(), "exits cleanly on Ctrl-C: {status}");
    for i in 0..3 {
        let log = std::fs::read_to_string(dir.join(format!("node-{i}.log")))?;
        assert!(log.contains("left; stopping"), "node-{i} left gracefully:\n{log}");
    }
    Ok(())
}
