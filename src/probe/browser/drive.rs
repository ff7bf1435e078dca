//! Running steps in a browser session: shared by `browser` checks and `form` checks with
//! `via: browser`.
//!
//! Every step runs under its own timeout and waits by polling (every 100 ms) rather than with
//! WebDriver's implicit wait, so a step knows what it saw last ("not visible", the text it read)
//! and can say so when its time is up. Pages that render late therefore pass as soon as they are
//! ready, and pages that never do fail with the step's number, action and selector.
//!
//! Failure kinds: what the page does or fails to do is `expectation` (an element missing, text
//! not matching, a step's own timeout, a console error); a page that does not load is `connect`,
//! `dns` or `tls` as for the `http` kind. A session that cannot be had (chromedriver missing,
//! chromium not starting) or a browser lost mid-run is `internal`: it is this host's problem,
//! not the shop's, and must not page the shop's owner as if their site were down.

use super::actions::{StepError, run_step};
use super::steps::{Action, Step};
use crate::browser::{Browser, Session};
use crate::outcome::{FailureKind, Outcome, RunContext};
use crate::value::{Dur, TemplateVars};
use std::time::{Duration, SystemTime};

/// Extra time a step's WebDriver commands get past its timeout before the step is abandoned:
/// page loads end at the timeout on chromedriver's side, and their answer must still arrive.
pub(super) const GRACE: Duration = Duration::from_secs(5);
/// Longest a console message or a text quoted in a failure may be.
pub(super) const QUOTE: usize = 200;
/// Console errors listed in the details at most.
const LISTED_ERRORS: usize = 10;

/// Steps and their options, checked at load.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The steps, an `open` first.
    pub steps: Vec<Step>,
    /// Timeout of a step that sets none.
    pub step_timeout: Duration,
    /// Whether a console error fails the run.
    pub fail_on_console_error: bool,
    /// The check's own trust (`ca_file`) and host overrides (`resolve:`).
    pub session: crate::browser::SessionOptions,
}

impl Plan {
    /// The step whose start counts as the moment of submission: the last `click` (what sends a
    /// form or a widget's message), else the last `open` (a token in a URL).
    fn submit_index(&self) -> usize {
        let last = |name: &str| self.steps.iter().rposition(|s| s.action.name() == name);
        last("click").or_else(|| last("open")).unwrap_or(0)
    }
}

/// What a run of the steps found.
pub(crate) struct Driven {
    /// Verdict, details (console errors, evidence paths).
    pub outcome: Outcome,
    /// When the submitting step began ([`Plan::submit_index`]); the delivery deadline counts
    /// from here.
    pub submitted_at: SystemTime,
}

/// Runs `plan` in a fresh session and closes it, whatever happens.
pub(crate) async fn drive(browser: &Browser, ctx: &RunContext, plan: &Plan) -> Driven {
    let mut submitted_at = SystemTime::now();
    // Waiting for a pool slot and starting chromium can take seconds: time it as its own phase.
    ctx.begin("session");
    let session = browser.session_with(&plan.session).await;
    ctx.end();
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            return Driven {
                outcome: Outcome::fail(FailureKind::Internal, e.to_string()),
                submitted_at,
            };
        }
    };
    let now = ctx.now_rfc3339();
    let vars = TemplateVars {
        token: &ctx.token,
        check: &ctx.check,
        now: &now,
    };
    let submit = plan.submit_index();
    let mut failure = None;
    let mut lost = false;
    // A step abandoned because the browser stopped answering: asking it for its console or a
    // screenshot would only wait as long again.
    let mut stuck = false;
    for (i, step) in plan.steps.iter().enumerate() {
        let timeout = match &step.action {
            Action::Sleep(d) => d.get(),
            _ => step.timeout.map(Dur::get).unwrap_or(plan.step_timeout),
        };
        ctx.begin(format!("{}_{}", i + 1, step.action.name()));
        if i == submit {
            submitted_at = SystemTime::now();
        }
        let result = tokio::time::timeout(
            timeout + GRACE,
            run_step(&session, &step.action, timeout, &vars),
        )
        .await
        .unwrap_or_else(|_| {
            stuck = true;
            Err(StepError::expectation(format!(
                "the browser did not answer within {} (a script on the page may be stuck)",
                Dur(timeout + GRACE)
            )))
        });
        ctx.end();
        if let Err(mut e) = result {
            // The pool knows best whether an error means chromium or chromedriver is gone.
            if let Some(died) = e.cause.as_ref().and_then(|c| session.died(c)) {
                e = StepError {
                    kind: FailureKind::Internal,
                    message: died.to_string(),
                    lost: true,
                    cause: None,
                };
            }
            lost = e.lost;
            failure = Some((
                e.kind,
                format!("step {} ({}): {}", i + 1, step.action, e.message),
            ));
            break;
        }
    }

    let mut outcome = Outcome::pass();
    if !lost && !stuck {
        // What follows the steps is bounded too: a page whose script is stuck stalls every
        // command, and the run must still end with its reason and a closed session.
        if let Ok(Ok(url)) = tokio::time::timeout(GRACE, session.client.current_url()).await {
            outcome
                .details
                .push(format!("page {}", crate::value::shown_url(&url)));
        }
        let errors = tokio::time::timeout(GRACE, session.console_errors())
            .await
            .unwrap_or_default();
        for e in errors.iter().take(LISTED_ERRORS) {
            outcome
                .details
                .push(format!("console error: {}", quote(e, QUOTE)));
        }
        if errors.len() > LISTED_ERRORS {
            outcome.details.push(format!(
                "… and {} more console errors",
                errors.len() - LISTED_ERRORS
            ));
        }
        if failure.is_none()
            && plan.fail_on_console_error
            && let Some(first) = errors.first()
        {
            let more = match errors.len() - 1 {
                0 => String::new(),
                n => format!(" (+{n} more)"),
            };
            failure = Some((
                FailureKind::Expectation,
                format!(
                    "JavaScript error on the page: {}{more}",
                    quote(first, QUOTE)
                ),
            ));
        }
    }
    if let Some((kind, message)) = failure {
        outcome.fail_with(kind, message);
        if !lost && !stuck {
            ctx.begin("artifacts");
            let saved =
                tokio::time::timeout(2 * GRACE, session.save_artifacts(&ctx.check, &ctx.token))
                    .await
                    .unwrap_or_else(|_| Err("the browser did not answer".into()));
            ctx.end();
            match saved {
                Ok(a) => {
                    if a.screenshot.is_some() || a.page.is_some() {
                        outcome
                            .observations
                            .push(crate::outcome::Observation::Evidence(a.dir.clone()));
                    }
                    if let Some(path) = a.screenshot {
                        outcome
                            .details
                            .push(format!("screenshot: {}", path.display()));
                    }
                    if let Some(path) = a.page {
                        outcome.details.push(format!("page: {}", path.display()));
                    }
                }
                Err(e) => outcome.details.push(format!("no evidence saved: {e}")),
            }
        } else if stuck {
            outcome
                .details
                .push("no evidence saved: the page did not answer".into());
        }
    }
    if lost || stuck {
        // Have the pool check the driver before it hands out the next session.
        session.mark_broken();
    }
    close(session).await;
    Driven {
        outcome,
        submitted_at,
    }
}

/// Closes the session; a browser that does not answer must not hold the run.
async fn close(session: Session) {
    let _ = tokio::time::timeout(GRACE, session.close()).await;
}

/// At most `max` characters of `text`, whitespace runs collapsed, `…` when cut.
pub(super) fn quote(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_flat_and_bounded() {
        assert_eq!(quote("a\n  b\tc", 10), "a b c");
        assert_eq!(
            quote(&"x".repeat(201), 200),
            format!("{}…", "x".repeat(200))
        );
    }
}
