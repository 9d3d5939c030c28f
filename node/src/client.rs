//! The CLI's side of the HTTP API: a small blocking client (ureq), over
//! plain HTTP on loopback, or over TLS with a token for an agent whose API
//! is exposed (`--api https://HOST:PORT --token T --tls-fingerprint F`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::keys::KeysView;
use crate::spec::SpecFile;
use crate::tls::{TlsError, Trust};
use crate::view::{HealthView, MemberView, SelfView};
use crate::workloads::{ErrorView, WorkloadDetail, WorkloadView};

/// Why a request to an agent failed, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered.
    #[error("no agent at {api}: is `shoal agent` running? (pass --api HOST:PORT for another one)")]
    NoAgent { api: String },
    /// The agent answered with an error.
    #[error("the agent at {api} answered {status}: {body}")]
    Status { api: String, status: u16, body: String },
    /// The agent wants a token, or refused the one given.
    #[error("the agent at {api} refused the request ({status}): {body}")]
    Refused { api: String, status: u16, body: String },
    /// The TLS handshake failed: the certificate is not trusted, or the
    /// agent does not speak TLS.
    #[error(
        "cannot make a TLS connection to {api}: {why}. Trust the agent's certificate with \
         --tls-fingerprint (the agent logs it and keeps it in <data-dir>/api-tls/fingerprint) or \
         --ca-cert FILE; an agent on loopback without TLS takes http:// or plain HOST:PORT"
    )]
    Tls { api: String, why: String },
    /// The trust settings are unusable.
    #[error(transparent)]
    Trust(#[from] TlsError),
    /// The answer was not what this version of `shoal` expects.
    #[error("unexpected answer from {api} (is it a shoal agent of the same version?): {why}")]
    Decode { api: String, why: String },
}

/// Where an agent's API is, and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTarget {
    /// `HOST:PORT` as given (a name stays a name, for TLS).
    pub authority: String,
    /// `None`: plain HTTP.
    pub tls: Option<Trust>,
}

impl ApiTarget {
    /// `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`; a trust
    /// setting (`--ca-cert`, `--tls-fingerprint`) implies https.
    pub fn parse(text: &str, trust: Option<Trust>) -> Result<ApiTarget, String> {
        let text = text.trim().trim_end_matches('/');
        let (https, authority) = match text.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            Some((scheme, _)) => return Err(format!("unknown scheme {scheme:?}: use http:// or https://")),
            None => (false, text),
        };
        if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
            return Err(format!("{text:?}: use HOST:PORT or https://HOST:PORT, e.g. 127.0.0.1:7947"));
        }
        if !https && trust.is_some() {
            if text.starts_with("http://") {
                return Err("--ca-cert and --tls-fingerprint need TLS: use https://".into());
            }
            return Ok(ApiTarget { authority: authority.to_string(), tls: trust });
        }
        let tls = if https { Some(trust.unwrap_or(Trust::PublicRoots)) } else { None };
        Ok(ApiTarget { authority: authority.to_string(), tls })
    }
}

/// A client for one agent's API.
#[derive(Debug)]
pub struct Client {
    api: String,
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

const TIMEOUT: Duration = Duration::from_secs(5);

impl Client {
    /// A client for the agent at `api`, over plain HTTP without a token.
    pub fn new(api: SocketAddr) -> Client {
        let agent = ureq::AgentBuilder::new().timeout(TIMEOUT).build();
        Client { api: api.to_string(), base: format!("http://{api}"), token: None, agent }
    }

    /// A client for `target`, sending `token` with every request.
    pub fn connect(target: &ApiTarget, token: Option<String>) -> Result<Client, ClientError> {
        let mut builder = ureq::AgentBuilder::new().timeout(TIMEOUT);
        let scheme = match &target.tls {
            None => "http",
            Some(trust) => {
                if let Some(config) = crate::tls::client_config(trust)? {
                    builder = builder.tls_config(Arc::clone(&config));
                }
                "https"
            }
        };
        let token = token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        Ok(Client {
            api: target.authority.clone(),
            base: format!("{scheme}://{}", target.authority),
            token,
            agent: builder.build(),
        })
    }

    pub fn members(&self) -> Result<Vec<MemberView>, ClientError> {
        self.get_json("/v1/members")
    }

    /// This agent's network coordinate and those it holds for members.
    pub fn coordinates(&self) -> Result<crate::api::CoordinatesView, ClientError> {
        self.get_json("/v1/coordinates")
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
        response.into_string().map_err(|e| self.decode(&e))
    }

    /// Asks the agent to leave the mesh and stop.
    pub fn leave(&self) -> Result<(), ClientError> {
        self.call(self.agent.post(&self.url("/v1/leave")))?;
        Ok(())
    }

    /// Submits (or replaces) a workload; returns its detail and whether it is new.
    pub fn submit(&self, spec: &SpecFile) -> Result<(WorkloadDetail, bool), ClientError> {
        let body = serde_json::to_string(spec).map_err(|e| self.decode(&e))?;
        let request = self.agent.post(&self.url("/v1/workloads")).set("content-type", "application/json");
        let response = self.call_with(request, Some(&body))?;
        let new = response.status() == 201;
        let detail = response.into_json().map_err(|e| self.decode(&e))?;
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
        response.into_json().map_err(|e| self.decode(&e))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn decode(&self, error: &impl std::fmt::Display) -> ClientError {
        ClientError::Decode { api: self.api.clone(), why: error.to_string() }
    }

    fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.call(self.agent.get(&self.url(path)))?;
        response.into_json().map_err(|e| self.decode(&e))
    }

    fn call(&self, request: ureq::Request) -> Result<ureq::Response, ClientError> {
        self.call_with(request, None)
    }

    fn call_with(&self, request: ureq::Request, body: Option<&str>) -> Result<ureq::Response, ClientError> {
        let request = match &self.token {
            Some(token) => request.set("authorization", &format!("Bearer {token}")),
            None => request,
        };
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
                let api = self.api.clone();
                if matches!(status, 401 | 403 | 429) {
                    return Err(ClientError::Refused { api, status, body });
                }
                Err(ClientError::Status { api, status, body })
            }
            Err(ureq::Error::Transport(transport)) => {
                let api = self.api.clone();
                let text = transport.to_string();
                let tls_failed = text.contains("certificate")
                    || text.contains("tls")
                    || text.contains("TLS")
                    || text.contains("InvalidContentType")
                    || text.contains("CorruptMessage");
                if tls_failed && self.base.starts_with("https") {
                    return Err(ClientError::Tls { api, why: text });
                }
                if matches!(transport.kind(), ureq::ErrorKind::BadStatus | ureq::ErrorKind::BadHeader)
                    || text.contains("ConnectionReset")
                {
                    return Err(ClientError::Decode {
                        api,
                        why: format!("{text} (does the agent serve TLS? then use https://{})", self.api),
                    });
                }
                Err(ClientError::NoAgent { api })
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_targets_read_as_the_cli_takes_them() {
        let plain = ApiTarget::parse("127.0.0.1:7947", None);
        assert_eq!(plain, Ok(ApiTarget { authority: "127.0.0.1:7947".into(), tls: None }));
        let https = ApiTarget::parse("https://edge-1.example:7947/", None);
        assert_eq!(https, Ok(ApiTarget { authority: "edge-1.example:7947".into(), tls: Some(Trust::PublicRoots) }));
        // A trust setting implies TLS.
        let pinned = ApiTarget::parse("[::1]:7947", Some(Trust::Fingerprint([1; 32])));
        assert_eq!(pinned.map(|t| t.tls), Ok(Some(Trust::Fingerprint([1; 32]))));
        assert!(ApiTarget::parse("http://127.0.0.1:7947", Some(Trust::Fingerprint([1; 32]))).is_err());
        assert!(ApiTarget::parse("ftp://127.0.0.1:7947", None).is_err());
        assert!(ApiTarget::parse("127.0.0.1", None).is_err(), "the port is needed");
    }
}
