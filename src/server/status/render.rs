//! The status pages' HTML, written with maud: the markup is checked when supportwatch compiles,
//! and every inserted value is escaped, so a check's reason cannot inject markup.
//!
//! A shop's page costs a fixed number of store reads whatever the history's length: the alert
//! states, the shop's hourly roll-ups of the last 48 hours (the sparklines and the 24 h uptime),
//! the runs and failures of its daily roll-ups of the last 30 days and of the hours before their
//! first whole day (7 d and 30 d uptime, no histogram read), the last certificate expiries and
//! mailbox fills, its incidents, and one newest run per check of the shop. The rows read grow with the shop's checks, never with the history.

use super::{PageCheck, PageSetup, StatusPage, evidence};
use crate::alert::history::{History, outages};
use crate::alert::store::rollup::{HOUR, RollupQuery};
use crate::alert::store::{Histogram, LastValueRow, StoreError, ValueKind};
use crate::notify::Language;
use crate::notify::render::words;
use crate::value::Channel;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Hours the sparkline shows.
const SPARK_HOURS: i64 = 48;

const DAY: i64 = 86_400;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:60rem;\
padding:1rem;color:#1d1d1f;background:#fff}h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.4rem;\
border-bottom:1px solid #ddd;vertical-align:top}.ok{color:#1a7f37}.bad{color:#c62828}\
.pause{color:#8a6d00}.muted{color:#666}svg{display:block}\
@media(max-width:40rem){table,tr,td,th{display:block}thead{display:none}\
tr{border-bottom:2px solid #ccc;padding:.4rem 0}td{border:0;padding:.15rem 0}}";

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn at(secs: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0))
}

struct Text {
    lang: Language,
}

impl Text {
    fn t(&self, en: &'static str, ru: &'static str) -> &'static str {
        match self.lang {
            Language::En => en,
            Language::Ru => ru,
        }
    }
}

fn page(lang: Language, title: &str, body: Markup) -> String {
    let code = match lang {
        Language::En => "en",
        Language::Ru => "ru",
    };
    html! {
        (DOCTYPE)
        html lang=(code) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
    .into_string()
}

/// The list of shops.
pub fn index(lang: Language, shops: &[&str]) -> String {
    let tx = Text { lang };
    let title = tx.t("Support channels", "Каналы поддержки");
    page(
        lang,
        title,
        html! {
            h1 { (title) }
            @if shops.is_empty() {
                p.muted { (tx.t("No shop is public.", "Нет открытых магазинов.")) }
            }
            ul {
                @for shop in shops {
                    li { a href={ "/status/shop/" (shop) } { (shop) } }
                }
            }
        },
    )
}

/// Figures of one channel.
#[derive(Default)]
struct ChannelView {
    runs: [u64; 3],
    failures: [u64; 3],
    /// Latency by hour start, for the sparkline.
    hourly: BTreeMap<i64, Histogram>,
    last_run: Option<f64>,
    checks: usize,
}

fn uptime(runs: u64, failures: u64) -> String {
    if runs == 0 {
        return "—".into();
    }
    let pct = 100.0 * (1.0 - failures as f64 / runs as f64);
    format!("{pct:.2} %")
}

/// A polyline of the hourly medians; `None` with fewer than two points.
fn sparkline(hourly: &BTreeMap<i64, Histogram>, from: i64) -> Option<Markup> {
    let points: Vec<(i64, f64)> = hourly
        .iter()
        .filter(|(start, _)| **start >= from)
        .filter_map(|(start, h)| h.quantile(0.5).map(|q| (*start, q)))
        .collect();
    if points.len() < 2 {
        return None;
    }
    let max = points.iter().map(|p| p.1).fold(f64::MIN_POSITIVE, f64::max);
    let (w, h) = (144.0, 28.0);
    let span = (SPARK_HOURS * HOUR) as f64;
    let coords: Vec<String> = points
        .iter()
        .map(|(start, q)| {
            let x = (*start - from) as f64 / span * w;
            let y = h - 2.0 - q / max * (h - 4.0);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    Some(html! {
        svg width="144" height="28" viewBox="0 0 144 28" role="img" aria-label=(format!("max {max:.0} s")) {
            polyline points=(coords.join(" ")) fill="none" stroke="#1565c0" stroke-width="1.5" {}
        }
    })
}

fn duration_words(lang: Language, secs: f64) -> String {
    let minutes = (secs / 60.0).round() as u64;
    let (h, m) = (minutes / 60, minutes % 60);
    match (lang, h) {
        (Language::En, 0) => format!("{m} min"),
        (Language::En, _) => format!("{h} h {m} min"),
        (Language::Ru, 0) => format!("{m} мин"),
        (Language::Ru, _) => format!("{h} ч {m} мин"),
    }
}

/// One shop's page.
pub fn shop(
    page: &StatusPage,
    setup: &PageSetup,
    shop: &str,
    lang: Language,
) -> Result<String, StoreError> {
    let tx = Text { lang };
    let now = (page.clock)();
    let now_s = secs(now);
    let zone = setup.zone(shop);
    let checks: Vec<&PageCheck> = setup.checks.iter().filter(|c| c.shop == shop).collect();

    page.read();
    let states = page.store.load_states()?;
    // The last 48 hours with their histograms: the sparkline and the 24 h uptime.
    let spark_from = (now_s / HOUR - SPARK_HOURS + 1) * HOUR;
    page.read();
    let rows = page.store.rollups(&RollupQuery {
        period: HOUR,
        from: spark_from,
        to: now_s + 1,
        shop: Some(shop),
        check: None,
    })?;
    page.rows(rows.len());
    // 7 d and 30 d: counts only, whole UTC days from the daily roll-ups and the hours before
    // the first whole day from the hourly ones; the same runs as hour by hour, a 24th of the rows.
    let counts = |period: i64, from: i64, to: i64| {
        page.read();
        let rows = page.store.rollup_counts(&RollupQuery {
            period,
            from,
            to,
            shop: Some(shop),
            check: None,
        });
        if let Ok(rows) = &rows {
            page.rows(rows.len());
        }
        rows
    };
    // A range takes each hour that ends after its start.
    let first_hour = |days: i64| (now_s - days * DAY).div_euclid(HOUR) * HOUR;
    let first_day = |days: i64| first_hour(days) + (DAY - first_hour(days).rem_euclid(DAY)) % DAY;
    let daily = counts(DAY, first_day(30), now_s + 1)?;
    let edges = [
        counts(HOUR, first_hour(7), first_day(7))?,
        counts(HOUR, first_hour(30), first_day(30))?,
    ];
    let mut mailboxes: Vec<&str> = checks
        .iter()
        .flat_map(|c| c.mailboxes.iter().map(String::as_str))
        .collect();
    mailboxes.sort_unstable();
    mailboxes.dedup();
    page.read();
    let values = page.store.last_values(shop, &mailboxes)?;
    let (certs, fills) = gauges(&values, &by_name_of(&checks), now_s);
    page.read();
    let incidents = outages(History::new(&page.store, now).incidents(
        shop,
        at((now_s - 30 * DAY) as f64),
        now,
    )?);

    let by_name: BTreeMap<&str, &PageCheck> =
        checks.iter().map(|c| (c.name.as_str(), *c)).collect();
    let mut views: BTreeMap<Channel, ChannelView> = BTreeMap::new();
    for check in &checks {
        let view = views.entry(check.channel).or_default();
        view.checks += 1;
        page.read();
        if let Some(run) = page.store.recent_runs(&check.name, 1)?.first() {
            view.last_run = Some(
                view.last_run
                    .map_or(run.started_at, |t| t.max(run.started_at)),
            );
        }
    }
    for row in &rows {
        let Some(check) = by_name.get(row.check.as_str()) else {
            continue;
        };
        let view = views.entry(check.channel).or_default();
        // An hour counts when it ends after the range's start.
        if row.start + HOUR > now_s - DAY {
            view.runs[0] += row.runs;
            view.failures[0] += row.failures;
        }
        view.hourly
            .entry(row.start)
            .or_default()
            .merge(&row.latency);
    }
    for (i, days) in [(1, 7), (2, 30)] {
        let whole_days = daily.iter().filter(|row| row.start >= first_day(days));
        for row in whole_days.chain(edges[i - 1].iter()) {
            let Some(check) = by_name.get(row.check.as_str()) else {
                continue;
            };
            let view = views.entry(check.channel).or_default();
            view.runs[i] += row.runs;
            view.failures[i] += row.failures;
        }
    }

    let state_of = |channel: Channel| -> (&'static str, String) {
        let of_channel = checks.iter().filter(|c| c.channel == channel);
        let mut failing: Option<(f64, &str)> = None;
        let mut paused = false;
        for check in of_channel {
            if crate::alert::maintenance::any_contains(&check.maintenance, now) {
                paused = true;
            }
            if let Some(state) = states.get(&check.name).filter(|s| s.firing) {
                let since = state.failing_since.unwrap_or(now_s as f64);
                if failing.is_none_or(|(t, _)| since < t) {
                    failing = Some((since, state.reason_kind.as_str()));
                }
            }
        }
        match (failing, paused) {
            (_, true) => ("pause", tx.t("in maintenance", "на обслуживании").into()),
            (Some((since, reason)), false) => (
                "bad",
                words::failing(lang, channel, reason, at(since), zone, now),
            ),
            (None, false) => ("ok", tx.t("works", "работает").into()),
        }
    };

    let title = format!("{shop}: {}", tx.t("support channels", "каналы поддержки"));
    let body = html! {
        h1 { (title) }
        p.muted { (tx.t("As of", "На")) " " (words::time(now, zone, now)) }
        table {
            thead { tr {
                th { (tx.t("Channel", "Канал")) }
                th { (tx.t("State", "Состояние")) }
                th { (tx.t("Last check", "Последняя проверка")) }
                th { (tx.t("Uptime 24 h / 7 d / 30 d", "Доступность 24 ч / 7 д / 30 д")) }
                th { (tx.t("Latency, 48 h", "Время ответа, 48 ч")) }
            } }
            tbody {
                @for channel in Channel::ALL {
                    @if let Some(view) = views.get(&channel) {
                        @let (class, words_now) = state_of(channel);
                        tr {
                            td { strong { (words::channel(lang, channel)) } }
                            td class=(class) {
                                @if view.last_run.is_none() && class == "ok" {
                                    span.muted { (tx.t("not checked yet", "ещё не проверялся")) }
                                } @else { (words_now) }
                            }
                            td { @match view.last_run {
                                Some(t) => (words::time(at(t), zone, now)),
                                None => "—",
                            } }
                            td { (uptime(view.runs[0], view.failures[0])) " / "
                                 (uptime(view.runs[1], view.failures[1])) " / "
                                 (uptime(view.runs[2], view.failures[2])) }
                            td { @match sparkline(&view.hourly, spark_from) {
                                Some(svg) => (svg),
                                None => span.muted { "—" },
                            } }
                        }
                    }
                }
            }
        }
        @if !certs.is_empty() || !fills.is_empty() {
            h2 { (tx.t("Certificates and mailboxes", "Сертификаты и почтовые ящики")) }
            ul {
                @for (host, days) in &certs {
                    li class=(if *days < 14.0 { "bad" } else if *days < 30.0 { "pause" } else { "ok" }) {
                        (cert_words(lang, host, *days))
                    }
                }
                @for (mailbox, ratio) in &fills {
                    li class=(if *ratio > 0.9 { "bad" } else if *ratio > 0.8 { "pause" } else { "ok" }) {
                        (fill_words(lang, mailbox, *ratio))
                    }
                }
            }
        }
        h2 { (tx.t("Incidents, last 30 days", "Сбои за 30 дней")) }
        @if incidents.is_empty() {
            p.ok { (tx.t("None.", "Не было.")) }
        } @else {
            ul {
                @for incident in incidents.iter().rev() {
                    @let channel = Channel::from_label(&incident.channel);
                    li {
                        @match (channel, incident.ended_at) {
                            (Some(c), Some(end)) => {
                                (words::resolved(lang, c, at(incident.started_at), at(end), zone, now))
                                " — " (duration_words(lang, end - incident.started_at))
                            }
                            (Some(c), None) => (words::failing(lang, c, &incident.reason_kind,
                                at(incident.started_at), zone, now)),
                            (None, _) => (incident.channel),
                        }
                    }
                }
            }
        }
    };
    Ok(page_html(lang, &title, body))
}

fn by_name_of<'c>(checks: &[&'c PageCheck]) -> BTreeMap<&'c str, &'c PageCheck> {
    checks.iter().map(|c| (c.name.as_str(), *c)).collect()
}

/// The host of a TLS target (`scheme://host:port` or `host:port`): owners know their sites by
/// name, and the scheme and port say nothing to them.
fn target_host(target: &str) -> &str {
    let rest = target.split_once("://").map_or(target, |(_, r)| r);
    let rest = rest.split('/').next().unwrap_or(rest);
    match rest.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => rest,
    }
    .trim_start_matches('[')
    .trim_end_matches(']')
}

/// Figures by name: (host, days left) or (mailbox, share used).
type Named = Vec<(String, f64)>;

/// Days left of each certificate host seen by the shop's checks (the soonest when several
/// targets share a host) and the fill of each of its mailboxes, by name.
fn gauges(
    values: &[LastValueRow],
    checks: &BTreeMap<&str, &PageCheck>,
    now: i64,
) -> (Named, Named) {
    let mut certs: BTreeMap<String, f64> = BTreeMap::new();
    let mut fills: BTreeMap<String, f64> = BTreeMap::new();
    for row in values {
        match row.value.kind {
            ValueKind::CertNotAfter => {
                // A check no longer in the config speaks for nobody.
                if !checks.contains_key(row.check.as_str()) {
                    continue;
                }
                let days = (row.value.value - now as f64) / DAY as f64;
                let host = target_host(&row.value.subject).to_string();
                let slot = certs.entry(host).or_insert(days);
                *slot = slot.min(days);
            }
            ValueKind::MailboxFill => {
                fills.insert(row.value.subject.clone(), row.value.value);
            }
        }
    }
    (certs.into_iter().collect(), fills.into_iter().collect())
}

fn cert_words(lang: Language, host: &str, days: f64) -> String {
    let whole = days.floor() as i64;
    match (lang, whole < 0) {
        (Language::En, true) => format!("certificate for {host} has expired"),
        (Language::Ru, true) => format!("сертификат {host} истёк"),
        (Language::En, false) => format!("certificate for {host} expires in {whole} days"),
        (Language::Ru, false) => format!("сертификат {host} истекает через {whole} дн."),
    }
}

fn fill_words(lang: Language, mailbox: &str, ratio: f64) -> String {
    let pct = (ratio * 100.0).round() as i64;
    match lang {
        Language::En => format!("{mailbox} mailbox {pct} % full"),
        Language::Ru => format!("ящик {mailbox} заполнен на {pct} %"),
    }
}

fn page_html(lang: Language, title: &str, body: Markup) -> String {
    page(lang, title, body)
}

/// `text` with every URL replaced: a reason may name a host inside the shop's network.
fn without_urls(text: &str) -> String {
    text.split(' ')
        .map(|word| if word.contains("://") { "[url]" } else { word })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `path` may go into a link as it is.
fn plain_path(path: &str) -> bool {
    path.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
}

/// A run's stored phases, observations and detail lines (see `alert::service::record`), each
/// text scrubbed again as the reasons are; nothing for none or for JSON this version does not
/// read.
fn details(json: Option<&str>, scrub: &dyn Fn(&str) -> String) -> Markup {
    let Some(value) = json.and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok()) else {
        return html! {};
    };
    let list = |key: &str| value[key].as_array().cloned().unwrap_or_default();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => scrub(s),
        serde_json::Value::Null => String::new(),
        other => scrub(&other.to_string()),
    };
    let phases = list("phases");
    let observations = list("observations");
    let lines = list("details");
    html! {
        @if !phases.is_empty() {
            div { @for (i, p) in phases.iter().enumerate() {
                @if i > 0 { " · " }
                span class=(if p["ok"].as_bool() == Some(true) { "ok" } else { "bad" }) {
                    (text(&p["name"]))
                    @if let Some(s) = p["seconds"].as_f64() { " " (format!("{s:.2} s")) }
                    (if p["ok"].as_bool() == Some(true) { " ✓" } else { " ✗" })
                }
            } }
        }
        @if !observations.is_empty() {
            div.muted { @for (i, o) in observations.iter().enumerate() {
                @if i > 0 { "; " }
                (text(&o["kind"]))
                @if let Some(fields) = o.as_object() {
                    @for (key, v) in fields.iter().filter(|(k, _)| k.as_str() != "kind") {
                        " " (key) "=" (text(v))
                    }
                }
            } }
        }
        @for line in &lines {
            div.muted { small { (text(line)) } }
        }
    }
}

/// One check's ops page: its newest runs and the evidence of its last failure.
pub fn check(
    page: &StatusPage,
    setup: &PageSetup,
    check: &PageCheck,
    lang: Language,
) -> Result<String, StoreError> {
    let tx = Text { lang };
    let now = (page.clock)();
    let zone = setup.zone(&check.shop);
    page.read();
    let runs = page.store.recent_runs(&check.name, 50)?;
    page.read();
    let states = page.store.load_states()?;
    let evidence = states
        .get(&check.name)
        .and_then(|s| s.evidence.as_ref())
        .map(|dir| evidence::listing(&setup.artifacts, std::path::Path::new(dir)))
        .unwrap_or_default();
    let scrub = |text: &str| without_urls(&setup.redactor.scrub(text));
    let title = format!("{} — {}", check.name, words::channel(lang, check.channel));
    let body = html! {
        h1 { (title) }
        p { a href={ "/status/shop/" (check.shop) } { (check.shop) } }
        @if !evidence.is_empty() {
            h2 { (tx.t("Evidence of the last failure", "Материалы последнего сбоя")) }
            ul { @for file in &evidence {
                @if plain_path(file) {
                    li { a href={ "/status/evidence/" (file) } { (file) } }
                }
            } }
        }
        h2 { (tx.t("Last runs", "Последние проверки")) }
        table {
            thead { tr {
                th { (tx.t("Started", "Начало")) }
                th { (tx.t("Result", "Результат")) }
                th { (tx.t("Duration", "Длительность")) }
                th { (tx.t("Latency", "Задержка")) }
                th { (tx.t("Reason", "Причина")) }
                th { (tx.t("Phases and observations", "Этапы и наблюдения")) }
            } }
            tbody { @for run in &runs {
                tr {
                    td { (words::time(at(run.started_at), zone, now)) }
                    td class=(if run.failed() { "bad" } else { "ok" }) { (run.result) }
                    td { (format!("{:.1} s", run.duration)) }
                    td { @match run.latency { Some(l) => (format!("{l:.1} s")), None => "—" } }
                    td {
                        @if let Some(kind) = &run.reason_kind { code { (kind) } " " }
                        @if let Some(reason) = &run.reason { (scrub(reason)) }
                    }
                    td { (details(run.details.as_deref(), &scrub)) }
                }
            } }
        }
    };
    Ok(page_html(lang, &title, body))
}
