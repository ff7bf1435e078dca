//! The `http` probe against a real HTTP server on loopback.

mod common;

use common::{closed_port, run_once, start_shop};
use std::sync::atomic::Ordering;
use supportwatch::outcome::RunResult;
use supportwatch::outcome::{FailureKind, Observation};

#[tokio::test]
async fn passes_when_status_body_json_and_headers_match() {
    let shop = start_shop("127.0.0.1").await;
    let report = run_once(&format!(
        r#"
checks:
  - name: json-api
    kind: http
    url: "{}"
    expect:
      status: 200
      body: '"status"\s*:\s*"ok"'
      json: {{ /status: ok, /code: 200, /items/1: 2 }}
      headers: {{ content-type: "application/json" }}
"#,
        shop.url("/json")
    ))
    .await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert!(report.observations.contains(&Observation::HttpStatus(200)));
    let phases: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(phases, ["request", "body"]);
}

#[tokio::test]
async fn reports_each_kind_of_mismatch() {
    let shop = start_shop("127.0.0.1").await;
    let cases = [
        (
            format!(
                "url: \"{}\"\n    expect: {{ status: 2xx }}",
                shop.url("/status/503")
            ),
            FailureKind::Status,
            "status 503, expected 2xx",
        ),
        (
            format!(
                "url: \"{}\"\n    expect: {{ body: 'out of stock' }}",
                shop.url("/ok")
            ),
            FailureKind::Expectation,
            "body does not match /out of stock/",
        ),
        (
            format!(
                "url: \"{}\"\n    expect: {{ json: {{ /status: down }} }}",
                shop.url("/json")
            ),
            FailureKind::Expectation,
            "JSON `/status` is \"ok\", expected \"down\"",
        ),
        (
            format!(
                "url: \"{}\"\n    expect: {{ json: {{ /status: ok }} }}",
                shop.url("/ok")
            ),
            FailureKind::Expectation,
            "body is not JSON",
        ),
        (
            format!(
                "url: \"{}\"\n    expect: {{ headers: {{ x-missing: '.' }} }}",
                shop.url("/ok")
            ),
            FailureKind::Expectation,
            "header `x-missing` is missing",
        ),
        (
            format!(
                "url: \"{}\"\n    expect: {{ max_latency: 50ms }}",
                shop.url("/slow")
            ),
            FailureKind::Expectation,
            "more than max_latency 50ms",
        ),
        (
            format!("url: \"{}\"\n    max_redirects: 3", shop.url("/loop")),
            FailureKind::Expectation,
            "more than 3 redirects (max_redirects)",
        ),
    ];
    for (fields, kind, message) in cases {
        let report = run_once(&format!(
            "checks:\n  - name: case\n    kind: http\n    retries: 0\n    {fields}\n"
        ))
        .await;
        let failure = report.failure.expect("the check must fail");
        assert_eq!(failure.kind, kind, "{fields}: {}", failure.message);
        assert!(
            failure.message.contains(message),
            "{fields}: got `{}`, wanted `{message}`",
            failure.message
        );
    }
}

#[tokio::test]
async fn posts_templated_json_with_the_token_and_an_honest_user_agent() {
    let shop = start_shop("127.0.0.1").await;
    let report = run_once(&format!(
        r#"
checks:
  - name: feedback-api
    kind: http
    method: post
    url: "{}"
    json: {{ message: "Automated test {{{{token}}}} from {{{{check}}}}", n: 1 }}
    expect:
      body: 'Automated test sw-feedback-api-\d+-[0-9a-f]{{8}} from feedback-api'
      headers: {{ x-shop: test-shop }}
"#,
        shop.url("/echo")
    ))
    .await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    // The echoed header token is the run's token, and the agent says it is automated.
    let rerun = run_once(&format!(
        "checks:\n  - name: agent\n    kind: http\n    method: POST\n    url: \"{}\"\n    form: {{ a: b }}\n    expect: {{ body: 'automated support-channel test', json: {{ /content_type: application/x-www-form-urlencoded, /body: a=b }} }}\n",
        shop.url("/echo")
    ))
    .await;
    assert_eq!(rerun.result, RunResult::Success, "{:?}", rerun.failure);
}

#[tokio::test]
async fn a_two_gigabyte_answer_is_cut_at_max_body() {
    let shop = start_shop("127.0.0.1").await;
    let report = run_once(&format!(
        "checks:\n  - name: huge\n    kind: http\n    url: \"{}\"\n    max_body: 256KiB\n    timeout: 30s\n    expect: {{ body: 'xxxx' }}\n",
        shop.url("/huge")
    ))
    .await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert!(report.observations.contains(&Observation::BodyTruncated));
    // What left the server is bounded by socket buffers, nowhere near 2 GB.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let sent = shop.stats.huge_bytes_sent.load(Ordering::SeqCst);
    assert!(sent < 64 << 20, "server produced {sent} bytes");
}

#[tokio::test]
async fn connection_refused_is_a_connect_failure_naming_the_url_template() {
    let port = closed_port();
    let report = run_once(&format!(
        "checks:\n  - name: down\n    kind: http\n    retries: 0\n    url: \"http://127.0.0.1:{port}/\"\n"
    ))
    .await;
    let failure = report.failure.expect("must fail");
    assert_eq!(failure.kind, FailureKind::Connect, "{}", failure.message);
    assert!(
        failure
            .message
            .starts_with(&format!("GET http://127.0.0.1:{port}/"))
    );
    assert_eq!(report.result, RunResult::Failure);
}

#[tokio::test]
async fn a_pass_after_a_retry_is_reported_as_retried_success() {
    let shop = start_shop("127.0.0.1").await;
    let report = run_once(&format!(
        "checks:\n  - name: flaky\n    kind: http\n    retries: 2\n    retry_delay: 10ms\n    url: \"{}\"\n",
        shop.url("/flaky")
    ))
    .await;
    assert_eq!(report.result, RunResult::RetriedSuccess);
    assert_eq!(report.attempts, 2);
    assert_eq!(shop.stats.flaky_calls.load(Ordering::SeqCst), 2);
}
