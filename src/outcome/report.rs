//! The report of one finished run: what the metrics, the log, alerting and `check` output read.

use super::{Failure, Observation, PhaseTiming, serialize_opt_secs};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How a run ended, the `result` label. A pass that needed a retry is kept apart from a clean
/// pass so that flakiness stays visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    /// Passed on the first attempt.
    Success,
    /// Passed after one or more failed attempts.
    RetriedSuccess,
    /// Every attempt failed.
    Failure,
    /// The last attempt exceeded `timeout`.
    Timeout,
}

impl RunResult {
    /// Every value, so counters can be initialised at zero.
    pub const ALL: [RunResult; 4] = [
        RunResult::Success,
        RunResult::RetriedSuccess,
        RunResult::Failure,
        RunResult::Timeout,
    ];
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::RetriedSuccess => "retried_success",
            RunResult::Failure => "failure",
            RunResult::Timeout => "timeout",
        }
    }
    /// Whether the run passed.
    pub fn passed(self) -> bool {
        matches!(self, RunResult::Success | RunResult::RetriedSuccess)
    }
}

/// Everything known about one finished run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Check name.
    pub check: Arc<str>,
    /// Check kind.
    pub kind: &'static str,
    /// Channel.
    pub channel: &'static str,
    /// Run number within this process.
    pub run_id: u64,
    /// Correlation token of the last attempt.
    pub token: String,
    /// Wall-clock start.
    #[serde(serialize_with = "serialize_time")]
    pub started_at: SystemTime,
    /// How late the run started compared to when it was due (scheduler runs only).
    #[serde(serialize_with = "serialize_opt_secs")]
    pub lag: Option<Duration>,
    /// Total time, all attempts.
    #[serde(serialize_with = "serialize_secs")]
    pub duration: Duration,
    /// Attempts made.
    pub attempts: u32,
    /// How it ended.
    pub result: RunResult,
    /// Phases of the last attempt.
    pub phases: Vec<PhaseTiming>,
    /// Why the last attempt failed.
    #[serde(serialize_with = "serialize_failure")]
    pub failure: Option<Failure>,
    /// Measurements of the last attempt.
    #[serde(skip)]
    pub observations: Vec<Observation>,
    /// Facts for people.
    pub details: Vec<String>,
}

fn serialize_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_millis(*t).to_string())
}
fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
fn serialize_failure<S: serde::Serializer>(f: &Option<Failure>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct F<'a> {
        kind: &'static str,
        message: &'a str,
    }
    match f {
        Some(f) => s.serialize_some(&F {
            kind: f.kind.as_str(),
            message: &f.message,
        }),
        None => s.serialize_none(),
    }
}
