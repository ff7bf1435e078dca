//! The demo shop: a small web shop on loopback with the support channels supportwatch checks.
//!
//! `--break CHANNEL` makes one channel fail the way real shops fail: the site answers 503, or the
//! feedback API answers 200 but does not accept the message.

use crate::config::Channel;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the shop's handlers share.
#[derive(Clone, Default)]
pub struct ShopState {
    /// Channels that fail on purpose.
    pub broken: Arc<BTreeSet<Channel>>,
}

/// The shop's routes.
pub fn router(state: ShopState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/api/status", get(status))
        .route("/api/feedback", post(feedback))
        .with_state(state)
}

async fn home(State(state): State<ShopState>) -> Response {
    if state.broken.contains(&Channel::Website) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Html("<h1>Maintenance</h1>"),
        )
            .into_response();
    }
    Html(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\"><title>Demo shop</title></head>\
         <body><h1>Demo shop</h1><p>Служба поддержки: support@demo-shop.test</p></body></html>",
    )
    .into_response()
}

async fn status(State(state): State<ShopState>) -> Response {
    let website = !state.broken.contains(&Channel::Website);
    Json(serde_json::json!({
        "status": if website { "ok" } else { "degraded" },
        "channels": { "feedback_form": !state.broken.contains(&Channel::FeedbackForm) },
    }))
    .into_response()
}

async fn feedback(
    State(state): State<ShopState>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let message = body.get("message").and_then(|m| m.as_str()).unwrap_or("");
    let token = headers
        .get(crate::TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // A broken feedback backend still says 200: the failure supportwatch exists to catch.
    let accepted = !state.broken.contains(&Channel::FeedbackForm) && !message.is_empty();
    Json(serde_json::json!({
        "accepted": accepted,
        "ticket": if accepted { format!("T-{}", token.len() + message.len()) } else { String::new() },
        "message": "Спасибо! Мы ответим в течение 2 часов.",
    }))
    .into_response()
}

/// Serves `router` over TLS on `listener` until `stop` is cancelled.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    stop: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (tcp, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        // Without it the handshake's small writes wait on delayed ACKs: ~40 ms per connection.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            // A client that connects and never finishes its handshake must not keep a task forever.
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    _ => return,
                };
            let io = hyper_util::rt::TokioIo::new(tls);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
