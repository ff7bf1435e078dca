//! Running a check once: attempts under `timeout`, `retries` with `retry_delay`, one report.
//!
//! Both the scheduler and `supportwatch check` go through [`execute`], so what a user sees when
//! writing a check is exactly what the daemon will do.

use crate::assemble::PreparedCheck;
use crate::outcome::{
    Failure, FailureKind, FollowUp, LateDelivery, Outcome, RunContext, RunReport, RunResult,
    new_token,
};
use crate::value::redact::Redactor;
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A run whose submit stage is over and whose delivery, if any, is still to be awaited.
pub struct Submitted {
    report: RunReport,
    started: Instant,
    follow_up: Option<FollowUp>,
    ctx: Option<RunContext>,
    redactor: Arc<Redactor>,
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
    pub late: Option<futures::future::BoxFuture<'static, LateDelivery>>,
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
        let ctx = RunContext::new(check.name().clone(), new_token(&check.check.name))
            .with_deadline(std::time::Instant::now() + timeout);
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
        check: check.name().clone(),
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
        redactor: check.redactor.clone(),
    }
}

/// The second stage: awaits the delivery, if any, and settles the run's result.
pub async fn finish(submitted: Submitted) -> Finished {
    let Submitted {
        mut report,
        started,
        follow_up,
        ctx,
        redactor,
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
                        crate::value::short_duration(follow_up.limit)
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
    scrub(&mut report, &redactor);
    Finished { report, late }
}

/// Scrubs the config's secrets from the texts of `report`, which servers may have filled with
/// what they were sent (an IMAP `NO` quoting the password). Every consumer (metrics, logs, the
/// alert store, notifiers, `check` output) reads the report after this, so this is the one place.
fn scrub(report: &mut RunReport, redactor: &Redactor) {
    if let Some(failure) = &mut report.failure {
        redactor.scrub_in_place(&mut failure.message);
    }
    for detail in &mut report.details {
        redactor.scrub_in_place(detail);
    }
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
    use crate::probe::Probe;
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
        let prepared = PreparedCheck::new(check, std::sync::Arc::new(Panicking));
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
