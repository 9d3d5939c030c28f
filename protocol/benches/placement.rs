//! Placement quality and speed.
//!
//! `cargo bench -p shoal-protocol --bench placement` prints, for capacities
//! spread 8x with about 20 replicas per node: max/mean capacity-normalised
//! load; replicas moved per join and per leave over the theoretical minimum
//! (mean and p99 over 100 events), each placed from where the running
//! placement puts replicas; whether placing again from the result moves
//! anything (the fixed point); the time of that step after one change; then
//! criterion times a full placement of 100,000 replicas over 1,000 nodes and
//! 1,000,000 over 10,000, and the step after one leave at both sizes. `EPS`,
//! `TOK` and `PER_NODE` in the environment override epsilon, tokens per core
//! and replicas per node (ALGORITHM.md section 13).
// A benchmark measures wall time and prints; the protocol's purity rules do not apply.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::disallowed_methods,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::collections::BTreeMap;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use shoal_protocol::placement::{Candidate, Placement, PlacementConfig, Running, place, quality};
use shoal_protocol::{Capacity, Driver, NodeId, Resources, RestartPolicy, WorkloadSpec};

fn candidates(n: u64, seed: u64) -> Vec<Candidate> {
    (0..n)
        .map(|i| {
            let id = seed.wrapping_mul(1_000_003).wrapping_add(i);
            let cores = 1 + (shoal_protocol::stable_hash64(&id.to_le_bytes()) % 8) as u32; // 1..=8: an 8x spread
            Candidate {
                id: NodeId::from_index(id),
                capacity: Capacity { cpu_millis: cores * 1_000, memory_bytes: u64::from(cores) << 33 },
                labels: BTreeMap::new(),
                settled: true,
            }
        })
        .collect()
}

fn workloads(replicas: u64, per_workload: u32) -> Vec<WorkloadSpec> {
    (0..replicas / u64::from(per_workload))
        .map(|i| WorkloadSpec {
            name: format!("w{i}"),
            replicas: per_workload,
            resources: Resources { cpu_millis: 10, memory_bytes: 1 << 20 },
            constraints: BTreeMap::new(),
            driver: Driver::Exec { command: "true".into(), args: vec![], env: BTreeMap::new(), workdir: None },
            restart: RestartPolicy::default(),
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report_quality(config: PlacementConfig, per_node: u64) {
    let n = 1_000;
    let nodes = candidates(n, 1);
    let work = workloads(per_node * n, 5);
    let started = Instant::now();
    let base = place(&nodes, &work, &Running::new(), config);
    let full = started.elapsed();
    let running = Running::from(&base);
    println!(
        "placement quality (N={n}, {} replicas, cpu 1-8 cores, epsilon {}, {} tokens/core):",
        per_node * n,
        config.epsilon,
        config.tokens_per_core
    );
    println!("  max/mean capacity-normalised load: {:.3}  (target <= 1.10)", quality::load_ratio(&nodes, &base));
    println!("  unplaced workloads: {}", base.unplaced.len());
    println!(
        "  nodes below their cap: {:.2}  (where a new replica can land without displacing another)",
        quality::below_cap(&nodes, &base, config.epsilon)
    );
    let settled = |nodes: &[Candidate], placement: &Placement| {
        place(nodes, &work, &Running::from(placement), config) == *placement
    };
    println!("  placing again from the running placement moves nothing: {}", settled(&nodes, &base));
    let (mut leave_ratios, mut join_ratios) = (Vec::new(), Vec::new());
    let (mut leave_times, mut join_times) = (Vec::new(), Vec::new());
    let (mut not_fixed, mut worst_load) = (0, 0.0f64);
    // A view with every other move of a change done (statuses still
    // spreading) should place as the change's placement does.
    let (mut half_views_differ, mut half_replicas_differ) = (0u32, 0usize);
    let mut half_done = |nodes: &[Candidate], after: &Placement| {
        let mut partial = Running::new();
        let mut flip = false;
        for (name, owners) in &after.assignments {
            for (i, owner) in owners.iter().enumerate() {
                let before = base.owner(name, i);
                let chosen = if before != *owner {
                    flip = !flip;
                    if flip { *owner } else { before }
                } else {
                    before
                };
                if let Some(node) = chosen {
                    partial.add(name, i, node);
                }
            }
        }
        let again = place(nodes, &work, &partial, config);
        let differ = again.replicas().filter(|(w, i, n)| after.owner(w, *i) != Some(*n)).count();
        half_views_differ += u32::from(differ > 0);
        half_replicas_differ += differ;
    };
    for event in 0..50u64 {
        let gone = nodes[(event * 37 % n) as usize].id;
        let remaining: Vec<Candidate> = nodes.iter().filter(|c| c.id != gone).cloned().collect();
        let started = Instant::now();
        let after = place(&remaining, &work, &running, config);
        leave_times.push(started.elapsed().as_secs_f64());
        let (moved, minimum) = quality::moves(&base, &after, Some(gone), None);
        leave_ratios.push(moved as f64 / minimum.max(1) as f64);
        not_fixed += u32::from(!settled(&remaining, &after));
        worst_load = worst_load.max(quality::load_ratio(&remaining, &after));
        half_done(&remaining, &after);

        let mut grown = nodes.clone();
        let newcomer = candidates(1, 1_000 + event).pop().unwrap();
        let joined = newcomer.id;
        grown.push(newcomer);
        let started = Instant::now();
        let after = place(&grown, &work, &running, config);
        join_times.push(started.elapsed().as_secs_f64());
        let (moved, minimum) = quality::moves(&base, &after, None, Some(joined));
        join_ratios.push(moved as f64 / minimum.max(1) as f64);
        not_fixed += u32::from(!settled(&grown, &after));
        worst_load = worst_load.max(quality::load_ratio(&grown, &after));
        half_done(&grown, &after);
    }
    for (what, ratios) in [("leave", &mut leave_ratios), ("join", &mut join_ratios)] {
        ratios.sort_by(f64::total_cmp);
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        println!(
            "  moved / minimum on one {what}: mean {mean:.3}, p50 {:.3}, p99 {:.3}, max {:.3}  (targets: mean <= 1.10, p99 <= 1.5)",
            percentile(ratios, 0.5),
            percentile(ratios, 0.99),
            ratios[ratios.len() - 1]
        );
    }
    println!("  max/mean load after any of the 100 changes: {worst_load:.3}");
    println!("  changes after which placing again would move something: {not_fixed} of 100");
    println!(
        "  views with every other move done that place differently: {half_views_differ} of 100 ({half_replicas_differ} replicas in all)"
    );
    leave_times.sort_by(f64::total_cmp);
    join_times.sort_by(f64::total_cmp);
    println!(
        "  full placement {:.1} ms; the step after one change (from the running placement): leave p50 {:.1} ms, join p50 {:.1} ms",
        full.as_secs_f64() * 1e3,
        percentile(&leave_times, 0.5) * 1e3,
        percentile(&join_times, 0.5) * 1e3
    );
}

fn bench_speed(c: &mut Criterion) {
    let mut group = c.benchmark_group("place");
    group.sample_size(10);
    for (n, replicas) in [(1_000u64, 100_000u64), (10_000, 1_000_000)] {
        let nodes = candidates(n, 2);
        let work = workloads(replicas, 10);
        let config = PlacementConfig::default();
        group.bench_function(format!("{replicas}_replicas_over_{n}_nodes"), |b| {
            b.iter(|| place(&nodes, &work, &Running::new(), config))
        });
        // The step every node takes after a change: one member gone, the
        // rest kept where they run.
        let running = Running::from(&place(&nodes, &work, &Running::new(), config));
        let remaining: Vec<Candidate> = nodes[1..].to_vec();
        group.bench_function(format!("{replicas}_replicas_over_{n}_nodes_after_one_leave"), |b| {
            b.iter(|| place(&remaining, &work, &running, config))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_speed);

fn main() {
    let quick = std::env::args().any(|a| a == "--quality-only");
    let epsilon = std::env::var("EPS").ok().and_then(|v| v.parse().ok()).unwrap_or(0.10);
    let tokens =
        std::env::var("TOK").ok().and_then(|v| v.parse().ok()).unwrap_or(PlacementConfig::default().tokens_per_core);
    let per_node = std::env::var("PER_NODE").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    report_quality(PlacementConfig { epsilon, tokens_per_core: tokens }, per_node);
    if !quick {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}
