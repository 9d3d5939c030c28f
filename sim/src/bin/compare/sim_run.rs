//! Shoal and foca through the comparison scenarios, same seed each.

use std::time::Duration;

use anyhow::{Context, Result};
use shoal_sim::impls::Implementation;
use shoal_sim::impls::foca::FocaImpl;
use shoal_sim::impls::shoal::ShoalImpl;
use shoal_sim::scenario::Bootstrap;
use shoal_sim::units::Dur;
use shoal_sim::{Scenario, Simulation};

use crate::rows::SimRow;
use crate::say;

/// One comparison case: a built-in, changed a little.
struct Case {
    label: &'static str,
    builtin: &'static str,
    loss: Option<f64>,
    quick_duration: Option<u64>,
    bootstrap_views: bool,
}

const CASES: &[Case] = &[
    Case { label: "steady", builtin: "steady", loss: None, quick_duration: None, bootstrap_views: false },
    Case { label: "mass-join", builtin: "mass-join", loss: None, quick_duration: Some(60), bootstrap_views: true },
    Case { label: "crash-10pct", builtin: "crash-10pct", loss: None, quick_duration: None, bootstrap_views: false },
    Case {
        label: "crash-10pct, 1% loss",
        builtin: "crash-10pct",
        loss: Some(0.01),
        quick_duration: None,
        bootstrap_views: false,
    },
    Case {
        label: "partition-halves",
        builtin: "partition-halves",
        loss: None,
        quick_duration: None,
        bootstrap_views: false,
    },
    Case {
        label: "flaky-5pct-loss",
        builtin: "flaky-5pct-loss",
        loss: None,
        quick_duration: Some(120),
        bootstrap_views: false,
    },
    Case { label: "gray-pause", builtin: "gray-pause", loss: None, quick_duration: Some(180), bootstrap_views: false },
];

/// The case the bandwidth-matched run uses.
const TUNE_CASE: usize = 2;

fn scenario(case: &Case, nodes: usize, quick: bool) -> Result<Scenario> {
    let mut scenario = Scenario::builtin(case.builtin).with_context(|| format!("no built-in {}", case.builtin))?;
    scenario = scenario.with_nodes(nodes);
    if scenario.bootstrap == Bootstrap::Formed {
        // foca cannot start formed: both systems form the mesh first, as
        // `steady` did before it started formed.
        scenario.bootstrap = Bootstrap::default();
    }
    if let Some(loss) = case.loss {
        scenario.network.loss = loss;
    }
    if let (true, Some(secs)) = (quick, case.quick_duration) {
        scenario = scenario.with_duration(Dur::secs(secs));
    }
    Ok(scenario)
}

fn distinct_views(sim: &Simulation) -> usize {
    let world = sim.world();
    let mut hashes: Vec<u64> = (0..world.nodes.len()).filter_map(|i| world.view_hash(i)).collect();
    hashes.sort_unstable();
    hashes.dedup();
    hashes.len()
}

fn run_one(
    case: &Case,
    scenario: &Scenario,
    seed: u64,
    imp: Box<dyn Implementation>,
    system: &str,
    config: String,
) -> Result<SimRow> {
    say(&format!("  {system:<12} {} N={} seed {seed}", case.label, scenario.nodes));
    let mut sim = Simulation::with_implementation(scenario.clone(), seed, None, imp)?;
    sim.leak_on_finish();
    let mut views = None;
    if case.bootstrap_views {
        // Every simulated second of the first 30: how many different views
        // the running nodes hold (1 = all agree).
        let mut most = 0;
        for second in 1..=30u64 {
            sim.run_until(second * 1_000_000);
            most = most.max(distinct_views(&sim));
        }
        views = Some(most);
    }
    let report = sim.run();
    let mut row = SimRow::of(system, case.label, config, &report);
    row.bootstrap_views = views;
    Ok(row)
}

fn shoal_config_text(scenario: &Scenario) -> String {
    let c = scenario.preset.config();
    format!(
        "Shoal `{}` preset: probe {:?}, timeout {:?}, suspicion {}·log10(N)·T up to {}x, gossip {:?} × {}",
        format!("{:?}", scenario.preset).to_lowercase(),
        c.probe_interval,
        c.probe_timeout,
        c.suspicion_mult,
        c.suspicion_max_timeout_mult,
        c.gossip_interval,
        c.gossip_fanout
    )
}

fn foca_config_text(tag: &str, c: &foca::Config) -> String {
    let gossip = c
        .periodic_gossip
        .as_ref()
        .map_or_else(|| "off".to_owned(), |g| format!("{:?} × {}", g.frequency, g.num_members));
    format!(
        "foca {tag}: probe {:?}, rtt {:?}, suspect→down {:?}, max transmissions {}, gossip {gossip}",
        c.probe_period, c.probe_rtt, c.suspect_to_down_after, c.max_transmissions
    )
}

fn shoal(case: &Case, scenario: &Scenario, seed: u64) -> Result<SimRow> {
    let imp = Box::new(ShoalImpl::new(scenario)?);
    run_one(case, scenario, seed, imp, "shoal", shoal_config_text(scenario))
}

fn foca_default(case: &Case, scenario: &Scenario, seed: u64) -> Result<SimRow> {
    let imp = FocaImpl::new(scenario);
    let text = foca_config_text(&format!("Config::new_lan({})", scenario.nodes), imp.config());
    run_one(case, scenario, seed, Box::new(imp), "foca", text)
}

fn scale(d: Duration, by: f64) -> Duration {
    Duration::from_secs_f64((d.as_secs_f64() * by).max(0.01))
}

/// foca's LAN config with every period scaled by `by` (smaller: more
/// traffic, faster detection).
fn foca_scaled(nodes: usize, by: f64) -> foca::Config {
    let n =
        std::num::NonZeroU32::new(u32::try_from(nodes).unwrap_or(u32::MAX).max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    let mut c = foca::Config::new_lan(n);
    c.probe_period = scale(c.probe_period, by);
    c.probe_rtt = scale(c.probe_rtt, by);
    c.suspect_to_down_after = scale(c.suspect_to_down_after, by);
    if let Some(g) = c.periodic_gossip.as_mut() {
        g.frequency = scale(g.frequency, by);
    }
    c
}

/// foca with its periods scaled until its steady-state bytes per node per
/// second match Shoal's (two proportional steps).
fn foca_tuned(case: &Case, scenario: &Scenario, seed: u64, shoal_bytes: f64, foca_bytes: f64) -> Result<SimRow> {
    let mut by = 1.0;
    let mut bytes = foca_bytes;
    let mut row = SimRow::default();
    for _ in 0..2 {
        if bytes <= 0.0 || shoal_bytes <= 0.0 {
            break;
        }
        by = (by * bytes / shoal_bytes).clamp(0.05, 20.0);
        let config = foca_scaled(scenario.nodes, by);
        let text = foca_config_text(&format!("new_lan periods × {by:.2}"), &config);
        let imp = FocaImpl::with_config(scenario, config);
        row = run_one(case, scenario, seed, Box::new(imp), "foca (tuned)", text)?;
        bytes = row.bytes_steady;
    }
    Ok(row)
}

/// Every case at every size, both systems, then the bandwidth-matched run.
pub(crate) fn run_all(nodes: &[usize], seed: u64, quick: bool) -> Result<Vec<SimRow>> {
    let mut rows = Vec::new();
    for &n in nodes {
        say(&format!("sim: N={n}"));
        for (k, case) in CASES.iter().enumerate() {
            let scenario = scenario(case, n, quick)?;
            let s = shoal(case, &scenario, seed)?;
            let f = foca_default(case, &scenario, seed)?;
            if k == TUNE_CASE {
                let tuned = foca_tuned(case, &scenario, seed, s.bytes_steady, f.bytes_steady)?;
                rows.extend([s, f, tuned]);
            } else {
                rows.extend([s, f]);
            }
        }
    }
    Ok(rows)
}
