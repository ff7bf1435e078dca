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
    // The HTTP probe files a failed lookup under `connect`, its message naming DNS.
    assert_eq!(failure.kind, FailureKind::Connect, "{failure:?}");
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
