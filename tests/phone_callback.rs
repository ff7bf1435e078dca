//! Registered lines (`register: true`) and callbacks proven by the call itself, against a real
//! Kamailio (registrar and proxy with digest authentication, `common::sipserver`) and SIPp as
//! the shop's dialer (`tests/fixtures/sipp/dial_*.xml`, `common::sipp`).
//!
//! The line component is driven directly here (fast retry timings); the daemon wires the same
//! [`Lines`] to its config. SIPp exits 0 only when its call went as its scenario says (rung,
//! answered and hung up by us; or refused with 480), which is how the tests see the far side.

mod common;

use axum::Router;
use axum::extract::{Form, State};
use axum::response::Html;
use axum::routing::get;
use common::sipp::Sipp;
use common::sipserver::SipServer;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use supportwatch::outcome::{FailureKind, Observation};
use supportwatch::sip::PhoneSpec;
use supportwatch::sip::line::{IncomingCall, LineStats, Lines, Pickup, Timing};

const MONITOR: (&str, &str) = ("monitor", "monitor-secret");
const SHOP: (&str, &str) = ("shop", "shop-secret");

fn timing() -> Timing {
    Timing {
        expires: 60,
        keepalive: Duration::from_millis(500),
        backoff: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
        hold: Duration::from_millis(300),
    }
}

/// The `phones:` of a config with account `line` registered at `server` over UDP.
fn phones(server: &SipServer) -> BTreeMap<String, PhoneSpec> {
    phones_over(server, false)
}

/// The `phones:` of a config with account `line` registered at `server` (over TCP with `tcp`).
fn phones_over(server: &SipServer, tcp: bool) -> BTreeMap<String, PhoneSpec> {
    let yaml = format!(
        "phones:\n  line:\n    proxy: \"{}\"\n    user: monitor\n    password: \"${{LINE_PASSWORD}}\"\n    \
         register: true\nchecks:\n  - name: pbx\n    kind: phone\n    via: options\n    phone: line\n",
        server.uri(None, tcp)
    );
    common::prepare_with(&yaml, &[("LINE_PASSWORD", MONITOR.1)])
        .config
        .phones
}

/// The `phones:` of a config with account `line` registered at `server`'s TLS listener
/// (`sips:`), trusting the server's CA.
fn phones_tls(server: &SipServer) -> BTreeMap<String, PhoneSpec> {
    let ca_file = &server.tls.as_ref().expect("a TLS listener").ca_file;
    let yaml = format!(
        "phones:\n  line:\n    proxy: \"{}\"\n    user: monitor\n    domain: 127.0.0.1\n    \
         ca_file: \"{}\"\n    password: \"${{LINE_PASSWORD}}\"\n    register: true\n\
         checks:\n  - name: pbx\n    kind: phone\n    via: options\n    phone: line\n",
        server.sips_uri(None),
        ca_file.display()
    );
    common::prepare_with(&yaml, &[("LINE_PASSWORD", MONITOR.1)])
        .config
        .phones
}

fn stats(lines: &Lines) -> LineStats {
    lines
        .stats()
        .into_iter()
        .find(|(n, _)| n == "line")
        .map(|(_, s)| s)
        .unwrap_or_default()
}

/// Waits (generously) until `lines`' account is registered or not.
async fn until_up(lines: &Lines, up: bool, server: &SipServer) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stats(lines).up != up {
        assert!(
            tokio::time::Instant::now() < deadline,
            "line never went {}: {:?}\n{}",
            if up { "up" } else { "down" },
            stats(lines),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether some UDP socket on this host is connected to 127.0.0.1:`port` (the line's socket is
/// the only one connected to the test's Kamailio; SIPp's sockets are not connected).
fn socket_connected_to(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(2) == Some(remote.as_str()))
}

async fn finish(sipp: Sipp) -> common::sipp::Finished {
    tokio::task::spawn_blocking(move || sipp.finish(Duration::from_secs(30)))
        .await
        .unwrap()
}

/// A run waits on the line `line` while the shop's dialer (SIPp running `scenario` through the
/// server) calls `monitor` a moment later: what the wait got, and the SIPp to finish.
async fn dial_while_waiting(
    lines: &Lines,
    server: &SipServer,
    scenario: &str,
) -> (Result<Option<IncomingCall>, String>, Sipp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let waiting = lines.wait("line", Pickup::Answer, deadline);
    let dial = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Sipp::dial(scenario, server.port, "monitor", SHOP.0, SHOP.1)
    };
    tokio::join!(waiting, dial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_line_takes_the_awaited_call_and_refuses_a_stray_one() {
    let server = SipServer::start(&[MONITOR, SHOP]);
    let lines = Lines::new(timing());
    lines.apply(&phones(&server)).await;
    until_up(&lines, true, &server).await;
    assert!(socket_connected_to(server.port));

    // A call while no run waits: 480, counted, not a proof.
    let stray = Sipp::dial("dial_refused.xml", server.port, "monitor", SHOP.0, SHOP.1);
    let stray = finish(stray).await;
    assert_eq!(stray.code, Some(0), "{}\n{}", stray.log, server.log());
    assert_eq!(stats(&lines).unexpected_calls, 1);

    // A run waits; the shop dials: the call is the run's, answered and hung up.
    let (call, sipp) = dial_while_waiting(&lines, &server, "dial_answered.xml").await;
    let call = call.unwrap().expect("the call reached the line");
    assert_eq!(call.user.as_deref(), Some("shop"));
    assert_eq!(call.display.as_deref(), Some("Shop Dialer"));
    assert_eq!(call.caller_id(), "\"Shop Dialer\" <shop>");
    let answered = finish(sipp).await;
    assert_eq!(answered.code, Some(0), "{}\n{}", answered.log, server.log());
    assert_eq!(stats(&lines).unexpected_calls, 1);

    // No call: the wait ends at its deadline with nothing.
    let short = tokio::time::Instant::now() + Duration::from_millis(300);
    assert!(
        lines
            .wait("line", Pickup::Answer, short)
            .await
            .unwrap()
            .is_none()
    );
    assert!(lines.wait("other", Pickup::Answer, short).await.is_err());

    // Stopping closes the line's socket.
    lines.stop_all().await;
    assert!(!socket_connected_to(server.port));
    assert!(lines.stats().is_empty());
}

/// The line registered over TCP: the shop's call comes back on the line's own connection (the
/// registrar cannot open one to it), is rung and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_registered_over_tcp_takes_the_awaited_call() {
    let server = SipServer::start(&[MONITOR, SHOP]);
    let lines = Lines::new(timing());
    lines.apply(&phones_over(&server, true)).await;
    until_up(&lines, true, &server).await;
    let (call, sipp) = dial_while_waiting(&lines, &server, "dial_answered.xml").await;
    let call = call.unwrap();
    let answered = finish(sipp).await;
    assert!(call.is_some(), "{}\n{}", answered.log, server.log());
    assert_eq!(answered.code, Some(0), "{}\n{}", answered.log, server.log());
    assert_eq!(stats(&lines).unexpected_calls, 0);
    lines.stop_all().await;
}

/// The line registered over TLS: the shop dials over UDP, Kamailio relays the INVITE down the
/// line's own TLS connection (it cannot open one to the line), and the call is rung and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_registered_over_tls_takes_the_awaited_call() {
    let server = SipServer::start_tls(&[MONITOR, SHOP], &[]);
    let lines = Lines::new(timing());
    lines.apply(&phones_tls(&server)).await;
    until_up(&lines, true, &server).await;
    assert!(server.registered("monitor"), "{}", server.log());
    let (call, sipp) = dial_while_waiting(&lines, &server, "dial_answered.xml").await;
    let call = call.unwrap();
    let answered = finish(sipp).await;
    assert!(call.is_some(), "{}\n{}", answered.log, server.log());
    assert_eq!(call.unwrap().user.as_deref(), Some("shop"));
    assert_eq!(answered.code, Some(0), "{}\n{}", answered.log, server.log());
    assert_eq!(stats(&lines).unexpected_calls, 0);
    lines.stop_all().await;
}

/// The caller puts the answered callback on hold with a re-INVITE: the line answers it 200
/// with its SDP (SIPp checks the body and CSeq) and still hangs up as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_invite_on_an_answered_callback_is_answered() {
    let server = SipServer::start(&[MONITOR, SHOP]);
    // Held long enough for the re-INVITE to come before our BYE.
    let lines = Lines::new(Timing {
        hold: Duration::from_secs(2),
        ..timing()
    });
    lines.apply(&phones(&server)).await;
    until_up(&lines, true, &server).await;
    let (call, sipp) = dial_while_waiting(&lines, &server, "dial_reinvite.xml").await;
    let dialed = finish(sipp).await;
    assert!(call.unwrap().is_some(), "{}\n{}", dialed.log, server.log());
    assert_eq!(dialed.code, Some(0), "{}\n{}", dialed.log, server.log());
    lines.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_registration_is_noticed_and_restored() {
    let server = SipServer::start(&[MONITOR, SHOP]);
    let port = server.port;
    let lines = Lines::new(timing());
    lines.apply(&phones(&server)).await;
    until_up(&lines, true, &server).await;
    assert_eq!(stats(&lines).failures, 0);

    drop(server);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stats(&lines).up {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lost registrar went unnoticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stats(&lines).failures >= 1);

    let server = SipServer::start_on(&[MONITOR, SHOP], port);
    until_up(&lines, true, &server).await;
    lines.stop_all().await;
    assert!(!socket_connected_to(port));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_keeps_the_line_down_and_counts_failures() {
    let server = SipServer::start(&[("monitor", "another-secret"), SHOP]);
    let lines = Lines::new(timing());
    lines.apply(&phones(&server)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stats(&lines).failures < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            stats(&lines)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!stats(&lines).up);
    lines.stop_all().await;
}

/// The test shop: a callback form whose backend has SIPp call `service` through the SIP server
/// at `sip_port` (or, with `dial: false`, forgets the request). The dialer is kept to be checked.
#[derive(Clone)]
struct Shop {
    dial: bool,
    sip_port: u16,
    dialer: Arc<Mutex<Option<Sipp>>>,
}

async fn page() -> Html<&'static str> {
    Html(
        r#"<html><body><form id="callback" method="post" action="/callback">
<input name="phone" required><input name="comment">
<button type="submit">Call me back</button></form></body></html>"#,
    )
}

async fn submit(State(shop): State<Shop>, Form(form): Form<HashMap<String, String>>) -> String {
    let number = form.get("phone").cloned().unwrap_or_default();
    if shop.dial {
        // The telephony integration dials the number it was given, a moment after the form.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let sipp = Sipp::dial("dial_answered.xml", shop.sip_port, &number, SHOP.0, SHOP.1);
            *shop.dialer.lock().unwrap_or_else(|e| e.into_inner()) = Some(sipp);
        });
    }
    "Thank you, we will call you back today".into()
}

async fn start_shop(dial: bool, sip_port: u16) -> (SocketAddr, Shop) {
    let shop = Shop {
        dial,
        sip_port,
        dialer: Arc::default(),
    };
    let app = Router::new()
        .route("/", get(page))
        .route("/callback", axum::routing::post(submit))
        .with_state(shop.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The shop serves until the test process ends.
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, shop)
}

/// A callback check of `shop` whose proof is a call to the registered account `line`.
fn callback_yaml(server: &SipServer, shop: SocketAddr, deliver: &str) -> String {
    format!(
        r#"
phones:
  line: {{ proxy: "{proxy}", user: monitor, password: "${{LINE_PASSWORD}}", number: monitor, register: true }}
checks:
  - name: callback
    kind: callback
    url: "http://{shop}/"
    form: "form#callback"
    fields: {{ phone: "monitor", comment: "Automated test {{{{token}}}}" }}
    expect: {{ status: 200, body: "call you back" }}
    deliver: {deliver}
    timeout: 10s
    retries: 0
"#,
        proxy = server.uri(None, false)
    )
}

/// A callback run proven by the call on the lines its checks wait on (as a daemon's do), then
/// one whose backend never dials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_is_proven_by_the_call_and_fails_when_none_comes() {
    let server = SipServer::start(&[MONITOR, SHOP]);
    let (shop, state) = start_shop(true, server.port).await;
    let yaml = callback_yaml(&server, shop, "{ call: line, within: 20s }");
    let lines = Arc::new(Lines::new(timing()));
    let prepared = common::prepare_on_lines(&yaml, &[("LINE_PASSWORD", MONITOR.1)], lines.clone());
    lines.apply(&prepared.config.phones).await;
    until_up(&lines, true, &server).await;

    let report = supportwatch::runner::execute(&prepared.checks[0], 1, None).await;
    assert!(
        report.failure.is_none(),
        "{:?} {:?}\n{}",
        report.failure,
        report.details,
        server.log()
    );
    let ring = report.observations.iter().find_map(|o| match o {
        Observation::PhoneRing(d) => Some(*d),
        _ => None,
    });
    assert!(
        ring.is_some_and(|d| d >= Duration::from_millis(200) && d < Duration::from_secs(20)),
        "{ring:?}"
    );
    assert!(
        report
            .details
            .iter()
            .any(|d| d.contains("a call from \"Shop Dialer\" <shop> rang phone line")),
        "{:?}",
        report.details
    );
    let sipp = state
        .dialer
        .lock()
        .unwrap()
        .take()
        .expect("the backend dialed");
    let dialed = finish(sipp).await;
    assert_eq!(dialed.code, Some(0), "{}", dialed.log);

    // A backend that accepts the form and never dials.
    let (quiet, quiet_state) = start_shop(false, server.port).await;
    let yaml = callback_yaml(&server, quiet, "{ call: line, within: 2s }");
    let prepared = common::prepare_on_lines(&yaml, &[("LINE_PASSWORD", MONITOR.1)], lines.clone());
    let report = supportwatch::runner::execute(&prepared.checks[0], 1, None).await;
    let failure = report.failure.expect("no call, no pass");
    assert_eq!(failure.kind, FailureKind::NotDelivered);
    assert!(
        failure.message.contains("no call to line within 2s"),
        "{}",
        failure.message
    );
    assert!(quiet_state.dialer.lock().unwrap().is_none());
    lines.stop("line").await;
    assert!(!socket_connected_to(server.port));
}

#[test]
fn deliver_call_needs_a_registered_account() {
    let yaml = "phones:\n  line: { proxy: \"sip:127.0.0.1\", user: monitor }\nchecks:\n  - name: cb\n    \
                kind: callback\n    url: \"http://127.0.0.1:1/\"\n    form: form\n    \
                deliver: { call: line }\n  - name: cb2\n    kind: callback\n    \
                url: \"http://127.0.0.1:1/\"\n    form: form\n    \
                deliver: { call: nowhere, answer: false, reject: 500 }\n";
    let errors = supportwatch::config::load_sources(&[(
        std::path::PathBuf::from("test.yaml"),
        yaml.to_string(),
    )])
    .expect_err("refused")
    .to_string();
    assert!(
        errors.contains("deliver: call `line` needs `register: true` on the account"),
        "{errors}"
    );
    assert!(
        errors.contains("deliver: reject is 500; use 486 or 603"),
        "{errors}"
    );
}

/// `HH:MM` in UTC, `offset` seconds from now.
fn utc_hhmm(offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let day = (now + offset).rem_euclid(86_400);
    format!("{:02}:{:02}", day / 3600, (day % 3600) / 60)
}

/// Outside active hours with `outside_hours: no_call`, a call is a failure and silence a pass.
/// The hours are placed around the real clock (closed now), so the time of day does not matter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_active_hours_no_call_is_expected() {
    let server = SipServer::start(&[MONITOR, SHOP]);
    let closed_now = format!("daily {}-{} UTC", utc_hhmm(6 * 3600), utc_hhmm(7 * 3600));
    let yaml = |shop: SocketAddr| {
        callback_yaml(
            &server,
            shop,
            "{ call: night, within: 3s, outside_hours: no_call }",
        )
        .replace("  line: {", "  night: {")
        .replace(
            "    timeout: 10s\n",
            &format!(
                "    timeout: 10s\n    active_hours: \"{closed_now}\"\n    \
                     outside_hours: {{ status: 200, body: \"call you back\" }}\n"
            ),
        )
    };
    let (quiet, _) = start_shop(false, server.port).await;
    let lines = Arc::new(Lines::new(timing()));
    let vars = [("LINE_PASSWORD", MONITOR.1)];
    let prepared = common::prepare_on_lines(&yaml(quiet), &vars, lines.clone());
    lines.apply(&prepared.config.phones).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !lines.stats().iter().any(|(n, s)| n == "night" && s.up) {
        assert!(tokio::time::Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = supportwatch::runner::execute(&prepared.checks[0], 1, None).await;
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert!(
        report
            .details
            .iter()
            .any(|d| d == "no call to night within 3s, as expected outside active hours"),
        "{:?}",
        report.details
    );

    let (dialing, state) = start_shop(true, server.port).await;
    let prepared = common::prepare_on_lines(&yaml(dialing), &vars, lines.clone());
    let report = supportwatch::runner::execute(&prepared.checks[0], 1, None).await;
    let failure = report.failure.expect("a call outside hours fails");
    assert_eq!(failure.kind, FailureKind::Expectation);
    assert!(
        failure
            .message
            .contains("rang phone night outside active hours"),
        "{}",
        failure.message
    );
    let sipp = state
        .dialer
        .lock()
        .unwrap()
        .take()
        .expect("the backend dialed");
    assert_eq!(finish(sipp).await.code, Some(0));
    lines.stop_all().await;
}

/// `GET /metrics` of `daemon` until it holds `line`, within 30 s.
/// A `callback` check driven in a browser (the browser shop's widget in its iframe), proven by a
/// call to the registered account `night`, with hours `active_hours` and `deliver`.
fn browser_callback_yaml(
    server: &SipServer,
    shop: &common::browser_shop::BrowserShop,
    artifacts: &std::path::Path,
    active_hours: &str,
    deliver: &str,
) -> String {
    format!(
        r##"
browser:
  artifacts: {{ dir: "{artifacts}" }}
phones:
  night: {{ proxy: "{proxy}", user: monitor, password: "${{LINE_PASSWORD}}", number: monitor, register: true }}
checks:
  - name: widget-callback
    kind: callback
    via: browser
    url: "{url}"
    steps:
      - click: "#callback-button"
      - frame: "iframe#widget"
      - fill: {{ selector: "#phone", text: "{{{{phone.night.number}}}}" }}
      - fill: {{ selector: "#comment", text: "Automated test {{{{token}}}}, please ignore" }}
      - click: "#send"
      - expect_text: {{ selector: ".result", pattern: "Мы перезвоним" }}
    step_timeout: 15s
    active_hours: "{active_hours}"
    deliver: {deliver}
    timeout: 60s
    retries: 0
"##,
        artifacts = artifacts.display(),
        proxy = server.uri(None, false),
        url = shop.url("/widget"),
    )
}

/// A browser-driven callback form outside active hours with `outside_hours: no_call`, as an
/// HTTP-driven one: silence passes, a call fails. The hours are placed around the real clock
/// (closed now). Hours on a browser form that decide nothing are refused at load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_callback_outside_active_hours_expects_no_call() {
    let server = SipServer::start(&[MONITOR, SHOP]);
    let shop = common::browser_shop::start_browser_shop().await;
    let artifacts = tempfile::tempdir().unwrap();
    let closed_now = format!("daily {}-{} UTC", utc_hhmm(6 * 3600), utc_hhmm(7 * 3600));
    let yaml = browser_callback_yaml(
        &server,
        &shop,
        artifacts.path(),
        &closed_now,
        "{ call: night, within: 3s, outside_hours: no_call }",
    );
    let lines = Arc::new(Lines::new(timing()));
    let vars = [("LINE_PASSWORD", MONITOR.1)];
    let prepared = common::prepare_on_lines(&yaml, &vars, lines.clone());
    lines.apply(&prepared.config.phones).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !lines.stats().iter().any(|(n, s)| n == "night" && s.up) {
        assert!(tokio::time::Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The shop forgets the request: no call, which is what the night promises.
    let report = supportwatch::runner::execute(&prepared.checks[0], 1, None).await;
    assert!(
        report.failure.is_none(),
        "{:?} {:?}",
        report.failure,
        report.details
    );
    assert!(
        report
            .details
            .iter()
            .any(|d| d == "no call to night within 3s, as expected outside active hours"),
        "{:?}",
        report.details
    );
    let received = shop.callbacks();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        received[0]["comment"],
        format!("Automated test {}, please ignore", report.token)
    );

    // The shop calls back at night: the run fails, and the call was answered and hung up.
    shop.dial_on_callback(server.port, SHOP.0, SHOP.1);
    let report = supportwatch::runner::execute(&prepared.checks[0], 2, None).await;
    let failure = report.failure.expect("a call outside hours fails");
    assert_eq!(failure.kind, FailureKind::Expectation);
    assert!(
        failure
            .message
            .contains("rang phone night outside active hours"),
        "{}",
        failure.message
    );
    let sipp = shop.take_dialer().expect("the backend dialed");
    assert_eq!(finish(sipp).await.code, Some(0));
    lines.stop_all().await;

    // Hours that would decide nothing on a browser form are refused.
    let plain = browser_callback_yaml(
        &server,
        &shop,
        artifacts.path(),
        &closed_now,
        "{ call: night, within: 3s }",
    );
    let errors = supportwatch::config::load_sources(&[(
        std::path::PathBuf::from("test.yaml"),
        plain.replace("${LINE_PASSWORD}", "x"),
    )])
    .expect_err("refused")
    .to_string();
    assert!(
        errors.contains(
            "`active_hours` is for via: http; with via: browser, it only decides \
             `deliver: { call, outside_hours: no_call }`"
        ),
        "{errors}"
    );
}

async fn until_scraped(daemon: &common::daemon::TestDaemon, line: &str, log: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = daemon.get_text("/metrics").await;
        if metrics.lines().any(|l| l == line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no `{line}` on /metrics within 30 s:\n{metrics}\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (generously) until Kamailio's location table has `user`'s contact or not.
async fn until_registered(server: &SipServer, user: &str, registered: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let port = server.port;
        let user_owned = user.to_string();
        let now = tokio::task::spawn_blocking(move || {
            common::sipserver::registered_at(port, &user_owned)
        })
        .await
        .unwrap();
        if now == registered {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{user} never became {}registered at Kamailio\n{}",
            if registered { "" } else { "un" },
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The real daemon registers a `register: true` account (over TCP), shows it on /metrics,
/// notices the registrar going away and coming back, and unregisters the account when a reload
/// removes it. A lost registration is the shop's problem, not supportwatch's: /healthz stays
/// `ok` while the gauge (and the `SipRegistrationDown` alert on it) says the line is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_registers_its_account_and_follows_the_registrar() {
    let server = SipServer::start(&[MONITOR, SHOP]);
    let port = server.port;
    let dir = common::daemon::ConfigDir::new();
    std::fs::write(dir.path().join("line.secret"), MONITOR.1).unwrap();
    dir.write(
        "phones.yaml",
        &format!(
            "phones:\n  line:\n    proxy: \"{}\"\n    user: monitor\n    \
             password: \"${{file:{}}}\"\n    register: true\n",
            server.uri(None, true),
            dir.path().join("line.secret").display()
        ),
    );
    dir.write(
        "checks.yaml",
        &format!(
            "checks:\n  - name: pbx\n    kind: phone\n    via: options\n    \
             target: \"{}\"\n    interval: 1h\n",
            server.uri(None, false)
        ),
    );
    let daemon = dir.start().await;
    let up = "supportwatch_sip_registration_up{phone=\"line\"} 1";
    let down = "supportwatch_sip_registration_up{phone=\"line\"} 0";
    until_scraped(&daemon, up, &server.log()).await;
    until_registered(&server, "monitor", true).await;
    assert!(daemon.lines.holds("line"));

    // The registrar goes away: the TCP connection drops, the line is down at once.
    let log = server.log();
    drop(server);
    until_scraped(&daemon, down, &log).await;
    let health = daemon.get_text("/healthz").await;
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let failures = daemon.get_text("/metrics").await;
    assert!(
        failures.lines().any(|l| l
            .starts_with("supportwatch_sip_registration_failures_total{phone=\"line\"} ")
            && !l.ends_with(" 0")),
        "{failures}"
    );

    // Back on its port, the registrar sees the account again (its table started empty).
    let server = SipServer::start_on(&[MONITOR, SHOP], port);
    until_scraped(&daemon, up, &server.log()).await;
    until_registered(&server, "monitor", true).await;

    // A reload that drops the account unregisters it and takes the series away.
    std::fs::remove_file(dir.path().join("phones.yaml")).unwrap();
    daemon.reload().await.expect("the reload is accepted");
    until_registered(&server, "monitor", false).await;
    assert!(!daemon.lines.holds("line"));
    let metrics = daemon.get_text("/metrics").await;
    assert!(!metrics.contains("sip_registration_up"), "{metrics}");
    assert!(daemon.stop().await);
}

/// Reads one SIP message (head and `Content-Length` body) from a stream, with what is left over.
async fn read_message(tcp: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> String {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let body = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + body {
                let message: Vec<u8> = buf.drain(..end + 4 + body).collect();
                return String::from_utf8_lossy(&message).to_string();
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.expect("read from the line");
        assert!(n > 0, "the line closed its connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_default()
        .trim()
}

/// Over TCP nothing resends a request, so an INVITE that reaches the line while its REGISTER
/// is still unanswered must be kept and served after it. A scripted registrar on TCP holds the
/// REGISTER's answer, sends the shop's INVITE first, then answers the REGISTER.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp_an_invite_during_a_register_transaction_is_not_lost() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let yaml = format!(
        "phones:\n  line: {{ proxy: \"sip:127.0.0.1:{port};transport=tcp\", user: monitor, \
         register: true }}\nchecks:\n  - name: pbx\n    kind: phone\n    via: options\n    phone: line\n"
    );
    let phones = common::prepare(&yaml).config.phones;
    // The registrar: one connection, scripted; it returns what the line answered the INVITE,
    // and the connection.
    let registrar = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let register = read_message(&mut tcp, &mut buf).await;
        assert!(register.starts_with("REGISTER "), "{register}");
        // Long enough for the test's run to wait on the line.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let invite = format!(
            "INVITE sip:monitor@127.0.0.1:{port};transport=tcp SIP/2.0\r\n\
             Via: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bKshopcall1\r\n\
             Max-Forwards: 70\r\nFrom: \"Shop Dialer\" <sip:shop@127.0.0.1>;tag=shop1\r\n\
             To: <sip:monitor@127.0.0.1>\r\nCall-ID: shop-call-1\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:shop@127.0.0.1:{port};transport=tcp>\r\nContent-Length: 0\r\n\r\n"
        );
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=reg1\r\nCall-ID: {}\r\n\
             CSeq: {}\r\nContact: {};expires=300\r\nContent-Length: 0\r\n\r\n",
            header(&register, "Via"),
            header(&register, "From"),
            header(&register, "To"),
            header(&register, "Call-ID"),
            header(&register, "CSeq"),
            header(&register, "Contact"),
        );
        tcp.write_all(format!("{invite}{ok}").as_bytes())
            .await
            .unwrap();
        let mut answers = Vec::new();
        while answers.len() < 2 {
            let message = read_message(&mut tcp, &mut buf).await;
            if header(&message, "Call-ID") == "shop-call-1" {
                answers.push(message.lines().next().unwrap_or_default().to_string());
            }
        }
        // The connection stays open (the line registered) until the test is done with it.
        (answers, tcp)
    });
    let lines = Lines::new(timing());
    lines.apply(&phones).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let call = lines
        .wait("line", Pickup::Reject(486), deadline)
        .await
        .unwrap()
        .expect("the INVITE sent during REGISTER reached the line");
    assert_eq!(call.caller_id(), "\"Shop Dialer\" <shop>");
    let (answers, _open) = tokio::time::timeout(Duration::from_secs(20), registrar)
        .await
        .expect("the line answered the INVITE")
        .unwrap();
    assert_eq!(answers, ["SIP/2.0 180 Ringing", "SIP/2.0 486 Busy Here"]);
    assert!(stats(&lines).up);
    assert_eq!(stats(&lines).unexpected_calls, 0);
    lines.stop_all().await;
}
