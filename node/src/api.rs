//! The local HTTP API (JSON): `GET /v1/members`, `GET /v1/self`,
//! `GET /v1/health`, `POST /v1/leave`, `GET /metrics`.
//!
//! Handlers never touch the protocol: they ask the agent's task over a
//! channel, so the state machine has exactly one owner.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::agent::Reply;
use crate::view::{HealthView, MemberView, SelfView};

/// A question for the agent's task.
#[derive(Debug)]
pub enum ApiRequest {
    Members(Reply<Vec<MemberView>>),
    SelfInfo(Reply<SelfView>),
    Health(Reply<HealthView>),
    Metrics(Reply<String>),
    Leave(Reply<()>),
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
