//! The Telegram notifier against the recording server posing as the Bot API: the plain-text
//! message on the bot's path, and which answers are retried, given up or kept quiet about.

use super::*;

fn telegram(server: &Recorder, timeout: &str) -> Arc<dyn Notifier> {
    notifier(
        "owner",
        serde_json::json!({
            "kind": "telegram",
            "bot_token": TOKEN,
            "chat_id": "-1001234567890",
            "api_url": server.url(""),
            "message_thread_id": 42,
            "language": "ru",
            "timeout": timeout,
        }),
    )
}

#[tokio::test]
async fn telegram_posts_plain_text_to_the_bot_path() {
    let server = Recorder::start().await;
    server.answer_always(Answer::text(
        200,
        r#"{"ok":true,"result":{"message_id":7}}"#,
    ));
    let a = form_not_delivering();
    let since = local_hhmm(a.since);
    let n = notification(Language::Ru, Audience::Owner, vec![a]);
    let seen = delivered(&*telegram(&server, "5s"), &n, &server).await;

    assert_eq!(seen.path, format!("/bot{TOKEN}/sendMessage"));
    assert_eq!(
        seen.headers.get("content-type").unwrap(),
        "application/json"
    );
    let body = seen.json();
    assert_eq!(body["chat_id"], -1001234567890i64);
    assert_eq!(body["disable_web_page_preview"], true);
    assert_eq!(body["message_thread_id"], 42);
    assert!(body.get("parse_mode").is_none(), "{body}");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "shop.example: Форма обратной связи не доставляет письма с {since}\n"
        )),
        "{text}"
    );
    assert!(text.contains("3 неудачные проверки подряд."), "{text}");
    assert!(text.contains("https://status.shop.example/"), "{text}");
}

#[tokio::test]
async fn telegram_answers_map_to_retry_or_give_up() {
    let server = Recorder::start().await;
    let bot = telegram(&server, "5s");
    let n = notification(
        Language::En,
        Audience::Owner,
        vec![alert(
            "chat",
            Channel::Chat,
            "no_reply",
            AlertStatus::Firing,
        )],
    );
    // The Bot API's error answer: HTTP `status`, and the same code and `description` as JSON.
    let api_error = |status: u16, description: &str| {
        Answer::text(
            status,
            &serde_json::json!({"ok": false, "error_code": status, "description": description})
                .to_string(),
        )
    };

    let err = error_for(
        &server,
        Answer::text(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#,
        ),
        &*bot,
        &n,
    )
    .await;
    let (message, after) = transient(&err);
    assert_eq!(after, Some(Duration::from_secs(3)), "{message}");
    assert!(message.contains("Too Many Requests"), "{message}");
    assert_no_secret(&err, &[TOKEN, "AAHsecretTOKEN"]);

    let err = error_for(&server, api_error(500, "Internal Server Error"), &*bot, &n).await;
    let (message, after) = transient(&err);
    assert_eq!(
        message,
        r#"telegram "owner": HTTP 500: Internal Server Error"#
    );
    assert_eq!(after, None);
    assert_no_secret(&err, &[TOKEN, "AAHsecretTOKEN"]);

    for (status, description, expected) in [
        (
            400,
            "Bad Request: chat not found",
            r#"telegram "owner": HTTP 400: Bad Request: chat not found"#,
        ),
        (
            401,
            "Unauthorized",
            r#"telegram "owner": HTTP 401: Unauthorized"#,
        ),
    ] {
        let err = error_for(&server, api_error(status, description), &*bot, &n).await;
        assert_eq!(permanent(&err), expected);
        assert_no_secret(&err, &[TOKEN, "AAHsecretTOKEN"]);
    }

    // A service that quotes the request path back must not leak the token through us.
    let quoted = format!("no such path /bot{TOKEN}/x");
    let err = error_for(&server, api_error(404, &quoted), &*bot, &n).await;
    assert!(permanent(&err).contains("<redacted>"), "{err}");
    assert_no_secret(&err, &[TOKEN, "AAHsecretTOKEN"]);
}

#[tokio::test]
async fn telegram_silence_and_refusal_are_transient() {
    let server = Recorder::start().await;
    let n = notification(Language::Ru, Audience::Owner, vec![]);
    let err = error_for(&server, Answer::hang(), &*telegram(&server, "1s"), &n).await;
    let (message, _) = transient(&err);
    assert_eq!(message, r#"telegram "owner": no answer within 1s"#);
    assert_no_secret(&err, &[TOKEN, "AAHsecretTOKEN"]);

    let closed = notifier(
        "owner",
        serde_json::json!({
            "kind": "telegram",
            "bot_token": TOKEN,
            "chat_id": "@shop_alerts",
            "api_url": format!("http://127.0.0.1:{}", common::closed_port()),
            "timeout": "2s",
        }),
    );
    let err = closed.send(&n).await.unwrap_err();
    let (message, _) = transient(&err);
    assert!(message.starts_with(r#"telegram "owner": "#), "{message}");
    assert_no_secret(&err, &[TOKEN, "AAHsecretTOKEN", "127.0.0.1"]);
}
