//! The demo shop's chat bot, over an HTTP JSON API (`POST /api/chat`) and a WebSocket
//! (`/chat/ws`).
//!
//! It greets every message with an automated answer that quotes it, so the check sees its own
//! token come back. `--break chat` makes it stop answering: the HTTP API accepts the message and
//! returns no reply, the WebSocket reads and says nothing — a chat whose operators went home
//! without switching on the auto-reply.

use super::shop::Break;
use super::shop::ShopState;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::{any, post};
use axum::{Json, Router};
use std::time::Duration;

/// The bot's routes.
pub(super) fn routes() -> Router<ShopState> {
    Router::new()
        .route("/api/chat", post(http_chat))
        .route("/chat/ws", any(ws_chat))
}

fn reply_to(message: &str) -> String {
    // Quote only the start: the bot must not echo back whatever size it was sent.
    let quoted: String = message.chars().take(300).collect();
    format!("Здравствуйте! Это автоматический ответ демо-магазина. Вы написали: «{quoted}»")
}

async fn http_chat(
    State(state): State<ShopState>,
    Json(body): Json<serde_json::Value>,
) -> Json<serde_json::Value> {
    let message = body.get("message").and_then(|m| m.as_str()).unwrap_or("");
    let session = match body.get("session").and_then(|s| s.as_str()) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => format!("demo-{:08x}", rand::random::<u32>()),
    };
    let reply = (!state.broken.contains(&Break::Chat)).then(|| reply_to(message));
    Json(serde_json::json!({ "session": session, "reply": reply }))
}

async fn ws_chat(State(state): State<ShopState>, upgrade: WebSocketUpgrade) -> Response {
    let broken = state.broken.contains(&Break::Chat);
    upgrade
        .max_message_size(64 << 10)
        .on_upgrade(move |socket| converse(socket, broken))
}

async fn converse(mut socket: WebSocket, broken: bool) {
    // An idle visitor is dropped after a minute, so a forgotten socket does not live forever.
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(60), socket.recv()).await
    {
        let Message::Text(text) = message else {
            continue;
        };
        if broken {
            continue;
        }
        let typing = serde_json::json!({ "type": "typing" }).to_string();
        let reply = serde_json::json!({ "type": "message", "text": reply_to(text.as_str()) });
        if socket.send(Message::text(typing)).await.is_err()
            || socket.send(Message::text(reply.to_string())).await.is_err()
        {
            return;
        }
    }
}
