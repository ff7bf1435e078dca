//! Helpers shared by the integration tests: a real HTTP test shop on loopback, loading checks
//! from YAML text, empty Maildirs, what a run proved about a delivery, and promtool's verdict on
//! metrics text. The daemon starter and the recording server live in `daemon` and `recorder`, the
//! real Prometheus and Alertmanager in `prometheus` and `alertmanager`.
#![allow(dead_code)]

pub mod alertmanager;
pub mod binary;
pub mod breakable;
pub mod browser_shop;
pub mod daemon;
pub mod dnsmasq;
pub mod forms;
pub mod mailserver;
pub mod prometheus;
pub mod recorder;
pub mod sipp;
pub mod sipserver;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use supportwatch::assemble::Prepared;
use supportwatch::outcome::RunReport;
use supportwatch::runner;

/// The config of one YAML text, with extra `${…}` variables; panics if it does not load.
fn load_with(yaml: &str, vars: &[(&str, &str)]) -> supportwatch::config::Config {
    supportwatch::tlsconf::install_crypto_provider();
    let vars = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    supportwatch::value::with_overlay(&vars, || {
        supportwatch::config::load_sources(&[(PathBuf::from("test.yaml"), yaml.to_string())])
    })
    .unwrap_or_else(|e| panic!("config should load:\n{e}"))
}

/// Loads checks from one YAML text, with extra `${…}` variables.
pub fn prepare(yaml: &str) -> Prepared {
    prepare_with(yaml, &[])
}

/// Loads checks from one YAML text, with extra `${…}` variables.
pub fn prepare_with(yaml: &str, vars: &[(&str, &str)]) -> Prepared {
    supportwatch::assemble::prepare(load_with(yaml, vars))
        .unwrap_or_else(|e| panic!("config should prepare:\n{e}"))
}

/// [`prepare_with`], `deliver: { call: … }` waiting on `lines` (as a daemon's checks wait on
/// the daemon's).
pub fn prepare_on_lines(
    yaml: &str,
    vars: &[(&str, &str)],
    lines: Arc<supportwatch::sip::line::Lines>,
) -> Prepared {
    let config = load_with(yaml, vars);
    let hooks = Arc::new(supportwatch::hooks::Hooks::default());
    hooks.configure(&config.hooks);
    supportwatch::assemble::prepare_shared(config, hooks, Arc::default(), lines)
        .unwrap_or_else(|e| panic!("config should prepare:\n{e}"))
}

/// Runs the first check of `yaml` once.
pub async fn run_once(yaml: &str) -> RunReport {
    let prepared = prepare(yaml);
    runner::execute(&prepared.checks[0], 1, None).await
}

/// Serves `app` on a free port of 127.0.0.1 until the test process ends.
pub async fn serve(app: Router) -> SocketAddr {
    serve_on("127.0.0.1", app).await
}

/// Serves `app` on a free port of `ip` until the test process ends.
pub async fn serve_on(ip: &str, app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Counters the test shop keeps about what it was asked.
#[derive(Default)]
pub struct ShopStats {
    /// Requests answered, all routes.
    pub requests: AtomicU64,
    /// Bytes of body sent by `/huge`.
    pub huge_bytes_sent: AtomicU64,
    /// Requests in progress on `/slow` right now, and the most seen at once.
    pub slow_now: AtomicUsize,
    pub slow_max: AtomicUsize,
    /// Calls to `/flaky` so far.
    pub flaky_calls: AtomicU64,
}

#[derive(Clone)]
struct ShopState {
    stats: Arc<ShopStats>,
}

/// A running HTTP test shop.
pub struct TestShop {
    pub addr: SocketAddr,
    pub stats: Arc<ShopStats>,
}

impl TestShop {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Starts the test shop on `ip:0`.
pub async fn start_shop(ip: &str) -> TestShop {
    let stats = Arc::new(ShopStats::default());
    let state = ShopState {
        stats: stats.clone(),
    };
    let app = Router::new()
        .route("/ok", get(|| async { "Demo shop: all good" }))
        .route(
            "/json",
            get(|| async {
                axum::Json(serde_json::json!({"status": "ok", "code": 200, "items": [1, 2]}))
            }),
        )
        .route("/echo", any(echo))
        .route("/status/{code}", get(status_code))
        .route("/loop", get(redirect_loop))
        .route("/huge", get(huge))
        .route("/slow", get(slow))
        .route("/flaky", get(flaky))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state);
    let addr = serve_on(ip, app).await;
    TestShop { addr, stats }
}

async fn count(
    State(state): State<ShopState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    state.stats.requests.fetch_add(1, Ordering::SeqCst);
    next.run(req).await
}

async fn echo(headers: HeaderMap, body: String) -> Response {
    let token = headers
        .get("x-supportwatch-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (
        [("x-shop", "test-shop")],
        axum::Json(serde_json::json!({
            "token": token, "agent": agent, "content_type": content_type, "body": body,
        })),
    )
        .into_response()
}

async fn status_code(axum::extract::Path(code): axum::extract::Path<u16>) -> Response {
    StatusCode::from_u16(code)
        .unwrap_or(StatusCode::BAD_REQUEST)
        .into_response()
}

async fn redirect_loop() -> Response {
    (StatusCode::FOUND, [("location", "/loop")]).into_response()
}

/// A 2 GB body, produced lazily in 64 KiB chunks, counting what actually left the server.
async fn huge(State(state): State<ShopState>) -> Response {
    const TOTAL: u64 = 2 << 30;
    const CHUNK: usize = 64 << 10;
    let stats = state.stats.clone();
    let stream = futures::stream::unfold(0u64, move |sent| {
        let stats = stats.clone();
        async move {
            if sent >= TOTAL {
                return None;
            }
            stats
                .huge_bytes_sent
                .fetch_add(CHUNK as u64, Ordering::SeqCst);
            Some((
                Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; CHUNK])),
                sent + CHUNK as u64,
            ))
        }
    });
    Response::builder()
        .header("content-length", TOTAL.to_string())
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

async fn slow(State(state): State<ShopState>) -> &'static str {
    let now = state.stats.slow_now.fetch_add(1, Ordering::SeqCst) + 1;
    state.stats.slow_max.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    state.stats.slow_now.fetch_sub(1, Ordering::SeqCst);
    "slow but fine"
}

/// Fails the first call, then answers.
async fn flaky(State(state): State<ShopState>) -> Response {
    if state.stats.flaky_calls.fetch_add(1, Ordering::SeqCst) == 0 {
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    } else {
        "recovered".into_response()
    }
}

/// A server that accepts connections and never says a word.
pub async fn start_silent(ip: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .expect("bind silent server");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// A server that sends HTTP headers, then one body byte a second, forever.
pub async fn start_drip(ip: &str) -> SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .expect("bind drip server");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    if socket.write_all(b"x").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
    });
    addr
}

/// The delivery latency a run observed, if it proved a delivery.
pub fn delivery_latency(report: &RunReport) -> Option<Duration> {
    report.observations.iter().find_map(|o| match o {
        supportwatch::outcome::Observation::DeliveryLatency(d) => Some(*d),
        _ => None,
    })
}

/// Asserts that the run deleted the test message it proved delivered.
#[track_caller]
pub fn assert_test_message_deleted(report: &RunReport) {
    assert!(
        report.details.iter().any(|d| d == "test message deleted"),
        "{:?}",
        report.details
    );
}

/// Makes `dir` an empty Maildir (`cur`, `new`, `tmp`), creating what is missing.
pub fn make_maildir(dir: &Path) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))
            .unwrap_or_else(|e| panic!("create Maildir {}: {e}", dir.join(sub).display()));
    }
}

/// Asserts that `promtool check metrics` accepts `metrics` without a word.
pub fn promtool_check(metrics: &str) {
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

/// A loopback port nobody listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// `count` `http` checks (`shop-000`, `shop-001`, ...) of one local page, each run once an hour:
/// for the fleet tests, which assert which instance exports which check (every configured check's
/// `check_runs_total` is exported from zero), not what the runs found.
pub fn many_http_checks(site: SocketAddr, count: usize) -> String {
    let mut yaml = String::from("checks:\n");
    for i in 0..count {
        yaml.push_str(&format!(
            "  - {{ name: shop-{i:03}, kind: http, url: \"http://{site}/\", interval: 1h }}\n"
        ));
    }
    yaml
}
