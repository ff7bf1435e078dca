//! Tests of the alert texts: every audience, language and status, grouped and test messages.

use super::*;
use crate::value::Kind;
use std::time::{Duration, UNIX_EPOCH};

/// 2026-03-12T14:05:00Z.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_773_324_300)
}

fn alert(check: &str, channel: Channel, reason_kind: &str, status: AlertStatus) -> AlertNotice {
    AlertNotice {
        digest: None,
        id: format!("{check}-1773324300:{}", status.as_str()),
        fingerprint: format!("{check}-1773324300"),
        check: check.into(),
        channel,
        kind: Kind::Form,
        labels: Default::default(),
        status,
        since: t0(),
        resolved_at: (status == AlertStatus::Resolved).then(|| t0() + Duration::from_secs(900)),
        consecutive_failures: 3,
        reason_kind: reason_kind.into(),
        reason: "the test message did not arrive in support@shop.example within 5m".into(),
        link: None,
    }
}

fn notification(lang: Language, audience: Audience, alerts: Vec<AlertNotice>) -> Notification {
    Notification {
        digest: None,
        shop: "shop.example".into(),
        language: lang,
        audience,
        alerts,
        test: false,
        status_url: Some("https://status.example/".into()),
        timezone: Some("Europe/Moscow".into()),
    }
}

fn later() -> SystemTime {
    t0() + Duration::from_secs(3600)
}

#[test]
fn owner_ru_names_the_channel_the_problem_and_the_local_time() {
    let n = notification(
        Language::Ru,
        Audience::Owner,
        vec![alert(
            "form",
            Channel::FeedbackForm,
            "not_delivered",
            AlertStatus::Firing,
        )],
    );
    let r = render_at(&n, later());
    assert_eq!(
        r.title,
        "shop.example: Форма обратной связи не доставляет письма с 17:05"
    );
    assert_eq!(
        r.body,
        "3 неудачные проверки подряд.\nСтатус: https://status.example/"
    );
}

#[test]
fn owner_en_reminder_and_other_day() {
    let mut a = alert("chat", Channel::Chat, "no_reply", AlertStatus::Reminder);
    a.consecutive_failures = 1;
    let mut n = notification(Language::En, Audience::Owner, vec![a]);
    n.timezone = Some("UTC".into());
    let r = render_at(&n, t0() + Duration::from_secs(86_400));
    assert_eq!(
        r.title,
        "shop.example: Chat is still not answering since 12.03 14:05"
    );
    assert!(r.body.starts_with("1 failed check in a row."), "{}", r.body);
}

#[test]
fn owner_states_read_naturally() {
    let n = notification(
        Language::Ru,
        Audience::Owner,
        vec![alert(
            "mail",
            Channel::Email,
            "mailbox_full",
            AlertStatus::Reminder,
        )],
    );
    let r = render_at(&n, later());
    assert_eq!(
        r.title,
        "shop.example: Почта поддержки: ящик всё ещё переполнен с 17:05"
    );
    assert!(r.body.contains("Освободите место"), "{}", r.body);
    let en = problem(Language::En, Channel::Website, "timeout");
    assert!(matches!(en, Problem::Verb("does not respond")));
    assert_eq!(still_en("does not respond"), "still does not respond");
}

#[test]
fn owner_hears_that_mail_to_the_mailbox_bounces() {
    for (lang, title, advice) in [
        (
            Language::En,
            "shop.example: Support mail: mail to the mailbox bounces since 17:05",
            "Check the mailbox named in the bounce",
        ),
        (
            Language::Ru,
            "shop.example: Почта поддержки: письма в ящик возвращаются отправителю с 17:05",
            "Проверьте ящик, указанный в возврате",
        ),
    ] {
        let n = notification(
            lang,
            Audience::Owner,
            vec![alert(
                "mail",
                Channel::Email,
                "bounced",
                AlertStatus::Firing,
            )],
        );
        let r = render_at(&n, later());
        assert_eq!(r.title, title);
        assert!(r.body.contains(advice), "{}", r.body);
    }
}

#[test]
fn resolved_says_from_when_to_when() {
    let n = notification(
        Language::Ru,
        Audience::Owner,
        vec![alert(
            "form",
            Channel::FeedbackForm,
            "timeout",
            AlertStatus::Resolved,
        )],
    );
    let r = render_at(&n, later());
    assert_eq!(
        r.title,
        "shop.example: Форма обратной связи снова работает (не работала с 17:05 до 17:20)"
    );
    let mut n = n;
    n.alerts[0].channel = Channel::Chat;
    n.language = Language::En;
    let r = render_at(&n, later());
    assert_eq!(
        r.title,
        "shop.example: Chat works again (was down from 17:05 to 17:20)"
    );
    n.language = Language::Ru;
    assert!(
        render_at(&n, later())
            .title
            .contains("Чат снова работает (не работал с")
    );
}

#[test]
fn ops_en_is_technical_and_cuts_long_reasons() {
    let mut a = alert("form", Channel::FeedbackForm, "status", AlertStatus::Firing);
    a.reason = "x".repeat(1000);
    a.link = Some("/var/lib/supportwatch/artifacts/form/1".into());
    let n = notification(Language::En, Audience::Ops, vec![a]);
    let r = render_at(&n, later());
    assert_eq!(
        r.title,
        "[FIRING] shop.example: form status (form, feedback_form)"
    );
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(
        lines[0],
        "check=form kind=form channel=feedback_form reason_kind=status"
    );
    assert_eq!(
        lines[1],
        "since: 2026-03-12T17:05:00+03:00, 3 failures in a row"
    );
    assert_eq!(lines[2], format!("error: {}…", "x".repeat(300)));
    assert_eq!(lines[3], "details: /var/lib/supportwatch/artifacts/form/1");
    assert_eq!(lines[4], "Status: https://status.example/");
}

#[test]
fn grouped_lists_every_alert_firing_first() {
    let alerts = vec![
        alert("site", Channel::Website, "timeout", AlertStatus::Resolved),
        alert(
            "form",
            Channel::FeedbackForm,
            "not_delivered",
            AlertStatus::Firing,
        ),
        alert("chat", Channel::Chat, "no_reply", AlertStatus::Reminder),
    ];
    let n = notification(Language::Ru, Audience::Owner, alerts.clone());
    let r = render_at(&n, later());
    assert_eq!(
        r.title,
        "shop.example: 2 проблемы с каналами поддержки, 1 канал снова работает"
    );
    let bullets: Vec<&str> = r.body.lines().filter(|l| l.starts_with('•')).collect();
    assert_eq!(
        bullets,
        [
            "• Форма обратной связи не доставляет письма с 17:05",
            "• Чат всё ещё не отвечает с 17:05",
            "• Сайт снова работает (не работал с 17:05 до 17:20)",
        ]
    );
    let ops = render_at(&notification(Language::En, Audience::Ops, alerts), later());
    assert_eq!(ops.title, "[FIRING:2 RESOLVED:1] shop.example");
    let order: Vec<&str> = ops.body.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(
        order,
        [
            "[FIRING] form",
            "[FIRING, reminder] chat",
            "[RESOLVED] site"
        ]
    );
    assert!(
        ops.body
            .contains("down: 2026-03-12T17:05:00+03:00 — 2026-03-12T17:20:00+03:00")
    );
}

#[test]
fn test_message_says_it_is_a_test() {
    let mut n = notification(Language::Ru, Audience::Owner, vec![]);
    n.test = true;
    let r = render_at(&n, later());
    assert_eq!(r.title, "shop.example: проверка уведомлений supportwatch");
    assert!(r.body.contains("тестовое сообщение"), "{}", r.body);
    assert!(r.body.contains("https://status.example/"), "{}", r.body);
    n.language = Language::En;
    n.alerts = vec![alert(
        "form",
        Channel::FeedbackForm,
        "spam",
        AlertStatus::Firing,
    )];
    let r = render_at(&n, later());
    assert_eq!(r.title, "shop.example: supportwatch test notification");
    assert!(
        r.body
            .contains("Feedback form: messages land in spam since 17:05"),
        "{}",
        r.body
    );
}

#[test]
fn unknown_zone_falls_back_and_russian_plurals() {
    let mut n = notification(
        Language::En,
        Audience::Owner,
        vec![alert("x", Channel::Phone, "weird", AlertStatus::Firing)],
    );
    n.timezone = Some("Nowhere/Atlantis".into());
    assert!(
        render_at(&n, later())
            .title
            .contains("Phone is not working since")
    );
    assert_eq!(plural_ru(1, "a", "b", "c"), "a");
    assert_eq!(plural_ru(3, "a", "b", "c"), "b");
    assert_eq!(plural_ru(11, "a", "b", "c"), "c");
    assert_eq!(plural_ru(22, "a", "b", "c"), "b");
    assert_eq!(plural_ru(25, "a", "b", "c"), "c");
    assert_eq!(truncate("абв", 2), "аб…");
}

#[test]
fn the_owner_hears_of_a_channel_once_however_many_checks_prove_it() {
    let alerts = vec![
        alert(
            "chat-widget",
            Channel::Chat,
            "no_reply",
            AlertStatus::Firing,
        ),
        alert("chat-api", Channel::Chat, "no_reply", AlertStatus::Firing),
    ];
    let owner = render_at(
        &notification(Language::En, Audience::Owner, alerts.clone()),
        later(),
    );
    assert_eq!(owner.title.matches("Chat").count(), 1, "{owner:?}");
    assert!(!owner.body.contains("Chat"), "{owner:?}");
    // Ops still see both checks.
    let ops = render_at(&notification(Language::En, Audience::Ops, alerts), later());
    let text = format!("{}\n{}", ops.title, ops.body);
    assert!(
        text.contains("chat-widget") && text.contains("chat-api"),
        "{text}"
    );
}

#[test]
fn a_reason_that_is_no_failure_kind_gets_plain_words_and_no_advice() {
    // Stored alert states may carry a reason no failure kind has (a run result, an older
    // version's label): the owner still gets a sentence, never a guess at what to do.
    assert!(matches!(
        problem(Language::En, Channel::Chat, "failure"),
        Problem::Verb("is not working")
    ));
    assert_eq!(advice(Language::En, "failure"), None);
    assert_eq!(advice(Language::En, "no_such_reason"), None);
    assert!(advice(Language::En, "quota").is_some());
}

#[test]
fn every_failure_kind_is_found_by_its_label() {
    for kind in crate::outcome::FailureKind::ALL {
        assert_eq!(
            crate::outcome::FailureKind::from_label(kind.as_str()),
            Some(kind)
        );
    }
}
