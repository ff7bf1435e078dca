//! Slack-compatible incoming webhook notifier (Slack, Mattermost, Rocket.Chat).
//!
//! `POST url` with `{"text": "<title>\n<body>", "channel"?, "username"?}`: the common subset all
//! three understand. The URL is the credential (anyone holding it can post), so it is a
//! [`Secret`] and no error ever shows it. Slack answers errors in plain text (`invalid_payload`,
//! `channel_not_found`), Mattermost in JSON (`message`); both are quoted.

use super::http::{HttpSender, check_url, detail_of};
use super::{Notification, Notifier, NotifyError};
use crate::value::{Secret, Text};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;

/// Mattermost's default post limit is 16383 characters; Slack's is larger.
const MAX_TEXT: usize = 16_000;

/// `kind: slack`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSpec {
    /// Incoming webhook URL; it is a credential, so it is never printed.
    pub url: Secret,
    /// Channel override, where the service allows one.
    pub channel: Option<Text>,
    /// Sender name override, where the service allows one.
    pub username: Option<Text>,
}

/// Checks the spec at load time.
pub fn validate(spec: &SlackSpec) -> Result<(), String> {
    // Errors from check_url never quote the URL, which matters here.
    check_url("url", spec.url.expose(), false).map(|_| ())
}

/// Sends to a Slack-compatible webhook.
pub struct SlackNotifier {
    http: HttpSender,
    /// The credential: never printed.
    url: url::Url,
    channel: Option<String>,
    username: Option<String>,
}

impl SlackNotifier {
    /// Builds the notifier.
    pub fn build(name: &str, spec: &SlackSpec, timeout: Duration) -> Result<Self, String> {
        let url = check_url("url", spec.url.expose(), false)?;
        let mut secrets = vec![spec.url.expose().to_string(), url.to_string()];
        // The path after the host is the key (`/services/T…/B…/XXXX`, `/hooks/xxxx`).
        if url.path().len() > 1 {
            secrets.push(url.path().to_string());
        }
        let http = HttpSender::new("slack", name, timeout, None, secrets)?;
        Ok(SlackNotifier {
            http,
            url,
            channel: spec.channel.as_ref().map(|t| t.expose().to_string()),
            username: spec.username.as_ref().map(|t| t.expose().to_string()),
        })
    }

    async fn deliver(&self, n: &Notification) -> Result<(), NotifyError> {
        let rendered = super::render::render(n);
        let mut text = rendered.title;
        if !rendered.body.is_empty() {
            text.push('\n');
            text.push_str(&rendered.body);
        }
        let mut payload = serde_json::json!({
            "text": super::render::truncate(&text, MAX_TEXT),
        });
        if let Some(channel) = &self.channel {
            payload["channel"] = channel.as_str().into();
        }
        if let Some(username) = &self.username {
            payload["username"] = username.as_str().into();
        }
        let request = self.http.post_json(&self.url, &payload)?;
        let reply = self.http.exchange(request).await?;
        self.http.judge(&reply, detail_of(&reply.body), None)
    }
}

impl Notifier for SlackNotifier {
    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(self.deliver(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_must_be_https_and_is_never_quoted() {
        let spec = |url: &str| SlackSpec {
            url: serde_json::from_value(serde_json::json!(url)).unwrap(),
            channel: None,
            username: None,
        };
        assert!(validate(&spec("https://hooks.slack.com/services/T0/B0/xyz")).is_ok());
        assert!(validate(&spec("http://127.0.0.1:8065/hooks/abc")).is_ok());
        for url in ["http://chat.example/hooks/k3y", "hooks.example/k3y"] {
            let err = validate(&spec(url)).unwrap_err();
            assert!(!err.contains("k3y"), "{err}");
        }
    }
}
