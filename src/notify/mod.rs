//! Notifiers: where alerts go. One module per service, each behind [`Notifier`].
//!
//! The alert engine decides *what* to say and *when*; a notifier only turns one
//! [`Notification`] (one shop's alerts, grouped) into one request to its service and says whether
//! that worked, and if not, whether a retry can help and when. Retries, fallbacks, grouping and
//! metrics live in the dispatcher, so every notifier gets them the same way.
//!
//! No notifier may put a secret (bot token, password, webhook URL) into an error or a log line:
//! errors are built from the service's answer and the notifier's name, never from the URL.

pub mod alertmanager;
pub mod email;
mod http;
pub mod render;
pub mod slack;
pub mod telegram;
pub mod webhook;

use crate::value::{Channel, Dur, Kind};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One message to one notifier: one shop's alerts that became due together.
#[derive(Clone, Debug, Serialize)]
pub struct Notification {
    /// The shop every alert belongs to.
    pub shop: String,
    /// Language of the texts.
    pub language: Language,
    /// Who reads it: the shop owner gets plain words, ops the technical reason.
    pub audience: Audience,
    /// The alerts, firing ones first.
    pub alerts: Vec<AlertNotice>,
    /// Set by `supportwatch notify-test`: a message that only proves the wiring.
    pub test: bool,
    /// Link to the status page, when `alerting.status_url` is set.
    pub status_url: Option<String>,
    /// Time zone for the times in texts (IANA name); the system's when `None`.
    pub timezone: Option<String>,
    /// A weekly digest to send instead of alert texts (then `alerts` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestMessage>,
}

/// A rendered digest riding the outbox: what every notifier sends in place of alert texts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DigestMessage {
    /// Start of the period it was sent for, unix seconds.
    pub period: i64,
    /// Subject of the e-mail, first line of a chat message.
    pub title: String,
    /// Plain text: the chat message, the e-mail's text part.
    pub text: String,
    /// The e-mail's HTML part.
    pub html: String,
}

/// What happened to one check's alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The check started failing (threshold reached).
    Firing,
    /// Still failing; a `repeat` reminder.
    Reminder,
    /// The check passes again.
    Resolved,
}

impl AlertStatus {
    /// The value used in payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Reminder => "reminder",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One check's alert inside a [`Notification`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlertNotice {
    /// Idempotency key of this message about this incident: the same on every re-send of one
    /// transition (`<fingerprint>:firing`, `<fingerprint>:resolved`, one per reminder), so a
    /// receiver that keeps the ids it has seen can drop duplicates. Empty in notifications queued
    /// by a supportwatch older than this field.
    #[serde(default)]
    pub id: String,
    /// Stable id of this incident (check name and the time it started): the same for firing,
    /// reminders and resolve, different for the next incident.
    pub fingerprint: String,
    /// Check name.
    pub check: String,
    /// The support channel.
    pub channel: Channel,
    /// The check kind.
    pub kind: Kind,
    /// The check's static labels (`shop` among them).
    pub labels: BTreeMap<String, String>,
    /// What happened.
    pub status: AlertStatus,
    /// When the check started failing (the first failed run of this incident).
    #[serde(with = "unix_secs")]
    pub since: SystemTime,
    /// When it passed again (resolved only).
    #[serde(with = "opt_unix_secs", default)]
    pub resolved_at: Option<SystemTime>,
    /// Failed runs in a row at the time of the message.
    pub consecutive_failures: u32,
    /// Bounded failure reason (`not_delivered`, `timeout`, ...) of the last failed run.
    pub reason_kind: String,
    /// The technical reason of the last failed run, as the check reported it.
    pub reason: String,
    /// Where the evidence of the last failed run was saved (a browser check's screenshot and page
    /// directory), when there is any. The status page is [`Notification::status_url`].
    pub link: Option<String>,
    /// Set on the outbox's stand-in notice for a weekly digest: the digest it carries, sent
    /// on its own, never grouped with alerts. Its other fields name the digest (fingerprint
    /// `digest:<shop>:<period>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Box<DigestMessage>>,
}

/// Language of alert texts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    /// English.
    #[default]
    En,
    /// Russian.
    Ru,
}

/// Who reads a notifier's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// The shop owner: which channel is broken since when, in plain words.
    Owner,
    /// Operations: check, kind, reason kind and the technical message.
    Ops,
}

/// Why a send failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotifyError {
    /// Worth retrying (connection failure, 5xx, 429); `after` is the service's own wish.
    #[error("{message}")]
    Transient {
        /// What went wrong, without secrets.
        message: String,
        /// How long the service asked us to wait (Telegram `retry_after`, `Retry-After`).
        after: Option<Duration>,
    },
    /// Retrying the same request cannot help (bad token, unknown chat, 4xx).
    #[error("{message}")]
    Permanent {
        /// What went wrong, without secrets.
        message: String,
    },
}

impl NotifyError {
    /// A transient error without a wait hint.
    pub fn transient(message: impl Into<String>) -> Self {
        NotifyError::Transient {
            message: message.into(),
            after: None,
        }
    }
    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> Self {
        NotifyError::Permanent {
            message: message.into(),
        }
    }
}

/// Sends notifications to one service.
pub trait Notifier: Send + Sync {
    /// Sends one notification. Must not panic on any answer, must finish within the notifier's
    /// timeout, and must keep secrets out of the error.
    fn send<'a>(&'a self, notification: &'a Notification)
    -> BoxFuture<'a, Result<(), NotifyError>>;
}

/// A notifier declared under `notifiers:`.
#[derive(Debug, Clone, Deserialize)]
pub struct NotifierSpec {
    /// Language of its texts (default: `alerting.language`).
    pub language: Option<Language>,
    /// Who reads it (default: `owner` for `telegram` and `email`, `ops` for the others).
    pub audience: Option<Audience>,
    /// Bound on one send attempt (default 10s).
    pub timeout: Option<Dur>,
    /// The service and how to reach it.
    #[serde(flatten)]
    pub service: ServiceSpec,
}

impl NotifierSpec {
    /// The audience, defaults applied.
    pub fn audience(&self) -> Audience {
        self.audience.unwrap_or(match self.service {
            ServiceSpec::Telegram(_) | ServiceSpec::Email(_) => Audience::Owner,
            ServiceSpec::Webhook(_) | ServiceSpec::Slack(_) | ServiceSpec::Alertmanager(_) => {
                Audience::Ops
            }
        })
    }
    /// The bound on one attempt.
    pub fn timeout(&self) -> Duration {
        self.timeout.map(|d| d.get()).unwrap_or(DEFAULT_TIMEOUT)
    }
}

/// Bound on one send attempt unless a notifier sets `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The service of a notifier, selected by its `kind` field.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServiceSpec {
    /// Telegram Bot API `sendMessage`.
    Telegram(telegram::TelegramSpec),
    /// E-mail over SMTP.
    Email(email::EmailSpec),
    /// Generic JSON webhook.
    Webhook(webhook::WebhookSpec),
    /// Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat).
    Slack(slack::SlackSpec),
    /// Prometheus Alertmanager v2 API.
    Alertmanager(alertmanager::AlertmanagerSpec),
}

impl ServiceSpec {
    /// The `kind` value.
    pub fn kind(&self) -> &'static str {
        match self {
            ServiceSpec::Telegram(_) => "telegram",
            ServiceSpec::Email(_) => "email",
            ServiceSpec::Webhook(_) => "webhook",
            ServiceSpec::Slack(_) => "slack",
            ServiceSpec::Alertmanager(_) => "alertmanager",
        }
    }
}

/// Checks what serde cannot (URL syntax, addresses, ...), at load time.
pub fn validate(spec: &NotifierSpec) -> Result<(), String> {
    match &spec.service {
        ServiceSpec::Telegram(s) => telegram::validate(s),
        ServiceSpec::Email(s) => email::validate(s),
        ServiceSpec::Webhook(s) => webhook::validate(s),
        ServiceSpec::Slack(s) => slack::validate(s),
        ServiceSpec::Alertmanager(s) => alertmanager::validate(s),
    }
}

/// Builds the notifier for a spec. Errors are config problems (an unreadable `ca_file`, ...).
pub fn build(name: &str, spec: &NotifierSpec) -> Result<Arc<dyn Notifier>, String> {
    let timeout = spec.timeout();
    match &spec.service {
        ServiceSpec::Telegram(s) => {
            telegram::TelegramNotifier::build(name, s, timeout).map(|n| Arc::new(n) as _)
        }
        ServiceSpec::Email(s) => {
            email::EmailNotifier::build(name, s, timeout).map(|n| Arc::new(n) as _)
        }
        ServiceSpec::Webhook(s) => {
            webhook::WebhookNotifier::build(name, s, timeout).map(|n| Arc::new(n) as _)
        }
        ServiceSpec::Slack(s) => {
            slack::SlackNotifier::build(name, s, timeout).map(|n| Arc::new(n) as _)
        }
        ServiceSpec::Alertmanager(s) => {
            alertmanager::AlertmanagerNotifier::build(name, s, timeout).map(|n| Arc::new(n) as _)
        }
    }
}

/// A notifier ready to send, with how it speaks.
#[derive(Clone)]
pub struct NotifierEntry {
    /// The notifier.
    pub notifier: Arc<dyn Notifier>,
    /// Its language.
    pub language: Language,
    /// Its readers.
    pub audience: Audience,
    /// Its service (`telegram`, ...), for logs.
    pub kind: &'static str,
}

/// Builds every declared notifier; `language` is `alerting.language`, for notifiers that set
/// none. Errors are config problems.
pub fn build_notifiers(
    specs: &BTreeMap<String, NotifierSpec>,
    language: Language,
) -> Result<BTreeMap<String, NotifierEntry>, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, spec) in specs {
        match build(name, spec) {
            Ok(notifier) => {
                out.insert(
                    name.clone(),
                    NotifierEntry {
                        notifier,
                        language: spec.language.unwrap_or(language),
                        audience: spec.audience(),
                        kind: spec.service.kind(),
                    },
                );
            }
            Err(e) => errors.push(format!("notifier `{name}`: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The mail server an `email` notifier sends through (host of its `smtp` URL), so `validate` can
/// warn when a mail check could only be reported through the server it checks.
pub fn mail_server(spec: &NotifierSpec) -> Option<String> {
    match &spec.service {
        ServiceSpec::Email(s) => email::server_host(s),
        ServiceSpec::Telegram(_)
        | ServiceSpec::Webhook(_)
        | ServiceSpec::Slack(_)
        | ServiceSpec::Alertmanager(_) => None,
    }
}

mod unix_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(
            t.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        )
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let secs = f64::deserialize(d)?;
        Ok(UNIX_EPOCH + Duration::try_from_secs_f64(secs).unwrap_or_default())
    }
}

mod opt_unix_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(
                &t.duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64(),
            ),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        let secs = Option::<f64>::deserialize(d)?;
        Ok(secs.map(|s| UNIX_EPOCH + Duration::try_from_secs_f64(s).unwrap_or_default()))
    }
}
