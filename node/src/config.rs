//! Agent settings: flags, then `SHOAL_*` environment variables (clap reads
//! both: a flag wins over its variable), then a TOML file (`--config`), then
//! defaults.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use shoal_protocol::{Capacity, Config, DRIVERS_LABEL, Driver, WorkloadConfig};

use crate::auth::{TokenFileError, Tokens};
use crate::crypto::{ClusterKey, KeyError};
use crate::tls::{ServerTls, TlsError, TlsSource};

/// The default gossip port.
pub const DEFAULT_BIND: &str = "0.0.0.0:7946";
/// The default API address: loopback only.
pub const DEFAULT_API: &str = "127.0.0.1:7947";

/// Protocol timing presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// A local network (memberlist's LAN defaults).
    Lan,
    /// Links across sites.
    Wan,
    /// Loopback: fast timers for one machine and tests.
    Local,
    /// A LAN, detecting crashes in about half `lan`'s time at N = 50 to 100
    /// for a third more probe traffic (750 ms period, a 2.75 s suspicion
    /// floor that a 3 s stall survives).
    Fast,
}

impl Profile {
    /// The protocol preset.
    pub fn config(self) -> Config {
        match self {
            Profile::Lan => Config::lan(),
            Profile::Wan => Config::wan(),
            Profile::Local => Config::local(),
            Profile::Fast => Config::fast(),
        }
    }

    /// The workload layer's preset.
    pub fn workload_config(self) -> WorkloadConfig {
        match self {
            Profile::Lan | Profile::Fast => WorkloadConfig::lan(),
            Profile::Wan => WorkloadConfig::wan(),
            Profile::Local => WorkloadConfig::local(),
        }
    }

    /// The name, as flags spell it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Lan => "lan",
            Profile::Wan => "wan",
            Profile::Local => "local",
            Profile::Fast => "fast",
        }
    }
}

/// `shoal agent` flags. Each also reads a `SHOAL_*` variable.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct AgentArgs {
    /// A TOML file with any of these settings (flags and variables win).
    #[arg(long, env = "SHOAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's name [default: the host name].
    #[arg(long, env = "SHOAL_NAME")]
    pub name: Option<String>,
    /// Where the node keeps its identity and generation [default: ~/.local/share/shoal].
    #[arg(long, env = "SHOAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The gossip address, HOST:PORT (IPv4 or IPv6) [default: 0.0.0.0:7946].
    #[arg(long, env = "SHOAL_BIND")]
    pub bind: Option<String>,
    /// The address peers should use, HOST:PORT [default: the bound address].
    #[arg(long, env = "SHOAL_ADVERTISE")]
    pub advertise: Option<String>,
    /// A member to join through: HOST:PORT (a DNS name works).
    /// Repeatable; retried until one answers.
    #[arg(long, env = "SHOAL_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,
    /// Find peers on the LAN with mDNS [default: on when no --join is given].
    #[arg(long, overrides_with = "no_mdns")]
    pub mdns: bool,
    /// Do not use mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// The HTTP API address, HOST:PORT [default: 127.0.0.1:7947]. Any
    /// address but loopback needs TLS and --api-token-file.
    #[arg(long, env = "SHOAL_API")]
    pub api: Option<String>,
    /// The API's tokens: one a line, `admin TOKEN` or `read TOKEN`
    /// (`shoal token` prints one). Required off loopback; on loopback,
    /// tokens are required once given.
    #[arg(long, env = "SHOAL_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// The API's TLS certificate chain, PEM (with --api-tls-key).
    #[arg(long, env = "SHOAL_API_TLS_CERT", requires = "api_tls_key")]
    pub api_tls_cert: Option<PathBuf>,
    /// The private key of --api-tls-cert, PEM.
    #[arg(long, env = "SHOAL_API_TLS_KEY", requires = "api_tls_cert")]
    pub api_tls_key: Option<PathBuf>,
    /// Serve the API over TLS with a certificate the agent makes once and
    /// keeps in <data-dir>/api-tls/ (its fingerprint is logged at start).
    #[arg(long, env = "SHOAL_API_TLS_SELF_SIGNED", conflicts_with = "api_tls_cert")]
    pub api_tls_self_signed: bool,
    /// The cluster key (64 hex digits, from `shoal keygen`).
    #[arg(long, env = "SHOAL_CLUSTER_KEY", hide_env_values = true)]
    pub cluster_key: Option<String>,
    /// A file holding the cluster key.
    #[arg(long, env = "SHOAL_CLUSTER_KEY_FILE")]
    pub cluster_key_file: Option<PathBuf>,
    /// CPU offered, in millicores [default: detected].
    #[arg(long, env = "SHOAL_CPU")]
    pub cpu: Option<u32>,
    /// Memory offered: bytes, or with a unit (512MiB, 4GiB, 2G) [default: detected].
    #[arg(long, env = "SHOAL_MEMORY")]
    pub memory: Option<String>,
    /// A key=value label. Repeatable.
    #[arg(long = "label", env = "SHOAL_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// The drivers this agent runs replicas with, e.g. `docker` to refuse
    /// `exec` work on this machine [default: exec,docker]. Peers place a
    /// replica only on an agent that offers its driver.
    #[arg(long, env = "SHOAL_DRIVERS", value_delimiter = ',')]
    pub drivers: Vec<String>,
    /// Protocol timing preset [default: lan].
    #[arg(long, env = "SHOAL_PROFILE", value_enum)]
    pub profile: Option<Profile>,
}

/// The same settings, from a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileSettings {
    name: Option<String>,
    data_dir: Option<PathBuf>,
    bind: Option<String>,
    advertise: Option<String>,
    join: Option<Vec<String>>,
    mdns: Option<bool>,
    api: Option<String>,
    api_token_file: Option<PathBuf>,
    api_tls_cert: Option<PathBuf>,
    api_tls_key: Option<PathBuf>,
    api_tls_self_signed: Option<bool>,
    cluster_key: Option<String>,
    cluster_key_file: Option<PathBuf>,
    cpu: Option<u32>,
    memory: Option<Memory>,
    labels: Option<BTreeMap<String, String>>,
    drivers: Option<Vec<String>>,
    profile: Option<Profile>,
}

/// `memory = "4GiB"` or `memory = 4294967296` in a file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum Memory {
    Bytes(u64),
    Text(String),
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Memory::Bytes(bytes) => write!(f, "{bytes}"),
            Memory::Text(text) => f.write_str(text),
        }
    }
}

impl Memory {
    /// The number of bytes, if the text is a size.
    pub fn bytes(&self) -> Option<u64> {
        match self {
            Memory::Bytes(bytes) => Some(*bytes),
            Memory::Text(text) => parse_bytes(text),
        }
    }
}

/// Why the settings are unusable. The agent did not start.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {source}")]
    ParseFile { path: PathBuf, source: Box<toml::de::Error> },
    #[error("--{flag} {value:?}: {why}")]
    Invalid { flag: &'static str, value: String, why: String },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Tokens(#[from] TokenFileError),
    #[error("the API's TLS: {0}")]
    Tls(#[from] TlsError),
    /// An API beyond loopback without TLS or tokens.
    #[error(
        "--api {api} can be reached from other machines, and anyone who reaches it could run processes on \
         every node, so it needs {missing}. {fix}Or keep the API on loopback (--api 127.0.0.1:{port}) and \
         reach it through an SSH tunnel."
    )]
    ExposedApi { api: SocketAddr, port: u16, missing: &'static str, fix: String },
}

/// Everything the agent needs, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    pub name: String,
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    pub advertise: Option<SocketAddr>,
    /// As given: resolved (and retried) by the agent.
    pub join: Vec<String>,
    pub mdns: bool,
    pub api: SocketAddr,
    /// TLS and tokens for the API (both required off loopback).
    pub api_security: ApiSecurity,
    /// The key given with --cluster-key or --cluster-key-file. A keyring
    /// saved in the data dir wins over it (see `store::keyring`).
    pub cluster_key: Option<ClusterKey>,
    pub capacity: Capacity,
    pub labels: BTreeMap<String, String>,
    pub profile: Profile,
}

impl AgentArgs {
    /// Merges flags (and variables) over the file over the defaults.
    pub fn resolve(self) -> Result<Settings, SettingsError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let name = self.name.or(file.name).unwrap_or_else(default_name);
        let data_dir = self.data_dir.or(file.data_dir).unwrap_or_else(default_data_dir);
        let bind = socket_addr("bind", &self.bind.or(file.bind).unwrap_or_else(|| DEFAULT_BIND.into()))?;
        let advertise = self.advertise.or(file.advertise).map(|a| socket_addr("advertise", &a)).transpose()?;
        let join = if self.join.is_empty() { file.join.unwrap_or_default() } else { self.join };
        let mdns = if self.no_mdns {
            false
        } else if self.mdns {
            true
        } else {
            file.mdns.unwrap_or(join.is_empty())
        };
        let api = socket_addr("api", &self.api.or(file.api).unwrap_or_else(|| DEFAULT_API.into()))?;
        let security = SecurityArgs {
            token_file: self.api_token_file.or(file.api_token_file),
            cert: self.api_tls_cert.or(file.api_tls_cert),
            key: self.api_tls_key.or(file.api_tls_key),
            self_signed: self.api_tls_self_signed || file.api_tls_self_signed.unwrap_or(false),
        };
        let api_security = security.resolve(api, &data_dir, &name)?;
        let key_text = self.cluster_key.or(file.cluster_key);
        let key_file = self.cluster_key_file.or(file.cluster_key_file);
        let cluster_key = match (key_text, key_file) {
            (Some(text), _) => Some(ClusterKey::parse(&text)?),
            (None, Some(path)) => Some(ClusterKey::from_file(&path)?),
            (None, None) => None,
        };
        let detected = detect_capacity();
        let cpu_millis = self.cpu.or(file.cpu).unwrap_or(detected.cpu_millis);
        let memory_bytes = match self.memory.map(Memory::Text).or(file.memory) {
            Some(memory) => memory.bytes().ok_or_else(|| SettingsError::Invalid {
                flag: "memory",
                value: memory.to_string(),
                why: "use e.g. 4GiB".into(),
            })?,
            None => detected.memory_bytes,
        };
        let mut labels = file.labels.unwrap_or_default();
        for label in self.labels {
            let Some((key, value)) = label.split_once('=') else {
                return Err(SettingsError::Invalid { flag: "label", value: label, why: "use key=value".into() });
            };
            labels.insert(key.trim().to_string(), value.trim().to_string());
        }
        if let Some(reserved) = labels.keys().find(|key| key.starts_with(RESERVED_LABEL_PREFIX)) {
            return Err(SettingsError::Invalid {
                flag: "label",
                value: reserved.clone(),
                why: format!("label keys starting `{RESERVED_LABEL_PREFIX}` are Shoal's own (drivers: use --drivers)"),
            });
        }
        let drivers = if self.drivers.is_empty() { file.drivers.unwrap_or_default() } else { self.drivers };
        labels.insert(DRIVERS_LABEL.to_string(), offered_drivers(&drivers)?);
        let profile = self.profile.or(file.profile).unwrap_or(Profile::Lan);
        Ok(Settings {
            name,
            data_dir,
            bind,
            advertise,
            join,
            mdns,
            api,
            api_security,
            cluster_key,
            capacity: Capacity { cpu_millis, memory_bytes },
            labels,
            profile,
        })
    }
}

/// Label keys with this prefix are set by the agent, never by a user.
const RESERVED_LABEL_PREFIX: &str = "shoal.";

/// The drivers an agent offers, as the `shoal.drivers` label spells them:
/// every driver when none is named; each named once, in a stable order.
fn offered_drivers(named: &[String]) -> Result<String, SettingsError> {
    let mut offered: Vec<&str> = Vec::new();
    for name in named {
        let known =
            Driver::NAMES.iter().find(|known| **known == name.trim()).ok_or_else(|| SettingsError::Invalid {
                flag: "drivers",
                value: name.clone(),
                why: format!("unknown driver; name some of: {}", Driver::NAMES.join(", ")),
            })?;
        if !offered.contains(known) {
            offered.push(known);
        }
    }
    if offered.is_empty() {
        offered = Driver::NAMES.to_vec();
    }
    offered.sort_unstable();
    Ok(offered.join(","))
}

/// The API's protection: TLS and tokens, each optional on loopback.
#[derive(Clone, Debug, Default)]
pub struct ApiSecurity {
    pub tls: Option<ServerTls>,
    pub tokens: Option<Tokens>,
}

/// The API security settings as given.
#[derive(Debug, Default)]
struct SecurityArgs {
    token_file: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    self_signed: bool,
}

impl SecurityArgs {
    /// Refuses an API beyond loopback without both TLS and tokens, then
    /// loads them (making the self-signed certificate if asked).
    fn resolve(self, api: SocketAddr, data_dir: &Path, name: &str) -> Result<ApiSecurity, SettingsError> {
        let tls = match (self.cert, self.key, self.self_signed) {
            (Some(_), Some(_), true) => {
                return Err(SettingsError::Invalid {
                    flag: "api-tls-self-signed",
                    value: "true".into(),
                    why: "give either --api-tls-cert and --api-tls-key, or --api-tls-self-signed".into(),
                });
            }
            (Some(cert), Some(key), false) => Some(TlsSource::Files { cert, key }),
            (Some(cert), None, _) | (None, Some(cert), _) => {
                return Err(SettingsError::Invalid {
                    flag: "api-tls-cert",
                    value: cert.display().to_string(),
                    why: "--api-tls-cert and --api-tls-key go together: give both".into(),
                });
            }
            (None, None, true) => Some(TlsSource::SelfSigned),
            (None, None, false) => None,
        };
        if !api.ip().to_canonical().is_loopback() && (tls.is_none() || self.token_file.is_none()) {
            let mut fix = String::new();
            if tls.is_none() {
                fix.push_str("Add --api-tls-self-signed (or --api-tls-cert FILE --api-tls-key FILE). ");
            }
            if self.token_file.is_none() {
                fix.push_str(
                    "Add --api-token-file FILE, a file of lines `admin TOKEN` or `read TOKEN` \
                     (`shoal token` prints a new token). ",
                );
            }
            let missing = match (tls.is_none(), self.token_file.is_none()) {
                (true, true) => "TLS and a token file",
                (true, false) => "TLS",
                _ => "a token file",
            };
            return Err(SettingsError::ExposedApi { api, port: api.port(), missing, fix });
        }
        let tokens = self.token_file.as_deref().map(Tokens::from_file).transpose()?;
        let tls = match tls {
            Some(source) => {
                let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
                    names.push(name.to_string());
                }
                if !api.ip().is_unspecified() && !api.ip().is_loopback() {
                    names.push(api.ip().to_string());
                }
                names.dedup();
                Some(crate::tls::load_server(&source, data_dir, &names)?)
            }
            None => None,
        };
        Ok(ApiSecurity { tls, tokens })
    }
}

fn read_file(path: &Path) -> Result<FileSettings, SettingsError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| SettingsError::ReadFile { path: path.to_path_buf(), source })?;
    toml::from_str(&text)
        .map_err(|source| SettingsError::ParseFile { path: path.to_path_buf(), source: Box::new(source) })
}

/// Parses HOST:PORT, resolving a host name to its first address.
pub fn socket_addr(flag: &'static str, text: &str) -> Result<SocketAddr, SettingsError> {
    let invalid = |why: String| SettingsError::Invalid { flag, value: text.to_string(), why };
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let mut addrs = text.to_socket_addrs().map_err(|e| invalid(format!("{e}; use HOST:PORT, e.g. 127.0.0.1:7946")))?;
    addrs.next().ok_or_else(|| invalid("the name has no address".into()))
}

fn default_name() -> String {
    let name = sysinfo::System::host_name().unwrap_or_default();
    let name: String = name.chars().take(shoal_protocol::Metadata::MAX_NAME_LEN).collect();
    if name.is_empty() { "shoal".into() } else { name }
}

fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("shoal");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/shoal"),
        None => PathBuf::from("shoal-data"),
    }
}

/// The machine's CPUs (in millicores) and total memory.
pub fn detect_capacity() -> Capacity {
    let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    Capacity { cpu_millis: u32::try_from(cpus * 1000).unwrap_or(u32::MAX), memory_bytes: system.total_memory() }
}

/// `4GiB`, `512MiB`, `2G`, `1500k`, `123` (bytes).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => return None,
    };
    let bytes = number * scale as f64;
    if !(bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64) {
        return None;
    }
    // In range (checked just above), so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    let rounded = bytes.round() as u64;
    Some(rounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse() {
        assert_eq!(parse_bytes("4GiB"), Some(4 << 30));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("2G"), Some(2_000_000_000));
        assert_eq!(parse_bytes("123"), Some(123));
        assert_eq!(parse_bytes("1.5k"), Some(1500));
        assert_eq!(parse_bytes("lots"), None);
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = std::env::temp_dir().join(format!("shoal-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("shoal.toml");
        std::fs::write(
            &path,
            "name = \"from-file\"\nbind = \"127.0.0.1:9000\"\nprofile = \"local\"\nmemory = 1024\n[labels]\nzone = \"a\"\n",
        )
        .expect("write");
        let args = AgentArgs { config: Some(path), name: Some("from-flag".into()), ..AgentArgs::default() };
        let settings = args.resolve().expect("resolves");
        assert_eq!(settings.name, "from-flag");
        assert_eq!(settings.bind, "127.0.0.1:9000".parse().expect("addr"));
        assert_eq!(settings.profile, Profile::Local);
        assert_eq!(settings.capacity.memory_bytes, 1024);
        assert_eq!(settings.labels.get("zone").map(String::as_str), Some("a"));
        assert!(settings.mdns, "mDNS is on when nothing is joined");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn drivers_become_a_label_and_bad_ones_are_refused_by_name() {
        let resolve = |drivers: &[&str], labels: &[&str]| {
            AgentArgs {
                drivers: drivers.iter().map(|d| (*d).to_string()).collect(),
                labels: labels.iter().map(|l| (*l).to_string()).collect(),
                data_dir: Some(std::env::temp_dir().join("shoal-config-drivers")),
                ..AgentArgs::default()
            }
            .resolve()
        };
        let offered = |settings: Settings| settings.labels.get(DRIVERS_LABEL).cloned();
        assert_eq!(resolve(&[], &[]).ok().and_then(offered).as_deref(), Some("docker,exec"), "every driver by default");
        assert_eq!(resolve(&["docker"], &[]).ok().and_then(offered).as_deref(), Some("docker"));
        assert_eq!(resolve(&["exec", " docker", "exec"], &[]).ok().and_then(offered).as_deref(), Some("docker,exec"));
        let refusal = |r: Result<Settings, SettingsError>| r.err().map(|e| e.to_string()).unwrap_or_default();
        let unknown = refusal(resolve(&["podman"], &[]));
        assert!(unknown.contains("--drivers \"podman\"") && unknown.contains("exec, docker"), "{unknown}");
        let reserved = refusal(resolve(&[], &["shoal.drivers=exec"]));
        assert!(reserved.contains("--label") && reserved.contains("use --drivers"), "{reserved}");
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shoal-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn an_api_beyond_loopback_needs_tls_and_tokens() {
        let dir = temp_dir("exposed");
        let tokens = dir.join("tokens");
        std::fs::write(&tokens, "admin 0123456789abcdef0123456789abcdef\n").expect("write");
        let args = |token_file: Option<PathBuf>, self_signed: bool| AgentArgs {
            data_dir: Some(dir.join("data")),
            api: Some("0.0.0.0:7947".into()),
            api_token_file: token_file,
            api_tls_self_signed: self_signed,
            ..AgentArgs::default()
        };
        let refusal = |a: AgentArgs| a.resolve().err().map(|e| e.to_string()).unwrap_or_default();
        let neither = refusal(args(None, false));
        assert!(neither.contains("needs TLS and a token file"), "{neither}");
        assert!(neither.contains("--api-tls-self-signed") && neither.contains("--api-token-file"), "{neither}");
        let no_tls = refusal(args(Some(tokens.clone()), false));
        assert!(no_tls.contains("needs TLS.") && !no_tls.contains("--api-token-file FILE"), "{no_tls}");
        let no_tokens = refusal(args(None, true));
        assert!(no_tokens.contains("needs a token file"), "{no_tokens}");
        let settings = args(Some(tokens.clone()), true).resolve().expect("TLS and tokens: starts");
        assert!(settings.api_security.tls.is_some() && settings.api_security.tokens.is_some());
        // Loopback stays open by default.
        let open = AgentArgs { data_dir: Some(dir.join("data")), ..AgentArgs::default() }.resolve().expect("loopback");
        assert!(open.api_security.tls.is_none() && open.api_security.tokens.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
