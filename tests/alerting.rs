//! Alerting end to end: the real daemon checks a loopback shop whose channels the test breaks and
//! repairs, and its notifiers talk to loopback receivers that record every request and answer as
//! the test scripts them (429 with retry_after, 500, ...).
//!
//! Deadlines are generous (a loaded CI machine); assertions are on what was received.

mod common;

use common::breakable::Shop;
use common::daemon::ConfigDir;
use common::recorder::{Answer, Recorder, Request};
use std::time::{Duration, Instant};

/// A notification receiver: records every request and, unless scripted otherwise, answers as a
/// content Bot API does.
async fn receiver() -> Recorder {
    let receiver = Recorder::start().await;
    receiver.answer_always(Answer::json(
        200,
        serde_json::json!({"ok": true, "result": {}}),
    ));
    receiver
}

/// What most tests start from: the shop, the `ops` webhook receiver and a config directory.
struct Incident {
    shop: Shop,
    ops: Recorder,
    dir: ConfigDir,
}

impl Incident {
    async fn start() -> Self {
        Incident {
            shop: Shop::start().await,
            ops: receiver().await,
            dir: ConfigDir::new(),
        }
    }

    /// Writes `alerting.yaml`: `yaml`, with `$OPS` standing for the ops receiver's URL, then an
    /// http check of each of `channels`.
    fn configure(&self, yaml: &str, channels: &[&str]) {
        let yaml = yaml.replace("$OPS", &self.ops.url("/alerts"));
        self.dir.write(
            "alerting.yaml",
            &format!("{yaml}{}", self.shop.checks(channels)),
        );
    }
}

/// `(check, status)` of every alert in every webhook payload received.
fn alerts(got: &[Request]) -> Vec<(String, String)> {
    got.iter()
        .flat_map(|r| {
            r.json()["alerts"]
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

/// How many of the alerts in `got` have `status`.
fn count(got: &[Request], status: &str) -> usize {
    alerts(got).iter().filter(|(_, s)| s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_channels_failing_together_make_one_message_and_each_resolves_once() {
    let t = Incident::start().await;
    t.configure(
        "defaults: { labels: { shop: vesna } }\nnotifiers:\n  ops: { kind: webhook, url: \"$OPS\" }\nalerting:\n  group_wait: 3s\n  failure_threshold: 2\n  routes: [ { notify: [ops] } ]\n",
        &["chat", "feedback_form", "callback"],
    );
    let daemon = t.dir.start().await;
    // Healthy for a few runs: nothing is sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(t.ops.requests().is_empty(), "{:?}", t.ops.requests());

    for c in ["chat", "feedback_form", "callback"] {
        t.shop.set(c, true);
    }
    t.ops
        .wait_until("the firing message", |got| !got.is_empty())
        .await;
    // Give a storm the time to happen if it would.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = t.ops.requests();
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
    assert_eq!(got[0].json()["shop"], "vesna");

    for c in ["chat", "feedback_form", "callback"] {
        t.shop.set(c, false);
    }
    t.ops
        .wait_until("three resolves", |got| count(got, "resolved") >= 3)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resolved: Vec<_> = alerts(&t.ops.requests())
        .into_iter()
        .filter(|(_, s)| s == "resolved")
        .collect();
    assert_eq!(resolved.len(), 3, "each check resolves once: {resolved:?}");
    let metrics = daemon.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"supportwatch_notifications_total{notifier="ops",result="sent"} 2"#),
        "{metrics}"
    );
    assert!(daemon.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_incident_neither_resends_nor_loses_the_resolve() {
    let t = Incident::start().await;
    t.configure(
        "notifiers:\n  ops: { kind: webhook, url: \"$OPS\" }\nalerting:\n  group_wait: 0s\n  routes: [ { notify: [ops] } ]\n",
        &["chat"],
    );
    t.shop.set("chat", true);
    let daemon = t.dir.start().await;
    t.ops
        .wait_until("the firing message", |got| !got.is_empty())
        .await;
    // A stop cancels a send whose answer is not handled yet; this one must count as sent first.
    daemon
        .wait_for_metric(r#"supportwatch_notifications_total{notifier="ops",result="sent"} 1"#)
        .await;
    assert!(daemon.stop().await);

    // Back up while the channel is still broken: no second "firing".
    let daemon = t.dir.start().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        alerts(&t.ops.requests()),
        vec![("chat".into(), "firing".into())]
    );
    assert!(daemon.stop().await);

    // Repaired while supportwatch is down: the resolve comes once it is back.
    t.shop.set("chat", false);
    let daemon = t.dir.start().await;
    t.ops.wait_until("the resolve", |got| got.len() >= 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        alerts(&t.ops.requests()),
        vec![
            ("chat".into(), "firing".into()),
            ("chat".into(), "resolved".into())
        ]
    );
    assert!(daemon.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_repeat_while_firing_and_maintenance_keeps_quiet() {
    let t = Incident::start().await;
    let now = jiff::Timestamp::now();
    let from = now - jiff::SignedDuration::from_hours(1);
    let to = now + jiff::SignedDuration::from_hours(1);
    t.dir.write(
        "alerting.yaml",
        &format!(
            "notifiers:\n  ops: {{ kind: webhook, url: \"{ops}\" }}\nalerting:\n  group_wait: 0s\n  repeat: 2s\n  routes: [ {{ notify: [ops] }} ]\n{checks}  - name: callback\n    kind: http\n    channel: callback\n    url: \"http://{shop}/svc/callback\"\n    interval: 1s\n    timeout: 1s\n    retries: 0\n    alert: {{ maintenance: [ {{ from: \"{from}\", to: \"{to}\" }} ] }}\n",
            ops = t.ops.url("/alerts"),
            checks = t.shop.checks(&["chat"]),
            shop = t.shop.addr,
        ),
    );
    t.shop.set("chat", true);
    t.shop.set("callback", true);
    let daemon = t.dir.start().await;
    t.ops
        .wait_until("two reminders for chat", |got| {
            alerts(got)
                .iter()
                .filter(|(c, s)| c == "chat" && s == "reminder")
                .count()
                >= 2
        })
        .await;
    let all = alerts(&t.ops.requests());
    assert_eq!(all[0], ("chat".into(), "firing".into()), "{all:?}");
    assert!(
        all.iter().all(|(c, _)| c == "chat"),
        "callback is in maintenance: {all:?}"
    );
    // Its results are still recorded, and its alert fires for dashboards.
    let metrics = daemon.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"supportwatch_alert_firing{channel="callback",check="callback",kind="http",shop="default"} 1"#),
        "{metrics}"
    );
    assert!(daemon.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_429_and_500_are_retried_and_a_dead_notifier_hands_over_to_the_fallback() {
    let t = Incident::start().await;
    let telegram = receiver().await;
    telegram.answer_next(Answer::json(
        429,
        serde_json::json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
    ));
    telegram.answer_next(Answer::json(
        500,
        serde_json::json!({"ok": false, "error_code": 500, "description": "Internal Server Error"}),
    ));
    // `ops` is dead: every send fails.
    t.ops.answer_always(Answer::status(503));
    let backup = receiver().await;
    t.configure(
        &format!(
            "notifiers:\n  owner: {{ kind: telegram, api_url: \"{}\", bot_token: \"${{SW_TEST_BOT_TOKEN:-4242:not-in-logs}}\", chat_id: \"1001\" }}\n  ops: {{ kind: webhook, url: \"$OPS\" }}\n  backup: {{ kind: webhook, url: \"{}\" }}\nalerting:\n  group_wait: 0s\n  attempts: 3\n  routes:\n    - {{ notify: [owner] }}\n    - {{ notify: [ops], fallback: backup }}\n",
            telegram.url(""),
            backup.url("/alerts"),
        ),
        &["chat"],
    );
    t.shop.set("chat", true);
    let daemon = t.dir.start().await;
    telegram
        .wait_until("telegram to get it on the third try", |got| got.len() >= 3)
        .await;
    let got = telegram.requests();
    assert!(
        got.iter()
            .all(|r| r.path == "/bot4242:not-in-logs/sendMessage"),
        "{got:?}"
    );
    // Numeric chat ids go out as numbers, as the Bot API documents them.
    let third = got[2].json();
    assert_eq!(third["chat_id"], 1001);
    assert!(
        third["text"].as_str().unwrap_or_default().contains("Chat"),
        "{got:?}"
    );
    backup
        .wait_until("the fallback to get what ops could not", |got| {
            !got.is_empty()
        })
        .await;
    // A send counts once its answer is handled, a moment after the receiver got the request.
    for sent in [
        r#"supportwatch_notifications_total{notifier="owner",result="sent"} 1"#,
        r#"supportwatch_notifications_total{notifier="backup",result="sent"} 1"#,
    ] {
        daemon.wait_for_metric(sent).await;
    }
    assert_eq!(
        t.ops.requests().len(),
        3,
        "three attempts, then the fallback"
    );
    assert_eq!(
        alerts(&backup.requests()),
        vec![("chat".into(), "firing".into())]
    );
    let health = daemon.get_text("/healthz").await;
    let health: serde_json::Value = serde_json::from_str(&health).expect("json");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["notifiers_failing"]["ops"].is_string(), "{health}");
    let metrics = daemon.get_text("/metrics").await;
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
    let metrics = daemon.get_text("/metrics").await;
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
    // The shop and the receiver serve on the runtime's worker threads while this thread waits.
    let (shop, telegram) = runtime.block_on(async { (Shop::start().await, receiver().await) });
    shop.set("chat", true);
    telegram.answer_next(Answer::json(
        401,
        serde_json::json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
    ));
    let dir = ConfigDir::new();
    dir.write(
        "alerting.yaml",
        &format!(
            "notifiers:\n  owner: {{ kind: telegram, api_url: \"{}\", bot_token: \"${{SW_TEST_BOT_TOKEN}}\", chat_id: \"1001\" }}\nalerting:\n  group_wait: 0s\n  routes: [ {{ notify: [owner] }} ]\n{}",
            telegram.url(""),
            shop.checks(&["chat"])
        ),
    );
    let mut child = common::daemon::spawn_binary(
        dir.path(),
        &[("SW_TEST_BOT_TOKEN", TOKEN), ("RUST_LOG", "debug")],
    );
    let started = Instant::now();
    while telegram.requests().is_empty() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // The refusal is handled (logged) right after the answer.
    std::thread::sleep(Duration::from_secs(1));
    common::daemon::signal(&child, "-TERM");
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
    assert_eq!(telegram.requests().len(), 1, "a 401 is not retried");
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
    // The receiver serves on the runtime's worker threads while this thread runs the command.
    let hook = runtime.block_on(receiver());
    let dir = ConfigDir::new();
    dir.write(
        "alerting.yaml",
        &format!(
            "defaults: {{ labels: {{ shop: vesna }} }}\nnotifiers:\n  ops: {{ kind: webhook, url: \"{}\" }}\nchecks:\n  - {{ name: home, kind: http, url: \"http://127.0.0.1:9/\" }}\n",
            hook.url("/alerts")
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
    let got = hook.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].json()["test"], true);
    assert_eq!(got[0].json()["shop"], "vesna");

    let out = run("opz");
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("no notifier `opz` (declared: ops)"), "{text}");
    assert_eq!(hook.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_that_never_answers_does_not_hold_up_the_others() {
    let t = Incident::start().await;
    let silent = common::start_silent("127.0.0.1").await;
    // The silent notifier's timeout outlasts the test: the other could only be told if sends
    // do not wait for each other.
    t.configure(
        &format!(
            "notifiers:\n  stuck: {{ kind: webhook, url: \"http://{silent}/alerts\", timeout: 1h }}\n  ops: {{ kind: webhook, url: \"$OPS\" }}\nalerting:\n  group_wait: 0s\n  routes: [ {{ notify: [stuck, ops] }} ]\n"
        ),
        &["chat", "callback"],
    );
    t.shop.set("chat", true);
    let daemon = t.dir.start().await;
    t.ops
        .wait_until("ops to hear of chat", |got| !got.is_empty())
        .await;
    // A second incident while `stuck` still hangs on the first reaches ops too.
    t.shop.set("callback", true);
    t.ops
        .wait_until("ops to hear of callback", |got| {
            alerts(got).iter().any(|(c, _)| c == "callback")
        })
        .await;
    let queued = daemon.get_text("/metrics").await;
    assert!(
        queued.contains(r#"supportwatch_notifier_up{notifier="stuck"} 1"#),
        "a send in flight is not a failure yet:\n{queued}"
    );
    let stopped = tokio::time::timeout(Duration::from_secs(60), daemon.stop()).await;
    assert!(stopped.is_ok(), "stopping must not wait for the hung send");
}

#[tokio::test]
async fn an_unusable_storage_path_stops_the_start_with_the_path_in_the_error() {
    let dir = ConfigDir::new();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("write file");
    let db = file.join("sw.db");
    dir.write(
        "storage.yaml",
        &format!("storage: {{ path: \"{}\" }}\n", db.display()),
    );
    dir.write(
        "alerting.yaml",
        "checks: [ { name: x, kind: http, url: \"http://127.0.0.1:9/\", interval: 1h } ]\n",
    );
    let Err(e) = dir.try_start().await else {
        panic!("a database under a file cannot be opened")
    };
    let message = e.to_string();
    assert!(message.starts_with("storage "), "{message}");
    assert!(message.contains(&db.display().to_string()), "{message}");
}
