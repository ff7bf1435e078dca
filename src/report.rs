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
