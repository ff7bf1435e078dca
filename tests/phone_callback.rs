//! Registered lines (`register: true`) and callbacks proven by the call itself, against a real
//! Kamailio (registrar and proxy with digest authentication, `common::sipserver`) and SIPp as
//! the shop's dialer (`tests/fixtures/sipp/dial_*.xml`, `common::sipp`).
//!
//! The line component is driven directly here (fast retry timings); the daemon wires the same
//! [`Lines`] to its config. SIPp exits 0 only when its call went as its scenario says (rung,
//! answered and hung up by us; or refused with 480), which is how the tests see the far side.

mod common;

use common::sipp::Sipp;
use common::sipserver::SipServer;
use std::collections::BTreeMap;
use std::time::Duration;
use supportwatch::sip::PhoneSpec;
use supportwatch::sip::line::{LineStats, Lines, Pickup, Timing};

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

/// The `phones:` of a config with account `line` registered at `server`.
fn phones(server: &SipServer) -> BTreeMap<String, PhoneSpec> {
    let yaml = format!(
        "phones:\n  line:\n    proxy: \"{}\"\n    user: monitor\n    password: \"${{LINE_PASSWORD}}\"\n    \
         register: true\nchecks:\n  - name: pbx\n    kind: phone\n    via: options\n    phone: line\n",
        server.uri(None, false)
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let waiting = lines.wait("line", Pickup::Answer, deadline);
    let dial = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Sipp::dial("dial_answered.xml", server.port, "monitor", SHOP.0, SHOP.1)
    };
    let (call, sipp) = tokio::join!(waiting, dial);
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
