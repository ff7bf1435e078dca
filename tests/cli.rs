//! The `supportwatch` binary: exit codes, located errors, secrets kept out of every output,
//! and a clean exit on SIGTERM.

mod common;

use common::daemon::{signal, spawn_binary};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_supportwatch");
const SECRET: &str = "hunter2-very-secret";

fn config_dir(yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("shop.yaml"), yaml).expect("write");
    dir
}

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(dir)
        .env("SW_SHOP_KEY", SECRET)
        .env("RUST_LOG", "debug")
        .output()
        .expect("run supportwatch")
}

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn secret_config(port: u16) -> String {
    format!(
        r#"checks:
  - name: api
    kind: http
    retries: 0
    interval: 1s
    timeout: 1s
    url: "http://127.0.0.1:{port}/api?key=${{SW_SHOP_KEY}}"
    headers: {{ authorization: "Bearer ${{SW_SHOP_KEY}}" }}
"#
    )
}

#[test]
fn validate_prints_file_line_column_and_exits_2() {
    let dir = config_dir("checks:\n  - name: home\n    kind: http\n    urll: https://x.example/\n");
    let out = run(&["validate"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let text = all_output(&out);
    let expected = format!(
        "{}:4:5: check \"home\": unknown field `urll`",
        dir.path().join("shop.yaml").display()
    );
    assert!(text.contains(&expected), "{text}");

    let good = config_dir("checks:\n  - { name: home, kind: http, url: \"https://x.example/\" }\n");
    let out = run(&["validate"], good.path());
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
}

#[test]
fn list_shows_templates_not_secrets() {
    let dir = config_dir(&secret_config(1));
    let out = run(&["list"], dir.path());
    assert!(out.status.success(), "{}", all_output(&out));
    let text = all_output(&out);
    assert!(
        text.contains("http://127.0.0.1:1/api?key=${SW_SHOP_KEY}"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn check_of_a_dead_endpoint_fails_with_exit_1_and_no_secret_anywhere() {
    let port = common::closed_port();
    let dir = config_dir(&secret_config(port));
    for args in [&["check", "api"][..], &["check", "--all", "--json"][..]] {
        let out = run(args, dir.path());
        assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
        let text = all_output(&out);
        assert!(
            !text.contains(SECRET),
            "{args:?} leaked the secret:\n{text}"
        );
        assert!(text.contains("connect"), "{text}");
    }
    let out = run(&["check", "--all", "--json"], dir.path());
    let reports: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(reports[0]["result"], "failure");
    assert_eq!(reports[0]["failure"]["kind"], "connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_phases_and_exits_0_when_all_pass() {
    let shop = common::start_shop("127.0.0.1").await;
    let dir = config_dir(&format!(
        "checks:\n  - {{ name: home, kind: http, url: \"{}\", expect: {{ body: 'all good' }} }}\n",
        shop.url("/ok")
    ));
    let out = tokio::task::spawn_blocking(move || run(&["check", "home"], dir.path()))
        .await
        .expect("join");
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for needle in [
        "home (http, channel website)",
        "request",
        "body",
        "status 200",
        "PASS  success",
        "1 passed, 0 failed",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    // No check waits for a webhook: nothing is served.
    assert!(!text.contains("serving /hooks/"), "{text}");
}

#[test]
fn run_exits_0_on_sigterm_without_logging_secrets() {
    let port = common::closed_port();
    let dir = config_dir(&secret_config(port));
    // The alert database (storage.path, default ./supportwatch.db) goes into `dir` too.
    let mut child = spawn_binary(
        dir.path(),
        &[("SW_SHOP_KEY", SECRET), ("RUST_LOG", "debug")],
    );
    // Long enough to start and run the 1 s check at least once, so its failure is logged.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(signal(&child, "-TERM"));
    let started = std::time::Instant::now();
    let out = loop {
        if child.try_wait().expect("wait").is_some() {
            break child.wait_with_output().expect("output");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "daemon did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("supportwatch running"), "{text}");
    assert!(text.contains("SIGTERM: shutting down"), "{text}");
    assert!(text.contains("check failed"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    // stderr is a pipe here, as with a log file or journald: plain text, no colour codes.
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a piped log:\n{text}"
    );
}

#[test]
fn sighup_reloads_and_a_bad_config_is_refused_with_its_location() {
    let dir = config_dir("checks:\n  - { name: home, kind: http, url: \"http://127.0.0.1:1/\" }\n");
    // The alert database (storage.path, default ./supportwatch.db) goes into `dir` too.
    let child = spawn_binary(dir.path(), &[]);
    // Each signal is given time to be handled before the test rewrites the file.
    let signal_and_wait = |name: &str| {
        assert!(signal(&child, name));
        std::thread::sleep(Duration::from_millis(800));
    };
    // Let the daemon load the first config before it is replaced.
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::write(
        dir.path().join("shop.yaml"),
        "checks:\n  - name: home\n    kind: http\n    url: http://127.0.0.1:1/\n    retries: many\n",
    )
    .expect("write");
    signal_and_wait("-HUP");
    std::fs::write(
        dir.path().join("shop.yaml"),
        "checks:\n  - { name: contacts, kind: http, url: \"http://127.0.0.1:1/c\" }\n",
    )
    .expect("write");
    signal_and_wait("-HUP");
    signal_and_wait("-TERM");
    let out = child.wait_with_output().expect("output");
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("config reload refused; the previous config keeps running"),
        "{text}"
    );
    assert!(
        text.contains("shop.yaml:5:14: check \"home\": invalid u32"),
        "{text}"
    );
    assert!(text.contains("config reloaded: 1 checks"), "{text}");
}
