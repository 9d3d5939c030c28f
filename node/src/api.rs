//! The local HTTP API (JSON): `GET /v1/members`, `GET /v1/self`,
//! `GET /v1/health`, `POST /v1/leave`, `GET /metrics`, and the workloads:
//! `POST /v1/workloads` (a spec: 201 created, 200 replaced, 400 refused with
//! `{error, field, reason}`), `GET /v1/workloads`, `GET /v1/workloads/{name}`,
//! `DELETE /v1/workloads/{name}` (404 if there is no such workload); and the
//! keyring across the mesh: `GET /v1/keys`, `POST /v1/keys/{install,use,remove}`
//! with `{"key": ...}` (every live agent asked; 409 when `use` or `remove`
//! would cut an agent off, naming it).
//!
//! Handlers never touch the protocol: they ask the agent's task over a
//! channel, so the state machine has exactly one owner.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRef, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use shoal_protocol::{SpecError, WorkloadSpec};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::crypto::ClusterKey;
use crate::keys::{KeyOp, KeyReply, KeyStore, KeysView, parse_key_id};
use crate::transport::KeyRequester;
use crate::view::{HealthView, MemberView, PeerView, Reply, SelfView};
use crate::workloads::{ErrorView, WorkloadDetail, WorkloadView};

/// A question for the agent's task.
#[derive(Debug)]
pub enum ApiRequest {
    Members(Reply<Vec<MemberView>>),
    /// The live members other than this one, to fan key operations out to.
    Peers(Reply<Vec<PeerView>>),
    SelfInfo(Reply<SelfView>),
    Health(Reply<HealthView>),
    Metrics(Reply<String>),
    Leave(Reply<()>),
    Workloads(Reply<Vec<WorkloadView>>),
    Workload(String, Reply<Option<WorkloadDetail>>),
    /// Submit a spec: its detail and whether it is new, or why it was refused.
    Submit(Box<WorkloadSpec>, Reply<Result<(WorkloadDetail, bool), SpecError>>),
    /// Delete a workload: whether it existed.
    Delete(String, Reply<bool>),
}

type Agent = mpsc::Sender<ApiRequest>;

#[derive(Clone)]
struct ApiState {
    agent: Agent,
    keys: KeyService,
}

impl FromRef<ApiState> for Agent {
    fn from_ref(state: &ApiState) -> Agent {
        state.agent.clone()
    }
}

impl FromRef<ApiState> for KeyService {
    fn from_ref(state: &ApiState) -> KeyService {
        state.keys.clone()
    }
}

/// Serves the API until the agent stops.
pub async fn serve(listener: tokio::net::TcpListener, agent: Agent, keys: KeyService) {
    let app = Router::new()
        .route("/v1/members", get(members))
        .route("/v1/self", get(self_info))
        .route("/v1/health", get(health))
        .route("/v1/leave", post(leave))
        .route("/metrics", get(metrics))
        .route("/v1/workloads", get(workloads).post(submit))
        .route("/v1/workloads/{name}", get(workload).delete(delete))
        .route("/v1/keys", get(list_keys))
        .route("/v1/keys/{op}", post(change_keys))
        .with_state(ApiState { agent, keys });
    if let Err(error) = axum::serve(listener, app).await {
        warn!(%error, "HTTP API stopped");
    }
}

async fn ask<T>(agent: &Agent, request: impl FnOnce(Reply<T>) -> ApiRequest) -> Result<T, Response> {
    let (reply, answer) = oneshot::channel();
    let gone = || (StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping").into_response();
    agent.send(request(reply)).await.map_err(|_| gone())?;
    answer.await.map_err(|_| gone())
}

async fn members(State(agent): State<Agent>) -> Result<Json<Vec<MemberView>>, Response> {
    ask(&agent, ApiRequest::Members).await.map(Json)
}

async fn self_info(State(agent): State<Agent>) -> Result<Json<SelfView>, Response> {
    ask(&agent, ApiRequest::SelfInfo).await.map(Json)
}

async fn health(State(agent): State<Agent>) -> Result<Json<HealthView>, Response> {
    ask(&agent, ApiRequest::Health).await.map(Json)
}

async fn leave(State(agent): State<Agent>) -> Result<Json<serde_json::Value>, Response> {
    ask(&agent, ApiRequest::Leave).await?;
    Ok(Json(serde_json::json!({ "status": "leaving" })))
}

async fn metrics(State(agent): State<Agent>) -> Result<Response, Response> {
    let text = ask(&agent, ApiRequest::Metrics).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

fn error(status: StatusCode, error: String, field: Option<String>, reason: Option<String>) -> Response {
    (status, Json(ErrorView { error, field, reason })).into_response()
}

fn refused(field: String, reason: String) -> Response {
    let message = format!("invalid workload spec: `{field}`: {reason}");
    error(StatusCode::BAD_REQUEST, message, Some(field), Some(reason))
}

fn no_such(name: &str) -> Response {
    let message = format!("no workload named {name:?} (`shoal workloads` lists them)");
    error(StatusCode::NOT_FOUND, message, None, None)
}

async fn workloads(State(agent): State<Agent>) -> Result<Json<Vec<WorkloadView>>, Response> {
    ask(&agent, ApiRequest::Workloads).await.map(Json)
}

async fn workload(State(agent): State<Agent>, Path(name): Path<String>) -> Result<Json<WorkloadDetail>, Response> {
    let found = ask(&agent, |reply| ApiRequest::Workload(name.clone(), reply)).await?;
    found.map(Json).ok_or_else(|| no_such(&name))
}

async fn submit(State(agent): State<Agent>, body: Bytes) -> Result<Response, Response> {
    let spec = crate::spec::parse_json(&body).map_err(|e| refused(e.field, e.reason))?;
    match ask(&agent, |reply| ApiRequest::Submit(Box::new(spec), reply)).await? {
        Ok((detail, new)) => {
            let status = if new { StatusCode::CREATED } else { StatusCode::OK };
            Ok((status, Json(detail)).into_response())
        }
        Err(e) => Err(refused(e.field, e.reason)),
    }
}

async fn delete(State(agent): State<Agent>, Path(name): Path<String>) -> Result<Json<serde_json::Value>, Response> {
    if ask(&agent, |reply| ApiRequest::Delete(name.clone(), reply)).await? {
        Ok(Json(serde_json::json!({ "deleted": name })))
    } else {
        Err(no_such(&name))
    }
}

/// Key operations across the mesh: applied here, then on every live member
/// over a sealed stream each.
#[derive(Clone)]
pub struct KeyService {
    keys: Arc<KeyStore>,
    requester: KeyRequester,
    name: String,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Agents asked at once.
const KEY_FAN_OUT: usize = 32;

impl KeyService {
    pub fn new(keys: Arc<KeyStore>, requester: KeyRequester, name: String) -> KeyService {
        KeyService { keys, requester, name }
    }

    /// `op` on this agent, then on every peer; each answer by agent name.
    async fn fan_out(&self, peers: Vec<PeerView>, op: &KeyOp) -> Vec<(String, Result<KeyReply, String>)> {
        let keys = Arc::clone(&self.keys);
        let local_op = op.clone();
        let local = tokio::task::spawn_blocking(move || keys.apply(&local_op)).await.map_err(|e| e.to_string());
        let mut answers = vec![(self.name.clone(), local)];
        let remote = futures::stream::iter(peers)
            .map(|peer| async move {
                let answer = match peer.addr.parse::<SocketAddr>() {
                    Ok(addr) => self.requester.request(addr, op.clone()).await.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("its address {:?} is not HOST:PORT", peer.addr)),
                };
                (peer.name, answer)
            })
            .buffer_unordered(KEY_FAN_OUT)
            .collect::<Vec<_>>()
            .await;
        answers.extend(remote);
        answers
    }
}

#[derive(Debug, Deserialize)]
struct KeyBody {
    key: String,
}

async fn list_keys(State(agent): State<Agent>, State(keys): State<KeyService>) -> Result<Json<KeysView>, Response> {
    let peers = ask(&agent, ApiRequest::Peers).await?;
    let op = KeyOp::List;
    Ok(Json(KeysView::tally(&op, keys.fan_out(peers, &op).await)))
}

async fn change_keys(
    State(agent): State<Agent>,
    State(keys): State<KeyService>,
    Path(verb): Path<String>,
    body: Bytes,
) -> Result<Json<KeysView>, Response> {
    let bad = |why: String| error(StatusCode::BAD_REQUEST, why, Some("key".into()), None);
    let body: KeyBody = serde_json::from_slice(&body).map_err(|e| bad(format!("expected {{\"key\": ...}}: {e}")))?;
    let no_key = || bad("a key is 64 hex digits, or its 8-digit id from `shoal keys list`".into());
    let op = match verb.as_str() {
        "install" => {
            let key = ClusterKey::parse(&body.key).map_err(|e| bad(e.to_string()))?;
            KeyOp::Install { key: key.to_hex() }
        }
        "use" => KeyOp::Use { id: parse_key_id(&body.key).ok_or_else(no_key)?.0 },
        "remove" => KeyOp::Remove { id: parse_key_id(&body.key).ok_or_else(no_key)?.0 },
        other => {
            let why = format!("no key operation {other:?}: use install, use or remove");
            return Err(error(StatusCode::NOT_FOUND, why, None, None));
        }
    };
    let peers = ask(&agent, ApiRequest::Peers).await?;
    if let Some(refusal) = precondition(&keys, &peers, &op).await {
        return Err(error(StatusCode::CONFLICT, refusal, Some("key".into()), None));
    }
    info!(op = %op.describe(), agents = peers.len() + 1, "key operation across the mesh");
    Ok(Json(KeysView::tally(&op, keys.fan_out(peers, &op).await)))
}

/// Why `op` would cut an agent off, if it would: `use` needs every agent to
/// hold the key already (else it could not open what the others seal), and
/// `remove` needs no agent to seal with it any more. Every live agent must
/// answer first.
async fn precondition(keys: &KeyService, peers: &[PeerView], op: &KeyOp) -> Option<String> {
    let (id, use_it) = match op {
        KeyOp::Use { id } => (crate::crypto::KeyId(*id), true),
        KeyOp::Remove { id } => (crate::crypto::KeyId(*id), false),
        KeyOp::List | KeyOp::Install { .. } => return None,
    };
    let answers = keys.fan_out(peers.to_vec(), &KeyOp::List).await;
    let mut blocking = Vec::new();
    for (node, answer) in answers {
        match answer {
            Err(error) => blocking.push(format!("{node} (did not answer: {error})")),
            Ok(reply) => {
                let at = reply.keys.iter().position(|k| *k == id.to_string());
                if (use_it && at.is_none()) || (!use_it && at == Some(0)) {
                    blocking.push(node);
                }
            }
        }
    }
    if blocking.is_empty() {
        return None;
    }
    blocking.sort();
    Some(if use_it {
        format!("key {id} is not installed on {}: `shoal keys install` it first", blocking.join(", "))
    } else {
        format!("key {id} is still the primary on {}: `shoal keys use` another key first", blocking.join(", "))
    })
}
