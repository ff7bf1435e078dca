//! The whole trip against real servers on loopback: a shop's contact form (a real HTTP server in
//! this test) mails through real postfix into real dovecot, and the `form` check proves delivery
//! over IMAP, then removes the test message; a bounce to the form's e-mail field fails the run at
//! once.

mod common;

use axum::extract::{Form, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use common::mailserver::mail_server;
use lettre::message::{SinglePart, header};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use supportwatch::outcome::{FailureKind, Observation};
use supportwatch::outcome::{RunReport, RunResult};
use supportwatch::runner;

/// How the shop's form handler behaves.
#[derive(Clone, Copy)]
enum Handler {
    /// Mails the message to the support address.
    Mails,
    /// Mails with a quoted-printable Cyrillic body.
    MailsQuotedPrintable,
    /// Says thank you and sends nothing: the silent failure.
    Silent,
    /// Mails to the mailbox that is nearly full.
    MailsToFullMailbox,
    /// Mails with a subject the mail server's spam rule files into Junk.
    MailsSpam,
    /// Mails on the customer's behalf (the form's e-mail field is the sender) to the nearly full
    /// mailbox, the message as the subject, padded past what the quota's grace lets in, so
    /// dovecot refuses it and the bounce goes to the customer.
    MailsBigOnBehalfToFullMailbox,
}

#[derive(Clone)]
struct Shop {
    smtp_port: u16,
}

async fn page() -> Html<&'static str> {
    Html(
        "<!doctype html><html><body><form id=\"feedback\" method=\"post\">\
         <input type=\"hidden\" name=\"form_id\" value=\"contact\">\
         <input name=\"name\" required><input name=\"email\"><textarea name=\"message\" required></textarea>\
         <button>Send</button></form></body></html>",
    )
}

async fn submit(
    State((shop, handler)): State<(Shop, Handler)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut text = format!(
        "Имя: {}\nСообщение: {}\n",
        form.get("name").map(String::as_str).unwrap_or(""),
        form.get("message").map(String::as_str).unwrap_or("")
    );
    let server = mail_server();
    let mut from = "Shop <shop@test.local>".to_string();
    let mut subject = "Contact form".to_string();
    let to = match handler {
        Handler::Silent => return Html("<h1>Спасибо!</h1>").into_response(),
        Handler::MailsBigOnBehalfToFullMailbox => {
            from = form.get("email").cloned().unwrap_or_default();
            subject = form.get("message").cloned().unwrap_or_default();
            // `full` has ~53 KB left and a 10% (~105 KB) grace: 200 KB is refused outright.
            text.push_str(&"padding to exceed the quota grace of the full mailbox\n".repeat(4000));
            server.user("full").address.clone()
        }
        Handler::MailsToFullMailbox => server.user("full").address.clone(),
        Handler::MailsSpam => {
            subject = "[spam-test] Contact form".into();
            server.user("support").address.clone()
        }
        Handler::Mails | Handler::MailsQuotedPrintable => server.user("support").address.clone(),
    };
    let part = match handler {
        Handler::MailsQuotedPrintable => SinglePart::builder()
            .header(header::ContentType::TEXT_PLAIN)
            .header(header::ContentTransferEncoding::QuotedPrintable)
            .body(text),
        _ => SinglePart::plain(text),
    };
    let message = Message::builder()
        .from(from.parse().expect("address"))
        .to(to.parse().expect("address"))
        .subject(subject)
        .singlepart(part)
        .expect("message");
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(shop.smtp_port)
        .build();
    match transport.send(message).await {
        Ok(_) => Html("<h1>Спасибо! Сообщение отправлено.</h1>").into_response(),
        Err(e) => Html(format!("<h1>Спасибо!</h1><!-- {e} -->")).into_response(),
    }
}

async fn start_shop(handler: Handler) -> SocketAddr {
    let shop = Shop {
        smtp_port: mail_server().smtp_port,
    };
    let app = axum::Router::new()
        .route("/contact", get(page).post(submit))
        .with_state((shop, handler));
    common::serve(app).await
}

fn config(shop: SocketAddr, mailbox_user: &str, within: &str, extra: &str) -> String {
    let server = mail_server();
    format!(
        r#"
mailboxes:
  support:
    imap: "imaps://127.0.0.1:{imaps}"
    user: "{user}"
    password: "${{TEST_IMAP_PASSWORD}}"
    ca_file: "{ca}"
    poll_interval: 1s
    {extra}
checks:
  - name: contact-form
    kind: form
    channel: feedback_form
    url: "http://{shop}/contact"
    form: "form#feedback"
    fields:
      name: Monitoring
      message: "Автоматическая проверка {{{{token}}}}, не отвечайте"
    expect: {{ status: 200, body: "Спасибо" }}
    deliver: {{ mailbox: support, within: {within} }}
    timeout: 20s
    interval: 1m
    retries: 0
"#,
        imaps = server.imaps_port,
        user = server.user(mailbox_user).address,
        ca = server.ca_file.display(),
    )
}

async fn run(yaml: &str, password: &str) -> RunReport {
    let prepared = common::prepare_with(yaml, &[("TEST_IMAP_PASSWORD", password)]);
    runner::execute(&prepared.checks[0], 1, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_form_is_delivered_measured_and_cleaned_up() {
    let server = mail_server();
    let shop = start_shop(Handler::Mails).await;
    let password = server.user("support").password.clone();
    let report = run(&config(shop, "support", "60s", ""), &password).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    let latency = common::delivery_latency(&report).expect("delivery latency recorded");
    assert!(latency < Duration::from_secs(60), "{latency:?}");
    eprintln!("form → postfix → dovecot → IMAP: delivered after {latency:?}");
    let phases: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    assert!(phases.contains(&"deliver"), "{phases:?}");
    common::assert_test_message_deleted(&report);
    assert!(
        server.find_message("support", &report.token).is_none(),
        "the test message must be gone from the support mailbox"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_that_thanks_but_sends_nothing_fails_not_delivered() {
    let server = mail_server();
    let shop = start_shop(Handler::Silent).await;
    let password = server.user("support").password.clone();
    let report = run(&config(shop, "support", "4s", ""), &password).await;
    assert_eq!(report.result, RunResult::Failure);
    let failure = report.failure.expect("failed");
    assert_eq!(failure.kind, FailureKind::NotDelivered);
    assert_eq!(failure.message, "not delivered within 4s (mailbox support)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cyrillic_quoted_printable_message_is_found() {
    let server = mail_server();
    let shop = start_shop(Handler::MailsQuotedPrintable).await;
    let password = server.user("support").password.clone();
    let report = run(&config(shop, "support", "60s", ""), &password).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_over_quota_max_fails_with_its_ratio() {
    let server = mail_server();
    let shop = start_shop(Handler::MailsToFullMailbox).await;
    let password = server.user("full").password.clone();
    let report = run(&config(shop, "full", "60s", "quota_max: 90%"), &password).await;
    let failure = report.failure.expect("failed");
    assert_eq!(failure.kind, FailureKind::Quota, "{}", failure.message);
    assert!(
        failure.message.starts_with("mailbox support is 9")
            && failure.message.ends_with("% full (quota_max 90%)"),
        "{}",
        failure.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_filed_as_spam_fails_delivered_to_spam() {
    let server = mail_server();
    let shop = start_shop(Handler::MailsSpam).await;
    let password = server.user("support").password.clone();
    let report = run(&config(shop, "support", "60s", ""), &password).await;
    let failure = report.failure.expect("failed");
    assert_eq!(failure.kind, FailureKind::Spam, "{}", failure.message);
    assert!(
        failure
            .message
            .starts_with("delivered to spam (folder Junk of mailbox support)"),
        "{}",
        failure.message
    );
    assert!(
        server.find_message("support", &report.token).is_none(),
        "cleaned up from Junk too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_imap_password_is_a_clear_error() {
    let server = mail_server();
    // Nothing is mailed: a message no run can clean up would stay in the mailbox.
    let shop = start_shop(Handler::Silent).await;
    let report = run(&config(shop, "support", "30s", ""), "definitely-wrong").await;
    let failure = report.failure.expect("failed");
    assert_eq!(failure.kind, FailureKind::Mailbox);
    assert!(
        failure.message.starts_with(&format!(
            "imap login to {} failed: authentication rejected",
            server.user("support").address
        )),
        "{}",
        failure.message
    );
    assert!(!failure.message.contains("definitely-wrong"));
}

/// The `mail` kind end to end over the authenticated paths: submission with STARTTLS and AUTH,
/// the support copy proven over IMAPS (IDLE), the sieve auto-reply proven over IMAP STARTTLS with
/// AUTHENTICATE PLAIN, both cleaned up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_and_its_auto_reply_are_proven_over_imap() {
    let server = mail_server();
    let customer = server.user("customer");
    let autoreply = server.user("autoreply");
    let yaml = format!(
        r#"
mailboxes:
  support:
    imap: "imaps://127.0.0.1:{imaps}"
    user: "{support_user}"
    password: "${{AUTOREPLY_PASSWORD}}"
    ca_file: "{ca}"
  monitor:
    imap: "imap://127.0.0.1:{imap}"
    user: "{customer_user}"
    password: "${{CUSTOMER_PASSWORD}}"
    auth: plain
    ca_file: "{ca}"
checks:
  - name: support-mail
    kind: mail
    channel: email
    smtp: "smtp+starttls://127.0.0.1:{submission}"
    user: "{customer_user}"
    password: "${{CUSTOMER_PASSWORD}}"
    ca_file: "{ca}"
    from: "Monitoring <{customer_user}>"
    to: "{support_user}"
    subject: "Проверка связи {{{{token}}}}"
    deliver: {{ mailbox: support, within: 60s }}
    auto_reply: {{ mailbox: monitor, within: 60s, body: "(?i)within 2 hours" }}
    timeout: 20s
    retries: 0
"#,
        imaps = server.imaps_port,
        imap = server.imap_port,
        submission = server.submission_port,
        ca = server.ca_file.display(),
        support_user = autoreply.address,
        customer_user = customer.address,
    );
    let prepared = common::prepare_with(
        &yaml,
        &[
            ("AUTOREPLY_PASSWORD", autoreply.password.as_str()),
            ("CUSTOMER_PASSWORD", customer.password.as_str()),
        ],
    );
    let report = runner::execute(&prepared.checks[0], 1, None).await;
    assert_eq!(report.result, RunResult::Success, "{report:#?}");
    let delivered = common::delivery_latency(&report).expect("delivery latency");
    let replied = report
        .observations
        .iter()
        .find_map(|o| match o {
            Observation::AutoReplyLatency(d) => Some(*d),
            _ => None,
        })
        .expect("auto-reply latency");
    eprintln!(
        "mail over submission → IMAPS: delivered after {delivered:?}, auto-reply after {replied:?}"
    );
    assert!(server.find_message("autoreply", &report.token).is_none());
    assert!(server.find_message("customer", &report.token).is_none());
    for secret in [&customer.password, &autoreply.password] {
        assert!(!format!("{report:?}").contains(secret.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_to_the_forms_email_field_fails_the_run_at_once() {
    let server = mail_server();
    let shop = start_shop(Handler::MailsBigOnBehalfToFullMailbox).await;
    let spare = server.user("spare");
    // The customer's address in the form is the mailbox `customer-box` (its `address`), so the
    // bounce of the shop's mail is looked for there.
    let yaml = config(shop, "support", "120s", "").replace(
        "checks:\n",
        &format!(
            "  customer-box: {{ maildir: \"{}\", address: {}, poll_interval: 200ms }}\nchecks:\n",
            spare.maildir.display(),
            spare.address
        ),
    );
    let yaml = yaml.replace(
        "      name: Monitoring\n",
        &format!("      name: Monitoring\n      email: {}\n", spare.address),
    );
    let password = server.user("support").password.clone();
    let report = run(&yaml, &password).await;
    let failure = report.failure.clone().expect("failed");
    assert_eq!(failure.kind, FailureKind::Bounced, "{}", failure.message);
    assert_eq!(
        failure.message,
        "bounced: 5.2.2 mailbox full (552 5.2.2 <full@test.local> Quota exceeded (mailbox for \
         user is full))"
    );
    assert!(
        report.duration < Duration::from_secs(60),
        "ended by the bounce, not by within (120s): {:?}",
        report.duration
    );
    assert!(
        server.find_message("spare", &report.token).is_none(),
        "the bounce is deleted"
    );
}
