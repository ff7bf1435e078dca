//! Absurd config values against the real binary: a reload into them is refused with a located
//! error while the old checks keep running and `/healthz` answers 503, SIGHUP and the endpoint
//! keep working, a fixed config is accepted again; `validate`, `check` and `run` exit 2, never
//! panic.

mod common;

use axum::Router;
use axum::routing::get;
use common::binary::{Binary, WITHIN};
use common::daemon::ConfigDir;
use std::process::Command;
use std::time::{Duration, Instant};

/// The values a reviewer found that used to panic or silently stop checks, each with the exact
/// problem the reload must report (file-relative location, field and allowed range).
fn absurd_configs(url: &str) -> Vec<(&'static str, String, String)> {
    let overflowing = "18446744073709551615ms".repeat(1100);
    let check = |extra: &str| {
        format!(
            "checks:\n  - name: home\n    kind: http\n    url: \"{url}\"\n    interval: 1s\n    timeout: 1s\n{extra}"
        )
    };
    vec![
        (
            "max_concurrent",
            format!(
                "scheduler: {{ max_concurrent: 18446744073709551615 }}\n{}",
                check("")
            ),
            "shop.yaml:1:12: `scheduler.max_concurrent` is 18446744073709551615; allowed 1 to 10000"
                .into(),
        ),
        (
            "hosts",
            format!(
                "scheduler: {{ hosts: {{ 127.0.0.1: 18446744073709551615 }} }}\n{}",
                check("")
            ),
            "shop.yaml:1:12: `scheduler.hosts.127.0.0.1` is 18446744073709551615; allowed 1 to 10000"
                .into(),
        ),
        (
            "max_per_kind",
            format!("scheduler: {{ max_per_kind: {{ http: 0 }} }}\n{}", check("")),
            "shop.yaml:1:12: `scheduler.max_per_kind.http` is 0; allowed 1 to 10000".into(),
        ),
        (
            "duration",
            // Every part fits in milliseconds; their sum overflows `Duration` itself.
            check(&format!("    retry_delay: {overflowing}\n")),
            format!(
                "shop.yaml:7:18: check \"home\": invalid duration `{overflowing}`: longer than \
                 the 3650d a config duration may be"
            ),
        ),
    ]
}

fn good_config(url: &str) -> String {
    format!(
        "scheduler: {{ max_concurrent: 8, hosts: {{ 127.0.0.1: 2 }}, max_per_kind: {{ http: 4 }} }}\n\
         checks:\n  - name: home\n    kind: http\n    url: \"{url}\"\n    interval: 1s\n    timeout: 1s\n"
    )
}

/// The password of the user `ops`, for `/metrics` and `/-/reload`.
const OPS_PASSWORD: &str = "ops-reload-pw";

/// Enables `POST /-/reload` (off by default) for the user `ops`, in its own file so that the
/// configs written to `shop.yaml` do not replace it.
fn enable_reload(dir: &ConfigDir) {
    dir.write(
        "server.yaml",
        &format!(
            "server:\n  enable_lifecycle: true\n  basic_auth_users: {{ ops: \"{}\" }}\n",
            bcrypt::hash(OPS_PASSWORD, 4).expect("bcrypt")
        ),
    );
}

/// The daemon binary, and a client that signs in as the operator.
struct Daemon {
    binary: Binary,
    base: String,
    http: reqwest::Client,
}

impl Daemon {
    fn start(dir: &ConfigDir) -> Daemon {
        let mut binary = Binary::start(dir.path(), &[]);
        let base = format!("http://{}", binary.addr());
        Daemon {
            binary,
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .basic_auth("ops", Some(OPS_PASSWORD))
            .send()
            .await
            .expect("GET");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    async fn reload(&self) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}/-/reload", self.base))
            .basic_auth("ops", Some(OPS_PASSWORD))
            .send()
            .await
            .expect("POST /-/reload");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    /// The sum of a counter's series whose line contains `filter`.
    async fn counter(&self, name: &str, filter: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn runs(&self) -> f64 {
        self.counter("supportwatch_check_runs_total", r#"check="home""#)
            .await
    }

    /// Waits until the check `home` has run more than `than` times.
    async fn runs_beyond(&self, than: f64) -> f64 {
        let started = Instant::now();
        loop {
            let runs = self.runs().await;
            if runs > than {
                return runs;
            }
            assert!(
                started.elapsed() < WITHIN,
                "check stopped running at {runs} runs"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn health(&self) -> (u16, serde_json::Value) {
        let (code, text) = self.get("/healthz").await;
        (code, serde_json::from_str(&text).expect("healthz is JSON"))
    }

    /// SIGTERM, then the process's exit status and its whole log.
    fn stop(self) -> (Option<i32>, String) {
        self.binary.stop()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_reloads_are_refused_and_checks_keep_running() {
    let shop = common::serve(Router::new().route("/ok", get(|| async { "ok" }))).await;
    let url = format!("http://{shop}/ok");
    let dir = ConfigDir::new();
    dir.write("shop.yaml", &good_config(&url));
    enable_reload(&dir);
    let daemon = Daemon::start(&dir);
    let mut runs = daemon.runs_beyond(0.0).await;
    let (code, health) = daemon.health().await;
    assert_eq!((code, &health["status"]), (200, &"ok".into()), "{health}");

    for (what, yaml, expected) in absurd_configs(&url) {
        dir.write("shop.yaml", &yaml);
        let (code, body) = daemon.reload().await;
        assert_eq!(code, 400, "{what}: {body}");
        assert!(
            body.contains("reload refused; the previous config keeps running"),
            "{what}: {body}"
        );
        let located = format!("{}/{expected}", dir.path().display());
        assert!(
            body.contains(&located),
            "{what}: expected\n{located}\nin\n{body}"
        );
        let (code, health) = daemon.health().await;
        assert_eq!(code, 503, "{what}: {health}");
        assert_eq!(health["status"], "failing", "{what}: {health}");
        assert_eq!(health["last_reload_successful"], false, "{what}: {health}");
        // The old config keeps running: more runs after the refusal.
        runs = daemon.runs_beyond(runs).await;
    }

    // SIGHUP takes the same path: refused, counted, the check still runs.
    let failures = daemon
        .counter("supportwatch_config_reloads_total", r#"result="failure""#)
        .await;
    assert_eq!(failures, 4.0);
    let (_, yaml, _) = absurd_configs(&url).remove(0);
    dir.write("shop.yaml", &yaml);
    assert!(common::daemon::signal(&daemon.binary.child, "-HUP"));
    let started = Instant::now();
    while daemon
        .counter("supportwatch_config_reloads_total", r#"result="failure""#)
        .await
        < 5.0
    {
        assert!(started.elapsed() < WITHIN, "SIGHUP reload not handled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = daemon.health().await;
    assert_eq!(code, 503);
    runs = daemon.runs_beyond(runs).await;

    // A fixed config is accepted, through the endpoint and through SIGHUP.
    dir.write("shop.yaml", &good_config(&url));
    let (code, body) = daemon.reload().await;
    assert_eq!((code, body.as_str()), (200, "config reloaded: 1 checks\n"));
    let (code, health) = daemon.health().await;
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["last_reload_successful"], true, "{health}");
    assert!(common::daemon::signal(&daemon.binary.child, "-HUP"));
    let started = Instant::now();
    while daemon
        .counter("supportwatch_config_reloads_total", r#"result="success""#)
        .await
        < 2.0
    {
        assert!(started.elapsed() < WITHIN, "SIGHUP reload not handled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.runs_beyond(runs).await;

    let (status, log) = daemon.stop();
    assert_eq!(status, Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let refusals = log
        .lines()
        .filter(|l| l.contains(r#""level":"ERROR""#) && l.contains("config reload refused"))
        .count();
    assert_eq!(refusals, 5, "{log}");
}

/// `supportwatch ARGS --config DIR`: exit code and everything printed.
fn run_cli(args: &[&str], dir: &ConfigDir) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_supportwatch"))
        .args(args)
        .arg("--config")
        .arg(dir.path())
        .current_dir(dir.path())
        .output()
        .expect("run supportwatch");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn validate_check_and_run_exit_2_on_absurd_values() {
    // Nothing listens here: a check that ran would fail (exit 1), not exit 2.
    let url = format!("http://127.0.0.1:{}/ok", common::closed_port());
    for (what, yaml, expected) in absurd_configs(&url) {
        let dir = ConfigDir::new();
        dir.write("shop.yaml", &yaml);
        // `run` refuses the config before it listens, so it exits at once too.
        for args in [
            &["validate"][..],
            &["check", "home"][..],
            &["run", "--listen", "127.0.0.1:0"][..],
        ] {
            let (code, text) = run_cli(args, &dir);
            assert_eq!(code, Some(2), "{what} {args:?}: {text}");
            assert!(text.contains(&expected), "{what} {args:?}: {text}");
            assert!(!text.contains("panicked"), "{what} {args:?}: {text}");
        }
    }
}
