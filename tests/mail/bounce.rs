//! Bounces through the real postfix + dovecot: the harness user `full` is filled past its 1 MiB
//! quota, so dovecot's LMTP refuses every further message (552 5.2.2) and postfix returns a
//! delivery status notification to the envelope sender. With the sender's mailbox declared, the
//! run fails on that bounce at once instead of waiting out `within`.

use super::{failure, has_detail, mail_check, own_phases, run};
use crate::common::mailserver::{MailServer, mail_server};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;
use supportwatch::outcome::{FailureKind, RunResult};
use tokio::sync::OnceCell;

/// Fills `full` past its quota, once per test process. It starts at 94.9% of 1 MiB; this ~70 KB
/// message still fits within dovecot's 10% quota grace and leaves it at ~102%, after which
/// every message to `full` bounces, however small.
async fn fill_full_mailbox(server: &MailServer) {
    static FILLED: OnceCell<()> = OnceCell::const_new();
    FILLED
        .get_or_init(|| async {
            let marker = supportwatch::outcome::new_token("quota-filler");
            let filler = Message::builder()
                .from("filler@test.local".parse().expect("address"))
                .to(server.user("full").address.parse().expect("address"))
                .subject(format!("quota filler {marker}"))
                .body(format!(
                    "{marker}\n{}",
                    "filler line of seventy characters, to fill the mailbox past its quota\n"
                        .repeat(1000)
                ))
                .expect("a valid message");
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(server.smtp_port)
                .timeout(Some(Duration::from_secs(10)))
                .build()
                .send(filler)
                .await
                .expect("SMTP accepts the filler");
            server
                .wait_for_message_async("full", &marker, Duration::from_secs(30))
                .await
                .expect("the filler is stored: it fits within the quota grace");
        })
        .await;
}

/// `mailboxes:` with `full` over IMAP (its quota is read there) and the sender `spare` as a
/// Maildir that states its address.
fn mailboxes(server: &MailServer) -> String {
    format!(
        "mailboxes:\n  full:\n    imap: \"imaps://127.0.0.1:{}\"\n    user: full@test.local\n    \
         password: \"${{SW_TEST_FULL_PASSWORD}}\"\n    ca_file: \"{}\"\n    poll_interval: 200ms\n  \
         spare: {{ maildir: \"{}\", address: spare@test.local, poll_interval: 200ms }}\n  \
         support: {{ maildir: \"{}\", poll_interval: 200ms }}\n",
        server.imaps_port,
        server.ca_file.display(),
        server.user("spare").maildir.display(),
        server.user("support").maildir.display(),
    )
}

fn smtp(server: &MailServer) -> String {
    format!("smtp://127.0.0.1:{}", server.smtp_port)
}

async fn run_check(
    server: &MailServer,
    name: &str,
    rest: &str,
) -> supportwatch::outcome::RunReport {
    let yaml = format!(
        "{}{}",
        mailboxes(server),
        mail_check(name, &smtp(server), rest)
    );
    let password = server.user("full").password.clone();
    run(&yaml, &[("SW_TEST_FULL_PASSWORD", &password)]).await
}

/// `…; mailbox full is N% full (1.0 MiB of 1.0 MiB)` with N ≥ 100: the quota note.
fn assert_names_full_quota(message: &str) {
    let note = message
        .split("; mailbox full is ")
        .nth(1)
        .unwrap_or_else(|| panic!("no quota note in {message:?}"));
    let percent: u32 = note
        .strip_suffix("% full (1.0 MiB of 1.0 MiB)")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected quota note {note:?}"));
    assert!((100..=110).contains(&percent), "{message}");
}

#[tokio::test]
async fn mail_to_a_full_mailbox_bounces_and_fails_at_once_with_the_dsn_status() {
    let server = mail_server();
    fill_full_mailbox(server).await;
    let report = run_check(
        server,
        "bounced-mail",
        "    from: spare@test.local\n    to: full@test.local\n    \
         deliver: { mailbox: full, within: 120s }\n",
    )
    .await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Bounced, "{report:#?}");
    assert!(
        message.starts_with(
            "bounced: 5.2.2 mailbox full (552 5.2.2 <full@test.local> Quota exceeded (mailbox \
             for user is full)); "
        ),
        "{message}"
    );
    assert_names_full_quota(&message);
    assert_eq!(own_phases(&report), ["connect", "submit", "deliver"]);
    let waited = report
        .phases
        .iter()
        .find(|p| p.name == "deliver")
        .and_then(|p| p.duration)
        .expect("a finished deliver phase");
    assert!(
        waited < Duration::from_secs(60),
        "the bounce ends the wait well before within (120s): {waited:?}"
    );
    assert!(
        has_detail(
            &report,
            "bounce of the message to full@test.local found in spare/INBOX: \"Undelivered Mail \
             Returned to Sender\""
        ),
        "{:?}",
        report.details
    );
    assert!(
        has_detail(&report, "bounce deleted"),
        "{:?}",
        report.details
    );
    assert_eq!(
        server.find_message("spare", &report.token),
        None,
        "the DSN is gone from the sender's mailbox"
    );
}

#[tokio::test]
async fn a_lost_mail_names_the_nearly_full_mailbox_without_quota_max() {
    let server = mail_server();
    fill_full_mailbox(server).await;
    // The bounce goes to an undeclared (and undeliverable) sender, so only the deadline ends the
    // wait; the failure still says why the mail is likely missing.
    let report = run_check(
        server,
        "lost-mail",
        "    from: monitor@example.invalid\n    to: full@test.local\n    \
         deliver: { mailbox: full, within: 4s, late_window: 1s }\n",
    )
    .await;
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::NotDelivered, "{report:#?}");
    assert!(
        message.starts_with("not delivered within 4s (mailbox full); "),
        "{message}"
    );
    assert_names_full_quota(&message);
}

#[tokio::test]
async fn a_delivered_mail_from_a_declared_sender_passes_as_before() {
    let server = mail_server();
    let report = run_check(
        server,
        "sender-declared",
        "    from: spare@test.local\n    to: support@test.local\n    \
         deliver: { mailbox: support, within: 60s }\n",
    )
    .await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    assert!(
        has_detail(&report, "test message deleted"),
        "{:?}",
        report.details
    );
}
