//! Generic JSON webhook notifier.
//!
//! `POST url` with `Content-Type: application/json` and this body (version 1; fields are only
//! ever added within a version):
//!
//! ```json
//! {
//!   "version": 1,
//!   "shop": "shop.example",
//!   "status": "firing",            // "firing" if any alert fires (or is a reminder), else "resolved"
//!   "test": false,                 // true for `supportwatch notify-test`
//!   "title": "…", "text": "…",     // the rendered message, in the notifier's language and audience
//!   "status_url": "https://…",     // or null
//!   "alerts": [{
//!     "id": "support-form@1773324300:firing", // idempotency key: same on every re-send
//!     "fingerprint": "support-form@1773324300", "check": "support-form",
//!     "channel": "feedback_form", "kind": "form", "labels": {"shop": "shop.example"},
//!     "status": "firing",          // "firing" | "reminder" | "resolved"
//!     "since": 1773324300.0,       // Unix seconds
//!     "resolved_at": null,         // Unix seconds when resolved
//!     "consecutive_failures": 3, "reason_kind": "not_delivered", "reason": "…", "link": null
//!   }]
//! }
//! ```
//!
//! With `secret`, `X-Supportwatch-Signature: sha256=<hex>` is the HMAC-SHA256 of the exact body
//! bytes under that key, so the receiver can verify the sender before parsing. 2xx is delivered;
//! 429 (after `Retry-After`) and 5xx are retried; any other status is permanent.

use super::http::{HttpSender, check_url, detail_of};
use super::{AlertNotice, AlertStatus, Notification, Notifier, NotifyError};
use crate::value::{Secret, Text};
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The payload's `version`.
pub const PAYLOAD_VERSION: u32 = 1;
/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Supportwatch-Signature";

/// `kind: webhook`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Where the JSON payload is POSTed (http or https).
    pub url: Text,
    /// HMAC-SHA256 key; the signature goes in `X-Supportwatch-Signature: sha256=<hex>`.
    pub secret: Option<Secret>,
    /// Extra request headers (an `Authorization` header, ...); values never printed.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// PEM file with the CA(s) to trust instead of the system roots.
    pub ca_file: Option<Text>,
}

/// The JSON body, version 1.
#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    /// Always [`PAYLOAD_VERSION`].
    pub version: u32,
    /// The shop.
    pub shop: &'a str,
    /// `firing` if any alert is firing or a reminder, else `resolved`.
    pub status: &'static str,
    /// A `notify-test` message.
    pub test: bool,
    /// Rendered title.
    pub title: String,
    /// Rendered body.
    pub text: String,
    /// The status page.
    pub status_url: Option<&'a str>,
    /// Every alert of the notification.
    pub alerts: &'a [AlertNotice],
}

impl<'a> Payload<'a> {
    /// The payload of `n`.
    pub fn of(n: &'a Notification) -> Self {
        let rendered = super::render::render(n);
        let firing = n
            .alerts
            .iter()
            .any(|a| matches!(a.status, AlertStatus::Firing | AlertStatus::Reminder));
        Payload {
            version: PAYLOAD_VERSION,
            shop: &n.shop,
            status: if firing { "firing" } else { "resolved" },
            test: n.test,
            title: rendered.title,
            text: rendered.body,
            status_url: n.status_url.as_deref(),
            alerts: &n.alerts,
        }
    }
}

/// Checks the spec at load time.
pub fn validate(spec: &WebhookSpec) -> Result<(), String> {
    // Plain http is allowed: webhooks often go to a service on the same private network, and the
    // signature does not reveal the secret.
    check_url("url", spec.url.expose(), true)?;
    headers(spec).map(|_| ())
}

fn headers(spec: &WebhookSpec) -> Result<reqwest::header::HeaderMap, String> {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in &spec.headers {
        let header = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`headers`: `{name}` is not a valid header name"))?;
        let mut value = reqwest::header::HeaderValue::from_str(value.expose())
            // The value may be a credential: say which header, not what it holds.
            .map_err(|_| format!("`headers`: the value of `{name}` is not a valid header value"))?;
        value.set_sensitive(true);
        map.insert(header, value);
    }
    Ok(map)
}

/// The signature header's value for `body`: `sha256=<hex HMAC-SHA256>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Sends to a webhook.
pub struct WebhookNotifier {
    http: HttpSender,
    url: url::Url,
    secret: Option<Secret>,
    headers: reqwest::header::HeaderMap,
}

impl WebhookNotifier {
    /// Builds the notifier.
    pub fn build(name: &str, spec: &WebhookSpec, timeout: Duration) -> Result<Self, String> {
        let url = check_url("url", spec.url.expose(), true)?;
        let headers = headers(spec)?;
        let mut secrets: Vec<String> = spec.headers.values().map(|v| v.expose().into()).collect();
        secrets.extend(spec.secret.as_ref().map(|s| s.expose().to_string()));
        // A webhook URL may carry a key in its path or query; treat it like a secret.
        secrets.push(url.to_string());
        secrets.extend(url.query().map(str::to_string));
        let ca_file = spec.ca_file.as_ref().map(|t| PathBuf::from(t.expose()));
        let http = HttpSender::new("webhook", name, timeout, ca_file.as_deref(), secrets)?;
        Ok(WebhookNotifier {
            http,
            url,
            secret: spec.secret.clone(),
            headers,
        })
    }

    async fn deliver(&self, n: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(&Payload::of(n)).map_err(|e| {
            NotifyError::permanent(format!(
                "{}: cannot encode the payload: {e}",
                self.http.label()
            ))
        })?;
        let mut request = self
            .http
            .client()
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            request = request.header(
                SIGNATURE_HEADER,
                signature(secret.expose().as_bytes(), &body),
            );
        }
        let reply = self.http.exchange(request.body(body)).await?;
        self.http.judge(&reply, detail_of(&reply.body), None)
    }
}

impl Notifier for WebhookNotifier {
    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(self.deliver(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn bad_headers_are_named_without_their_value() {
        let spec = WebhookSpec {
            url: Text::literal("https://crm.example/hook"),
            secret: None,
            headers: [(
                "Authorization".to_string(),
                serde_json::from_value(serde_json::json!("Bearer s3cret\n")).unwrap(),
            )]
            .into(),
            ca_file: None,
        };
        let err = validate(&spec).unwrap_err();
        assert!(err.contains("`Authorization`"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
