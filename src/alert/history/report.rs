//! `supportwatch report`: one shop's channels over a range — uptime, runs, failures, median
//! and p95 latency, synthetic traffic and incidents — as text for people or JSON for scripts.
//!
//! The JSON shape is stable (README, "History and reports"): fields are added, never renamed
//! or removed. Times are RFC 3339 in the shop's time zone; durations and latencies in seconds.

use super::{History, Summary, outages};
use crate::alert::store::{Incident, StoreError};
use jiff::tz::TimeZone;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// A shop's report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Shop label.
    pub shop: String,
    /// IANA name of the zone the times are in.
    pub timezone: String,
    /// Start of the range.
    pub from: String,
    /// End of the range (now).
    pub to: String,
    /// Every channel with runs or incidents in the range, by name.
    pub channels: Vec<ChannelReport>,
}

/// One channel of a shop.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelReport {
    /// `feedback_form`, `chat`, ...
    pub channel: String,
    /// `1 − failures / runs`, 0..=1; `null` without runs.
    pub uptime: Option<f64>,
    /// Runs in the range.
    pub runs: u64,
    /// Of which failed.
    pub failures: u64,
    /// Median latency, seconds.
    pub latency_p50_seconds: Option<f64>,
    /// 95th percentile latency, seconds.
    pub latency_p95_seconds: Option<f64>,
    /// Largest latency, seconds.
    pub latency_max_seconds: Option<f64>,
    /// Runs by check kind: the synthetic traffic (`{"form": 2016}`).
    pub traffic: BTreeMap<String, u64>,
    /// Incidents overlapping the range, one per failing check, oldest first.
    pub incidents: Vec<IncidentReport>,
    /// Outages in the range: the incidents with those of the channel's checks that overlap
    /// merged into one (two chat checks failing together are one outage for the owner).
    pub outages: u64,
    /// The outages themselves, oldest first, each as its first incident with the merged span:
    /// what the digest lists. Not in the JSON, where scripts read each check's incidents.
    #[serde(skip)]
    pub outage_list: Vec<IncidentReport>,
    /// The owner's target for the channel (`digest.targets`), seconds; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_seconds: Option<f64>,
    /// Whether the p95 latency is within the target; absent without a target or latencies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_met: Option<bool>,
}

/// One incident.
#[derive(Clone, Debug, Serialize)]
pub struct IncidentReport {
    /// The check that failed.
    pub check: String,
    /// When its failures began.
    pub started: String,
    /// When it resolved; `null` while it lasts.
    pub ended: Option<String>,
    /// Seconds from start to end, or to now while it lasts.
    pub duration_seconds: f64,
    /// Bounded reason (`no_reply`, `timeout`, ...).
    pub reason_kind: String,
    /// What failed.
    pub reason: String,
}

fn time(t: SystemTime, zone: &TimeZone) -> String {
    jiff::Timestamp::try_from(t)
        .map(|ts| {
            ts.to_zoned(zone.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_default()
}

fn at(secs: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::try_from_secs_f64(secs).unwrap_or_default()
}

/// Builds `shop`'s report over the `since` before the history's now, times in `zone`.
pub fn build(
    history: &History<'_>,
    shop: &str,
    since: Duration,
    zone: &TimeZone,
) -> Result<Report, StoreError> {
    let to = history.now();
    let from = to.checked_sub(since).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut channels = history.by_channel(shop, from, to)?;
    let mut incidents: BTreeMap<String, Vec<Incident>> = BTreeMap::new();
    for i in history.incidents(shop, from, to)? {
        channels.entry(i.channel.clone()).or_default();
        incidents.entry(i.channel.clone()).or_default().push(i);
    }
    let now = crate::alert::engine::secs(to);
    let shown = |i: Incident| IncidentReport {
        started: time(at(i.started_at), zone),
        ended: i.ended_at.map(|e| time(at(e), zone)),
        duration_seconds: (i.ended_at.unwrap_or(now) - i.started_at).max(0.0),
        check: i.check,
        reason_kind: i.reason_kind,
        reason: i.reason,
    };
    let channels = channels
        .into_iter()
        .map(|(channel, sum): (String, Summary)| {
            let of_channel = incidents.remove(&channel).unwrap_or_default();
            let merged: Vec<IncidentReport> =
                outages(of_channel.clone()).into_iter().map(shown).collect();
            ChannelReport {
                uptime: sum.uptime(),
                runs: sum.runs,
                failures: sum.failures,
                latency_p50_seconds: sum.p50(),
                latency_p95_seconds: sum.p95(),
                latency_max_seconds: sum.latency.max(),
                incidents: of_channel.into_iter().map(shown).collect(),
                outages: merged.len() as u64,
                outage_list: merged,
                traffic: sum.traffic,
                target_seconds: None,
                target_met: None,
                channel,
            }
        })
        .collect();
    Ok(Report {
        shop: shop.to_string(),
        timezone: zone.iana_name().unwrap_or("UTC").to_string(),
        from: time(from, zone),
        to: time(to, zone),
        channels,
    })
}

/// Seconds as people read them: `850 ms`, `41 s`, `12 min`, `2.5 h`.
fn human(secs: Option<f64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1e3),
        Some(s) if s < 120.0 => format!("{s:.1} s"),
        Some(s) if s < 7200.0 => format!("{:.0} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

/// The report as text: a table of channels, then the incidents.
pub fn text(report: &Report) -> String {
    let mut out = format!(
        "{} from {} to {} ({})\n\n",
        report.shop, report.from, report.to, report.timezone
    );
    if report.channels.is_empty() {
        out.push_str("no runs recorded in this range\n");
        return out;
    }
    let targets = report.channels.iter().any(|c| c.target_seconds.is_some());
    let mut head = [
        "channel", "uptime", "runs", "failures", "median", "p95", "traffic",
    ]
    .map(String::from)
    .to_vec();
    if targets {
        head.insert(6, "target".into());
    }
    let mut rows = vec![head];
    for c in &report.channels {
        let traffic: Vec<String> = c.traffic.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let target = match (c.target_seconds, c.target_met) {
            (None, _) => "-".to_string(),
            (Some(t), None) => human(Some(t)),
            (Some(t), Some(true)) => format!("{} met", human(Some(t))),
            (Some(t), Some(false)) => format!("{} NOT met", human(Some(t))),
        };
        let mut row = vec![
            c.channel.clone(),
            c.uptime
                .map_or("-".into(), |u| format!("{:.2} %", u * 100.0)),
            c.runs.to_string(),
            c.failures.to_string(),
            human(c.latency_p50_seconds),
            human(c.latency_p95_seconds),
            traffic.join(", "),
        ];
        if targets {
            row.insert(6, target);
        }
        rows.push(row);
    }
    out.push_str(&crate::report::table(&rows));
    let incidents: Vec<(&str, &IncidentReport)> = report
        .channels
        .iter()
        .flat_map(|c| c.incidents.iter().map(move |i| (c.channel.as_str(), i)))
        .collect();
    let _ = writeln!(out, "\nincidents: {}", incidents.len());
    for (channel, i) in incidents {
        let _ = writeln!(
            out,
            "  {channel} ({}): {} to {} ({}), {}: {}",
            i.check,
            i.started,
            i.ended.as_deref().unwrap_or("ongoing"),
            human(Some(i.duration_seconds)),
            i.reason_kind,
            i.reason
        );
    }
    out
}
