//! The workload spec as users write it (a TOML file for `shoal submit`, JSON
//! for `POST /v1/workloads`), and its conversion to the protocol's
//! [`WorkloadSpec`]:
//!
//! ```toml
//! name = "web"
//! replicas = 2
//! [resources]
//! cpu = 250            # millicores
//! memory = "64MiB"     # or bytes
//! [constraints]
//! zone = "edge-1"
//! [driver]
//! kind = "exec"        # or "docker", with image, args, env, ports = ["8080:80"]
//! command = "python3"
//! args = ["-m", "http.server", "0"]
//! [restart]
//! policy = "always"    # or "on-failure", "never"
//! initial-backoff = "1s"
//! max-backoff = "1m"
//! ```
//!
//! Unknown fields are refused by name; every refusal names the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_protocol::{Driver, Resources, RestartMode, RestartPolicy, SpecError, WorkloadSpec};

use crate::config::Memory;

/// A workload spec as written by a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    pub name: String,
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default)]
    pub resources: ResourcesFile,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub constraints: BTreeMap<String, String>,
    pub driver: DriverFile,
    #[serde(default)]
    pub restart: RestartFile,
}

fn one() -> u32 {
    1
}

/// `[resources]`: what one replica reserves on its node (none if omitted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesFile {
    /// Millicores.
    #[serde(default)]
    pub cpu: u32,
    /// Bytes, or a size such as "64MiB".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
}

/// `[driver]`: one flat table whose `kind` says which other fields apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverFile {
    pub kind: DriverKind,
    /// exec: the program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// docker: the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// exec: the working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// docker: "HOST:CONTAINER" port pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    Exec,
    Docker,
}

/// `[restart]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RestartFile {
    #[serde(default = "always")]
    pub policy: Policy,
    /// First delay before a restart ("500ms", "1s", "2m" or milliseconds);
    /// doubled after each quick failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_backoff: Option<Duration>,
    /// Ceiling of that delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<Duration>,
}

impl Default for RestartFile {
    fn default() -> RestartFile {
        RestartFile { policy: Policy::Always, initial_backoff: None, max_backoff: None }
    }
}

fn always() -> Policy {
    Policy::Always
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    Always,
    OnFailure,
    Never,
}

/// A duration: milliseconds, or text such as "500ms", "1s", "2m", "1h".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Duration {
    Millis(u32),
    Text(String),
}

impl Duration {
    fn millis(&self) -> Option<u32> {
        let text = match self {
            Duration::Millis(ms) => return Some(*ms),
            Duration::Text(text) => text.trim(),
        };
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().ok()?;
        let scale = match unit.trim() {
            "" | "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        u32::try_from(number.checked_mul(scale)?).ok()
    }
}

/// A spec was refused: which field, and why (with the fix).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("`{field}`: {reason}")]
pub struct SpecFileError {
    pub field: String,
    pub reason: String,
}

impl From<SpecError> for SpecFileError {
    fn from(error: SpecError) -> SpecFileError {
        SpecFileError { field: error.field, reason: error.reason }
    }
}

fn refuse<T>(field: &str, reason: impl Into<String>) -> Result<T, SpecFileError> {
    Err(SpecFileError { field: field.into(), reason: reason.into() })
}

/// Parses a TOML spec. Errors name the field, and the line when TOML knows it.
pub fn parse_toml(text: &str) -> Result<WorkloadSpec, SpecFileError> {
    let file: SpecFile = serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let line = inner.span().map(|span| text.get(..span.start).unwrap_or(text).matches('\n').count() + 1);
        let mut error = located(&path, inner.message().trim().to_string());
        if let Some(line) = line {
            error.reason = format!("{} (line {line})", error.reason);
        }
        error
    })?;
    file.to_spec()
}

/// Parses a JSON spec (the API's body).
pub fn parse_json(text: &[u8]) -> Result<WorkloadSpec, SpecFileError> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let file: SpecFile = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        located(&path, error.into_inner().to_string())
    })?;
    file.to_spec()
}

/// A TOML or JSON spec, told apart by its first character.
pub fn parse(text: &str) -> Result<WorkloadSpec, SpecFileError> {
    if text.trim_start().starts_with('{') { parse_json(text.as_bytes()) } else { parse_toml(text) }
}

/// Names the field a serde error is about: its path, plus the field an
/// "unknown field `x`" or "missing field `x`" message names.
fn located(path: &str, reason: String) -> SpecFileError {
    // `?` stands for a place the parser could not name (a syntax error).
    let path = match path.trim_end_matches('?').trim_end_matches('.') {
        "" => ".",
        known => known,
    };
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| reason.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let field = match (path, named) {
        // Some formats already put the named field at the end of the path.
        (_, Some(name)) if path == name || path.ends_with(&format!(".{name}")) => path.to_string(),
        (".", Some(name)) => name.to_string(),
        (_, Some(name)) => format!("{path}.{name}"),
        (".", None) => "spec".to_string(),
        (_, None) => path.to_string(),
    };
    let reason = if reason.starts_with("unknown field") {
        format!("{reason}; check its spelling and section")
    } else if reason.starts_with("data did not match any variant") {
        "expected a number or a text such as \"64MiB\" or \"1s\"".to_string()
    } else {
        reason
    };
    SpecFileError { field, reason }
}

impl SpecFile {
    /// The protocol's spec, validated.
    pub fn to_spec(&self) -> Result<WorkloadSpec, SpecFileError> {
        let memory_bytes = match &self.resources.memory {
            None => 0,
            Some(memory) => match memory.bytes() {
                Some(bytes) => bytes,
                None => return refuse("resources.memory", format!("{memory:?} is not a size: use e.g. \"64MiB\"")),
            },
        };
        let restart = self.restart.to_policy()?;
        let spec = WorkloadSpec {
            name: self.name.clone(),
            replicas: self.replicas,
            resources: Resources { cpu_millis: self.resources.cpu, memory_bytes },
            constraints: self.constraints.clone(),
            driver: self.driver.to_driver()?,
            restart,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// How a user would write `spec` (memory in bytes, backoffs in ms).
    pub fn from_spec(spec: &WorkloadSpec) -> SpecFile {
        let driver = match &spec.driver {
            Driver::Exec { command, args, env, workdir } => DriverFile {
                kind: DriverKind::Exec,
                command: Some(command.clone()),
                image: None,
                args: args.clone(),
                env: env.clone(),
                workdir: workdir.clone(),
                ports: Vec::new(),
            },
            Driver::Docker { image, args, env, ports } => DriverFile {
                kind: DriverKind::Docker,
                command: None,
                image: Some(image.clone()),
                args: args.clone(),
                env: env.clone(),
                workdir: None,
                ports: ports.iter().map(|(host, container)| format!("{host}:{container}")).collect(),
            },
        };
        let policy = match spec.restart.mode {
            RestartMode::Always => Policy::Always,
            RestartMode::OnFailure => Policy::OnFailure,
            RestartMode::Never => Policy::Never,
        };
        SpecFile {
            name: spec.name.clone(),
            replicas: spec.replicas,
            resources: ResourcesFile {
                cpu: spec.resources.cpu_millis,
                memory: Some(Memory::Bytes(spec.resources.memory_bytes)),
            },
            constraints: spec.constraints.clone(),
            driver,
            restart: RestartFile {
                policy,
                initial_backoff: Some(Duration::Millis(spec.restart.backoff_initial_ms)),
                max_backoff: Some(Duration::Millis(spec.restart.backoff_max_ms)),
            },
        }
    }
}

impl DriverFile {
    fn to_driver(&self) -> Result<Driver, SpecFileError> {
        let not_for = |field: &str, kind: &str, instead: &str| {
            refuse::<Driver>(&format!("driver.{field}"), format!("not a field of kind = \"{kind}\" ({instead})"))
        };
        match self.kind {
            DriverKind::Exec => {
                if self.image.is_some() {
                    return not_for("image", "exec", "give `command`, or use kind = \"docker\"");
                }
                if !self.ports.is_empty() {
                    return not_for("ports", "exec", "an exec workload binds its own ports");
                }
                let Some(command) = self.command.clone() else {
                    return refuse("driver.command", "required for kind = \"exec\": the program to run");
                };
                let (args, env, workdir) = (self.args.clone(), self.env.clone(), self.workdir.clone());
                Ok(Driver::Exec { command, args, env, workdir })
            }
            DriverKind::Docker => {
                if self.command.is_some() {
                    return not_for("command", "docker", "give `image`, and `args` for its command");
                }
                if self.workdir.is_some() {
                    return not_for("workdir", "docker", "set WORKDIR in the image");
                }
                let Some(image) = self.image.clone() else {
                    return refuse("driver.image", "required for kind = \"docker\": the image to run");
                };
                let ports =
                    self.ports.iter().enumerate().map(|(i, pair)| port_pair(i, pair)).collect::<Result<_, _>>()?;
                Ok(Driver::Docker { image, args: self.args.clone(), env: self.env.clone(), ports })
            }
        }
    }
}

fn port_pair(index: usize, pair: &str) -> Result<(u16, u16), SpecFileError> {
    let parsed = pair
        .split_once(':')
        .and_then(|(host, container)| Some((host.trim().parse::<u16>().ok()?, container.trim().parse::<u16>().ok()?)));
    match parsed {
        Some(ports) => Ok(ports),
        None => {
            refuse(&format!("driver.ports[{index}]"), format!("{pair:?} is not \"HOST:CONTAINER\", e.g. \"8080:80\""))
        }
    }
}

impl RestartFile {
    fn to_policy(&self) -> Result<RestartPolicy, SpecFileError> {
        let defaults = RestartPolicy::default();
        let millis = |field: &str, value: &Option<Duration>, default: u32| match value {
            None => Ok(default),
            Some(duration) => duration.millis().ok_or_else(|| SpecFileError {
                field: format!("restart.{field}"),
                reason: format!("{duration:?} is not a duration: use e.g. \"500ms\", \"1s\" or \"2m\""),
            }),
        };
        let mode = match self.policy {
            Policy::Always => RestartMode::Always,
            Policy::OnFailure => RestartMode::OnFailure,
            Policy::Never => RestartMode::Never,
        };
        Ok(RestartPolicy {
            mode,
            backoff_initial_ms: millis("initial-backoff", &self.initial_backoff, defaults.backoff_initial_ms)?,
            backoff_max_ms: millis("max-backoff", &self.max_backoff, defaults.backoff_max_ms)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = r#"
name = "web"
replicas = 2
[resources]
cpu = 250            # millicores
memory = "64MiB"
[constraints]
zone = "edge-1"
[driver]
kind = "exec"
command = "python3"
args = ["-m", "http.server", "0"]
[restart]
policy = "always"
"#;

    fn field(text: &str) -> String {
        parse(text).expect_err("refused").field
    }

    #[test]
    fn the_issue_example_parses() {
        let spec = parse_toml(WEB).expect("parses");
        assert_eq!(spec.name, "web");
        assert_eq!(spec.replicas, 2);
        assert_eq!(spec.resources, Resources { cpu_millis: 250, memory_bytes: 64 << 20 });
        assert_eq!(spec.constraints.get("zone").map(String::as_str), Some("edge-1"));
        let args = vec!["-m".to_string(), "http.server".into(), "0".into()];
        assert_eq!(spec.driver, Driver::Exec { command: "python3".into(), args, env: BTreeMap::new(), workdir: None });
        assert_eq!(spec.restart, RestartPolicy::default());
    }

    #[test]
    fn sizes_durations_docker_and_json_parse() {
        let text = r#"
name = "db"
[resources]
memory = "1GiB"
[driver]
kind = "docker"
image = "postgres:16"
ports = ["5432:5432"]
env = { POSTGRES_PASSWORD = "x" }
[restart]
policy = "on-failure"
initial-backoff = "500ms"
max-backoff = "2m"
"#;
        let spec = parse(text).expect("parses");
        assert_eq!((spec.replicas, spec.resources.memory_bytes), (1, 1 << 30));
        assert!(matches!(&spec.driver, Driver::Docker { ports, .. } if ports == &[(5432, 5432)]));
        let restart = RestartPolicy { mode: RestartMode::OnFailure, backoff_initial_ms: 500, backoff_max_ms: 120_000 };
        assert_eq!(spec.restart, restart);
        // Plain bytes; and the JSON form of a spec parses back to it.
        assert_eq!(parse(&WEB.replace("\"64MiB\"", "1000")).expect("parses").resources.memory_bytes, 1000);
        let json = serde_json::to_string(&SpecFile::from_spec(&spec)).expect("json");
        assert_eq!(parse(&json).expect("parses back"), spec);
    }

    #[test]
    fn each_bad_spec_names_its_field() {
        assert_eq!(field(&WEB.replace("replicas = 2", "replicas = 2\ncolour = \"red\"")), "colour");
        assert_eq!(field(&WEB.replace("command = \"python3\"", "comand = \"python3\"")), "driver.comand");
        assert_eq!(field(&WEB.replace("policy = \"always\"", "policy = \"sometimes\"")), "restart.policy");
        assert_eq!(field(&WEB.replace("\"64MiB\"", "\"lots\"")), "resources.memory");
        assert_eq!(field(&WEB.replace("replicas = 2", "replicas = -1")), "replicas");
        assert_eq!(field(&WEB.replace("command = \"python3\"", "")), "driver.command");
        assert_eq!(field(&WEB.replace("kind = \"exec\"", "kind = \"docker\"\nimage = \"x\"")), "driver.command");
        assert_eq!(field(&WEB.replace("kind = \"exec\"", "kind = \"vm\"")), "driver.kind");
        assert_eq!(field(&WEB.replace("name = \"web\"", "name = \"Web\"")), "name");
        assert_eq!(field(&WEB.replace("name = \"web\"", "")), "name");
        assert_eq!(field(&WEB.replace("policy = \"always\"", "initial-backoff = \"soon\"")), "restart.initial-backoff");
        assert_eq!(field(&WEB.replace("policy = \"always\"", "initial-backoff = 0")), "restart.backoff");
        assert_eq!(field("name = \"web\"\nreplicas = 1\n[driver\n"), "spec");
        assert_eq!(field(r#"{"name": "web", "driver": {"kind": "exec", "command": "x"}, "extra": 1}"#), "extra");
        assert_eq!(field(r#"{"name": "web""#), "spec");
        let docker =
            WEB.replace("kind = \"exec\"\ncommand = \"python3\"", "kind = \"docker\"\nimage = \"x\"\nports = [\"80\"]");
        assert_eq!(field(&docker), "driver.ports[0]");
        let error = parse(&WEB.replace("replicas = 2", "replicas = 2\ncolour = \"red\"")).expect_err("refused");
        assert!(error.reason.ends_with("(line 4)"), "TOML errors say the line: {error}");
    }
}
