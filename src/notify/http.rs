//! What the HTTP notifiers share: the client, one bounded exchange, and how an answer maps to
//! [`NotifyError`].
//!
//! Every HTTP notifier POSTs once and decides from the status: 2xx is done, 429 and 5xx are
//! worth a retry (after the service's `Retry-After`, if it gave one), any other status will not
//! change by asking again. Transport failures (refused, reset, timed out) are transient too.
//!
//! The URL of a Telegram bot or a Slack webhook *is* the credential, so nothing here ever formats
//! a URL: reqwest errors are stripped of theirs (`without_url`), messages start with the
//! notifier's kind and name (`telegram "owner": …`), and every message is scrubbed of the
//! notifier's secrets in case a service quotes them back.

use super::NotifyError;
use crate::net::{client_builder, error_chain};
use reqwest::StatusCode;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// At most this much of an answer is read: enough for any error JSON, and a misbehaving server
/// cannot make us buffer more.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// A service's wait hint is capped here, so a bogus `Retry-After` cannot park a notifier forever.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// A quoted answer is cut here.
const MAX_DETAIL: usize = 300;

/// One notifier's HTTP side.
pub(crate) struct HttpSender {
    /// `telegram "owner"`: how errors name the notifier.
    label: String,
    client: reqwest::Client,
    timeout: Duration,
    /// Scrubbed from every message (token, URL, password, header values).
    secrets: Vec<String>,
}

/// An answer, its body cut at [`MAX_BODY`].
pub(crate) struct Reply {
    pub status: StatusCode,
    /// `Retry-After`, as a wait.
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl HttpSender {
    /// A sender for notifier `name` of `kind`, trusting `ca_file` instead of the system roots
    /// when given. Secrets shorter than 4 characters are not scrubbed (they would mangle text
    /// without protecting anything).
    pub(crate) fn new(
        kind: &str,
        name: &str,
        timeout: Duration,
        ca_file: Option<&Path>,
        secrets: Vec<String>,
    ) -> Result<Self, String> {
        crate::tlsconf::install_crypto_provider();
        let roots = crate::tlsconf::roots(ca_file)?;
        // No redirects: a notifier's endpoint is configured exactly, and following a redirect
        // could carry a token in the path to another host.
        let client = client_builder(roots, 0)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| {
                format!(
                    "cannot build HTTP client: {}",
                    error_chain(&e.without_url())
                )
            })?;
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // Longest first, so a URL is replaced whole before a token inside it.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(HttpSender {
            label: format!("{kind} {name:?}"),
            client,
            timeout,
            secrets,
        })
    }

    /// The client, for building requests.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A POST of `payload` as JSON to `url`.
    pub(crate) fn post_json(
        &self,
        url: &url::Url,
        payload: &impl serde::Serialize,
    ) -> Result<reqwest::RequestBuilder, NotifyError> {
        let body = serde_json::to_vec(payload).map_err(|e| {
            NotifyError::permanent(format!("{}: cannot encode the payload: {e}", self.label))
        })?;
        Ok(self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body))
    }

    /// `telegram "owner"`.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// `text` with every secret replaced by `<redacted>`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "<redacted>");
            }
        }
        text
    }

    /// Sends `request` and reads the answer, all within the timeout. Only transport failures are
    /// errors here; the caller judges the status.
    pub(crate) async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Reply, NotifyError> {
        // reqwest's own timeout covers connect, headers and body; this outer bound also covers
        // anything reqwest does not (a body that trickles in forever, one byte at a time).
        match tokio::time::timeout(self.timeout, self.exchange_inner(request)).await {
            Ok(result) => result,
            Err(_) => Err(self.no_answer()),
        }
    }

    async fn exchange_inner(&self, request: reqwest::RequestBuilder) -> Result<Reply, NotifyError> {
        let mut response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        // The status is what counts; a body that breaks off only loses detail.
        let body = crate::net::read_body(&mut response, MAX_BODY)
            .await
            .map(|(body, _)| body)
            .unwrap_or_default();
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }

    fn no_answer(&self) -> NotifyError {
        NotifyError::transient(format!(
            "{}: no answer within {}",
            self.label,
            crate::value::Dur(self.timeout)
        ))
    }

    fn transport(&self, e: reqwest::Error) -> NotifyError {
        if e.is_timeout() {
            return self.no_answer();
        }
        let builder = e.is_builder();
        let text = self.scrub(&error_chain(&e.without_url()));
        let message = format!("{}: {text}", self.label);
        if builder {
            // The request could not even be built (a header value reqwest refuses): retrying
            // the same request cannot help.
            NotifyError::permanent(message)
        } else {
            NotifyError::transient(message)
        }
    }

    /// The standard judgement: 2xx is `Ok`, 429 and 5xx transient (after `after`, else the
    /// `Retry-After` header), anything else permanent. `detail` is the service's own words.
    pub(crate) fn judge(
        &self,
        reply: &Reply,
        detail: Option<String>,
        after: Option<Duration>,
    ) -> Result<(), NotifyError> {
        let status = reply.status;
        if status.is_success() {
            return Ok(());
        }
        let detail = detail.filter(|d| !d.trim().is_empty()).unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .into()
        });
        let mut message = format!(
            "{}: HTTP {}: {}",
            self.label,
            status.as_u16(),
            self.scrub(&crate::notify::render::truncate(
                &one_line(&detail),
                MAX_DETAIL
            ))
        );
        if status.is_redirection() {
            message.push_str(" (redirects are not followed; configure the final URL)");
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(NotifyError::Transient {
                message,
                after: after.or(reply.retry_after).map(|d| d.min(MAX_RETRY_AFTER)),
            })
        } else {
            Err(NotifyError::Permanent { message })
        }
    }
}

/// What a service said in an error body: the `message`, `error`, `description` or `detail` of a
/// JSON object, a JSON string, or the first line of plain text; nothing for HTML.
pub(crate) fn detail_of(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        return match value {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Object(map) => ["description", "message", "error", "detail"]
                .iter()
                .find_map(|k| map.get(*k).and_then(|v| v.as_str()).map(str::to_string)),
            _ => None,
        };
    }
    if text.starts_with('<') {
        // An HTML error page: its markup says less than the status line.
        return None;
    }
    text.lines().next().map(str::to_string)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let at = SystemTime::from(at);
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// Checks a notifier URL at load time: http or https, a host, no login in it. Plain http is
/// refused unless `plain_ok` or the host is loopback, for URLs that carry a credential.
pub(crate) fn check_url(field: &str, url: &str, plain_ok: bool) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{field}` is not a valid URL: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if plain_ok || is_loopback(&parsed) => {}
        "http" => {
            return Err(format!(
                "`{field}` must be https:// (plain http:// would send a credential unencrypted; \
                 it is allowed to a loopback address only)"
            ));
        }
        other => {
            return Err(format!(
                "`{field}` must be http:// or https://, not {other}://"
            ));
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{field}` has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "`{field}` holds a login; use the notifier's own credential fields instead"
        ));
    }
    Ok(parsed)
}

/// Whether the URL's host is this machine.
pub(crate) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_come_from_json_text_but_not_html() {
        assert_eq!(
            detail_of(
                br#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#
            ),
            Some("Bad Request: chat not found".into())
        );
        assert_eq!(detail_of(br#""bad labels""#), Some("bad labels".into()));
        assert_eq!(
            detail_of(b"invalid_payload\nmore"),
            Some("invalid_payload".into())
        );
        assert_eq!(detail_of(b"<html><body>502</body></html>"), None);
        assert_eq!(detail_of(b"  "), None);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn urls_must_be_http_and_carry_no_login() {
        assert!(check_url("url", "https://hooks.example/x", false).is_ok());
        assert!(check_url("url", "http://127.0.0.1:9/x", false).is_ok());
        assert!(check_url("url", "http://[::1]:9/x", false).is_ok());
        assert!(check_url("url", "http://localhost/x", false).is_ok());
        assert!(check_url("url", "http://crm.internal/x", true).is_ok());
        let err = check_url("url", "http://hooks.example/x", false).unwrap_err();
        assert!(err.contains("must be https://"), "{err}");
        let err = check_url("url", "ftp://hooks.example/x", true).unwrap_err();
        assert!(err.contains("not ftp://"), "{err}");
        let err = check_url("url", "https://me:pw@hooks.example/", true).unwrap_err();
        assert!(
            err.contains("holds a login") && !err.contains("pw"),
            "{err}"
        );
        assert!(check_url("url", "not a url", true).is_err());
    }

    #[test]
    fn secrets_are_scrubbed_longest_first() {
        let sender = HttpSender::new(
            "slack",
            "ops",
            Duration::from_secs(1),
            None,
            vec![
                "tok3n".into(),
                "https://hooks.example/tok3n".into(),
                "ab".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            sender.scrub("POST https://hooks.example/tok3n failed (tok3n) ab"),
            "POST <redacted> failed (<redacted>) ab"
        );
        assert_eq!(sender.label(), "slack \"ops\"");
    }
}
