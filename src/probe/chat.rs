//! `chat` checks: say something to the shop's chat bot and prove that it answers in time.
//!
//! Two transports: `via: http`, a JSON chat API (Rasa/Botpress-style REST webhooks) that answers
//! in the POST's response or, with `poll:`, later at a URL polled until the reply appears; and
//! `via: websocket`, where the reply is the first incoming message whose text matches. A
//! conversation is one message (`message`, by default one saying it is an automated test and
//! carrying `{{token}}`) or a `script` of turns; the bot's conversation id, when `session_at`
//! names where it is in the first answer, is carried into later turns as `{{session}}`.
//!
//! Outside `active_hours` the `outside_hours` expectations replace the normal ones (a staffed
//! chat auto-replies at night), and only the first message is sent: a script is a conversation
//! with people who are not there.
//!
//! A turn listens past `within` until shortly before the attempt's `timeout`, so a bot that answers
//! late fails as `slow_reply` ("replied after 3.0s, later than within 1s") and only a silent one as
//! `no_reply`. Every answer read is capped (1 MiB per HTTP body and per WebSocket message) so a
//! misbehaving bot costs neither memory nor time.

mod text;
mod transport;
mod via_browser;

use text::{ChatJson, compile_json};
pub use text::{ChatText, ReplyPattern};

use super::{Probe, Shared};
use crate::hours::ActiveHours;
use crate::net::{parse_url, validate_headers};
use crate::outcome::{FailureKind, Observation, Outcome, RunContext};
use crate::value::ByteSize;
use crate::value::{Dur, Pattern, TemplateVars, Text};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The most read of one HTTP answer or one WebSocket message.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Characters of a wrong reply quoted in the failure message.
const QUOTE_CHARS: usize = 200;
const DEFAULT_MESSAGE: &str =
    "Автоматическая проверка {{token}}, не отвечайте. Automated test {{token}}, please ignore.";

/// Config of a `chat` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSpec {
    /// How the bot is reached.
    pub via: Via,
    /// `http(s)://` for `via: http`, `ws(s)://` for `via: websocket`; `${ENV}` allowed.
    pub url: Text,
    /// Extra request (or WebSocket handshake) headers.
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    /// The message sent when there is no `script`.
    pub message: Option<ChatText>,
    /// A conversation of several turns, each with its own expectation.
    #[serde(default)]
    pub script: Vec<Turn>,
    /// JSON sent per message; strings may use `{{message}}`, `{{session}}`, `{{token}}`. Over
    /// HTTP defaults to `{"sender": "{{token}}", "message": "{{message}}", "session":
    /// "{{session}}"}`; over WebSocket the message is sent as plain text without it.
    pub request: Option<serde_json::Value>,
    /// JSON pointer to the conversation id in the first answer, carried on as `{{session}}`.
    pub session_at: Option<String>,
    /// JSON pointer to the reply text in an answer; the whole answer as text when absent.
    pub reply_at: Option<String>,
    /// `via: http`: where the reply appears when the POST's answer holds none.
    pub poll: Option<PollSpec>,
    /// `via: websocket`: the `Sec-WebSocket-Protocol` to ask for.
    pub subprotocol: Option<String>,
    /// `via: websocket`: messages sent right after connecting (a "join" event, ...).
    #[serde(default)]
    pub handshake: Vec<ChatText>,
    /// What the reply must look like, and how long it may take.
    #[serde(default)]
    pub expect: ChatExpect,
    /// When the chat is staffed; outside, `outside_hours` applies.
    pub active_hours: Option<ActiveHours>,
    /// Expectations outside `active_hours` (typically an auto-reply with an ETA).
    pub outside_hours: Option<ChatExpect>,
    /// PEM file with the CA(s) to trust instead of the system roots (with `via: browser`:
    /// besides chromium's own, for that check's browser only).
    pub ca_file: Option<Text>,
    /// `via: browser`: steps that type and send the message in the page's chat widget, after
    /// `url` is opened (the browser kind's step language).
    pub steps: Option<crate::probe::browser::steps::Steps>,
    /// `via: browser`: CSS selector of the element the bot's reply appears in.
    pub reply_in: Option<String>,
    /// `via: browser`: timeout of a step that sets none (default 10s).
    pub step_timeout: Option<Dur>,
}

/// The chat transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A JSON chat API.
    Http,
    /// A WebSocket chat.
    Websocket,
    /// A chat widget in a real browser, driven by `steps`.
    Browser,
}

/// One turn of a `script`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// What to say.
    pub send: ChatText,
    /// Regex the reply must match; any reply passes without it.
    pub expect: Option<ReplyPattern>,
}

/// Expectations on the bot's reply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatExpect {
    /// Regex the reply must match (to the single message; a script's turns have their own).
    pub reply: Option<ReplyPattern>,
    /// How long each reply may take.
    #[serde(default = "default_within")]
    pub within: Dur,
}

impl Default for ChatExpect {
    fn default() -> Self {
        ChatExpect {
            reply: None,
            within: default_within(),
        }
    }
}

fn default_within() -> Dur {
    Dur::secs(30)
}

/// `via: http` polling for the reply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSpec {
    /// URL fetched with GET; may use `{{session}}` and `{{token}}`.
    pub url: ChatText,
    /// Pause between polls.
    #[serde(default = "default_poll_interval")]
    pub interval: Dur,
}

fn default_poll_interval() -> Dur {
    Dur::secs(1)
}

/// The expectations picked for one run.
#[derive(Debug)]
pub struct Plan<'a> {
    /// What to send, each with the regex its reply must match.
    pub turns: Vec<(&'a ChatText, Option<&'a ReplyPattern>)>,
    /// Bound on each reply.
    pub within: Dur,
    /// Whether the run falls outside `active_hours`.
    pub outside_hours: bool,
}

impl ChatSpec {
    /// Picks the expectations for a run at `now`: the normal ones, or `outside_hours` when
    /// `now` is outside `active_hours`.
    pub fn plan(&self, now: SystemTime) -> Plan<'_> {
        let first = || -> &ChatText {
            self.script
                .first()
                .map(|t| &t.send)
                .or(self.message.as_ref())
                .unwrap_or(&DEFAULT_TEXT)
        };
        if let (Some(hours), Some(outside)) = (&self.active_hours, &self.outside_hours)
            && !hours.contains(now)
        {
            return Plan {
                turns: vec![(first(), outside.reply.as_ref())],
                within: outside.within,
                outside_hours: true,
            };
        }
        let turns = if self.script.is_empty() {
            vec![(first(), self.expect.reply.as_ref())]
        } else {
            self.script
                .iter()
                .map(|t| (&t.send, t.expect.as_ref()))
                .collect()
        };
        Plan {
            turns,
            within: self.expect.within,
            outside_hours: false,
        }
    }
}

static DEFAULT_TEXT: std::sync::LazyLock<ChatText> = std::sync::LazyLock::new(|| {
    ChatText::parse(DEFAULT_MESSAGE).unwrap_or_else(|_| ChatText::empty())
});

/// Checks what serde cannot: URL scheme for the transport, options that belong to the other
/// transport, exclusive fields, JSON pointers.
pub fn validate(spec: &ChatSpec) -> Result<(), String> {
    compile(spec).map(|_| ())
}

struct Compiled {
    url: url::Url,
    request: Option<ChatJson>,
}

fn compile(spec: &ChatSpec) -> Result<Compiled, String> {
    let url = match spec.via {
        Via::Http | Via::Browser => parse_url(&spec.url)?,
        Via::Websocket => {
            let url = url::Url::parse(spec.url.expose())
                .map_err(|e| format!("invalid url `{}`: {e}", spec.url))?;
            if !matches!(url.scheme(), "ws" | "wss") || url.host_str().is_none() {
                return Err(format!(
                    "url `{}` must be ws:// or wss:// with a host for `via: websocket`",
                    spec.url
                ));
            }
            url
        }
    };
    validate_headers(&spec.headers)?;
    if spec.via == Via::Browser {
        via_browser::check(spec)?;
    } else if spec.steps.is_some() || spec.reply_in.is_some() || spec.step_timeout.is_some() {
        return Err("`steps`, `reply_in` and `step_timeout` are for `via: browser`".into());
    }
    if spec.via == Via::Websocket && spec.poll.is_some() {
        return Err(
            "`poll` is for `via: http`; a WebSocket bot's reply arrives on the socket".into(),
        );
    }
    if spec.via == Via::Http && (spec.subprotocol.is_some() || !spec.handshake.is_empty()) {
        return Err("`subprotocol` and `handshake` are for `via: websocket`".into());
    }
    if !spec.script.is_empty() && spec.message.is_some() {
        return Err("set either `message` or `script`, not both".into());
    }
    if !spec.script.is_empty() && spec.expect.reply.is_some() {
        return Err("with `script`, put each reply's regex in its turn's `expect`".into());
    }
    match (&spec.active_hours, &spec.outside_hours) {
        (Some(_), None) => {
            return Err(
                "`active_hours` needs `outside_hours`: what to expect when the chat is closed"
                    .into(),
            );
        }
        (None, Some(_)) => return Err("`outside_hours` needs `active_hours`".into()),
        _ => {}
    }
    for (name, pointer) in [
        ("session_at", &spec.session_at),
        ("reply_at", &spec.reply_at),
    ] {
        if let Some(p) = pointer
            && !p.is_empty()
            && !p.starts_with('/')
        {
            return Err(format!("{name} `{p}` is not a JSON pointer; write `/{p}`"));
        }
    }
    let request = match (&spec.request, spec.via) {
        (Some(v), _) => Some(compile_json(v)?),
        (None, Via::Http) => Some(compile_json(&serde_json::json!({
            "sender": "{{token}}",
            "message": "{{message}}",
            "session": "{{session}}",
        }))?),
        (None, Via::Websocket | Via::Browser) => None,
    };
    Ok(Compiled { url, request })
}

/// A one-line description, safe to print.
pub fn summary(spec: &ChatSpec) -> String {
    let via = match spec.via {
        Via::Http => "http",
        Via::Websocket => "websocket",
        Via::Browser => "browser",
    };
    format!("chat via {via} {}", spec.url)
}

/// A ready-to-run `chat` check.
pub struct ChatProbe {
    spec: Arc<ChatSpec>,
    url: url::Url,
    request: Option<ChatJson>,
    host: String,
    /// For `via: http`.
    client: Option<reqwest::Client>,
    /// For `wss://`.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The check's host overrides, for the WebSocket's own connection (`via: http` has them in
    /// its client).
    resolve: crate::net::Resolve,
    /// For `via: browser`: the pool, and the plans within and outside active hours.
    browser: Option<via_browser::Browsing>,
}

impl ChatProbe {
    /// Builds the probe; HTTP clients are shared with checks of the same transport options.
    pub fn build(
        spec: &Arc<ChatSpec>,
        resolve: &crate::net::Resolve,
        shared: &Shared,
    ) -> Result<Self, String> {
        let Compiled { url, request } = compile(spec)?;
        let host = crate::net::url_endpoint(&url);
        let ca_file = spec
            .ca_file
            .as_ref()
            .map(|t| std::path::PathBuf::from(t.expose()));
        let (client, tls) = match spec.via {
            Via::Http => (
                Some(shared.http_clients.get(crate::net::ClientKey {
                    max_redirects: super::http::default_max_redirects(),
                    ca_file,
                    resolve: resolve.clone(),
                })?),
                None,
            ),
            Via::Websocket if url.scheme() == "wss" => {
                let roots = crate::tlsconf::roots(ca_file.as_deref())?;
                (None, Some(Arc::new(crate::tlsconf::client_config(roots))))
            }
            Via::Websocket | Via::Browser => (None, None),
        };
        let browser = match spec.via {
            Via::Browser => Some(via_browser::Browsing::build(spec, resolve, shared)?),
            _ => None,
        };
        Ok(ChatProbe {
            spec: spec.clone(),
            url,
            request,
            host,
            client,
            tls,
            resolve: resolve.clone(),
            browser,
        })
    }

    async fn attempt(&self, ctx: &RunContext) -> Outcome {
        let plan = self.spec.plan(ctx.started_at);
        let mut outcome = Outcome::pass();
        if plan.outside_hours {
            outcome
                .details
                .push("outside active hours: expecting the auto-reply".into());
        } else if self.spec.active_hours.is_some() {
            outcome
                .details
                .push("within active hours: expecting the normal reply".into());
        }
        if let Some(browsing) = &self.browser {
            let mut driven = browsing.run(ctx, plan.outside_hours).await;
            driven.details.splice(0..0, outcome.details);
            return driven;
        }
        let now = ctx.now_rfc3339();
        let vars = TemplateVars {
            token: &ctx.token,
            check: &ctx.check,
            now: &now,
        };
        let mut conversation =
            match transport::Conversation::open(self, ctx, &vars, plan.within).await {
                Ok(c) => c,
                Err(failed) => return failed,
            };
        for (i, (text, wanted)) in plan.turns.iter().enumerate() {
            let message = text.render(&vars, "", conversation.session());
            let pattern = match wanted.map(|w| w.for_token(&ctx.token)).transpose() {
                Ok(p) => p,
                // It compiled at load with a sample token; an escaped token cannot break it.
                Err(e) => return Outcome::fail(FailureKind::Internal, e),
            };
            let heard = match conversation
                .turn(
                    self,
                    ctx,
                    &vars,
                    &message,
                    pattern.as_ref(),
                    plan.within.get(),
                )
                .await
            {
                Ok(heard) => heard,
                Err(mut failed) => {
                    failed.details.splice(0..0, outcome.details);
                    return failed;
                }
            };
            let turn = if plan.turns.len() > 1 {
                format!("turn {}: ", i + 1)
            } else {
                String::new()
            };
            if let Some(first) = heard.first {
                if i == 0 {
                    outcome
                        .observations
                        .push(Observation::ChatFirstResponse(first));
                }
                outcome
                    .details
                    .push(format!("{turn}first reply after {} ms", first.as_millis()));
            }
            match (heard.matched, heard.last) {
                (Some(reply), _) => {
                    outcome
                        .details
                        .push(format!("{turn}reply: \"{}\"", quote(&reply)));
                    if let Some(after) = heard.matched_after.filter(|a| *a > plan.within.get()) {
                        outcome.fail_with(
                            FailureKind::SlowReply,
                            format!(
                                "{turn}replied after {:.1}s, later than within {}",
                                after.as_secs_f64(),
                                plan.within
                            ),
                        );
                        return outcome;
                    }
                }
                (None, Some(wrong)) => {
                    let wanted = wanted.map(ReplyPattern::as_str).unwrap_or_default();
                    outcome.fail_with(
                        FailureKind::Expectation,
                        format!(
                            "{turn}reply does not match /{wanted}/: \"{}\"",
                            quote(&wrong)
                        ),
                    );
                    return outcome;
                }
                (None, None) => {
                    let why = heard.why_none.unwrap_or_default();
                    outcome.fail_with(
                        FailureKind::NoReply,
                        format!("{turn}no reply within {}{why}", plan.within),
                    );
                    return outcome;
                }
            }
        }
        conversation.close().await;
        outcome
    }
}

/// What came back to one message.
#[derive(Debug, Default)]
pub(crate) struct Heard {
    /// From sending the message to the first reply.
    first: Option<Duration>,
    /// The reply that matched.
    matched: Option<String>,
    /// From sending the message to the reply that matched.
    matched_after: Option<Duration>,
    /// The last reply that did not.
    last: Option<String>,
    /// Why nothing came, when it is known (` (the answer held no reply and no poll is set)`).
    why_none: Option<String>,
}

impl Heard {
    /// Notes one reply heard at `at`; true when it matches `pattern` (then the turn is over).
    fn hear(&mut self, text: String, started: Instant, pattern: Option<&Pattern>) -> bool {
        self.first.get_or_insert_with(|| started.elapsed());
        if pattern.is_none_or(|p| p.is_match(&text)) {
            self.matched_after = Some(started.elapsed());
            self.matched = Some(text);
            true
        } else {
            self.last = Some(text);
            false
        }
    }
}

/// The reply text in an answer: at `pointer` in its JSON, or the whole text. Arrays (a Rasa
/// answer is a list of messages) are joined line by line; an object's `text` field is its text.
pub(crate) fn extract(body: &[u8], pointer: Option<&str>) -> Option<String> {
    let Some(pointer) = pointer else {
        let text = String::from_utf8_lossy(body).trim().to_string();
        return (!text.is_empty()).then_some(text);
    };
    let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = json_text(doc.pointer(pointer)?);
    (!text.is_empty()).then_some(text)
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.trim().to_string(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(json_text)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        serde_json::Value::Object(map) => match map.get("text") {
            Some(t) => json_text(t),
            None => v.to_string(),
        },
        other => other.to_string(),
    }
}

/// The first [`QUOTE_CHARS`] characters, on one line.
fn quote(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(QUOTE_CHARS)
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    if text.chars().count() > QUOTE_CHARS {
        out.push('…');
    }
    out
}

impl Probe for ChatProbe {
    fn hosts(&self) -> Vec<String> {
        vec![self.host.clone()]
    }

    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
        Box::pin(self.attempt(ctx))
    }
}

/// Read cap as the HTTP module's size type.
fn max_body() -> ByteSize {
    ByteSize(MAX_MESSAGE as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_found_in_rasa_answers_and_plain_text() {
        let rasa =
            br#"[{"recipient_id":"x","text":"Hi"},{"recipient_id":"x","text":"How can I help?"}]"#;
        assert_eq!(extract(rasa, Some("")).unwrap(), "Hi\nHow can I help?");
        assert_eq!(extract(rasa, Some("/1/text")).unwrap(), "How can I help?");
        assert_eq!(extract(b" hello ", None).unwrap(), "hello");
        assert!(extract(br#"{"reply":null}"#, Some("/reply")).is_none());
        assert!(extract(b"not json", Some("/reply")).is_none());
    }

    #[test]
    fn chat_text_knows_message_and_session() {
        let t = ChatText::parse("{{message}} [{{session}}] {{token}}").unwrap();
        let vars = TemplateVars {
            token: "sw-1",
            check: "c",
            now: "n",
        };
        assert_eq!(t.render(&vars, "hi", "s1"), "hi [s1] sw-1");
        assert!(ChatText::parse("{{sesion}}").is_err());
    }

    #[test]
    fn a_reply_regex_may_demand_the_runs_token() {
        let p = ReplyPattern::parse("(?i)hello.*{{token}}").unwrap();
        assert!(p.fixed().is_none());
        let run = p.for_token("sw-a.b-1-x").unwrap();
        assert!(run.is_match("Hello! You wrote: sw-a.b-1-x"));
        // The token is matched literally: its `.` is not "any character".
        assert!(!run.is_match("Hello! You wrote: sw-aXb-1-x"));
        assert_eq!(p.as_str(), "(?i)hello.*{{token}}");
        assert!(ReplyPattern::parse("(unclosed").is_err());
    }

    #[test]
    fn quotes_are_cut_at_200_characters() {
        let long = "я".repeat(300);
        assert_eq!(quote(&long).chars().count(), 201);
    }
}
