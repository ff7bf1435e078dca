//! The notifiers against real servers on loopback: recording HTTP servers posing as the Telegram
//! Bot API, a Slack incoming webhook and a generic webhook; a real Alertmanager
//! (`/usr/bin/prometheus-alertmanager`); the postfix + dovecot harness for e-mail.
//!
//! Every failure case also proves that the bot token, webhook URL or password is in neither the
//! `Display` nor the `Debug` of the error.

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::mailserver::mail_server;
use hmac::{Hmac, Mac};
use mail_parser::MimeHeaders;
use sha2::Sha256;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use supportwatch::notify::{
    AlertNotice, AlertStatus, Audience, Language, Notification, Notifier, NotifierSpec, NotifyError,
};
use supportwatch::value::{Channel, Kind};

// ---------------------------------------------------------------- helpers

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

fn notification(language: Language, audience: Audience, alerts: Vec<AlertNotice>) -> Notification {
    Notification {
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

// ---------------------------------------------------------------- recording HTTP server

/// One request the server saw.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("body should be JSON")
    }
}

/// What the server answers.
#[derive(Clone)]
enum Answer {
    Reply {
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
        body: String,
    },
    /// Never answers.
    Hang,
}

#[derive(Clone, Default)]
struct Recording {
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Mutex<Option<Answer>>>,
}

struct Recorder {
    addr: SocketAddr,
    state: Recording,
}

impl Recorder {
    async fn start() -> Self {
        let state = Recording::default();
        let app = Router::new().fallback(record).with_state(state.clone());
        let addr = common::serve(app).await;
        Recorder { addr, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn answer(&self, answer: Answer) {
        *self.state.answer.lock().unwrap() = Some(answer);
    }

    fn reply(&self, status: u16, body: &str) {
        self.answer(Answer::Reply {
            status,
            headers: vec![],
            body: body.into(),
        });
    }

    fn last(&self) -> Seen {
        self.state
            .seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the server should have seen a request")
    }
}

async fn record(State(s): State<Recording>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    s.seen.lock().unwrap().push(Seen {
        path: uri.path().to_string(),
        headers,
        body,
    });
    let answer = s.answer.lock().unwrap().clone();
    match answer {
        None => (StatusCode::OK, "ok").into_response(),
        Some(Answer::Reply {
            status,
            headers,
            body,
        }) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (k, v) in headers {
                response.headers_mut().insert(k, v.parse().unwrap());
            }
            response
        }
        Some(Answer::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

// ---------------------------------------------------------------- Telegram

fn telegram(server: &Recorder, timeout: &str) -> Arc<dyn Notifier> {
    notifier(
        "owner",
        serde_json::json!({
            "kind": "telegram",
            "bot_token": TOKEN,
            "chat_id": "-1001234567890",
            "api_url": server.url(""),
            "message_thread_id": 42,
            "language": "ru",
            "timeout": timeout,
        }),
    )
}

#[tokio::test]
async fn telegram_posts_plain_text_to_the_bot_path() {
    let server = Recorder::start().await;
    server.reply(200, r#"{"ok":true,"result":{"message_id":7}}"#);
    let a = alert(
        "support-form",
        Channel::FeedbackForm,
        "not_delivered",
        AlertStatus::Firing,
    );
    let since = local_hhmm(a.since);
    let n = notification(Language::Ru, Audience::Owner, vec![a]);
    telegram(&server, "5s")
        .send(&n)
        .await
        .expect("send should succeed");

    let seen = server.last();
    assert_eq!(seen.path, format!("/bot{TOKEN}/sendMessage"));
    assert_eq!(
        seen.headers.get("content-type").unwrap(),
        "application/json"
    );
    let body = seen.json();
    assert_eq!(body["chat_id"], -1001234567890i64);
    assert_eq!(body["disable_web_page_preview"], true);
    assert_eq!(body["message_thread_id"], 42);
    assert!(body.get("parse_mode").is_none(), "{body}");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "shop.example: Форма обратной связи не доставляет письма с {since}\n"
        )),
        "{text}"
    );
    assert!(text.contains("3 неудачные проверки подряд."), "{text}");
    assert!(text.contains("https://status.shop.example/"), "{text}");
}

#[tokio::test]
async fn telegram_answers_map_to_retry_or_give_up() {
    let server = Recorder::start().await;
    let bot = telegram(&server, "5s");
    let n = notification(
        Language::En,
        Audience::Owner,
        vec![alert(
            "chat",
            Channel::Chat,
            "no_reply",
            AlertStatus::Firing,
        )],
    );

    server.reply(
        429,
        r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#,
    );
    let err = bot.send(&n).await.unwrap_err();
    let (message, after) = transient(&err);
    assert_eq!(after, Some(Duration::from_secs(3)), "{message}");
    assert!(message.contains("Too Many Requests"), "{message}");
    assert_no_secret(&err, &[TOKEN, "AAHsecretTOKEN"]);

    server.reply(
        500,
        r#"{"ok":false,"error_code":500,"description":"Internal Server Error"}"#,
    );
    let err = bot.send(&n).await.unwrap_err();
    let (message, after) = transient(&err);
    assert_eq!(
        message,
        r#"telegram "owner": HTTP 500: Internal Server Error"#
    );
    assert_eq!(after, None);
    assert_no_secret(&err, &[TOKEN, "AAHsecretTOKEN"]);

    server.reply(
        400,
        r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
    );
    let err = bot.send(&n).await.unwrap_err();
    assert_eq!(
        permanent(&err),
        r#"telegram "owner": HTTP 400: Bad Request: chat not found"#
    );
    assert_no_secret(&err, &[TOKEN, "AAHsecretTOKEN"]);

    server.reply(
        401,
        r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#,
    );
    let err = bot.send(&n).await.unwrap_err();
    assert_eq!(
        permanent(&err),
        r#"telegram "owner": HTTP 401: Unauthorized"#
    );
    assert_no_secret(&err, &[TOKEN, "AAHsecretTOKEN"]);

    // A service that quotes the request path back must not leak the token through us.
    server.reply(
        404,
        &format!(r#"{{"ok":false,"error_code":404,"description":"no such path /bot{TOKEN}/x"}}"#),
    );
    let err = bot.send(&n).await.unwrap_err();
    assert!(permanent(&err).contains("<redacted>"), "{err}");
    assert_no_secret(&err, &[TOKEN, "AAHsecretTOKEN"]);
}

#[tokio::test]
async fn telegram_silence_and_refusal_are_transient() {
    let server = Recorder::start().await;
    server.answer(Answer::Hang);
    let n = notification(Language::Ru, Audience::Owner, vec![]);
    let err = telegram(&server, "1s").send(&n).await.unwrap_err();
    let (message, _) = transient(&err);
    assert_eq!(message, r#"telegram "owner": no answer within 1s"#);
    assert_no_secret(&err, &[TOKEN, "AAHsecretTOKEN"]);

    let closed = notifier(
        "owner",
        serde_json::json!({
            "kind": "telegram",
            "bot_token": TOKEN,
            "chat_id": "@shop_alerts",
            "api_url": format!("http://127.0.0.1:{}", common::closed_port()),
            "timeout": "2s",
        }),
    );
    let err = closed.send(&n).await.unwrap_err();
    let (message, _) = transient(&err);
    assert!(message.starts_with(r#"telegram "owner": "#), "{message}");
    assert_no_secret(&err, &[TOKEN, "AAHsecretTOKEN", "127.0.0.1"]);
}

// ---------------------------------------------------------------- Slack

const SLACK_KEY: &str = "T0001/B0002/XXXXsecretXXXX";

fn slack(server: &Recorder, timeout: &str) -> Arc<dyn Notifier> {
    notifier(
        "ops-chat",
        serde_json::json!({
            "kind": "slack",
            "url": server.url(&format!("/services/{SLACK_KEY}")),
            "channel": "#alerts",
            "username": "supportwatch",
            "timeout": timeout,
        }),
    )
}

#[tokio::test]
async fn slack_posts_title_and_text() {
    let server = Recorder::start().await;
    let n = notification(
        Language::En,
        Audience::Ops,
        vec![
            alert(
                "support-form",
                Channel::FeedbackForm,
                "not_delivered",
                AlertStatus::Firing,
            ),
            alert("site", Channel::Website, "timeout", AlertStatus::Resolved),
        ],
    );
    slack(&server, "5s")
        .send(&n)
        .await
        .expect("send should succeed");
    let seen = server.last();
    assert_eq!(seen.path, format!("/services/{SLACK_KEY}"));
    let body = seen.json();
    assert_eq!(body["channel"], "#alerts");
    assert_eq!(body["username"], "supportwatch");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with("[FIRING:1 RESOLVED:1] shop.example\n[FIRING] support-form\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "check=support-form kind=form channel=feedback_form reason_kind=not_delivered"
        ),
        "{text}"
    );
    assert!(text.contains("[RESOLVED] site"), "{text}");
}

#[tokio::test]
async fn slack_errors_keep_the_url_secret() {
    let server = Recorder::start().await;
    let hook = slack(&server, "1s");
    let n = notification(Language::En, Audience::Ops, vec![]);
    let secrets = [SLACK_KEY, "XXXXsecretXXXX", "/services/"];

    server.reply(400, "invalid_payload");
    let err = hook.send(&n).await.unwrap_err();
    assert_eq!(
        permanent(&err),
        r#"slack "ops-chat": HTTP 400: invalid_payload"#
    );
    assert_no_secret(&err, &secrets);

    server.reply(500, "<html><body>oops</body></html>");
    let err = hook.send(&n).await.unwrap_err();
    assert_eq!(
        transient(&err).0,
        r#"slack "ops-chat": HTTP 500: Internal Server Error"#
    );
    assert_no_secret(&err, &secrets);

    server.answer(Answer::Reply {
        status: 429,
        headers: vec![("retry-after", "30")],
        body: "rate_limited".into(),
    });
    let err = hook.send(&n).await.unwrap_err();
    assert_eq!(transient(&err).1, Some(Duration::from_secs(30)));
    assert_no_secret(&err, &secrets);

    server.answer(Answer::Hang);
    let err = hook.send(&n).await.unwrap_err();
    transient(&err);
    assert_no_secret(&err, &secrets);
}

// ---------------------------------------------------------------- webhook

const HOOK_SECRET: &str = "hmac-key-0123456789";
const HOOK_AUTH: &str = "Bearer crm-api-key-987";

fn webhook(server: &Recorder, timeout: &str) -> Arc<dyn Notifier> {
    notifier(
        "crm",
        serde_json::json!({
            "kind": "webhook",
            "url": server.url("/hooks/supportwatch?key=url-key-555"),
            "secret": HOOK_SECRET,
            "headers": {"Authorization": HOOK_AUTH},
            "audience": "owner",
            "language": "en",
            "timeout": timeout,
        }),
    )
}

#[tokio::test]
async fn webhook_posts_a_signed_versioned_payload() {
    let server = Recorder::start().await;
    let firing = alert(
        "support-form",
        Channel::FeedbackForm,
        "not_delivered",
        AlertStatus::Firing,
    );
    let since = local_hhmm(firing.since);
    let fingerprint = firing.fingerprint.clone();
    let n = notification(Language::En, Audience::Owner, vec![firing]);
    webhook(&server, "5s")
        .send(&n)
        .await
        .expect("send should succeed");

    let seen = server.last();
    assert_eq!(seen.path, "/hooks/supportwatch");
    assert_eq!(seen.headers.get("authorization").unwrap(), HOOK_AUTH);
    assert_eq!(
        seen.headers.get("content-type").unwrap(),
        "application/json"
    );
    let signature = seen
        .headers
        .get("x-supportwatch-signature")
        .expect("signature header")
        .to_str()
        .unwrap();
    let hex = signature.strip_prefix("sha256=").expect("sha256= prefix");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(&seen.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, expected, "the signature must be over the exact body");

    let body = seen.json();
    assert_eq!(body["version"], 1);
    assert_eq!(body["shop"], "shop.example");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["test"], false);
    assert_eq!(
        body["title"],
        format!("shop.example: Feedback form is not delivering messages since {since}")
    );
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("3 failed checks in a row.")
    );
    assert_eq!(body["status_url"], "https://status.shop.example/");
    let alerts = body["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["fingerprint"], fingerprint.as_str());
    assert_eq!(alerts[0]["check"], "support-form");
    assert_eq!(alerts[0]["channel"], "feedback_form");
    assert_eq!(alerts[0]["kind"], "form");
    assert_eq!(alerts[0]["status"], "firing");
    assert_eq!(alerts[0]["reason_kind"], "not_delivered");
    assert_eq!(alerts[0]["consecutive_failures"], 3);
    assert!(alerts[0]["since"].is_number());

    let resolved = notification(
        Language::En,
        Audience::Owner,
        vec![alert(
            "support-form",
            Channel::FeedbackForm,
            "timeout",
            AlertStatus::Resolved,
        )],
    );
    webhook(&server, "5s")
        .send(&resolved)
        .await
        .expect("send should succeed");
    let body = server.last().json();
    assert_eq!(body["status"], "resolved");
    assert!(body["alerts"][0]["resolved_at"].is_number());
}

#[tokio::test]
async fn webhook_answers_map_to_retry_or_give_up() {
    let server = Recorder::start().await;
    let hook = webhook(&server, "1s");
    let n = notification(Language::En, Audience::Owner, vec![]);
    let secrets = [HOOK_SECRET, "crm-api-key-987", "url-key-555"];

    server.answer(Answer::Reply {
        status: 429,
        headers: vec![("retry-after", "7")],
        body: String::new(),
    });
    let err = hook.send(&n).await.unwrap_err();
    assert_eq!(
        transient(&err),
        (
            r#"webhook "crm": HTTP 429: Too Many Requests"#,
            Some(Duration::from_secs(7))
        )
    );
    assert_no_secret(&err, &secrets);

    server.reply(503, r#"{"error":"maintenance"}"#);
    let err = hook.send(&n).await.unwrap_err();
    assert_eq!(transient(&err).0, r#"webhook "crm": HTTP 503: maintenance"#);
    assert_no_secret(&err, &secrets);

    server.reply(404, "no such hook");
    let err = hook.send(&n).await.unwrap_err();
    assert_eq!(permanent(&err), r#"webhook "crm": HTTP 404: no such hook"#);
    assert_no_secret(&err, &secrets);

    // A redirect is not followed (it could carry the request elsewhere).
    server.answer(Answer::Reply {
        status: 302,
        headers: vec![("location", "http://127.0.0.1:1/elsewhere")],
        body: String::new(),
    });
    let err = hook.send(&n).await.unwrap_err();
    assert!(permanent(&err).contains("HTTP 302"), "{err}");

    server.answer(Answer::Hang);
    let err = hook.send(&n).await.unwrap_err();
    assert_eq!(transient(&err).0, r#"webhook "crm": no answer within 1s"#);
    assert_no_secret(&err, &secrets);
}

// ---------------------------------------------------------------- Alertmanager

/// A real Alertmanager on 127.0.0.1, killed when dropped.
struct Alertmanager {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
        )
        .expect("write config");
        let port = common::closed_port();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).expect("log file");
        let child = Command::new("/usr/bin/prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "start /usr/bin/prometheus-alertmanager (Debian package prometheus-alertmanager)",
            );
        let am = Alertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client().get(format!("{}/-/ready", am.url)).send().await
                && r.status().is_success()
            {
                return am;
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager did not become ready: {}",
                std::fs::read_to_string(am._dir.path().join("alertmanager.log"))
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Active alerts whose label `name` is `value`.
    async fn active(&self, name: &str, value: &str) -> Vec<serde_json::Value> {
        let response = client()
            .get(format!("{}/api/v2/alerts?active=true", self.url))
            .send()
            .await
            .expect("GET /api/v2/alerts");
        let bytes = response.bytes().await.expect("alerts body");
        let alerts: Vec<serde_json::Value> = serde_json::from_slice(&bytes).expect("alerts JSON");
        alerts
            .into_iter()
            .filter(|a| a["labels"][name] == value)
            .collect()
    }

    /// Polls until `done` holds for the active alerts labelled `name=value`, or 30 s pass.
    async fn wait_for(
        &self,
        name: &str,
        value: &str,
        what: &str,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let alerts = self.active(name, value).await;
            if done(&alerts) {
                return alerts;
            }
            assert!(Instant::now() < deadline, "{what}; alerts now: {alerts:#?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn client() -> reqwest::Client {
    supportwatch::tlsconf::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

#[tokio::test]
async fn alertmanager_receives_firing_and_resolved_alerts() {
    let am = Alertmanager::start().await;
    let sender = notifier(
        "prod-am",
        serde_json::json!({"kind": "alertmanager", "url": am.url, "timeout": "10s"}),
    );
    let check = format!("support-form-{}", unique());
    let mut firing = alert(
        &check,
        Channel::FeedbackForm,
        "not_delivered",
        AlertStatus::Firing,
    );
    firing.labels.insert("team".into(), "web".into());
    let n = notification(Language::En, Audience::Ops, vec![firing.clone()]);
    sender.send(&n).await.expect("firing should be accepted");

    let found = am
        .wait_for(
            "check",
            &check,
            "the firing alert should become active",
            |a| a.len() == 1 && a[0]["status"]["state"] == "active",
        )
        .await;
    let got = &found[0];
    assert_eq!(
        got["labels"],
        serde_json::json!({
            "alertname": "SupportChannelDown", "check": check, "channel": "feedback_form",
            "kind": "form", "shop": "shop.example", "team": "web"
        })
    );
    assert_eq!(got["annotations"]["reason"], "not_delivered");
    assert_eq!(
        got["annotations"]["summary"],
        format!(
            "Feedback form is not delivering messages since {}",
            local_hhmm(firing.since)
        )
    );
    assert_eq!(got["annotations"]["description"], firing.reason.as_str());
    assert_eq!(got["generatorURL"], "https://status.shop.example/");
    // endsAt is about a day ahead (ends_after default 24h).
    let ends: jiff::Timestamp = got["endsAt"].as_str().unwrap().parse().unwrap();
    let ahead = ends.as_second() - jiff::Timestamp::now().as_second();
    assert!((23 * 3600..=24 * 3600).contains(&ahead), "endsAt {ends}");

    let mut resolved = firing.clone();
    resolved.status = AlertStatus::Resolved;
    resolved.resolved_at = Some(SystemTime::now());
    let n = notification(Language::En, Audience::Ops, vec![resolved]);
    sender.send(&n).await.expect("resolve should be accepted");
    am.wait_for(
        "check",
        &check,
        "the resolved alert should no longer be active",
        |a| a.is_empty(),
    )
    .await;

    // A test notification is a short-lived alert of its own.
    let shop = format!("test-shop-{}", unique());
    let mut test = notification(Language::En, Audience::Ops, vec![]);
    test.shop = shop.clone();
    test.test = true;
    sender.send(&test).await.expect("test should be accepted");
    let found = am
        .wait_for("shop", &shop, "the test alert should become active", |a| {
            a.len() == 1
        })
        .await;
    assert_eq!(found[0]["labels"]["alertname"], "SupportwatchTest");
    let ends: jiff::Timestamp = found[0]["endsAt"].as_str().unwrap().parse().unwrap();
    let ahead = ends.as_second() - jiff::Timestamp::now().as_second();
    assert!((200..=300).contains(&ahead), "endsAt {ends}");
}

#[tokio::test]
async fn alertmanager_refusal_is_permanent_and_keeps_the_password() {
    let server = Recorder::start().await;
    server.reply(400, r#""start time must be before end time""#);
    let sender = notifier(
        "prod-am",
        serde_json::json!({
            "kind": "alertmanager", "url": server.url("/am"), "user": "sw",
            "password": "am-pass-31337", "timeout": "5s"
        }),
    );
    let n = notification(
        Language::En,
        Audience::Ops,
        vec![alert("x", Channel::Chat, "no_reply", AlertStatus::Firing)],
    );
    let err = sender.send(&n).await.unwrap_err();
    assert_eq!(
        permanent(&err),
        r#"alertmanager "prod-am": HTTP 400: start time must be before end time"#
    );
    assert_no_secret(&err, &["am-pass-31337"]);
    let seen = server.last();
    assert_eq!(seen.path, "/am/api/v2/alerts");
    // Basic auth: base64("sw:am-pass-31337").
    assert_eq!(
        seen.headers.get("authorization").unwrap(),
        "Basic c3c6YW0tcGFzcy0zMTMzNw=="
    );
    assert!(seen.json().as_array().is_some_and(|a| a.len() == 1));
}

// ---------------------------------------------------------------- e-mail

#[tokio::test]
async fn email_is_delivered_through_submission_with_starttls() {
    let server = mail_server();
    let customer = server.user("customer");
    let sender = notifier(
        "owner-mail",
        serde_json::json!({
            "kind": "email",
            "smtp": format!("smtp+starttls://localhost:{}", server.submission_port),
            "user": customer.address,
            "password": customer.password,
            "ca_file": server.ca_file.display().to_string(),
            "from": format!("supportwatch <{}>", customer.address),
            "to": ["spare@test.local"],
            "language": "ru",
            "timeout": "30s",
        }),
    );
    let check = format!("support-mail-{}", unique());
    let a = alert(&check, Channel::Email, "mailbox_full", AlertStatus::Firing);
    let since = local_hhmm(a.since);
    let fingerprint = a.fingerprint.clone();
    let n = notification(Language::Ru, Audience::Owner, vec![a]);
    sender
        .send(&n)
        .await
        .expect("the alert mail should be accepted");

    let file = server
        .wait_for_message_async("spare", &fingerprint, Duration::from_secs(30))
        .await
        .expect("the alert mail should arrive in spare's mailbox");
    let raw = std::fs::read(&file).expect("read the message");
    let message = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("parse the message");
    assert_eq!(
        message.subject(),
        Some(format!("shop.example: Почта поддержки: ящик переполнен с {since}").as_str())
    );
    let body = message.body_text(0).expect("a text body");
    assert!(body.contains("3 неудачные проверки подряд."), "{body}");
    assert!(
        body.contains("Освободите место в почтовом ящике."),
        "{body}"
    );
    assert!(
        body.contains("Статус: https://status.shop.example/"),
        "{body}"
    );
    assert_eq!(
        message.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-generated")
    );
    assert_eq!(
        message.header_raw("X-Supportwatch-Alert").map(str::trim),
        Some(fingerprint.as_str())
    );
    let content_type = message.content_type().expect("content type");
    assert_eq!(
        (content_type.ctype(), content_type.subtype()),
        ("text", Some("plain"))
    );
}

#[tokio::test]
async fn email_with_a_wrong_password_is_permanent_and_does_not_show_it() {
    let server = mail_server();
    let customer = server.user("customer");
    let wrong = "wrong-Passw0rd-4242";
    let sender = notifier(
        "owner-mail",
        serde_json::json!({
            "kind": "email",
            "smtp": format!("smtp+starttls://localhost:{}", server.submission_port),
            "user": customer.address,
            "password": wrong,
            "ca_file": server.ca_file.display().to_string(),
            "from": customer.address,
            "to": ["spare@test.local"],
            "timeout": "30s",
        }),
    );
    let n = notification(
        Language::En,
        Audience::Owner,
        vec![alert(
            "support-mail",
            Channel::Email,
            "smtp",
            AlertStatus::Firing,
        )],
    );
    let err = sender.send(&n).await.unwrap_err();
    let message = permanent(&err);
    assert!(
        message.starts_with(&format!(
            r#"email "owner-mail": smtp authentication as {} failed: 535"#,
            customer.address
        )),
        "{message}"
    );
    assert_no_secret(&err, &[wrong]);
}
