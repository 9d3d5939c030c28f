//! The CLI's side of the HTTP API: a small blocking client (ureq).

use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::keys::KeysView;
use crate::spec::SpecFile;
use crate::view::{HealthView, MemberView, SelfView};
use crate::workloads::{ErrorView, WorkloadDetail, WorkloadView};

/// Why a request to an agent failed, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered.
    #[error("no agent at {api}: is `shoal agent` running? (pass --api HOST:PORT for another one)")]
    NoAgent { api: SocketAddr },
    /// The agent answered with an error.
    #[error("the agent at {api} answered {status}: {body}")]
    Status { api: SocketAddr, status: u16, body: String },
    /// The answer was not what this version of `shoal` expects.
    #[error("unexpected answer from {api} (is it a shoal agent of the same version?): {why}")]
    Decode { api: SocketAddr, why: String },
}

/// A client for one agent's API.
#[derive(Debug)]
pub struct Client {
    api: SocketAddr,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the agent at `api`.
    pub fn new(api: SocketAddr) -> Client {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
        Client { api, agent }
    }

    pub fn members(&self) -> Result<Vec<MemberView>, ClientError> {
        self.get_json("/v1/members")
    }

    pub fn self_info(&self) -> Result<SelfView, ClientError> {
        self.get_json("/v1/self")
    }

    pub fn health(&self) -> Result<HealthView, ClientError> {
        self.get_json("/v1/health")
    }

    /// The Prometheus text.
    pub fn metrics(&self) -> Result<String, ClientError> {
        let response = self.call(self.agent.get(&self.url("/metrics")))?;
        response.into_string().map_err(|e| ClientError::Decode { api: self.api, why: e.to_string() })
    }

    /// Asks the agent to leave the mesh and stop.
    pub fn leave(&self) -> Result<(), ClientError> {
        self.call(self.agent.post(&self.url("/v1/leave")))?;
        Ok(())
    }

    /// Submits (or replaces) a workload; returns its detail and whether it is new.
    pub fn submit(&self, spec: &SpecFile) -> Result<(WorkloadDetail, bool), ClientError> {
        let body =
            serde_json::to_string(spec).map_err(|e| ClientError::Decode { api: self.api, why: e.to_string() })?;
        let request = self.agent.post(&self.url("/v1/workloads")).set("content-type", "application/json");
        let response = self.call_with(request, Some(&body))?;
        let new = response.status() == 201;
        let detail = response.into_json().map_err(|e| ClientError::Decode { api: self.api, why: e.to_string() })?;
        Ok((detail, new))
    }

    pub fn workloads(&self) -> Result<Vec<WorkloadView>, ClientError> {
        self.get_json("/v1/workloads")
    }

    pub fn workload(&self, name: &str) -> Result<WorkloadDetail, ClientError> {
        self.get_json(&format!("/v1/workloads/{}", path_segment(name)))
    }

    /// Deletes a workload everywhere.
    pub fn delete(&self, name: &str) -> Result<(), ClientError> {
        self.call(self.agent.delete(&self.url(&format!("/v1/workloads/{}", path_segment(name)))))?;
        Ok(())
    }

    /// The keys every live agent holds.
    pub fn keys(&self) -> Result<KeysView, ClientError> {
        self.get_json("/v1/keys")
    }

    /// `install`, `use` or `remove` a key on every live agent.
    pub fn change_keys(&self, verb: &str, key: &str) -> Result<KeysView, ClientError> {
        let body = serde_json::json!({ "key": key }).to_string();
        let request = self.agent.post(&self.url(&format!("/v1/keys/{verb}"))).set("content-type", "application/json");
        let response = self.call_with(request, Some(&body))?;
        response.into_json().map_err(|e| ClientError::Decode { api: self.api, why: e.to_string() })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.call(self.agent.get(&self.url(path)))?;
        response.into_json().map_err(|e| ClientError::Decode { api: self.api, why: e.to_string() })
    }

    fn call(&self, request: ureq::Request) -> Result<ureq::Response, ClientError> {
        self.call_with(request, None)
    }

    fn call_with(&self, request: ureq::Request, body: Option<&str>) -> Result<ureq::Response, ClientError> {
        let outcome = match body {
            Some(body) => request.send_string(body),
            None => request.call(),
        };
        match outcome {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(status, response)) => {
                let body = response.into_string().unwrap_or_default();
                // The API's errors are `{error, ...}`: show the sentence.
                let body = serde_json::from_str::<ErrorView>(&body).map_or(body, |view| view.error);
                Err(ClientError::Status { api: self.api, status, body })
            }
            Err(ureq::Error::Transport(_)) => Err(ClientError::NoAgent { api: self.api }),
        }
    }
}

/// A workload name as one URL path segment (names are `[a-z0-9-]`, but a
/// mistyped one must still reach the agent to be refused there).
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
