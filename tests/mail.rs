//! The `mail` probe end to end: a real postfix + dovecot on loopback for delivery, TLS, AUTH and
//! the auto-reply; a scripted SMTP responder for the answers a real server will not give on
//! demand (552 mailbox full, 421 go away).
//!
//! Deliveries are proven in the harness users' Maildirs (`maildir:` mailboxes), which runs the
//! whole `deliver` path: watcher, token matching, cleanup.

mod common;

use common::mailserver::{MailServer, mail_server};
use common::{closed_port, prepare_with};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use supportwatch::probe::{FailureKind, Observation};
use supportwatch::runner::{self, RunReport, RunResult};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// `mailboxes:` declaring each harness user as a Maildir, polled often so latencies are real.
fn maildirs(server: &MailServer) -> String {
    let mut yaml = String::from("mailboxes:\n");
    for user in ["support", "autoreply", "customer", "spare"] {
        yaml.push_str(&format!(
            "  {user}: {{ maildir: \"{}\", poll_interval: 200ms }}\n",
            server.user(user).maildir.display()
        ));
    }
    yaml
}

/// Runs the first check of `yaml` once, delivery included.
async fn run(yaml: &str, vars: &[(&str, &str)]) -> RunReport {
    let prepared = prepare_with(yaml, vars);
    runner::execute(&prepared.checks[0], 1, None).await
}

fn phases(report: &RunReport) -> Vec<&str> {
    report.phases.iter().map(|p| p.name.as_str()).collect()
}

fn failure(report: &RunReport) -> (FailureKind, String) {
    let f = report
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("the run should fail: {report:#?}"));
    (f.kind, f.message.clone())
}

fn delivery_latency(report: &RunReport) -> Duration {
    report
        .observations
        .iter()
        .find_map(|o| match o {
            Observation::DeliveryLatency(d) => Some(*d),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no delivery latency in {report:#?}"))
}

fn has_detail(report: &RunReport, prefix: &str) -> bool {
    report.details.iter().any(|d| d.starts_with(prefix))
}

#[tokio::test]
async fn plain_smtp_delivers_to_the_support_mailbox_and_cleans_up() {
    let server = mail_server();
    let report = run(
        &format!(
            r#"{}
checks:
  - name: support-mail
    kind: mail
    channel: email
    timeout: 30s
    smtp: "smtp://127.0.0.1:{}"
    helo: monitor.test.local
    from: "Monitoring <customer@test.local>"
    to: support@test.local
    deliver: {{ mailbox: support, within: 60s }}
"#,
            maildirs(server),
            server.smtp_port
        ),
        &[],
    )
    .await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    assert_eq!(phases(&report), ["connect", "submit", "deliver"]);
    let latency = delivery_latency(&report);
    eprintln!("plain SMTP -> maildir delivery latency: {latency:?}");
    assert!(latency < Duration::from_secs(60), "{latency:?}");
    assert!(
        has_detail(
            &report,
            &format!("smtp 127.0.0.1:{} (no TLS)", server.smtp_port)
        ),
        "{:?}",
        report.details
    );
    assert!(
        has_detail(&report, "accepted: 250 2.0.0 Ok: queued as "),
        "{:?}",
        report.details
    );
    assert!(
        report
            .details
            .contains(&format!("message-id <{}@supportwatch>", report.token)),
        "{:?}",
        report.details
    );
    assert!(
        report.details.iter().any(|d| d == "test message deleted"),
        "{:?}",
        report.details
    );
    assert_eq!(server.find_message("support", &report.token), None);
}

#[tokio::test]
async fn submission_with_starttls_and_auth_delivers() {
    let server = mail_server();
    let customer = server.user("customer");
    let report = run(
        &format!(
            r#"{}
checks:
  - name: support-mail-submission
    kind: mail
    channel: email
    smtp: "smtp+starttls://localhost:{}"
    user: customer@test.local
    password: "${{SW_TEST_SMTP_PASSWORD}}"
    ca_file: "{}"
    from: customer@test.local
    to: support@test.local
    deliver: {{ mailbox: support, within: 60s }}
"#,
            maildirs(server),
            server.submission_port,
            server.ca_file.display()
        ),
        &[("SW_TEST_SMTP_PASSWORD", &customer.password)],
    )
    .await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    assert_eq!(
        phases(&report),
        ["connect", "tls", "auth", "submit", "deliver"]
    );
    assert!(
        has_detail(
            &report,
            &format!("smtp localhost:{} (STARTTLS)", server.submission_port)
        ),
        "{:?}",
        report.details
    );
    assert!(
        report
            .details
            .contains(&"authenticated as customer@test.local (PLAIN)".to_string()),
        "{:?}",
        report.details
    );
    delivery_latency(&report);
    let shown = format!("{report:?}");
    assert!(!shown.contains(&customer.password), "{shown}");
}

#[tokio::test]
async fn smtps_with_implicit_tls_delivers() {
    let server = mail_server();
    let customer = server.user("customer");
    let report = run(
        &format!(
            r#"{}
checks:
  - name: support-mail-smtps
    kind: mail
    channel: email
    smtp: "smtps://127.0.0.1:{}"
    user: customer@test.local
    password: "${{SW_TEST_SMTP_PASSWORD}}"
    ca_file: "{}"
    from: customer@test.local
    to: support@test.local
    deliver: {{ mailbox: support, within: 60s }}
"#,
            maildirs(server),
            server.smtps_port,
            server.ca_file.display()
        ),
        &[("SW_TEST_SMTP_PASSWORD", &customer.password)],
    )
    .await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    assert_eq!(phases(&report), ["connect", "auth", "submit", "deliver"]);
    assert!(
        has_detail(
            &report,
            &format!("smtp 127.0.0.1:{} (implicit TLS)", server.smtps_port)
        ),
        "{:?}",
        report.details
    );
    delivery_latency(&report);
}

#[tokio::test]
async fn a_wrong_password_is_an_smtp_failure_that_does_not_show_it() {
    let server = mail_server();
    let password = "not-the-password-4711";
    let report = run(
        &format!(
            r#"
checks:
  - name: support-mail-bad-login
    kind: mail
    channel: email
    smtp: "smtp+starttls://127.0.0.1:{}"
    user: customer@test.local
    password: "${{SW_TEST_SMTP_PASSWORD}}"
    ca_file: "{}"
    from: customer@test.local
    to: support@test.local
"#,
            server.submission_port,
            server.ca_file.display()
        ),
        &[("SW_TEST_SMTP_PASSWORD", password)],
    )
    .await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Smtp);
    assert_eq!(
        message,
        "smtp authentication as customer@test.local failed: 535 5.7.8 Error: authentication \
         failed: (reason unavailable)"
    );
    assert_eq!(phases(&report), ["connect", "tls", "auth"]);
    let everything = format!(
        "{report:?} {}",
        serde_json::to_string(&report).expect("report serializes")
    );
    assert!(!everything.contains(password), "{everything}");
}

#[tokio::test]
async fn a_stopped_relay_is_a_connect_failure_naming_the_port() {
    let port = closed_port();
    let report = run(
        &format!(
            r#"
checks:
  - name: relay-stopped
    kind: mail
    channel: email
    smtp: "smtp://127.0.0.1:{port}"
    from: customer@test.local
    to: support@test.local
"#
        ),
        &[],
    )
    .await;
    assert_eq!(
        failure(&report),
        (
            FailureKind::Connect,
            format!("smtp connect to 127.0.0.1:{port} failed: connection refused")
        )
    );
    assert_eq!(phases(&report), ["connect"]);
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_failure() {
    let server = mail_server();
    // No ca_file: the system roots do not know the harness's private CA.
    let report = run(
        &format!(
            r#"
checks:
  - name: smtps-untrusted
    kind: mail
    channel: email
    smtp: "smtps://127.0.0.1:{}"
    from: customer@test.local
    to: support@test.local
"#,
            server.smtps_port
        ),
        &[],
    )
    .await;
    assert_eq!(
        failure(&report),
        (
            FailureKind::Tls,
            format!(
                "TLS handshake with 127.0.0.1:{} failed: invalid peer certificate: UnknownIssuer",
                server.smtps_port
            )
        )
    );
}

#[tokio::test]
async fn an_auto_reply_that_promises_an_answer_passes() {
    let server = mail_server();
    let report = run(
        &format!(
            r#"{}
checks:
  - name: autoreply-mail
    kind: mail
    channel: email
    smtp: "smtp://127.0.0.1:{}"
    from: "Customer <customer@test.local>"
    to: autoreply@test.local
    deliver: {{ mailbox: autoreply, within: 60s }}
    auto_reply: {{ mailbox: customer, within: 60s, body: "(?i)within 2 hours" }}
"#,
            maildirs(server),
            server.smtp_port
        ),
        &[],
    )
    .await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    assert_eq!(
        phases(&report),
        ["connect", "submit", "deliver", "auto_reply"]
    );
    let reply = report
        .observations
        .iter()
        .find_map(|o| match o {
            Observation::AutoReplyLatency(d) => Some(*d),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no auto-reply latency in {report:#?}"));
    eprintln!("plain SMTP -> sieve vacation -> maildir auto-reply latency: {reply:?}");
    assert!(
        has_detail(
            &report,
            "auto-reply \"Auto: we received your message\" reached customer"
        ),
        "{:?}",
        report.details
    );
    assert_eq!(server.find_message("customer", &report.token), None);
}

#[tokio::test]
async fn no_auto_reply_from_a_mailbox_without_one_fails_with_reason_auto_reply() {
    let server = mail_server();
    let report = run(
        &format!(
            r#"{}
checks:
  - name: no-autoreply-mail
    kind: mail
    channel: email
    smtp: "smtp://127.0.0.1:{}"
    from: customer@test.local
    to: spare@test.local
    deliver: {{ mailbox: spare, within: 60s }}
    auto_reply: {{ mailbox: customer, within: 15s, body: "(?i)within 2 hours" }}
"#,
            maildirs(server),
            server.smtp_port
        ),
        &[],
    )
    .await;
    assert_eq!(
        failure(&report),
        (
            FailureKind::AutoReply,
            "no auto-reply matching /(?i)within 2 hours/ within 15s (mailbox customer)".into()
        )
    );
    // The mail itself arrived; only the acknowledgement is missing.
    delivery_latency(&report);
}

#[tokio::test]
async fn cyrillic_subject_and_body_arrive_intact() {
    let server = mail_server();
    let report = run(
        &format!(
            r#"{}
checks:
  - name: cyrillic-mail
    kind: mail
    channel: email
    smtp: "smtp://127.0.0.1:{}"
    from: "Мониторинг <customer@test.local>"
    to: support@test.local
    subject: "Проверка поддержки {{{{token}}}}"
    body: "Это автоматическая проверка службы поддержки, отвечать не нужно. {{{{token}}}}"
    deliver:
      mailbox: support
      within: 60s
      match: "автоматическая проверка службы поддержки"
      cleanup: false
"#,
            maildirs(server),
            server.smtp_port
        ),
        &[],
    )
    .await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    let file = server
        .find_message("support", &report.token)
        .expect("kept without cleanup");
    let raw = std::fs::read(&file).expect("read the delivered message");
    let parsed = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("parse the delivered message");
    assert_eq!(
        parsed.subject(),
        Some(format!("Проверка поддержки {}", report.token).as_str())
    );
    assert_eq!(
        parsed.from().and_then(|f| f.first()).and_then(|a| a.name()),
        Some("Мониторинг")
    );
    assert_eq!(
        parsed.body_text(0).as_deref().map(str::trim_end),
        Some(
            format!(
                "Это автоматическая проверка службы поддержки, отвечать не нужно. {}",
                report.token
            )
            .as_str()
        )
    );
    let _ = std::fs::remove_file(file);
}

/// What the scripted responder answers; every other command gets 250.
#[derive(Clone)]
struct Script {
    greeting: &'static str,
    rcpt: &'static str,
}

/// A scripted SMTP server on loopback. Returns its address and the commands it received.
async fn scripted_smtp(script: Script) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind scripted smtp");
    let addr = listener.local_addr().expect("local addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let script = script.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read);
                let say = |text: &str| format!("{text}\r\n");
                if write
                    .write_all(say(script.greeting).as_bytes())
                    .await
                    .is_err()
                    || !script.greeting.starts_with('2')
                {
                    log.lock().unwrap().push("(greeting refused)".into());
                    return;
                }
                let mut in_data = false;
                let mut line = String::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            let _ = write
                                .write_all(b"250 2.0.0 Ok: queued as SCRIPT1\r\n")
                                .await;
                        }
                        continue;
                    }
                    let command = line.trim_end().to_string();
                    log.lock().unwrap().push(command.clone());
                    let verb = command
                        .split([' ', ':'])
                        .next()
                        .unwrap_or("")
                        .to_ascii_uppercase();
                    let reply = match verb.as_str() {
                        "EHLO" => {
                            "250-scripted.test\r\n250-8BITMIME\r\n250 SIZE 10240000".to_string()
                        }
                        "RCPT" => script.rcpt.to_string(),
                        "DATA" => {
                            in_data = true;
                            "354 End data with <CR><LF>.<CR><LF>".to_string()
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
                            return;
                        }
                        _ => "250 2.0.0 Ok".to_string(),
                    };
                    if write.write_all(say(&reply).as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn scripted_check(name: &str, addr: SocketAddr) -> String {
    format!(
        r#"
checks:
  - name: {name}
    kind: mail
    channel: email
    retries: 0
    smtp: "smtp://{addr}"
    from: customer@test.local
    to: support@test.local
"#
    )
}

#[tokio::test]
async fn a_552_to_rcpt_to_is_mailbox_full_and_does_not_back_off() {
    let (addr, seen) = scripted_smtp(Script {
        greeting: "220 scripted.test ESMTP",
        rcpt: "552 5.2.2 <support@test.local>: Recipient address rejected: Mailbox full",
    })
    .await;
    let yaml = scripted_check("full-mailbox", addr);
    for _ in 0..2 {
        let report = run(&yaml, &[]).await;
        assert_eq!(
            failure(&report),
            (
                FailureKind::MailboxFull,
                "mailbox full: 552 5.2.2 <support@test.local>: Recipient address rejected: \
                 Mailbox full"
                    .into()
            )
        );
        assert_eq!(phases(&report), ["connect", "submit"]);
    }
    // Both runs reached RCPT TO: a full mailbox is not a reason to stop knocking.
    let rcpts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.starts_with("RCPT TO:"))
        .count();
    assert_eq!(rcpts, 2);
}

#[tokio::test]
async fn a_452_to_rcpt_to_is_mailbox_full_too() {
    let (addr, _) = scripted_smtp(Script {
        greeting: "220 scripted.test ESMTP",
        rcpt: "452 4.2.2 Mailbox full, try again later",
    })
    .await;
    let report = run(&scripted_check("full-mailbox-452", addr), &[]).await;
    assert_eq!(
        failure(&report),
        (
            FailureKind::MailboxFull,
            "mailbox full: 452 4.2.2 Mailbox full, try again later".into()
        )
    );
}

#[tokio::test]
async fn a_421_makes_the_account_back_off_instead_of_hammering() {
    let (addr, seen) = scripted_smtp(Script {
        greeting: "421 4.7.0 scripted.test Too many connections, try later",
        rcpt: "250 2.1.5 Ok",
    })
    .await;
    let yaml = scripted_check("busy-relay", addr);
    let first = run(&yaml, &[]).await;
    assert_eq!(
        failure(&first),
        (
            FailureKind::Smtp,
            format!(
                "smtp server {addr} refused the session: 421 4.7.0 scripted.test Too many \
                 connections, try later; smtp account {addr} backs off for 1m"
            )
        )
    );
    let second = run(&yaml, &[]).await;
    let (kind, message) = failure(&second);
    assert_eq!(kind, FailureKind::Smtp);
    let expected = format!(
        "smtp account {addr} backing off for 1m after 421 4.7.0 scripted.test Too many \
         connections, try later; next send in "
    );
    assert!(message.starts_with(&expected), "{message}");
    assert!(second.phases.is_empty(), "{:?}", second.phases);
    // The second run never connected.
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_retry_after_a_421_meets_the_back_off_instead_of_the_server() {
    let (addr, seen) = scripted_smtp(Script {
        greeting: "421 4.3.2 scripted.test Service shutting down",
        rcpt: "250 2.1.5 Ok",
    })
    .await;
    let yaml = scripted_check("busy-relay-retried", addr)
        .replace("retries: 0", "retries: 1\n    retry_delay: 10ms");
    let report = run(&yaml, &[]).await;
    assert_eq!(report.attempts, 2);
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Smtp);
    assert!(
        message.starts_with(&format!(
            "smtp account {addr} backing off for 1m after 421 4.3.2 scripted.test Service \
             shutting down; next send in "
        )),
        "{message}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_451_to_rcpt_to_backs_off_as_well() {
    let (addr, seen) = scripted_smtp(Script {
        greeting: "220 scripted.test ESMTP",
        rcpt: "451 4.3.0 Temporary lookup failure",
    })
    .await;
    let yaml = scripted_check("rcpt-451", addr);
    let first = run(&yaml, &[]).await;
    assert_eq!(
        failure(&first),
        (
            FailureKind::Smtp,
            format!(
                "RCPT TO:<support@test.local> refused: 451 4.3.0 Temporary lookup failure; smtp \
                 account {addr} backs off for 1m"
            )
        )
    );
    let second = run(&yaml, &[]).await;
    assert!(
        failure(&second).1.starts_with(&format!(
            "smtp account {addr} backing off for 1m after 451 4.3.0"
        )),
        "{:?}",
        second.failure
    );
    let connections = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.starts_with("EHLO"))
        .count();
    assert_eq!(connections, 1);
}

#[tokio::test]
async fn starttls_required_but_not_offered_is_a_tls_failure() {
    // The scripted server's EHLO has no STARTTLS, like a relay whose certificate was removed.
    let (addr, seen) = scripted_smtp(Script {
        greeting: "220 scripted.test ESMTP",
        rcpt: "250 2.1.5 Ok",
    })
    .await;
    let yaml = scripted_check("no-starttls", addr).replace("smtp://", "smtp+starttls://");
    let report = run(&yaml, &[]).await;
    assert_eq!(
        failure(&report),
        (
            FailureKind::Tls,
            format!("smtp server {addr} does not offer STARTTLS, which smtp+starttls:// requires")
        )
    );
    assert_eq!(phases(&report), ["connect", "tls"]);
    // Nothing was sent in the clear.
    assert!(
        !seen.lock().unwrap().iter().any(|c| c.starts_with("MAIL")),
        "{:?}",
        seen.lock().unwrap()
    );
}

#[tokio::test]
async fn a_server_that_hangs_up_before_greeting_is_a_protocol_failure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let report = run(&scripted_check("hangs-up", addr), &[]).await;
    assert_eq!(
        failure(&report),
        (
            FailureKind::Protocol,
            format!("smtp server {addr} closed the connection at the greeting")
        )
    );
}

#[tokio::test]
async fn min_interval_spaces_sends_through_one_account_across_checks() {
    let (addr, seen) = scripted_smtp(Script {
        greeting: "220 scripted.test ESMTP",
        rcpt: "250 2.1.5 Ok",
    })
    .await;
    let yaml = format!(
        r#"
checks:
  - name: paced-a
    kind: mail
    channel: email
    smtp: "smtp://{addr}"
    from: customer@test.local
    to: support@test.local
    min_interval: 2s
  - name: paced-b
    kind: mail
    channel: email
    smtp: "smtp://{addr}"
    from: customer@test.local
    to: spare@test.local
    min_interval: 2s
"#
    );
    let prepared = prepare_with(&yaml, &[]);
    let first = runner::execute(&prepared.checks[0], 1, None).await;
    assert_eq!(first.result, RunResult::Success, "{first:#?}");
    assert_eq!(phases(&first), ["connect", "submit"]);
    let second = runner::execute(&prepared.checks[1], 2, None).await;
    assert_eq!(second.result, RunResult::Success, "{second:#?}");
    assert_eq!(phases(&second), ["queue", "connect", "submit"]);
    let queued = second.phases[0].duration.expect("closed phase");
    assert!(
        queued > Duration::from_millis(1500) && queued < Duration::from_millis(2500),
        "{queued:?}"
    );
    assert!(has_detail(&second, "waited "), "{:?}", second.details);
    assert!(
        second
            .details
            .iter()
            .any(|d| d.ends_with(&format!("for min_interval 2s of smtp account {addr}"))),
        "{:?}",
        second.details
    );
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|c| c.starts_with("MAIL FROM:"))
            .count(),
        2
    );
}

/// Loads `yaml` and returns every config problem, one per line.
fn config_errors(yaml: &str) -> String {
    match supportwatch::config::load_sources(&[(
        std::path::PathBuf::from("test.yaml"),
        yaml.to_string(),
    )]) {
        Ok(_) => panic!("config should be refused:\n{yaml}"),
        Err(e) => {
            e.0.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        }
    }
}

fn check_with(body: &str) -> String {
    format!(
        "checks:\n  - name: m\n    kind: mail\n    channel: email\n    from: monitor@example.ru\n    to: support@shop.example\n{body}"
    )
}

#[test]
fn bad_mail_configs_are_refused_with_exact_messages() {
    let cases = [
        (
            "    smtp: \"smtp://mx.shop.example\"\n    user: monitor@example.ru\n    password: hunter2\n",
            "test.yaml:2:5: check \"m\": `user`/`password` over plain `smtp://mx.shop.example` would send the password unencrypted; use smtp+starttls://mx.shop.example:587 or smtps://mx.shop.example:465 (plain AUTH is allowed to a loopback relay only)",
        ),
        (
            "    smtp: \"smtp+starttls://mx.shop.example\"\n    user: monitor@example.ru\n",
            "test.yaml:2:5: check \"m\": set both `user` and `password` for SMTP AUTH, or neither",
        ),
        (
            "    smtp: \"smtp://mx.shop.example\"\n    ca_file: /etc/ca.pem\n",
            "test.yaml:2:5: check \"m\": `ca_file` needs TLS, but `smtp://mx.shop.example` is plain SMTP; use smtp+starttls:// or smtps://",
        ),
        (
            "    smtp: \"imap://mx.shop.example\"\n",
            "test.yaml:2:5: check \"m\": smtp URL scheme `imap` must be smtp:// (no TLS), smtp+starttls:// (STARTTLS required) or smtps:// (implicit TLS)",
        ),
        (
            "    smtp: \"smtp://mx.shop.example\"\n    subject: \"Automated test\"\n    body: \"Automated test, please ignore\"\n",
            "test.yaml:2:5: check \"m\": put `{{token}}` in `subject` or `body`: helpdesks and autoresponders often keep only those, and the token is how the delivery and the auto-reply are recognised",
        ),
        (
            "    smtp: \"smtp://mx.shop.example\"\n    subject: \"{{tokn}}\"\n",
            "test.yaml:2:5: check \"m\": unknown template variable `{{tokn}}`, expected one of `{{token}}`, `{{check}}`, `{{now}}`",
        ),
        (
            "    smpt: \"smtp://mx.shop.example\"\n",
            "test.yaml:7:5: check \"m\": unknown field `smpt`, expected one of smtp, user, password, ca_file, helo, from, to, subject, body, min_interval, deliver, auto_reply (did you mean `smtp`?)",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(config_errors(&check_with(body)), expected, "{body}");
    }
    let bad_from = "checks:\n  - name: m\n    kind: mail\n    channel: email\n    smtp: \"smtp://mx.shop.example\"\n    from: \"not an address\"\n    to: support@shop.example\n";
    assert_eq!(
        config_errors(bad_from),
        "test.yaml:2:5: check \"m\": invalid `from` address `not an address` (invalid input): write `user@domain` or `Name <user@domain>`"
    );
}

#[test]
fn the_shipped_example_has_a_mail_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("checks/examples");
    let config = supportwatch::config::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    let check = config
        .checks
        .iter()
        .find(|c| c.kind() == supportwatch::config::Kind::Mail)
        .expect("checks/examples has a mail check");
    let (deliver, auto_reply) = check.spec.deliveries();
    assert!(deliver.is_some() && auto_reply.is_some());
    let listed = supportwatch::probe::summary(&check.spec);
    assert_eq!(
        listed,
        "mail to support@example.ru via smtp+starttls://smtp.example.ru:587"
    );
    supportwatch::tlsconf::install_crypto_provider();
    supportwatch::runner::prepare(config).unwrap_or_else(|e| panic!("{e}"));
}
