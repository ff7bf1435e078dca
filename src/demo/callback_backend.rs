//! The demo shop's callback-request form and the CRM behind it.
//!
//! `/callback-request` is a plain server-rendered form (phone, comment). Its "CRM" hands each
//! request on the way real ones do: a signed webhook to supportwatch's own receiver
//! (`POST /hooks/demo-crm`), here with the shared secret in a header. The receiver's address is
//! known only once the daemon listens, which is after the shop starts, so it is handed over
//! through [`HookTarget`]. With `--break callback` the form still thanks the visitor and the
//! request is silently dropped, which is exactly what the `callback` check exists to catch.
//!
//! Then the CRM really calls back: a second after the request, the demo PBX dials the number
//! the visitor entered, which rings only when a phone is registered as that number (the demo's
//! `demo-line`, whose number the `demo-callback-call` check fills in with
//! `{{phone.demo-line.number}}`). With `--break callback-call` the webhook still goes out but
//! nobody dials: the telephony integration that "received the request" and never calls.

use super::shop::Break;
use super::shop::ShopState;
use axum::Router;
use axum::extract::{Form, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How long after a request the demo CRM calls back.
const CALL_BACK_AFTER: Duration = Duration::from_secs(1);

/// Where the demo CRM posts: the daemon's hook URL and the secret, set once the daemon listens.
#[derive(Clone, Default)]
pub struct HookTarget(Arc<OnceLock<(String, String)>>);

impl HookTarget {
    /// Points the CRM at `url`, authenticating with `secret` (first call wins).
    pub fn set(&self, url: String, secret: String) {
        let _ = self.0.set((url, secret));
    }

    /// The target, waiting briefly: the first run can start while the daemon is still starting.
    async fn get(&self) -> Option<(String, String)> {
        for _ in 0..50 {
            if let Some(target) = self.0.get() {
                return Some(target.clone());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

/// The form's routes.
pub fn routes() -> Router<ShopState> {
    Router::new().route("/callback-request", get(page).post(submit))
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn submit(
    State(state): State<ShopState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let phone = form.get("phone").cloned().unwrap_or_default();
    if phone.trim().is_empty() {
        return Html("<p>Укажите телефон / Enter a phone number</p>").into_response();
    }
    let dropped = state.broken.contains(&Break::Callback);
    if let (false, false, Some(pbx)) = (
        dropped,
        state.broken.contains(&Break::CallbackCall),
        state.pbx.clone(),
    ) {
        let number = phone.clone();
        // The call back, a moment after the visitor got the answer (a real CRM takes minutes;
        // by then the check waits on its line).
        tokio::spawn(async move {
            tokio::time::sleep(CALL_BACK_AFTER).await;
            match pbx.dial(&number).await {
                Ok(()) => tracing::debug!(%number, "demo CRM: called back"),
                Err(why) => tracing::debug!(%number, %why, "demo CRM: no call back"),
            }
        });
    }
    if !dropped {
        let comment = form.get("comment").cloned().unwrap_or_default();
        let hook = state.hook.clone();
        // The CRM works after the visitor got the answer, as real ones do.
        tokio::spawn(async move {
            let Some((url, secret)) = hook.get().await else {
                tracing::warn!("demo CRM: no webhook target; callback request dropped");
                return;
            };
            let body =
                serde_json::json!({ "type": "callback", "phone": phone, "comment": comment });
            crate::tlsconf::install_crypto_provider();
            let client = match reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
            {
                Ok(client) => client,
                Err(e) => {
                    tracing::warn!(error = %e, "demo CRM: no HTTP client");
                    return;
                }
            };
            let sent = client
                .post(&url)
                .header("x-hook-key", secret)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(status = r.status().as_u16(), "demo CRM: webhook refused"),
                Err(e) => tracing::warn!(error = %e, "demo CRM: webhook not sent"),
            }
        });
    }
    Html("<p>Спасибо! Мы перезвоним вам в течение 15 минут. Thank you, we will call you back.</p>")
        .into_response()
}

const PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>Обратный звонок</title></head>
<body><h1>Demo shop: обратный звонок</h1>
<form id="callback" method="post" action="/callback-request">
<label>Телефон <input name="phone" type="tel" required></label>
<label>Комментарий <input name="comment"></label>
<button type="submit">Перезвоните мне</button>
</form></body></html>"#;
