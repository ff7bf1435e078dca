//! The Slack notifier against the recording server posing as an incoming webhook: title and
//! text of the message, and errors that never show the webhook URL.

use super::*;

const SLACK_KEY: &str = "T0001/B0002/XXXXsecretXXXX";

fn slack(server: &Recorder, timeout: &str) -> Arc<dyn Notifier> {
    notifier(
        "ops-chat",
        serde_json::json!({
            "kind": "slack",
            "url": server.url(&format!("/services/{SLACK_KEY}")),
            "channel": "#alerts",
            "username": "supportwatch",
            "timeout": timeout,
        }),
    )
}

#[tokio::test]
async fn slack_posts_title_and_text() {
    let server = Recorder::start().await;
    let n = notification(
        Language::En,
        Audience::Ops,
        vec![
            form_not_delivering(),
            alert("site", Channel::Website, "timeout", AlertStatus::Resolved),
        ],
    );
    let seen = delivered(&*slack(&server, "5s"), &n, &server).await;
    assert_eq!(seen.path, format!("/services/{SLACK_KEY}"));
    let body = seen.json();
    assert_eq!(body["channel"], "#alerts");
    assert_eq!(body["username"], "supportwatch");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with("[FIRING:1 RESOLVED:1] shop.example\n[FIRING] support-form\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "check=support-form kind=form channel=feedback_form reason_kind=not_delivered"
        ),
        "{text}"
    );
    assert!(text.contains("[RESOLVED] site"), "{text}");
}

#[tokio::test]
async fn slack_errors_keep_the_url_secret() {
    let server = Recorder::start().await;
    let hook = slack(&server, "1s");
    let n = notification(Language::En, Audience::Ops, vec![]);
    let secrets = [SLACK_KEY, "XXXXsecretXXXX", "/services/"];

    let err = error_for(&server, Answer::text(400, "invalid_payload"), &*hook, &n).await;
    assert_eq!(
        permanent(&err),
        r#"slack "ops-chat": HTTP 400: invalid_payload"#
    );
    assert_no_secret(&err, &secrets);

    let html = Answer::text(500, "<html><body>oops</body></html>");
    let err = error_for(&server, html, &*hook, &n).await;
    assert_eq!(
        transient(&err).0,
        r#"slack "ops-chat": HTTP 500: Internal Server Error"#
    );
    assert_no_secret(&err, &secrets);

    let limited = Answer::text(429, "rate_limited").header("retry-after", "30");
    let err = error_for(&server, limited, &*hook, &n).await;
    assert_eq!(transient(&err).1, Some(Duration::from_secs(30)));
    assert_no_secret(&err, &secrets);

    let err = error_for(&server, Answer::hang(), &*hook, &n).await;
    transient(&err);
    assert_no_secret(&err, &secrets);
}
