//! Fault tests of the scheduler, against the real `supportwatch run` binary: a service that hangs
//! on one port of a host must not starve the checks of another port on that host, its skipped and
//! timed-out runs must show in the metrics with their reason, and a reload while a slow run is in
//! progress must not start a second, overlapping run (counted at the server).

mod common;

use axum::Router;
use axum::routing::get;
use common::binary::{Binary, WITHIN, metric_sum};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Connections a hanging server saw: when each opened and, once the client gave up, closed.
#[derive(Default)]
struct Connections {
    spans: Mutex<Vec<(Instant, Option<Instant>)>>,
    open: AtomicU64,
}

impl Connections {
    fn total(&self) -> usize {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The longest time two connections were open together. A run gives its endpoint permit
    /// back as its attempt times out, a moment before the server sees that connection close, so
    /// runs in turn overlap by milliseconds; runs side by side overlap by most of a timeout.
    fn longest_overlap(&self) -> Duration {
        let now = Instant::now();
        let spans: Vec<(Instant, Instant)> = self
            .spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(open, close)| (*open, close.unwrap_or(now)))
            .collect();
        let mut longest = Duration::ZERO;
        for (i, a) in spans.iter().enumerate() {
            for b in &spans[i + 1..] {
                let start = a.0.max(b.0);
                let end = a.1.min(b.1);
                longest = longest.max(end.saturating_duration_since(start));
            }
        }
        longest
    }
}

/// Two runs of one endpoint at once overlap for longer than this (see `longest_overlap`).
const SIDE_BY_SIDE: Duration = Duration::from_millis(500);

/// A server on 127.0.0.1 that accepts connections, reads what comes and never answers. A
/// connection counts as open until the client closes it (a timed-out attempt does).
async fn start_hanging() -> (SocketAddr, Arc<Connections>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind hanging server");
    let addr = listener.local_addr().expect("local addr");
    let seen = Arc::new(Connections::default());
    let counts = seen.clone();
    // Accept loop; each connection gets a task that reads until the client goes away.
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let index = {
                let mut spans = counts.spans.lock().unwrap_or_else(|e| e.into_inner());
                spans.push((Instant::now(), None));
                spans.len() - 1
            };
            counts.open.fetch_add(1, Ordering::SeqCst);
            let counts = counts.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                counts.spans.lock().unwrap_or_else(|e| e.into_inner())[index].1 =
                    Some(Instant::now());
                counts.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen)
}

/// The value of the series of `name` whose labels include every one of `labels`.
fn value(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metric_sum(metrics, name, labels)
}

/// The checks on the hung port.
const HUNG: [&str; 3] = ["chat-api", "chat-widget", "chat-history"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_port_does_not_starve_another_port_of_the_same_host() {
    supportwatch::tlsconf::install_crypto_provider();
    let (hung, hung_seen) = start_hanging().await;
    let answered = Arc::new(AtomicU64::new(0));
    let count = answered.clone();
    let healthy = common::serve(Router::new().route(
        "/",
        get(move || {
            count.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        }),
    ))
    .await;
    assert_eq!(hung.ip(), healthy.ip(), "both ports are on one host");
    // Default limits: one run at a time per endpoint. Three checks hang on one port, each holding
    // it for its whole 1 s timeout, so they cannot all run every second: a run that waits for the
    // port past its next due time is skipped for permits. The healthy port must never wait.
    let dir = common::daemon::ConfigDir::new();
    dir.write(
        "shop.yaml",
        &format!(
            "checks:\n\
             \x20 - {{ name: chat-api, kind: http, url: \"http://{hung}/chat\", interval: 1s, timeout: 1s, retries: 0 }}\n\
             \x20 - {{ name: chat-widget, kind: http, url: \"http://{hung}/widget\", interval: 1s, timeout: 1s, retries: 0 }}\n\
             \x20 - {{ name: chat-history, kind: http, url: \"http://{hung}/history\", interval: 1s, timeout: 1s, retries: 0 }}\n\
             \x20 - {{ name: home, kind: http, url: \"http://{healthy}/\", interval: 1s, timeout: 1s, retries: 0 }}\n"
        ),
    );
    let mut daemon = Binary::start(dir.path(), &[]);
    let addr = daemon.addr();
    let metrics_url = format!("http://{addr}/metrics");
    // A bounded window: until runs on the hung port have been skipped for permits, and the
    // healthy check has run a few times meanwhile.
    let deadline = tokio::time::Instant::now() + WITHIN;
    let metrics = loop {
        let metrics = common::daemon::get_text(&metrics_url).await;
        let skipped = HUNG
            .iter()
            .filter_map(|check| {
                value(
                    &metrics,
                    "supportwatch_check_skipped_runs_total",
                    &[&format!("check=\"{check}\""), "reason=\"permits\""],
                )
            })
            .sum::<f64>();
        let home_runs = value(
            &metrics,
            "supportwatch_check_runs_total",
            &["check=\"home\"", "result=\"success\""],
        )
        .unwrap_or(0.0);
        if skipped >= 1.0 && home_runs >= 6.0 {
            break metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "within {WITHIN:?}: {skipped} runs skipped for permits on the hung port, {home_runs} \
             runs of the healthy one:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The healthy port was never held up by the hung one: every due run started.
    for reason in ["permits", "overlap"] {
        assert_eq!(
            value(
                &metrics,
                "supportwatch_check_skipped_runs_total",
                &["check=\"home\"", &format!("reason=\"{reason}\"")],
            ),
            Some(0.0),
            "{metrics}"
        );
    }
    assert!(answered.load(Ordering::SeqCst) >= 6);
    // The hung runs that did start timed out, and say so.
    let timeouts: f64 = HUNG
        .iter()
        .filter_map(|check| {
            value(
                &metrics,
                "supportwatch_check_runs_total",
                &[&format!("check=\"{check}\""), "result=\"timeout\""],
            )
        })
        .sum();
    assert!(timeouts >= 1.0, "{metrics}");
    assert!(hung_seen.total() >= 3);
    // One run at a time on the hung endpoint, as the default limit says.
    let overlap = hung_seen.longest_overlap();
    assert!(
        overlap < SIDE_BY_SIDE,
        "runs on the hung port overlapped for {overlap:?}"
    );
    // The log names the limit that held a skipped run.
    let line = daemon.wait_for_line("run skipped: still waiting for", 0);
    assert!(
        line.contains(&format!("the per-endpoint limit of {hung} (1 at a time)"))
            && line.contains("chat-")
            && line.contains("permits"),
        "{line}"
    );
    // Checks skipping is the shop's problem, not a stalled supportwatch.
    assert_eq!(
        value(&metrics, "supportwatch_scheduler_stalled", &[]),
        Some(0.0)
    );
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);
    common::promtool_check(&metrics);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_while_a_slow_check_runs_starts_no_second_run() {
    supportwatch::tlsconf::install_crypto_provider();
    let (slow, seen) = start_hanging().await;
    let healthy = common::serve(Router::new().route("/", get(|| async { "ok" }))).await;
    // Each run makes 3 attempts of 2 s (about 6 s), longer than its 2 s interval. The endpoint
    // limit allows 4 runs at once, so only the run's "in progress" mark keeps them apart.
    let check = format!(
        "  - {{ name: slow, kind: http, url: \"http://{slow}/\", interval: 2s, timeout: 2s, retries: 2, retry_delay: 100ms }}\n"
    );
    let dir = common::daemon::ConfigDir::new();
    dir.write(
        "shop.yaml",
        &format!("scheduler: {{ max_per_host: 4 }}\nchecks:\n{check}"),
    );
    let mut daemon = Binary::start(dir.path(), &[]);
    let addr = daemon.addr();
    // Wait for the slow run to be in progress at the server.
    let deadline = tokio::time::Instant::now() + WITHIN;
    while seen.open.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow check never connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Reload a changed config (one more check) while it runs.
    let before = daemon.lines().len();
    dir.write(
        "shop.yaml",
        &format!(
            "scheduler: {{ max_per_host: 4 }}\nchecks:\n{check}  - {{ name: home, kind: http, url: \"http://{healthy}/\", interval: 2s, timeout: 1s }}\n"
        ),
    );
    assert!(common::daemon::signal(&daemon.child, "-HUP"));
    daemon.wait_for_line("config reloaded: 2 checks", before);
    // The reloaded schedule finds the run still going and skips, rather than starting another.
    let line = daemon.wait_for_line("run skipped: the previous run is still in progress", before);
    assert!(line.contains("slow"), "{line}");
    let metrics = common::daemon::get_text(&format!("http://{addr}/metrics")).await;
    assert!(
        value(
            &metrics,
            "supportwatch_check_skipped_runs_total",
            &["check=\"slow\"", "reason=\"overlap\""],
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    // Let the run make all 3 attempts. They follow each other (100 ms apart); a second run
    // would have been at the server beside the first for most of a 2 s attempt.
    let deadline = tokio::time::Instant::now() + WITHIN;
    while seen.total() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow run's retries never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let overlap = seen.longest_overlap();
    assert!(
        overlap < SIDE_BY_SIDE,
        "two runs of one check were at the server together for {overlap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_503_with_the_reason_while_the_scheduler_is_stalled() {
    supportwatch::tlsconf::install_crypto_provider();
    let dir = common::daemon::ConfigDir::new();
    dir.write(
        "shop.yaml",
        "checks:\n  - { name: home, kind: http, url: \"http://127.0.0.1:1/\", interval: 1h }\n",
    );
    let daemon = dir.start().await;
    let healthz = || async {
        let answer = reqwest::get(daemon.url("/healthz"))
            .await
            .expect("GET /healthz");
        let status = answer.status().as_u16();
        let text = answer.text().await.expect("body");
        let body: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        (status, body)
    };
    let (status, body) = healthz().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scheduler_stalled"], serde_json::Value::Null);
    // What the watchdog sets when it finds a stall (its decision is unit-tested with an
    // injected clock).
    let reason = "check home has been due for 400s without starting (interval 60s)";
    daemon.metrics.set_scheduler_stall(Some(reason.into()));
    let (status, body) = healthz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "failing");
    assert_eq!(body["scheduler_stalled"], reason);
    daemon.metrics.set_scheduler_stall(None);
    assert_eq!(healthz().await.0, 200);
    daemon.stop().await;
}
