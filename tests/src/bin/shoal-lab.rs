//! `shoal-lab`: N real agents (the `shoal` agent or Serf), one network
//! namespace each, on a bridge; the Serf comparison (`bench`), a mesh to
//! play with (`up`), and `clean` for leftovers. Needs root.
#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use shoal_tests::lab::bench::{self, Timing};
use shoal_tests::lab::{Lab, System, install_signal_cleanup, netns};

/// Real agents in network namespaces.
#[derive(Debug, Parser)]
#[command(name = "shoal-lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    /// The `shoal` agent, `--profile lan` (the default).
    Shoal,
    /// The `shoal` agent, `--profile fast`.
    ShoalFast,
    Serf,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The `shoal` binary.
    #[arg(long, env = "SHOAL_BIN", default_value = "target/release/shoal")]
    shoal_bin: PathBuf,
    /// Where logs and data directories go (default: a new one under /tmp).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Names the namespaces (`shlab-TAG-*`); default from the process id.
    #[arg(long)]
    tag: Option<String>,
    /// Addresses are 10.OCTET.0.0/16.
    #[arg(long, default_value_t = 77)]
    octet: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure each system at each size, the same steps for all; one JSON
    /// object per (system, N) to `--out`.
    Bench {
        #[command(flatten)]
        common: Common,
        /// Systems, comma-separated, in this order.
        #[arg(long, value_delimiter = ',', default_value = "shoal,serf")]
        system: Vec<Which>,
        /// Sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10")]
        nodes: Vec<usize>,
        /// The JSONL file (appended to).
        #[arg(long)]
        out: PathBuf,
        /// Short windows for development (about a minute per run).
        #[arg(long)]
        quick: bool,
        /// Seconds from the mesh formed to the steady window.
        #[arg(long)]
        settle: Option<u64>,
        /// The steady window, seconds.
        #[arg(long)]
        window: Option<u64>,
        /// Seconds of 5% loss.
        #[arg(long)]
        loss: Option<u64>,
        /// Kill-and-rejoin rounds (full: 5, quick: 2).
        #[arg(long)]
        rounds: Option<usize>,
        /// Formations to time, each on a fresh lab (full: 5, quick: 1).
        #[arg(long)]
        joins: Option<usize>,
    },
    /// Start N agents, wait until they all see each other, print how to reach
    /// them, and keep them until Ctrl-C.
    Up {
        #[command(flatten)]
        common: Common,
        /// The system.
        #[arg(long, default_value = "shoal")]
        system: Which,
        /// Agents.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
    },
    /// Remove leftover lab namespaces (and every process in them).
    Clean {
        /// Only those whose name starts with this.
        #[arg(long, default_value = netns::PREFIX)]
        prefix: String,
    },
}

fn system(which: Which, common: &Common) -> Result<System> {
    Ok(match which {
        Which::Shoal | Which::ShoalFast => {
            let bin = std::fs::canonicalize(&common.shoal_bin)
                .with_context(|| format!("{} (cargo build --release -p shoal-node)", common.shoal_bin.display()))?;
            let profile = if which == Which::ShoalFast { "fast" } else { "lan" };
            System::Shoal { bin, profile: profile.into() }
        }
        Which::Serf => {
            anyhow::ensure!(
                std::process::Command::new("serf").arg("version").output().is_ok(),
                "serf not found: apt-get install -y serf"
            );
            System::Serf
        }
    })
}

fn work_dir(common: &Common) -> Result<PathBuf> {
    let dir = common.dir.clone().unwrap_or_else(|| PathBuf::from(format!("/tmp/shoal-lab-{}", std::process::id())));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn tag(common: &Common) -> String {
    common.tag.clone().unwrap_or_else(|| format!("p{}", std::process::id() % 1_000_000))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = install_signal_cleanup().and_then(|()| run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Bench { common, system: systems, nodes, out, quick, settle, window, loss, rounds, joins } => {
            let mut timing = if quick { Timing::quick() } else { Timing::full() };
            timing.settle = settle.map_or(timing.settle, Duration::from_secs);
            timing.window = window.map_or(timing.window, Duration::from_secs);
            timing.loss = loss.map_or(timing.loss, Duration::from_secs);
            timing.rounds = rounds.unwrap_or(timing.rounds);
            timing.joins = joins.unwrap_or(timing.joins).max(1);
            let dir = work_dir(&common)?;
            for &n in &nodes {
                for &which in &systems {
                    let sys = system(which, &common)?;
                    let run_dir = dir.join(format!("{}-{n}", sys.name()));
                    let mut lab = Lab::new(sys.clone(), n, &tag(&common), common.octet, &run_dir)?;
                    let mut row =
                        bench::run(&mut lab, &timing).with_context(|| format!("logs in {}", run_dir.display()))?;
                    drop(lab);
                    for extra in 1..timing.joins {
                        let join_dir = run_dir.join(format!("join-{extra}"));
                        let mut lab = Lab::new(sys.clone(), n, &tag(&common), common.octet, &join_dir)?;
                        let join = bench::join(&mut lab, &timing)
                            .with_context(|| format!("logs in {}", join_dir.display()))?;
                        row.add_join(join);
                    }
                    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&out)?;
                    writeln!(file, "{}", serde_json::to_string(&row)?)?;
                    println!("{}", serde_json::to_string(&row)?);
                }
            }
            Ok(())
        }
        Command::Up { common, system: which, nodes } => {
            let sys = system(which, &common)?;
            let dir = work_dir(&common)?;
            let mut lab = Lab::new(sys, nodes, &tag(&common), common.octet, &dir)?;
            let started = lab.start_all()?;
            let formed = lab.wait_all_see_all(Duration::from_secs(120)).context("the mesh did not form")?;
            println!(
                "{nodes} agents see each other {:.2} s after the last one started",
                (formed - started).as_secs_f64()
            );
            for i in 0..lab.len() {
                println!(
                    "a{i}  {}  pid {}  ns {}  log {}",
                    lab.net.addr(i),
                    lab.pid(i).unwrap_or(0),
                    lab.net.host(i),
                    lab.log_path(i).display()
                );
            }
            let example = match &lab.system {
                System::Shoal { bin, .. } => format!("{} members --api 127.0.0.1:7947", bin.display()),
                System::Serf => "serf members -rpc-addr 127.0.0.1:7373".into(),
            };
            println!(
                "try: ip netns exec {} {example}\nCtrl-C stops the agents and removes the namespaces.",
                lab.net.host(0)
            );
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Command::Clean { prefix } => {
            println!("removed {} namespaces", netns::clean(&prefix));
            Ok(())
        }
    }
}
