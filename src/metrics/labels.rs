//! Building one exported series: its label pairs and its value as a `prometheus` proto metric.
//!
//! Shared by the per-check families and the browser families, both rendered by hand at scrape
//! time rather than through registered `prometheus` types.

use crate::outcome::CheckIdentity;
use prometheus::proto;

pub(super) enum Value {
    Gauge(f64),
    Counter(f64),
    Histogram(proto::Histogram),
}

pub(super) fn metric(
    base: &[(String, String)],
    extra: &[(&str, &str)],
    value: Value,
) -> proto::Metric {
    let mut labels: Vec<proto::LabelPair> = base
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra.iter().copied())
        .map(|(k, v)| {
            let mut l = proto::LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect();
    labels.sort_by(|a, b| a.name().cmp(b.name()));
    let mut m = proto::Metric::default();
    m.set_label(labels);
    match value {
        Value::Gauge(v) => {
            let mut g = proto::Gauge::default();
            g.set_value(v);
            m.set_gauge(g);
        }
        Value::Counter(v) => {
            let mut c = proto::Counter::default();
            c.set_value(v);
            m.set_counter(c);
        }
        Value::Histogram(h) => m.set_histogram(h),
    }
    m
}

pub(super) fn base_labels(check: &CheckIdentity<'_>) -> Vec<(String, String)> {
    let mut labels = vec![
        ("check".to_string(), check.name.to_string()),
        ("channel".to_string(), check.channel.as_str().to_string()),
        ("kind".to_string(), check.kind.as_str().to_string()),
    ];
    labels.extend(check.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}
