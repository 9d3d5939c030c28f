//! The short nemesis run: 7 real agents in network namespaces, 10 seeded
//! fault events of every kind the schedule draws, and after every heal no
//! catalog entry lost, exactly the requested copies running (counted from
//! processes), none outside the mesh, and every agent agreeing on membership
//! (tests/src/nemesis). A few minutes. `NEMESIS_SEED` replays another seed.
//! Needs root and `ip netns`; without them the test says so loudly and
//! passes. The long run (100+ events) is scripts/nemesis.sh.
#![allow(clippy::print_stderr)]

use shoal_tests::nemesis::schedule::{SHORT_EVENTS as EVENTS, SHORT_SEED as SEED};
use shoal_tests::nemesis::{self, Options};
use shoal_tests::{shoal_bin, test_dir};

fn lab_possible() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    // /proc/self belongs to the process's effective user.
    if std::fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0) {
        return Err("not root".into());
    }
    let ip = std::process::Command::new("ip").args(["netns", "list"]).output();
    match ip {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("`ip netns list` failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Err(format!("no `ip` command: {e}")),
    }
}

#[test]
fn nemesis_short_run() -> anyhow::Result<()> {
    if let Err(why) = lab_possible() {
        eprintln!("\n!!! SKIPPED the nemesis test: {why}.");
        eprintln!("!!! It needs root, `ip netns` (iproute2) and iptables.\n");
        return Ok(());
    }
    let seed = std::env::var("NEMESIS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(SEED);
    let options = Options {
        seed,
        events: EVENTS,
        agents: 7,
        shoal_bin: shoal_bin(),
        dir: test_dir("nemesis"),
        tag: format!("nt{}", std::process::id() % 1_000_000),
        octet: 79,
        keep_going: false,
        deadline: None,
        replay_prefix: format!(
            "NEMESIS_SEED={seed} cargo test -p shoal-tests --test nemesis -- --nocapture  # or: sudo \
             target/release/shoal-nemesis"
        ),
    };
    let summary = nemesis::run(&options)?;
    eprintln!("{}", summary.text());
    anyhow::ensure!(
        summary.violations.is_empty() && summary.lost == 0 && summary.events == EVENTS,
        "nemesis seed {seed} failed (logs in {}); replay: {}",
        options.dir.display(),
        options.replay_command(EVENTS)
    );
    Ok(())
}
