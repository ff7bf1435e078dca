//! The built-in web server: `/metrics`, `/healthz`, `POST /-/reload`, and the webhook receiver
//! `POST /hooks/NAME` (see [`crate::hooks`]).

use crate::hooks::{Hooks, Receipt};
use crate::metrics::Metrics;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// A request to reload the config; answered with a summary or the config's errors.
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

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
}

/// The router with every endpoint.
pub fn router(state: AppState) -> Router {
    state.hooks.mark_served();
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/-/reload", post(reload))
        .route(
            "/hooks/{name}",
            // Larger bodies are refused with 413 before they are read into memory.
            post(hook).layer(DefaultBodyLimit::max(crate::hooks::MAX_BODY)),
        )
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn metrics(State(state): State<AppState>) -> Response {
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

async fn healthz(State(state): State<AppState>) -> Response {
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
    // the config on disk is not what runs (the last reload was refused or failed). "degraded"
    // (one notifier down) stays 200. The body says what needs a human.
    let status = if all_failing || storage.is_some() || !reload_ok {
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
    }));
    (code, body).into_response()
}

async fn reload(State(state): State<AppState>) -> Response {
    let (tx, rx) = oneshot::channel();
    if state.reload.send(tx).await.is_err() {
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
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // Logged without the body or the signature: either may carry a secret or personal data.
    match state.hooks.receive(&name, &headers, &body) {
        Receipt::Unknown => (StatusCode::NOT_FOUND, "no such hook\n").into_response(),
        Receipt::RateLimited => {
            tracing::warn!(hook = %name, "webhook rate limit exceeded");
            (StatusCode::TOO_MANY_REQUESTS, "slow down\n").into_response()
        }
        Receipt::BadSignature => {
            tracing::warn!(hook = %name, "webhook refused: missing or wrong signature");
            (StatusCode::UNAUTHORIZED, "bad signature\n").into_response()
        }
        Receipt::Accepted(tokens) => {
            tracing::debug!(hook = %name, tokens, "webhook received");
            (StatusCode::OK, "ok\n").into_response()
        }
    }
}
