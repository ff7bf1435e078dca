//! `resolve:` host overrides: a check reaches a host DNS does not know, under its real name.

mod common;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use common::{run_once, serve};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use supportwatch::outcome::{FailureKind, RunResult};

/// A server that remembers the `Host` header of every request.
async fn host_recorder() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = Router::new().route(
        "/",
        get(move |headers: HeaderMap| {
            let record = record.clone();
            async move {
                let host = headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                record.lock().unwrap_or_else(|e| e.into_inner()).push(host);
                "ok"
            }
        }),
    );
    (serve(app).await, seen)
}

#[tokio::test]
async fn an_http_check_reaches_an_overridden_host_under_its_name() {
    let (addr, seen) = host_recorder().await;
    let port = addr.port();
    let report = run_once(&format!(
        "checks:\n  - name: staging\n    kind: http\n    url: \"http://shop.invalid:{port}/\"\n    resolve: {{ shop.invalid: 127.0.0.1 }}\n"
    ))
    .await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(seen, [format!("shop.invalid:{port}")]);
}

#[tokio::test]
async fn without_the_override_the_name_does_not_resolve() {
    let (addr, seen) = host_recorder().await;
    let report = run_once(&format!(
        "checks:\n  - name: staging\n    kind: http\n    url: \"http://shop.invalid:{}/\"\n",
        addr.port()
    ))
    .await;
    assert_eq!(report.result, RunResult::Failure);
    let failure = report.failure.expect("a failure");
    // A name that does not resolve is a `dns` failure, told from a server that does not answer.
    assert_eq!(failure.kind, FailureKind::Dns, "{failure:?}");
    assert!(failure.message.contains("dns error"), "{failure:?}");
    assert!(seen.lock().unwrap_or_else(|e| e.into_inner()).is_empty());
}

#[test]
fn bad_overrides_are_located_config_errors() {
    let yaml = "checks:\n  - name: ok\n    kind: http\n    url: \"http://shop.test/\"\n  - name: staging\n    kind: http\n    url: \"http://shop.test/\"\n    resolve: { shop.test: staging-host, \"shop.test:443\": 10.0.0.5 }\n";
    let Err(errors) =
        supportwatch::config::load_sources(&[(PathBuf::from("test.yaml"), yaml.into())])
    else {
        panic!("the config should not load");
    };
    let text = errors.to_string();
    assert_eq!(errors.0.len(), 2, "{text}");
    for error in &errors.0 {
        assert_eq!(error.check.as_deref(), Some("staging"), "{text}");
        assert_eq!(error.position.map(|p| p.0), Some(5), "{text}");
    }
    assert!(
        text.contains("`staging-host` is not an IP address"),
        "{text}"
    );
    assert!(text.contains("a port belongs in the address"), "{text}");
}

/// A private CA whose PEM is in `ca_file`, and a TLS server on 127.0.0.1 presenting its
/// certificate for `name`, serving `app` (WebSocket upgrades included).
struct PrivateShop {
    addr: std::net::SocketAddr,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

async fn private_shop(name: &str, app: axum::Router) -> PrivateShop {
    supportwatch::tlsconf::install_crypto_provider();
    let ca = supportwatch::demo::pki::Authority::new("resolve test CA").expect("CA");
    let cert = ca
        .issue(&[name], supportwatch::demo::pki::Validity::days(30))
        .expect("certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca.cert_pem).expect("write CA");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = cert.server_config(&[]).expect("server config");
    // The shop serves until the test process ends.
    tokio::spawn(supportwatch::demo::shop::serve_tls(
        listener,
        config,
        app,
        tokio_util::sync::CancellationToken::new(),
    ));
    PrivateShop {
        addr,
        ca_file,
        _dir: dir,
    }
}

/// A WebSocket bot that answers every message with a greeting quoting it.
fn ws_bot() -> axum::Router {
    use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
    axum::Router::new().route(
        "/ws",
        get(|upgrade: WebSocketUpgrade| async move {
            upgrade.on_upgrade(|mut socket: WebSocket| async move {
                while let Some(Ok(Message::Text(text))) = socket.recv().await {
                    let reply = format!("Здравствуйте! Вы написали: {}", text.as_str());
                    let _ = socket.send(Message::text(reply)).await;
                }
            })
        }),
    )
}

#[tokio::test]
async fn an_https_check_verifies_the_real_name_at_the_overridden_address() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/",
        get(move |headers: HeaderMap| {
            let record = record.clone();
            async move {
                let host = headers.get("host").and_then(|h| h.to_str().ok());
                record
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(host.unwrap_or("").to_string());
                "ok"
            }
        }),
    );
    let shop = private_shop("shop.invalid", app).await;
    let port = shop.addr.port();
    let ca = shop.ca_file.display();
    let report = run_once(&format!(
        "checks:\n  - name: staging\n    kind: http\n    url: \"https://shop.invalid:{port}/\"\n    ca_file: \"{ca}\"\n    resolve: {{ shop.invalid: 127.0.0.1 }}\n"
    ))
    .await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    let hosts = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(hosts, [format!("shop.invalid:{port}")]);

    // The certificate is verified for the name in the URL, not the address: an override of a
    // name the certificate does not carry fails as `tls`.
    let report = run_once(&format!(
        "checks:\n  - name: other\n    kind: http\n    url: \"https://other.invalid:{port}/\"\n    ca_file: \"{ca}\"\n    resolve: {{ other.invalid: 127.0.0.1 }}\n"
    ))
    .await;
    let failure = report.failure.expect("the certificate is for shop.invalid");
    assert_eq!(failure.kind, FailureKind::Tls, "{failure:?}");
}

#[tokio::test]
async fn a_tls_check_takes_the_overrides_port_when_its_target_names_none() {
    let shop = private_shop("shop.invalid", axum::Router::new()).await;
    let report = run_once(&format!(
        "checks:\n  - name: cert\n    kind: tls\n    targets: [\"https://shop.invalid\"]\n    ca_file: \"{}\"\n    resolve: {{ shop.invalid: \"127.0.0.1:{}\" }}\n",
        shop.ca_file.display(),
        shop.addr.port()
    ))
    .await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert!(
        report
            .observations
            .iter()
            .any(|o| matches!(o, supportwatch::outcome::Observation::Cert(_))),
        "{:?}",
        report.observations
    );

    let report = run_once(
        "checks:\n  - name: cert\n    kind: tls\n    targets: [\"https://shop.invalid\"]\n",
    )
    .await;
    let failure = report.failure.expect("shop.invalid is not in DNS");
    assert_eq!(failure.kind, FailureKind::Dns, "{failure:?}");
}

#[tokio::test]
async fn a_websocket_chat_reaches_an_overridden_host_over_tls() {
    let shop = private_shop("chat.invalid", ws_bot()).await;
    let chat = |resolve: &str| {
        format!(
            "checks:\n  - name: chat\n    kind: chat\n    retries: 0\n    via: websocket\n    url: \"wss://chat.invalid:{}/ws\"\n    ca_file: \"{}\"\n    expect: {{ reply: \"(?i)здравствуйте.*{{{{token}}}}\", within: 3s }}\n{resolve}",
            shop.addr.port(),
            shop.ca_file.display()
        )
    };
    let report = run_once(&chat("    resolve: { chat.invalid: 127.0.0.1 }\n")).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);

    let report = run_once(&chat("")).await;
    let failure = report.failure.expect("chat.invalid is not in DNS");
    assert_eq!(failure.kind, FailureKind::Dns, "{failure:?}");
    assert!(failure.message.contains("does not resolve"), "{failure:?}");
}

#[test]
fn an_override_on_a_kind_that_cannot_honour_it_is_refused() {
    let yaml = "checks:\n  - name: mx\n    kind: dns\n    domain: shop.test\n    resolve: { shop.test: 10.0.0.5 }\n";
    let Err(errors) =
        supportwatch::config::load_sources(&[(PathBuf::from("test.yaml"), yaml.into())])
    else {
        panic!("the config should not load");
    };
    let text = errors.to_string();
    assert!(
        text.contains("`resolve` does not apply here: a `dns` check asks DNS itself"),
        "{text}"
    );
}
