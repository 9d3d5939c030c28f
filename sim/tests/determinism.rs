//! Same seed, same scenario: the same run, bit for bit (the trace hash).
//! Different seeds: different runs.

use shoal_sim::units::Dur;
use shoal_sim::{Scenario, Simulation};

fn hash(name: &str, nodes: usize, secs: u64, seed: u64) -> String {
    let scenario = Scenario::builtin(name).expect("built in").with_nodes(nodes).with_duration(Dur::secs(secs));
    Simulation::new(scenario, seed).expect("valid").run().trace_hash
}

#[test]
fn same_seed_gives_the_same_trace_hash() {
    for (name, secs) in
        [("steady", 30), ("partition-halves", 90), ("gray-pause", 70), ("all-faults", 300), ("chaos", 200)]
    {
        let first = hash(name, 40, secs, 7);
        let second = hash(name, 40, secs, 7);
        assert_eq!(first, second, "{name}: two runs of seed 7 differ");
        let other = hash(name, 40, secs, 8);
        assert_ne!(first, other, "{name}: seeds 7 and 8 gave the same trace");
    }
}

#[test]
fn the_jsonl_trace_does_not_change_the_run() {
    let scenario = Scenario::builtin("crash-one").expect("built in").with_nodes(20).with_duration(Dur::secs(60));
    let plain = Simulation::new(scenario.clone(), 3).expect("valid").run();
    let buffer: Vec<u8> = Vec::new();
    let traced = Simulation::with_trace(scenario, 3, Some(Box::new(buffer))).expect("valid").run();
    assert_eq!(plain.trace_hash, traced.trace_hash);
    assert_eq!(plain.trace_records, traced.trace_records);
}

/// foca, driven through the same simulator, is as reproducible: its rng is
/// seeded from the simulation's.
#[cfg(feature = "compare")]
#[test]
fn foca_runs_are_reproducible_too() {
    use shoal_sim::impls::Impl;
    let run = |seed| {
        let scenario = Scenario::builtin("crash-10pct").expect("built in").with_nodes(40).with_duration(Dur::secs(90));
        Simulation::with_impl(scenario, seed, None, Impl::Foca).expect("valid").run()
    };
    let (first, second, other) = (run(7), run(7), run(8));
    assert_eq!(first.implementation, "foca");
    assert_eq!(first.trace_hash, second.trace_hash, "two foca runs of seed 7 differ");
    assert_ne!(first.trace_hash, other.trace_hash, "foca seeds 7 and 8 gave the same trace");
    let detection = first.checks.iter().find(|c| c.name == "detection").expect("detection check");
    assert!(detection.detail.contains("crashes known everywhere"), "{}", detection.detail);
}
