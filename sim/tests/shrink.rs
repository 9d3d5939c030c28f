//! Shrinking a failing run: on the deliberately broken builds, the shrunk
//! scenario is at most half the original in nodes and duration, fails the
//! same check, replays with the command printed beside it, and shrinking
//! the same failure twice writes the same file. (The long demonstrations on
//! real `chaos` failures are `scripts/shrink-demo.sh`.)

use std::path::PathBuf;
use std::process::Command;

use shoal_sim::scenario::BugKind;
use shoal_sim::shrink::{self, Options, ShrinkError, Shrunk, Stop};
use shoal_sim::units::Dur;
use shoal_sim::{Scenario, Simulation, Verdict};

/// The broken build of `bug_injection.rs`: nodes that never refute
/// suspicion, under 20% loss (`sim/scenarios/loss-20.toml`), fail
/// `no_false_dead` on seed 12.
fn ignoring_refutations() -> Scenario {
    let path = format!("{}/scenarios/loss-20.toml", env!("CARGO_MANIFEST_DIR"));
    let mut scenario =
        Scenario::load(&path).expect("the scenario file parses").with_nodes(60).with_duration(Dur::secs(120));
    scenario.bug = Some(BugKind::IgnoreRefutations);
    scenario
}

const SEED: u64 = 12;

fn options() -> Options {
    // The broken build under `loss-20.toml` finishes its search in 151 runs.
    Options { max_runs: 200, ..Options::default() }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shoal-sim-shrink-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// The arguments of a printed replay command after `--`.
fn replay_args(replay: &str) -> Vec<String> {
    let (_, args) = replay.split_once(" -- ").expect("a `cargo run ... -- run ...` command");
    args.split_whitespace().map(str::to_owned).collect()
}

fn at_most_half(shrunk: &Shrunk) -> bool {
    let (a, b) = (shrunk.original_size, shrunk.size);
    b.faults * 2 <= a.faults && a.faults > 0 || b.nodes * 2 <= a.nodes || b.duration.micros() * 2 <= a.duration.micros()
}

#[test]
fn a_broken_build_shrinks_to_a_smaller_scenario_that_fails_the_same_check_every_time() {
    let scenario = ignoring_refutations();
    let first = shrink::shrink(&scenario, SEED, &options(), &mut |_| {}).expect("the original fails");
    let path = scratch("ignore-refutations.toml");
    let shown = path.display().to_string();
    let file = first.file(&shown, shoal_sim::impls::Impl::Shoal);

    // Smaller, and said so, measure by measure.
    assert_eq!(first.check, "no_false_dead");
    assert_eq!(first.original_size.nodes, 60);
    assert!(first.size.nodes * 2 <= 60, "{}", first.summary(&shown, shoal_sim::impls::Impl::Shoal));
    assert!(first.size.duration.micros() * 2 <= Dur::secs(120).micros(), "{}", first.size);
    assert!(at_most_half(&first));
    assert_eq!(first.stop, Stop::Done, "the budget should suffice: {}", first.runs);

    // The file holds exactly the scenario, which fails the same check.
    let back = Scenario::from_toml(&file).expect("the file reads");
    assert_eq!(back, first.scenario);
    let report = Simulation::new(back, first.seed).expect("valid").run();
    assert_eq!(report.check("no_false_dead").map(|c| c.verdict), Some(Verdict::Fail), "{report}");

    // The same failure shrinks to the same file.
    let second = shrink::shrink(&scenario, SEED, &options(), &mut |_| {}).expect("the original fails");
    assert_eq!(second.file(&shown, shoal_sim::impls::Impl::Shoal), file);
    assert_eq!(second.runs, first.runs);

    // The printed command replays it: the same check fails.
    std::fs::write(&path, &file).expect("writes");
    let replay = first.replay(&shown, shoal_sim::impls::Impl::Shoal);
    assert!(file.contains(&replay), "{file}");
    let output = Command::new(env!("CARGO_BIN_EXE_shoal-sim")).args(replay_args(&replay)).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.lines().any(|l| l.contains("no_false_dead FAIL")), "{stdout}");
    assert!(stdout.contains(&format!("seed      {}", first.seed)), "{stdout}");
}

#[test]
fn the_binary_shrinks_on_request_and_prints_the_file_and_the_command() {
    // Without anti-entropy the halves of a long partition never meet again.
    let path = scratch("no-anti-entropy.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_shoal-sim"))
        .args(["run", "long-partition-heal", "--nodes", "40", "--seed", "5", "--bug", "no-anti-entropy"])
        .args(["--shrink", "--shrink-runs", "120", "--shrink-out"])
        .arg(&path)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "the run still fails: {stdout}");
    let summary = stdout.split("\nshrunk ").nth(1).expect("a shrink summary");
    assert!(summary.starts_with("   `long-partition-heal` seed 5 fails convergence"), "{summary}");
    let replay = summary.lines().find_map(|l| l.strip_prefix("replay    ")).expect("a replay line");
    let file = std::fs::read_to_string(&path).expect("the file was written");
    assert!(stdout.contains(&file), "the file is printed too");
    assert!(file.contains(&format!("# Replay: {replay}")), "{file}");
    let shrunk = Scenario::from_toml(&file).expect("the file reads");
    assert!(shrunk.nodes * 2 <= 40, "{file}");

    let output = Command::new(env!("CARGO_BIN_EXE_shoal-sim")).args(replay_args(replay)).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.lines().any(|l| l.contains("convergence   FAIL")), "{stdout}");
}

#[test]
fn a_run_that_passes_has_nothing_to_shrink() {
    let scenario = Scenario::builtin("steady").expect("built in").with_nodes(10).with_duration(Dur::secs(20));
    let result = shrink::shrink(&scenario, 1, &options(), &mut |_| {});
    assert!(matches!(result, Err(ShrinkError::Passes { seed: 1, .. })), "{result:?}");
}
