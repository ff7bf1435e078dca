//! `browser` checks and `form` checks with `via: browser`, in a real headless chromium driven by
//! chromedriver, against a loopback shop whose forms and widgets only work with JavaScript.
//!
//! Each test starts its own chromedriver (through the check's `Browser`) and keeps its failure
//! evidence in its own temporary directory.

mod common;

use common::browser_shop::{BrowserShop, start_browser_shop};
use std::path::{Path, PathBuf};
use std::time::Instant;
use supportwatch::outcome::FailureKind;
use supportwatch::outcome::{RunReport, RunResult};
use supportwatch::runner;

/// Browser runs at once across this binary's tests. Each run starts a chromium; a dozen at once
/// on a two-core machine make page loads outlast their step timeouts, which would test the
/// machine rather than the checks.
static BROWSER_RUNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs the first check of `checks` (YAML under `checks:`, `$SHOP` replaced by the shop's URL)
/// once, with failure evidence kept in `artifacts`.
async fn run(checks: &str, shop: &BrowserShop, artifacts: &Path) -> RunReport {
    let yaml = format!(
        "browser:\n  artifacts: {{ dir: \"{}\" }}\nchecks:\n{}",
        artifacts.display(),
        checks.replace("$SHOP", &shop.url(""))
    );
    let prepared = common::prepare(&yaml);
    let _turn = BROWSER_RUNS.acquire().await.expect("never closed");
    let started = Instant::now();
    let report = runner::execute(&prepared.checks[0], 1, None).await;
    eprintln!(
        "{}: {:?} in {:.2}s",
        report.check,
        report.result,
        started.elapsed().as_secs_f64()
    );
    report
}

/// The browser shop, and a directory of the test's own for failure evidence (and a Maildir).
struct TestBed {
    shop: BrowserShop,
    dir: tempfile::TempDir,
    /// Where runs keep their evidence: the directory itself, or `artifacts/` in it.
    artifacts: PathBuf,
}

impl TestBed {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        TestBed {
            shop: start_browser_shop().await,
            artifacts: dir.path().to_path_buf(),
            dir,
        }
    }

    /// Runs the first check of `checks` once (see [`run`]).
    async fn run(&self, checks: &str) -> RunReport {
        run(checks, &self.shop, &self.artifacts).await
    }

    /// Makes `support/` in the directory an empty Maildir that the shop mails callback requests
    /// to, and returns the `mailboxes:` section that declares it as mailbox `support`. Evidence
    /// goes to `artifacts/` from then on.
    fn deliver_to_support(&mut self) -> String {
        let maildir = self.dir.path().join("support");
        common::make_maildir(&maildir);
        self.shop.deliver_to(maildir.clone());
        self.artifacts = self.dir.path().join("artifacts");
        format!(
            "mailboxes:\n  support: {{ maildir: \"{}\", poll_interval: 100ms }}\n",
            maildir.display()
        )
    }
}

fn phases(report: &RunReport) -> Vec<&str> {
    report.phases.iter().map(|p| p.name.as_str()).collect()
}

/// The path after `prefix` in the report's details.
fn detail_path(report: &RunReport, prefix: &str) -> PathBuf {
    let line = report
        .details
        .iter()
        .find_map(|d| d.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` in {:#?}", report.details));
    PathBuf::from(line)
}

/// The callback widget's steps inside its iframe: a request carrying the run's token, and the
/// acknowledgement.
const WIDGET_REQUEST: &str = r##"      - fill: { selector: "#phone", text: "+7 900 000-00-00" }
      - fill: { selector: "#comment", text: "Automated test {{token}}, please ignore" }
      - click: "#send"
      - expect_text: { selector: ".result", pattern: "Мы перезвоним" }
"##;

/// A browser check `name` that runs once (`retries: 0`): `keys` are more of its keys (YAML lines
/// indented by four spaces, `timeout` among them), `steps` its steps (indented by six).
fn browser_check(name: &str, keys: &str, steps: &str) -> String {
    format!("\n  - name: {name}\n    kind: browser\n    retries: 0\n{keys}    steps:\n{steps}")
}

/// The browser check `callback-widget`: opens the shop's widget into its iframe, then `steps`.
fn widget_check(steps: &str) -> String {
    browser_check(
        "callback-widget",
        "    channel: callback\n    timeout: 60s\n    step_timeout: 15s\n",
        &format!(
            "      - open: \"$SHOP/widget\"\n      - click: \"#callback-button\"\n      - frame: \"iframe#widget\"\n{steps}"
        ),
    )
}

/// The steps of the feedback form built by a script.
const JS_FORM_STEPS: &str = r##"      - open: "$SHOP/feedback"
      - wait_for: { selector: "#message", state: visible }
      - fill: { selector: "#name", text: "Monitoring" }
      - select: { selector: "#topic", value: order }
      - fill: { selector: "#message", text: "Automated test {{token}}, please ignore" }
      - check: "#agree"
      - scroll_to: "#send"
      - click: "#send"
      - expect_text: { selector: ".result", pattern: "(?i)спасибо" }
"##;

#[tokio::test]
async fn a_javascript_form_is_filled_submitted_and_acknowledged() {
    let bed = TestBed::start().await;
    let js_form = browser_check(
        "js-feedback",
        "    channel: feedback_form\n    timeout: 60s\n",
        JS_FORM_STEPS,
    );
    let report = bed.run(&js_form).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert_eq!(
        phases(&report),
        [
            "session",
            "1_open",
            "2_wait_for",
            "3_fill",
            "4_select",
            "5_fill",
            "6_check",
            "7_scroll_to",
            "8_click",
            "9_expect_text"
        ]
    );
    // What the shop's API received from the page's script: the typed token, the chosen option,
    // the ticked box.
    let received = bed.shop.feedback();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        received[0],
        serde_json::json!({
            "name": "Monitoring",
            "topic": "order",
            "agree": true,
            "message": format!("Automated test {}, please ignore", report.token),
        })
    );
    assert_eq!(
        report.details,
        [format!("page {}", bed.shop.url("/feedback"))]
    );
    // Nothing kept for a passing run.
    assert_eq!(std::fs::read_dir(bed.dir.path()).expect("dir").count(), 0);
}

#[tokio::test]
async fn a_callback_widget_inside_an_iframe_is_opened_and_used() {
    let bed = TestBed::start().await;
    let checks = widget_check(&format!(
        "      - wait_for: {{ selector: \"#phone\", state: visible }}\n{WIDGET_REQUEST}      - frame: parent\n      - expect_text: {{ selector: \"h1\", pattern: \"^Магазин$\" }}\n"
    ));
    let report = bed.run(&checks).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert_eq!(
        bed.shop.callbacks(),
        [serde_json::json!({
            "phone": "+7 900 000-00-00",
            "comment": format!("Automated test {}, please ignore", report.token),
        })]
    );
}

#[tokio::test]
async fn deliver_proves_the_widget_request_reached_the_mailbox() {
    let mut bed = TestBed::start().await;
    let mailboxes = bed.deliver_to_support();
    let checks = format!(
        "{}    deliver: {{ mailbox: support, within: 10s }}\n{mailboxes}",
        widget_check(WIDGET_REQUEST)
    );
    let report = bed.run(&checks).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert_eq!(phases(&report).last(), Some(&"deliver"));
    let latency = common::delivery_latency(&report);
    // Counted from the start of the last click, so it includes that click's round trip.
    assert!(
        latency.is_some_and(|d| d.as_secs_f64() < 10.0),
        "{:?}",
        report.observations
    );
    common::assert_test_message_deleted(&report);
}

#[tokio::test]
async fn a_run_that_times_out_names_the_step_it_hung_in() {
    let bed = TestBed::start().await;
    let steps = r##"      - open: "$SHOP/never"
      - wait_for: { selector: "#chat-widget", timeout: 60s }
"##;
    let report = bed
        .run(&browser_check("hangs", "    timeout: 15s\n", steps))
        .await;
    assert_eq!(report.result, RunResult::Timeout);
    assert_eq!(
        report.failure.map(|f| f.message).as_deref(),
        Some("timed out after 15s during 2_wait_for")
    );
}

#[tokio::test]
async fn a_page_that_does_not_load_fails_its_open_step_as_connect() {
    let bed = TestBed::start().await;
    let port = common::closed_port();
    let steps = format!("      - open: \"http://127.0.0.1:{port}/\"\n      - click: \"#send\"\n");
    let report = bed
        .run(&browser_check("refused", "    timeout: 60s\n", &steps))
        .await;
    let failure = report.failure.clone().expect("must fail");
    assert_eq!(
        failure.message,
        format!(
            "step 1 (open http://127.0.0.1:{port}/): the page did not load: net::ERR_CONNECTION_REFUSED"
        )
    );
    assert_eq!(failure.kind, FailureKind::Connect);
}

#[tokio::test]
async fn a_page_whose_script_hangs_fails_the_step_and_the_run_still_ends() {
    let bed = TestBed::start().await;
    let steps = r##"      - open: "$SHOP/stuck"
      - sleep: 500ms
      - wait_for: { selector: "#chat", timeout: 2s }
"##;
    let report = bed
        .run(&browser_check("stuck", "    timeout: 60s\n", steps))
        .await;
    assert_eq!(report.result, RunResult::Failure, "{:?}", report.failure);
    assert_eq!(
        report.failure.map(|f| f.message).as_deref(),
        Some(
            "step 3 (wait_for \"#chat\"): the browser did not answer within 7s (a script on the page may be stuck)"
        )
    );
    assert_eq!(
        report.details,
        ["no evidence saved: the page did not answer"]
    );
}

/// PNG signature, then the IHDR chunk: length, type, width, height (big-endian).
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.len() > 24, "{} bytes", bytes.len());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[tokio::test]
async fn a_selector_that_never_appears_fails_its_step_after_the_timeout_with_evidence() {
    let bed = TestBed::start().await;
    let steps = r##"      - open: "$SHOP/never"
      - expect_text: { selector: "h1", pattern: "Чат" }
      - wait_for: { selector: "#chat-widget", state: visible, timeout: 2s }
      - click: "#chat-widget"
"##;
    let checks = browser_check("chat-never", "    channel: chat\n    timeout: 60s\n", steps);
    let started = Instant::now();
    let report = bed.run(&checks).await;
    let elapsed = started.elapsed();
    let failure = report.failure.clone().expect("must fail");
    assert_eq!(
        failure.message,
        "step 3 (wait_for \"#chat-widget\" visible): not on the page after 2s"
    );
    assert_eq!(failure.kind, FailureKind::Expectation);
    assert_eq!(report.result, RunResult::Failure);
    assert!(
        elapsed.as_secs_f64() >= 2.0,
        "waited the step's 2s: {elapsed:?}"
    );
    assert_eq!(
        phases(&report),
        [
            "session",
            "1_open",
            "2_expect_text",
            "3_wait_for",
            "artifacts"
        ]
    );
    let step = &report.phases[3];
    let waited = step.duration.expect("closed").as_secs_f64();
    assert!((2.0..4.0).contains(&waited), "3_wait_for took {waited}s");

    // The evidence: under <dir>/<check>/<token>/, a real PNG of the window and the page's HTML.
    let run_dir = bed.dir.path().join("chat-never").join(&report.token);
    let screenshot = detail_path(&report, "screenshot: ");
    let page = detail_path(&report, "page: ");
    assert_eq!(screenshot, run_dir.join("screenshot.png"));
    assert_eq!(page, run_dir.join("page.html"));
    // The directory is what alerts link to.
    assert!(
        report
            .observations
            .iter()
            .any(|o| matches!(o, supportwatch::outcome::Observation::Evidence(d) if *d == run_dir)),
        "{:?}",
        report.observations
    );
    let png = std::fs::read(&screenshot).expect("screenshot exists");
    let (width, height) = png_size(&png);
    assert_eq!(width, 1366, "the configured window width");
    assert!((400..=768).contains(&height), "height {height}");
    let html = std::fs::read_to_string(&page).expect("page.html exists");
    assert!(html.contains("never-page-marker"), "{html}");
}

#[tokio::test]
async fn javascript_errors_are_listed_and_fail_the_run_only_when_asked() {
    let bed = TestBed::start().await;
    let steps = r##"      - open: "$SHOP/broken-js"
      - expect_text: { selector: "#title", pattern: "Каталог" }
"##;
    let broken_js = browser_check("broken-js", "    timeout: 60s\n", steps);
    let report = bed.run(&broken_js).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    let errors: Vec<&str> = report
        .details
        .iter()
        .filter_map(|d| d.strip_prefix("console error: "))
        .collect();
    assert_eq!(errors.len(), 2, "{:#?}", report.details);
    assert!(
        errors[0].contains("cart widget failed to load"),
        "{errors:?}"
    );
    assert!(errors[1].contains("checkout is not defined"), "{errors:?}");

    let strict = broken_js.replace(
        "timeout: 60s",
        "timeout: 60s\n    fail_on_console_error: true",
    );
    let report = bed.run(&strict).await;
    let failure = report.failure.clone().expect("must fail");
    assert_eq!(failure.kind, FailureKind::Expectation);
    assert!(
        failure
            .message
            .starts_with("JavaScript error on the page: "),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("cart widget failed to load"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.ends_with(" (+1 more)"),
        "{}",
        failure.message
    );
    assert!(detail_path(&report, "screenshot: ").is_file());
}

#[tokio::test]
async fn a_form_via_browser_runs_its_steps_after_opening_the_url() {
    let bed = TestBed::start().await;
    let checks = r##"
  - name: js-contact
    kind: form
    via: browser
    channel: feedback_form
    retries: 0
    timeout: 60s
    url: "$SHOP/feedback"
    steps:
      - fill: { selector: "#message", text: "Automated test {{token}}, please ignore" }
      - click: "#send"
    expect: { body: "(?i)спасибо" }
"##;
    let report = bed.run(checks).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert_eq!(
        phases(&report),
        ["session", "1_open", "2_fill", "3_click", "4_expect_text"]
    );
    let received = bed.shop.feedback();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        received[0]["message"],
        format!("Automated test {}, please ignore", report.token)
    );
}

/// Loads `yaml` as `test.yaml`; it must fail with exactly `expected`.
fn config_error(yaml: &str) -> String {
    match supportwatch::config::load_sources(&[(PathBuf::from("test.yaml"), yaml.to_string())]) {
        Ok(_) => panic!("config must be refused:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_steps_are_refused_at_load_with_their_number_and_what_is_allowed() {
    let yaml = r##"checks:
  - name: typo
    kind: browser
    steps:
      - open: "https://shop.example/"
      - clik: "#send"
  - name: bad-selector
    kind: browser
    steps:
      - open: "https://shop.example/"
      - fill: { selector: "#phone[", text: "x" }
  - name: no-open
    kind: browser
    steps:
      - click: "#send"
  - name: no-token
    kind: browser
    deliver: { mailbox: support }
    steps:
      - open: "https://shop.example/"
      - fill: { selector: "#message", text: "hello" }
  - name: form-mixed
    kind: form
    via: browser
    url: "https://shop.example/"
    fields: { message: "x" }
    steps:
      - click: "#send"
  - name: form-no-steps
    kind: form
    via: browser
    url: "https://shop.example/"
mailboxes:
  support: { maildir: /tmp/supportwatch-test-maildir }
"##;
    assert_eq!(
        config_error(yaml),
        "test.yaml:2:5: check \"typo\": step 2: unknown action `clik` (did you mean `click`?); a step is one of `open`, `click`, `fill`, `select`, `check`, `scroll_to`, `wait_for`, `frame`, `expect_text`, `sleep`\n\
         test.yaml:7:5: check \"bad-selector\": step 2 (fill): invalid CSS selector `#phone[`: Unexpected EOL\n\
         test.yaml:12:5: check \"no-open\": steps must start with `open` (step 1 is `click`): add `- open: URL` first\n\
         test.yaml:16:5: check \"no-token\": deliver needs the run's token in what the steps type: put {{token}} in a fill step, e.g. fill: { selector: \"#message\", text: \"Automated test {{token}}, please ignore\" }\n\
         test.yaml:22:5: check \"form-mixed\": `fields` is for via: http; with via: browser, type into the page with `fill` steps\n\
         test.yaml:29:5: check \"form-no-steps\": via: browser needs `steps`, e.g. steps: [ { fill: { selector: \"#message\", text: \"Automated test {{token}}, please ignore\" } }, { click: \"#send\" } ]\n\
         6 problems in the config"
    );
}

#[test]
fn a_typo_inside_a_browser_check_is_refused() {
    let err = config_error(
        "checks:\n  - name: b\n    kind: browser\n    step_timout: 5s\n    steps: [ { open: \"https://shop.example/\" } ]\n",
    );
    assert!(
        err.contains("unknown field `step_timout`")
            && err.contains("(did you mean `step_timeout`?)"),
        "{err}"
    );
}

/// chromedriver (and its chromium) killed while a run is on a page: that run fails saying the
/// browser died, and the next run of the same check gets a restarted driver and passes.
#[tokio::test]
async fn a_driver_killed_mid_run_fails_that_run_and_the_next_run_passes() {
    use axum::routing::get;
    let dir = tempfile::tempdir().expect("tempdir");
    // A wrapper records chromedriver's pid, which is also its process group (the pool starts it
    // in a group of its own), so the test kills exactly this test's driver and browsers.
    let pid_file = dir.path().join("driver.pid");
    let wrapper = dir.path().join("chromedriver-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho $$ > '{}'\nexec chromedriver \"$@\"\n",
            pid_file.display()
        ),
    )
    .expect("write wrapper");
    let mut perms = std::fs::metadata(&wrapper).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&wrapper, perms).expect("chmod");

    // The page tells the test when the browser asks for it.
    let (visited_tx, mut visited) = tokio::sync::mpsc::unbounded_channel::<()>();
    let app = axum::Router::new().route(
        "/page",
        get(move || {
            let _ = visited_tx.send(());
            async { axum::response::Html("<!doctype html><title>p</title><div id=\"x\">ok</div>") }
        }),
    );
    let addr = common::serve(app).await;

    let yaml = format!(
        r##"
browser:
  chromedriver: "{wrapper}"
  artifacts: {{ dir: "{artifacts}" }}
checks:
  - name: survives-a-driver-crash
    kind: browser
    retries: 0
    timeout: 60s
    steps:
      - open: "http://{addr}/page"
      - sleep: 2s
      - wait_for: "#x"
"##,
        wrapper = wrapper.display(),
        artifacts = dir.path().join("artifacts").display(),
    );
    let prepared = common::prepare(&yaml);
    let _turn = BROWSER_RUNS.acquire().await.expect("never closed");
    let check = prepared.checks[0].clone();
    let first = tokio::spawn(async move { runner::execute(&check, 1, None).await });
    tokio::time::timeout(std::time::Duration::from_secs(60), visited.recv())
        .await
        .expect("the browser opened the page")
        .expect("channel");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert!(
        pid > 1 && comm.trim() == "chromedriver",
        "pid {pid} is {comm:?}"
    );
    let group = rustix::process::Pid::from_raw(pid).expect("a positive pid");
    rustix::process::kill_process_group(group, rustix::process::Signal::KILL)
        .expect("killed the driver's process group");
    let first = first.await.expect("run task");
    assert_eq!(first.result, RunResult::Failure, "{first:#?}");
    let failure = first.failure.expect("failed");
    assert_eq!(failure.kind, FailureKind::Internal, "{}", failure.message);
    assert!(
        failure.message.contains("the browser died during the run"),
        "{}",
        failure.message
    );

    let second = runner::execute(&prepared.checks[0], 2, None).await;
    assert_eq!(second.result, RunResult::Success, "{second:#?}");
    let new_pid = std::fs::read_to_string(&pid_file).expect("pid file");
    assert_ne!(
        new_pid.trim(),
        pid.to_string(),
        "a fresh chromedriver was started"
    );
}

/// A `callback` check with `via: browser`: the widget's request proven in the support mailbox.
#[tokio::test]
async fn a_callback_check_via_browser_proves_the_request_arrived() {
    let mut bed = TestBed::start().await;
    let mailboxes = bed.deliver_to_support();
    let checks = format!(
        r##"
  - name: callback-request
    kind: callback
    via: browser
    retries: 0
    timeout: 60s
    step_timeout: 15s
    url: "$SHOP/widget"
    steps:
      - click: "#callback-button"
      - frame: "iframe#widget"
{WIDGET_REQUEST}    deliver: {{ mailbox: support, within: 10s }}
{mailboxes}"##
    );
    let report = bed.run(&checks).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert_eq!(report.channel, "callback");
    assert_eq!(phases(&report).last(), Some(&"deliver"));
    assert!(
        common::delivery_latency(&report).is_some(),
        "{:?}",
        report.observations
    );
}
