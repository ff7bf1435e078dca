//! Alert texts: plain words for shop owners, the technical reason for ops, in Russian or English.
//!
//! Owners read "Форма обратной связи не доставляет письма с 14:05": the channel in their own
//! words, what is wrong (from the bounded `reason_kind`, never the raw message, which is for ops)
//! and since when, in the shop's time zone. Ops read the check, kind, channel, reason kind and
//! the check's own message. Every notifier sends the same two strings, so the texts are decided
//! here once and tested here.

use super::{AlertNotice, AlertStatus, Audience, Language, Notification};
use crate::outcome::FailureKind;
use crate::value::Channel;
use jiff::tz::TimeZone;
use std::time::SystemTime;

/// The technical reason is cut here: a stack of HTML or a whole SMTP transcript helps nobody in
/// a chat message.
const MAX_REASON: usize = 300;

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line: subject of a mail, first line of a chat message.
    pub title: String,
    /// Lines after the title.
    pub body: String,
}

/// Renders a notification for its audience and language.
pub fn render(n: &Notification) -> Rendered {
    render_at(n, SystemTime::now())
}

/// [`render`] as of `now` (which decides whether a time needs its date).
pub fn render_at(n: &Notification, now: SystemTime) -> Rendered {
    if let Some(d) = &n.digest {
        return Rendered {
            title: d.title.clone(),
            body: d.text.trim_end().to_string(),
        };
    }
    let clock = Clock::new(n.timezone.as_deref(), now);
    let mut alerts: Vec<&AlertNotice> = n.alerts.iter().collect();
    // Firing first, then reminders, then resolved; stable, so the engine's order holds within.
    alerts.sort_by_key(|a| rank(a.status));
    let lang = n.language;
    let mut r = match n.audience {
        Audience::Owner => owner(n, &alerts, &clock),
        Audience::Ops => ops::ops(n, &alerts, &clock),
    };
    if n.test {
        let title = match lang {
            Language::Ru => format!("{}: проверка уведомлений supportwatch", n.shop),
            Language::En => format!("{}: supportwatch test notification", n.shop),
        };
        let mut body = match lang {
            Language::Ru => format!(
                "Это тестовое сообщение: уведомления о каналах поддержки магазина {} доходят \
                 сюда. Ничего делать не нужно.",
                n.shop
            ),
            Language::En => format!(
                "This is a test message: alerts about the support channels of {} reach you \
                 here. Nothing needs to be done.",
                n.shop
            ),
        };
        if !alerts.is_empty() {
            body.push_str(match lang {
                Language::Ru => "\n\nТак будет выглядеть уведомление:\n",
                Language::En => "\n\nA real alert would read:\n",
            });
            body.push_str(&r.title);
            if !r.body.is_empty() {
                body.push('\n');
                body.push_str(&r.body);
            }
        } else if let Some(url) = &n.status_url {
            body.push('\n');
            body.push_str(&status_line(lang, url));
        }
        r = Rendered { title, body };
    }
    r
}

/// The owner's one-line sentence for one alert of `n` ("Чат не отвечает с 14:05"), for
/// services that show a summary per alert (Alertmanager).
pub(crate) fn owner_line(n: &Notification, a: &AlertNotice, now: SystemTime) -> String {
    let clock = Clock::new(n.timezone.as_deref(), now);
    owner_sentence(n.language, a, &clock)
}

/// The owner's words for one channel's state and incidents, for pages that show what the alerts
/// say (the status page): the same sentences, so owners read one vocabulary everywhere.
pub mod words {
    use super::*;

    /// The channel in the owner's words ("Чат", "Feedback form").
    pub fn channel(lang: Language, channel: Channel) -> &'static str {
        channel_name(lang, channel)
    }

    /// "Chat does not respond since 14:05": a failing channel, `since` in zone `tz` as of `now`.
    pub fn failing(
        lang: Language,
        channel: Channel,
        reason_kind: &str,
        since: SystemTime,
        tz: Option<&str>,
        now: SystemTime,
    ) -> String {
        let clock = Clock::new(tz, now);
        firing_sentence(lang, channel, reason_kind, &clock.short(since), false)
    }

    /// "Chat works again (was down from 14:05 to 14:40)": an incident that ended.
    pub fn resolved(
        lang: Language,
        channel: Channel,
        since: SystemTime,
        until: SystemTime,
        tz: Option<&str>,
        now: SystemTime,
    ) -> String {
        let clock = Clock::new(tz, now);
        resolved_sentence(
            lang,
            channel,
            &clock.short(since),
            &clock.short_relative(until, since),
        )
    }

    /// "14:05" today, "12.03 14:05" another day: a time in zone `tz` as of `now`.
    pub fn time(t: SystemTime, tz: Option<&str>, now: SystemTime) -> String {
        Clock::new(tz, now).short(t)
    }
}

fn rank(status: AlertStatus) -> u8 {
    match status {
        AlertStatus::Firing => 0,
        AlertStatus::Reminder => 1,
        AlertStatus::Resolved => 2,
    }
}

fn status_line(lang: Language, url: &str) -> String {
    match lang {
        Language::Ru => format!("Статус: {url}"),
        Language::En => format!("Status: {url}"),
    }
}

// ---------------------------------------------------------------- owner

fn owner(n: &Notification, alerts: &[&AlertNotice], clock: &Clock) -> Rendered {
    let lang = n.language;
    let mut body = String::new();
    // An owner thinks in channels, not checks: two checks of the chat failing together are one
    // broken chat, said once (by the first, which failed first).
    let mut per_channel: Vec<&AlertNotice> = Vec::with_capacity(alerts.len());
    for a in alerts {
        if !per_channel
            .iter()
            .any(|p| p.channel == a.channel && p.status == a.status)
        {
            per_channel.push(a);
        }
    }
    let title = match per_channel.as_slice() {
        [] => format!("{}: supportwatch", n.shop),
        [one] => {
            for line in owner_details(lang, one) {
                push_line(&mut body, &line);
            }
            format!("{}: {}", n.shop, owner_sentence(lang, one, clock))
        }
        many => {
            for a in many {
                push_line(&mut body, &format!("• {}", owner_sentence(lang, a, clock)));
                for line in owner_details(lang, a) {
                    push_line(&mut body, &format!("  {line}"));
                }
            }
            format!("{}: {}", n.shop, count_title(lang, many))
        }
    };
    if let Some(url) = &n.status_url {
        push_line(&mut body, &status_line(lang, url));
    }
    Rendered { title, body }
}

fn push_line(body: &mut String, line: &str) {
    if !body.is_empty() {
        body.push('\n');
    }
    body.push_str(line);
}

/// "2 проблемы, 1 восстановлено" / "2 problems, 1 resolved".
fn count_title(lang: Language, alerts: &[&AlertNotice]) -> String {
    let resolved = alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Resolved)
        .count();
    let failing = alerts.len() - resolved;
    let mut parts = Vec::new();
    match lang {
        Language::Ru => {
            if failing > 0 {
                let word = plural_ru(failing, "проблема", "проблемы", "проблем");
                parts.push(format!("{failing} {word} с каналами поддержки"));
            }
            if resolved > 0 {
                let word = plural_ru(
                    resolved,
                    "канал снова работает",
                    "канала снова работают",
                    "каналов снова работают",
                );
                parts.push(format!("{resolved} {word}"));
            }
        }
        Language::En => {
            if failing > 0 {
                let word = if failing == 1 { "problem" } else { "problems" };
                parts.push(format!("{failing} {word} with support channels"));
            }
            if resolved > 0 {
                let word = if resolved == 1 {
                    "channel works"
                } else {
                    "channels work"
                };
                parts.push(format!("{resolved} {word} again"));
            }
        }
    }
    parts.join(", ")
}

/// Russian noun form for `n`: 1 проблема, 2 проблемы, 5 проблем, 21 проблема, 11 проблем.
fn plural_ru<'a>(n: usize, one: &'a str, few: &'a str, many: &'a str) -> &'a str {
    match (n % 10, n % 100) {
        (_, 11..=14) => many,
        (1, _) => one,
        (2..=4, _) => few,
        _ => many,
    }
}

/// The one sentence an owner needs: which channel, what is wrong, since when.
fn owner_sentence(lang: Language, a: &AlertNotice, clock: &Clock) -> String {
    let since = clock.short(a.since);
    match a.status {
        AlertStatus::Resolved => {
            let until = a
                .resolved_at
                .map(|t| clock.short_relative(t, a.since))
                .unwrap_or_default();
            resolved_sentence(lang, a.channel, &since, &until)
        }
        status => firing_sentence(
            lang,
            a.channel,
            &a.reason_kind,
            &since,
            status == AlertStatus::Reminder,
        ),
    }
}

/// "Chat works again (was down from 14:05 to 14:40)"; `until` may be empty.
fn resolved_sentence(lang: Language, channel: Channel, since: &str, until: &str) -> String {
    let name = channel_name(lang, channel);
    match lang {
        Language::Ru => {
            let was = if feminine_ru(channel) {
                "не работала"
            } else {
                "не работал"
            };
            if until.is_empty() {
                format!("{name} снова работает ({was} с {since})")
            } else {
                format!("{name} снова работает ({was} с {since} до {until})")
            }
        }
        Language::En => {
            if until.is_empty() {
                format!("{name} works again (down since {since})")
            } else {
                format!("{name} works again (was down from {since} to {until})")
            }
        }
    }
}

/// "Chat does not respond since 14:05"; `still` for a reminder.
fn firing_sentence(
    lang: Language,
    channel: Channel,
    reason_kind: &str,
    since: &str,
    still: bool,
) -> String {
    let name = channel_name(lang, channel);
    let problem = problem(lang, channel, reason_kind);
    match (lang, problem) {
        (Language::Ru, Problem::Verb(verb)) => {
            let verb = if still {
                format!("всё ещё {verb}")
            } else {
                verb.to_string()
            };
            format!("{name} {verb} с {since}")
        }
        (Language::Ru, Problem::State(subject, predicate)) => {
            let predicate = if still {
                format!("всё ещё {predicate}")
            } else {
                predicate.to_string()
            };
            format!("{name}: {subject} {predicate} с {since}")
        }
        (Language::En, Problem::Verb(verb)) => {
            let verb = if still {
                still_en(verb)
            } else {
                verb.to_string()
            };
            format!("{name} {verb} since {since}")
        }
        (Language::En, Problem::State(subject, predicate)) => {
            let predicate = if still {
                still_en(predicate)
            } else {
                predicate.to_string()
            };
            format!("{name}: {subject} {predicate} since {since}")
        }
    }
}

/// "is not delivering" → "is still not delivering"; "does not respond" → "still does not respond".
fn still_en(predicate: &str) -> String {
    match predicate.strip_prefix("is ") {
        Some(rest) => format!("is still {rest}"),
        None => format!("still {predicate}"),
    }
}

/// Lines under an owner's sentence: failures in a row, advice, a link to evidence.
fn owner_details(lang: Language, a: &AlertNotice) -> Vec<String> {
    let mut lines = Vec::new();
    if a.status == AlertStatus::Resolved {
        return lines;
    }
    if a.consecutive_failures > 0 {
        let n = a.consecutive_failures;
        lines.push(match lang {
            Language::Ru => format!(
                "{n} {} подряд.",
                plural_ru(
                    n as usize,
                    "неудачная проверка",
                    "неудачные проверки",
                    "неудачных проверок"
                )
            ),
            Language::En => format!(
                "{n} failed {} in a row.",
                if n == 1 { "check" } else { "checks" }
            ),
        });
    }
    if let Some(advice) = advice(lang, &a.reason_kind) {
        lines.push(advice.to_string());
    }
    // The evidence (`link`) is a directory on the supportwatch host: for ops, not owners.
    lines
}

/// What was wrong with `channel`, in the owner's words without the channel's name ("не
/// отвечает", "mailbox: full"), for the weekly digest's list of incidents.
pub(crate) fn owner_problem(lang: Language, channel: Channel, reason_kind: &str) -> String {
    match problem(lang, channel, reason_kind) {
        Problem::Verb(v) => v.to_string(),
        Problem::State(part, state) => format!("{part}: {state}"),
    }
}

/// What is wrong, in words that fit after the channel's name.
enum Problem {
    /// "не доставляет письма": follows the channel's name.
    Verb(&'static str),
    /// ("ящик", "переполнен"): a statement about a part of the channel.
    State(&'static str, &'static str),
}

fn problem(lang: Language, channel: Channel, reason_kind: &str) -> Problem {
    use Problem::{State, Verb};
    let ru = lang == Language::Ru;
    // Exhaustive over failure kinds: a new kind must choose its words for owners. `None` is a
    // reason that is no failure kind (a run result such as `timeout` is one; older states may
    // hold others).
    use FailureKind as F;
    match FailureKind::from_label(reason_kind) {
        Some(F::NotDelivered) if channel == Channel::Callback => Verb(if ru {
            "не доставляет заявки"
        } else {
            "is not delivering requests"
        }),
        Some(F::NotDelivered) => Verb(if ru {
            "не доставляет письма"
        } else {
            "is not delivering messages"
        }),
        Some(F::NoReply) => Verb(if ru {
            "не отвечает"
        } else {
            "is not answering"
        }),
        Some(F::SlowReply) => Verb(if ru {
            "отвечает слишком медленно"
        } else {
            "is answering too slowly"
        }),
        Some(F::AutoReply) => Verb(if ru {
            "не присылает автоответ"
        } else {
            "sends no automatic reply"
        }),
        Some(F::Timeout | F::Connect | F::Status | F::Dns | F::Protocol) => Verb(if ru {
            "не открывается"
        } else {
            "does not respond"
        }),
        Some(F::Tls) => Verb(if ru {
            "не открывается из-за ошибки сертификата"
        } else {
            "has a certificate problem"
        }),
        Some(F::CertExpiry) => State(
            if ru {
                "сертификат"
            } else {
                "the certificate"
            },
            if ru {
                "истекает"
            } else {
                "is expiring"
            },
        ),
        Some(F::MailboxFull) => State(
            if ru { "ящик" } else { "the mailbox" },
            if ru {
                "переполнен"
            } else {
                "is full"
            },
        ),
        Some(F::Bounced) => State(
            if ru {
                "письма в ящик"
            } else {
                "mail to the mailbox"
            },
            if ru {
                "возвращаются отправителю"
            } else {
                "bounces"
            },
        ),
        Some(F::Quota) => State(
            if ru { "ящик" } else { "the mailbox" },
            if ru {
                "почти переполнен"
            } else {
                "is almost full"
            },
        ),
        Some(F::Spam) => State(
            if ru { "письма" } else { "messages" },
            if ru {
                "попадают в спам"
            } else {
                "land in spam"
            },
        ),
        Some(F::Smtp) => Verb(if ru {
            "не принимает письма"
        } else {
            "is not accepting mail"
        }),
        Some(F::Auth) => Verb(if ru {
            "не принимает пароль учётной записи мониторинга"
        } else {
            "refuses the monitoring account's password"
        }),
        Some(F::NotFound) => Verb(if ru {
            "не знает этот номер"
        } else {
            "does not know the number"
        }),
        Some(F::Unavailable) => Verb(if ru {
            "временно недоступен"
        } else {
            "is temporarily unavailable"
        }),
        Some(F::Rejected) => Verb(if ru {
            "отклоняет вызовы"
        } else {
            "is refusing calls"
        }),
        Some(F::Busy) => Verb(if ru { "занят" } else { "is busy" }),
        Some(F::NoAnswer) => Verb(if ru {
            "не отвечает: звонок не берут"
        } else {
            "rings but nobody answers"
        }),
        Some(F::SilentLine) => Verb(if ru {
            "отвечает тишиной: приветствие не звучит"
        } else {
            "answers with silence: the greeting does not play"
        }),
        Some(F::Expectation | F::Internal | F::Mailbox) | None => Verb(if ru {
            "не работает"
        } else {
            "is not working"
        }),
    }
}

/// The first thing to do, where there is one an owner can do.
fn advice(lang: Language, reason_kind: &str) -> Option<&'static str> {
    let ru = lang == Language::Ru;
    // Exhaustive over failure kinds: a new kind must decide whether an owner can act on it.
    use FailureKind as F;
    Some(match FailureKind::from_label(reason_kind)? {
        F::MailboxFull | F::Quota => {
            if ru {
                "Освободите место в почтовом ящике."
            } else {
                "Free up space in the mailbox."
            }
        }
        F::CertExpiry | F::Tls => {
            if ru {
                "Проверьте и продлите сертификат сайта."
            } else {
                "Check and renew the site's certificate."
            }
        }
        F::Bounced => {
            if ru {
                "Проверьте ящик, указанный в возврате: переполнен, удалён или заблокирован."
            } else {
                "Check the mailbox named in the bounce: full, removed or blocked."
            }
        }
        F::Spam => {
            if ru {
                "Проверьте настройки почты (SPF, DKIM, DMARC)."
            } else {
                "Check the mail setup (SPF, DKIM, DMARC)."
            }
        }
        F::Auth => {
            if ru {
                "Проверьте пароль SIP-учётной записи мониторинга на АТС."
            } else {
                "Check the monitoring SIP account's password on the PBX."
            }
        }
        F::SilentLine => {
            if ru {
                "Проверьте голосовое меню (IVR) и файл приветствия на АТС."
            } else {
                "Check the voice menu (IVR) and the greeting's audio file on the PBX."
            }
        }
        F::Timeout
        | F::Connect
        | F::Busy
        | F::NoAnswer
        | F::NotFound
        | F::Unavailable
        | F::Rejected
        | F::Dns
        | F::Status
        | F::Expectation
        | F::Protocol
        | F::Internal
        | F::NotDelivered
        | F::Mailbox
        | F::Smtp
        | F::AutoReply
        | F::NoReply
        | F::SlowReply => return None,
    })
}

/// The channel in the owner's words ("Форма обратной связи", "Chat").
pub(crate) fn channel_name(lang: Language, channel: Channel) -> &'static str {
    match (lang, channel) {
        (Language::Ru, Channel::FeedbackForm) => "Форма обратной связи",
        (Language::Ru, Channel::Callback) => "Заказ обратного звонка",
        (Language::Ru, Channel::Chat) => "Чат",
        (Language::Ru, Channel::Email) => "Почта поддержки",
        (Language::Ru, Channel::Phone) => "Телефон",
        (Language::Ru, Channel::Website) => "Сайт",
        (Language::En, Channel::FeedbackForm) => "Feedback form",
        (Language::En, Channel::Callback) => "Callback request",
        (Language::En, Channel::Chat) => "Chat",
        (Language::En, Channel::Email) => "Support mail",
        (Language::En, Channel::Phone) => "Phone",
        (Language::En, Channel::Website) => "Website",
    }
}

/// Whether the Russian channel name is feminine (for "не работала").
fn feminine_ru(channel: Channel) -> bool {
    matches!(channel, Channel::FeedbackForm | Channel::Email)
}

/// `text` cut to `max` characters (not bytes: the text may be Cyrillic), with "…" when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

// ---------------------------------------------------------------- time

/// Formats times in the notification's time zone, relative to "now" there.
struct Clock {
    tz: TimeZone,
    today: Option<jiff::civil::Date>,
}

impl Clock {
    fn new(name: Option<&str>, now: SystemTime) -> Self {
        // An unknown name was caught at config load; should one slip through, the system's
        // zone is a better answer than no message.
        let tz = name
            .and_then(|n| TimeZone::get(n).ok())
            .unwrap_or_else(TimeZone::system);
        let today = jiff::Timestamp::try_from(now)
            .ok()
            .map(|t| t.to_zoned(tz.clone()).date());
        Clock { tz, today }
    }

    fn zoned(&self, t: SystemTime) -> Option<jiff::Zoned> {
        jiff::Timestamp::try_from(t)
            .ok()
            .map(|ts| ts.to_zoned(self.tz.clone()))
    }

    /// "14:05" today, "12.03 14:05" another day this year, "12.03.2025 14:05" before.
    fn short(&self, t: SystemTime) -> String {
        self.short_with(t, self.today)
    }

    /// Like [`Clock::short`], but the date is left out when it is the same as `since`'s.
    fn short_relative(&self, t: SystemTime, since: SystemTime) -> String {
        let since_date = self.zoned(since).map(|z| z.date());
        if since_date == self.zoned(t).map(|z| z.date()) && since_date.is_some() {
            self.short_with(t, since_date)
        } else {
            self.short(t)
        }
    }

    fn short_with(&self, t: SystemTime, reference: Option<jiff::civil::Date>) -> String {
        let Some(z) = self.zoned(t) else {
            return String::new();
        };
        let date = z.date();
        if Some(date) == reference {
            z.strftime("%H:%M").to_string()
        } else if reference.is_some_and(|r| r.year() == date.year()) {
            z.strftime("%d.%m %H:%M").to_string()
        } else {
            z.strftime("%d.%m.%Y %H:%M").to_string()
        }
    }

    /// RFC 3339 with the zone's offset, to the second.
    fn full(&self, t: SystemTime) -> String {
        self.zoned(t)
            .map(|z| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
            .unwrap_or_default()
    }
}

mod ops;
#[cfg(test)]
mod tests;
