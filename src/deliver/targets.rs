//! The `deliver` targets besides mailboxes: `webhook` (supportwatch's own receiver) and
//! `http_poll` (an API asked until it lists the token).
//!
//! Both report exactly as a mailbox does: the latency as [`Observation::DeliveryLatency`], a
//! missed deadline as `not delivered within …`, and then a late watch that tells late from lost.

use crate::hooks::Hooks;
use crate::outcome::{FailureKind, FollowUpResult, Observation, Outcome, RunContext};
use crate::value::{Dur, Pattern, Template, TemplateVars, Text};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::DeliverSpec;

/// Bytes read at most of one poll answer.
const MAX_POLL_BODY: usize = 1 << 20;
/// Bound on one poll request, so a hung API still leaves time for the next look.
const POLL_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `http_poll:` — an API (the CRM's callback queue, a ticket search) asked until it lists the
/// run's token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPollSpec {
    /// The URL to GET; templated (`{{token}}`), `${ENV}` allowed.
    pub url: Template,
    /// Time between looks (default 5s).
    #[serde(default = "default_interval")]
    pub interval: Dur,
    /// Extra headers (API keys); values may use `${ENV}` and are never shown.
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    /// A JSON pointer (`/items/0/comment`): the token must be in the value there rather than
    /// anywhere in the body.
    pub json_pointer: Option<String>,
    /// A regex the body must match as well (e.g. `"status":\s*"new"`).
    #[serde(rename = "match")]
    pub pattern: Option<Pattern>,
    /// PEM file with the CA(s) to trust instead of the system roots.
    pub ca_file: Option<Text>,
}

fn default_interval() -> Dur {
    Dur::secs(5)
}

impl HttpPollSpec {
    /// Checks the spec at load time.
    pub fn validate(&self) -> Result<(), String> {
        let sample = TemplateVars {
            token: "sw-check-1795430400-0a1b2c3d",
            check: "check",
            now: "2026-01-01T00:00:00Z",
        };
        let url = url::Url::parse(&self.url.render(&sample))
            .map_err(|e| format!("deliver: http_poll.url `{}`: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "deliver: http_poll.url `{}` must be an http(s) URL",
                self.url
            ));
        }
        if self.interval < Dur::millis(100) {
            return Err("deliver: http_poll.interval must be at least 100ms".into());
        }
        if let Some(p) = &self.json_pointer
            && !(p.is_empty() || p.starts_with('/'))
        {
            return Err(format!(
                "deliver: http_poll.json_pointer `{p}` must start with `/` (e.g. /items/0/comment)"
            ));
        }
        crate::net::validate_headers(&self.headers).map_err(|e| format!("deliver: http_poll: {e}"))
    }
}

/// Waits on the webhook registry.
pub(super) async fn webhook_stage(
    spec: DeliverSpec,
    hooks: Arc<Hooks>,
    name: String,
    token: String,
    submitted_at: SystemTime,
    deadline: Instant,
) -> FollowUpResult {
    let mut outcome = Outcome::default();
    let mut late = None;
    match hooks.wait(&name, &token, submitted_at, deadline).await {
        Some(at) => proven(
            &mut outcome,
            submitted_at,
            at,
            &format!("webhook {name} received the token"),
        ),
        None => {
            // Say so when nothing could have received it, rather than blame the shop.
            let hint = if hooks.is_served() {
                ""
            } else {
                "; nothing receives webhooks in this process: no web server serves /hooks/"
            };
            // The CRM may well have called and been turned away (a wrong secret is the usual
            // mistake): say so in the failure, not only in the daemon's log.
            let refused = refusals_note(&name, &hooks.refused_since(&name, submitted_at));
            outcome.fail_with(
                FailureKind::NotDelivered,
                format!(
                    "not delivered within {} (webhook {name}){refused}{hint}",
                    spec.within
                ),
            );
            let window = super::late_window(&spec);
            late = Some(super::late_watch(submitted_at, async move {
                hooks
                    .wait(&name, &token, submitted_at, Instant::now() + window)
                    .await
            }));
        }
    }
    FollowUpResult { outcome, late }
}

/// `; the request to hook crm at 12:00:01 UTC was refused: bad signature` (or how many were, and
/// the last), or nothing when no request was refused.
fn refusals_note(hook: &str, refused: &[crate::hooks::Refusal]) -> String {
    let Some(last) = refused.last() else {
        return String::new();
    };
    let at = jiff::Timestamp::try_from(last.at)
        .map(|t| t.strftime("%H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| "an unknown time".into());
    match refused.len() {
        1 => format!(
            "; the request to hook {hook} at {at} was refused: {}",
            last.why
        ),
        n => format!(
            "; {n} requests to hook {hook} were refused, the last at {at}: {}",
            last.why
        ),
    }
}

/// Waits for the shop's call on the account's registered line (`deliver: { call: PHONE }`).
/// A call that comes later is refused by the line and counted as unexpected, so there is no
/// late watch.
pub(super) async fn call_stage(
    spec: DeliverSpec,
    lines: &crate::sip::line::Lines,
    phone: &str,
    submitted_at: SystemTime,
    deadline: Instant,
) -> FollowUpResult {
    use crate::sip::line::Pickup;
    let mut outcome = Outcome::default();
    let pickup = match (spec.answer, spec.reject) {
        (true, _) => Pickup::Answer,
        (false, code) => Pickup::Reject(code.unwrap_or(486)),
    };
    let until = tokio::time::Instant::from_std(deadline);
    let waited = lines.wait(phone, pickup, until).await;
    if spec.expect_no_call {
        // Outside active hours with `outside_hours: no_call`: silence is the right answer.
        match waited {
            Ok(Some(call)) => outcome.fail_with(
                FailureKind::Expectation,
                format!(
                    "a call from {} rang phone {phone} outside active hours, where none was expected",
                    call.caller_id()
                ),
            ),
            Ok(None) => outcome.details.push(format!(
                "no call to {phone} within {}, as expected outside active hours",
                spec.within
            )),
            Err(e) => outcome.fail_with(FailureKind::NotDelivered, e),
        }
        return FollowUpResult {
            outcome,
            late: None,
        };
    }
    match waited {
        Ok(Some(call)) => {
            let ring = call.at.duration_since(submitted_at).unwrap_or_default();
            outcome.observations.push(Observation::PhoneRing(ring));
            proven(
                &mut outcome,
                submitted_at,
                call.at,
                &format!("a call from {} rang phone {phone}", call.caller_id()),
            );
            outcome.details.push(match pickup {
                Pickup::Answer => "the call was answered and hung up".to_string(),
                Pickup::Reject(code) => format!("the call was rejected with {code}"),
            });
        }
        Ok(None) => outcome.fail_with(
            FailureKind::NotDelivered,
            format!("no call to {phone} within {}", spec.within),
        ),
        Err(e) => outcome.fail_with(FailureKind::NotDelivered, e),
    }
    FollowUpResult {
        outcome,
        late: None,
    }
}

/// Polls the API until the token shows up or `deadline` passes.
pub(super) async fn poll_stage(
    spec: DeliverSpec,
    ctx: &RunContext,
    submitted_at: SystemTime,
    deadline: Instant,
) -> FollowUpResult {
    let mut outcome = Outcome::default();
    let Some(poll) = spec.http_poll.clone() else {
        outcome.fail_with(FailureKind::Internal, "deliver: http_poll is not set");
        return FollowUpResult {
            outcome,
            late: None,
        };
    };
    let poller = match Poller::new(poll, ctx) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            outcome.fail_with(FailureKind::Internal, e);
            return FollowUpResult {
                outcome,
                late: None,
            };
        }
    };
    let shown = poller.shown.clone();
    let mut late = None;
    match poller.until(deadline).await {
        Ok(at) => proven(
            &mut outcome,
            submitted_at,
            at,
            &format!("{shown} listed the token"),
        ),
        Err(last) => {
            outcome.fail_with(
                FailureKind::NotDelivered,
                format!(
                    "not delivered within {} (http_poll {shown}; last look: {last})",
                    spec.within
                ),
            );
            let window = super::late_window(&spec);
            late = Some(super::late_watch(submitted_at, async move {
                poller.until(Instant::now() + window).await.ok()
            }));
        }
    }
    FollowUpResult { outcome, late }
}

struct Poller {
    spec: HttpPollSpec,
    client: reqwest::Client,
    url: url::Url,
    /// The URL for messages: no query (it may hold the token or a key).
    shown: String,
    token: String,
}

impl Poller {
    fn new(spec: HttpPollSpec, ctx: &RunContext) -> Result<Self, String> {
        let now = ctx.now_rfc3339();
        let vars = TemplateVars {
            token: &ctx.token,
            check: &ctx.check,
            now: &now,
        };
        let url = url::Url::parse(&spec.url.render(&vars))
            .map_err(|e| format!("deliver: http_poll.url: {e}"))?;
        let ca_file = spec
            .ca_file
            .as_ref()
            .map(|t| std::path::PathBuf::from(t.expose()));
        let roots = crate::tlsconf::roots(ca_file.as_deref())?;
        let client = crate::net::client_builder(roots, 5)
            .timeout(POLL_REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build HTTP client: {}", crate::net::error_chain(&e)))?;
        Ok(Poller {
            shown: crate::value::shown_url(&url),
            spec,
            client,
            url,
            token: ctx.token.clone(),
        })
    }

    /// Looks until the token is listed (returns when it was seen) or `deadline` passes (returns
    /// what the last look found, for the failure message).
    async fn until(&self, deadline: Instant) -> Result<SystemTime, String> {
        loop {
            let last = match self.look().await {
                Ok(true) => return Ok(SystemTime::now()),
                Ok(false) => "token not listed".to_string(),
                Err(e) => e,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(last);
            }
            let pause = self.spec.interval.get().min(deadline - now);
            tokio::time::sleep(pause).await;
        }
    }

    async fn look(&self) -> Result<bool, String> {
        let mut request = self
            .client
            .get(self.url.clone())
            .header(crate::TOKEN_HEADER, &self.token);
        for (name, value) in &self.spec.headers {
            request = request.header(name.as_str(), value.expose());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| crate::net::error_chain(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("status {}", status.as_u16()));
        }
        // Read at most MAX_POLL_BODY: an API that answers with megabytes is cut, not buffered.
        let (body, _) = crate::net::read_body(&mut response, MAX_POLL_BODY)
            .await
            .map_err(|e| crate::net::error_chain(&e))?;
        let body = String::from_utf8_lossy(&body);
        let listed = match &self.spec.json_pointer {
            Some(pointer) => {
                let json: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| format!("not JSON: {e}"))?;
                match json.pointer(pointer) {
                    Some(serde_json::Value::String(s)) => s.contains(&self.token),
                    Some(other) => other.to_string().contains(&self.token),
                    None => false,
                }
            }
            None => crate::outcome::find_tokens(&body).contains(&self.token),
        };
        Ok(listed && self.spec.pattern.as_ref().is_none_or(|p| p.is_match(&body)))
    }
}

/// Records a proven delivery: its latency, and `what` happened after how long.
fn proven(outcome: &mut Outcome, submitted_at: SystemTime, at: SystemTime, what: &str) {
    let latency = at.duration_since(submitted_at).unwrap_or_default();
    outcome
        .observations
        .push(Observation::DeliveryLatency(latency));
    outcome.details.push(format!(
        "{what} after {}",
        crate::value::short_duration(latency)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::Refusal;

    #[test]
    fn refusals_are_named_with_their_time_and_reason() {
        // 2026-12-06 12:00:01 UTC
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_558_401);
        let one = Refusal {
            at,
            why: "bad signature",
        };
        assert_eq!(refusals_note("crm", &[]), "");
        assert_eq!(
            refusals_note("crm", std::slice::from_ref(&one)),
            "; the request to hook crm at 12:00:01 UTC was refused: bad signature"
        );
        let last = Refusal {
            at: at + Duration::from_secs(2),
            why: "wrong secret in the URL",
        };
        assert_eq!(
            refusals_note("crm", &[one, last]),
            "; 2 requests to hook crm were refused, the last at 12:00:03 UTC: wrong secret in the URL"
        );
    }
}
