//! The e-mail notifier against the postfix + dovecot harness: an alert submitted over
//! STARTTLS arrives in a mailbox as the owner should read it, and a wrong password is a
//! permanent error that does not show it.

use super::*;
use common::mailserver::mail_server;
use mail_parser::MimeHeaders;

/// An e-mail notifier submitting as the harness user `customer` with `password` over STARTTLS,
/// to `spare`; the keys of `extra` are added to its spec or replace what is there.
fn email(password: &str, extra: serde_json::Value) -> Arc<dyn Notifier> {
    let server = mail_server();
    let customer = server.user("customer");
    let mut spec = serde_json::json!({
        "kind": "email",
        "smtp": format!("smtp+starttls://localhost:{}", server.submission_port),
        "user": customer.address,
        "password": password,
        "ca_file": server.ca_file.display().to_string(),
        "from": customer.address,
        "to": ["spare@test.local"],
        "timeout": "30s",
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    notifier("owner-mail", spec)
}

#[tokio::test]
async fn email_is_delivered_through_submission_with_starttls() {
    let server = mail_server();
    let customer = server.user("customer");
    let sender = email(
        &customer.password,
        serde_json::json!({
            "from": format!("supportwatch <{}>", customer.address),
            "language": "ru",
        }),
    );
    let check = format!("support-mail-{}", unique());
    let a = alert(&check, Channel::Email, "mailbox_full", AlertStatus::Firing);
    let since = local_hhmm(a.since);
    let fingerprint = a.fingerprint.clone();
    let n = notification(Language::Ru, Audience::Owner, vec![a]);
    sender
        .send(&n)
        .await
        .expect("the alert mail should be accepted");

    let file = server
        .wait_for_message_async("spare", &fingerprint, Duration::from_secs(30))
        .await
        .expect("the alert mail should arrive in spare's mailbox");
    let raw = std::fs::read(&file).expect("read the message");
    let message = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("parse the message");
    assert_eq!(
        message.subject(),
        Some(format!("shop.example: Почта поддержки: ящик переполнен с {since}").as_str())
    );
    let body = message.body_text(0).expect("a text body");
    assert!(body.contains("3 неудачные проверки подряд."), "{body}");
    assert!(
        body.contains("Освободите место в почтовом ящике."),
        "{body}"
    );
    assert!(
        body.contains("Статус: https://status.shop.example/"),
        "{body}"
    );
    assert_eq!(
        message.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-generated")
    );
    assert_eq!(
        message.header_raw("X-Supportwatch-Alert").map(str::trim),
        Some(fingerprint.as_str())
    );
    let content_type = message.content_type().expect("content type");
    assert_eq!(
        (content_type.ctype(), content_type.subtype()),
        ("text", Some("plain"))
    );
}

#[tokio::test]
async fn email_with_a_wrong_password_is_permanent_and_does_not_show_it() {
    let server = mail_server();
    let customer = server.user("customer");
    let wrong = "wrong-Passw0rd-4242";
    let sender = email(wrong, serde_json::json!({}));
    let n = notification(
        Language::En,
        Audience::Owner,
        vec![alert(
            "support-mail",
            Channel::Email,
            "smtp",
            AlertStatus::Firing,
        )],
    );
    let err = sender.send(&n).await.unwrap_err();
    let message = permanent(&err);
    assert!(
        message.starts_with(&format!(
            r#"email "owner-mail": smtp authentication as {} failed: 535"#,
            customer.address
        )),
        "{message}"
    );
    assert_no_secret(&err, &[wrong]);
}
