//! `shoal`: the Shoal agent and its CLI.

mod local;
mod output;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use shoal_node::client::{ApiTarget, Client};
use shoal_node::config::{AgentArgs, DEFAULT_API};
use shoal_node::crypto::ClusterKey;
use shoal_node::spec::{self, SpecFile};
use shoal_node::tls::Trust;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Parser)]
#[command(name = "shoal", version, about = "A leaderless compute mesh: agent and CLI")]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "SHOAL_LOG_FORMAT", value_enum, default_value = "human")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an agent: join the mesh and serve the local API.
    Agent(Box<AgentArgs>),
    /// Print a new random cluster key.
    Keygen,
    /// Print a new random API token, for a line of --api-token-file
    /// (`admin TOKEN` or `read TOKEN`).
    Token,
    /// List the members an agent knows.
    Members {
        #[command(flatten)]
        api: ApiArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Estimate the round trip between two members from their network
    /// coordinates (between A and this agent if B is left out). Names or
    /// ids; nothing is measured.
    Rtt {
        /// A member's name or id (or a unique prefix of its id).
        a: String,
        /// Another; default: the agent asked.
        b: Option<String>,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Show an agent's own state.
    Status {
        #[command(flatten)]
        api: ApiArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask an agent to leave the mesh gracefully and stop.
    Leave {
        #[command(flatten)]
        api: ApiArg,
    },
    /// Submit a workload spec (TOML or JSON file) to the mesh, or replace
    /// the workload of the same name.
    Submit {
        /// The spec file (`-` reads standard input).
        file: PathBuf,
        #[command(flatten)]
        api: ApiArg,
    },
    /// List the workloads: replicas asked for, where they are placed, state.
    Workloads {
        #[command(flatten)]
        api: ApiArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one workload: its spec and where each replica is placed.
    Workload {
        name: String,
        #[command(flatten)]
        api: ApiArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a workload from the mesh (every copy stops).
    Delete {
        name: String,
        #[command(flatten)]
        api: ApiArg,
    },
    /// The mesh's cluster keys: list them, or install, use or remove one on
    /// every live agent (rotation: install B, use B, remove A).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        #[command(flatten)]
        api: ApiArg,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Start N agents on this machine (loopback), wait until they converge,
    /// and keep them running until Ctrl-C.
    Local(local::LocalArgs),
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Which keys every live agent holds, and on how many each is primary.
    List,
    /// Hold a new key too (64 hex digits, from `shoal keygen`).
    Install { key: String },
    /// Seal with this key from now on (it must be installed everywhere).
    Use {
        /// The key, or its 8-digit id.
        key: String,
    },
    /// Drop a key (it must not be the primary anywhere).
    Remove {
        /// The key, or its 8-digit id.
        key: String,
    },
}

#[derive(Clone, Debug, clap::Args)]
struct ApiArg {
    /// The agent's API: HOST:PORT, or https://HOST:PORT for an agent that
    /// serves TLS.
    #[arg(long, env = "SHOAL_API", default_value = DEFAULT_API, global = true)]
    api: String,
    /// The API token, for an agent with --api-token-file.
    #[arg(long, env = "SHOAL_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Trust the agent's TLS certificate if it was issued by this CA (a PEM
    /// file; the agent's self-signed cert.pem works too).
    #[arg(long, env = "SHOAL_CA_CERT", global = true, conflicts_with = "tls_fingerprint")]
    ca_cert: Option<PathBuf>,
    /// Trust exactly the agent certificate with this SHA-256 fingerprint
    /// (the agent logs it, and keeps it in <data-dir>/api-tls/fingerprint).
    #[arg(long, env = "SHOAL_TLS_FINGERPRINT", global = true)]
    tls_fingerprint: Option<String>,
}

impl ApiArg {
    fn client(&self) -> anyhow::Result<Client> {
        let trust = match (&self.ca_cert, &self.tls_fingerprint) {
            (Some(path), _) => Some(Trust::CaFile(path.clone())),
            (None, Some(pin)) => Some(Trust::Fingerprint(shoal_node::tls::parse_fingerprint(pin)?)),
            (None, None) => None,
        };
        let target = ApiTarget::parse(&self.api, trust).map_err(|why| anyhow::anyhow!("--api {why}"))?;
        Ok(Client::connect(&target, self.token.clone())?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, matches!(cli.command, Command::Agent(_)));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            output::error(&error);
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let log_args = cli.log_format_args();
    match cli.command {
        Command::Agent(args) => {
            let settings = args.resolve()?;
            unblock_stop_signals()?;
            runtime()?.block_on(shoal_node::agent::run(settings, shutdown_signal()))?;
            Ok(())
        }
        Command::Keygen => {
            output::line(&ClusterKey::generate().to_hex());
            Ok(())
        }
        Command::Token => {
            output::line(&shoal_node::auth::generate_token());
            Ok(())
        }
        Command::Members { api, json } => {
            let client = api.client()?;
            let members = client.members()?;
            if json {
                return output::json(&members);
            }
            // Best effort: an agent without coordinates still lists its members.
            let rtts = client.coordinates().map(|c| output::rtts_by_id(&c)).unwrap_or_default();
            output::members_table(&members, &rtts)
        }
        Command::Rtt { a, b, api } => {
            let view = api.client()?.coordinates()?;
            let (a, a_coordinate) = output::find_coordinate(&view, &a)?;
            let (b, b_coordinate) = match b {
                Some(b) => output::find_coordinate(&view, &b)?,
                None => output::find_coordinate(&view, &view.id)?,
            };
            let rtt = shoal_protocol::estimate_rtt(&a_coordinate, &b_coordinate)
                .context("the two coordinates cannot be compared (different dimensions, or not valid)")?;
            output::line(&format!("estimated rtt from {a} to {b}: {:.3} ms", rtt.as_secs_f64() * 1e3));
            Ok(())
        }
        Command::Status { api, json } => {
            let me = api.client()?.self_info()?;
            if json { output::json(&me) } else { output::status(&me) }
        }
        Command::Leave { api } => {
            api.client()?.leave()?;
            output::line(&format!("the agent at {} is leaving the mesh", api.api));
            Ok(())
        }
        Command::Submit { file, api } => {
            let spec = read_spec(&file)?;
            let (detail, new) = api.client()?.submit(&SpecFile::from_spec(&spec))?;
            let verb = if new { "submitted" } else { "replaced" };
            output::line(&format!("workload {} {verb}; `shoal workload {}` shows it", detail.workload.name, spec.name));
            output::workload_detail(&detail)
        }
        Command::Workloads { api, json } => {
            let workloads = api.client()?.workloads()?;
            if json { output::json(&workloads) } else { output::workloads_table(&workloads) }
        }
        Command::Workload { name, api, json } => {
            let detail = api.client()?.workload(&name)?;
            if json { output::json(&detail) } else { output::workload_detail(&detail) }
        }
        Command::Delete { name, api } => {
            api.client()?.delete(&name)?;
            output::line(&format!("workload {name} deleted; every node stops its replicas"));
            Ok(())
        }
        Command::Keys { action, api, json } => {
            let client = api.client()?;
            let view = match action {
                KeysAction::List => client.keys()?,
                KeysAction::Install { key } => client.change_keys("install", &key)?,
                KeysAction::Use { key } => client.change_keys("use", &key)?,
                KeysAction::Remove { key } => client.change_keys("remove", &key)?,
            };
            if json {
                output::json(&view)?
            } else {
                output::keys(&view)
            }
            anyhow::ensure!(
                view.failures.is_empty(),
                "{} of {} agents did not apply it",
                view.failures.len(),
                view.agents
            );
            Ok(())
        }
        Command::Local(args) => runtime()?.block_on(local::run(args, log_args)),
    }
}

/// Reads and checks a spec file; errors name the file and the field.
fn read_spec(file: &Path) -> anyhow::Result<shoal_protocol::WorkloadSpec> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read the spec from standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    spec::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

impl Cli {
    fn log_format_args(&self) -> Vec<String> {
        match self.log_format {
            LogFormat::Human => vec![],
            LogFormat::Json => vec!["--log-format".into(), "json".into()],
        }
    }
}

/// One thread is plenty for an agent, and keeps it small.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the tokio runtime")
}

/// A parent may have started this process with SIGTERM, SIGINT or SIGHUP
/// blocked (the mask survives `exec`): the agent would then never see them,
/// so never leave gracefully, and every workload it starts would inherit the
/// mask and ignore the driver's SIGTERM. Unblock them before any thread or
/// child exists.
fn unblock_stop_signals() -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    let mut set = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(signal);
    }
    sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None).context("cannot unblock SIGTERM, SIGINT and SIGHUP")
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

fn init_logging(format: LogFormat, agent: bool) {
    let default = if agent { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let output = match format {
        LogFormat::Human => output.boxed(),
        LogFormat::Json => output.json().boxed(),
    };
    let _ = tracing_subscriber::registry().with(output.with_filter(filter)).try_init();
}
