//! The browser pool's metric families.
//!
//! Separate from the per-check store because they come from elsewhere: process-wide counters in
//! `browser`, read at scrape time, one unlabelled series each.

use super::PREFIX;
use super::labels::{Value, metric};
use prometheus::proto::{MetricFamily, MetricType};

/// (name without prefix, help, type) of the browser pool's metrics.
pub const BROWSER_METRICS: &[(&str, &str, MetricType)] = &[
    (
        "browser_sessions_active",
        "Browser sessions open now.",
        MetricType::GAUGE,
    ),
    (
        "browser_sessions_waiting",
        "Browser runs waiting for a free session slot (browser.max_sessions).",
        MetricType::GAUGE,
    ),
    (
        "browser_driver_restarts_total",
        "chromedriver processes replaced because they died or stopped answering.",
        MetricType::COUNTER,
    ),
    (
        "browser_artifacts_written_total",
        "Failure evidence sets (screenshot and/or page source) written.",
        MetricType::COUNTER,
    ),
];

/// The browser pool's numbers are process-wide statics in `browser` (a reload replaces the pool
/// while old runs finish), so they are read at scrape time rather than registered.
pub(super) fn browser_families(stats: crate::browser::PoolStats) -> Vec<MetricFamily> {
    let values = [
        Value::Gauge(stats.sessions_active as f64),
        Value::Gauge(stats.sessions_waiting as f64),
        Value::Counter(stats.driver_restarts as f64),
        Value::Counter(stats.artifacts_written as f64),
    ];
    BROWSER_METRICS
        .iter()
        .zip(values)
        .map(|((name, help, kind), value)| {
            let mut family = MetricFamily::default();
            family.set_name(format!("{PREFIX}{name}"));
            family.set_help((*help).to_string());
            family.set_field_type(*kind);
            family.set_metric(vec![metric(&[], &[], value)]);
            family
        })
        .collect()
}

/// (name without prefix, help, type) of the registered SIP lines' metrics, one series per
/// account with `register: true` (label `phone`).
pub const SIP_LINE_METRICS: &[(&str, &str, MetricType)] = &[
    (
        "sip_registration_up",
        "1 when the account's SIP line is registered, 0 while it is not.",
        MetricType::GAUGE,
    ),
    (
        "sip_registration_failures_total",
        "Failed registrations and lost SIP lines, per account.",
        MetricType::COUNTER,
    ),
    (
        "sip_unexpected_calls_total",
        "Calls that reached a registered line while no callback check waited (refused with 480).",
        MetricType::COUNTER,
    ),
];

/// The lines live in the daemon's `sip::line::Lines` (outliving a
/// reload's metrics), so they are read at scrape time like the browser pool.
pub(super) fn sip_line_families(
    lines: &[(String, crate::sip::line::LineStats)],
) -> Vec<MetricFamily> {
    SIP_LINE_METRICS
        .iter()
        .enumerate()
        .filter(|_| !lines.is_empty())
        .map(|(i, (name, help, kind))| {
            let mut family = MetricFamily::default();
            family.set_name(format!("{PREFIX}{name}"));
            family.set_help((*help).to_string());
            family.set_field_type(*kind);
            let series = lines
                .iter()
                .map(|(phone, stats)| {
                    let value = match i {
                        0 => Value::Gauge(if stats.up { 1.0 } else { 0.0 }),
                        1 => Value::Counter(stats.failures as f64),
                        _ => Value::Counter(stats.unexpected_calls as f64),
                    };
                    metric(&[], &[("phone", phone.as_str())], value)
                })
                .collect();
            family.set_metric(series);
            family
        })
        .collect()
}
