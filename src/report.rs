//! Turning run reports into text for people: log lines, demo lines, `check` output.

use crate::outcome::{Observation, RunReport};
use crate::value::short_duration;
use std::fmt::Write;

/// Logs a finished run: failures at `warn`, passes at `debug` (at thousands of checks a minute,
/// passes would drown the failures).
pub fn log(report: &RunReport) {
    // Passes are logged at `debug`, off by default: at thousands of runs a minute, not even the
    // fields of a line nobody reads are worked out.
    if report.failure.is_none() && !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let ms = report.duration.as_secs_f64() * 1e3;
    match &report.failure {
        None => tracing::debug!(
            check = %report.check,
            result = report.result.as_str(),
            duration_ms = format_args!("{ms:.1}"),
            "check passed"
        ),
        Some(f) => tracing::warn!(
            check = %report.check,
            result = report.result.as_str(),
            reason = f.kind.as_str(),
            duration_ms = format_args!("{ms:.1}"),
            "check failed: {}",
            f.message
        ),
    }
}

/// One line per finished run: time, check, channel, verdict, duration, reason.
pub fn line(report: &RunReport) -> String {
    let time = humantime::format_rfc3339_seconds(report.started_at);
    let verdict = match report.result {
        crate::outcome::RunResult::Success => "ok",
        crate::outcome::RunResult::RetriedSuccess => "ok*",
        _ => "FAIL",
    };
    let mut out = format!(
        "{time}  {:<24} {:<14} {verdict:<5} {:>8.1} ms",
        report.check,
        report.channel,
        report.duration.as_secs_f64() * 1e3
    );
    if let Some(f) = &report.failure {
        let _ = write!(out, "  {}", f.message);
    } else {
        if report.attempts > 1 {
            let _ = write!(out, "  passed on attempt {}", report.attempts);
        }
        for o in &report.observations {
            match o {
                Observation::DeliveryLatency(d) => {
                    let _ = write!(out, "  delivered after {}", short_duration(*d));
                }
                Observation::AutoReplyLatency(d) => {
                    let _ = write!(out, "  auto-reply after {}", short_duration(*d));
                }
                // The one-line summary names only delivery times; `check` prints the rest.
                Observation::HttpStatus(_)
                | Observation::BodyTruncated
                | Observation::Cert(_)
                | Observation::ChatFirstResponse(_)
                | Observation::PhoneRing(_)
                | Observation::PhoneAnswer(_)
                | Observation::PhoneAudioLevel(_)
                | Observation::MailboxQuota { .. }
                | Observation::Evidence(_)
                | Observation::SpfLookups { .. } => {}
            }
        }
    }
    out
}

/// The full account of a run for `supportwatch check`: every phase with its duration, the
/// facts found, and the verdict.
pub fn detail(report: &RunReport) -> String {
    let mut out = format!(
        "{} ({}, channel {})\n",
        report.check, report.kind, report.channel
    );
    for p in &report.phases {
        let ms = p.duration.map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0);
        let _ = writeln!(out, "  {:<20} {ms:>9.1} ms", p.name);
    }
    for d in &report.details {
        let _ = writeln!(out, "  · {d}");
    }
    let ms = report.duration.as_secs_f64() * 1e3;
    let attempts = match report.attempts {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    };
    match &report.failure {
        None => {
            let _ = writeln!(
                out,
                "  PASS  {} in {ms:.1} ms ({attempts})",
                report.result.as_str()
            );
        }
        Some(f) => {
            let _ = writeln!(
                out,
                "  FAIL  {} [{}] in {ms:.1} ms ({attempts}): {}",
                report.result.as_str(),
                f.kind.as_str(),
                f.message
            );
        }
    }
    out
}

/// Rows as text columns, each as wide as its longest cell (the last one unpadded), one row per
/// line: `list` lines up whatever names, kinds and channels the config holds.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn columns_line_up_whatever_the_cells_hold() {
        let rows = vec![
            vec![
                "home".into(),
                "http".into(),
                "website".into(),
                "GET https://shop.ru/".into(),
            ],
            vec![
                "callback-request".into(),
                "callback".into(),
                "callback".into(),
                "form".into(),
            ],
            vec![
                "чат".into(),
                "chat".into(),
                "chat".into(),
                "wss://shop.ru/ws".into(),
            ],
        ];
        let text = table(&rows);
        let lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
        assert_eq!(lines.len(), 3, "{text}");
        // "callback-request" is 16 wide and "callback" 8, two spaces between columns.
        for (line, row) in lines.iter().zip(&rows) {
            for (start, cell) in [0, 18, 28, 38].into_iter().zip(row) {
                let at: String = line[start..].iter().take(cell.chars().count()).collect();
                assert_eq!(&at, cell, "{text}");
            }
        }
        assert!(text.lines().all(|l| l == l.trim_end()), "{text}");
    }
}
