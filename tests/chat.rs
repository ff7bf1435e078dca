//! `chat` checks against real bots on loopback: an HTTP JSON bot (synchronous and polled) and a
//! WebSocket bot, each also made silent, slow and wrong; active hours with an injected clock.

mod common;

use axum::Json;
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{any, get, post};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};
use supportwatch::config::CheckSpec;
use supportwatch::outcome::{FailureKind, Observation, RunContext};
use supportwatch::outcome::{RunReport, RunResult};

#[derive(Clone, Default)]
struct Bot {
    polls: Arc<AtomicU32>,
}

/// A shop's support bot: greets with the token, knows order statuses, and has misbehaving twins.
async fn start_bot() -> SocketAddr {
    let app = Router::new()
        .route("/bot", post(bot))
        .route("/silent", post(silent))
        .route("/slow", post(slow))
        .route("/wrong", post(wrong))
        .route("/async", post(accepted))
        .route("/poll", get(poll))
        .route("/ws", any(ws))
        .route("/ws-silent", any(ws_silent))
        .route("/widget", get(|| async { axum::response::Html(WIDGET) }))
        .with_state(Bot::default());
    common::serve(app).await
}

fn text_of(body: &serde_json::Value) -> String {
    body.get("message")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string()
}

/// What the bot says to `message` within conversation `session`.
fn answer(message: &str, session: &str) -> String {
    if message.contains("статус заказа") {
        "Назовите, пожалуйста, номер заказа".into()
    } else if message.chars().all(|c| c.is_ascii_digit()) && !message.is_empty() {
        if session == "s-42" {
            format!("Заказ {message}: передан в службу доставки")
        } else {
            format!("Не знаю такого разговора: {session:?}")
        }
    } else if SystemTime::now() > SystemTime::UNIX_EPOCH && message.contains("ночью") {
        "Операторы работают с 9 до 21, мы ответим утром".into()
    } else {
        format!("Здравствуйте! Я бот поддержки. Вы написали: {message}")
    }
}

async fn bot(Json(body): Json<serde_json::Value>) -> Json<serde_json::Value> {
    let session = body.get("session").and_then(|s| s.as_str()).unwrap_or("");
    let session = if session.is_empty() { "s-42" } else { session };
    Json(serde_json::json!({
        "session": session,
        "reply": answer(&text_of(&body), session),
    }))
}

async fn silent() -> &'static str {
    tokio::time::sleep(Duration::from_secs(60)).await;
    "too late"
}

async fn slow(Json(body): Json<serde_json::Value>) -> Json<serde_json::Value> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    Json(serde_json::json!({ "reply": answer(&text_of(&body), "") }))
}

async fn wrong() -> Json<serde_json::Value> {
    let long = "Сервис временно недоступен. ".repeat(20);
    Json(serde_json::json!({ "reply": long }))
}

async fn accepted(State(bot): State<Bot>) -> Json<serde_json::Value> {
    bot.polls.store(0, Ordering::SeqCst);
    Json(serde_json::json!({ "conversation": { "id": "c-7" }, "reply": null }))
}

/// The reply appears on the third poll, and only for the right conversation.
async fn poll(
    State(bot): State<Bot>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<serde_json::Value> {
    let n = bot.polls.fetch_add(1, Ordering::SeqCst);
    let ready = n >= 2 && q.get("conversation").map(String::as_str) == Some("c-7");
    Json(serde_json::json!({
        "messages": if ready { vec![serde_json::json!({"text": "Оператор Анна на связи"})] } else { vec![] }
    }))
}

async fn ws(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(Message::Text(text))) = socket.recv().await {
            // A typing indicator first, as real widgets do: it has no text and is not the reply.
            let _ = socket
                .send(Message::text(r#"{"type":"typing"}"#.to_string()))
                .await;
            let reply = serde_json::json!({"type": "message", "session": "s-42", "text": answer(text.as_str(), "s-42")});
            let _ = socket.send(Message::text(reply.to_string())).await;
        }
    })
}

async fn ws_silent(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(_)) = socket.recv().await {}
    })
}

/// A chat widget whose script answers 300 ms after a message is sent, unless `?silent`.
const WIDGET: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>Чат</title></head><body>
<input id="msg"><button id="send">Отправить</button><div class="reply"></div>
<script>
document.getElementById('send').addEventListener('click', function () {
  var text = document.getElementById('msg').value;
  if (location.search.indexOf('silent') >= 0) { return; }
  setTimeout(function () {
    document.querySelector('.reply').textContent = 'Здравствуйте! Я бот поддержки. Вы написали: ' + text;
  }, 300);
});
</script></body></html>"#;

async fn run(yaml: &str) -> RunReport {
    let report = common::run_once(yaml).await;
    for o in &report.observations {
        if let Observation::ChatFirstResponse(d) = o {
            println!(
                "first response time of {}: {} ms",
                report.check,
                d.as_millis()
            );
        }
    }
    report
}

fn check(addr: SocketAddr, via: &str, path: &str, rest: &str) -> String {
    let scheme = if via == "websocket" { "ws" } else { "http" };
    format!(
        "checks:\n  - name: chat\n    kind: chat\n    channel: chat\n    retries: 0\n    timeout: 10s\n    via: {via}\n    url: \"{scheme}://{addr}{path}\"\n{rest}"
    )
}

#[tokio::test]
async fn an_http_bot_that_answers_in_time_passes_and_its_first_response_is_measured() {
    let addr = start_bot().await;
    let report = run(&check(
        addr,
        "http",
        "/bot",
        "    reply_at: /reply\n    expect: { reply: \"(?i)здравствуйте.*{{token}}\", within: 2s }\n",
    ))
    .await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert!(
        report
            .observations
            .iter()
            .any(|o| matches!(o, Observation::ChatFirstResponse(d) if *d < Duration::from_secs(2)))
    );
}

#[tokio::test]
async fn a_websocket_bot_that_answers_in_time_passes() {
    let addr = start_bot().await;
    let report = run(&check(
        addr,
        "websocket",
        "/ws",
        "    reply_at: /text\n    expect: { reply: \"Я бот поддержки.*Automated test sw-chat-\", within: 2s }\n",
    ))
    .await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    let phases: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(phases, ["connect", "send", "reply"]);
}

#[tokio::test]
async fn a_bot_that_stops_answering_fails_with_no_reply() {
    let addr = start_bot().await;
    for (via, path) in [("http", "/silent"), ("websocket", "/ws-silent")] {
        let started = std::time::Instant::now();
        // A turn listens until shortly before the run's timeout, to tell a late bot from a silent
        // one; a silent bot therefore costs about the timeout, and never more.
        let yaml = check(
            addr,
            via,
            path,
            "    reply_at: /reply\n    expect: { within: 1s }\n",
        )
        .replace("timeout: 10s", "timeout: 3s");
        let report = run(&yaml).await;
        let failure = report.failure.expect("a silent bot fails");
        assert_eq!(
            failure.kind,
            FailureKind::NoReply,
            "{via}: {}",
            failure.message
        );
        assert_eq!(failure.message, "no reply within 1s", "{via}");
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{via}: waited past the run's timeout"
        );
    }
}

#[tokio::test]
async fn a_slow_bot_is_told_from_a_silent_one() {
    let addr = start_bot().await;
    let report = run(&check(
        addr,
        "http",
        "/slow",
        "    reply_at: /reply\n    expect: { within: 1s }\n",
    ))
    .await;
    let failure = report.failure.expect("2 s is over 1 s");
    assert_eq!(failure.kind, FailureKind::SlowReply, "{}", failure.message);
    assert!(
        failure.message.starts_with("replied after 2.")
            && failure.message.ends_with(", later than within 1s"),
        "{}",
        failure.message
    );
    // The late reply is still shown, and its time measured.
    assert!(
        report.details.iter().any(|d| d.contains("Вы написали")),
        "{:?}",
        report.details
    );
    assert!(
        report.observations.iter().any(
            |o| matches!(o, Observation::ChatFirstResponse(d) if *d >= Duration::from_secs(2))
        ),
        "{:?}",
        report.observations
    );
    // Given the time, the same bot passes.
    let report = run(&check(
        addr,
        "http",
        "/slow",
        "    reply_at: /reply\n    expect: { within: 4s }\n",
    ))
    .await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
}

#[tokio::test]
async fn a_wrong_reply_fails_quoting_what_came() {
    let addr = start_bot().await;
    let report = run(&check(
        addr,
        "http",
        "/wrong",
        "    reply_at: /reply\n    expect: { reply: \"(?i)здравствуйте\", within: 2s }\n",
    ))
    .await;
    let failure = report.failure.expect("wrong reply");
    assert_eq!(failure.kind, FailureKind::Expectation);
    let quoted: String = "Сервис временно недоступен. "
        .repeat(20)
        .chars()
        .take(200)
        .collect();
    assert_eq!(
        failure.message,
        format!("reply does not match /(?i)здравствуйте/: \"{quoted}…\"")
    );
    // Over a WebSocket the bot may still be typing: the check listens until `within`, then
    // quotes the last reply it heard.
    let report = run(&check(
        addr,
        "websocket",
        "/ws",
        "    reply_at: /text\n    message: \"{{token}}\"\n    expect: { reply: \"номер заказа\", within: 1s }\n",
    ))
    .await;
    let failure = report.failure.expect("wrong reply");
    assert_eq!(failure.kind, FailureKind::Expectation);
    assert!(
        failure.message.starts_with(
            "reply does not match /номер заказа/: \"Здравствуйте! Я бот поддержки. Вы написали: sw-chat-"
        ),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_multi_turn_script_carries_the_session() {
    let addr = start_bot().await;
    let script = "    reply_at: /reply\n    session_at: /session\n    expect: { within: 2s }\n    script:\n      - { send: \"Автоматическая проверка {{token}}: статус заказа\", expect: \"номер заказа\" }\n      - { send: \"12345\", expect: \"Заказ 12345: передан\" }\n";
    for (via, path, reply_at) in [("http", "/bot", "/reply"), ("websocket", "/ws", "/text")] {
        let yaml = check(addr, via, path, &script.replace("/reply", reply_at));
        let report = run(&yaml).await;
        assert_eq!(
            report.result,
            RunResult::Success,
            "{via}: {:?}",
            report.failure
        );
        assert!(
            report
                .details
                .iter()
                .any(|d| d.contains("turn 2: reply: \"Заказ 12345")),
            "{via}: {:?}",
            report.details
        );
    }
}

#[tokio::test]
async fn a_reply_that_comes_later_is_found_by_polling() {
    let addr = start_bot().await;
    let report = run(&check(
        addr,
        "http",
        "/async",
        &format!(
            "    session_at: /conversation/id\n    reply_at: /messages\n    poll: {{ url: \"http://{addr}/poll?conversation={{{{session}}}}\", interval: 100ms }}\n    expect: {{ reply: Анна, within: 3s }}\n"
        ),
    ))
    .await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
}

const HOURS: &str = "    reply_at: /reply\n    message: \"Автоматическая проверка {{token}}, пишу ночью\"\n    active_hours: \"Mon-Fri 09:00-21:00 Europe/Moscow\"\n    expect: { reply: \"(?i)бот поддержки\", within: 2s }\n    outside_hours: { reply: \"(?i)ответим утром\", within: 2s }\n";

fn at(rfc3339: &str) -> SystemTime {
    let secs: i64 = match rfc3339 {
        // 2026-11-23 is a Monday; Moscow is UTC+3.
        "monday 12:00 msk" => 1_795_424_400,
        "monday 23:00 msk" => 1_795_464_000,
        _ => panic!("unknown time"),
    };
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
}

#[tokio::test]
async fn active_hours_switch_the_expectations_with_an_injected_clock() {
    let addr = start_bot().await;
    let prepared = common::prepare(&check(addr, "http", "/bot", HOURS));
    let CheckSpec::Chat(spec) = &prepared.checks[0].check.spec else {
        panic!("a chat check");
    };
    let day = spec.plan(at("monday 12:00 msk"));
    assert!(!day.outside_hours);
    assert_eq!(
        day.turns[0].1.map(|p| p.as_str()),
        Some("(?i)бот поддержки")
    );
    let night = spec.plan(at("monday 23:00 msk"));
    assert!(night.outside_hours);
    assert_eq!(
        night.turns[0].1.map(|p| p.as_str()),
        Some("(?i)ответим утром")
    );

    // The bot auto-replies to night messages: at night that passes, by day it is wrong.
    let probe = &prepared.checks[0].probe;
    let mut ctx = RunContext::new(Arc::from("chat"), "sw-chat-1-x".into());
    ctx.started_at = at("monday 23:00 msk");
    let outcome = probe.run(&ctx).await;
    assert!(outcome.passed(), "{:?}", outcome.failure);
    assert_eq!(
        outcome.details[0],
        "outside active hours: expecting the auto-reply"
    );
    ctx.started_at = at("monday 12:00 msk");
    let outcome = probe.run(&ctx).await;
    let failure = outcome.failure.expect("the auto-reply is wrong by day");
    assert!(
        failure
            .message
            .starts_with("reply does not match /(?i)бот поддержки/"),
        "{}",
        failure.message
    );
}

#[test]
fn bad_active_hours_are_located_and_precise() {
    let yaml = "checks:\n  - name: chat\n    kind: chat\n    channel: chat\n    via: http\n    url: http://127.0.0.1:1/bot\n    active_hours: \"Mon-Fri 09:00-21:00 Europe/Moskva\"\n    outside_hours: { reply: x }\n";
    let errors = supportwatch::config::load_sources(&[(
        std::path::PathBuf::from("chat.yaml"),
        yaml.to_string(),
    )])
    .expect_err("unknown zone");
    let text = errors.to_string();
    assert!(
        // Errors inside a kind-specific block are located at the check (see config/parse.rs).
        text.contains("chat.yaml:2:5: check \"chat\": active_hours `Mon-Fri 09:00-21:00 Europe/Moskva`: unknown time zone `Europe/Moskva`; use an IANA name like Europe/Moscow"),
        "{text}"
    );
    let yaml = yaml
        .replace("Europe/Moskva", "Europe/Moscow")
        .replace("    outside_hours: { reply: x }\n", "");
    let text = supportwatch::config::load_sources(&[(std::path::PathBuf::from("chat.yaml"), yaml)])
        .expect_err("outside_hours missing")
        .to_string();
    assert!(
        text.contains("check \"chat\": `active_hours` needs `outside_hours`"),
        "{text}"
    );
}

#[tokio::test]
async fn a_chat_widget_in_a_browser_answers_or_fails_at_its_step() {
    let addr = start_bot().await;
    let steps = "    reply_in: \".reply\"\n    steps:\n      - fill: { selector: \"#msg\", text: \"Automated test {{token}}, please ignore\" }\n      - click: \"#send\"\n    expect: { reply: \"бот поддержки.*sw-chat-\", within: 3s }\n";
    let report = run(&check(addr, "browser", "/widget", steps)).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    let first = report.observations.iter().find_map(|o| match o {
        Observation::ChatFirstResponse(d) => Some(*d),
        _ => None,
    });
    assert!(
        first.is_some_and(|d| d >= Duration::from_millis(250) && d < Duration::from_secs(3)),
        "{first:?}"
    );
    let report = run(&check(addr, "browser", "/widget?silent=1", steps)).await;
    let failure = report.failure.expect("a silent widget fails");
    assert_eq!(failure.kind, FailureKind::NoReply, "{}", failure.message);
    assert_eq!(failure.message, "no reply within 3s");
}

#[tokio::test]
async fn a_refused_websocket_is_a_connect_failure_that_hides_the_url_secret() {
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let yaml = format!(
        "checks:\n  - name: chat\n    kind: chat\n    channel: chat\n    retries: 0\n    via: websocket\n    url: \"ws://127.0.0.1:{port}/ws?key=${{CHAT_KEY}}\"\n"
    );
    let prepared = common::prepare_with(&yaml, &[("CHAT_KEY", "hunter2-secret")]);
    let report = supportwatch::runner::execute(&prepared.checks[0], 1, None).await;
    let failure = report.failure.expect("nothing listens");
    assert_eq!(failure.kind, FailureKind::Connect, "{}", failure.message);
    assert!(!failure.message.contains("hunter2"), "{}", failure.message);
    assert!(
        failure.message.contains("${CHAT_KEY}"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_run_timeout_shorter_than_within_is_the_runners_timeout_naming_the_phase() {
    let addr = start_bot().await;
    let yaml = check(addr, "websocket", "/ws-silent", "    reply_at: /text\n")
        .replace("timeout: 10s", "timeout: 1s");
    let started = std::time::Instant::now();
    let report = run(&yaml).await;
    let failure = report.failure.expect("the run times out");
    println!("hang: {}", failure.message);
    assert_eq!(failure.kind, FailureKind::Timeout, "{}", failure.message);
    assert!(failure.message.contains("reply"), "{}", failure.message);
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A WebSocket bot behind a certificate the check does not trust fails as `tls`, like `http`.
#[tokio::test]
async fn an_untrusted_websocket_certificate_is_a_tls_failure() {
    use supportwatch::demo::pki::{Validity, self_signed};
    supportwatch::tlsconf::install_crypto_provider();
    let cert = self_signed(&["127.0.0.1"], Validity::days(30)).expect("certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config(&[]).expect("tls config"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    // The server side of each handshake; the client refuses the certificate.
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    let yaml = format!(
        "checks:\n  - name: chat\n    kind: chat\n    channel: chat\n    retries: 0\n    via: websocket\n    url: \"wss://{addr}/ws\"\n"
    );
    let report = run(&yaml).await;
    let failure = report.failure.expect("the certificate is not trusted");
    assert_eq!(failure.kind, FailureKind::Tls, "{}", failure.message);
    assert!(
        failure.message.to_lowercase().contains("certificate"),
        "{}",
        failure.message
    );
}
