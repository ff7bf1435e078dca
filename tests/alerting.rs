//! Alerting end to end: the real daemon checks a loopback shop whose channels the test breaks and
//! repairs, and its notifiers talk to loopback receivers that record every request and answer as
//! the test scripts them (429 with retry_after, 500, ...).
//!
//! Deadlines are generous (a loaded CI machine); assertions are on what was received.

mod common;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::{Json, Router};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use supportwatch::daemon::{ConfigSource, Daemon};

/// A shop whose channels answer 200 or 500 as the test says.
#[derive(Clone, Default)]
struct Shop {
    broken: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Shop {
    fn set(&self, channel: &str, broken: bool) {
        self.broken
            .lock()
            .expect("lock")
            .insert(channel.to_string(), broken);
    }
}

async fn start_shop(shop: Shop) -> SocketAddr {
    async fn answer(State(shop): State<Shop>, UrlPath(channel): UrlPath<String>) -> StatusCode {
        let broken = shop
            .broken
            .lock()
            .expect("lock")
            .get(&channel)
            .copied()
            .unwrap_or(false);
        if broken {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    }
    let app = Router::new()
        .route("/svc/{channel}", get(answer))
        .with_state(shop);
    common::serve(app).await
}

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    body: serde_json::Value,
}

/// A receiver that records requests and answers from a script, then 200.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<(u16, serde_json::Value)>>>,
    always: Arc<Mutex<Option<u16>>>,
}

impl Receiver {
    fn got(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }
    fn then_answer(&self, status: u16, body: serde_json::Value) {
        self.script.lock().expect("lock").push_back((status, body));
    }
    fn always_answer(&self, status: u16) {
        *self.always.lock().expect("lock") = Some(status);
    }
}

async fn start_receiver(receiver: Receiver) -> SocketAddr {
    async fn record(
        State(r): State<Receiver>,
        uri: axum::http::Uri,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        r.got.lock().expect("lock").push(Received {
            path: uri.path().to_string(),
            body,
        });
        let scripted = r.script.lock().expect("lock").pop_front();
        let always = *r.always.lock().expect("lock");
        let (status, body) = scripted.unwrap_or_else(|| {
            (
                always.unwrap_or(200),
                serde_json::json!({"ok": true, "result": {}}),
            )
        });
        (StatusCode::from_u16(status).expect("status"), Json(body)).into_response()
    }
    common::serve(
        Router::new()
            .route("/{*path}", any(record))
            .with_state(receiver),
    )
    .await
}

/// `(check, status)` of every alert in every webhook payload received.
fn alerts(got: &[Received]) -> Vec<(String, String)> {
    got.iter()
        .flat_map(|r| {
            r.body["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|a| {
                    (
                        a["check"].as_str().unwrap_or_default().to_string(),
                        a["status"].as_str().unwrap_or_default().to_string(),
                    )
                })
        })
        .collect()
}

async fn get_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write(dir: &Path, yaml: &str) {
    std::fs::write(dir.join("alerting.yaml"), yaml).expect("write config");
}

async fn start(dir: &Path) -> Daemon {
    Daemon::start(
        ConfigSource::Dir(dir.to_path_buf()),
        Some("127.0.0.1:0".parse().expect("addr")),
    )
    .await
    .expect("daemon starts")
}

fn checks(shop: SocketAddr, channels: &[&str]) -> String {
    let mut out = String::from("checks:\n");
    for c in channels {
        out.push_str(&format!(
            "  - {{ name: {c}, kind: http, channel: {c}, url: \"http://{shop}/svc/{c}\", interval: 1s, timeout: 1s, retries: 0 }}\n"
        ));
    }
    out
}

fn storage(dir: &Path) -> String {
    format!("storage: {{ path: \"{}\" }}\n", dir.join("sw.db").display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_channels_failing_together_make_one_message_and_each_resolves_once() {
    let shop = Shop::default();
    let shop_addr = start_shop(shop.clone()).await;
    let hook = Receiver::default();
    let hook_addr = start_receiver(hook.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &format!(
            "defaults: {{ labels: {{ shop: vesna }} }}\n{}notifiers:\n  ops: {{ kind: webhook, url: \"http://{hook_addr}/alerts\" }}\nalerting:\n  group_wait: 3s\n  failure_threshold: 2\n  routes: [ {{ notify: [ops] }} ]\n{}",
            storage(dir.path()),
            checks(shop_addr, &["chat", "feedback_form", "callback"])
        ),
    );
    let daemon = start(dir.path()).await;
    // Healthy for a few runs: nothing is sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(hook.got().is_empty(), "{:?}", hook.got());

    for c in ["chat", "feedback_form", "callback"] {
        shop.set(c, true);
    }
    wait_for("the firing message", || !hook.got().is_empty()).await;
    // Give a storm the time to happen if it would.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = hook.got();
    assert_eq!(got.len(), 1, "one message for three failures: {got:?}");
    let mut fired = alerts(&got);
    fired.sort();
    assert_eq!(
        fired,
        vec![
            ("callback".to_string(), "firing".to_string()),
            ("chat".to_string(), "firing".to_string()),
            ("feedback_form".to_string(), "firing".to_string()),
        ]
    );
    assert_eq!(got[0].body["shop"], "vesna");

    for c in ["chat", "feedback_form", "callback"] {
        shop.set(c, false);
    }
    wait_for("three resolves", || {
        alerts(&hook.got())
            .iter()
            .filter(|(_, s)| s == "resolved")
            .count()
            >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resolved: Vec<_> = alerts(&hook.got())
        .into_iter()
        .filter(|(_, s)| s == "resolved")
        .collect();
    assert_eq!(resolved.len(), 3, "each check resolves once: {resolved:?}");
    let metrics = get_text(&format!("http://{}/metrics", daemon.addr)).await;
    assert!(
        metrics.contains(r#"supportwatch_notifications_total{notifier="ops",result="sent"} 2"#),
        "{metrics}"
    );
    assert!(daemon.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_incident_neither_resends_nor_loses_the_resolve() {
    let shop = Shop::default();
    let shop_addr = start_shop(shop.clone()).await;
    let hook = Receiver::default();
    let hook_addr = start_receiver(hook.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &format!(
            "{}notifiers:\n  ops: {{ kind: webhook, url: \"http://{hook_addr}/alerts\" }}\nalerting:\n  group_wait: 0s\n  routes: [ {{ notify: [ops] }} ]\n{}",
            storage(dir.path()),
            checks(shop_addr, &["chat"])
        ),
    );
    shop.set("chat", true);
    let daemon = start(dir.path()).await;
    wait_for("the firing message", || !hook.got().is_empty()).await;
    assert!(daemon.stop().await);

    // Back up while the channel is still broken: no second "firing".
    let daemon = start(dir.path()).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(alerts(&hook.got()), vec![("chat".into(), "firing".into())]);
    assert!(daemon.stop().await);

    // Repaired while supportwatch is down: the resolve comes once it is back.
    shop.set("chat", false);
    let daemon = start(dir.path()).await;
    wait_for("the resolve", || hook.got().len() >= 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        alerts(&hook.got()),
        vec![
            ("chat".into(), "firing".into()),
            ("chat".into(), "resolved".into())
        ]
    );
    assert!(daemon.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_repeat_while_firing_and_maintenance_keeps_quiet() {
    let shop = Shop::default();
    let shop_addr = start_shop(shop.clone()).await;
    let hook = Receiver::default();
    let hook_addr = start_receiver(hook.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let now = jiff::Timestamp::now();
    let from = now - jiff::SignedDuration::from_hours(1);
    let to = now + jiff::SignedDuration::from_hours(1);
    write(
        dir.path(),
        &format!(
            "{}notifiers:\n  ops: {{ kind: webhook, url: \"http://{hook_addr}/alerts\" }}\nalerting:\n  group_wait: 0s\n  repeat: 2s\n  routes: [ {{ notify: [ops] }} ]\n{}  - name: callback\n    kind: http\n    channel: callback\n    url: \"http://{shop_addr}/svc/callback\"\n    interval: 1s\n    timeout: 1s\n    retries: 0\n    alert: {{ maintenance: [ {{ from: \"{from}\", to: \"{to}\" }} ] }}\n",
            storage(dir.path()),
            checks(shop_addr, &["chat"])
        ),
    );
    shop.set("chat", true);
    shop.set("callback", true);
    let daemon = start(dir.path()).await;
    wait_for("two reminders for chat", || {
        alerts(&hook.got())
            .iter()
            .filter(|(c, s)| c == "chat" && s == "reminder")
            .count()
            >= 2
    })
    .await;
    let all = alerts(&hook.got());
    assert_eq!(all[0], ("chat".into(), "firing".into()), "{all:?}");
    assert!(
        all.iter().all(|(c, _)| c == "chat"),
        "callback is in maintenance: {all:?}"
    );
    // Its results are still recorded, and its alert fires for dashboards.
    let metrics = get_text(&format!("http://{}/metrics", daemon.addr)).await;
    assert!(
        metrics.contains(r#"supportwatch_alert_firing{channel="callback",check="callback",kind="http",shop="default"} 1"#),
        "{metrics}"
    );
    assert!(daemon.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_429_and_500_are_retried_and_a_dead_notifier_hands_over_to_the_fallback() {
    let shop = Shop::default();
    let shop_addr = start_shop(shop.clone()).await;
    let telegram = Receiver::default();
    telegram.then_answer(
        429,
        serde_json::json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
    );
    telegram.then_answer(
        500,
        serde_json::json!({"ok": false, "error_code": 500, "description": "Internal Server Error"}),
    );
    let telegram_addr = start_receiver(telegram.clone()).await;
    let dead = Receiver::default();
    dead.always_answer(503);
    let dead_addr = start_receiver(dead.clone()).await;
    let backup = Receiver::default();
    let backup_addr = start_receiver(backup.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &format!(
            "{}notifiers:\n  owner: {{ kind: telegram, api_url: \"http://{telegram_addr}\", bot_token: \"${{SW_TEST_BOT_TOKEN:-4242:not-in-logs}}\", chat_id: \"1001\" }}\n  ops: {{ kind: webhook, url: \"http://{dead_addr}/alerts\" }}\n  backup: {{ kind: webhook, url: \"http://{backup_addr}/alerts\" }}\nalerting:\n  group_wait: 0s\n  attempts: 3\n  routes:\n    - {{ notify: [owner] }}\n    - {{ notify: [ops], fallback: backup }}\n{}",
            storage(dir.path()),
            checks(shop_addr, &["chat"])
        ),
    );
    shop.set("chat", true);
    let daemon = start(dir.path()).await;
    wait_for("telegram to get it on the third try", || {
        telegram.got().len() >= 3
    })
    .await;
    let got = telegram.got();
    assert!(
        got.iter()
            .all(|r| r.path == "/bot4242:not-in-logs/sendMessage"),
        "{got:?}"
    );
    // Numeric chat ids go out as numbers, as the Bot API documents them.
    assert_eq!(got[2].body["chat_id"], 1001);
    assert!(
        got[2].body["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Chat"),
        "{got:?}"
    );
    wait_for("the fallback to get what ops could not", || {
        !backup.got().is_empty()
    })
    .await;
    assert_eq!(dead.got().len(), 3, "three attempts, then the fallback");
    assert_eq!(
        alerts(&backup.got()),
        vec![("chat".into(), "firing".into())]
    );
    let base = format!("http://{}", daemon.addr);
    let health = get_text(&format!("{base}/healthz")).await;
    let health: serde_json::Value = serde_json::from_str(&health).expect("json");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["notifiers_failing"]["ops"].is_string(), "{health}");
    let metrics = get_text(&format!("{base}/metrics")).await;
    for line in [
        r#"supportwatch_notifications_total{notifier="owner",result="error"} 2"#,
        r#"supportwatch_notifications_total{notifier="owner",result="sent"} 1"#,
        r#"supportwatch_notifications_total{notifier="ops",result="dropped"} 1"#,
        r#"supportwatch_notifications_total{notifier="backup",result="sent"} 1"#,
        r#"supportwatch_notifier_up{notifier="ops"} 0"#,
        r#"supportwatch_notifier_up{notifier="owner"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line}:\n{metrics}");
    }
    // A reload does not make a failing notifier look healthy.
    daemon.reload().await.expect("reload");
    let metrics = get_text(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains(r#"supportwatch_notifier_up{notifier="ops"} 0"#),
        "{metrics}"
    );
    assert!(daemon.stop().await);
}

#[test]
fn the_bot_token_never_reaches_the_log() {
    const TOKEN: &str = "777000:secret-bot-token-in-env";
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (shop_addr, telegram_addr, telegram) = runtime.block_on(async {
        let shop = Shop::default();
        shop.set("chat", true);
        let telegram = Receiver::default();
        telegram.then_answer(
            401,
            serde_json::json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        );
        (
            start_shop(shop).await,
            start_receiver(telegram.clone()).await,
            telegram,
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &format!(
            "{}notifiers:\n  owner: {{ kind: telegram, api_url: \"http://{telegram_addr}\", bot_token: \"${{SW_TEST_BOT_TOKEN}}\", chat_id: \"1001\" }}\nalerting:\n  group_wait: 0s\n  routes: [ {{ notify: [owner] }} ]\n{}",
            storage(dir.path()),
            checks(shop_addr, &["chat"])
        ),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_supportwatch"))
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.path())
        .current_dir(dir.path())
        .env("SW_TEST_BOT_TOKEN", TOKEN)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start daemon");
    let started = Instant::now();
    while telegram.got().is_empty() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // The refusal is handled (logged) right after the answer.
    std::thread::sleep(Duration::from_secs(1));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(telegram.got().len(), 1, "a 401 is not retried");
    assert!(log.contains("notification given up"), "{log}");
    assert!(log.contains("Unauthorized"), "{log}");
    assert!(!log.contains("secret-bot-token"), "{log}");
}

#[test]
fn validate_warns_when_a_mail_check_could_only_be_reported_by_the_mail_it_checks() {
    let config = |extra_route: &str| {
        format!(
            "notifiers:\n  owner-mail: {{ kind: email, smtp: \"smtp+starttls://mail.shop.example:587\", user: alerts@shop.example, password: x, from: alerts@shop.example, to: [owner@shop.example] }}\n  owner-telegram: {{ kind: telegram, bot_token: \"1:x\", chat_id: \"42\" }}\nalerting:\n  routes:\n    - {{ notify: [owner-mail]{extra_route} }}\nmailboxes:\n  support: {{ imap: \"imaps://MAIL.shop.example\", user: support@shop.example, password: x }}\nchecks:\n  - {{ name: contact, kind: form, channel: feedback_form, url: \"https://shop.example/contact\", form: \"form\", fields: {{ message: \"Automated test {{{{token}}}}\" }}, deliver: {{ mailbox: support, within: 5m }} }}\n  - {{ name: support-mail, kind: mail, channel: email, smtp: \"smtp+starttls://mail.shop.example:587\", user: monitor@shop.example, password: x, from: monitor@shop.example, to: support@shop.example }}\n  - {{ name: home, kind: http, url: \"https://shop.example/\" }}\n"
        )
    };
    let warned = common::prepare(&config(""));
    assert_eq!(warned.warnings.len(), 2, "{:?}", warned.warnings);
    // The form's mail is proven over IMAP at the same host (case does not matter).
    let w = &warned.warnings[0];
    assert!(w.contains("check \"contact\""), "{w}");
    assert!(w.contains("(mail.shop.example)"), "{w}");
    let w = &warned.warnings[1];
    assert!(w.contains("check \"support-mail\""), "{w}");
    assert!(w.contains("(mail.shop.example)"), "{w}");
    // A fallback that does not go through that server settles it; the http check never warned.
    let settled = common::prepare(&config(", fallback: owner-telegram"));
    assert!(settled.warnings.is_empty(), "{:?}", settled.warnings);
}

#[test]
fn notify_test_sends_a_test_message_and_names_an_unknown_notifier() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let hook = Receiver::default();
    let hook_addr = runtime.block_on(start_receiver(hook.clone()));
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &format!(
            "defaults: {{ labels: {{ shop: vesna }} }}\nnotifiers:\n  ops: {{ kind: webhook, url: \"http://{hook_addr}/alerts\" }}\nchecks:\n  - {{ name: home, kind: http, url: \"http://127.0.0.1:9/\" }}\n"
        ),
    );
    let run = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_supportwatch"))
            .args(["notify-test", name, "--config"])
            .arg(dir.path())
            .output()
            .expect("run notify-test")
    };
    let out = run("ops");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("sent a test message through `ops` for shop `vesna`"),
        "{text}"
    );
    let got = hook.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body["test"], true);
    assert_eq!(got[0].body["shop"], "vesna");

    let out = run("opz");
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("no notifier `opz` (declared: ops)"), "{text}");
    assert_eq!(hook.got().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_that_never_answers_does_not_hold_up_the_others() {
    let shop = Shop::default();
    let shop_addr = start_shop(shop.clone()).await;
    let silent = common::start_silent("127.0.0.1").await;
    let hook = Receiver::default();
    let hook_addr = start_receiver(hook.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The silent notifier's timeout outlasts the test: the other could only be told if sends
    // do not wait for each other.
    write(
        dir.path(),
        &format!(
            "{}notifiers:\n  stuck: {{ kind: webhook, url: \"http://{silent}/alerts\", timeout: 1h }}\n  ops: {{ kind: webhook, url: \"http://{hook_addr}/alerts\" }}\nalerting:\n  group_wait: 0s\n  routes: [ {{ notify: [stuck, ops] }} ]\n{}",
            storage(dir.path()),
            checks(shop_addr, &["chat", "callback"])
        ),
    );
    shop.set("chat", true);
    let daemon = start(dir.path()).await;
    wait_for("ops to hear of chat", || !hook.got().is_empty()).await;
    // A second incident while `stuck` still hangs on the first reaches ops too.
    shop.set("callback", true);
    wait_for("ops to hear of callback", || {
        alerts(&hook.got()).iter().any(|(c, _)| c == "callback")
    })
    .await;
    let queued = get_text(&format!("http://{}/metrics", daemon.addr)).await;
    assert!(
        queued.contains(r#"supportwatch_notifier_up{notifier="stuck"} 1"#),
        "a send in flight is not a failure yet:\n{queued}"
    );
    let stopped = tokio::time::timeout(Duration::from_secs(60), daemon.stop()).await;
    assert!(stopped.is_ok(), "stopping must not wait for the hung send");
}

#[tokio::test]
async fn an_unusable_storage_path_stops_the_start_with_the_path_in_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("write file");
    let db = file.join("sw.db");
    write(
        dir.path(),
        &format!(
            "storage: {{ path: \"{}\" }}\nchecks: [ {{ name: x, kind: http, url: \"http://127.0.0.1:9/\", interval: 1h }} ]\n",
            db.display()
        ),
    );
    let Err(e) = Daemon::start(
        ConfigSource::Dir(dir.path().to_path_buf()),
        Some("127.0.0.1:0".parse().expect("addr")),
    )
    .await
    else {
        panic!("a database under a file cannot be opened")
    };
    let message = e.to_string();
    assert!(message.starts_with("storage "), "{message}");
    assert!(message.contains(&db.display().to_string()), "{message}");
}
