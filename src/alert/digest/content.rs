//! What a digest says: a shop's week as plain text (chat messages, the e-mail's text part) and
//! as HTML (the e-mail), in Russian or English.
//!
//! Built from a [`Report`] of the week (the same figures `supportwatch report` prints), the
//! owner's targets and [`Extras`] the history does not hold. A target is **met** when the
//! channel's p95 latency is within it: the promise holds for 19 contacts out of 20.

use super::DigestMessage;
use crate::alert::history::report::{ChannelReport, Report};
use crate::notify::Language;
use crate::notify::render::{channel_name, owner_problem};
use crate::value::{Channel, Dur};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Certificates expire soon when fewer days than this are left.
pub const CERT_DAYS: f64 = 30.0;
/// Mailboxes are nearly full above this share of their quota.
pub const MAILBOX_FULL: f64 = 0.8;

/// What the store's last values (certificate expiries, mailbox fills) add to the roll-ups.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    /// Checks whose certificate expires within [`CERT_DAYS`]: (check, days left).
    pub certs: Vec<(String, f64)>,
    /// Mailboxes above [`MAILBOX_FULL`] of their quota: (mailbox, used share 0..=1).
    pub mailboxes: Vec<(String, f64)>,
}

/// Whether `c` met `target`: `None` without a target or without latencies.
pub fn verdict(c: &ChannelReport, targets: &BTreeMap<Channel, Dur>) -> Option<(f64, bool)> {
    let target = targets
        .get(&Channel::from_label(&c.channel)?)?
        .get()
        .as_secs_f64();
    let p95 = c.latency_p95_seconds?;
    Some((target, p95 <= target))
}

/// Sets each channel's target and verdict in `report` (`report` text and JSON show them).
pub fn apply_targets(report: &mut Report, targets: &BTreeMap<Channel, Dur>) {
    for c in &mut report.channels {
        c.target_seconds = Channel::from_label(&c.channel)
            .and_then(|ch| targets.get(&ch))
            .map(|t| t.get().as_secs_f64());
        c.target_met = verdict(c, targets).map(|(_, met)| met);
    }
}

/// `2016` as `2,016` (en) or `2 016` (ru).
pub fn count(lang: Language, n: u64) -> String {
    let digits = n.to_string();
    let sep = match lang {
        Language::En => ',',
        Language::Ru => '\u{a0}',
    };
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(d);
    }
    out
}

/// Seconds as owners read them.
pub fn human(lang: Language, secs: f64) -> String {
    let ru = lang == Language::Ru;
    let (value, unit) = if secs < 1.0 {
        (format!("{:.0}", secs * 1e3), if ru { "мс" } else { "ms" })
    } else if secs < 120.0 {
        (format!("{secs:.0}"), if ru { "с" } else { "s" })
    } else if secs < 7200.0 {
        (
            format!("{:.0}", secs / 60.0),
            if ru { "мин" } else { "min" },
        )
    } else {
        let h = format!("{:.1}", secs / 3600.0);
        (
            if ru { h.replace('.', ",") } else { h },
            if ru { "ч" } else { "h" },
        )
    };
    format!("{value} {unit}")
}

fn percent(lang: Language, share: f64) -> String {
    let p = format!("{:.2}", share * 100.0);
    let p = p.trim_end_matches('0').trim_end_matches('.').to_string();
    match lang {
        Language::En => format!("{p} %"),
        Language::Ru => format!("{} %", p.replace('.', ",")),
    }
}

/// The synthetic traffic of the week in words ("2,016 form submissions, 672 chats").
pub fn traffic(lang: Language, report: &Report) -> String {
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    let mut delivered = 0;
    for c in &report.channels {
        for (kind, n) in &c.traffic {
            *by_kind.entry(kind.as_str()).or_default() += n;
        }
        if matches!(c.channel.as_str(), "feedback_form" | "email") {
            delivered += c.runs - c.failures;
        }
    }
    let ru = lang == Language::Ru;
    let mut parts = Vec::new();
    let mut push = |n: u64, en: &str, ru_words: &str| {
        if n > 0 {
            parts.push(if ru {
                format!("{ru_words}: {}", count(lang, n))
            } else {
                format!("{} {en}", count(lang, n))
            });
        }
    };
    push(
        by_kind.get("form").copied().unwrap_or(0),
        "form submissions",
        "отправок формы",
    );
    push(delivered, "mails delivered", "доставлено писем");
    push(by_kind.get("chat").copied().unwrap_or(0), "chats", "чатов");
    push(
        by_kind.get("callback").copied().unwrap_or(0),
        "callbacks",
        "заявок на звонок",
    );
    push(
        by_kind.get("phone").copied().unwrap_or(0),
        "calls",
        "звонков",
    );
    let pages = ["http", "browser"]
        .iter()
        .filter_map(|k| by_kind.get(k))
        .sum();
    push(pages, "page checks", "проверок сайта");
    parts.join(", ")
}

/// One line per channel: uptime, incidents, latency against the target.
fn channel_line(lang: Language, c: &ChannelReport, targets: &BTreeMap<Channel, Dur>) -> String {
    let ru = lang == Language::Ru;
    let name =
        Channel::from_label(&c.channel).map_or(c.channel.as_str(), |ch| channel_name(lang, ch));
    let mut line = format!("{name}: ");
    match c.uptime {
        Some(u) => {
            let _ = write!(
                line,
                "{} {}",
                if ru { "работал" } else { "up" },
                percent(lang, u)
            );
        }
        None => line.push_str(if ru {
            "не проверялся"
        } else {
            "not checked"
        }),
    }
    // Outages, not per-check incidents: two checks of one channel failing together are one.
    let n = c.outages;
    line.push_str(&match (ru, n) {
        (true, 0) => ", без сбоев".to_string(),
        (true, n) => format!(", сбоев: {n}"),
        (false, 0) => ", no incidents".to_string(),
        (false, 1) => ", 1 incident".to_string(),
        (false, n) => format!(", {n} incidents"),
    });
    if let (Some(p50), Some(p95)) = (c.latency_p50_seconds, c.latency_p95_seconds) {
        let _ = write!(
            line,
            "; {} {}, p95 {}",
            if ru { "медиана" } else { "median" },
            human(lang, p50),
            human(lang, p95)
        );
    }
    if let Some((target, met)) = verdict(c, targets) {
        let _ = write!(
            line,
            " ({} {}: {})",
            if ru { "цель" } else { "target" },
            human(lang, target),
            match (ru, met) {
                (true, true) => "выполнена",
                (true, false) => "не выполнена",
                (false, true) => "met",
                (false, false) => "not met",
            }
        );
    }
    line
}

fn local(stamp: &str, zone: &jiff::tz::TimeZone, lang: Language) -> String {
    let Ok(ts) = stamp.parse::<jiff::Timestamp>() else {
        return stamp.to_string();
    };
    let z = ts.to_zoned(zone.clone());
    match lang {
        Language::En => z.strftime("%a %d %b %H:%M").to_string(),
        Language::Ru => z.strftime("%d.%m %H:%M").to_string(),
    }
}

/// The sections of a digest, each a heading and its lines, shared by text and HTML.
fn sections(
    lang: Language,
    report: &Report,
    targets: &BTreeMap<Channel, Dur>,
    extras: &Extras,
    zone: &jiff::tz::TimeZone,
) -> Vec<(String, Vec<String>)> {
    let ru = lang == Language::Ru;
    let mut out = Vec::new();
    let channels: Vec<String> = report
        .channels
        .iter()
        .map(|c| channel_line(lang, c, targets))
        .collect();
    if channels.is_empty() {
        out.push((
            if ru { "Каналы" } else { "Channels" }.to_string(),
            vec![
                if ru {
                    "за неделю нет ни одной проверки"
                } else {
                    "no checks ran this week"
                }
                .to_string(),
            ],
        ));
        return out;
    }
    out.push((if ru { "Каналы" } else { "Channels" }.to_string(), channels));
    out.push((
        if ru {
            "Проверочный трафик"
        } else {
            "Test traffic"
        }
        .to_string(),
        vec![traffic(lang, report)],
    ));
    let incidents: Vec<String> = report
        .channels
        .iter()
        .flat_map(|c| c.outage_list.iter().map(move |i| (c, i)))
        .map(|(c, i)| {
            let channel = Channel::from_label(&c.channel);
            let name = channel.map_or(c.channel.as_str(), |ch| channel_name(lang, ch));
            let what = channel.map_or(i.reason_kind.clone(), |ch| {
                owner_problem(lang, ch, &i.reason_kind)
            });
            let end = i
                .ended
                .as_deref()
                .map_or(if ru { "сейчас" } else { "now" }.to_string(), |e| {
                    local(e, zone, lang)
                });
            format!(
                "{name}, {} – {end} ({}): {what}",
                local(&i.started, zone, lang),
                human(lang, i.duration_seconds)
            )
        })
        .collect();
    if !incidents.is_empty() {
        out.push((if ru { "Сбои" } else { "Incidents" }.to_string(), incidents));
    }
    if !extras.certs.is_empty() {
        out.push((
            if ru {
                "Сертификаты истекают в ближайшие 30 дней"
            } else {
                "Certificates expiring within 30 days"
            }
            .to_string(),
            extras
                .certs
                .iter()
                .map(|(check, days)| {
                    let days = days.max(0.0).floor() as u64;
                    if ru {
                        format!("{check}: осталось дней: {days}")
                    } else {
                        format!("{check}: {days} days left")
                    }
                })
                .collect(),
        ));
    }
    if !extras.mailboxes.is_empty() {
        out.push((
            if ru {
                "Почтовые ящики заполнены более чем на 80 %"
            } else {
                "Mailboxes above 80 %"
            }
            .to_string(),
            extras
                .mailboxes
                .iter()
                .map(|(name, used)| format!("{name}: {}", percent(lang, *used)))
                .collect(),
        ));
    }
    out
}

/// The title: shop and the week's dates.
fn title(lang: Language, report: &Report, zone: &jiff::tz::TimeZone) -> String {
    let day = |stamp: &str| {
        stamp
            .parse::<jiff::Timestamp>()
            .map(|ts| {
                let z = ts.to_zoned(zone.clone());
                match lang {
                    Language::En => z.strftime("%d %b").to_string(),
                    Language::Ru => z.strftime("%d.%m").to_string(),
                }
            })
            .unwrap_or_default()
    };
    match lang {
        Language::En => format!(
            "{}: weekly report, {} – {}",
            report.shop,
            day(&report.from),
            day(&report.to)
        ),
        Language::Ru => format!(
            "{}: отчёт за неделю, {} – {}",
            report.shop,
            day(&report.from),
            day(&report.to)
        ),
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The digest of `report` for period `period`, in `lang`, times in `zone`.
pub fn compose(
    lang: Language,
    period: i64,
    report: &Report,
    targets: &BTreeMap<Channel, Dur>,
    extras: &Extras,
    zone: &jiff::tz::TimeZone,
) -> DigestMessage {
    let title = title(lang, report, zone);
    let sections = sections(lang, report, targets, extras, zone);
    let mut text = String::new();
    for (heading, lines) in &sections {
        if !text.is_empty() {
            text.push('\n');
        }
        let _ = writeln!(text, "{heading}");
        for line in lines {
            let _ = writeln!(text, "• {line}");
        }
    }
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title>\
         </head>\n<body style=\"font-family:sans-serif;max-width:40em\">\n<h1 \
         style=\"font-size:1.3em\">{}</h1>\n",
        match lang {
            Language::En => "en",
            Language::Ru => "ru",
        },
        escape(&title),
        escape(&title)
    );
    for (heading, lines) in &sections {
        let _ = writeln!(
            html,
            "<h2 style=\"font-size:1.1em\">{}</h2>\n<ul>",
            escape(heading)
        );
        for line in lines {
            let _ = writeln!(html, "<li>{}</li>", escape(line));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("</body></html>\n");
    DigestMessage {
        period,
        title,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_owners_write_them() {
        assert_eq!(count(Language::En, 2016), "2,016");
        assert_eq!(count(Language::En, 1_234_567), "1,234,567");
        assert_eq!(count(Language::Ru, 2016), "2\u{a0}016");
        assert_eq!(count(Language::En, 96), "96");
        assert_eq!(human(Language::En, 41.2), "41 s");
        assert_eq!(human(Language::Ru, 9000.0), "2,5 ч");
        assert_eq!(percent(Language::En, 0.999), "99.9 %");
        assert_eq!(percent(Language::En, 1.0), "100 %");
        assert_eq!(escape("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
