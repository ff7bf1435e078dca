//! The daemon end to end: /metrics accepted by promtool, /healthz, reload that refuses a bad
//! config and keeps the old one running.

mod common;

use common::daemon::ConfigDir;
use common::{promtool_check, start_shop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_health_answers() {
    let shop = start_shop("127.0.0.1").await;
    let dir = ConfigDir::new();
    dir.write(
        "shop.yaml",
        &format!(
            "defaults: {{ labels: {{ shop: vesna, location: msk }} }}\nchecks:\n  - {{ name: home, kind: http, url: \"{}\", interval: 1s, timeout: 1s }}\n  - {{ name: broken, kind: http, channel: feedback_form, url: \"{}\", interval: 1s, timeout: 1s, retries: 0 }}\n",
            shop.url("/ok"),
            shop.url("/status/500")
        ),
    );
    let daemon = dir.start().await;
    daemon.next_report_of("home").await;
    daemon.next_report_of("broken").await;
    let metrics = daemon.get_text("/metrics").await;
    promtool_check(&metrics);
    assert!(metrics.contains(r#"supportwatch_check_success{channel="website",check="home",kind="http",location="msk",shop="vesna"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"supportwatch_check_success{channel="feedback_form",check="broken",kind="http",location="msk",shop="vesna"} 0"#), "{metrics}");
    assert!(metrics.contains(r#"supportwatch_check_failures_total{channel="feedback_form",check="broken",kind="http",location="msk",reason="status",shop="vesna"}"#), "{metrics}");
    assert!(metrics.contains("supportwatch_scheduler_lag_seconds_bucket"));
    assert!(metrics.contains("supportwatch_checks_configured 2"));
    let health = daemon.get_text("/healthz").await;
    let health: serde_json::Value = serde_json::from_str(&health).expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["checks"], 2);
    assert!(daemon.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_a_bad_config_and_keeps_the_old_one_running() {
    let shop = start_shop("127.0.0.1").await;
    let dir = ConfigDir::new();
    dir.write(
        "shop.yaml",
        &format!(
            "checks:\n  - {{ name: home, kind: http, url: \"{}\", interval: 1s, timeout: 1s }}\n",
            shop.url("/ok")
        ),
    );
    // Reloading over HTTP is off by default; it needs the lifecycle switch and a credential.
    dir.write(
        "server.yaml",
        &format!(
            "server:\n  enable_lifecycle: true\n  basic_auth_users: {{ ops: \"{}\" }}\n",
            bcrypt::hash("reload-pw", 4).expect("bcrypt")
        ),
    );
    let daemon = dir.start().await;
    let client = reqwest::Client::new();
    let get_metrics = || async {
        client
            .get(daemon.url("/metrics"))
            .basic_auth("ops", Some("reload-pw"))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics body")
    };

    dir.write(
        "shop.yaml",
        "checks:\n  - name: contacts\n    kind: http\n    urll: http://127.0.0.1/\n",
    );
    let answer = client
        .post(daemon.url("/-/reload"))
        .basic_auth("ops", Some("reload-pw"))
        .send()
        .await
        .expect("reload");
    assert_eq!(answer.status(), 400);
    let text = answer.text().await.expect("body");
    assert!(
        text.contains("reload refused; the previous config keeps running"),
        "{text}"
    );
    assert!(
        text.contains("shop.yaml:4:5: check \"contacts\": unknown field `urll`"),
        "{text}"
    );
    // The old check still runs and is still exported.
    daemon.next_report_of("home").await;
    let metrics = get_metrics().await;
    assert!(metrics.contains("supportwatch_config_last_reload_successful 0"));
    assert!(metrics.contains(r#"check="home""#));

    dir.write(
        "shop.yaml",
        &format!(
            "checks:\n  - {{ name: contacts, kind: http, url: \"{}\", interval: 1s, timeout: 1s }}\n",
            shop.url("/ok")
        ),
    );
    assert_eq!(
        daemon.reload().await.expect("valid config"),
        "config reloaded: 1 checks"
    );
    daemon.next_report_of("contacts").await;
    let metrics = get_metrics().await;
    assert!(metrics.contains("supportwatch_config_last_reload_successful 1"));
    assert!(metrics.contains(r#"check="contacts""#));
    assert!(
        !metrics.contains(r#"check="home""#),
        "removed check still exported"
    );
    assert!(daemon.stop().await);
}
