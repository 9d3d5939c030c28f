//! A deliberately broken protocol makes the matching scenario fail, with the
//! one command that replays it: proof that the checks can fail.

use std::process::Command;

use shoal_sim::scenario::{Bootstrap, BugKind};
use shoal_sim::units::Dur;
use shoal_sim::{Scenario, Simulation, Verdict};

/// `sim/scenarios/loss-20.toml`: 20% loss on every datagram. (It was
/// `flaky-5pct-loss` until issue 16's second direct ping made false
/// suspicions at 5% loss about 20 times rarer: two minutes at N = 60 then
/// raised none, so a build that never refutes went unpunished.)
fn lossy_scenario_path() -> String {
    format!("{}/scenarios/loss-20.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn ignoring_refutations_gets_healthy_nodes_declared_dead_under_loss() {
    let mut scenario = Scenario::load(&lossy_scenario_path())
        .expect("the scenario file parses")
        .with_nodes(60)
        .with_duration(Dur::secs(120));
    // The same run without the bug passes ...
    let healthy = Simulation::new(scenario.clone(), 12).expect("valid").run();
    assert!(healthy.passed(), "{healthy}");
    // ... and with it fails, on the check that guards against exactly this.
    scenario.bug = Some(BugKind::IgnoreRefutations);
    let broken = Simulation::new(scenario, 12).expect("valid").run();
    assert!(!broken.passed(), "the broken build passed:\n{broken}");
    let check = broken.check("no_false_dead").expect("present");
    assert_eq!(check.verdict, Verdict::Fail, "{}", check.detail);
    assert!(
        broken.replay.contains("--features bug-injection") && broken.replay.contains("--bug ignore-refutations"),
        "{}",
        broken.replay
    );
    assert!(broken.replay.contains("--seed 12"), "{}", broken.replay);
}

#[test]
fn the_binary_exits_non_zero_and_prints_the_replay_command() {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal-sim"))
        .args(["run", &lossy_scenario_path(), "--nodes", "60", "--duration", "120s", "--seed", "12"])
        .args(["--bug", "ignore-refutations"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("verdict   FAIL"), "{stdout}");
    let replay = stdout.lines().find(|l| l.starts_with("replay")).expect("a replay line");
    assert!(replay.contains("loss-20.toml --seed 12 --nodes 60 --duration 2m --bug ignore-refutations"), "{replay}");
}

#[test]
fn without_anti_entropy_the_halves_of_a_long_partition_do_not_reconverge_in_time() {
    // Formed from the start: a join needs anti-entropy too, and the point is
    // the heal, not the join.
    let mut scenario = Scenario::builtin("long-partition-heal").expect("built in").with_nodes(40);
    scenario.bootstrap = Bootstrap::Formed;
    let healthy = Simulation::new(scenario.clone(), 5).expect("valid").run();
    assert!(healthy.passed(), "{healthy}");
    scenario.bug = Some(BugKind::NoAntiEntropy);
    // Without the partition the broken build's membership converges: gossip
    // alone carries a formed, healthy mesh ...
    let unsplit = Scenario { faults: Vec::new(), ..scenario.clone() };
    let calm = Simulation::new(unsplit, 5).expect("valid").run();
    assert_eq!(calm.check("convergence").map(|c| c.verdict), Some(Verdict::Pass), "{calm}");
    // ... and after the heal it fails: the halves, each Dead to the other
    // beyond gossip-to-the-dead, never meet again.
    let broken = Simulation::new(scenario, 5).expect("valid").run();
    assert!(!broken.passed(), "the broken build passed:\n{broken}");
    assert_eq!(broken.check("convergence").map(|c| c.verdict), Some(Verdict::Fail), "{broken}");
    assert!(broken.replay.contains("--bug no-anti-entropy"), "{}", broken.replay);
}
