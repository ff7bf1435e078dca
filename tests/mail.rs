//! The `mail` probe end to end against a real postfix + dovecot on loopback: delivery, TLS, AUTH
//! and the auto-reply. `scripted` covers the answers a real server will not give on demand (552
//! mailbox full, 421 go away); `config` the refused configs and the shipped example; `bounce`
//! a mailbox filled past its quota, whose bounce fails the run at once.
//!
//! Deliveries are proven in the harness users' Maildirs (`maildir:` mailboxes), which runs the
//! whole `deliver` path: watcher, token matching, cleanup.

mod common;
// Explicit paths: next to this crate root, `config.rs` would be the config tests' own crate.
#[path = "mail/bounce.rs"]
mod bounce;
#[path = "mail/config.rs"]
mod config;
#[path = "mail/scripted.rs"]
mod scripted;

use common::mailserver::{MailServer, mail_server};
use common::{closed_port, prepare_with};
use std::time::Duration;
use supportwatch::outcome::{FailureKind, Observation};
use supportwatch::outcome::{RunReport, RunResult};
use supportwatch::runner;

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

/// Runs `check` once with every harness user declared as a mailbox (see [`maildirs`]).
async fn run_delivering(server: &MailServer, check: &str, vars: &[(&str, &str)]) -> RunReport {
    run(&format!("{}{check}", maildirs(server)), vars).await
}

/// `checks:` with one `mail` check named `name` that sends through `smtp`; `rest` is the rest of
/// its keys, as YAML lines indented by four spaces.
fn mail_check(name: &str, smtp: &str, rest: &str) -> String {
    format!(
        "checks:\n  - name: {name}\n    kind: mail\n    channel: email\n    smtp: \"{smtp}\"\n{rest}"
    )
}

/// The keys of a `mail` check that logs in as the harness user `customer`, its password taken
/// from `${SW_TEST_SMTP_PASSWORD}`, and trusts the harness CA.
fn customer_login(server: &MailServer) -> String {
    format!(
        "    user: customer@test.local\n    password: \"${{SW_TEST_SMTP_PASSWORD}}\"\n    ca_file: \"{}\"\n",
        server.ca_file.display()
    )
}

/// Runs check `name`: customer, logged in through `smtp`, writes to support; the message must
/// arrive.
async fn run_as_customer(server: &MailServer, name: &str, smtp: &str) -> RunReport {
    let customer = server.user("customer");
    let rest = format!(
        "{}    from: customer@test.local\n    to: support@test.local\n    deliver: {{ mailbox: support, within: 60s }}\n",
        customer_login(server)
    );
    run_delivering(
        server,
        &mail_check(name, smtp, &rest),
        &[("SW_TEST_SMTP_PASSWORD", &customer.password)],
    )
    .await
}

fn phases(report: &RunReport) -> Vec<&str> {
    report.phases.iter().map(|p| p.name.as_str()).collect()
}

/// The phases of a run against the shared mail server, without a leading `queue`: SMTP pacing is
/// per account and process-wide, and the tests of this binary run at once and share accounts, so
/// a run may first wait for another test's send. That wait says nothing about the run under test;
/// everything after it must be exact.
fn own_phases(report: &RunReport) -> Vec<&str> {
    let mut all = phases(report);
    if all.first() == Some(&"queue") {
        all.remove(0);
    }
    all
}

fn failure(report: &RunReport) -> (FailureKind, String) {
    let f = report
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("the run should fail: {report:#?}"));
    (f.kind, f.message.clone())
}

fn delivery_latency(report: &RunReport) -> Duration {
    common::delivery_latency(report).unwrap_or_else(|| panic!("no delivery latency in {report:#?}"))
}

fn has_detail(report: &RunReport, prefix: &str) -> bool {
    report.details.iter().any(|d| d.starts_with(prefix))
}

#[tokio::test]
async fn plain_smtp_delivers_to_the_support_mailbox_and_cleans_up() {
    let server = mail_server();
    let check = mail_check(
        "support-mail",
        &format!("smtp://127.0.0.1:{}", server.smtp_port),
        r#"    timeout: 30s
    helo: monitor.test.local
    from: "Monitoring <customer@test.local>"
    to: support@test.local
    deliver: { mailbox: support, within: 60s }
"#,
    );
    let report = run_delivering(server, &check, &[]).await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    assert_eq!(own_phases(&report), ["connect", "submit", "deliver"]);
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
    common::assert_test_message_deleted(&report);
    assert_eq!(server.find_message("support", &report.token), None);
}

#[tokio::test]
async fn submission_with_starttls_and_auth_delivers() {
    let server = mail_server();
    let customer = server.user("customer");
    let report = run_as_customer(
        server,
        "support-mail-submission",
        &format!("smtp+starttls://localhost:{}", server.submission_port),
    )
    .await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    assert_eq!(
        own_phases(&report),
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
    let report = run_as_customer(
        server,
        "support-mail-smtps",
        &format!("smtps://127.0.0.1:{}", server.smtps_port),
    )
    .await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    assert_eq!(
        own_phases(&report),
        ["connect", "auth", "submit", "deliver"]
    );
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
    let check = mail_check(
        "support-mail-bad-login",
        &format!("smtp+starttls://127.0.0.1:{}", server.submission_port),
        &format!(
            "{}    from: customer@test.local\n    to: support@test.local\n",
            customer_login(server)
        ),
    );
    let report = run(&check, &[("SW_TEST_SMTP_PASSWORD", password)]).await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Smtp);
    assert_eq!(
        message,
        "smtp authentication as customer@test.local failed: 535 5.7.8 Error: authentication \
         failed: (reason unavailable)"
    );
    assert_eq!(own_phases(&report), ["connect", "tls", "auth"]);
    let everything = format!(
        "{report:?} {}",
        serde_json::to_string(&report).expect("report serializes")
    );
    assert!(!everything.contains(password), "{everything}");
}

#[tokio::test]
async fn a_stopped_relay_is_a_connect_failure_naming_the_port() {
    let port = closed_port();
    let check = mail_check(
        "relay-stopped",
        &format!("smtp://127.0.0.1:{port}"),
        "    from: customer@test.local\n    to: support@test.local\n",
    );
    let report = run(&check, &[]).await;
    assert_eq!(
        failure(&report),
        (
            FailureKind::Connect,
            format!("smtp connect to 127.0.0.1:{port} failed: connection refused")
        )
    );
    assert_eq!(own_phases(&report), ["connect"]);
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_failure() {
    let server = mail_server();
    // No ca_file: the system roots do not know the harness's private CA.
    let check = mail_check(
        "smtps-untrusted",
        &format!("smtps://127.0.0.1:{}", server.smtps_port),
        "    from: customer@test.local\n    to: support@test.local\n",
    );
    let report = run(&check, &[]).await;
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
    let check = mail_check(
        "autoreply-mail",
        &format!("smtp://127.0.0.1:{}", server.smtp_port),
        r#"    from: "Customer <customer@test.local>"
    to: autoreply@test.local
    deliver: { mailbox: autoreply, within: 60s }
    auto_reply: { mailbox: customer, within: 60s, body: "(?i)within 2 hours" }
"#,
    );
    let report = run_delivering(server, &check, &[]).await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    assert_eq!(
        own_phases(&report),
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
    let check = mail_check(
        "no-autoreply-mail",
        &format!("smtp://127.0.0.1:{}", server.smtp_port),
        r#"    from: customer@test.local
    to: spare@test.local
    deliver: { mailbox: spare, within: 60s }
    auto_reply: { mailbox: customer, within: 15s, body: "(?i)within 2 hours" }
"#,
    );
    let report = run_delivering(server, &check, &[]).await;
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
    let check = mail_check(
        "cyrillic-mail",
        &format!("smtp://127.0.0.1:{}", server.smtp_port),
        r#"    from: "Мониторинг <customer@test.local>"
    to: support@test.local
    subject: "Проверка поддержки {{token}}"
    body: "Это автоматическая проверка службы поддержки, отвечать не нужно. {{token}}"
    deliver:
      mailbox: support
      within: 60s
      match: "автоматическая проверка службы поддержки"
      cleanup: false
"#,
    );
    let report = run_delivering(server, &check, &[]).await;
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
