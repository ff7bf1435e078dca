//! Browser checks and TLS: a shop behind a private CA, trusted through the check's `ca_file` by
//! that check's chromium only; certificate errors (untrusted issuer, expired, wrong name) failing
//! the `open` step as `tls` with chromium's own error code; and `resolve:` sending chromium to a
//! host name that DNS does not know.
//!
//! The shop is a one-page HTTPS server on 127.0.0.1 with rcgen certificates; each test starts
//! its own chromedriver (through the check's `Browser`).

mod common;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::Html;
use axum::routing::get;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use supportwatch::demo::pki::{Authority, Issued, Validity};
use supportwatch::outcome::{FailureKind, RunReport, RunResult};
use supportwatch::runner;

/// Browser runs at once across this binary's tests (each starts a chromium; see tests/browser.rs).
static BROWSER_RUNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// What the page says; a check that reads it has loaded the real page, not an error page.
const GREETING: &str = "Магазин работает";

/// A chat widget whose bot answers in the page itself, a moment after the message is sent.
const WIDGET: &str = r#"<!doctype html><html><body>
<input id="msg"><button id="send">Send</button><div class="reply"></div>
<script>
document.getElementById("send").addEventListener("click", () => {
  setTimeout(() => {
    document.querySelector(".reply").textContent = "Здравствуйте, это бот поддержки";
  }, 100);
});
</script></body></html>"#;

/// A private CA, its certificate in a PEM file for `ca_file`, and a directory for evidence.
struct Pki {
    ca: Authority,
    ca_file: PathBuf,
    dir: tempfile::TempDir,
}

fn pki() -> Pki {
    supportwatch::tlsconf::install_crypto_provider();
    let ca = Authority::new("supportwatch private test CA").expect("a CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca.cert_pem).expect("write the CA");
    Pki { ca, ca_file, dir }
}

/// An HTTPS shop presenting `cert`, with the `Host` header of every request it served.
struct Shop {
    addr: SocketAddr,
    hosts: Arc<Mutex<Vec<String>>>,
    _stop: tokio_util::sync::DropGuard,
}

impl Shop {
    fn hosts(&self) -> Vec<String> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn https_shop(cert: &Issued) -> Shop {
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let seen = hosts.clone();
    let router = Router::new()
        .route("/widget", get(|| async { Html(WIDGET) }))
        .route(
            "/",
            get(move |headers: HeaderMap| {
                let seen = seen.clone();
                async move {
                    let host = headers
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    seen.lock().unwrap_or_else(|e| e.into_inner()).push(host);
                    Html(format!(
                        "<!doctype html><html><body><h1 id=\"hello\">{GREETING}</h1></body></html>"
                    ))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let config = cert.server_config(&[]).expect("server config");
    let stop = tokio_util::sync::CancellationToken::new();
    // The shop serves until the test drops its guard.
    tokio::spawn(supportwatch::demo::shop::serve_tls(
        listener,
        config,
        router,
        stop.clone(),
    ));
    Shop {
        addr,
        hosts,
        _stop: stop.drop_guard(),
    }
}

/// Runs a browser check once that opens `url` and reads the greeting; `keys` are more of its
/// keys (YAML lines indented by four spaces).
async fn open_and_read(pki: &Pki, url: &str, keys: &str) -> RunReport {
    let checks = format!(
        "  - name: private-shop\n    kind: browser\n    retries: 0\n    timeout: 60s\n    step_timeout: 15s\n{keys}    steps:\n      - open: \"{url}\"\n      - expect_text: {{ selector: \"#hello\", pattern: \"{GREETING}\" }}\n"
    );
    run(pki, &checks).await
}

/// Runs the first check of `checks` (YAML under `checks:`) once, evidence kept in the test's dir.
async fn run(pki: &Pki, checks: &str) -> RunReport {
    let yaml = format!(
        "browser:\n  artifacts: {{ dir: \"{}\" }}\nchecks:\n{checks}",
        pki.dir.path().join("artifacts").display()
    );
    let prepared = common::prepare(&yaml);
    let _turn = BROWSER_RUNS.acquire().await.expect("never closed");
    let started = Instant::now();
    let report = runner::execute(&prepared.checks[0], 1, None).await;
    eprintln!(
        "{}: {:?} in {:.2}s",
        report.check,
        report.result,
        started.elapsed().as_secs_f64()
    );
    report
}

fn ca_line(pki: &Pki) -> String {
    format!("    ca_file: \"{}\"\n", pki.ca_file.display())
}

fn phases(report: &RunReport) -> Vec<&str> {
    report.phases.iter().map(|p| p.name.as_str()).collect()
}

/// Asserts that the run failed at its `open` step as `tls`, naming chromium's `code`.
fn assert_tls_failure_at_open(report: &RunReport, url: &str, code: &str) {
    assert_eq!(report.result, RunResult::Failure, "{report:#?}");
    let failure = report.failure.as_ref().expect("a failure");
    assert_eq!(failure.kind, FailureKind::Tls, "{failure:?}");
    let expected = format!("step 1 (open {url}): the page did not load: {code}");
    assert!(
        failure.message.starts_with(&expected),
        "expected `{expected}…`, got {failure:?}"
    );
    assert_eq!(phases(report), ["session", "1_open", "artifacts"]);
}

#[tokio::test]
async fn a_private_ca_in_ca_file_is_trusted() {
    let pki = pki();
    let cert = pki
        .ca
        .issue(&["127.0.0.1"], Validity::days(90))
        .expect("leaf");
    let shop = https_shop(&cert).await;
    let url = format!("https://{}/", shop.addr);
    let report = open_and_read(&pki, &url, &ca_line(&pki)).await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    assert_eq!(phases(&report), ["session", "1_open", "2_expect_text"]);
    assert_eq!(shop.hosts(), [shop.addr.to_string()]);
}

#[tokio::test]
async fn without_ca_file_the_private_ca_is_a_tls_failure_at_open() {
    let pki = pki();
    let cert = pki
        .ca
        .issue(&["127.0.0.1"], Validity::days(90))
        .expect("leaf");
    let shop = https_shop(&cert).await;
    let url = format!("https://{}/", shop.addr);
    let report = open_and_read(&pki, &url, "").await;
    assert_tls_failure_at_open(&report, &url, "net::ERR_CERT_AUTHORITY_INVALID");
    let failure = report.failure.as_ref().expect("a failure");
    assert!(
        failure.message.contains("give it as `ca_file`"),
        "{failure:?}"
    );
    // chromium stopped at the certificate: the page itself was never asked for.
    assert!(shop.hosts().is_empty(), "{:?}", shop.hosts());
}

#[tokio::test]
async fn an_expired_certificate_is_a_tls_failure_even_from_a_trusted_ca() {
    let pki = pki();
    let cert = pki
        .ca
        .issue(&["127.0.0.1"], Validity::expired_days_ago(3))
        .expect("leaf");
    let shop = https_shop(&cert).await;
    let url = format!("https://{}/", shop.addr);
    let report = open_and_read(&pki, &url, &ca_line(&pki)).await;
    assert_tls_failure_at_open(&report, &url, "net::ERR_CERT_DATE_INVALID");
    assert!(shop.hosts().is_empty(), "{:?}", shop.hosts());
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_tls_failure() {
    let pki = pki();
    let cert = pki
        .ca
        .issue(&["other.invalid"], Validity::days(90))
        .expect("leaf");
    let shop = https_shop(&cert).await;
    let url = format!("https://{}/", shop.addr);
    let report = open_and_read(&pki, &url, &ca_line(&pki)).await;
    assert_tls_failure_at_open(&report, &url, "net::ERR_CERT_COMMON_NAME_INVALID");
}

#[tokio::test]
async fn resolve_sends_chromium_to_a_name_dns_does_not_know() {
    let pki = pki();
    let cert = pki
        .ca
        .issue(&["shop.invalid"], Validity::days(90))
        .expect("leaf");
    let shop = https_shop(&cert).await;
    let port = shop.addr.port();
    let url = format!("https://shop.invalid:{port}/");
    let keys = format!(
        "{}    resolve: {{ shop.invalid: 127.0.0.1 }}\n",
        ca_line(&pki)
    );
    let report = open_and_read(&pki, &url, &keys).await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    // The page was asked for under its real name, and its certificate verified for that name.
    assert_eq!(shop.hosts(), [format!("shop.invalid:{port}")]);
}

#[tokio::test]
async fn an_overrides_port_serves_urls_that_name_none() {
    let pki = pki();
    let cert = pki
        .ca
        .issue(&["shop.invalid"], Validity::days(90))
        .expect("leaf");
    let shop = https_shop(&cert).await;
    let keys = format!(
        "{}    resolve: {{ shop.invalid: \"{}\" }}\n",
        ca_line(&pki),
        shop.addr
    );
    let report = open_and_read(&pki, "https://shop.invalid/", &keys).await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    assert_eq!(shop.hosts(), ["shop.invalid"]);
}

#[tokio::test]
async fn without_resolve_the_name_does_not_resolve() {
    let pki = pki();
    let cert = pki
        .ca
        .issue(&["shop.invalid"], Validity::days(90))
        .expect("leaf");
    let shop = https_shop(&cert).await;
    let url = format!("https://shop.invalid:{}/", shop.addr.port());
    let report = open_and_read(&pki, &url, &ca_line(&pki)).await;
    assert_eq!(report.result, RunResult::Failure, "{report:#?}");
    let failure = report.failure.as_ref().expect("a failure");
    assert_eq!(failure.kind, FailureKind::Dns, "{failure:?}");
    assert!(
        failure.message.contains("net::ERR_NAME_NOT_RESOLVED"),
        "{failure:?}"
    );
}

#[tokio::test]
async fn a_form_via_browser_trusts_its_ca_file_and_honours_resolve() {
    let pki = pki();
    let cert = pki
        .ca
        .issue(&["shop.invalid"], Validity::days(90))
        .expect("leaf");
    let shop = https_shop(&cert).await;
    let port = shop.addr.port();
    let checks = format!(
        "  - name: private-form\n    kind: form\n    via: browser\n    retries: 0\n    timeout: 60s\n    url: \"https://shop.invalid:{port}/\"\n{}    resolve: {{ shop.invalid: 127.0.0.1 }}\n    steps:\n      - expect_text: {{ selector: \"#hello\", pattern: \"{GREETING}\" }}\n",
        ca_line(&pki)
    );
    let report = run(&pki, &checks).await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    assert_eq!(shop.hosts(), [format!("shop.invalid:{port}")]);
}

#[tokio::test]
async fn a_chat_widget_via_browser_trusts_its_ca_file_and_honours_resolve() {
    let pki = pki();
    let cert = pki
        .ca
        .issue(&["chat.invalid"], Validity::days(90))
        .expect("leaf");
    let shop = https_shop(&cert).await;
    let port = shop.addr.port();
    let checks = format!(
        "  - name: private-chat\n    kind: chat\n    via: browser\n    retries: 0\n    timeout: 60s\n    url: \"https://chat.invalid:{port}/widget\"\n{}    resolve: {{ chat.invalid: 127.0.0.1 }}\n    reply_in: \".reply\"\n    steps:\n      - fill: {{ selector: \"#msg\", text: \"Automated test {{{{token}}}}, please ignore\" }}\n      - click: \"#send\"\n    expect: {{ reply: \"бот поддержки\", within: 10s }}\n",
        ca_line(&pki)
    );
    let report = run(&pki, &checks).await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
}

#[test]
fn ca_file_with_an_external_webdriver_is_refused_at_load() {
    let pki = pki();
    let yaml = format!(
        "browser:\n  webdriver_url: \"http://127.0.0.1:9/\"\nchecks:\n  - name: private-shop\n    kind: browser\n{}    steps:\n      - open: \"https://shop.example/\"\n",
        ca_line(&pki)
    );
    supportwatch::tlsconf::install_crypto_provider();
    let config =
        supportwatch::config::load_sources(&[(PathBuf::from("test.yaml"), yaml)]).expect("loads");
    let Err(e) = supportwatch::assemble::prepare(config) else {
        panic!("a ca_file cannot reach a remote browser");
    };
    let text = e.to_string();
    assert!(text.contains("private-shop"), "{text}");
    assert!(
        text.contains(
            "`ca_file` on a browser check needs the chromedriver supportwatch starts itself"
        ),
        "{text}"
    );
}

#[test]
fn an_unreadable_ca_file_is_a_config_error_of_the_check() {
    let yaml = "checks:\n  - name: private-shop\n    kind: browser\n    ca_file: /nonexistent/ca.pem\n    steps:\n      - open: \"https://shop.example/\"\n";
    supportwatch::tlsconf::install_crypto_provider();
    let config = supportwatch::config::load_sources(&[(PathBuf::from("test.yaml"), yaml.into())])
        .expect("loads");
    let Err(e) = supportwatch::assemble::prepare(config) else {
        panic!("a missing ca_file must not load");
    };
    let text = e.to_string();
    assert!(text.contains("private-shop"), "{text}");
    assert!(
        text.contains("cannot read ca_file `/nonexistent/ca.pem`"),
        "{text}"
    );
}
