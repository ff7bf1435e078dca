//! Prometheus Alertmanager v2 API notifier (POST /api/v2/alerts).
//!
//! Each alert of a notification becomes one Alertmanager alert:
//!
//! ```json
//! [{"labels": {"alertname": "SupportChannelDown", "check": "support-form",
//!              "channel": "feedback_form", "kind": "form", "shop": "shop.example",
//!              "<static label>": "…"},
//!   "annotations": {"summary": "Feedback form is not delivering messages since 14:05",
//!                   "reason": "not_delivered",
//!                   "description": "<the check's technical reason>"},
//!   "startsAt": "2026-03-12T14:05:00Z", "endsAt": "…", "generatorURL": "<status_url>"}]
//! ```
//!
//! Alertmanager resolves an alert by itself once `endsAt` passes, and it expects the sender to
//! re-post firing alerts before that. supportwatch posts only on firing, reminders and resolve,
//! so a firing alert gets `endsAt = now + ends_after` (default 24h): set the check's `repeat`
//! shorter than `ends_after`, since each reminder re-posts the alert and pushes `endsAt` on. A
//! resolved alert is posted with `endsAt = resolved_at`, which resolves it at once.
//!
//! Alertmanager identifies an alert by its label set, so the labels are only what stays the same
//! for the whole incident. The reason kind can change while a check keeps failing (a timeout,
//! then a 500), so it is an annotation: as a label, the resolve would close only the alert of
//! the last reason and leave the first active until its `endsAt`.
//!
//! A `test` notification posts a short-lived `SupportwatchTest` alert (5 minutes).

use super::http::{HttpSender, check_url, detail_of, is_loopback};
use super::{AlertNotice, AlertStatus, Notification, Notifier, NotifyError};
use crate::value::{Dur, Secret, Text};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// The `alertname` of every supportwatch alert.
pub const ALERTNAME: &str = "SupportChannelDown";
/// The `alertname` of a `notify-test` alert.
pub const TEST_ALERTNAME: &str = "SupportwatchTest";
/// How long a test alert stays.
const TEST_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// `ends_after` unless set.
pub const DEFAULT_ENDS_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The technical reason is cut here (Alertmanager keeps every annotation in memory).
const MAX_DESCRIPTION: usize = 1000;

/// `kind: alertmanager`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerSpec {
    /// Alertmanager base URL, e.g. `http://alertmanager:9093`.
    pub url: Text,
    /// Basic-auth user.
    pub user: Option<Text>,
    /// Basic-auth password; never printed.
    pub password: Option<Secret>,
    /// PEM file with the CA(s) to trust instead of the system roots.
    pub ca_file: Option<Text>,
    /// How long a firing alert stays active in Alertmanager without news (default 24h).
    /// Reminders (`repeat`) re-post it and push this on, so keep `repeat` shorter.
    pub ends_after: Option<Dur>,
}

/// One element of the POST body (Alertmanager's `postableAlert`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PostableAlert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<&'static str, String>,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    generator_url: Option<String>,
}

/// Checks the spec at load time.
pub fn validate(spec: &AlertmanagerSpec) -> Result<(), String> {
    endpoint(spec).map(|_| ())
}

fn endpoint(spec: &AlertmanagerSpec) -> Result<url::Url, String> {
    // Alertmanager listens on plain http by default, so http is fine, unless a password would
    // travel unencrypted to another machine.
    let base = check_url("url", spec.url.expose(), true)?;
    match (&spec.user, &spec.password) {
        (Some(_), Some(_)) => {
            if base.scheme() == "http" && !is_loopback(&base) {
                return Err(
                    "`user`/`password` over plain http:// would send the password unencrypted; \
                     use https:// (plain http with a login is allowed to a loopback address only)"
                        .into(),
                );
            }
        }
        (None, None) => {}
        _ => return Err("set both `user` and `password` for basic auth, or neither".into()),
    }
    if base.scheme() == "http" && spec.ca_file.is_some() {
        return Err("`ca_file` needs an https:// `url`".into());
    }
    if spec
        .ends_after
        .is_some_and(|d| d.get() < Duration::from_secs(60))
    {
        return Err("`ends_after` must be at least 1m".into());
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err("`url` must be only scheme://host[:port][/path]".into());
    }
    // A path prefix (Alertmanager behind a proxy at /alertmanager) is kept.
    let mut base = base;
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join("api/v2/alerts")
        .map_err(|e| format!("`url` does not make a valid URL: {e}"))
}

/// Sends to Alertmanager.
pub struct AlertmanagerNotifier {
    http: HttpSender,
    url: url::Url,
    login: Option<(String, Secret)>,
    ends_after: Duration,
}

impl AlertmanagerNotifier {
    /// Builds the notifier.
    pub fn build(name: &str, spec: &AlertmanagerSpec, timeout: Duration) -> Result<Self, String> {
        let url = endpoint(spec)?;
        let login = match (&spec.user, &spec.password) {
            (Some(u), Some(p)) => Some((u.expose().to_string(), p.clone())),
            _ => None,
        };
        let secrets = login.iter().map(|(_, p)| p.expose().to_string()).collect();
        let ca_file = spec.ca_file.as_ref().map(|t| PathBuf::from(t.expose()));
        let http = HttpSender::new("alertmanager", name, timeout, ca_file.as_deref(), secrets)?;
        Ok(AlertmanagerNotifier {
            http,
            url,
            login,
            ends_after: spec.ends_after.map(Dur::get).unwrap_or(DEFAULT_ENDS_AFTER),
        })
    }

    async fn deliver(&self, n: &Notification) -> Result<(), NotifyError> {
        let now = SystemTime::now();
        let alerts = if n.test {
            vec![test_alert(n, now)]
        } else {
            n.alerts
                .iter()
                .map(|a| alert(n, a, now, self.ends_after))
                .collect()
        };
        let mut request = self.http.post_json(&self.url, &alerts)?;
        if let Some((user, password)) = &self.login {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let reply = self.http.exchange(request).await?;
        self.http.judge(&reply, detail_of(&reply.body), None)
    }
}

fn alert(
    n: &Notification,
    a: &AlertNotice,
    now: SystemTime,
    ends_after: Duration,
) -> PostableAlert {
    // Static labels first, so they can never replace the ones that identify the alert.
    let mut labels: BTreeMap<String, String> = a
        .labels
        .iter()
        .filter(|(k, _)| valid_label_name(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in [
        ("alertname", ALERTNAME),
        ("check", a.check.as_str()),
        ("channel", a.channel.as_str()),
        ("kind", a.kind.as_str()),
        ("shop", n.shop.as_str()),
    ] {
        labels.insert(k.to_string(), v.to_string());
    }
    let ends_at = match a.status {
        AlertStatus::Resolved => a.resolved_at.unwrap_or(now),
        AlertStatus::Firing | AlertStatus::Reminder => now + ends_after,
    };
    let mut annotations = BTreeMap::new();
    annotations.insert("summary", super::render::owner_line(n, a, now));
    annotations.insert("reason", a.reason_kind.clone());
    annotations.insert(
        "description",
        super::render::truncate(a.reason.trim(), MAX_DESCRIPTION),
    );
    if let Some(link) = &a.link {
        annotations.insert("link", link.clone());
    }
    PostableAlert {
        labels,
        annotations,
        starts_at: rfc3339(a.since),
        ends_at: rfc3339(ends_at),
        generator_url: n.status_url.clone(),
    }
}

fn test_alert(n: &Notification, now: SystemTime) -> PostableAlert {
    let rendered = super::render::render(n);
    let labels = [("alertname", TEST_ALERTNAME), ("shop", n.shop.as_str())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut annotations = BTreeMap::new();
    annotations.insert("summary", rendered.title);
    annotations.insert("description", rendered.body);
    PostableAlert {
        labels,
        annotations,
        starts_at: rfc3339(now),
        ends_at: rfc3339(now + TEST_LIFETIME),
        generator_url: n.status_url.clone(),
    }
}

/// Prometheus label names: `[a-zA-Z_][a-zA-Z0-9_]*`. Alertmanager refuses the whole batch for one
/// bad name, so a bad static label is left out rather than losing the alert.
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

impl Notifier for AlertmanagerNotifier {
    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(self.deliver(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Audience, Language};
    use crate::value::{Channel, Kind};
    use std::time::UNIX_EPOCH;

    fn spec(url: &str) -> AlertmanagerSpec {
        AlertmanagerSpec {
            url: Text::literal(url),
            user: None,
            password: None,
            ca_file: None,
            ends_after: None,
        }
    }

    #[test]
    fn endpoint_keeps_a_path_prefix() {
        assert_eq!(
            endpoint(&spec("http://am:9093")).unwrap().as_str(),
            "http://am:9093/api/v2/alerts"
        );
        assert_eq!(
            endpoint(&spec("https://ops.example/alertmanager"))
                .unwrap()
                .as_str(),
            "https://ops.example/alertmanager/api/v2/alerts"
        );
        let mut s = spec("http://am:9093");
        s.user = Some(Text::literal("sw"));
        s.password = Some(serde_json::from_value(serde_json::json!("pw1234")).unwrap());
        let err = validate(&s).unwrap_err();
        assert!(
            err.contains("unencrypted") && !err.contains("pw1234"),
            "{err}"
        );
        s.url = Text::literal("http://127.0.0.1:9093");
        assert!(validate(&s).is_ok());
        s.password = None;
        assert!(validate(&s).unwrap_err().contains("both"));
    }

    #[test]
    fn alerts_carry_identity_labels_and_times() {
        let since = UNIX_EPOCH + Duration::from_secs(1_773_324_300);
        let a = AlertNotice {
            digest: None,
            id: "f:firing".into(),
            fingerprint: "f".into(),
            check: "support-form".into(),
            channel: Channel::FeedbackForm,
            kind: Kind::Form,
            labels: [
                ("check".to_string(), "spoofed".to_string()),
                ("team".to_string(), "web".to_string()),
                ("bad-name".to_string(), "x".to_string()),
            ]
            .into(),
            status: AlertStatus::Resolved,
            since,
            resolved_at: Some(since + Duration::from_secs(600)),
            consecutive_failures: 2,
            reason_kind: "timeout".into(),
            reason: "no answer within 30s".into(),
            link: None,
        };
        let n = Notification {
            digest: None,
            shop: "shop.example".into(),
            language: Language::En,
            audience: Audience::Ops,
            alerts: vec![a.clone()],
            test: false,
            status_url: Some("https://status.example/".into()),
            timezone: Some("UTC".into()),
        };
        let posted = serde_json::to_value(alert(&n, &a, since, DEFAULT_ENDS_AFTER)).unwrap();
        assert_eq!(
            posted,
            serde_json::json!({
                "labels": {"alertname": "SupportChannelDown", "check": "support-form",
                           "channel": "feedback_form", "kind": "form", "shop": "shop.example",
                           "team": "web"},
                "annotations": {
                    "summary": "Feedback form works again (was down from 14:05 to 14:15)",
                    "reason": "timeout",
                    "description": "no answer within 30s"},
                "startsAt": "2026-03-12T14:05:00Z",
                "endsAt": "2026-03-12T14:15:00Z",
                "generatorURL": "https://status.example/"
            })
        );
        // A re-send (after a crash between sending and recording it) names the same alert:
        // Alertmanager merges it by its labels and start instead of opening a second one.
        let firing = AlertNotice {
            digest: None,
            status: AlertStatus::Firing,
            resolved_at: None,
            ..a
        };
        let first = alert(&n, &firing, since, DEFAULT_ENDS_AFTER);
        let again = alert(
            &n,
            &firing,
            since + Duration::from_secs(90),
            DEFAULT_ENDS_AFTER,
        );
        assert_eq!(
            (&first.labels, &first.starts_at),
            (&again.labels, &again.starts_at)
        );
    }
}
