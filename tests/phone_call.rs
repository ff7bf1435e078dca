//! `phone` checks with `via: call` against a real Kamailio (the account's proxy, with digest
//! authentication, see `common::sipserver`) relaying to SIPp as the shop's line (scenarios in
//! `tests/fixtures/sipp/`, see `common::sipp`): a line that answers and plays a 1 kHz tone
//! passes with its ring and answer times and level; silence fails `silent_line`, 486
//! `busy`, endless ringing `no_answer` with the CANCEL seen by the line, a wrong password
//! `auth`. After each call the SIPp scenario must have completed (BYE or CANCEL received), so
//! no call stays open.

mod common;

use common::sipp::{Sipp, free_udp_port, ulaw_pcap};
use common::sipserver::SipServer;
use std::time::Duration;
use supportwatch::outcome::{FailureKind, Observation, RunReport, RunResult};

const MONITOR: (&str, &str) = ("monitor", "monitor-secret");

fn phases(report: &RunReport) -> Vec<&str> {
    report.phases.iter().map(|p| p.name.as_str()).collect()
}

fn reason(report: &RunReport) -> Option<FailureKind> {
    report.failure.as_ref().map(|f| f.kind)
}

/// A call check of `to` through account `line` (the test server's `monitor`), with `extra`
/// lines of check config.
fn call_check(server: &SipServer, to: &str, extra: &str) -> String {
    format!(
        "phones:\n  line:\n    proxy: \"{proxy}\"\n    user: monitor\n    domain: 127.0.0.1\n    \
         password: \"${{LINE_PASSWORD}}\"\n\
         checks:\n  - name: hotline\n    kind: phone\n    via: call\n    phone: line\n    \
         to: \"{to}\"\n    timeout: 20s\n    retries: 0\n{extra}",
        proxy = server.uri(None, false),
    )
}

async fn run(yaml: &str, password: &str) -> RunReport {
    let prepared = common::prepare_with(yaml, &[("LINE_PASSWORD", password)]);
    supportwatch::runner::execute(&prepared.checks[0], 1, None).await
}

fn level(report: &RunReport) -> Option<f64> {
    report.observations.iter().find_map(|o| match o {
        Observation::PhoneAudioLevel(l) => Some(*l),
        _ => None,
    })
}

fn has_ring_and_answer(report: &RunReport) -> (bool, bool) {
    (
        report
            .observations
            .iter()
            .any(|o| matches!(o, Observation::PhoneRing(d) if *d < Duration::from_secs(5))),
        report
            .observations
            .iter()
            .any(|o| matches!(o, Observation::PhoneAnswer(d) if *d >= Duration::from_millis(300))),
    )
}

/// A call that passed the way the tone line makes it pass: every phase, ring and answer times,
/// the 1 kHz tone's level, and our BYE answered.
fn assert_heard_the_tone(report: &RunReport) {
    assert_eq!(
        phases(report),
        ["connect", "ringing", "answer", "listen", "hangup"]
    );
    assert_eq!(has_ring_and_answer(report), (true, true), "{report:?}");
    let level = level(report).expect("a level");
    assert!((-10.5..=-7.5).contains(&level), "{level}: {report:?}");
    assert!(
        report
            .details
            .iter()
            .any(|d| d.contains("hung up: BYE answered 200")),
        "{:?}",
        report.details
    );
}

/// The line must have completed its scenario: exit 0 within 10 s.
fn assert_completed(sipp: Sipp) {
    let finished = sipp.finish(Duration::from_secs(10));
    assert_eq!(
        finished.code,
        Some(0),
        "SIPp did not complete:\n{}",
        finished.log
    );
}

#[tokio::test]
async fn a_line_that_answers_with_a_tone_passes_with_ring_answer_and_level() {
    let line = free_udp_port();
    let server = SipServer::start_with_lines(&[MONITOR], &[("tone", line)]);
    let sipp = Sipp::start("answer_play.xml", line, Some(&ulaw_pcap(6, 0.5)));
    let report = run(&call_check(&server, "tone", "    listen: 2s\n"), MONITOR.1).await;
    assert_eq!(
        report.result,
        RunResult::Success,
        "{report:?}\n{}\n{}",
        server.log(),
        sipp.log()
    );
    assert_eq!(
        phases(&report),
        ["connect", "ringing", "answer", "listen", "hangup"]
    );
    assert_eq!(has_ring_and_answer(&report), (true, true), "{report:?}");
    // A sine at half of full scale: RMS 0.354 of full scale, −9 dBFS.
    let level = level(&report).expect("a level");
    assert!((-10.5..=-7.5).contains(&level), "{level}: {report:?}");
    assert!(
        report
            .details
            .iter()
            .any(|d| d.contains("hung up: BYE answered 200")),
        "{:?}",
        report.details
    );
    assert!(!format!("{report:?}").contains(MONITOR.1));
    assert_completed(sipp);
}

#[tokio::test]
async fn a_line_that_answers_with_silence_fails_as_silent_line() {
    let line = free_udp_port();
    let server = SipServer::start_with_lines(&[MONITOR], &[("ivr", line)]);
    let sipp = Sipp::start("answer_play.xml", line, Some(&ulaw_pcap(6, 0.0)));
    let report = run(&call_check(&server, "ivr", "    listen: 2s\n"), MONITOR.1).await;
    assert_eq!(reason(&report), Some(FailureKind::SilentLine), "{report:?}");
    let message = &report.failure.as_ref().unwrap().message;
    assert!(
        message.contains("the line was silent: -100.0 dBFS") && message.contains("below -50"),
        "{message}"
    );
    assert_eq!(level(&report), Some(-100.0));
    assert_completed(sipp);
}

#[tokio::test]
async fn a_busy_line_fails_as_busy() {
    let line = free_udp_port();
    let server = SipServer::start_with_lines(&[MONITOR], &[("sales", line)]);
    let sipp = Sipp::start("busy.xml", line, None);
    let report = run(&call_check(&server, "sales", ""), MONITOR.1).await;
    assert_eq!(reason(&report), Some(FailureKind::Busy), "{report:?}");
    let message = &report.failure.as_ref().unwrap().message;
    assert!(message.contains("486 Busy Here"), "{message}");
    assert_eq!(phases(&report), ["connect", "ringing"]);
    assert_completed(sipp);
    // The same line called directly, without an account or proxy: the line sees our own ACK.
    let line = free_udp_port();
    let sipp = Sipp::start("busy.xml", line, None);
    let yaml = format!(
        "checks:\n  - name: direct\n    kind: phone\n    via: call\n    \
         target: \"sip:sales@127.0.0.1:{line}\"\n    timeout: 10s\n    retries: 0\n"
    );
    let report = common::run_once(&yaml).await;
    assert_eq!(reason(&report), Some(FailureKind::Busy), "{report:?}");
    assert_completed(sipp);
}

#[tokio::test]
async fn a_line_that_rings_forever_is_cancelled_as_no_answer() {
    let line = free_udp_port();
    let server = SipServer::start_with_lines(&[MONITOR], &[("hotline", line)]);
    let sipp = Sipp::start("ring_forever.xml", line, None);
    let yaml = call_check(&server, "hotline", "    expect: { answer_within: 2s }\n");
    let report = run(&yaml, MONITOR.1).await;
    assert_eq!(reason(&report), Some(FailureKind::NoAnswer), "{report:?}");
    let message = &report.failure.as_ref().unwrap().message;
    assert!(
        message.contains("not answered within 2.0s; cancelled"),
        "{message}"
    );
    assert_eq!(phases(&report), ["connect", "ringing", "answer", "hangup"]);
    assert!(
        report
            .details
            .iter()
            .any(|d| d == "cancelled: the INVITE ended 487"),
        "{:?}\n{}\n{}",
        report.details,
        server.log(),
        sipp.log()
    );
    // The scenario completes only after CANCEL, its 487 and the ACK.
    assert_completed(sipp);
}

#[tokio::test]
async fn ring_only_passes_on_ringing_and_cancels_at_once() {
    let line = free_udp_port();
    let server = SipServer::start_with_lines(&[MONITOR], &[("hotline", line)]);
    let sipp = Sipp::start("ring_forever.xml", line, None);
    let report = run(
        &call_check(&server, "hotline", "    ring_only: true\n"),
        MONITOR.1,
    )
    .await;
    assert_eq!(report.result, RunResult::Success, "{report:?}");
    assert!(
        report.duration < Duration::from_secs(5),
        "{:?}",
        report.duration
    );
    assert_eq!(has_ring_and_answer(&report), (true, false), "{report:?}");
    assert!(
        report
            .details
            .iter()
            .any(|d| d == "cancelled: the INVITE ended 487"),
        "{:?}",
        report.details
    );
    assert_completed(sipp);
}

#[tokio::test]
async fn a_wrong_password_fails_as_auth_and_an_unknown_number_as_not_found() {
    let line = free_udp_port();
    let server = SipServer::start_with_lines(&[MONITOR], &[("tone", line)]);
    let report = run(&call_check(&server, "tone", ""), "wrong-secret").await;
    assert_eq!(reason(&report), Some(FailureKind::Auth), "{report:?}");
    let message = &report.failure.as_ref().unwrap().message;
    assert!(
        message.contains("407") && message.contains("`line`"),
        "{message}"
    );
    assert!(!format!("{report:?}").contains("wrong-secret"));
    let report = run(&call_check(&server, "+7 (495) 000-00-00", ""), MONITOR.1).await;
    assert_eq!(reason(&report), Some(FailureKind::NotFound), "{report:?}");
}

#[tokio::test]
async fn a_run_cancelled_while_ringing_still_cancels_the_call() {
    let line = free_udp_port();
    let server = SipServer::start_with_lines(&[MONITOR], &[("hotline", line)]);
    let sipp = Sipp::start("ring_forever.xml", line, None);
    let prepared = common::prepare_with(
        &call_check(&server, "hotline", ""),
        &[("LINE_PASSWORD", MONITOR.1)],
    );
    // The run is dropped mid-ring, as the scheduler drops a run at shutdown: the call's drop
    // guard must still CANCEL it.
    let run = supportwatch::runner::execute(&prepared.checks[0], 1, None);
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), run)
            .await
            .is_err()
    );
    // Keep the runtime alive while the guard's task hangs up.
    let finished = tokio::task::spawn_blocking(move || sipp.finish(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(
        finished.code,
        Some(0),
        "SIPp saw no CANCEL:\n{}",
        finished.log
    );
}

#[tokio::test]
async fn a_second_call_of_the_account_waits_for_the_line_then_fails_clearly() {
    let line = free_udp_port();
    let server = SipServer::start_with_lines(&[MONITOR], &[("hotline", line)]);
    let sipp = Sipp::start("ring_forever.xml", line, None);
    let yaml = call_check(&server, "hotline", "    expect: { answer_within: 4s }\n")
        .replace("timeout: 20s", "timeout: 10s");
    let yaml = format!(
        "{yaml}  - name: second\n    kind: phone\n    via: call\n    phone: line\n    \
         to: \"hotline\"\n    timeout: 4s\n    retries: 0\n"
    );
    let prepared = common::prepare_with(&yaml, &[("LINE_PASSWORD", MONITOR.1)]);
    let first = supportwatch::runner::execute(&prepared.checks[0], 1, None);
    let second = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        supportwatch::runner::execute(&prepared.checks[1], 1, None).await
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(reason(&first), Some(FailureKind::NoAnswer), "{first:?}");
    assert_eq!(reason(&second), Some(FailureKind::Timeout), "{second:?}");
    let message = &second.failure.as_ref().unwrap().message;
    assert!(
        message.contains("another call of phone `line` held its line"),
        "{message}"
    );
    assert_eq!(phases(&second), ["line"]);
    assert_completed(sipp);
}

fn load_errors(yaml: &str) -> String {
    supportwatch::config::load_sources(&[(std::path::PathBuf::from("test.yaml"), yaml.to_string())])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_else(|| panic!("should not load:\n{yaml}"))
}

#[test]
fn call_config_problems_are_refused_at_load() {
    let call = |extra: &str| {
        format!(
            "phones:\n  line:\n    proxy: \"sip:pbx.example\"\n    user: monitor\n\
             checks:\n  - name: hotline\n    kind: phone\n    via: call\n    phone: line\n{extra}"
        )
    };
    for (extra, words) in [
        (
            "",
            "set `to` (a number to call through `phone`) or `target`",
        ),
        (
            "    to: \"100\"\n    target: \"sip:100@pbx.example\"\n",
            "set either `to`",
        ),
        (
            "    to: \"call@me!\"\n",
            "is neither a phone number nor a SIP URI",
        ),
        (
            "    to: \"100\"\n    expect: { status: [200] }\n",
            "`expect.status` applies to `via: options`",
        ),
        (
            "    to: \"100\"\n    ring_only: true\n    listen: 2s\n",
            "`listen` does not apply with `ring_only: true`",
        ),
        (
            "    to: \"100\"\n    expect: { min_level_dbfs: 3 }\n",
            "`expect.min_level_dbfs` is 3; allowed -100 to 0",
        ),
        (
            "    to: \"100\"\n    listen: 1h\n",
            "`listen` is 1h; allowed 100ms to 5m",
        ),
        (
            "    to: \"100\"\n    expect: { answer_within: 0s }\n",
            "`expect.answer_within` is 0s; allowed 100ms to 10m",
        ),
    ] {
        let errors = load_errors(&call(extra));
        assert!(
            errors.contains(words) && errors.contains("check \"hotline\""),
            "{extra}: {errors}"
        );
    }
    let max_calls = load_errors(&call("    to: \"100\"\n").replace(
        "    user: monitor\n",
        "    user: monitor\n    max_calls: 0\n",
    ));
    assert!(
        max_calls.contains("`max_calls` is 0; allowed 1 to 100"),
        "{max_calls}"
    );
}

/// The whole call over TCP: our INVITE to the proxy on a TCP connection, relayed to a line that
/// listens on TCP only; ring and answer times and the tone's level as over UDP, BYE answered.
#[tokio::test]
async fn a_call_over_tcp_passes_with_ring_answer_and_level() {
    let line = common::sipp::free_tcp_port();
    let server = SipServer::start_with_tcp_lines(&[MONITOR], &[("tone", line)]);
    let sipp = Sipp::start_tcp("answer_play.xml", line, Some(&ulaw_pcap(6, 0.5)));
    let yaml = call_check(&server, "tone", "    listen: 2s\n")
        .replace(&server.uri(None, false), &server.uri(None, true));
    assert!(yaml.contains(";transport=tcp"), "{yaml}");
    let report = run(&yaml, MONITOR.1).await;
    assert_eq!(
        report.result,
        RunResult::Success,
        "{report:?}\n{}\n{}",
        server.log(),
        sipp.log()
    );
    assert_heard_the_tone(&report);
    assert!(sipp.log().contains("SIP/2.0/TCP"), "{}", sipp.log());
    assert_completed(sipp);
}

/// The line puts us on hold with a re-INVITE after answering: it gets 200 with our SDP (SIPp
/// checks the body and the CSeq), and the call goes on to its BYE with the tone still heard.
#[tokio::test]
async fn a_re_invite_during_the_call_is_answered_and_the_call_goes_on() {
    let line = free_udp_port();
    let sipp = Sipp::start("answer_reinvite.xml", line, Some(&ulaw_pcap(6, 0.5)));
    let yaml = format!(
        "checks:\n  - name: direct\n    kind: phone\n    via: call\n    \
         target: \"sip:hold@127.0.0.1:{line}\"\n    listen: 2s\n    timeout: 10s\n    retries: 0\n"
    );
    let report = common::run_once(&yaml).await;
    assert_eq!(
        report.result,
        RunResult::Success,
        "{report:?}\n{}",
        sipp.log()
    );
    assert_eq!(
        phases(&report),
        ["connect", "ringing", "answer", "listen", "hangup"]
    );
    let level = level(&report).expect("a level");
    assert!((-10.5..=-7.5).contains(&level), "{level}: {report:?}");
    assert!(
        report
            .details
            .iter()
            .any(|d| d.contains("hung up: BYE answered 200")),
        "{:?}",
        report.details
    );
    assert_completed(sipp);
}

/// `call_check` through the server's TLS listener (`proxy`), trusting `ca_file`.
fn tls_call_check(server: &SipServer, proxy: &str, ca_file: &std::path::Path) -> String {
    call_check(server, "tone", "    listen: 2s\n")
        .replace(&server.uri(None, false), proxy)
        .replace(
            "    password:",
            &format!("    ca_file: \"{}\"\n    password:", ca_file.display()),
        )
}

/// The call over TLS to Kamailio (as `sips:` and as `;transport=tls`), relayed to a line on UDP:
/// ring and answer times and the tone's level as over UDP, BYE answered over the same TLS
/// connection.
#[tokio::test]
async fn a_call_over_tls_through_kamailio_passes_with_ring_answer_and_level() {
    for sips in [true, false] {
        let line = free_udp_port();
        let server = SipServer::start_tls(&[MONITOR], &[("tone", line)]);
        let tls = server.tls.as_ref().unwrap();
        let proxy = if sips {
            server.sips_uri(None)
        } else {
            format!("sip:127.0.0.1:{};transport=tls", tls.port)
        };
        let sipp = Sipp::start("answer_play.xml", line, Some(&ulaw_pcap(6, 0.5)));
        let yaml = tls_call_check(&server, &proxy, &tls.ca_file);
        assert!(yaml.contains(&proxy) && yaml.contains("ca_file"), "{yaml}");
        let report = run(&yaml, MONITOR.1).await;
        assert_eq!(
            report.result,
            RunResult::Success,
            "{proxy}: {report:?}\n{}\n{}",
            server.log(),
            sipp.log()
        );
        assert_heard_the_tone(&report);
        // Kamailio relayed the call over UDP: the line saw its Via for UDP, not ours for TLS.
        assert!(sipp.log().contains("SIP/2.0/UDP"), "{}", sipp.log());
        assert_completed(sipp);
    }
}

/// Trusting another CA than the one that issued Kamailio's certificate: the run fails as `tls`,
/// naming the handshake and the unknown issuer; the line is never called.
#[tokio::test]
async fn a_call_over_tls_with_the_wrong_ca_fails_as_tls() {
    let line = free_udp_port();
    let server = SipServer::start_tls(&[MONITOR], &[("tone", line)]);
    let other = tempfile::tempdir().unwrap();
    let wrong_ca = other.path().join("other-ca.pem");
    let ca = supportwatch::demo::pki::Authority::new("another CA").unwrap();
    std::fs::write(&wrong_ca, &ca.ca.cert_pem).unwrap();
    let report = run(
        &tls_call_check(&server, &server.sips_uri(None), &wrong_ca),
        MONITOR.1,
    )
    .await;
    assert_eq!(reason(&report), Some(FailureKind::Tls), "{report:?}");
    let message = report.failure.as_ref().unwrap().message.clone();
    assert!(
        message.contains("TLS handshake with 127.0.0.1") && message.contains("UnknownIssuer"),
        "{message}"
    );
    assert!(!server.log().contains("INVITE"), "{}", server.log());
}
