//! The browser pool against a real chromedriver and headless chromium: slots, console errors,
//! failure evidence, a driver killed mid-run, missing or broken binaries, and no chromium left
//! behind by a dropped session. Pages come from a small axum server on 127.0.0.1.

mod common;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::Html;
use axum::routing::get;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use supportwatch::browser::{Browser, BrowserConfig, BrowserError, pool_stats};

/// A `BrowserConfig` from YAML, as the `browser:` section would hold it.
fn config(yaml: &str) -> BrowserConfig {
    let config: BrowserConfig = serde_saphyr::from_str(yaml)
        .unwrap_or_else(|e| panic!("browser config should parse: {e}\n{yaml}"));
    supportwatch::browser::validate(&config).unwrap_or_else(|e| panic!("invalid config: {e:?}"));
    config
}

/// What the page server saw.
#[derive(Default)]
struct Seen {
    accept_language: Mutex<Vec<String>>,
    user_agent: Mutex<Vec<String>>,
}

/// Serves test pages on 127.0.0.1:0; returns the base URL.
async fn page_server() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let record = seen.clone();
    let app = Router::new()
        .route(
            "/",
            get(move |headers: HeaderMap| {
                let seen = record.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    lock(&seen.accept_language).push(header("accept-language"));
                    lock(&seen.user_agent).push(header("user-agent"));
                    Html("<!doctype html><title>Support</title><h1>Contact us</h1>")
                }
            }),
        )
        .route(
            "/errors",
            get(|| async {
                Html(
                    "<!doctype html><title>Broken</title><body>broken widget<script>\
                     console.error('widget failed: boom-console');\
                     throw new Error('boom-thrown');\
                     </script></body>",
                )
            }),
        )
        // A page load that never finishes: what a timed-out run is usually stuck in.
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Html("too late")
            }),
        );
    let addr: SocketAddr = common::serve(app).await;
    (format!("http://{addr}"), seen)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Live processes in process group `pgid`, other than `except` (chromedriver itself).
fn group_members(pgid: u32, except: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != except)
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(close) = stat.rfind(')') else {
                return false;
            };
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            // state, ppid, pgrp
            fields.first().is_some_and(|s| *s != "Z")
                && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
        })
        .collect()
}

/// Polls `cond` every 50 ms for up to `within`.
async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

/// Opens a session, loads a page, keeps it a moment; returns (opened, close started).
async fn one_run(
    browser: Arc<Browser>,
    url: String,
    both_open: Option<Arc<tokio::sync::Barrier>>,
) -> (Instant, Instant) {
    let session = browser.session().await.expect("session");
    let opened = Instant::now();
    session.client.goto(&url).await.expect("goto");
    if let Some(barrier) = both_open {
        tokio::time::timeout(Duration::from_secs(60), barrier.wait())
            .await
            .expect("the other session opened too");
    } else {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let closing = Instant::now();
    session.close().await;
    (opened, closing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_serialises_sessions_two_slots_overlap() {
    let (base, _) = page_server().await;

    let browser = Arc::new(Browser::new(config("max_sessions: 1")));
    let a = tokio::spawn(one_run(browser.clone(), base.clone(), None));
    let b = tokio::spawn(one_run(browser.clone(), base.clone(), None));
    let (a, b) = (a.await.expect("run a"), b.await.expect("run b"));
    let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    assert!(
        second.0 >= first.1,
        "with max_sessions 1 the second session opened before the first one closed"
    );

    let browser = Arc::new(Browser::new(config("max_sessions: 2")));
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let a = tokio::spawn(one_run(
        browser.clone(),
        base.clone(),
        Some(barrier.clone()),
    ));
    let b = tokio::spawn(one_run(browser.clone(), base.clone(), Some(barrier)));
    let (a, b) = (a.await.expect("run a"), b.await.expect("run b"));
    assert!(
        a.0 < b.1 && b.0 < a.1,
        "with max_sessions 2 both sessions should be open at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_options_and_console_errors() {
    let (base, seen) = page_server().await;
    let browser = Browser::new(config("window: 1024x700\nlocale: de-DE\nmax_sessions: 1"));
    let session = browser.session().await.expect("session");

    session.client.goto(&base).await.expect("goto /");
    assert_eq!(session.client.title().await.expect("title"), "Support");
    let clean = session.console_errors().await;
    assert!(clean.is_empty(), "{clean:?}");
    let ua = lock(&seen.user_agent).first().cloned().unwrap_or_default();
    assert!(
        ua.contains(" Chrome/") && ua.ends_with(supportwatch::USER_AGENT),
        "user agent: {ua}"
    );
    assert!(!ua.contains("Headless"), "user agent: {ua}");
    let lang = lock(&seen.accept_language)
        .first()
        .cloned()
        .unwrap_or_default();
    assert!(lang.starts_with("de-DE"), "Accept-Language: {lang}");
    let shape = session
        .client
        .execute(
            "return [navigator.language, window.innerWidth, window.innerHeight]",
            vec![],
        )
        .await
        .expect("execute");
    assert_eq!(shape[0], "de-DE");
    assert_eq!(shape[1], 1024);

    session
        .client
        .goto(&format!("{base}/errors"))
        .await
        .expect("goto /errors");
    let errors = session.console_errors().await;
    assert!(
        errors.iter().any(|e| e.contains("boom-console")),
        "console.error missing: {errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("boom-thrown")),
        "uncaught exception missing: {errors:?}"
    );
    // chromedriver hands entries out once; the session keeps them.
    assert_eq!(session.console_errors().await, errors);
    session.close().await;
}

/// (width, height) from a PNG's IHDR chunk, if `bytes` is a PNG.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.len() < 24 || !bytes.starts_with(SIGNATURE) || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&bytes[16..20]), be(&bytes[20..24])))
}

fn set_mtime(dir: &Path, t: SystemTime) {
    let f = std::fs::File::open(dir).expect("open dir");
    f.set_times(std::fs::FileTimes::new().set_modified(t))
        .expect("set mtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_are_written_and_pruned() {
    let (base, _) = page_server().await;
    let root = tempfile::tempdir().expect("tempdir");
    let browser = Browser::new(config(&format!(
        "max_sessions: 1\nwindow: 800x600\nartifacts: {{ dir: {:?}, keep: 2, max_age: 1d }}",
        root.path()
    )));
    // A run from long ago, past max_age, and junk that is not a run directory.
    let old = root.path().join("feedback-form/ancient");
    std::fs::create_dir_all(&old).expect("old run");
    set_mtime(&old, SystemTime::now() - Duration::from_secs(30 * 86400));
    std::fs::write(root.path().join("feedback-form/notes.txt"), "keep me").expect("junk");

    let before = pool_stats().artifacts_written;
    let session = browser.session().await.expect("session");
    session.client.goto(&base).await.expect("goto");
    let mut last = None;
    for run in ["run-1", "run-2", "run-3"] {
        let saved = session
            .save_artifacts("feedback-form", run)
            .await
            .expect("artifacts");
        assert_eq!(saved.dir, root.path().join("feedback-form").join(run));
        last = Some(saved);
        // Distinct modification times, whatever the file system's resolution.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    session.close().await;

    let last = last.expect("saved");
    let png = std::fs::read(last.screenshot.expect("screenshot path")).expect("read png");
    let (w, h) = png_size(&png).expect("screenshot is a PNG");
    assert!(w > 0 && h > 0, "PNG of {w}x{h}");
    let html = std::fs::read_to_string(last.page.expect("page path")).expect("read html");
    assert!(html.contains("Contact us"), "page source: {html}");

    let mut left: Vec<String> = std::fs::read_dir(root.path().join("feedback-form"))
        .expect("check dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["notes.txt", "run-2", "run-3"]);
    assert!(pool_stats().artifacts_written >= before + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_driver_is_restarted() {
    let (base, _) = page_server().await;
    let browser = Browser::new(config("max_sessions: 2"));
    let session = browser.session().await.expect("session");
    session.client.goto(&base).await.expect("goto");
    let pid = browser.driver_pid().await.expect("a local chromedriver");
    let restarts = pool_stats().driver_restarts;

    let pgid = rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid");
    rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL).expect("kill group");
    assert!(
        eventually(Duration::from_secs(5), || group_members(pid, 0).is_empty()).await,
        "the group survived SIGKILL"
    );

    let err = session
        .client
        .title()
        .await
        .expect_err("the session's driver is gone");
    assert!(
        matches!(session.died(&err), Some(BrowserError::Died(_))),
        "not recognised as a dead browser: {err}"
    );
    session.close().await;

    let session = browser.session().await.expect("a session on a new driver");
    session.client.goto(&base).await.expect("goto");
    assert_eq!(session.client.title().await.expect("title"), "Support");
    assert_ne!(browser.driver_pid().await, Some(pid));
    assert!(pool_stats().driver_restarts > restarts);
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_marked_broken_is_kept_if_it_answers_and_replaced_if_not() {
    let (base, _) = page_server().await;
    let browser = Browser::new(config("max_sessions: 2"));

    // A run that timed out on a healthy driver: the health check passes, the warm driver stays.
    let session = browser.session().await.expect("session");
    let pid = browser.driver_pid().await.expect("a local chromedriver");
    session.mark_broken();
    session.close().await;
    let session = browser
        .session()
        .await
        .expect("session after a passed check");
    assert_eq!(
        browser.driver_pid().await,
        Some(pid),
        "a healthy driver was replaced"
    );

    // A driver that no longer answers (stopped, as if hung): replaced before the next session.
    let restarts = pool_stats().driver_restarts;
    session.mark_broken();
    let stopped = rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid");
    rustix::process::kill_process(stopped, rustix::process::Signal::STOP).expect("SIGSTOP");
    let started = Instant::now();
    let fresh = browser.session().await.expect("a session on a new driver");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_ne!(browser.driver_pid().await, Some(pid));
    assert!(pool_stats().driver_restarts > restarts);
    fresh.client.goto(&base).await.expect("goto");
    assert_eq!(fresh.client.title().await.expect("title"), "Support");
    fresh.close().await;
    // The hung driver went with its group, and closing its session does not hang.
    assert!(
        eventually(Duration::from_secs(5), || group_members(pid, 0).is_empty()).await,
        "the hung driver's group survived"
    );
    tokio::time::timeout(Duration::from_secs(15), session.close())
        .await
        .expect("closing a session of a dead driver");
}

#[tokio::test]
async fn missing_chromedriver_names_the_install_command() {
    let browser = Browser::new(config("chromedriver: /nonexistent/chromedriver"));
    let err = browser.session().await.err().expect("no driver");
    assert!(
        matches!(err, BrowserError::DriverNotFound { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "chromedriver not found at `/nonexistent/chromedriver`; \
         install it with `apt-get install chromium chromium-driver`"
    );
}

#[tokio::test]
async fn a_driver_that_dies_at_start_is_quoted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("chromedriver");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'Starting fake driver'\necho 'fatal: cannot load libfoo.so' >&2\nexit 3\n",
    )
    .expect("write script");
    let mut perms = std::fs::metadata(&fake).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&fake, perms).expect("chmod");

    let browser = Browser::new(config(&format!("chromedriver: {:?}", fake)));
    let err = browser.session().await.err().expect("the driver dies");
    let message = err.to_string();
    assert!(matches!(err, BrowserError::DriverStart(_)), "{err:?}");
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(
        message.contains("fatal: cannot load libfoo.so"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_chromium_is_a_session_error() {
    let browser = Browser::new(config("chromium: /nonexistent/chromium"));
    let err = browser.session().await.err().expect("no chromium");
    assert!(matches!(err, BrowserError::Session(_)), "{err:?}");
    let message = err.to_string();
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains("apt-get install chromium"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_session_leaves_no_chromium() {
    let (base, _) = page_server().await;
    let browser = Browser::new(config("max_sessions: 1"));

    // Dropped between commands.
    let session = browser.session().await.expect("session");
    session.client.goto(&base).await.expect("goto");
    let driver = browser.driver_pid().await.expect("a local chromedriver");
    assert!(
        !group_members(driver, driver).is_empty(),
        "no chromium seen"
    );
    drop(session);
    assert!(
        eventually(Duration::from_secs(10), || group_members(driver, driver)
            .is_empty())
        .await,
        "chromium left behind: {:?}",
        group_members(driver, driver)
    );

    // Dropped in the middle of a page load that never ends, as when the runner's timeout drops
    // the probe: deleting the session would wait for chromedriver's 5-minute page-load timeout.
    let session = browser.session().await.expect("second session");
    let before: HashSet<u32> = group_members(driver, driver).into_iter().collect();
    assert!(!before.is_empty());
    let stuck = tokio::time::timeout(
        Duration::from_secs(1),
        session.client.goto(&format!("{base}/hang")),
    )
    .await;
    assert!(stuck.is_err(), "the page load should still be going");
    drop(session);
    assert!(
        eventually(Duration::from_secs(15), || group_members(driver, driver)
            .is_empty())
        .await,
        "chromium left behind: {:?}",
        group_members(driver, driver)
    );
    // The slot came back: a third session opens at once.
    let session = tokio::time::timeout(Duration::from_secs(30), browser.session())
        .await
        .expect("the slot was released")
        .expect("third session");
    session.close().await;
    assert_eq!(
        browser.driver_pid().await,
        Some(driver),
        "the warm driver was kept"
    );
}

#[test]
fn pool_metrics_are_exported() {
    let text = supportwatch::metrics::Metrics::new().encode_text();
    for name in [
        "supportwatch_browser_sessions_active",
        "supportwatch_browser_sessions_waiting",
        "supportwatch_browser_driver_restarts_total",
        "supportwatch_browser_artifacts_written_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
    }
    common::promtool_check(&text);
}
