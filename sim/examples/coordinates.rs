//! Network coordinates on the sites topology (`sim/scenarios/sites.toml`):
//! the relative error of estimated round trips over time, with Shoal's
//! coordinate config and with Serf's (coordinate in every ack), printed as a
//! table and drawn as an SVG.
//!
//! ```text
//! cargo run --release -p shoal-sim --example coordinates -- [NODES] [SEED] [OUT.svg] [SECONDS]
//! ```

// An example's output is its point.
#![allow(clippy::print_stdout)]

use anyhow::{Context, Result};
use shoal_sim::impls::shoal::ShoalImpl;
use shoal_sim::protocol::CoordinateConfig;
use shoal_sim::{Scenario, Simulation};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodes: usize = args.first().map_or(Ok(500), |a| a.parse()).context("NODES")?;
    let seed: u64 = args.get(1).map_or(Ok(1), |a| a.parse()).context("SEED")?;
    let out = args.get(2).cloned().unwrap_or_else(|| "coordinates.svg".to_owned());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/sites.toml");
    let mut scenario = Scenario::load(path)?.with_nodes(nodes);
    if let Some(secs) = args.get(3) {
        scenario = scenario.with_duration(shoal_sim::units::Dur::secs(secs.parse().context("SECONDS")?));
    }
    let mut runs = Vec::new();
    let mut configs: Vec<(&str, CoordinateConfig)> =
        vec![("shoal", CoordinateConfig::shoal()), ("serf", CoordinateConfig::serf())];
    // COORD_VARIANTS="cc=0.5,ce=0.5;dims=4" runs these instead (for tuning).
    let variants = std::env::var("COORD_VARIANTS").unwrap_or_default();
    let labels: Vec<String> = variants.split(';').filter(|v| !v.is_empty()).map(str::to_owned).collect();
    if !labels.is_empty() {
        configs.clear();
        for label in &labels {
            let mut c = CoordinateConfig::serf();
            for kv in label.split(',') {
                let (k, v) = kv.split_once('=').context("key=value")?;
                match k {
                    "cc" => c.cc = v.parse()?,
                    "ce" => c.ce = v.parse()?,
                    "dims" => c.dimensionality = v.parse()?,
                    "adj" => c.adjustment_window = v.parse()?,
                    "filter" => c.latency_filter = v.parse()?,
                    "rho" => c.gravity_rho = v.parse()?,
                    "err" => c.error_max = v.parse()?,
                    "warmup" => c.warmup_samples = v.parse()?,
                    "share" => c.share_one_in = v.parse()?,
                    _ => anyhow::bail!("unknown key {k}"),
                }
            }
            configs.push((label.as_str(), c));
        }
    }
    for (label, coordinate) in configs {
        let mut config = scenario.preset.config();
        config.coordinate = coordinate;
        let imp = ShoalImpl::with_config(&scenario, config)?;
        let report = Simulation::with_implementation(scenario.clone(), seed, None, Box::new(imp))?.run();
        let check = report.checks.iter().find(|c| c.name == "coordinates").context("sites scenario")?;
        let column =
            |name: &str| check.samples.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap_or_default();
        let (t, median, p95) = (column("t"), column("median"), column("p95"));
        let (same_median, same_p95, view_median, view_p95, coverage) = (
            column("same_site_median"),
            column("same_site_p95"),
            column("view_median"),
            column("view_p95"),
            column("view_coverage"),
        );
        println!(
            "== {label}: {} nodes, seed {seed}: {} | bytes/node/s mean over the second half {:.0}",
            nodes, check.detail, report.bytes_per_node_s_second_half
        );
        println!("   t(s)  median    p95  same-site median/p95   view median/p95  held");
        for i in (0..t.len()).step_by(if t.len() > 40 { 12 } else { 2 }) {
            println!(
                "  {:5.0} {:7.3} {:7.3}    {:7.3} {:7.3}     {:7.3} {:7.3} {:4.0}%",
                t[i],
                median[i],
                p95[i],
                same_median[i],
                same_p95[i],
                view_median[i],
                view_p95[i],
                coverage[i] * 100.0
            );
        }
        runs.push((label, t, median, p95));
    }
    shoal_sim::plot::write_coordinates_svg(
        &runs,
        std::path::Path::new(&out),
        &format!("{nodes} nodes in 4 sites, seed {seed}"),
    )?;
    println!("wrote {out}");
    Ok(())
}
