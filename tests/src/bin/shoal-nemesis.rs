//! `shoal-nemesis`: the Jepsen-style nemesis on real agents in network
//! namespaces (tests/src/nemesis). Needs root. Exits non-zero on any
//! violation, printing the seed and the command that replays it.
#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use shoal_tests::lab::install_signal_cleanup;
use shoal_tests::nemesis::{self, Options};

/// Faults from one seed against N real agents, with checks after every heal.
#[derive(Debug, Parser)]
#[command(name = "shoal-nemesis", version, args_override_self = true)]
struct Cli {
    /// Seeds the schedule (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Fault events.
    #[arg(long, default_value_t = 100)]
    events: usize,
    /// Agents (at least 3).
    #[arg(long, default_value_t = 7)]
    agents: usize,
    /// The `shoal` binary.
    #[arg(long, env = "SHOAL_BIN", default_value = "target/release/shoal")]
    shoal_bin: PathBuf,
    /// Run dir (default: /tmp/shoal-nemesis-SEED-PID).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Names the namespaces (`shlab-TAG-*`); default from the process id.
    #[arg(long)]
    tag: Option<String>,
    /// Addresses are 10.OCTET.0.0/16.
    #[arg(long, default_value_t = 80)]
    octet: u8,
    /// Stop at the first event with a violation.
    #[arg(long)]
    stop_on_failure: bool,
    /// Start no new event after this many minutes (the summary covers the
    /// events run).
    #[arg(long)]
    minutes: Option<u64>,
    /// Print the seed's schedule (one JSON event a line) and exit: what a
    /// replay will do, without root.
    #[arg(long)]
    print_schedule: bool,
    /// Also write the summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match install_signal_cleanup().and_then(|()| run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<bool> {
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    });
    if cli.print_schedule {
        for event in nemesis::schedule::schedule(seed, cli.events, cli.agents) {
            println!("{}", serde_json::to_string(&event)?);
        }
        return Ok(true);
    }
    let pid = std::process::id();
    let options = Options {
        seed,
        events: cli.events,
        agents: cli.agents,
        shoal_bin: cli.shoal_bin.clone(),
        dir: cli.dir.unwrap_or_else(|| PathBuf::from(format!("/tmp/shoal-nemesis-{seed}-{pid}"))),
        tag: cli.tag.unwrap_or_else(|| format!("n{}", pid % 1_000_000)),
        octet: cli.octet,
        keep_going: !cli.stop_on_failure,
        deadline: cli.minutes.map(|m| std::time::Instant::now() + std::time::Duration::from_secs(m * 60)),
        replay_prefix: format!("sudo target/release/shoal-nemesis --shoal-bin {}", cli.shoal_bin.display()),
    };
    let summary = nemesis::run(&options)?;
    print!("{}", summary.text());
    if let Some(path) = cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)?;
    }
    let passed = summary.violations.is_empty() && summary.lost == 0;
    if !passed {
        println!("replay: {}", options.replay_command(options.events));
    }
    Ok(passed)
}
