//! Issue 16: under a bridge partition (two halves that only one node
//! connects) on a lossy long-tail WAN, every node must keep seeing every
//! replica Running on a member it believes live (`sides`), while replicas
//! move because nodes crash mid-bridge. The full measurement is
//! `scripts/loss-sweep.sh sim/scenarios/bridge-wan.toml 1 21` (N = 200);
//! this runs the scenario file at N = 60.

use shoal_sim::units::Dur;
use shoal_sim::{Scenario, Simulation, Verdict};

/// At N = 60, of seeds 2 to 9, seed 3 came closest to the bounds: the node
/// that crashes is the bridge itself (node 4), so the halves part for good;
/// the crash was known everywhere only after 59.7 s (bound 66.3 s), each
/// half re-placed the other's replicas (39 moves for the one displaced),
/// and a node went 40 s (grace 53 s) without seeing some replica Running
/// on a member it believed live.
const SEED: u64 = 3;

#[test]
fn statuses_cross_a_bridge_over_a_lossy_wan() {
    let path = format!("{}/scenarios/bridge-wan.toml", env!("CARGO_MANIFEST_DIR"));
    let scenario =
        Scenario::load(&path).expect("the scenario file parses").with_nodes(60).with_duration(Dur::secs(300));
    let report = Simulation::new(scenario, SEED).expect("valid").run();
    let context = format!("{}\n  replay: {}", report.one_line(), report.replay);
    assert_eq!(report.faults_fired.get("bridge").copied(), Some(1), "{context}");
    assert_eq!(report.faults_fired.get("crash").copied(), Some(1), "{context}");
    assert_eq!(report.check("sides").map(|c| c.verdict), Some(Verdict::Pass), "{context}");
    assert!(report.passed(), "{context}");
}
