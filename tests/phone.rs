//! `phone` checks with `via: options` against a real Kamailio on 127.0.0.1 (see
//! `common::sipserver`): a live PBX over UDP and TCP, a dead port, digest authentication with
//! MD5 and SHA-256 (right and wrong passwords, 401 and 407), each status a PBX may answer
//! with, and `sips:` against an in-process TLS responder. Config problems (a call's field on a ping, an unknown account, a bad URI) are refused at
//! load.

mod common;

use common::sipserver::{Algorithm, SipServer};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use supportwatch::outcome::{FailureKind, RunReport, RunResult};

const MONITOR: (&str, &str) = ("monitor", "monitor-secret");

fn phases(report: &RunReport) -> Vec<&str> {
    report.phases.iter().map(|p| p.name.as_str()).collect()
}

fn reason(report: &RunReport) -> Option<FailureKind> {
    report.failure.as_ref().map(|f| f.kind)
}

/// A check pinging `target` directly, no account.
fn direct(target: &str, extra: &str) -> String {
    format!(
        "checks:\n  - name: pbx\n    kind: phone\n    via: options\n    target: \"{target}\"\n    \
         timeout: 10s\n    retries: 0\n{extra}"
    )
}

/// A check pinging `target` as account `line` (user `monitor`, password from
/// `${LINE_PASSWORD}`), whose proxy is the test server.
fn as_account(server: &SipServer, target: &str, tcp: bool) -> String {
    format!(
        "phones:\n  line:\n    proxy: \"{proxy}\"\n    user: monitor\n    domain: 127.0.0.1\n    \
         password: \"${{LINE_PASSWORD}}\"\n    number: \"+10000000000\"\n\
         checks:\n  - name: pbx\n    kind: phone\n    via: options\n    phone: line\n    \
         target: \"{target}\"\n    timeout: 10s\n    retries: 0\n",
        proxy = server.uri(None, tcp),
    )
}

async fn run_with_password(yaml: &str, password: &str) -> RunReport {
    let prepared = common::prepare_with(yaml, &[("LINE_PASSWORD", password)]);
    supportwatch::runner::execute(&prepared.checks[0], 1, None).await
}

#[tokio::test]
async fn options_to_a_live_server_passes_with_its_round_trip_over_udp_and_tcp() {
    let server = SipServer::start(&[MONITOR]);
    for tcp in [false, true] {
        let report = common::run_once(&direct(&server.uri(None, tcp), "")).await;
        assert_eq!(
            report.result,
            RunResult::Success,
            "{report:?}\n{}",
            server.log()
        );
        assert_eq!(phases(&report), ["connect", "options"], "tcp: {tcp}");
        let options = &report.phases[1];
        assert!(options.duration.is_some_and(|d| d < Duration::from_secs(5)));
        assert!(
            report
                .details
                .iter()
                .any(|d| d.contains("answered 200 OK in")),
            "{:?}",
            report.details
        );
        assert_eq!(report.channel, "phone");
    }
}

#[tokio::test]
async fn a_dead_port_fails_as_connect_quickly() {
    let port = common::closed_port();
    for tcp in [false, true] {
        let transport = if tcp { ";transport=tcp" } else { "" };
        let started = Instant::now();
        let report =
            common::run_once(&direct(&format!("sip:127.0.0.1:{port}{transport}"), "")).await;
        // Loopback answers a closed UDP port with ICMP "port unreachable" and a closed TCP port
        // with a reset, so neither waits for the 10 s timeout.
        assert_eq!(reason(&report), Some(FailureKind::Connect), "{report:?}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_server_that_never_answers_fails_as_timeout_within_the_check_timeout() {
    let server = SipServer::start(&[MONITOR]);
    let yaml =
        direct(&server.uri(Some("silent"), false), "").replace("timeout: 10s", "timeout: 2s");
    let started = Instant::now();
    let report = common::run_once(&yaml).await;
    assert_eq!(report.result, RunResult::Timeout, "{report:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(phases(&report), ["connect", "options"]);
}

#[tokio::test]
async fn the_account_answers_a_proxy_challenge_with_md5_over_udp_and_tcp() {
    let server = SipServer::start(&[MONITOR]);
    for tcp in [false, true] {
        let yaml = as_account(&server, &server.uri(Some("auth"), tcp), tcp);
        let report = run_with_password(&yaml, MONITOR.1).await;
        assert_eq!(
            report.result,
            RunResult::Success,
            "{report:?}\n{}",
            server.log()
        );
        assert_eq!(phases(&report), ["connect", "options", "auth"]);
        let text = format!("{report:?}");
        assert!(!text.contains(MONITOR.1), "the password leaked: {text}");
    }
}

#[tokio::test]
async fn the_account_answers_a_www_challenge_with_sha256() {
    let server = SipServer::start_with(&[MONITOR], Algorithm::Sha256);
    let yaml = as_account(&server, &server.uri(Some("www"), false), false);
    let report = run_with_password(&yaml, MONITOR.1).await;
    assert_eq!(
        report.result,
        RunResult::Success,
        "{report:?}\n{}",
        server.log()
    );
    assert_eq!(phases(&report), ["connect", "options", "auth"]);
}

#[tokio::test]
async fn a_wrong_password_fails_as_auth() {
    let server = SipServer::start(&[MONITOR]);
    let yaml = as_account(&server, &server.uri(Some("auth"), false), false);
    let report = run_with_password(&yaml, "wrong-secret").await;
    assert_eq!(reason(&report), Some(FailureKind::Auth), "{report:?}");
    let message = &report.failure.as_ref().unwrap().message;
    assert!(
        message.contains("407") && message.contains("`line`"),
        "{message}"
    );
    assert!(!format!("{report:?}").contains("wrong-secret"));
}

#[tokio::test]
async fn a_challenge_without_an_account_fails_as_auth() {
    let server = SipServer::start(&[MONITOR]);
    let report = common::run_once(&direct(&server.uri(Some("auth"), false), "")).await;
    assert_eq!(reason(&report), Some(FailureKind::Auth), "{report:?}");
    assert!(report.failure.unwrap().message.contains("name an account"));
}

#[tokio::test]
async fn each_refusal_fails_with_its_reason_unless_expected() {
    let server = SipServer::start(&[MONITOR]);
    for (user, kind, words) in [
        ("nobody", FailureKind::NotFound, "404 Not Found"),
        ("down", FailureKind::Unavailable, "503 Service Unavailable"),
        ("forbidden", FailureKind::Rejected, "403 Forbidden"),
    ] {
        let report = common::run_once(&direct(&server.uri(Some(user), false), "")).await;
        assert_eq!(reason(&report), Some(kind), "{user}: {report:?}");
        let message = report.failure.unwrap().message;
        assert!(message.contains(words), "{message}");
    }
    // A PBX that answers OPTIONS with 403 is alive; the check may say that is fine.
    let yaml = direct(
        &server.uri(Some("forbidden"), false),
        "    expect: { status: [200, 403] }\n",
    );
    let report = common::run_once(&yaml).await;
    assert_eq!(report.result, RunResult::Success, "{report:?}");
}

fn load_errors(yaml: &str) -> String {
    supportwatch::config::load_sources(&[(PathBuf::from("test.yaml"), yaml.to_string())])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_else(|| panic!("should not load:\n{yaml}"))
}

#[test]
fn config_problems_are_refused_at_load_with_their_place() {
    let call = load_errors(&direct("sip:pbx.example", "    to: \"100\"\n"));
    assert!(
        call.contains("test.yaml:2:") && call.contains("`to` applies to `via: call` only"),
        "{call}"
    );
    let unknown =
        load_errors("checks:\n  - name: pbx\n    kind: phone\n    via: options\n    phone: nope\n");
    assert!(
        unknown.contains("`phone: nope` names no account"),
        "{unknown}"
    );
    let bad_uri = load_errors(&direct("http://pbx.example", ""));
    assert!(
        bad_uri.contains("`target` http://pbx.example: a SIP URI starts with"),
        "{bad_uri}"
    );
    let neither = load_errors("checks:\n  - name: pbx\n    kind: phone\n    via: options\n");
    assert!(neither.contains("set `target`"), "{neither}");
    let typo = load_errors(&direct(
        "sip:pbx.example",
        "    expect: { statuses: [200] }\n",
    ));
    assert!(typo.contains("unknown field `statuses`"), "{typo}");
    let status = load_errors(&direct(
        "sip:pbx.example",
        "    expect: { status: [180] }\n",
    ));
    assert!(status.contains("180 is not a final SIP status"), "{status}");
    let resolve = load_errors(&direct(
        "sip:pbx.example",
        "    resolve: { pbx.example: 127.0.0.1 }\n",
    ));
    assert!(
        resolve.contains("`resolve` does not apply here"),
        "{resolve}"
    );
    let account = load_errors(
        "phones:\n  line:\n    proxy: \"sip:pbx.example;transport=sctp\"\n    user: monitor\n",
    );
    assert!(
        account.contains("test.yaml:3:")
            && account.contains("phone `line`")
            && account.contains("sctp"),
        "{account}"
    );
}

/// A SIP-over-TLS responder presenting a certificate for 127.0.0.1 from a private CA: it answers
/// every request with 200 OK, echoing the headers that tie a response to its request. Returns
/// its port and the CA file.
async fn tls_responder() -> (u16, tempfile::TempDir, PathBuf) {
    use supportwatch::demo::pki::{Authority, Validity};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    supportwatch::tlsconf::install_crypto_provider();
    let ca = Authority::new("supportwatch SIP test CA").unwrap();
    let cert = ca.issue(&["127.0.0.1"], Validity::days(30)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca.cert_pem).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config(&[]).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // One task accepts, one task per connection answers; both end with the test's runtime.
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                while let Ok(n) = tls.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end + 4);
                    let mut response = String::from("SIP/2.0 200 OK\r\n");
                    for line in head.lines().skip(1) {
                        let name = line.split(':').next().unwrap_or_default();
                        if ["Via", "From", "To", "Call-ID", "CSeq"].contains(&name) {
                            response.push_str(line);
                            response.push_str("\r\n");
                        }
                    }
                    response.push_str("Content-Length: 0\r\n\r\n");
                    if tls.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, dir, ca_file)
}

#[tokio::test]
async fn sips_targets_are_verified_against_the_configured_ca() {
    let (port, _dir, ca_file) = tls_responder().await;
    let target = format!("sips:127.0.0.1:{port}");
    let ca = format!("    ca_file: \"{}\"\n", ca_file.display());
    let report = common::run_once(&direct(&target, &ca)).await;
    assert_eq!(report.result, RunResult::Success, "{report:?}");
    assert_eq!(phases(&report), ["connect", "options"]);
    // The same server through an account whose proxy is `sips:` and trusts the CA.
    let yaml = format!(
        "phones:\n  tls:\n    proxy: \"{target}\"\n    user: monitor\n    domain: 127.0.0.1\n{}\
         checks:\n  - name: pbx\n    kind: phone\n    via: options\n    phone: tls\n    \
         timeout: 10s\n    retries: 0\n",
        ca
    );
    let report = common::run_once(&yaml).await;
    assert_eq!(report.result, RunResult::Success, "{report:?}");
    // Without the CA, the system roots do not trust it: the run fails as tls.
    let report = common::run_once(&direct(&target, "")).await;
    assert_eq!(reason(&report), Some(FailureKind::Tls), "{report:?}");
    assert!(
        report
            .failure
            .unwrap()
            .message
            .contains("TLS handshake with 127.0.0.1")
    );
}

/// Runs an OPTIONS check of `uri` resolved through `dns`; it must pass, and its first detail
/// line (where the SRV lookup led) is returned.
async fn srv_run_details(dns: &common::dnsmasq::Dnsmasq, uri: &str, server: &SipServer) -> String {
    let report = common::run_once(&srv_check(dns, uri)).await;
    assert_eq!(
        report.result,
        RunResult::Success,
        "{report:?}\n{}",
        server.log()
    );
    report.details[0].clone()
}

/// A check of `sip:shop.test` (no port) with the test's dnsmasq as `nameserver`.
fn srv_check(dns: &common::dnsmasq::Dnsmasq, target: &str) -> String {
    direct(
        target,
        &format!("    nameserver: \"127.0.0.1:{}\"\n", dns.port),
    )
}

/// RFC 3263: a host without a port is found through its SRV records (`_sip._udp`, else
/// `_sip._tcp`, which also picks the transport; `_sips._tcp` for TLS), and without any SRV
/// record through its A record on 5060. dnsmasq serves the records, pointing at the
/// per-test Kamailio's port.
#[tokio::test]
async fn a_domain_without_a_port_is_found_through_srv() {
    let server = SipServer::start(&[MONITOR]);
    let port = server.port;
    let udp = format!("--srv-host=_sip._udp.shop.test,sip.shop.test,{port},0,10");
    let tcp = format!("--srv-host=_sip._tcp.shop.test,sip.shop.test,{port},0,10");
    let host = "--host-record=sip.shop.test,127.0.0.1";
    let a = "--host-record=shop.test,127.0.0.1";

    // `_sip._udp` first; a second, lower-priority record on a dead port is not used.
    let dead = "--srv-host=_sip._udp.shop.test,sip.shop.test,9,10,10";
    let dns = common::dnsmasq::Dnsmasq::start(&[&udp, dead, host, a]);
    assert_eq!(
        srv_run_details(&dns, "sip:shop.test", &server).await,
        format!("shop.test found through SRV: 127.0.0.1:{port} over UDP")
    );

    // Only `_sip._tcp`: the SRV record chooses TCP for a URI that names no transport.
    let dns = common::dnsmasq::Dnsmasq::start(&[&tcp, host, a]);
    assert_eq!(
        srv_run_details(&dns, "sip:shop.test", &server).await,
        format!("shop.test found through SRV: 127.0.0.1:{port} over TCP")
    );
    // `;transport=tcp` asks for `_sip._tcp` only, and finds it.
    let report = common::run_once(&srv_check(&dns, "sip:shop.test;transport=tcp")).await;
    assert_eq!(report.result, RunResult::Success, "{report:?}");

    // An explicit port skips SRV: the A record with that port.
    let explicit = format!("sip:shop.test:{port}");
    let report = common::run_once(&srv_check(&dns, &explicit)).await;
    assert_eq!(report.result, RunResult::Success, "{report:?}");
    assert!(
        !report.details.iter().any(|d| d.contains("SRV")),
        "{:?}",
        report.details
    );

    // No SRV record at all: the A record on 5060, where nothing answers SIP over TCP here.
    let dns = common::dnsmasq::Dnsmasq::start(&[a]);
    let report = common::run_once(&srv_check(&dns, "sip:shop.test;transport=tcp")).await;
    let failure = report.failure.expect("nothing listens on 5060");
    assert!(
        failure.message.contains("127.0.0.1:5060"),
        "{}",
        failure.message
    );

    // An account whose proxy is `sip:shop.test`: the same lookup, with the account's nameserver.
    let dns = common::dnsmasq::Dnsmasq::start(&[&udp, host, a]);
    let yaml = format!(
        "phones:\n  line:\n    proxy: \"sip:shop.test\"\n    user: monitor\n    \
         password: \"${{LINE_PASSWORD}}\"\n    nameserver: \"127.0.0.1:{}\"\n\
         checks:\n  - name: pbx\n    kind: phone\n    via: options\n    phone: line\n    \
         timeout: 10s\n    retries: 0\n",
        dns.port
    );
    let report = run_with_password(&yaml, MONITOR.1).await;
    assert_eq!(
        report.result,
        RunResult::Success,
        "{report:?}\n{}",
        server.log()
    );
    assert_eq!(
        report.details[0],
        format!("shop.test found through SRV: 127.0.0.1:{port} over UDP")
    );
}
