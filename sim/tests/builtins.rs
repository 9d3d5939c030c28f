//! Every built-in scenario passes its checks on 20 seeds at N=100, and every
//! fault it schedules actually fired.

use shoal_sim::fault::FaultKind;
use shoal_sim::{Scenario, Simulation};

const SEEDS: std::ops::Range<u64> = 0..20;
const NODES: usize = 100;

fn sweep(name: &str) {
    let mut scenario = Scenario::builtin(name).expect("built in").with_nodes(NODES);
    if name == "flapping" {
        // An hour is `shoal-sim run flapping` (see README); ten flaps
        // here keep the sweep within the test budget.
        scenario = scenario.with_duration(shoal_sim::units::Dur::secs(300));
    }
    let mut failures = Vec::new();
    for seed in SEEDS {
        let report = Simulation::new(scenario.clone(), seed).expect("valid").run();
        for spec in &scenario.faults {
            let fired = report.faults_fired.get(spec.kind.name()).copied().unwrap_or(0);
            assert!(fired > 0, "{name} seed {seed}: fault {} never fired", spec.kind.name());
        }
        if !report.passed() {
            failures.push(format!("{}\n  replay: {}", report.one_line(), report.replay));
        }
    }
    assert!(failures.is_empty(), "{name}: {} of {} seeds failed:\n{}", failures.len(), SEEDS.end, failures.join("\n"));
}

macro_rules! builtins {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                sweep($name);
            }
        )*

        #[test]
        fn every_builtin_has_a_test() {
            let tested = [$($name),*];
            for name in shoal_sim::scenario::BUILTINS {
                assert!(tested.contains(name), "built-in {name} has no sweep test");
            }
        }
    };
}

builtins! {
    steady => "steady",
    mass_join => "mass-join",
    crash_one => "crash-one",
    crash_10pct => "crash-10pct",
    partition_halves => "partition-halves",
    isolate_one => "isolate-one",
    bridge => "bridge",
    oneway => "oneway",
    flaky_5pct_loss => "flaky-5pct-loss",
    gray_pause => "gray-pause",
    rolling_restart => "rolling-restart",
    long_partition_heal => "long-partition-heal",
    flapping => "flapping",
    clog => "clog",
    loss_burst => "loss-burst",
    slow_node => "slow-node",
    clock_skew => "clock-skew",
    all_faults => "all-faults",
    chaos => "chaos",
}

#[test]
fn all_faults_fires_every_kind_and_every_network_effect() {
    let report =
        Simulation::new(Scenario::builtin("all-faults").expect("built in").with_nodes(NODES), 1).expect("valid").run();
    for kind in FaultKind::NAMES {
        assert!(report.faults_fired.get(kind).copied().unwrap_or(0) > 0, "{kind} never fired:\n{report}");
    }
    let net = report.net;
    assert!(net.cut > 0 && net.held > 0 && net.released > 0 && net.lost > 0, "{net:?}");
    assert!(net.duplicated > 0 && net.reordered > 0 && net.streamed > 0, "{net:?}");
    assert!(report.protocol.late_timers > 0, "the pause never stalled a node: {:?}", report.protocol);
}
