//! Building one exported series: its label pairs and its value, either as a `prometheus` proto
//! metric (the browser families) or as a line of the text exposition (the per-check families,
//! written straight into the scrape's output).

use crate::outcome::CheckIdentity;
use prometheus::proto;

pub(super) enum Value {
    Gauge(f64),
    Counter(f64),
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
    }
    m
}

/// A check's own labels, sorted by name (the order every exported series shows them in).
pub(super) fn base_labels(check: &CheckIdentity<'_>) -> Vec<(String, String)> {
    let mut labels = vec![
        ("check".to_string(), check.name.to_string()),
        ("channel".to_string(), check.channel.as_str().to_string()),
        ("kind".to_string(), check.kind.as_str().to_string()),
    ];
    labels.extend(check.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.sort();
    labels
}

/// Writes `# HELP` and `# TYPE` of a family.
pub(super) fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// Writes one sample line: `base` (sorted) and `extra` (sorted) merged into one sorted label set.
pub(super) fn write_sample(
    out: &mut String,
    name: &str,
    base: &[(String, String)],
    extra: &[(&str, &str)],
    value: f64,
) {
    out.push_str(name);
    let mut base = base
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .peekable();
    let mut extra = extra.iter().copied().peekable();
    let mut first = true;
    loop {
        let next = match (base.peek(), extra.peek()) {
            (Some(b), Some(e)) if e.0 < b.0 => extra.next(),
            (Some(_), _) => base.next(),
            (None, _) => extra.next(),
        };
        let Some((k, v)) = next else { break };
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    write_value(out, value);
    out.push('\n');
}

fn write_value(out: &mut String, v: f64) {
    use std::fmt::Write;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Writing into a String cannot fail.
        let _ = write!(out, "{v}");
    }
}
