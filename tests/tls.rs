//! The `tls` check against real servers on 127.0.0.1: direct TLS with rcgen certificates of every
//! kind of wrong, SMTP and IMAP servers that upgrade with STARTTLS, a server that speaks no TLS, and
//! a closed port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use supportwatch::demo::pki::{self, Authority, Issued, Validity};
use supportwatch::outcome::{CertReport, FailureKind, Observation};
use supportwatch::outcome::{RunReport, RunResult};
use supportwatch::runner;
use supportwatch::value::with_overlay;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A CA, and its certificate written to a PEM file for `ca_file`.
struct Pki {
    ca: Authority,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn pki() -> Pki {
    supportwatch::tlsconf::install_crypto_provider();
    let ca = Authority::new("supportwatch test CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca.cert_pem).unwrap();
    Pki {
        ca,
        ca_file,
        _dir: dir,
    }
}

fn acceptor(cert: &Issued) -> TlsAcceptor {
    TlsAcceptor::from(cert.server_config(&[]).unwrap())
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// After the handshake, reads what the client says (its goodbye) for a moment, then closes.
async fn linger<S: tokio::io::AsyncRead + Unpin>(mut stream: S) {
    let mut buf = [0u8; 256];
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
}

/// A TLS server presenting `cert` to every connection.
async fn tls_server(cert: &Issued) -> SocketAddr {
    let (listener, addr) = listener().await;
    let acceptor = acceptor(cert);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    linger(tls).await;
                }
            });
        }
    });
    addr
}

/// Reads one line from the client (the test server trusts its client, within reason).
async fn read_line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    line
}

async fn w(reader: &mut BufReader<TcpStream>, text: &str) {
    reader.get_mut().write_all(text.as_bytes()).await.unwrap();
}

/// A mail server that plays `script` — for each step, the start of the line it expects from the
/// client (nothing for the greeting) and its reply — then upgrades to TLS with `cert` when
/// `upgrade`, or waits for the client's goodbye.
async fn dialogue_server(
    cert: &Issued,
    script: &'static [(&'static str, &'static str)],
    upgrade: bool,
) -> SocketAddr {
    let (listener, addr) = listener().await;
    let acceptor = acceptor(cert);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(tcp);
                for (expect, reply) in script {
                    if !expect.is_empty() {
                        let line = read_line(&mut reader).await;
                        assert!(
                            line.starts_with(expect),
                            "expected {expect:?}, got {line:?}"
                        );
                    }
                    w(&mut reader, reply).await;
                }
                if !upgrade {
                    let _ = read_line(&mut reader).await;
                } else if let Ok(tls) = acceptor.accept(reader.into_inner()).await {
                    linger(tls).await;
                }
            });
        }
    });
    addr
}

/// An SMTP server that offers STARTTLS (or not) and upgrades with `cert`.
async fn smtp_server(cert: &Issued, offer_starttls: bool) -> SocketAddr {
    const GREETING: (&str, &str) = ("", "220 mail.test ESMTP ready\r\n");
    if offer_starttls {
        const SCRIPT: &[(&str, &str)] = &[
            GREETING,
            (
                "EHLO ",
                "250-mail.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
            ),
            ("STARTTLS\r\n", "220 2.0.0 go ahead\r\n"),
        ];
        dialogue_server(cert, SCRIPT, true).await
    } else {
        const SCRIPT: &[(&str, &str)] =
            &[GREETING, ("EHLO ", "250-mail.test\r\n250 PIPELINING\r\n")];
        dialogue_server(cert, SCRIPT, false).await
    }
}

/// An IMAP server that upgrades with `cert` after `a1 STARTTLS`.
async fn imap_server(cert: &Issued) -> SocketAddr {
    const SCRIPT: &[(&str, &str)] = &[
        ("", "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
        (
            "a1 STARTTLS\r\n",
            "* CAPABILITY IMAP4rev1\r\na1 OK Begin TLS negotiation now\r\n",
        ),
    ];
    dialogue_server(cert, SCRIPT, true).await
}

/// A POP3 server that upgrades with `cert` after `STLS`.
async fn pop3_server(cert: &Issued) -> SocketAddr {
    const SCRIPT: &[(&str, &str)] = &[
        ("", "+OK POP3 ready\r\n"),
        ("STLS\r\n", "+OK Begin TLS negotiation\r\n"),
    ];
    dialogue_server(cert, SCRIPT, true).await
}

/// A plain HTTP responder: answers anything with a 400 and closes.
async fn http_server() -> SocketAddr {
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    addr
}

/// Runs a `tls` check built from YAML, as the daemon would.
async fn run(targets: &[String], extra: &str) -> RunReport {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    let yaml = format!(
        "checks:\n  - name: t\n    kind: tls\n    channel: website\n    timeout: 10s\n    retries: 0\n    \
         targets: [{}]\n{extra}",
        list.join(", ")
    );
    let config = supportwatch::config::load_sources(&[(PathBuf::from("t.yaml"), yaml)])
        .unwrap_or_else(|e| panic!("{e}"));
    let prepared = supportwatch::assemble::prepare(config).unwrap_or_else(|e| panic!("{e}"));
    runner::execute(&prepared.checks[0], 1, None).await
}

fn ca_line(pki: &Pki) -> String {
    format!("    ca_file: \"{}\"\n", pki.ca_file.display())
}

fn certs(report: &RunReport) -> Vec<&CertReport> {
    report
        .observations
        .iter()
        .filter_map(|o| match o {
            Observation::Cert(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn one_cert(report: &RunReport) -> &CertReport {
    let certs = certs(report);
    assert_eq!(certs.len(), 1, "{report:?}");
    certs[0]
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn failure(report: &RunReport) -> (FailureKind, &str) {
    let f = report
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("{report:?}"));
    (f.kind, f.message.as_str())
}

fn phases(report: &RunReport) -> Vec<&str> {
    report.phases.iter().map(|p| p.name.as_str()).collect()
}

#[tokio::test]
async fn valid_certificate_passes_and_reports_its_expiry() {
    let pki = pki();
    let cert = pki
        .ca
        .issue(&["shop.test", "127.0.0.1"], Validity::days(90))
        .unwrap();
    let addr = tls_server(&cert).await;
    let report = run(&[addr.to_string()], &ca_line(&pki)).await;
    assert_eq!(report.result, RunResult::Success, "{report:?}");
    let c = one_cert(&report);
    let expected = unix_now() + 90 * 86_400;
    assert!((c.leaf_not_after - expected).abs() < 60, "{c:?}");
    assert_eq!(c.chain_not_after, c.leaf_not_after);
    assert!(c.chain_verified && c.name_matches, "{c:?}");
    assert_eq!(c.target, addr.to_string());
    assert_eq!(phases(&report), ["connect", "tls"]);
    let detail = &report.details[0];
    assert!(detail.contains("leaf CN=shop.test"), "{detail}");
    assert!(detail.contains("chain verified, name matches"), "{detail}");
}

#[tokio::test]
async fn server_name_overrides_the_verified_name() {
    let pki = pki();
    let cert = pki.ca.issue(&["shop.test"], Validity::days(90)).unwrap();
    let addr = tls_server(&cert).await;
    let extra = format!("{}    server_name: shop.test\n", ca_line(&pki));
    let report = run(&[addr.to_string()], &extra).await;
    assert_eq!(report.result, RunResult::Success, "{report:?}");
    assert!(one_cert(&report).name_matches);
}

#[tokio::test]
async fn expiring_soon_fails_with_the_days_left() {
    let pki = pki();
    let cert = pki.ca.issue(&["127.0.0.1"], Validity::days(3)).unwrap();
    let addr = tls_server(&cert).await;
    let extra = format!("{}    warn_before: 14d\n", ca_line(&pki));
    let report = run(&[addr.to_string()], &extra).await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::CertExpiry);
    assert!(
        message.contains("expires in 3 days") || message.contains("expires in 2 days"),
        "{message}"
    );
    assert!(message.contains(&addr.to_string()) && message.contains("warn_before 14d"));
    let c = one_cert(&report);
    assert!(c.chain_verified && c.name_matches, "{c:?}");
}

#[tokio::test]
async fn expired_certificate_fails_but_is_inspected() {
    let pki = pki();
    let cert = pki
        .ca
        .issue(&["127.0.0.1"], Validity::expired_days_ago(5))
        .unwrap();
    let addr = tls_server(&cert).await;
    let report = run(&[addr.to_string()], &ca_line(&pki)).await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::CertExpiry);
    assert!(message.contains("expired on"), "{message}");
    let c = one_cert(&report);
    assert!(c.leaf_not_after < unix_now() - 4 * 86_400, "{c:?}");
    assert!(c.chain_verified, "signed by the trusted CA: {c:?}");
}

#[tokio::test]
async fn self_signed_certificate_does_not_verify() {
    let pki = pki();
    let cert = pki::self_signed(&["127.0.0.1"], Validity::days(90)).unwrap();
    let addr = tls_server(&cert).await;
    let report = run(&[addr.to_string()], &ca_line(&pki)).await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Tls);
    assert!(message.contains("does not verify"), "{message}");
    assert!(message.contains("unknown issuer"), "{message}");
    let c = one_cert(&report);
    assert!(!c.chain_verified, "{c:?}");
    assert!(c.name_matches, "the name is still judged: {c:?}");
    assert!((c.leaf_not_after - (unix_now() + 90 * 86_400)).abs() < 60);
}

#[tokio::test]
async fn wrong_name_fails() {
    let pki = pki();
    let cert = pki.ca.issue(&["other.test"], Validity::days(90)).unwrap();
    let addr = tls_server(&cert).await;
    let report = run(&[addr.to_string()], &ca_line(&pki)).await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Tls);
    assert!(
        message.contains("not valid for name 127.0.0.1"),
        "{message}"
    );
    let c = one_cert(&report);
    assert!(c.chain_verified && !c.name_matches, "{c:?}");
}

#[tokio::test]
async fn every_target_is_inspected_and_the_first_failure_kept() {
    let pki = pki();
    let good = pki.ca.issue(&["127.0.0.1"], Validity::days(90)).unwrap();
    let expired = pki
        .ca
        .issue(&["127.0.0.1"], Validity::expired_days_ago(1))
        .unwrap();
    let wrong = pki.ca.issue(&["other.test"], Validity::days(90)).unwrap();
    let targets = [
        tls_server(&good).await.to_string(),
        tls_server(&expired).await.to_string(),
        format!("tls://{}", tls_server(&wrong).await),
    ];
    let report = run(&targets, &ca_line(&pki)).await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::CertExpiry);
    assert!(message.contains(&targets[1]), "{message}");
    let seen: Vec<&str> = certs(&report).iter().map(|c| c.target.as_str()).collect();
    assert_eq!(seen, targets);
    // Each phase names its target, so the `check` output says which one was slow.
    let expected: Vec<String> = targets
        .iter()
        .flat_map(|t| [format!("connect@{t}"), format!("tls@{t}")])
        .collect();
    assert_eq!(phases(&report), expected);
}

#[tokio::test]
async fn smtp_starttls_upgrades_and_inspects() {
    let pki = pki();
    let cert = pki.ca.issue(&["127.0.0.1"], Validity::days(60)).unwrap();
    let addr = smtp_server(&cert, true).await;
    let report = run(&[format!("smtp+starttls://{addr}")], &ca_line(&pki)).await;
    assert_eq!(report.result, RunResult::Success, "{report:?}");
    assert_eq!(phases(&report), ["connect", "starttls", "tls"]);
    let c = one_cert(&report);
    assert!(c.chain_verified && c.name_matches, "{c:?}");
    assert_eq!(c.target, format!("smtp+starttls://{addr}"));
}

#[tokio::test]
async fn smtp_without_starttls_is_a_protocol_failure() {
    let pki = pki();
    let cert = pki.ca.issue(&["127.0.0.1"], Validity::days(60)).unwrap();
    let addr = smtp_server(&cert, false).await;
    let report = run(&[format!("smtp+starttls://{addr}")], &ca_line(&pki)).await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Protocol);
    assert!(message.contains("does not offer STARTTLS"), "{message}");
    assert!(
        message.starts_with("smtp server at smtp+starttls://"),
        "{message}"
    );
    assert!(certs(&report).is_empty());
}

#[tokio::test]
async fn imap_and_pop3_starttls_upgrade_and_inspect() {
    let pki = pki();
    let cert = pki.ca.issue(&["127.0.0.1"], Validity::days(60)).unwrap();
    for (scheme, addr) in [
        ("imap", imap_server(&cert).await),
        ("pop3", pop3_server(&cert).await),
    ] {
        let report = run(&[format!("{scheme}+starttls://{addr}")], &ca_line(&pki)).await;
        assert_eq!(report.result, RunResult::Success, "{scheme}: {report:?}");
        assert_eq!(phases(&report), ["connect", "starttls", "tls"], "{scheme}");
        assert!(one_cert(&report).chain_verified, "{scheme}");
    }
}

#[tokio::test]
async fn messages_show_the_template_and_the_metric_label_the_target() {
    let pki = pki();
    let cert = pki.ca.issue(&["other.test"], Validity::days(90)).unwrap();
    let addr = tls_server(&cert).await.to_string();
    let yaml = format!(
        "checks:\n  - name: t\n    kind: tls\n    channel: website\n    retries: 0\n    \
         targets: [\"${{SW_T_TLS_TARGET}}\"]\n{}",
        ca_line(&pki)
    );
    let vars = HashMap::from([("SW_T_TLS_TARGET".to_string(), addr.clone())]);
    let config = with_overlay(&vars, || {
        supportwatch::config::load_sources(&[(PathBuf::from("t.yaml"), yaml)])
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let prepared = supportwatch::assemble::prepare(config).unwrap_or_else(|e| panic!("{e}"));
    let report = runner::execute(&prepared.checks[0], 1, None).await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Tls);
    assert_eq!(
        message,
        "certificate for ${SW_T_TLS_TARGET} is not valid for its host name"
    );
    // The metric label names the host and port a dashboard reader knows.
    assert_eq!(one_cert(&report).target, addr);
    for line in &report.details {
        assert!(!line.contains("127.0.0.1"), "{line}");
    }
}

#[tokio::test]
async fn a_server_without_tls_is_a_tls_failure() {
    let pki = pki();
    let addr = http_server().await;
    let report = run(&[addr.to_string()], &ca_line(&pki)).await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Tls, "{message}");
    assert!(message.contains("TLS handshake with"), "{message}");
    assert!(certs(&report).is_empty());
}

#[tokio::test]
async fn a_closed_port_is_a_connect_failure() {
    let pki = pki();
    let (listener, addr) = listener().await;
    drop(listener);
    let report = run(&[addr.to_string()], &ca_line(&pki)).await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Connect, "{message}");
    assert!(message.contains(&addr.to_string()), "{message}");
    assert_eq!(phases(&report), ["connect"]);
}

#[tokio::test]
async fn a_flood_of_lines_is_cut_off() {
    let pki = pki();
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        if let Ok((mut tcp, _)) = listener.accept().await {
            // An endless multi-line greeting: the probe must stop reading, not grow forever.
            while tcp.write_all(b"220-spam spam spam\r\n").await.is_ok() {}
        }
    });
    let report = run(&[format!("smtp+starttls://{addr}")], &ca_line(&pki)).await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Protocol, "{message}");
    assert!(message.contains("more than 100 lines"), "{message}");
}

#[tokio::test]
async fn data_sent_before_the_handshake_is_refused() {
    let pki = pki();
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            let mut reader = BufReader::new(tcp);
            w(&mut reader, "220 mail.test ESMTP\r\n").await;
            let _ = read_line(&mut reader).await;
            w(&mut reader, "250-mail.test\r\n250 STARTTLS\r\n").await;
            let _ = read_line(&mut reader).await;
            // The go-ahead and an injected reply in one packet (CVE-2011-0411).
            w(&mut reader, "220 go ahead\r\n250 injected\r\n").await;
            linger(reader).await;
        }
    });
    let report = run(&[format!("smtp+starttls://{addr}")], &ca_line(&pki)).await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Protocol, "{message}");
    assert!(message.contains("sent data after agreeing"), "{message}");
}

#[tokio::test]
async fn a_typo_in_the_check_is_rejected_at_load() {
    let yaml = "checks:\n  - name: t\n    kind: tls\n    channel: website\n    \
                targets: [\"shop.test:443\"]\n    warn_befor: 14d\n";
    let err = supportwatch::config::load_sources(&[(PathBuf::from("t.yaml"), yaml.into())])
        .unwrap_err()
        .to_string();
    assert!(err.contains("warn_befor"), "{err}");
    let yaml = "checks:\n  - name: t\n    kind: tls\n    channel: website\n    \
                targets: [\"shop.test\"]\n";
    let err = supportwatch::config::load_sources(&[(PathBuf::from("t.yaml"), yaml.into())])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid target `shop.test`: missing port"),
        "{err}"
    );
}
