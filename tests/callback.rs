//! `callback` checks end to end on loopback: a test shop whose callback backend posts a signed
//! webhook to supportwatch's real receiver (the axum server), or drops the request, or signs it
//! wrongly; the receiver's bounds (413, 404, 401); and the `http_poll` target.

mod common;

use axum::Router;
use axum::extract::{Form, State};
use axum::response::Html;
use axum::routing::get;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use supportwatch::hooks::Hooks;
use supportwatch::outcome::FailureKind;
use supportwatch::outcome::RunReport;
use supportwatch::runner;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "test-hook-secret";
/// Differs from [`SECRET`] in its last character only.
const WRONG_URL_SECRET: &str = "test-hook-secreT";

/// What the shop's backend does with a callback request.
#[derive(Clone, Copy, PartialEq)]
enum Backend {
    /// Posts the request to the hook, correctly signed.
    Deliver,
    /// Accepts the form and forgets the request.
    Drop,
    /// Posts it with a wrong signature.
    WrongSignature,
    /// Posts unsigned JSON to the hook URL with the secret as the last segment, as a CRM that
    /// only lets an integrator set a URL does.
    UrlSecret,
    /// Like `UrlSecret`, with a wrong secret in the URL.
    WrongUrlSecret,
}

#[derive(Clone)]
struct Shop {
    backend: Backend,
    hook_url: String,
    /// Comments of the requests received, listed by `GET /api/callbacks` (for http_poll).
    queue: Arc<Mutex<Vec<String>>>,
    /// Status codes the hook answered.
    hook_answers: Arc<Mutex<Vec<u16>>>,
    /// The phone numbers the form was filled with, in order.
    phones: Arc<Mutex<Vec<String>>>,
}

async fn page() -> Html<&'static str> {
    Html(
        r#"<html><body><form id="callback" method="post" action="/callback">
<input type="hidden" name="csrf" value="abc123">
<input name="phone" required><input name="comment">
<button type="submit">Call me back</button></form></body></html>"#,
    )
}

async fn submit(State(shop): State<Shop>, Form(form): Form<HashMap<String, String>>) -> String {
    if form.get("csrf").map(String::as_str) != Some("abc123") {
        return "csrf mismatch".into();
    }
    let phone = form.get("phone").cloned().unwrap_or_default();
    let comment = form.get("comment").cloned().unwrap_or_default();
    shop.phones
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(phone.clone());
    shop.queue
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(comment.clone());
    if shop.backend != Backend::Drop {
        // The CRM calls back a little later, as a real one would.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let body = serde_json::json!({ "phone": phone, "comment": comment }).to_string();
            let signature = match shop.backend {
                Backend::WrongSignature => {
                    supportwatch::hooks::sign("not-the-secret", body.as_bytes())
                }
                _ => supportwatch::hooks::sign(SECRET, body.as_bytes()),
            };
            let client = reqwest::Client::new();
            let request = match shop.backend {
                Backend::UrlSecret => client.post(format!("{}/{SECRET}", shop.hook_url)),
                Backend::WrongUrlSecret => {
                    client.post(format!("{}/{WRONG_URL_SECRET}", shop.hook_url))
                }
                _ => client
                    .post(&shop.hook_url)
                    .header("x-signature", format!("sha256={signature}")),
            };
            let answer = request
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            if let Ok(a) = answer {
                shop.hook_answers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(a.status().as_u16());
            }
        });
    }
    "Thank you! We will call you back tomorrow at 9:00.".into()
}

async fn api(State(shop): State<Shop>) -> axum::Json<serde_json::Value> {
    let items = shop.queue.lock().unwrap_or_else(|e| e.into_inner()).clone();
    axum::Json(
        serde_json::json!({ "items": items.iter().map(|c| serde_json::json!({"comment": c})).collect::<Vec<_>>() }),
    )
}

async fn start_shop(backend: Backend, hook_url: String) -> (SocketAddr, Shop) {
    let shop = Shop {
        backend,
        hook_url,
        queue: Arc::default(),
        hook_answers: Arc::default(),
        phones: Arc::default(),
    };
    let app = Router::new()
        .route("/callback", get(page).post(submit))
        .route("/api/callbacks", get(api))
        .with_state(shop.clone());
    let addr = common::serve(app).await;
    (addr, shop)
}

/// supportwatch's own web server with a fresh hook registry.
async fn start_receiver() -> (SocketAddr, Arc<Hooks>, CancellationToken) {
    let hooks = Arc::new(Hooks::default());
    let (reload, _rx) = tokio::sync::mpsc::channel(1);
    let state = supportwatch::server::AppState {
        metrics: Arc::new(supportwatch::metrics::Metrics::new()),
        reload,
        hooks: hooks.clone(),
        alert_health: None,
        status: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("receiver addr");
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = supportwatch::server::serve(listener, state, s).await;
    });
    (addr, hooks, stop)
}

/// The `callback` check of `shop`'s form, run once: hook `crm` declared with its secret and
/// `hook_keys` (more flow-style keys, each after a comma), the check with `keys` (YAML lines
/// indented by four spaces, `expect` and `deliver` among them).
fn callback_yaml(shop: SocketAddr, hook_keys: &str, keys: &str) -> String {
    format!(
        r#"
hooks:
  crm: {{ secret: "${{CRM_HOOK_SECRET}}"{hook_keys} }}
checks:
  - name: callback
    kind: callback
    url: "http://{shop}/callback"
    form: "form#callback"
    fields: {{ phone: "+7 900 000-00-00", comment: "Automated test {{{{token}}}}, please do not call" }}
{keys}    timeout: 5s
    retries: 0
"#
    )
}

/// The callback check with a signed hook `crm`, delivering to `deliver`.
fn yaml(shop: SocketAddr, deliver: &str) -> String {
    callback_yaml(
        shop,
        ", signature: hmac-sha256, header: X-Signature",
        &format!(
            "    expect: {{ status: 200, body: \"(?i)call you back (today|tomorrow at 9:00)\" }}\n    deliver: {deliver}\n"
        ),
    )
}

async fn run(yaml: &str, hooks: &Arc<Hooks>) -> RunReport {
    run_files(&[("test.yaml", yaml)], hooks).await
}

/// Like [`run`], with the config in several files (the check is the first check of them all).
async fn run_files(files: &[(&str, &str)], hooks: &Arc<Hooks>) -> RunReport {
    supportwatch::tlsconf::install_crypto_provider();
    let vars = HashMap::from([("CRM_HOOK_SECRET".to_string(), SECRET.to_string())]);
    let sources: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(name, text)| (PathBuf::from(name), text.to_string()))
        .collect();
    let config =
        supportwatch::value::with_overlay(&vars, || supportwatch::config::load_sources(&sources))
            .unwrap_or_else(|e| panic!("config should load:\n{e}"));
    hooks.configure(&config.hooks);
    let prepared = supportwatch::assemble::prepare_with(config, hooks.clone())
        .unwrap_or_else(|e| panic!("config should prepare:\n{e}"));
    runner::execute(&prepared.checks[0], 1, None).await
}

/// A shop whose backend handles callback requests as `backend` says, posting to hook `crm` of
/// supportwatch's own receiver; the receiver's hook registry.
async fn shop_and_receiver(backend: Backend) -> (SocketAddr, Shop, Arc<Hooks>) {
    // The receiver serves until the test process ends; its stop token is never used.
    let (receiver, hooks, _stop) = start_receiver().await;
    let (shop, state) = start_shop(backend, format!("http://{receiver}/hooks/crm")).await;
    (shop, state, hooks)
}

/// Asserts that `report` passed with a delivery proven; prints and returns the delivery latency
/// (`via` names the way it was proven in the message).
fn passed_with_latency(report: &RunReport, via: &str) -> Duration {
    assert!(
        report.failure.is_none(),
        "{:?} {:?}",
        report.failure,
        report.details
    );
    let latency = common::delivery_latency(report).expect("delivery latency recorded");
    println!("measured {via} delivery latency: {latency:?}");
    latency
}

/// The hook's answers to the backend, once it has read them (the run may finish first).
async fn hook_answers(shop: &Shop) -> Vec<u16> {
    for _ in 0..100 {
        let answers = shop
            .hook_answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !answers.is_empty() {
            return answers;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_from_the_backend_proves_delivery() {
    let (shop, state, hooks) = shop_and_receiver(Backend::Deliver).await;
    let report = run(&yaml(shop, "{ webhook: crm, within: 5s }"), &hooks).await;
    let latency = passed_with_latency(&report, "webhook");
    assert_eq!(report.channel, "callback");
    assert_eq!(report.kind, "callback");
    assert!(latency < Duration::from_secs(5));
    assert_eq!(hook_answers(&state).await, vec![200]);
    assert!(report.phases.iter().any(|p| p.name == "deliver"));
}

/// `{{phone.NAME.number}}` fills a field with the number of an account declared in another
/// file; the shop receives that number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_number_template_fills_the_form_with_the_account_number() {
    let (shop, state, hooks) = shop_and_receiver(Backend::Deliver).await;
    let check = yaml(shop, "{ webhook: crm, within: 5s }")
        .replace("\"+7 900 000-00-00\"", "\"{{phone.our-line.number}}\"");
    assert!(check.contains("{{phone.our-line.number}}"), "{check}");
    let phones = "phones:\n  our-line: { proxy: \"sip:127.0.0.1:5060\", user: \"79005550100\", number: \"+7 900 555-01-00\" }\n";
    let report = run_files(
        &[("a-checks.yaml", &check), ("b-phones.yaml", phones)],
        &hooks,
    )
    .await;
    passed_with_latency(&report, "webhook");
    let received = state
        .phones
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert_eq!(received, vec!["+7 900 555-01-00".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_request_fails_as_not_delivered() {
    let (shop, _, hooks) = shop_and_receiver(Backend::Drop).await;
    let report = run(
        &yaml(shop, "{ webhook: crm, within: 500ms, late_window: 100ms }"),
        &hooks,
    )
    .await;
    let failure = report.failure.expect("must fail");
    assert_eq!(failure.kind, FailureKind::NotDelivered);
    assert_eq!(failure.message, "not delivered within 500ms (webhook crm)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrongly_signed_webhook_is_refused_and_does_not_count() {
    let (shop, state, hooks) = shop_and_receiver(Backend::WrongSignature).await;
    let report = run(
        &yaml(shop, "{ webhook: crm, within: 800ms, late_window: 100ms }"),
        &hooks,
    )
    .await;
    assert_eq!(hook_answers(&state).await, vec![401]);
    let failure = report.failure.expect("a forged hook must not count");
    assert_eq!(failure.kind, FailureKind::NotDelivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_refuses_oversized_unknown_and_unsigned_requests() {
    let (receiver, hooks, _stop) = start_receiver().await;
    hooks.configure(
        &supportwatch::value::with_overlay(
            &HashMap::from([("S".to_string(), SECRET.to_string())]),
            || {
                supportwatch::config::load_sources(&[(
                    PathBuf::from("t.yaml"),
                    "hooks: { crm: { secret: \"${S}\", signature: header, header: X-Hook-Key } }\nchecks: [ { name: x, kind: http, url: \"http://127.0.0.1:1/\" } ]\n".into(),
                )])
            },
        )
        .expect("config loads")
        .hooks,
    );
    supportwatch::tlsconf::install_crypto_provider();
    let client = reqwest::Client::new();
    let url = format!("http://{receiver}/hooks/crm");
    let status = |r: reqwest::Result<reqwest::Response>| r.expect("answer").status().as_u16();
    let big = vec![b'a'; 64 * 1024 + 1];
    assert_eq!(
        status(
            client
                .post(&url)
                .header("x-hook-key", SECRET)
                .body(big)
                .send()
                .await
        ),
        413
    );
    assert_eq!(
        status(
            client
                .post(format!("http://{receiver}/hooks/nope"))
                .header("x-hook-key", SECRET)
                .body("x")
                .send()
                .await
        ),
        404
    );
    assert_eq!(status(client.post(&url).body("x").send().await), 401);
    assert_eq!(
        status(
            client
                .post(&url)
                .header("x-hook-key", "guess")
                .body("x")
                .send()
                .await
        ),
        401
    );
    assert_eq!(
        status(
            client
                .post(&url)
                .header("x-hook-key", SECRET)
                .body("sw-x-1795430400-0a1b2c3d")
                .send()
                .await
        ),
        200
    );
    // Forged requests are refused by their signature and never spend the rate limit (burst
    // 50) of signed ones; a flood of signed requests is still cut off by it.
    for _ in 0..60 {
        assert_eq!(status(client.post(&url).body("x").send().await), 401);
    }
    let mut limited = 0;
    for _ in 0..60 {
        let answer = client
            .post(&url)
            .header("x-hook-key", SECRET)
            .body("x")
            .send()
            .await;
        if status(answer) == 429 {
            limited += 1;
        }
    }
    assert!(
        limited > 0,
        "60 signed requests at once must hit the rate limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_poll_passes_when_the_api_lists_the_token() {
    let (shop, _, hooks) = shop_and_receiver(Backend::Drop).await;
    let deliver = format!(
        "{{ http_poll: {{ url: \"http://{shop}/api/callbacks?q={{{{token}}}}\", interval: 100ms, json_pointer: /items/0/comment }}, within: 3s }}"
    );
    let report = run(&yaml(shop, &deliver), &hooks).await;
    passed_with_latency(&report, "http_poll");
}

#[tokio::test]
async fn deliver_names_exactly_one_known_target() {
    let vars = HashMap::from([("CRM_HOOK_SECRET".to_string(), SECRET.to_string())]);
    let shop: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let load = |y: String| {
        supportwatch::value::with_overlay(&vars, || {
            supportwatch::config::load_sources(&[(PathBuf::from("test.yaml"), y)])
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    let unknown = load(yaml(shop, "{ webhook: crn }"));
    assert!(
        unknown.contains("deliver: unknown webhook `crn` (declared: crm)"),
        "{unknown}"
    );
    let both = load(yaml(shop, "{ webhook: crm, mailbox: support }"));
    assert!(
        both.contains("deliver: set only one of mailbox, webhook, http_poll and call"),
        "{both}"
    );
    let none = load(yaml(shop, "{ within: 1m }"));
    assert!(
        none.contains("deliver: name where the token must arrive"),
        "{none}"
    );
}

/// The demo's callback form: its CRM posts to the daemon's receiver, and `--break callback`
/// makes it drop the request silently.
async fn demo_callback_result(
    broken: std::collections::BTreeSet<supportwatch::demo::Break>,
) -> Arc<RunReport> {
    supportwatch::tlsconf::install_crypto_provider();
    let (shop, daemon) = supportwatch::demo::start("127.0.0.1:0".parse().expect("addr"), broken)
        .await
        .expect("demo starts");
    let report = common::daemon::next_report_of(&daemon, "demo-callback").await;
    daemon.stop().await;
    drop(shop);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_callback_passes_and_break_callback_makes_it_fail() {
    use supportwatch::demo::Break;
    let passing = demo_callback_result(Default::default()).await;
    passed_with_latency(&passing, "demo webhook");
    let broken = demo_callback_result([Break::Callback].into()).await;
    let failure = broken
        .failure
        .clone()
        .expect("must fail with --break callback");
    assert_eq!(
        failure.message,
        "not delivered within 8s (webhook demo-crm)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_poll_that_never_lists_the_token_fails_and_says_what_it_saw() {
    let (shop, _, hooks) = shop_and_receiver(Backend::Drop).await;
    let deliver = format!(
        "{{ http_poll: {{ url: \"http://{shop}/api/callbacks?key=k\", interval: 100ms, match: \"never-there\" }}, within: 400ms, late_window: 100ms }}"
    );
    let report = run(&yaml(shop, &deliver), &hooks).await;
    let failure = report.failure.expect("must fail");
    assert_eq!(failure.kind, FailureKind::NotDelivered);
    assert_eq!(
        failure.message,
        format!(
            "not delivered within 400ms (http_poll http://{shop}/api/callbacks?…; last look: token not listed)"
        )
    );
}

#[test]
fn hook_secrets_never_show_in_config_output() {
    let vars = HashMap::from([("CRM_HOOK_SECRET".to_string(), SECRET.to_string())]);
    let shop: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let config = supportwatch::value::with_overlay(&vars, || {
        supportwatch::config::load_sources(&[(
            PathBuf::from("test.yaml"),
            yaml(shop, "{ webhook: crm }"),
        )])
    })
    .expect("config loads");
    let shown = format!("{config:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("${CRM_HOOK_SECRET}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_hooks_and_a_reload_swaps_their_secrets() {
    let dir = common::daemon::ConfigDir::new();
    let write = |secret: &str| {
        dir.write(
            "hooks.yaml",
            &format!(
                "hooks: {{ crm: {{ secret: \"{secret}\", signature: header }} }}\nchecks: [ {{ name: x, kind: http, url: \"http://127.0.0.1:9/\", interval: 1h }} ]\n"
            ),
        );
    };
    write("first-secret");
    let daemon = dir.start().await;
    let url = daemon.url("/hooks/crm");
    let post = |key: &'static str| {
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .header("x-signature", key)
                .body("sw-x-1795430400-0a1b2c3d")
                .send()
                .await
                .expect("answer")
                .status()
                .as_u16()
        }
    };
    assert_eq!(post("first-secret").await, 200);
    write("second-secret");
    daemon.reload().await.expect("reload accepted");
    assert_eq!(post("first-secret").await, 401);
    assert_eq!(post("second-secret").await, 200);
    daemon.stop().await;
}

/// `HH:MM` in UTC, `offset` seconds from now.
fn utc_hhmm(offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let day = (now + offset).rem_euclid(86_400);
    format!("{:02}:{:02}", day / 3600, (day % 3600) / 60)
}

fn off_hours_yaml(shop: SocketAddr, active_hours: &str) -> String {
    callback_yaml(
        shop,
        "",
        &format!(
            r#"    expect: {{ status: 200, body: "(?i)call you back within 15 minutes" }}
    active_hours: "{active_hours}"
    outside_hours: {{ status: 200, body: "(?i)call you back tomorrow at \\d{{1,2}}:\\d{{2}}" }}
    deliver: {{ webhook: crm, within: 5s }}
"#
        ),
    )
}

/// The shop answers "we will call you back tomorrow at 9:00". Outside the active hours that is
/// the acknowledgement expected; inside them it is a failure (the request was silently deferred).
/// The hours are placed around the real clock, so the test never depends on the time of day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_active_hours_the_acknowledgement_must_propose_a_time() {
    let (shop, _, hooks) = shop_and_receiver(Backend::Deliver).await;

    let closed_now = format!("daily {}-{} UTC", utc_hhmm(6 * 3600), utc_hhmm(7 * 3600));
    let report = run(&off_hours_yaml(shop, &closed_now), &hooks).await;
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert!(
        report
            .details
            .iter()
            .any(|d| d == "outside active hours: expecting the off-hours acknowledgement"),
        "{:?}",
        report.details
    );

    let open_now = format!("daily {}-{} UTC", utc_hhmm(-3600), utc_hhmm(3600));
    let report = run(&off_hours_yaml(shop, &open_now), &hooks).await;
    let failure = report
        .failure
        .expect("in hours, 'tomorrow' is not an answer");
    assert_eq!(
        failure.kind,
        FailureKind::Expectation,
        "{}",
        failure.message
    );
    assert!(
        !report
            .details
            .iter()
            .any(|d| d.starts_with("outside active hours")),
        "{:?}",
        report.details
    );
}

#[test]
fn active_hours_without_outside_hours_is_refused() {
    let yaml = "checks:\n  - name: cb\n    kind: callback\n    url: \"http://127.0.0.1:1/\"\n    fields: { c: \"{{token}}\" }\n    active_hours: \"Mon-Fri 09:00-21:00 Europe/Moscow\"\n    deliver: { http_poll: { url: \"http://127.0.0.1:1/{{token}}\" } }\n";
    let errors =
        supportwatch::config::load_sources(&[(PathBuf::from("cb.yaml"), yaml.to_string())])
            .expect_err("refused")
            .to_string();
    assert!(
        errors.contains("`active_hours` needs `outside_hours`"),
        "{errors}"
    );
}

/// The callback check with hook `crm` signed by its URL, delivering within `within`.
fn url_yaml(shop: SocketAddr, within: &str) -> String {
    callback_yaml(
        shop,
        ", signature: url",
        &format!(
            "    expect: {{ status: 200, body: \"(?i)call you back\" }}\n    deliver: {{ webhook: crm, within: {within}, late_window: 100ms }}\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_that_can_only_set_a_url_proves_delivery_with_the_secret_in_the_path() {
    let (shop, state, hooks) = shop_and_receiver(Backend::UrlSecret).await;
    let report = run(&url_yaml(shop, "5s"), &hooks).await;
    passed_with_latency(&report, "url-signed webhook");
    assert_eq!(hook_answers(&state).await, vec![200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_in_the_url_is_refused_and_named_in_the_failure() {
    let (shop, state, hooks) = shop_and_receiver(Backend::WrongUrlSecret).await;
    let report = run(&url_yaml(shop, "1s"), &hooks).await;
    assert_eq!(hook_answers(&state).await, vec![401]);
    let failure = report
        .failure
        .clone()
        .expect("a wrong secret must not count");
    assert_eq!(failure.kind, FailureKind::NotDelivered);
    let prefix = "not delivered within 1s (webhook crm); the request to hook crm at ";
    let suffix = " UTC was refused: wrong secret in the URL";
    assert!(
        failure.message.starts_with(prefix) && failure.message.ends_with(suffix),
        "{}",
        failure.message
    );
    // Between them only the time of day, HH:MM:SS.
    let time = &failure.message[prefix.len()..failure.message.len() - suffix.len()];
    assert_eq!(time.len(), 8, "{time}");
    assert!(!failure.message.contains(SECRET), "{}", failure.message);
    let shown = format!("{report:?}");
    assert!(!shown.contains(SECRET) && !shown.contains(WRONG_URL_SECRET));
}

/// Runs the real `supportwatch check callback` on a config dir holding `yaml`, with the hook's
/// secret in the environment; returns the exit code and stdout + stderr.
async fn check_binary(yaml: String, extra: Vec<String>) -> (Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("shop.yaml"), yaml).expect("write config");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_supportwatch"))
            .args(["check", "callback", "--config"])
            .arg(dir.path())
            .args(&extra)
            .env("CRM_HOOK_SECRET", SECRET)
            .output()
            .expect("run supportwatch");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    })
    .await
    .expect("join")
}

/// `yaml` of the signed callback check, with `server.listen` at `listen`.
fn yaml_listening_at(shop: SocketAddr, listen: SocketAddr) -> String {
    format!(
        "server:\n  listen: \"{listen}\"\n{}",
        yaml(shop, "{ webhook: crm, within: 10s }")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_serves_hooks_on_its_listen_address_and_proves_the_webhook() {
    // The shop's CRM posts with reqwest, which needs the TLS provider even for plain HTTP.
    supportwatch::tlsconf::install_crypto_provider();
    // server.listen is held by another listener (as by a running daemon); `--listen` moves the
    // receiver to a free port, which the shop's CRM posts to.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr");
    let listen: SocketAddr = format!("127.0.0.1:{}", common::closed_port())
        .parse()
        .expect("addr");
    let (shop, state) = start_shop(Backend::Deliver, format!("http://{listen}/hooks/crm")).await;
    let (code, text) = check_binary(
        yaml_listening_at(shop, taken_addr),
        vec!["--listen".into(), listen.to_string()],
    )
    .await;
    assert_eq!(code, Some(0), "{text}");
    for needle in [
        &format!("serving /hooks/ on {listen} while waiting for webhook deliveries")[..],
        "webhook crm received the token",
        "1 passed, 0 failed",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    assert_eq!(hook_answers(&state).await, vec![200]);
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_with_its_hook_port_taken_exits_2_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr");
    let (shop, state) =
        start_shop(Backend::Deliver, format!("http://{taken_addr}/hooks/crm")).await;
    let started = std::time::Instant::now();
    let (code, text) = check_binary(yaml_listening_at(shop, taken_addr), Vec::new()).await;
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(&format!("cannot serve /hooks/ on {taken_addr}")),
        "{text}"
    );
    assert!(text.contains("--listen ADDR"), "{text}");
    // Refused before the check ran: nothing was submitted to the shop, no deadline waited out.
    assert!(
        state
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    );
    assert!(started.elapsed() < Duration::from_secs(8), "{text}");
    drop(taken);
}
