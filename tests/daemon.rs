//! The daemon end to end: /metrics accepted by promtool, /healthz, reload that refuses a bad
//! config and keeps the old one running.

mod common;

use common::start_shop;
use std::path::Path;
use std::time::Duration;
use supportwatch::daemon::{ConfigSource, Daemon};

fn write_config(dir: &Path, yaml: &str) {
    std::fs::write(dir.join("shop.yaml"), yaml).expect("write config");
    // Each test its own alert database, never one in the working directory.
    std::fs::write(
        dir.join("storage.yaml"),
        format!("storage: {{ path: \"{}\" }}\n", dir.join("sw.db").display()),
    )
    .expect("write storage config");
}

async fn next_report_of(daemon: &Daemon, check: &str) {
    let mut reports = daemon.scheduler.subscribe();
    let wait = async {
        loop {
            match reports.recv().await {
                Ok(r) if &*r.check == check => return,
                Ok(_) => continue,
                Err(e) => panic!("report stream ended: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no run of {check} within 10 s"));
}

async fn get_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url} body: {e}"))
}

fn promtool_check(metrics: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool must be installed: apt-get install prometheus (scripts/test does it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "promtool: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_health_answers() {
    let shop = start_shop("127.0.0.1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(
        dir.path(),
        &format!(
            "defaults: {{ labels: {{ shop: vesna, location: msk }} }}\nchecks:\n  - {{ name: home, kind: http, url: \"{}\", interval: 1s, timeout: 1s }}\n  - {{ name: broken, kind: http, channel: feedback_form, url: \"{}\", interval: 1s, timeout: 1s, retries: 0 }}\n",
            shop.url("/ok"),
            shop.url("/status/500")
        ),
    );
    let daemon = Daemon::start(
        ConfigSource::Dir(dir.path().to_path_buf()),
        Some("127.0.0.1:0".parse().expect("addr")),
    )
    .await
    .expect("daemon starts");
    next_report_of(&daemon, "home").await;
    next_report_of(&daemon, "broken").await;
    let base = format!("http://{}", daemon.addr);
    let metrics = get_text(&format!("{base}/metrics")).await;
    promtool_check(&metrics);
    assert!(metrics.contains(r#"supportwatch_check_success{channel="website",check="home",kind="http",location="msk",shop="vesna"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"supportwatch_check_success{channel="feedback_form",check="broken",kind="http",location="msk",shop="vesna"} 0"#), "{metrics}");
    assert!(metrics.contains(r#"supportwatch_check_failures_total{channel="feedback_form",check="broken",kind="http",location="msk",reason="status",shop="vesna"}"#), "{metrics}");
    assert!(metrics.contains("supportwatch_scheduler_lag_seconds_bucket"));
    assert!(metrics.contains("supportwatch_checks_configured 2"));
    let health = get_text(&format!("{base}/healthz")).await;
    let health: serde_json::Value = serde_json::from_str(&health).expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["checks"], 2);
    assert!(daemon.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_a_bad_config_and_keeps_the_old_one_running() {
    let shop = start_shop("127.0.0.1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(
        dir.path(),
        &format!(
            "checks:\n  - {{ name: home, kind: http, url: \"{}\", interval: 1s, timeout: 1s }}\n",
            shop.url("/ok")
        ),
    );
    let daemon = Daemon::start(
        ConfigSource::Dir(dir.path().to_path_buf()),
        Some("127.0.0.1:0".parse().expect("addr")),
    )
    .await
    .expect("daemon starts");
    let client = reqwest::Client::new();
    let base = format!("http://{}", daemon.addr);

    write_config(
        dir.path(),
        "checks:\n  - name: contacts\n    kind: http\n    urll: http://127.0.0.1/\n",
    );
    let answer = client
        .post(format!("{base}/-/reload"))
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
    next_report_of(&daemon, "home").await;
    let metrics = get_text(&format!("{base}/metrics")).await;
    assert!(metrics.contains("supportwatch_config_last_reload_successful 0"));
    assert!(metrics.contains(r#"check="home""#));

    write_config(
        dir.path(),
        &format!(
            "checks:\n  - {{ name: contacts, kind: http, url: \"{}\", interval: 1s, timeout: 1s }}\n",
            shop.url("/ok")
        ),
    );
    assert_eq!(
        daemon.reload().await.expect("valid config"),
        "config reloaded: 1 checks"
    );
    next_report_of(&daemon, "contacts").await;
    let metrics = get_text(&format!("{base}/metrics")).await;
    assert!(metrics.contains("supportwatch_config_last_reload_successful 1"));
    assert!(metrics.contains(r#"check="contacts""#));
    assert!(
        !metrics.contains(r#"check="home""#),
        "removed check still exported"
    );
    assert!(daemon.stop().await);
}
