//! Texts for ops: check, kind, channel, reason kind and the check's own message, one block per
//! alert.

use super::{Clock, MAX_REASON, Rendered, push_line, status_line, truncate};
use crate::notify::{AlertNotice, AlertStatus, Language, Notification};
use std::fmt::Write as _;

pub(super) fn ops(n: &Notification, alerts: &[&AlertNotice], clock: &Clock) -> Rendered {
    let lang = n.language;
    let title = match alerts {
        [] => format!("supportwatch {}", n.shop),
        [one] => format!(
            "[{}] {}: {} {} ({}, {})",
            status_tag(one.status),
            n.shop,
            one.check,
            one.reason_kind,
            one.kind,
            one.channel
        ),
        many => {
            let resolved = many
                .iter()
                .filter(|a| a.status == AlertStatus::Resolved)
                .count();
            let firing = many.len() - resolved;
            let mut tags = Vec::new();
            if firing > 0 {
                tags.push(format!("FIRING:{firing}"));
            }
            if resolved > 0 {
                tags.push(format!("RESOLVED:{resolved}"));
            }
            format!("[{}] {}", tags.join(" "), n.shop)
        }
    };
    let mut body = String::new();
    for (i, a) in alerts.iter().enumerate() {
        if i > 0 {
            body.push_str("\n\n");
        }
        ops_block(&mut body, lang, a, clock, alerts.len() > 1);
    }
    if let Some(url) = &n.status_url {
        push_line(&mut body, &status_line(lang, url));
    }
    Rendered { title, body }
}

fn status_tag(status: AlertStatus) -> &'static str {
    match status {
        AlertStatus::Firing => "FIRING",
        AlertStatus::Reminder => "FIRING, reminder",
        AlertStatus::Resolved => "RESOLVED",
    }
}

fn ops_block(body: &mut String, lang: Language, a: &AlertNotice, clock: &Clock, heading: bool) {
    let ru = lang == Language::Ru;
    if heading {
        let _ = writeln!(body, "[{}] {}", status_tag(a.status), a.check);
    }
    let _ = writeln!(
        body,
        "check={} kind={} channel={} reason_kind={}",
        a.check, a.kind, a.channel, a.reason_kind
    );
    let since = clock.full(a.since);
    match (a.status, a.resolved_at) {
        (AlertStatus::Resolved, Some(at)) => {
            let at = clock.full(at);
            let _ = writeln!(
                body,
                "{}: {since} — {at}",
                if ru { "не работал" } else { "down" }
            );
        }
        _ => {
            let _ = writeln!(
                body,
                "{}: {since}, {} {}",
                if ru { "с" } else { "since" },
                a.consecutive_failures,
                if ru {
                    "ошибок подряд"
                } else {
                    "failures in a row"
                }
            );
        }
    }
    let label = match (ru, a.status) {
        (true, AlertStatus::Resolved) => "последняя ошибка",
        (true, _) => "ошибка",
        (false, AlertStatus::Resolved) => "last error",
        (false, _) => "error",
    };
    let _ = write!(body, "{label}: {}", truncate(a.reason.trim(), MAX_REASON));
    if let Some(link) = &a.link {
        let _ = write!(
            body,
            "\n{}: {link}",
            if ru { "подробнее" } else { "details" }
        );
    }
}
