//! The notifiers against real servers on loopback: the shared recording HTTP server posing as the
//! Telegram Bot API, a Slack incoming webhook and a generic webhook; a real Alertmanager
//! (`/usr/bin/prometheus-alertmanager`); the postfix + dovecot harness for e-mail. One module per
//! notifier; what they share is here.
//!
//! Every failure case also proves that the bot token, webhook URL or password is in neither the
//! `Display` nor the `Debug` of the error.

#[path = "../common/mod.rs"]
mod common;

mod alertmanager;
mod email;
mod slack;
mod telegram;
mod webhook;

use common::recorder::{Answer, Recorder, Request};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use supportwatch::notify::{
    AlertNotice, AlertStatus, Audience, Language, Notification, Notifier, NotifierSpec, NotifyError,
};
use supportwatch::value::{Channel, Kind};

/// The Telegram bot token every test uses; it must never show.
const TOKEN: &str = "123456789:AAHsecretTOKEN_x-y";
const ZONE: &str = "Europe/Moscow";

/// A unique suffix, so tests sharing a server (Alertmanager, the mail harness) tell their
/// alerts apart.
fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{nanos:x}")
}

fn alert(check: &str, channel: Channel, reason_kind: &str, status: AlertStatus) -> AlertNotice {
    let since = SystemTime::now() - Duration::from_secs(7 * 60);
    let secs = since.duration_since(UNIX_EPOCH).unwrap().as_secs();
    AlertNotice {
        digest: None,
        id: format!("{check}-{secs}:{}", status.as_str()),
        fingerprint: format!("{check}-{secs}"),
        check: check.into(),
        channel,
        kind: Kind::Form,
        labels: [("shop".to_string(), "shop.example".to_string())].into(),
        status,
        since,
        resolved_at: (status == AlertStatus::Resolved).then(SystemTime::now),
        consecutive_failures: 3,
        reason_kind: reason_kind.into(),
        reason: "the test message did not arrive in support@shop.example within 5m".into(),
        link: None,
    }
}

/// The alert most tests send: the feedback form `support-form` stopped delivering.
fn form_not_delivering() -> AlertNotice {
    alert(
        "support-form",
        Channel::FeedbackForm,
        "not_delivered",
        AlertStatus::Firing,
    )
}

fn notification(language: Language, audience: Audience, alerts: Vec<AlertNotice>) -> Notification {
    Notification {
        digest: None,
        shop: "shop.example".into(),
        language,
        audience,
        alerts,
        test: false,
        status_url: Some("https://status.shop.example/".into()),
        timezone: Some(ZONE.into()),
    }
}

/// `t` as the owner texts show it: HH:MM in [`ZONE`].
fn local_hhmm(t: SystemTime) -> String {
    let tz = jiff::tz::TimeZone::get(ZONE).unwrap();
    jiff::Timestamp::try_from(t)
        .unwrap()
        .to_zoned(tz)
        .strftime("%H:%M")
        .to_string()
}

fn notifier(name: &str, spec: serde_json::Value) -> Arc<dyn Notifier> {
    supportwatch::tlsconf::install_crypto_provider();
    let spec: NotifierSpec = serde_json::from_value(spec).expect("spec should parse");
    supportwatch::notify::validate(&spec).expect("spec should validate");
    supportwatch::notify::build(name, &spec).expect("notifier should build")
}

/// Sends `n` through `notifier`, which must succeed, and returns the request `server` got last.
async fn delivered(notifier: &dyn Notifier, n: &Notification, server: &Recorder) -> Request {
    notifier.send(n).await.expect("send should succeed");
    server.last()
}

/// Has `server` answer `answer` from now on, sends `n` through `notifier` and returns the error
/// the send must end in.
async fn error_for(
    server: &Recorder,
    answer: Answer,
    notifier: &dyn Notifier,
    n: &Notification,
) -> NotifyError {
    server.answer_always(answer);
    notifier.send(n).await.unwrap_err()
}

/// Asserts `err` shows none of `secrets`, in `Display` or `Debug`.
fn assert_no_secret(err: &NotifyError, secrets: &[&str]) {
    let shown = format!("{err} / {err:?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret:?} leaked into: {shown}");
    }
}

fn transient(err: &NotifyError) -> (&str, Option<Duration>) {
    match err {
        NotifyError::Transient { message, after } => (message, *after),
        NotifyError::Permanent { message } => {
            panic!("expected transient, got permanent: {message}")
        }
    }
}

fn permanent(err: &NotifyError) -> &str {
    match err {
        NotifyError::Permanent { message } => message,
        NotifyError::Transient { message, .. } => {
            panic!("expected permanent, got transient: {message}")
        }
    }
}

#[test]
fn a_typo_inside_a_notifier_is_rejected() {
    for (spec, field) in [
        (
            serde_json::json!({"kind": "telegram", "bot_token": TOKEN, "chat_idd": "1"}),
            "chat_idd",
        ),
        (
            serde_json::json!({"kind": "slack", "url": "https://hooks.example/x", "chanel": "#a"}),
            "chanel",
        ),
        (
            serde_json::json!({"kind": "alertmanager", "url": "http://am:9093", "ends_afer": "1h"}),
            "ends_afer",
        ),
    ] {
        let err = serde_json::from_value::<NotifierSpec>(spec).unwrap_err();
        assert!(err.to_string().contains(field), "{err}");
        assert!(!err.to_string().contains("AAHsecretTOKEN"), "{err}");
    }
}
