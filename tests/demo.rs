//! `supportwatch demo` end to end: the demo shop, the built-in checks, the metrics they export,
//! and `--break` making the broken channel fail.
//!
//! Each demo is its own daemon with its own phone lines and PBX, so the tests run in parallel.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use supportwatch::demo::Break;
use supportwatch::outcome::RunResult;

/// The first result of every demo check, the metrics after them, and the owner's status page.
async fn first_results(broken: BTreeSet<Break>) -> (HashMap<String, RunResult>, String, String) {
    supportwatch::tlsconf::install_crypto_provider();
    let (shop, daemon) = supportwatch::demo::start("127.0.0.1:0".parse().expect("addr"), broken)
        .await
        .expect("demo starts");
    let expected: BTreeSet<String> = daemon
        .metrics
        .encode_text()
        .lines()
        .filter_map(|l| l.split("check=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect();
    assert!(expected.len() >= 4, "demo checks: {expected:?}");
    let mut reports = daemon.scheduler.subscribe();
    let mut results = HashMap::new();
    // Most demo checks run every 10 s, the browser checks every 30 s: every check runs once
    // within its interval, a browser run takes a few seconds, and a delivery that never comes
    // fails after its 8 s deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while results.len() < expected.len() {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Ok(r)) => {
                results.entry(r.check.to_string()).or_insert(r.result);
            }
            _ => panic!("not every demo check ran: {results:?} of {expected:?}"),
        }
    }
    let metrics = reqwest::get(format!("http://{}/metrics", daemon.addr))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let status = reqwest::get(format!("http://{}/status/shop/demo", daemon.addr))
        .await
        .expect("status page");
    assert_eq!(status.status(), 200);
    let page = status.text().await.expect("body");
    assert!(daemon.stop().await);
    drop(shop);
    (results, metrics, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_demo_check_passes_against_the_demo_shop() {
    let (results, metrics, page) = first_results(BTreeSet::new()).await;
    // The owner's status page names every channel and says it works.
    for words in ["Feedback form", "Chat", "works"] {
        assert!(
            page.contains(words),
            "`{words}` missing from the status page:\n{page}"
        );
    }
    for (check, result) in &results {
        assert_eq!(*result, RunResult::Success, "{check}");
    }
    assert!(metrics.contains(r#"supportwatch_check_success{channel="website",check="demo-home",kind="http",shop="demo"} 1"#), "{metrics}");
    // The round trips: form → SMTP → support mailbox, and mail → support → auto-reply.
    // A measured round trip each: the last one's latency.
    for series in [
        r#"supportwatch_auto_reply_latency_seconds{channel="email",check="demo-support-mail",kind="mail",shop="demo"} "#,
        r#"supportwatch_delivery_latency_seconds{channel="email",check="demo-support-mail",kind="mail",shop="demo"} "#,
        r#"supportwatch_delivery_latency_seconds{channel="feedback_form",check="demo-feedback-form",kind="form",shop="demo"} "#,
        r#"supportwatch_chat_first_response_seconds{channel="chat",check="demo-chat",kind="chat",shop="demo"} "#,
    ] {
        let latency = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.parse::<f64>().ok());
        assert!(
            latency.is_some_and(|s| s > 0.0),
            "{series}: {latency:?}\n{metrics}"
        );
    }
    // The hotline played its tone (about −15 dBFS), and the callback rang our line.
    let value = |series: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let level = value(
        r#"supportwatch_phone_audio_level_dbfs{channel="phone",check="demo-hotline",kind="phone",shop="demo"} "#,
    );
    assert!(
        level.is_some_and(|l| (-20.0..=-10.0).contains(&l)),
        "{level:?}\n{metrics}"
    );
    let ring = value(
        r#"supportwatch_phone_ring_seconds{channel="callback",check="demo-callback-call",kind="callback",shop="demo"} "#,
    );
    assert!(
        ring.is_some_and(|s| s > 0.0 && s < 8.0),
        "{ring:?}\n{metrics}"
    );
}

/// The checks of `results` other than `broken` passed.
fn all_others_pass(results: &HashMap<String, RunResult>, broken: &[&str]) {
    for (check, result) in results {
        if !broken.contains(&check.as_str()) {
            assert_eq!(*result, RunResult::Success, "{check}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_phone_makes_the_hotline_answer_with_silence() {
    let (results, metrics, _) = first_results(BTreeSet::from([Break::Phone])).await;
    assert_eq!(results["demo-hotline"], RunResult::Failure);
    assert!(
        metrics.contains(r#"supportwatch_check_failures_total{channel="phone",check="demo-hotline",kind="phone",reason="silent_line",shop="demo"}"#),
        "{metrics}"
    );
    // The PBX itself still answers its ping.
    assert_eq!(results["demo-hotline-ping"], RunResult::Success);
    all_others_pass(&results, &["demo-hotline"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_callback_call_sends_the_webhook_but_never_calls() {
    let (results, metrics, _) = first_results(BTreeSet::from([Break::CallbackCall])).await;
    assert_eq!(results["demo-callback-call"], RunResult::Failure);
    assert!(
        metrics.contains(r#"supportwatch_check_failures_total{channel="callback",check="demo-callback-call",kind="callback",reason="not_delivered",shop="demo"}"#),
        "{metrics}"
    );
    // The CRM's webhook still arrives: only the call is missing.
    assert_eq!(results["demo-callback"], RunResult::Success);
    all_others_pass(&results, &["demo-callback-call"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_makes_only_the_broken_channel_fail() {
    let (results, metrics, _) = first_results(BTreeSet::from([Break::FeedbackForm])).await;
    assert_eq!(results["demo-feedback-api"], RunResult::Failure);
    // The form still says "thank you"; only the missing mail gives it away.
    assert_eq!(results["demo-feedback-form"], RunResult::Failure);
    assert!(
        metrics.contains(r#"supportwatch_check_failures_total{channel="feedback_form",check="demo-feedback-form",kind="form",reason="not_delivered",shop="demo"}"#),
        "{metrics}"
    );
    // The JavaScript form (when chromium is installed) thanks the visitor too; its mail is lost.
    if let Some(result) = results.get("demo-js-contact-form") {
        assert_eq!(*result, RunResult::Failure);
        assert!(
            metrics.contains(r#"supportwatch_check_failures_total{channel="feedback_form",check="demo-js-contact-form",kind="form",reason="not_delivered",shop="demo"}"#),
            "{metrics}"
        );
    }
    assert_eq!(results["demo-support-mail"], RunResult::Success);
    assert_eq!(results["demo-home"], RunResult::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_chat_makes_the_bot_fall_silent() {
    let (results, metrics, _) = first_results(BTreeSet::from([Break::Chat])).await;
    for check in ["demo-chat", "demo-chat-api"] {
        assert_eq!(results[check], RunResult::Failure, "{check}");
        assert!(
            metrics.contains(&format!(r#"supportwatch_check_failures_total{{channel="chat",check="{check}",kind="chat",reason="no_reply",shop="demo"}}"#)),
            "{metrics}"
        );
    }
    assert_eq!(results["demo-home"], RunResult::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_chat_fires_an_alert_to_the_owner_and_healing_resolves_it() {
    supportwatch::tlsconf::install_crypto_provider();
    let (shop, daemon) = supportwatch::demo::start(
        "127.0.0.1:0".parse().expect("addr"),
        BTreeSet::from([Break::Chat]),
    )
    .await
    .expect("demo starts");
    let wait_for = |count: usize| {
        let inbox = shop.owner_inbox.clone();
        async move {
            // Demo checks run every 10 s and fire after two failures, plus 5 s of grouping.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while inbox.messages().len() < count {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the owner got {:?}",
                    inbox.messages()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait_for(1).await;
    let fired = shop.owner_inbox.messages().remove(0);
    assert!(fired.contains("Chat"), "{fired}");
    assert!(!fired.to_lowercase().contains("again"), "{fired}");
    shop.breaks.heal();
    wait_for(2).await;
    let messages = shop.owner_inbox.messages();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[1].contains("Chat"), "{messages:?}");
    assert!(messages[1].to_lowercase().contains("again"), "{messages:?}");
    assert!(daemon.stop().await);
}
