//! The web view: `/ui`, plain HTML, CSS and JavaScript embedded in the
//! binary (no CDN, nothing fetched: it works on an offline network), and
//! `GET /v1/mesh`, the one answer it polls.
//!
//! A watcher task asks the agent for a [`mesh::MeshSnapshot`] every second
//! while a page polls (every 5 s otherwise, to keep the feed); the agent
//! takes one only when a cheap fingerprint of what it shows changed, and the
//! watcher renders the JSON only when the snapshot differs. A refresh that
//! took t waits at least 100·t before the next, so the view never costs the
//! agent more than 1% of a core. A poll with the last `ETag` gets 304,
//! so an open page costs the agent one snapshot a second and the browser
//! nothing while the mesh is quiet.

pub mod mesh;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::debug;

use crate::view::Reply;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");
const ICON: &str = include_str!("assets/icon.svg");

/// The page may load only its own files and talk only to its own agent.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

pub(crate) async fn root() -> Redirect {
    Redirect::to("/ui/")
}

/// The page's files: (content type, body) by path.
pub fn file(path: &str) -> Option<(&'static str, &'static str)> {
    Some(match path {
        "/ui" | "/ui/" => ("text/html; charset=utf-8", INDEX),
        "/ui/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "/ui/style.css" => ("text/css; charset=utf-8", STYLE),
        "/ui/icon.svg" => ("image/svg+xml", ICON),
        _ => return None,
    })
}

/// The Content-Security-Policy the page is served with.
pub const CONTENT_SECURITY_POLICY: &str = CSP;

pub(crate) async fn serve_file(uri: axum::http::Uri) -> Response {
    match file(uri.path()) {
        Some((content_type, body)) => asset(content_type, body),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Whether a path is one of the page's own files, which hold no data and
/// are served without a token (the page then asks for one).
pub(crate) fn is_public(path: &str) -> bool {
    path == "/" || file(path).is_some()
}

/// The last rendered view.
#[derive(Clone, Debug)]
struct Rendered {
    etag: HeaderValue,
    body: Bytes,
}

/// Keeps the rendered view current; `GET /v1/mesh` reads it.
#[derive(Clone, Debug)]
pub struct Watcher {
    latest: watch::Receiver<Option<Rendered>>,
    /// Unix seconds of the last poll.
    polled: Arc<AtomicU64>,
    wake: Arc<Notify>,
}

/// How often the view is refreshed while a page polls, and otherwise.
const WATCHED_EVERY: Duration = Duration::from_secs(1);
const IDLE_EVERY: Duration = Duration::from_secs(5);
/// The longest wait between refreshes, however large the mesh.
const MAX_EVERY: Duration = Duration::from_secs(10);
/// Every this many refreshes, a snapshot is taken even if the fingerprint
/// did not change.
const FULL_EVERY: u32 = 30;
/// A page that has not polled for this long is gone.
const WATCHED_FOR: u64 = 30;

fn unix_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// The watcher's question to the agent: a snapshot of the mesh, unless its
/// fingerprint is still `since`; the answer is (fingerprint, snapshot).
#[derive(Debug)]
pub struct MeshQuery {
    pub since: u64,
    pub reply: Reply<(u64, Option<mesh::MeshSnapshot>)>,
}

impl Watcher {
    /// Starts the watcher task, which asks `agent` (whose requests can carry
    /// a [`MeshQuery`]); it ends when the agent does.
    pub fn start<R: From<MeshQuery> + Send + 'static>(agent: mpsc::Sender<R>) -> Watcher {
        let (publish, latest) = watch::channel(None);
        let polled = Arc::new(AtomicU64::new(0));
        let wake = Arc::new(Notify::new());
        let watcher = Watcher { latest, polled: Arc::clone(&polled), wake: Arc::clone(&wake) };
        tokio::spawn(async move {
            let mut state = mesh::MeshState::default();
            let mut last = 0;
            let mut asked: u32 = 0;
            loop {
                // A full snapshot now and then, whatever the fingerprint says.
                asked = asked.wrapping_add(1);
                let since = if asked % FULL_EVERY == 0 { 0 } else { last };
                let started = std::time::Instant::now();
                let (reply, answer) = oneshot::channel();
                if agent.send(R::from(MeshQuery { since, reply })).await.is_err() {
                    return;
                }
                let Ok((print, snapshot)) = answer.await else { return };
                last = print;
                if let Some(view) = snapshot.and_then(|snapshot| state.update(snapshot, unix_ms())) {
                    match serde_json::to_vec(&view) {
                        Ok(body) => {
                            let etag = HeaderValue::from_str(&format!("\"{}\"", view.version))
                                .unwrap_or(HeaderValue::from_static("\"0\""));
                            publish.send_replace(Some(Rendered { etag, body: Bytes::from(body) }));
                        }
                        Err(error) => debug!(%error, "cannot render the mesh view"),
                    }
                }
                let watched = unix_ms() / 1000 < polled.load(Ordering::Relaxed) + WATCHED_FOR;
                // At most 1% of a core: a large mesh that changes all the
                // time is refreshed less often.
                let spent = started.elapsed() * 100;
                let every = if watched { WATCHED_EVERY } else { IDLE_EVERY }.max(spent.min(MAX_EVERY));
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = wake.notified(), if !watched => {}
                }
            }
        });
        watcher
    }

    /// `GET /v1/mesh`: the view, or 304 if the caller has this version.
    pub(crate) async fn answer(&self, headers: &HeaderMap) -> Response {
        let now = unix_ms() / 1000;
        if self.polled.swap(now, Ordering::Relaxed) + WATCHED_FOR <= now {
            self.wake.notify_one();
        }
        let mut latest = self.latest.clone();
        let Ok(rendered) = latest.wait_for(Option::is_some).await.map(|r| r.clone()) else {
            return (StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping").into_response();
        };
        let Some(rendered) = rendered else {
            return (StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping").into_response();
        };
        let mut response = if headers.get(header::IF_NONE_MATCH) == Some(&rendered.etag) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            ([(header::CONTENT_TYPE, "application/json")], rendered.body).into_response()
        };
        response.headers_mut().insert(header::ETAG, rendered.etag);
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}
