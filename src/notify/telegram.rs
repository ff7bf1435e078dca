//! Telegram Bot API notifier (sendMessage).
//!
//! One plain-text message per notification: `POST {api_url}/bot{token}/sendMessage` with
//! `{chat_id, text, disable_web_page_preview, message_thread_id?}`. No `parse_mode`, so a check
//! name with `_` or `*` needs no escaping and cannot break the message. The token is part of the
//! URL path, which is why no error here ever contains the URL.
//!
//! Telegram answers `{ok, error_code, description, parameters: {retry_after,
//! migrate_to_chat_id}}`: 429 waits `retry_after` seconds, 5xx and transport failures are
//! transient, any other error quotes `description` (e.g. "Bad Request: chat not found").

use super::http::{HttpSender, check_url};
use super::{Notification, Notifier, NotifyError};
use crate::value::{Secret, Text};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;

/// Telegram refuses longer messages (counted in UTF-16 code units).
const MAX_MESSAGE: usize = 4096;
const DEFAULT_API_URL: &str = "https://api.telegram.org";

/// `kind: telegram`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSpec {
    /// Bot token from @BotFather; never printed.
    pub bot_token: Secret,
    /// Chat, group or channel id (`-100…`) or `@channelname`.
    pub chat_id: Text,
    /// Bot API base URL, for a self-hosted Bot API server (default `https://api.telegram.org`).
    pub api_url: Option<Text>,
    /// Forum topic to post into.
    pub message_thread_id: Option<i64>,
}

/// Checks the spec at load time.
pub fn validate(spec: &TelegramSpec) -> Result<(), String> {
    endpoint(spec).map(|_| ())
}

/// The sendMessage URL (holds the token: never print it).
fn endpoint(spec: &TelegramSpec) -> Result<url::Url, String> {
    let token = spec.bot_token.expose();
    if token.is_empty() {
        return Err("`bot_token` is empty; set it to the token @BotFather gave the bot".into());
    }
    // A token is `<bot id>:<secret>`; anything that could leave the path segment is a typo
    // (or a pasted URL) and would send the token somewhere else.
    if !token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'))
    {
        return Err(
            "`bot_token` must look like 123456789:AAE…(letters, digits, `_`, `-`), \
             as @BotFather gives it"
                .into(),
        );
    }
    let chat = spec.chat_id.expose().trim();
    if chat.is_empty() {
        return Err("`chat_id` is empty; set the chat id (e.g. -1001234567890) or @channel".into());
    }
    let base = spec
        .api_url
        .as_ref()
        .map(|t| t.expose())
        .unwrap_or(DEFAULT_API_URL);
    // The token travels in the path, so plain http is for a local Bot API server only.
    let base = check_url("api_url", base, false)?;
    if base.query().is_some() || base.fragment().is_some() {
        return Err("`api_url` must be only scheme://host[:port][/path]".into());
    }
    let joined = format!(
        "{}/bot{token}/sendMessage",
        base.as_str().trim_end_matches('/')
    );
    url::Url::parse(&joined).map_err(|e| format!("`api_url` does not make a valid URL: {e}"))
}

/// Sends through Telegram.
pub struct TelegramNotifier {
    http: HttpSender,
    /// Holds the token: never printed, never in an error.
    url: url::Url,
    chat_id: serde_json::Value,
    thread: Option<i64>,
}

impl TelegramNotifier {
    /// Builds the notifier.
    pub fn build(name: &str, spec: &TelegramSpec, timeout: Duration) -> Result<Self, String> {
        let url = endpoint(spec)?;
        let http = HttpSender::new(
            "telegram",
            name,
            timeout,
            None,
            vec![url.to_string(), spec.bot_token.expose().to_string()],
        )?;
        let chat = spec.chat_id.expose().trim();
        // Numeric ids go as numbers, `@channel` as a string; the API takes both.
        let chat_id = chat
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::from(chat));
        Ok(TelegramNotifier {
            http,
            url,
            chat_id,
            thread: spec.message_thread_id,
        })
    }

    async fn deliver(&self, n: &Notification) -> Result<(), NotifyError> {
        let rendered = super::render::render(n);
        let mut text = rendered.title;
        if !rendered.body.is_empty() {
            text.push_str("\n\n");
            text.push_str(&rendered.body);
        }
        let mut payload = serde_json::json!({
            "chat_id": self.chat_id,
            "text": truncate_utf16(&text, MAX_MESSAGE),
            "disable_web_page_preview": true,
        });
        if let Some(thread) = self.thread {
            payload["message_thread_id"] = thread.into();
        }
        let request = self.http.post_json(&self.url, &payload)?;
        let reply = self.http.exchange(request).await?;
        let answer: Answer = serde_json::from_slice(&reply.body).unwrap_or_default();
        if reply.status.is_success() && answer.ok != Some(false) {
            return Ok(());
        }
        let mut detail = answer.description;
        if let (Some(d), Some(id)) = (
            detail.as_mut(),
            answer
                .parameters
                .as_ref()
                .and_then(|p| p.migrate_to_chat_id),
        ) {
            d.push_str(&format!("; set chat_id to {id}"));
        }
        let after = answer
            .parameters
            .and_then(|p| p.retry_after)
            .map(Duration::from_secs);
        // `ok: false` with a 200 is not something Telegram does, but must not read as success.
        if reply.status.is_success() {
            return Err(NotifyError::permanent(format!(
                "{}: Telegram refused the message: {}",
                self.http.label(),
                self.http
                    .scrub(detail.as_deref().unwrap_or("no description given"))
            )));
        }
        self.http.judge(&reply, detail, after)
    }
}

/// The parts of a Bot API answer we read.
#[derive(Debug, Default, Deserialize)]
struct Answer {
    ok: Option<bool>,
    description: Option<String>,
    parameters: Option<Parameters>,
}

#[derive(Debug, Default, Deserialize)]
struct Parameters {
    retry_after: Option<u64>,
    migrate_to_chat_id: Option<i64>,
}

/// `text` cut to at most `max` UTF-16 code units (Telegram's measure), ending in "…" when cut.
fn truncate_utf16(text: &str, max: usize) -> String {
    if text.encode_utf16().count() <= max {
        return text.to_string();
    }
    let mut used = 1; // the ellipsis
    let mut out = String::new();
    for c in text.chars() {
        used += c.len_utf16();
        if used > max {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

impl Notifier for TelegramNotifier {
    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(self.deliver(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(token: &str, chat: &str, api: Option<&str>) -> TelegramSpec {
        TelegramSpec {
            bot_token: serde_json::from_value(serde_json::json!(token)).unwrap(),
            chat_id: Text::literal(chat),
            api_url: api.map(Text::literal),
            message_thread_id: None,
        }
    }

    #[test]
    fn endpoint_carries_the_token_and_validation_never_shows_it() {
        let url = endpoint(&spec("123:AbC-d_e", "-100", None)).unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.telegram.org/bot123:AbC-d_e/sendMessage"
        );
        let url = endpoint(&spec("1:x", "@c", Some("http://127.0.0.1:8081/"))).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8081/bot1:x/sendMessage");
        for (s, wanted) in [
            (spec("", "1", None), "`bot_token` is empty"),
            (spec("1:a/b", "1", None), "must look like"),
            (spec("1:secret", " ", None), "`chat_id` is empty"),
            (
                spec("1:secret", "1", Some("http://bot.example")),
                "must be https://",
            ),
        ] {
            let err = validate(&s).unwrap_err();
            assert!(err.contains(wanted), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn long_texts_are_cut_in_utf16_units() {
        let short = "Чат не отвечает";
        assert_eq!(truncate_utf16(short, 4096), short);
        let long = "😀".repeat(3000); // 6000 UTF-16 units
        let cut = truncate_utf16(&long, 4096);
        assert!(cut.encode_utf16().count() <= 4096);
        assert!(cut.ends_with('…'));
    }
}
