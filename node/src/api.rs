//! The local HTTP API (JSON): `GET /v1/members`, `GET /v1/self`,
//! `GET /v1/health`, `POST /v1/leave`, `GET /metrics`, and the workloads:
//! `POST /v1/workloads` (a spec: 201 created, 200 replaced, 400 refused with
//! `{error, field, reason}`), `GET /v1/workloads`, `GET /v1/workloads/{name}`,
//! `DELETE /v1/workloads/{name}` (404 if there is no such workload).
//!
//! Handlers never touch the protocol: they ask the agent's task over a
//! channel, so the state machine has exactly one owner.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use shoal_protocol::{SpecError, WorkloadSpec};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::agent::Reply;
use crate::view::{HealthView, MemberView, SelfView};
use crate::workloads::{ErrorView, WorkloadDetail, WorkloadView};

/// A question for the agent's task.
#[derive(Debug)]
pub enum ApiRequest {
    Members(Reply<Vec<MemberView>>),
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

/// Serves the API until the agent stops.
pub async fn serve(listener: tokio::net::TcpListener, agent: Agent) {
    let app = Router::new()
        .route("/v1/members", get(members))
        .route("/v1/self", get(self_info))
        .route("/v1/health", get(health))
        .route("/v1/leave", post(leave))
        .route("/metrics", get(metrics))
        .route("/v1/workloads", get(workloads).post(submit))
        .route("/v1/workloads/{name}", get(workload).delete(delete))
        .with_state(agent);
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
