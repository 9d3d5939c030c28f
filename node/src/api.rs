//! The local HTTP API (JSON): `GET /v1/members`, `GET /v1/self`,
//! `GET /v1/health`, `POST /v1/leave`, `GET /metrics`, and the workloads:
//! `POST /v1/workloads` (a spec: 201 created, 200 replaced, 400 refused with
//! `{error, field, reason}`), `GET /v1/workloads`, `GET /v1/workloads/{name}`,
//! `DELETE /v1/workloads/{name}` (404 if there is no such workload); and the
//! keyring across the mesh: `GET /v1/keys`, `POST /v1/keys/{install,use,remove}`
//! with `{"key": ...}` (every live agent asked; 409 when `use` or `remove`
//! would cut an agent off, naming it).
//!
//! `GET /v1/mesh` is the web view's one answer (members, workloads, the feed;
//! see [`crate::ui`]), and `/ui` the view itself.
//!
//! Handlers never touch the protocol: they ask the agent's task over a
//! channel, so the state machine has exactly one owner.
//!
//! With a token file, every request but the web view's own files needs
//! `Authorization: Bearer TOKEN`: none or a wrong one gets 401, a `read`
//! token anything but `GET` 403, and an address that sent too many wrong
//! tokens 429 (see [`crate::auth`]). An API bound beyond loopback always has
//! tokens and TLS (`config::ApiSecurity`). Whatever the tokens, a browser's
//! write from another site's page gets 403, and so does, on an API without
//! tokens, a request whose `Host` is a DNS name (one rebound to loopback).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRef, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use shoal_protocol::{Coordinate, Membership, SpecError, WorkloadSpec};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::auth::{FailureLimiter, Role, Tokens};
use crate::config::ApiSecurity;
use crate::crypto::ClusterKey;
use crate::keys::{KeyOp, KeyReply, KeyStore, KeysView, parse_key_id};
use crate::tls::{PeerAddr, TlsListener};
use crate::transport::KeyRequester;
use crate::ui::{MeshQuery, Watcher};
use crate::view::{HealthView, MemberView, PeerView, Reply, SelfView, node_id_hex};
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
    /// Everything the web view shows, unless its fingerprint is still the
    /// one given (`ui::mesh::snapshot_if_changed`).
    Mesh(MeshQuery),
    /// This agent's network coordinate and those it holds for members.
    Coordinates(Reply<CoordinatesView>),
}

/// A network coordinate as JSON (lengths in seconds, as in Serf and
/// `shoal_protocol::Coordinate`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoordinateView {
    pub vec: Vec<f64>,
    /// The node's estimate of its own relative error (dimensionless).
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

impl CoordinateView {
    pub fn of(coordinate: &Coordinate) -> CoordinateView {
        CoordinateView {
            vec: coordinate.vec.clone(),
            error: coordinate.error,
            adjustment: coordinate.adjustment,
            height: coordinate.height,
        }
    }

    pub fn to_coordinate(&self) -> Coordinate {
        Coordinate { vec: self.vec.clone(), error: self.error, adjustment: self.adjustment, height: self.height }
    }
}

/// One member's coordinate as this agent holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberCoordinateView {
    /// The node id, 32 hex digits.
    pub id: String,
    pub name: String,
    /// The last coordinate the member sent this agent (in an ack to one of
    /// its probes); `None` until it has.
    pub coordinate: Option<CoordinateView>,
    /// The round trip from this agent that the two coordinates predict, in
    /// milliseconds.
    pub rtt_ms: Option<f64>,
}

/// `GET /v1/coordinates`: this agent's network coordinate and, for every
/// live member (this agent included), the one it holds and the round trip
/// they predict (ALGORITHM.md section 15).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoordinatesView {
    /// This agent's id.
    pub id: String,
    pub coordinate: CoordinateView,
    pub members: Vec<MemberCoordinateView>,
}

impl CoordinatesView {
    pub fn of(membership: &Membership) -> CoordinatesView {
        let members = membership
            .members()
            .filter(|m| m.state.is_live())
            .map(|m| {
                let coordinate = membership.member_coordinate(m.id);
                MemberCoordinateView {
                    id: node_id_hex(m.id),
                    name: m.meta.name.clone(),
                    rtt_ms: membership.estimate_rtt_to(m.id).map(|rtt| rtt.as_secs_f64() * 1e3),
                    coordinate: coordinate.as_ref().map(CoordinateView::of),
                }
            })
            .collect();
        CoordinatesView {
            id: node_id_hex(membership.id()),
            coordinate: CoordinateView::of(membership.coordinate()),
            members,
        }
    }
}

impl From<MeshQuery> for ApiRequest {
    fn from(query: MeshQuery) -> ApiRequest {
        ApiRequest::Mesh(query)
    }
}

type Agent = mpsc::Sender<ApiRequest>;

#[derive(Clone)]
struct ApiState {
    agent: Agent,
    keys: KeyService,
    watcher: Watcher,
    guard: Arc<Guard>,
}

impl FromRef<ApiState> for Watcher {
    fn from_ref(state: &ApiState) -> Watcher {
        state.watcher.clone()
    }
}

impl FromRef<ApiState> for Arc<Guard> {
    fn from_ref(state: &ApiState) -> Arc<Guard> {
        Arc::clone(&state.guard)
    }
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

/// Serves the API until the agent stops: over TLS if `security` has it,
/// asking for tokens if it has them.
pub async fn serve(listener: tokio::net::TcpListener, agent: Agent, keys: KeyService, security: ApiSecurity) {
    if let Some(tls) = &security.tls {
        info!(fingerprint = %tls.fingerprint, certificate = %tls.origin, "API served over TLS; trust it with --tls-fingerprint");
    }
    if let Some(tokens) = &security.tokens {
        info!(?tokens, "API requires a token");
    }
    let guard =
        Arc::new(Guard { tokens: security.tokens, limiter: FailureLimiter::default(), refused: Refused::default() });
    let watcher = Watcher::start(agent.clone());
    let state = ApiState { agent, keys, watcher, guard: Arc::clone(&guard) };
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
        .route("/v1/mesh", get(mesh))
        .route("/v1/coordinates", get(coordinates))
        .route("/", get(crate::ui::root))
        .route("/ui", get(crate::ui::serve_file))
        .route("/ui/", get(crate::ui::serve_file))
        .route("/ui/{file}", get(crate::ui::serve_file))
        .layer(axum::middleware::from_fn_with_state(guard, authorize))
        .with_state(state);
    let served = match security.tls {
        Some(tls) => match TlsListener::new(listener, tls.config) {
            Ok(listener) => axum::serve(listener, app.into_make_service_with_connect_info::<PeerAddr>()).await,
            Err(error) => Err(error),
        },
        None => axum::serve(listener, app.into_make_service_with_connect_info::<PeerAddr>()).await,
    };
    if let Err(error) = served {
        warn!(%error, "HTTP API stopped");
    }
}

/// Who may do what, and the count of refusals.
#[derive(Debug)]
struct Guard {
    /// `None`: open (loopback without a token file).
    tokens: Option<Tokens>,
    limiter: FailureLimiter,
    refused: Refused,
}

/// Requests refused, by reason (`/metrics`).
#[derive(Debug, Default)]
struct Refused {
    no_token: AtomicU64,
    wrong_token: AtomicU64,
    read_only: AtomicU64,
    rate_limited: AtomicU64,
    /// A write from another site's page, or a rebound DNS name.
    other_site: AtomicU64,
}

impl Refused {
    fn render(&self) -> String {
        let mut out = String::from("# TYPE shoal_api_requests_refused_total counter\n");
        for (reason, count) in [
            ("no_token", &self.no_token),
            ("wrong_token", &self.wrong_token),
            ("read_only", &self.read_only),
            ("rate_limited", &self.rate_limited),
            ("other_site", &self.other_site),
        ] {
            out.push_str(&format!(
                "shoal_api_requests_refused_total{{reason=\"{reason}\"}} {}\n",
                count.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// The bearer token a request carries, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn count_refusal(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Why a browser's request must be refused, if it must: a write from
/// another site's page (the CLI sends no `Origin`; the web view sends its
/// own), and, on an API open without tokens, a `Host` that is not an
/// address or `localhost` (a DNS name rebound to 127.0.0.1 would otherwise
/// let any web page read and write the API).
fn browser_refusal(headers: &HeaderMap, method: &Method, open: bool) -> Option<&'static str> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let write = !matches!(*method, Method::GET | Method::HEAD);
    if write {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            if host != Some(authority) {
                return Some("a write from another site's page is refused: use the CLI, or this agent's own /ui/");
            }
        }
    }
    if open && host.is_some_and(|h| !is_literal_host(h)) {
        return Some(
            "this API has no tokens, so it answers only requests addressed to an IP address or localhost \
             (a DNS name could be rebound to it by any web page): use the address, or give the agent \
             --api-token-file",
        );
    }
    None
}

/// Whether `HOST[:PORT]` names an IP address or localhost.
fn is_literal_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':')
            .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host })
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Checks the token of every request but the web view's own files.
async fn authorize(
    State(guard): State<Arc<Guard>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(why) = browser_refusal(request.headers(), request.method(), guard.tokens.is_none()) {
        count_refusal(&guard.refused.other_site);
        return error(StatusCode::FORBIDDEN, why.into(), None, None);
    }
    let Some(tokens) = &guard.tokens else { return next.run(request).await };
    if crate::ui::is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let now = std::time::Instant::now();
    let count = count_refusal;
    if let Some(wait) = guard.limiter.blocked(peer.ip(), now) {
        count(&guard.refused.rate_limited);
        let why = format!("too many wrong tokens from {}: try again in {} s", peer.ip(), wait.as_secs().max(1));
        let mut response = error(StatusCode::TOO_MANY_REQUESTS, why, None, None);
        if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let unauthorized = |why: &str| {
        let mut response = error(StatusCode::UNAUTHORIZED, why.to_string(), None, None);
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    };
    let Some(presented) = bearer(request.headers()) else {
        count(&guard.refused.no_token);
        return unauthorized(
            "this agent's API needs a token: send `Authorization: Bearer TOKEN` \
             (the CLI: --token or SHOAL_TOKEN), a line of the agent's --api-token-file",
        );
    };
    match tokens.role(presented) {
        None => {
            count(&guard.refused.wrong_token);
            guard.limiter.failed(peer.ip(), now);
            debug!(peer = %peer.ip(), "API request with a wrong token");
            unauthorized("the token was refused: it is not in the agent's --api-token-file")
        }
        Some(Role::Read) if !matches!(*request.method(), Method::GET | Method::HEAD) => {
            count(&guard.refused.read_only);
            let why = "this token is read-only: submit, delete, leave and key changes need an admin token";
            error(StatusCode::FORBIDDEN, why.to_string(), None, None)
        }
        Some(_) => next.run(request).await,
    }
}

async fn mesh(State(watcher): State<Watcher>, headers: HeaderMap) -> Response {
    watcher.answer(&headers).await
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

async fn coordinates(State(agent): State<Agent>) -> Result<Json<CoordinatesView>, Response> {
    ask(&agent, ApiRequest::Coordinates).await.map(Json)
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

async fn metrics(State(agent): State<Agent>, State(guard): State<Arc<Guard>>) -> Result<Response, Response> {
    let mut text = ask(&agent, ApiRequest::Metrics).await?;
    text.push_str(&guard.refused.render());
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

/// A spec as JSON, or as TOML (`content-type: application/toml`, as the web
/// view sends what a user typed), refused with the CLI's words either way.
async fn submit(State(agent): State<Agent>, headers: HeaderMap, body: Bytes) -> Result<Response, Response> {
    let toml = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("toml"));
    let spec = if toml {
        let text = std::str::from_utf8(&body).map_err(|_| refused("spec".into(), "the spec is not UTF-8".into()))?;
        crate::spec::parse_toml(text)
    } else {
        crate::spec::parse_json(&body)
    };
    let spec = spec.map_err(|e| refused(e.field, e.reason))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    #[test]
    fn other_sites_cannot_write_and_names_cannot_be_rebound() {
        let own = headers(&[(header::HOST, "127.0.0.1:7947"), (header::ORIGIN, "http://127.0.0.1:7947")]);
        assert_eq!(browser_refusal(&own, &Method::POST, true), None, "the web view itself");
        let cli = headers(&[(header::HOST, "127.0.0.1:7947")]);
        assert_eq!(browser_refusal(&cli, &Method::DELETE, true), None, "the CLI sends no Origin");
        let evil = headers(&[(header::HOST, "127.0.0.1:7947"), (header::ORIGIN, "https://evil.example")]);
        assert!(browser_refusal(&evil, &Method::POST, false).is_some(), "a write from another site");
        assert_eq!(browser_refusal(&evil, &Method::GET, false), None, "reads need the token, not this");
        let rebound = headers(&[(header::HOST, "evil.example:7947")]);
        assert!(browser_refusal(&rebound, &Method::GET, true).is_some(), "open API, a DNS name");
        assert_eq!(browser_refusal(&rebound, &Method::GET, false), None, "with tokens a name is fine");
        for host in ["localhost:7947", "[::1]:7947", "10.0.0.1", "LOCALHOST"] {
            assert!(is_literal_host(host), "{host}");
        }
        for host in ["example.com", "example.com:7947", "localhost.evil.example:1"] {
            assert!(!is_literal_host(host), "{host}");
        }
    }
}
