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
    for command in ["members", "status", "leave"] {
        let (ok, _, err) = run(&[command, "--api", &api])?;
        assert!(!ok, "{command} fails");
        assert!(err.contains(&format!("no agent at {api}: is `shoal agent` running?")), "{command}: {err}");
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
