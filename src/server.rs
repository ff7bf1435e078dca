//! The built-in web server: `/metrics`, `/healthz`, `POST /-/reload`, and the webhook receiver
//! `POST /hooks/NAME` (and `POST /hooks/NAME/SECRET` for `signature: url`; see [`crate::hooks`]),
//! optionally on a listener of its own. No request path is ever logged: for URL-signed hooks it
//! holds the secret.
//!
//! Connections are accepted by [`conn`] (limits, timeouts, TLS); [`auth`] holds basic auth.
//! `/-/reload` is off unless `server.enable_lifecycle` is set together with basic auth, and then
//! refuses cross-origin browser requests, so a web page an operator happens to open cannot
//! reload the daemon. SIGHUP always reloads.

pub mod auth;
pub mod conn;
pub mod status;

use crate::config::ServerConfig;
use crate::hooks::{Hooks, Receipt, Rejection};
use crate::metrics::Metrics;
use auth::{BasicAuth, WebConfigError};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use conn::{Limits, Listener, Tracker};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// A request to reload the config; answered with a summary or the config's errors.
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

/// A webhook body must arrive within this; a sender trickling bytes holds a connection no longer.
const HOOK_BODY_WITHIN: Duration = Duration::from_secs(10);
/// Bodies on every other route are tiny or absent.
const OTHER_BODY_MAX: usize = 16 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// All metrics.
    pub metrics: Arc<Metrics>,
    /// Where reload requests go (the daemon's main loop).
    pub reload: mpsc::Sender<ReloadRequest>,
    /// The webhook registry that `deliver: { webhook: … }` waits on.
    pub hooks: Arc<Hooks>,
    /// Notifier and storage health, when alerting runs.
    pub alert_health: Option<Arc<crate::alert::service::Health>>,
    /// The status page, when `status_page.enabled`.
    pub status: Option<Arc<status::StatusPage>>,
}

/// How the server is exposed, from `server:` at start.
pub struct WebOptions {
    /// Serve HTTPS on both listeners.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Users for every endpoint but `/healthz` and `/hooks/`.
    pub basic_auth: Option<BasicAuth>,
    /// Whether `POST /-/reload` is served.
    pub lifecycle: bool,
    /// Connection limits and timeouts.
    pub limits: Limits,
}

impl WebOptions {
    /// Plain HTTP, no auth, no lifecycle API, limits from the fd limit.
    pub fn plain(fd_limit: u64) -> Self {
        WebOptions {
            tls: None,
            basic_auth: None,
            lifecycle: false,
            limits: Limits::for_fd_limit(fd_limit, None),
        }
    }

    /// Options from `server:`, with limits sized from the open-files limit.
    pub fn from_config(server: &ServerConfig, fd_limit: u64) -> Result<Self, WebConfigError> {
        let basic_auth = BasicAuth::new(&server.basic_auth_users)?;
        if server.enable_lifecycle && basic_auth.is_none() {
            return Err(WebConfigError::LifecycleWithoutAuth);
        }
        let tls = server
            .tls_server_config
            .as_ref()
            .map(auth::tls_acceptor)
            .transpose()?;
        Ok(WebOptions {
            tls,
            basic_auth,
            lifecycle: server.enable_lifecycle,
            limits: Limits::for_fd_limit(fd_limit, server.max_connections),
        })
    }
}

/// The handlers' state: the shared parts and who may use what.
#[derive(Clone)]
struct Served {
    app: AppState,
    basic_auth: Option<Arc<BasicAuth>>,
    lifecycle: bool,
    /// Counts refused webhooks for the aggregate log lines.
    rejections: Arc<crate::hooks::RejectionLog>,
}

/// The main listener's routes; `/hooks/` only when `with_hooks`.
fn main_router(served: Served, with_hooks: bool) -> Router {
    let mut router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/-/reload", post(reload));
    if with_hooks {
        served.app.hooks.mark_served();
        router = router
            .route("/hooks/{name}", post(hook))
            .route("/hooks/{name}/{secret}", post(hook_with_secret));
    }
    let status = served
        .app
        .status
        .clone()
        .map(|page| status::router(page, served.basic_auth.clone()));
    // Every route has a body limit; the hook handler reads its own, bounded by MAX_BODY.
    let router = router
        .layer(DefaultBodyLimit::max(OTHER_BODY_MAX))
        .with_state(served);
    match status {
        Some(pages) => router.merge(pages.layer(DefaultBodyLimit::max(OTHER_BODY_MAX))),
        None => router,
    }
}

/// The hooks listener's only routes.
fn hooks_router(served: Served) -> Router {
    served.app.hooks.mark_served();
    Router::new()
        .route("/hooks/{name}", post(hook))
        .route("/hooks/{name}/{secret}", post(hook_with_secret))
        .layer(DefaultBodyLimit::max(OTHER_BODY_MAX))
        .with_state(served)
}

/// Serves every endpoint on `listener` until `shutdown` is cancelled: plain HTTP, no auth, no
/// lifecycle API.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let options = WebOptions::plain(1024);
    serve_with(listener, None, state, options, shutdown).await;
    Ok(())
}

/// Serves `main` (and `/hooks/` on `hooks` when given, else on `main`) until `shutdown`.
pub async fn serve_with(
    main: tokio::net::TcpListener,
    hooks: Option<tokio::net::TcpListener>,
    state: AppState,
    options: WebOptions,
    shutdown: CancellationToken,
) {
    let tracker = Tracker::new(options.limits, state.metrics.server.clone());
    let served = Served {
        app: state,
        basic_auth: options.basic_auth.map(Arc::new),
        lifecycle: options.lifecycle,
        rejections: Arc::default(),
    };
    let main_loop = conn::accept_loop(
        main,
        Listener::Main,
        main_router(served.clone(), hooks.is_none()),
        options.tls.clone(),
        tracker.clone(),
        shutdown.clone(),
    );
    match hooks {
        None => main_loop.await,
        Some(hooks) => {
            let hooks_loop = conn::accept_loop(
                hooks,
                Listener::Hooks,
                hooks_router(served),
                options.tls,
                tracker,
                shutdown,
            );
            // Both listeners run until the shutdown ends both.
            tokio::join!(main_loop, hooks_loop);
        }
    }
}

/// Serves only `/hooks/` on `listener` until `shutdown`, with `options`' TLS and limits: what
/// `supportwatch check` runs while its checks wait for webhook deliveries. No `/metrics` and no
/// `/-/reload` there: a one-off command has no metrics to scrape and no config to reload.
pub async fn serve_hooks(
    listener: tokio::net::TcpListener,
    state: AppState,
    options: WebOptions,
    shutdown: CancellationToken,
) {
    let tracker = Tracker::new(options.limits, state.metrics.server.clone());
    let served = Served {
        app: state,
        // The hook routes never ask for basic auth: they carry their own signature.
        basic_auth: None,
        lifecycle: false,
        rejections: Arc::default(),
    };
    conn::accept_loop(
        listener,
        Listener::Hooks,
        hooks_router(served),
        options.tls,
        tracker,
        shutdown,
    )
    .await;
}

/// `None` when the request may go on; else the 401 to answer.
async fn authorize(served: &Served, headers: &HeaderMap) -> Option<Response> {
    let auth = served.basic_auth.as_ref()?;
    let presented = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if auth.allows(presented).await {
        return None;
    }
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"supportwatch\"")],
            "unauthorized\n",
        )
            .into_response(),
    )
}

async fn metrics(State(served): State<Served>, headers: HeaderMap) -> Response {
    if let Some(refused) = authorize(&served, &headers).await {
        return refused;
    }
    let state = served.app;
    // Each chunk is written when hyper asks for it, after the previous one went out: a scrape of
    // many checks holds one chunk in memory, not the whole exposition.
    let chunks = state
        .metrics
        .exposition()
        .map(|chunk| Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(chunk)));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        axum::body::Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response()
}

async fn healthz(State(served): State<Served>) -> Response {
    let state = served.app;
    let reload_ok = state.metrics.last_reload_successful.get() == 1;
    let (failing, all_failing, storage) = match &state.alert_health {
        Some(h) => (
            h.failing_notifiers(),
            h.all_notifiers_failing(),
            h.storage_error(),
        ),
        None => (Vec::new(), false, None),
    };
    // 503 only for "failing": alerts can be neither sent (every notifier fails) nor persisted, or
    // the config on disk is not what runs (the last reload was refused or failed), or the
    // scheduler is stalled (checks are not running). "degraded" (one notifier down) stays 200.
    // The body says what needs a human.
    let scheduler_stalled = state.metrics.scheduler_stall();
    let status = if all_failing || storage.is_some() || !reload_ok || scheduler_stalled.is_some() {
        "failing"
    } else if !failing.is_empty() {
        "degraded"
    } else {
        "ok"
    };
    let failing: serde_json::Map<String, serde_json::Value> = failing
        .into_iter()
        .map(|(name, error)| (name, serde_json::Value::String(error)))
        .collect();
    let code = match status {
        "failing" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    let body = Json(serde_json::json!({
        "status": status,
        "checks": state.metrics.configured.get(),
        "running": state.metrics.running.get(),
        "last_reload_successful": reload_ok,
        "notifiers_failing": failing,
        "storage_error": storage,
        "scheduler_stalled": scheduler_stalled,
    }));
    (code, body).into_response()
}

/// Why a reload request is refused before it reaches the daemon, if it is.
fn reload_refusal(served: &Served, headers: &HeaderMap) -> Option<(StatusCode, &'static str)> {
    if !served.lifecycle {
        return Some((
            StatusCode::FORBIDDEN,
            "reloading over HTTP is off; send SIGHUP to the daemon, or set \
             server.enable_lifecycle: true together with server.basic_auth_users\n",
        ));
    }
    if is_cross_origin(headers) {
        return Some((
            StatusCode::FORBIDDEN,
            "cross-origin requests may not reload the config; use curl -X POST -u USER\n",
        ));
    }
    None
}

/// A request a browser may send from another site without asking first: an `Origin` that is not
/// this server's, `Sec-Fetch-Site: cross-site`, or a body type an HTML form can send. curl and
/// scripts send none of these.
fn is_cross_origin(headers: &HeaderMap) -> bool {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
    };
    if text(header::HeaderName::from_static("sec-fetch-site"))
        .is_some_and(|site| site != "same-origin" && site != "none")
    {
        return true;
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = text(header::HOST).unwrap_or_default();
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if host.is_empty() || authority != host {
            return true;
        }
    }
    text(header::CONTENT_TYPE).is_some_and(|content_type| {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        matches!(
            essence.as_str(),
            "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
        )
    })
}

async fn reload(State(served): State<Served>, headers: HeaderMap) -> Response {
    if let Some((status, message)) = reload_refusal(&served, &headers) {
        return (status, message).into_response();
    }
    if let Some(refused) = authorize(&served, &headers).await {
        return refused;
    }
    let (tx, rx) = oneshot::channel();
    if served.app.reload.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(Ok(summary)) => (StatusCode::OK, format!("{summary}\n")).into_response(),
        Ok(Err(errors)) => (
            StatusCode::BAD_REQUEST,
            format!("reload refused; the previous config keeps running:\n{errors}\n"),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

async fn hook(
    State(served): State<Served>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    receive_hook(served, name, None, headers, body).await
}

/// `POST /hooks/NAME/SECRET`: the secret is the last path segment (`signature: url`).
async fn hook_with_secret(
    State(served): State<Served>,
    Path((name, secret)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    receive_hook(served, name, Some(secret), headers, body).await
}

async fn receive_hook(
    served: Served,
    name: String,
    url_secret: Option<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // Read here rather than by an extractor, so a slow or oversized body is counted like any
    // other refusal.
    let body = match tokio::time::timeout(
        HOOK_BODY_WITHIN,
        axum::body::to_bytes(body, crate::hooks::MAX_BODY),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            refused(&served, &name, Rejection::TooLarge);
            return (StatusCode::PAYLOAD_TOO_LARGE, "body too large\n").into_response();
        }
        Err(_) => {
            refused(&served, &name, Rejection::SlowBody);
            return (StatusCode::REQUEST_TIMEOUT, "body too slow\n").into_response();
        }
    };
    let receipt = served
        .app
        .hooks
        .receive(&name, url_secret.as_deref(), &headers, &body);
    if let Some(reason) = receipt.rejection() {
        refused(&served, &name, reason);
    }
    match receipt {
        Receipt::Unknown => (StatusCode::NOT_FOUND, "no such hook\n").into_response(),
        Receipt::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "slow down\n").into_response(),
        Receipt::BadSignature => (StatusCode::UNAUTHORIZED, "bad signature\n").into_response(),
        // 421 Misdirected Request: the request reached an instance of the fleet that does not
        // run the checks waiting on this hook; the body names the one that does.
        Receipt::OtherShard(owner) => (StatusCode::MISDIRECTED_REQUEST, owner).into_response(),
        Receipt::Accepted(tokens) => {
            tracing::debug!(hook = %name, tokens, "webhook received");
            (StatusCode::OK, "ok\n").into_response()
        }
    }
}

/// Counts a refused webhook and, at most once a minute per hook and reason, logs how many.
/// Logged without the body or the signature: either may carry a secret or personal data.
fn refused(served: &Served, name: &str, reason: Rejection) {
    if matches!(reason, Rejection::TooLarge | Rejection::SlowBody) {
        // Refused before the registry saw it: tell the registry, so a waiting run can say so.
        served.app.hooks.note_refused(name, reason);
    }
    served
        .app
        .metrics
        .server
        .webhook_rejected
        .with_label_values(&[reason.as_str()])
        .inc();
    if let Some(count) = served.rejections.note(name, reason, Instant::now()) {
        // Unknown names come from whoever sends: never logged.
        let hook = if reason == Rejection::UnknownHook {
            "(undeclared)"
        } else {
            name
        };
        tracing::warn!(
            hook,
            reason = reason.as_str(),
            count,
            "webhook requests refused (logged at most once a minute per hook and reason)"
        );
    }
}
