//! The shop owner's phone: a stand-in for the Telegram Bot API that prints each message.
//!
//! The demo's `owner-telegram` notifier is the real Telegram notifier with its `api_url` pointed
//! here, so what appears on the console is exactly what a shop owner would receive.

use super::shop::ShopState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use std::sync::{Arc, Mutex};

/// The texts received so far.
#[derive(Clone, Default, Debug)]
pub struct Inbox(Arc<Mutex<Vec<String>>>);

impl Inbox {
    /// Every text, oldest first.
    pub fn messages(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn push(&self, text: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(text);
    }
}

/// `POST /telegram/bot<TOKEN>/sendMessage`.
pub fn routes() -> Router<ShopState> {
    Router::new().route("/telegram/{bot}/sendMessage", post(send_message))
}

async fn send_message(
    State(state): State<ShopState>,
    Path(bot): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let message: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if !bot.starts_with("bot") {
        return (
            axum::http::StatusCode::NOT_FOUND,
            Json(serde_json::json!({"ok": false, "error_code": 404, "description": "Not Found"})),
        )
            .into_response();
    }
    let chat = message["chat_id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| message["chat_id"].to_string());
    let text = message["text"].as_str().unwrap_or_default();
    let mut out = format!("\n  ┌─ Telegram message to the shop owner (chat {chat})\n");
    for line in text.lines() {
        out.push_str("  │ ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("  └─\n");
    println!("{out}");
    state.owner_inbox.push(text.to_string());
    Json(serde_json::json!({
        "ok": true,
        "result": { "message_id": 1, "chat": { "id": chat }, "text": text }
    }))
    .into_response()
}
