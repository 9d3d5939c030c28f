//! The namespace lab on a tiny mesh: three `shoal` agents, one namespace
//! each; a partition that both sides notice and a heal they recover from;
//! a `kill -9` the others report dead; the API reached inside a namespace.
//! Needs root and `ip netns`; without them the test says so loudly and
//! passes.
#![allow(clippy::print_stderr)]

use std::time::{Duration, Instant};

use shoal_tests::lab::{Fault, Lab, System};
use shoal_tests::{shoal_bin, test_dir};

/// Polls `check` every 50 ms until it holds or `within` passes.
fn eventually(within: Duration, what: &str, check: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !check() {
        anyhow::ensure!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn partition_heal_and_kill_in_namespaces() -> anyhow::Result<()> {
    let tag = format!("t{}", std::process::id() % 1_000_000);
    let dir = test_dir("lab");
    let mut lab = match Lab::new(System::shoal(shoal_bin()), 3, &tag, 78, &dir) {
        Ok(lab) => lab,
        Err(error) => {
            eprintln!("\n!!! SKIPPED the namespace lab test: cannot set up the lab ({error:#}).");
            eprintln!("!!! It needs root, `ip netns` (iproute2) and iptables.\n");
            return Ok(());
        }
    };
    lab.start_all()?;
    anyhow::ensure!(lab.wait_all_see_all(Duration::from_secs(30)).is_some(), "the mesh did not form");

    let cut = Instant::now();
    lab.fault(&Fault::Partition(vec![vec![0, 1], vec![2]]))?;
    // The cut-off agent hears no one, not even a nack, so it suspects no one
    // (a probe no one answered says nothing about its target: issue 16).
    eventually(Duration::from_secs(40), "the side of two reports the cut-off agent dead", || {
        lab.views.all_failed("a2", &[0, 1], cut).is_some()
    })?;
    lab.heal()?;
    anyhow::ensure!(lab.wait_all_see_all(Duration::from_secs(60)).is_some(), "the mesh did not heal");

    let killed = Instant::now();
    lab.kill(1)?;
    eventually(Duration::from_secs(40), "a0 and a2 report a1 dead", || {
        lab.views.all_failed("a1", &[0, 2], killed).is_some()
    })?;
    let members = lab.members(0)?;
    anyhow::ensure!(members.contains(&("a1".into(), "failed".into())), "a0's API lists {members:?}");
    anyhow::ensure!(!lab.metrics(0)?.is_empty(), "a0 exports no metrics");
    Ok(())
}
