//! Issue 16: with a fifth of every datagram lost for a whole run, no one
//! may be declared Dead and the views must converge as ALGORITHM.md section
//! 11 ("Convergence under sustained loss") defines it: every live set exact,
//! and every suspicion of a running member refuted at each viewer within
//! the shortest suspicion timeout. Before the second direct ping (ALGORITHM.md
//! section 1), a probe of a live member failed 7.4% of the time at 20% loss; now
//! both direct round trips must fail as well as every relay's path. With
//! suspicions that rare, push-pull rests, and a view that missed every copy
//! of a refutation kept its Suspect past the shortest suspicion timeout
//! (seed 5 at this size, 7.1 s) until it learned to ask the suspect.
//! The full measurement (N = 200, 6 minutes, seeds 1..21) is
//! `scripts/loss-sweep.sh`; this runs the scenario file smaller.

use shoal_sim::units::Dur;
use shoal_sim::{Scenario, Simulation, Verdict};

/// Seed 9 of `loss-20.toml` held the longest suspicion of seeds 1..21
/// before the fix (1.85 s at N = 200); seed 5 at N = 60 is the one that kept
/// a Suspect for 7.1 s with the second ping and no asking.
const SEEDS: [u64; 2] = [9, 5];

#[test]
fn twenty_percent_loss_converges_on_live_sets_with_no_false_dead() {
    for seed in SEEDS {
        judge(seed);
    }
}

fn judge(seed: u64) {
    let path = format!("{}/scenarios/loss-20.toml", env!("CARGO_MANIFEST_DIR"));
    let scenario =
        Scenario::load(&path).expect("the scenario file parses").with_nodes(60).with_duration(Dur::secs(120));
    let report = Simulation::new(scenario, seed).expect("valid").run();
    let context = format!("{}\n  replay: {}", report.one_line(), report.replay);
    assert!(report.passed(), "{context}");
    assert_eq!(report.count("false_dead"), Some(0), "{context}");
    assert_eq!(report.protocol.declared_dead, 0, "{context}");
    let convergence = report.check("convergence").expect("always checked");
    assert_eq!(convergence.verdict, Verdict::Pass, "{context}");
    assert!(convergence.detail.contains("live sets judged"), "judged as section 11 defines it: {}", convergence.detail);
    assert_eq!(report.count("suspicions_overlong"), Some(0), "{context}");
    // Loss does raise false suspicions (each one refuted): the check had
    // something to judge. With one direct ping per probe these runs raised
    // about twice as many.
    let per_node_s = report.protocol.suspicions_raised as f64 / (60.0 * 120.0);
    assert!(report.protocol.suspicions_raised > 0, "{context}");
    assert!(per_node_s < SUSPICIONS_PER_NODE_S, "{per_node_s:.4} false suspicions per node per second; {context}");
}

/// The bound on false suspicions per node per second in these runs: in seed
/// 9, one direct ping per probe raised 287 (0.040), two raise 119 (0.017).
const SUSPICIONS_PER_NODE_S: f64 = 0.03;
