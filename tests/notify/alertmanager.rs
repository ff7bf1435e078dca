//! The Alertmanager notifier: firing, resolved and test alerts in a real Alertmanager
//! (`/usr/bin/prometheus-alertmanager`, started on 127.0.0.1 per test), and a refusal from the
//! recording server that keeps the password out of the error.

use super::*;
use common::alertmanager::Alertmanager;
use std::time::SystemTime;

#[tokio::test]
async fn alertmanager_receives_firing_and_resolved_alerts() {
    let am = Alertmanager::start().await;
    let sender = notifier(
        "prod-am",
        serde_json::json!({"kind": "alertmanager", "url": am.url, "timeout": "10s"}),
    );
    let check = format!("support-form-{}", unique());
    let mut firing = alert(
        &check,
        Channel::FeedbackForm,
        "not_delivered",
        AlertStatus::Firing,
    );
    firing.labels.insert("team".into(), "web".into());
    let n = notification(Language::En, Audience::Ops, vec![firing.clone()]);
    sender.send(&n).await.expect("firing should be accepted");

    let found = am
        .wait_for(
            "check",
            &check,
            "the firing alert should become active",
            |a| a.len() == 1 && a[0]["status"]["state"] == "active",
        )
        .await;
    let got = &found[0];
    assert_eq!(
        got["labels"],
        serde_json::json!({
            "alertname": "SupportChannelDown", "check": check, "channel": "feedback_form",
            "kind": "form", "shop": "shop.example", "team": "web"
        })
    );
    assert_eq!(got["annotations"]["reason"], "not_delivered");
    assert_eq!(
        got["annotations"]["summary"],
        format!(
            "Feedback form is not delivering messages since {}",
            local_hhmm(firing.since)
        )
    );
    assert_eq!(got["annotations"]["description"], firing.reason.as_str());
    assert_eq!(got["generatorURL"], "https://status.shop.example/");
    // endsAt is about a day ahead (ends_after default 24h).
    let ends: jiff::Timestamp = got["endsAt"].as_str().unwrap().parse().unwrap();
    let ahead = ends.as_second() - jiff::Timestamp::now().as_second();
    assert!((23 * 3600..=24 * 3600).contains(&ahead), "endsAt {ends}");

    let mut resolved = firing.clone();
    resolved.status = AlertStatus::Resolved;
    resolved.resolved_at = Some(SystemTime::now());
    let n = notification(Language::En, Audience::Ops, vec![resolved]);
    sender.send(&n).await.expect("resolve should be accepted");
    am.wait_for(
        "check",
        &check,
        "the resolved alert should no longer be active",
        |a| a.is_empty(),
    )
    .await;

    // A test notification is a short-lived alert of its own.
    let shop = format!("test-shop-{}", unique());
    let mut test = notification(Language::En, Audience::Ops, vec![]);
    test.shop = shop.clone();
    test.test = true;
    sender.send(&test).await.expect("test should be accepted");
    let found = am
        .wait_for("shop", &shop, "the test alert should become active", |a| {
            a.len() == 1
        })
        .await;
    assert_eq!(found[0]["labels"]["alertname"], "SupportwatchTest");
    let ends: jiff::Timestamp = found[0]["endsAt"].as_str().unwrap().parse().unwrap();
    let ahead = ends.as_second() - jiff::Timestamp::now().as_second();
    assert!((200..=300).contains(&ahead), "endsAt {ends}");
}

#[tokio::test]
async fn alertmanager_refusal_is_permanent_and_keeps_the_password() {
    let server = Recorder::start().await;
    let sender = notifier(
        "prod-am",
        serde_json::json!({
            "kind": "alertmanager", "url": server.url("/am"), "user": "sw",
            "password": "am-pass-31337", "timeout": "5s"
        }),
    );
    let n = notification(
        Language::En,
        Audience::Ops,
        vec![alert("x", Channel::Chat, "no_reply", AlertStatus::Firing)],
    );
    let refusal = Answer::text(400, r#""start time must be before end time""#);
    let err = error_for(&server, refusal, &*sender, &n).await;
    assert_eq!(
        permanent(&err),
        r#"alertmanager "prod-am": HTTP 400: start time must be before end time"#
    );
    assert_no_secret(&err, &["am-pass-31337"]);
    let seen = server.last();
    assert_eq!(seen.path, "/am/api/v2/alerts");
    // Basic auth: base64("sw:am-pass-31337").
    assert_eq!(
        seen.headers.get("authorization").unwrap(),
        "Basic c3c6YW0tcGFzcy0zMTMzNw=="
    );
    assert!(seen.json().as_array().is_some_and(|a| a.len() == 1));
}
