//! Running a check once: attempts under `timeout`, `retries` with `retry_delay`, one report.
//!
//! Both the scheduler and `supportwatch check` go through [`execute`], so what a user sees when
//! writing a check is exactly what the daemon will do.

use crate::config::{Check, Config, ConfigError, ConfigErrors};
use crate::probe::{
    self, Failure, FailureKind, Observation, Outcome, PhaseTiming, Probe, RunContext,
};
use futures::FutureExt;
use serde::Serialize;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A check with its probe built: ready to run.
pub struct PreparedCheck {
    /// The check's config.
    pub check: Check,
    /// Its probe.
    pub probe: Arc<dyn Probe>,
    /// Hosts it contacts (for the per-host limit), sorted and deduplicated.
    pub hosts: Vec<String>,
    name: Arc<str>,
}

impl PreparedCheck {
    /// A check with its probe (normally made by [`prepare`]).
    pub fn new(check: Check, probe: Arc<dyn Probe>) -> Self {
        let mut hosts = probe.hosts();
        hosts.sort();
        hosts.dedup();
        PreparedCheck {
            name: Arc::from(check.name.as_str()),
            check,
            probe,
            hosts,
        }
    }

    /// The check's name as a shared string.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }
}

/// A validated config with every probe built.
pub struct Prepared {
    /// The config.
    pub config: Config,
    /// One entry per check, in config order.
    pub checks: Vec<Arc<PreparedCheck>>,
    /// Every notifier, built.
    pub notifiers: std::collections::BTreeMap<String, crate::alert::service::NotifierEntry>,
    /// Things that work but probably are not what the user wants (`validate` prints them).
    pub warnings: Vec<String>,
}

/// Builds every probe; problems (an unreadable `ca_file`, ...) are collected with their location.
///
/// The checks move from `config.checks` into [`Prepared::checks`], so each is held once.
pub fn prepare(config: Config) -> Result<Prepared, ConfigErrors> {
    let hooks = Arc::new(crate::hooks::Hooks::default());
    hooks.configure(&config.hooks);
    prepare_with(config, hooks)
}

/// [`prepare`], with `deliver: { webhook: … }` waiting on `hooks`: the registry the daemon's web
/// server feeds. (Plain `prepare` gives the checks a private registry nothing feeds, which is
/// right for `validate` and `list`.)
pub fn prepare_with(
    mut config: Config,
    hooks: Arc<crate::hooks::Hooks>,
) -> Result<Prepared, ConfigErrors> {
    crate::tlsconf::install_crypto_provider();
    let mut errors = Vec::new();
    let mailboxes = crate::deliver::Mailboxes::build(&config.mailboxes)
        .unwrap_or_else(|messages| {
            errors.extend(messages.into_iter().map(|message| ConfigError {
                file: None,
                position: None,
                check: None,
                message,
            }));
            crate::deliver::Mailboxes::default()
        })
        .with_hooks(hooks);
    let shared = probe::Shared {
        mailboxes,
        browser: Some(Arc::new(crate::browser::Browser::new(
            config.browser.clone(),
        ))),
        ..probe::Shared::default()
    };
    let warnings = crate::alert::routes::warnings(&config);
    let notifiers = crate::alert::service::build_notifiers(&config).unwrap_or_else(|messages| {
        errors.extend(messages.into_iter().map(|message| ConfigError {
            file: None,
            position: None,
            check: None,
            message,
        }));
        Default::default()
    });
    let mut checks = Vec::with_capacity(config.checks.len());
    for check in std::mem::take(&mut config.checks) {
        match probe::build(&check.spec, &shared) {
            Ok(probe) => checks.push(Arc::new(PreparedCheck::new(check, probe))),
            Err(message) => errors.push(ConfigError {
                file: Some(check.origin.file.clone()),
                position: Some((check.origin.line, check.origin.column)),
                check: Some(check.name.clone()),
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(Prepared {
            config,
            checks,
            notifiers,
            warnings,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

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
    #[serde(serialize_with = "probe::serialize_opt_secs")]
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

/// A correlation token: `sw-<check>-<unix seconds>-<random>`.
pub fn new_token(check: &str) -> String {
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random: u32 = rand::random();
    format!("sw-{check}-{unix}-{random:08x}")
}

/// A run whose submit stage is over and whose delivery, if any, is still to be awaited.
pub struct Submitted {
    report: RunReport,
    started: Instant,
    follow_up: Option<probe::FollowUp>,
    ctx: Option<RunContext>,
}

impl Submitted {
    /// Whether a delivery stage is still to be awaited.
    pub fn has_follow_up(&self) -> bool {
        self.follow_up.is_some()
    }
}

/// What [`finish`] returns: the finished report, and a watch for a delivery that missed its
/// deadline (the scheduler counts it as late or lost).
pub struct Finished {
    /// The run's report.
    pub report: RunReport,
    /// Resolves when the late watch ends.
    pub late: Option<futures::future::BoxFuture<'static, probe::LateDelivery>>,
}

/// Runs `check` once, delivery included: [`submit`] then [`finish`].
pub async fn execute(check: &PreparedCheck, run_id: u64, lag: Option<Duration>) -> RunReport {
    finish(submit(check, run_id, lag).await).await.report
}

/// The first stage of a run: up to `retries + 1` attempts, each bounded by `timeout`.
///
/// A passing attempt may leave a delivery to wait for; that is not retried (a retry would submit
/// a second message), and it is awaited by [`finish`], outside the scheduler's permits.
pub async fn submit(check: &PreparedCheck, run_id: u64, lag: Option<Duration>) -> Submitted {
    let started = Instant::now();
    let started_at = SystemTime::now();
    let timeout = check.check.timeout.get();
    let mut attempts = 0;
    let (mut outcome, ctx) = loop {
        attempts += 1;
        let ctx = RunContext::new(check.name.clone(), new_token(&check.check.name));
        // The probe's future is dropped on timeout; the context outlives it, so the phases it
        // recorded still say where the attempt was stuck.
        // A panic inside a probe is a bug in supportwatch, but it must cost only this run: the
        // scheduler's bookkeeping (permits, "running" flag) lives outside this future.
        let attempt = AssertUnwindSafe(check.probe.run(&ctx)).catch_unwind();
        let outcome = match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(panic)) => {
                let what = panic_message(&*panic);
                tracing::error!(check = %check.check.name, panic = %what, "probe panicked");
                Outcome::fail(
                    FailureKind::Internal,
                    format!("internal error in the {} probe: {what}", check.check.kind()),
                )
            }
            Err(_) => {
                let during = ctx
                    .open_phase()
                    .map(|p| format!(" during {p}"))
                    .unwrap_or_default();
                Outcome::fail(
                    FailureKind::Timeout,
                    format!("timed out after {}{during}", check.check.timeout),
                )
            }
        };
        if outcome.passed() || attempts > check.check.retries {
            break (outcome, ctx);
        }
        tracing::debug!(
            check = %check.check.name,
            attempt = attempts,
            reason = outcome.failure.as_ref().map(|f| f.message.as_str()).unwrap_or(""),
            "attempt failed, retrying"
        );
        tokio::time::sleep(check.check.retry_delay.get()).await;
    };
    // A failed submit has nothing to deliver.
    let follow_up = if outcome.passed() {
        outcome.follow_up.take()
    } else {
        None
    };
    let phases = if follow_up.is_some() {
        Vec::new()
    } else {
        ctx.take_phases()
    };
    let report = RunReport {
        check: check.name.clone(),
        kind: check.check.kind().as_str(),
        channel: check.check.channel.as_str(),
        run_id,
        token: ctx.token.clone(),
        started_at,
        lag,
        duration: started.elapsed(),
        attempts,
        result: RunResult::Success,
        phases,
        failure: outcome.failure,
        observations: outcome.observations,
        details: outcome.details,
    };
    Submitted {
        report,
        started,
        ctx: follow_up.is_some().then_some(ctx),
        follow_up,
    }
}

/// The second stage: awaits the delivery, if any, and settles the run's result.
pub async fn finish(submitted: Submitted) -> Finished {
    let Submitted {
        mut report,
        started,
        follow_up,
        ctx,
    } = submitted;
    let mut late = None;
    if let Some(follow_up) = follow_up {
        let stage = AssertUnwindSafe(follow_up.stage).catch_unwind();
        match tokio::time::timeout(follow_up.limit, stage).await {
            Ok(Ok(result)) => {
                let outcome = result.outcome;
                report.failure = outcome.failure;
                report.observations.extend(outcome.observations);
                report.details.extend(outcome.details);
                late = result.late;
            }
            Ok(Err(panic)) => {
                let what = panic_message(&*panic);
                tracing::error!(check = %report.check, panic = %what, "delivery stage panicked");
                report.failure = Some(Failure {
                    kind: FailureKind::Internal,
                    message: format!("internal error while waiting for the delivery: {what}"),
                });
            }
            Err(_) => {
                report.failure = Some(Failure {
                    kind: FailureKind::Timeout,
                    message: format!(
                        "timed out after {} waiting for the delivery",
                        crate::report::short_duration(follow_up.limit)
                    ),
                });
            }
        }
        if let Some(ctx) = ctx {
            report.phases = ctx.take_phases();
        }
        report.duration = started.elapsed();
    }
    report.result = match &report.failure {
        None if report.attempts == 1 => RunResult::Success,
        None => RunResult::RetriedSuccess,
        Some(f) if f.kind == FailureKind::Timeout => RunResult::Timeout,
        Some(_) => RunResult::Failure,
    };
    Finished { report, late }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;

    struct Panicking;

    impl Probe for Panicking {
        fn hosts(&self) -> Vec<String> {
            Vec::new()
        }
        fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
            Box::pin(async move {
                ctx.begin("request");
                panic!("index out of bounds");
            })
        }
    }

    #[tokio::test]
    async fn a_panicking_probe_fails_its_run_with_an_internal_error() {
        let mut config = crate::config::load_sources(&[(
            "t.yaml".into(),
            "checks:\n  - { name: p, kind: http, url: \"http://127.0.0.1:1/\", retries: 0 }\n"
                .into(),
        )])
        .expect("valid config");
        let check = config.checks.remove(0);
        let prepared = PreparedCheck {
            name: Arc::from(check.name.as_str()),
            check,
            probe: Arc::new(Panicking),
            hosts: Vec::new(),
        };
        let report = execute(&prepared, 1, None).await;
        assert_eq!(report.result, RunResult::Failure);
        let failure = report.failure.expect("failed");
        assert_eq!(failure.kind, FailureKind::Internal);
        assert_eq!(
            failure.message,
            "internal error in the http probe: index out of bounds"
        );
    }
}
