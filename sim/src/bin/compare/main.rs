//! `shoal-compare`: Shoal against the systems users would pick instead, in
//! one run on one machine (issue 6). `scripts/bench.sh` drives it.
//!
//! - `sim`: every comparison scenario with `--impl shoal` and `--impl foca`
//!   in the simulator (same seed, network and faults), plus foca tuned to
//!   Shoal's bytes per node per second.
//! - `chitchat`: N chitchat nodes in one process over its channel transport
//!   (tokio's paused clock: virtual time) against N Shoal nodes in the
//!   simulator's loopback-like setting.
//! - `report`: reads the JSON results (and `serf.jsonl` from `shoal-lab bench`) and writes
//!   BENCHMARKS.md with its SVG plots; `net` replaces only its real-network
//!   section (after `scripts/bench-serf.sh` alone).

mod chitchat_run;
mod plots;
mod report;
mod rows;
mod sim_run;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Shoal against foca, chitchat and Serf, measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "shoal-compare", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Shoal and foca through the comparison scenarios in the simulator.
    Sim {
        /// Cluster sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100")]
        nodes: Vec<usize>,
        /// The seed every run uses.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Shorter runs (for `bench.sh --quick`).
        #[arg(long)]
        quick: bool,
        /// Where to write the results (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// chitchat against Shoal: convergence and bytes per node per second.
    Chitchat {
        /// Cluster sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,100")]
        nodes: Vec<usize>,
        /// Where to write the results (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes BENCHMARKS.md and its SVGs from the results in `--dir`.
    Report {
        /// The results directory (sim.json, chitchat.json, serf.json,
        /// machine.txt, commands.txt).
        #[arg(long)]
        dir: PathBuf,
        /// The markdown file to write.
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
        /// Where the SVGs go (linked relative to the markdown file).
        #[arg(long, default_value = "docs/bench")]
        svg_dir: PathBuf,
    },
    /// Replaces only the real-network (Serf) section of an existing
    /// BENCHMARKS.md with the lab results in `--dir` (serf.jsonl).
    Net {
        /// The results directory (serf.jsonl).
        #[arg(long)]
        dir: PathBuf,
        /// The markdown file to update.
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
    },
}

fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn write_json<T: serde::Serialize>(path: &PathBuf, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim { nodes, seed, quick, out } => {
            sim_run::run_all(&nodes, seed, quick).and_then(|r| write_json(&out, &r))
        }
        Command::Chitchat { nodes, out } => chitchat_run::run_all(&nodes).and_then(|r| write_json(&out, &r)),
        Command::Report { dir, out, svg_dir } => report::write(&dir, &out, &svg_dir),
        Command::Net { dir, out } => report::splice_net(&dir, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say(&format!("error: {error:#}"));
            ExitCode::from(2)
        }
    }
}
