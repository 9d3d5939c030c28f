//! What a user asks the mesh to run: the workload spec, as it is replicated.
//!
//! This is the wire form (bincode through serde, so enums are externally
//! tagged). The node parses user-facing TOML/JSON (with `"64MiB"` and
//! friends) into it; both call [`WorkloadSpec::validate`], so a spec that
//! one node accepts every node accepts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A workload: `replicas` copies of one process or container, placed by the
/// mesh on distinct nodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Unique in the cluster: 1 to 63 of `[a-z0-9-]`, starting with a letter.
    pub name: String,
    /// Copies to run, each on a different node. 0 keeps the spec but runs
    /// nothing.
    pub replicas: u32,
    /// What one replica needs from its node.
    pub resources: Resources,
    /// Labels a node must carry, with these exact values.
    pub constraints: BTreeMap<String, String>,
    /// How to run it.
    pub driver: Driver,
    /// What to do when it exits.
    pub restart: RestartPolicy,
}

/// What one replica needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in millicores.
    pub cpu_millis: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

/// How a replica runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Driver {
    /// A process on the host.
    Exec { command: String, args: Vec<String>, env: BTreeMap<String, String>, workdir: Option<String> },
    /// A container through the Docker Engine API.
    Docker {
        image: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        /// `host:container` port pairs.
        ports: Vec<(u16, u16)>,
    },
}

impl Driver {
    /// Every driver's name, as specs, `--drivers` and [`DRIVERS_LABEL`] spell it.
    pub const NAMES: [&'static str; 2] = ["exec", "docker"];

    /// This driver's name (one of [`Driver::NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            Driver::Exec { .. } => "exec",
            Driver::Docker { .. } => "docker",
        }
    }
}

/// The label an agent sets to the drivers it offers, comma-separated
/// (`shoal.drivers=docker,exec`): placement puts a replica only on a member
/// that offers its driver. A member without the label offers every driver.
pub const DRIVERS_LABEL: &str = "shoal.drivers";

/// Whether a member with `labels` offers `driver` (see [`DRIVERS_LABEL`]).
pub fn offers_driver(labels: &BTreeMap<String, String>, driver: &str) -> bool {
    labels.get(DRIVERS_LABEL).is_none_or(|offered| offered.split(',').any(|name| name.trim() == driver))
}

/// When to restart an exited replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RestartMode {
    /// Whatever the exit status.
    Always,
    /// Only after a non-zero exit or a signal.
    OnFailure,
    /// Never: an exited replica stays exited.
    Never,
}

/// Restart mode with exponential backoff between attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub mode: RestartMode,
    /// First delay, in milliseconds; doubled after each quick failure.
    pub backoff_initial_ms: u32,
    /// Ceiling of the delay, in milliseconds.
    pub backoff_max_ms: u32,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy { mode: RestartMode::Always, backoff_initial_ms: 1_000, backoff_max_ms: 60_000 }
    }
}

/// A spec was refused: `field` names the offending field, `reason` says why
/// and how to fix it. Nothing was stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid workload spec: `{field}`: {reason}")]
pub struct SpecError {
    pub field: String,
    pub reason: String,
}

fn refuse(field: impl Into<String>, reason: impl Into<String>) -> Result<(), SpecError> {
    Err(SpecError { field: field.into(), reason: reason.into() })
}

impl WorkloadSpec {
    /// Longest name.
    pub const MAX_NAME_LEN: usize = 63;
    /// Most replicas of one workload.
    pub const MAX_REPLICAS: u32 = 10_000;
    /// Bound on the encoded spec, so a catalog entry always fits one
    /// datagram with room for its header.
    pub const MAX_ENCODED_LEN: usize = 1_024;

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_name(&self.name)?;
        if self.replicas > Self::MAX_REPLICAS {
            return refuse("replicas", format!("{} is more than the limit of {}", self.replicas, Self::MAX_REPLICAS));
        }
        for key in self.constraints.keys() {
            if key.is_empty() || key.len() > crate::Metadata::MAX_LABEL_KEY_LEN {
                return refuse(format!("constraints.{key}"), "label keys are 1 to 63 characters");
            }
        }
        match &self.driver {
            Driver::Exec { command, .. } if command.trim().is_empty() => {
                return refuse("driver.command", "give the program to run, e.g. \"python3\"");
            }
            Driver::Docker { image, .. } if image.trim().is_empty() => {
                return refuse("driver.image", "give the image to run, e.g. \"shoal-demo:latest\"");
            }
            _ => {}
        }
        let backoff = self.restart;
        if backoff.backoff_initial_ms == 0 || backoff.backoff_initial_ms > backoff.backoff_max_ms {
            return refuse("restart.backoff", "need 0 < initial <= max");
        }
        let len = crate::codec::encoded_len(self);
        if len > Self::MAX_ENCODED_LEN {
            return refuse(
                "spec",
                format!(
                    "encodes to {len} bytes, over the {} limit: shorten env, args or constraints",
                    Self::MAX_ENCODED_LEN
                ),
            );
        }
        Ok(())
    }
}

/// Checks a workload name: 1 to 63 of `[a-z0-9-]`, starting with a letter
/// (so it can name a container, a directory and a DNS label).
pub(crate) fn validate_name(name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= WorkloadSpec::MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok { Ok(()) } else { refuse("name", "use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter") }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec(name: &str, replicas: u32) -> WorkloadSpec {
        WorkloadSpec {
            name: name.into(),
            replicas,
            resources: Resources { cpu_millis: 100, memory_bytes: 64 << 20 },
            constraints: BTreeMap::new(),
            driver: Driver::Exec {
                command: "sleep".into(),
                args: vec!["3600".into()],
                env: BTreeMap::new(),
                workdir: None,
            },
            restart: RestartPolicy::default(),
        }
    }

    #[test]
    fn a_good_spec_passes_and_each_bad_field_is_named() {
        assert_eq!(spec("web", 2).validate(), Ok(()));
        let field = |s: WorkloadSpec| s.validate().err().map(|e| e.field);
        assert_eq!(field(spec("Web", 1)), Some("name".into()));
        assert_eq!(field(spec("9lives", 1)), Some("name".into()));
        assert_eq!(field(spec("web", WorkloadSpec::MAX_REPLICAS + 1)), Some("replicas".into()));
        let mut s = spec("web", 1);
        s.driver = Driver::Exec { command: " ".into(), args: vec![], env: BTreeMap::new(), workdir: None };
        assert_eq!(field(s), Some("driver.command".into()));
        let mut s = spec("web", 1);
        s.restart.backoff_initial_ms = 0;
        assert_eq!(field(s), Some("restart.backoff".into()));
        let mut s = spec("web", 1);
        if let Driver::Exec { env, .. } = &mut s.driver {
            env.insert("BIG".into(), "x".repeat(2_000));
        }
        assert_eq!(field(s), Some("spec".into()));
    }
}
