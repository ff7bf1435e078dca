//! The generic webhook notifier against the recording server: the signed, versioned JSON
//! payload for firing and resolved alerts, and which answers are retried or given up.

use super::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const HOOK_SECRET: &str = "hmac-key-0123456789";
const HOOK_AUTH: &str = "Bearer crm-api-key-987";

fn webhook(server: &Recorder, timeout: &str) -> Arc<dyn Notifier> {
    notifier(
        "crm",
        serde_json::json!({
            "kind": "webhook",
            "url": server.url("/hooks/supportwatch?key=url-key-555"),
            "secret": HOOK_SECRET,
            "headers": {"Authorization": HOOK_AUTH},
            "audience": "owner",
            "language": "en",
            "timeout": timeout,
        }),
    )
}

#[tokio::test]
async fn webhook_posts_a_signed_versioned_payload() {
    let server = Recorder::start().await;
    let firing = form_not_delivering();
    let since = local_hhmm(firing.since);
    let fingerprint = firing.fingerprint.clone();
    let n = notification(Language::En, Audience::Owner, vec![firing]);
    let seen = delivered(&*webhook(&server, "5s"), &n, &server).await;
    assert_eq!(seen.path, "/hooks/supportwatch");
    assert_eq!(seen.headers.get("authorization").unwrap(), HOOK_AUTH);
    assert_eq!(
        seen.headers.get("content-type").unwrap(),
        "application/json"
    );
    let signature = seen
        .headers
        .get("x-supportwatch-signature")
        .expect("signature header")
        .to_str()
        .unwrap();
    let hex = signature.strip_prefix("sha256=").expect("sha256= prefix");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(&seen.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, expected, "the signature must be over the exact body");

    let body = seen.json();
    assert_eq!(body["version"], 1);
    assert_eq!(body["shop"], "shop.example");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["test"], false);
    assert_eq!(
        body["title"],
        format!("shop.example: Feedback form is not delivering messages since {since}")
    );
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("3 failed checks in a row.")
    );
    assert_eq!(body["status_url"], "https://status.shop.example/");
    let alerts = body["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["fingerprint"], fingerprint.as_str());
    assert_eq!(alerts[0]["check"], "support-form");
    assert_eq!(alerts[0]["channel"], "feedback_form");
    assert_eq!(alerts[0]["kind"], "form");
    assert_eq!(alerts[0]["status"], "firing");
    assert_eq!(alerts[0]["reason_kind"], "not_delivered");
    assert_eq!(alerts[0]["consecutive_failures"], 3);
    assert!(alerts[0]["since"].is_number());

    let resolved = notification(
        Language::En,
        Audience::Owner,
        vec![alert(
            "support-form",
            Channel::FeedbackForm,
            "timeout",
            AlertStatus::Resolved,
        )],
    );
    let body = delivered(&*webhook(&server, "5s"), &resolved, &server)
        .await
        .json();
    assert_eq!(body["status"], "resolved");
    assert!(body["alerts"][0]["resolved_at"].is_number());
}

#[tokio::test]
async fn webhook_answers_map_to_retry_or_give_up() {
    let server = Recorder::start().await;
    let hook = webhook(&server, "1s");
    let n = notification(Language::En, Audience::Owner, vec![]);
    let secrets = [HOOK_SECRET, "crm-api-key-987", "url-key-555"];

    let limited = Answer::status(429).header("retry-after", "7");
    let err = error_for(&server, limited, &*hook, &n).await;
    assert_eq!(
        transient(&err),
        (
            r#"webhook "crm": HTTP 429: Too Many Requests"#,
            Some(Duration::from_secs(7))
        )
    );
    assert_no_secret(&err, &secrets);

    let maintenance = Answer::text(503, r#"{"error":"maintenance"}"#);
    let err = error_for(&server, maintenance, &*hook, &n).await;
    assert_eq!(transient(&err).0, r#"webhook "crm": HTTP 503: maintenance"#);
    assert_no_secret(&err, &secrets);

    let err = error_for(&server, Answer::text(404, "no such hook"), &*hook, &n).await;
    assert_eq!(permanent(&err), r#"webhook "crm": HTTP 404: no such hook"#);
    assert_no_secret(&err, &secrets);

    // A redirect is not followed (it could carry the request elsewhere).
    let redirect = Answer::status(302).header("location", "http://127.0.0.1:1/elsewhere");
    let err = error_for(&server, redirect, &*hook, &n).await;
    assert!(permanent(&err).contains("HTTP 302"), "{err}");

    let err = error_for(&server, Answer::hang(), &*hook, &n).await;
    assert_eq!(transient(&err).0, r#"webhook "crm": no answer within 1s"#);
    assert_no_secret(&err, &secrets);
}
