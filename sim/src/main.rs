//! `shoal-sim`: run a scenario, sweep seeds, list the built-ins.

use std::io::{BufWriter, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shoal_sim::impls::Impl;
use shoal_sim::scenario::{BUILTINS, BugKind};
use shoal_sim::units::Dur;
use shoal_sim::{Report, Scenario, Simulation, shrink};

/// The deterministic simulator: the real Shoal protocol, thousands of nodes,
/// virtual time, partitions, loss, pauses and crashes. Same seed, same run.
#[derive(Debug, Parser)]
#[command(name = "shoal-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lists the built-in scenarios, one line each.
    List,
    /// Prints a scenario as TOML (a starting point for your own file).
    Show {
        /// A built-in name or a TOML file.
        scenario: String,
    },
    /// Runs a scenario; exits non-zero if a check fails.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A built-in name (see `list`) or a TOML file.
    scenario: String,
    /// Override the number of nodes.
    #[arg(long)]
    nodes: Option<usize>,
    /// The seed (default: drawn from the clock, and printed).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Sweep seeds A..B (B excluded) and report the failures.
    #[arg(long, value_name = "A..B")]
    seeds: Option<String>,
    /// Override the simulated duration (e.g. 10m, 90s).
    #[arg(long)]
    duration: Option<Dur>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Write every delivered message, timer, event and fault as JSONL.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Draw membership and detection over time as SVG.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Break the protocol on purpose (needs `--features bug-injection`).
    #[arg(long, value_parser = parse_bug)]
    bug: Option<BugKind>,
    /// Which membership implementation to drive: shoal, or foca (for
    /// comparison; needs `--features compare`).
    #[arg(long = "impl", default_value = "shoal")]
    implementation: Impl,
    /// If the run fails, search for the smallest scenario that still fails
    /// the same check, write it as TOML and print the command that replays
    /// it. (A sweep always shrinks its first failure of each check.)
    #[arg(long)]
    shrink: bool,
    /// Most simulation runs one shrink may spend; the result is the same
    /// for the same budget. 0: a sweep does not shrink.
    #[arg(long, default_value_t = 200, value_name = "RUNS")]
    shrink_runs: u32,
    /// When no smaller candidate fails on the current seed, try each on this
    /// many following seeds too.
    #[arg(long, default_value_t = 8, value_name = "SEEDS")]
    shrink_seeds: u64,
    /// Also stop shrinking after this much wall time (cuts the search, so
    /// the result depends on the machine; the output says so).
    #[arg(long, value_name = "DURATION")]
    shrink_time: Option<Dur>,
    /// Where to write the shrunk scenario (default:
    /// `<scenario>-seed<seed>-shrunk.toml` in the current folder).
    #[arg(long, value_name = "FILE.toml", conflicts_with = "seeds")]
    shrink_out: Option<PathBuf>,
}

fn parse_bug(text: &str) -> Result<BugKind, String> {
    match text {
        "ignore-refutations" => Ok(BugKind::IgnoreRefutations),
        "no-anti-entropy" => Ok(BugKind::NoAntiEntropy),
        _ => Err("expected ignore-refutations or no-anti-entropy".to_owned()),
    }
}

fn parse_range(text: &str) -> Result<std::ops::Range<u64>> {
    let (a, b) = text.split_once("..").context("--seeds takes A..B")?;
    let (a, b): (u64, u64) = (a.trim().parse()?, b.trim().parse()?);
    if b <= a {
        bail!("--seeds {text}: empty range");
    }
    Ok(a..b)
}

fn out(text: &str) {
    use std::io::Write;
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = writeln!(std::io::stdout(), "{text}");
}

#[allow(clippy::print_stderr)]
fn err(text: &str) {
    eprintln!("{text}");
}

fn run_one(args: &RunArgs, scenario: &Scenario, seed: u64, progress: bool) -> Result<Report> {
    let sink: Option<Box<dyn std::io::Write>> = match &args.trace {
        Some(path) => Some(Box::new(BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ))),
        None => None,
    };
    let mut sim = Simulation::with_impl(scenario.clone(), seed, sink, args.implementation)?;
    sim.leak_on_finish();
    let bar = if progress && std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(scenario.duration.0.as_secs()), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} simulated s ({elapsed}, eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("{} seed {seed}", scenario.name));
        let handle = bar.clone();
        sim.on_progress(move |now, _| handle.set_position(now / 1_000_000));
        Some(bar)
    } else {
        None
    };
    let mut report = sim.run();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    report.replay = shoal_sim::report::replay_command(&args.scenario, scenario, seed);
    if args.implementation != Impl::Shoal {
        report.replay = report.replay.replacen(" --", " --features compare --", 1)
            + &format!(" --impl {}", args.implementation.name());
    }
    Ok(report)
}

/// Shrinks the failing run of `scenario` with `seed`, writes the result and
/// prints what it found.
fn shrink(args: &RunArgs, scenario: &Scenario, seed: u64) -> Result<()> {
    let options = shrink::Options {
        max_runs: args.shrink_runs,
        nearby_seeds: args.shrink_seeds,
        time_limit: args.shrink_time.map(|d| d.0),
        implementation: args.implementation,
    };
    err(&format!(
        "shrinking `{}` seed {seed} (at most {} runs{}) ...",
        scenario.name,
        options.max_runs,
        args.shrink_time.map_or(String::new(), |t| format!(", {t} of wall time"))
    ));
    let shrunk = shrink::shrink(scenario, seed, &options, &mut |step| {
        err(&format!("  run {:>4}  {}  (seed {}; {})", step.run, step.change, step.seed, step.size));
    })?;
    let path = match &args.shrink_out {
        Some(path) => path.clone(),
        None => PathBuf::from(format!("{}-seed{seed}-shrunk.toml", file_safe(&scenario.name))),
    };
    let shown = path.display().to_string();
    let file = shrunk.file(&shown, args.implementation);
    std::fs::write(&path, &file).with_context(|| format!("writing {shown}"))?;
    let text = format!("\n{}\n\n{file}", shrunk.summary(&shown, args.implementation));
    // With --json, stdout is for the JSON report alone.
    if args.json {
        err(&text)
    } else {
        out(&text)
    }
    Ok(())
}

/// A scenario name as a file name (a name read from a file may hold a path).
fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn run(args: &RunArgs) -> Result<bool> {
    let mut scenario = Scenario::load(&args.scenario)?;
    if let Some(nodes) = args.nodes {
        scenario = scenario.with_nodes(nodes);
    }
    if let Some(duration) = args.duration {
        scenario = scenario.with_duration(duration);
    }
    if args.bug.is_some() {
        scenario.bug = args.bug;
    }
    if let Some(range) = &args.seeds {
        let range = parse_range(range)?;
        let mut failures = Vec::new();
        let mut reports = Vec::new();
        // The first seed to fail each check, to shrink.
        let mut to_shrink: Vec<(&'static str, u64)> = Vec::new();
        for seed in range.clone() {
            let report = run_one(args, &scenario, seed, false)?;
            if !args.json {
                out(&report.one_line());
            }
            if !report.passed() {
                failures.push(report.replay.clone());
            }
            if let Some(check) = report.checks.iter().find(|c| c.verdict == shoal_sim::Verdict::Fail) {
                if !to_shrink.iter().any(|(name, _)| *name == check.name) {
                    to_shrink.push((check.name, seed));
                }
            }
            reports.push(report);
        }
        if args.json {
            out(&serde_json::to_string_pretty(&reports)?);
        } else {
            out(&format!(
                "\n{} seeds, {} failed{}",
                range.end - range.start,
                failures.len(),
                if failures.is_empty() { String::new() } else { format!(":\n  {}", failures.join("\n  ")) }
            ));
        }
        if args.shrink_runs > 0 {
            for (check, seed) in to_shrink {
                err(&format!("\n{check} failed first on seed {seed}: shrinking it"));
                // The sweep's verdict stands whatever the shrinker says.
                if let Err(error) = shrink(args, &scenario, seed) {
                    err(&format!("could not shrink seed {seed}: {error:#}"));
                }
            }
        }
        return Ok(failures.is_empty());
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs() % 1_000_000)
    });
    let report = run_one(args, &scenario, seed, true)?;
    if let Some(path) = &args.plot {
        shoal_sim::plot::write_svg(&report, path)?;
    }
    if args.json {
        out(&serde_json::to_string_pretty(&report)?);
    } else {
        out(&report.to_string());
    }
    if !report.passed() && args.json {
        err(&format!("FAIL: replay with: {}", report.replay));
    }
    if !report.passed() && args.shrink {
        shrink(args, &scenario, seed)?;
    }
    Ok(report.passed())
}

fn main() -> ExitCode {
    if let Ok(level) = std::env::var("SHOAL_SIM_LOG") {
        let level = level.parse().unwrap_or(tracing_subscriber::filter::LevelFilter::DEBUG);
        tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).init();
    }
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::List => {
            for name in BUILTINS {
                if let Some(s) = Scenario::builtin(name) {
                    out(&format!("{name:<20} {}", s.description));
                }
            }
            Ok(true)
        }
        Command::Show { scenario } => Scenario::load(scenario)
            .map_err(anyhow::Error::from)
            .and_then(|s| toml::to_string(&s).map_err(anyhow::Error::from))
            .map(|text| {
                out(&text);
                true
            }),
        Command::Run(args) => run(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            err(&format!("error: {error:#}"));
            ExitCode::from(2)
        }
    }
}
