//! The `fast` preset (ALGORITHM.md, section 10): a 3 s stall with 5% loss
//! is never declared Dead, and a crash is still known everywhere.

use shoal_sim::{Scenario, Simulation};

fn scenario(file: &str, nodes: usize) -> Scenario {
    let path = format!("{}/scenarios/{file}", env!("CARGO_MANIFEST_DIR"));
    Scenario::load(&path).expect("the scenario file parses").with_nodes(nodes)
}

#[test]
fn a_three_second_stall_under_five_percent_loss_is_never_declared_dead() {
    for nodes in [10, 50] {
        for seed in 1..6 {
            let report = Simulation::new(scenario("fast-pause-loss.toml", nodes), seed).expect("valid").run();
            assert_eq!(report.faults_fired.get("pause").copied().unwrap_or(0), 17, "every pause fired");
            assert!(report.passed(), "N={nodes} seed {seed}: {}\n  replay: {}", report.one_line(), report.replay);
        }
    }
}

#[test]
fn crashes_are_known_everywhere_with_the_fast_preset() {
    let report = Simulation::new(scenario("fast-crash.toml", 50), 7).expect("valid").run();
    assert!(report.passed(), "{}\n  replay: {}", report.one_line(), report.replay);
    assert_eq!(report.faults_fired.get("crash").copied().unwrap_or(0), 9, "every crash fired");
}
