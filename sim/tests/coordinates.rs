//! Network coordinates on a network of sites: the `coordinates` check's
//! numbers at a size that runs in seconds in a debug build. The full-size
//! acceptance (N = 500, `sim/scenarios/sites.toml`) is in BENCHMARKS.md.

use shoal_sim::checks::coordinates::CoordinateAccuracy;
use shoal_sim::net::Sites;
use shoal_sim::scenario::{Bootstrap, CoordinateBounds};
use shoal_sim::units::Dur;
use shoal_sim::{Scenario, Simulation, Verdict};

/// The four sites of `sim/scenarios/sites.toml`, read from the file so the
/// two cannot drift apart.
fn sites_scenario() -> Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/sites.toml");
    Scenario::load(path).expect("the sites scenario reads")
}

/// Regression: 80 nodes in 4 sites, all joining through one seed within
/// 5 s; 2 minutes after the last one started (the acceptance's time),
/// estimated round trips are within the acceptance bounds (median relative
/// error 0.15, p95 0.5).
#[test]
fn coordinates_converge_on_four_sites() {
    let mut scenario = sites_scenario().with_nodes(80).with_duration(Dur::secs(125));
    scenario.bootstrap = Bootstrap::OneSeed { over: Dur::secs(5) };
    scenario.checks.coordinates = Some(CoordinateBounds { median: 0.15, p95: 0.5, within: Dur::secs(120) });
    let report = Simulation::new(scenario, 7).expect("valid").run();
    let check = report.checks.iter().find(|c| c.name == "coordinates").expect("sites turn the check on");
    assert_eq!(check.verdict, Verdict::Pass, "{}", check.detail);
    assert!(report.passed(), "{}", report.replay);
}

/// The check fails when it should: with bounds no coordinate system can
/// meet (every estimate exact), the same run fails.
#[test]
fn the_coordinates_check_can_fail() {
    let mut scenario = sites_scenario().with_nodes(40).with_duration(Dur::secs(35));
    scenario.bootstrap = Bootstrap::Formed;
    scenario.checks.coordinates = Some(CoordinateBounds { median: 0.0, p95: 0.0, within: Dur::secs(30) });
    let report = Simulation::new(scenario, 1).expect("valid").run();
    let check = report.checks.iter().find(|c| c.name == "coordinates").expect("on");
    assert_eq!(check.verdict, Verdict::Fail, "{}", check.detail);
}

/// Sites: node i lives in site i mod k, and the model's mean round trip is
/// both base latencies plus twice the mean jitter.
#[test]
fn nodes_live_in_sites_round_robin() {
    let scenario = sites_scenario();
    let sites: &Sites = scenario.network.sites.as_ref().expect("sites");
    sites.validate().expect("valid");
    assert_eq!((sites.site_of(0), sites.site_of(3), sites.site_of(4), sites.site_of(9)), (0, 3, 0, 1));
    // eu-west to ap-southeast: 140 ms each way plus 0.5 ms mean jitter each way.
    assert!((sites.mean_rtt_secs(0, 3) - 0.281).abs() < 1e-9);
    assert!((sites.mean_rtt_secs(4, 0) - 0.003).abs() < 1e-9, "same site: 1 ms each way plus jitter");
    assert!(CoordinateAccuracy::new(&scenario).is_some());
    assert!(CoordinateAccuracy::new(&Scenario::builtin("steady").expect("built in")).is_none());
}

/// Coordinates take nothing from the run's rng and no order from a hash
/// map: the same seed gives the same trace on sites.
#[test]
fn sites_runs_replay() {
    let run = || {
        let mut scenario = sites_scenario().with_nodes(30).with_duration(Dur::secs(20));
        scenario.bootstrap = Bootstrap::OneSeed { over: Dur::secs(2) };
        Simulation::new(scenario, 3).expect("valid").run().trace_hash
    };
    assert_eq!(run(), run());
}
