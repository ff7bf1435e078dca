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

use super::steps::{Action, Css, ElementState, FrameTarget, Step};
use crate::browser::{Browser, Session};
use crate::config::{Dur, TemplateVars};
use crate::probe::{FailureKind, Outcome, RunContext};
use fantoccini::Locator;
use fantoccini::elements::Element;
use fantoccini::error::{CmdError, ErrorStatus};
use std::time::{Duration, Instant, SystemTime};

/// How often a waiting step looks again.
const POLL: Duration = Duration::from_millis(100);
/// Extra time a step's WebDriver commands get past its timeout before the step is abandoned:
/// page loads end at the timeout on chromedriver's side, and their answer must still arrive.
const GRACE: Duration = Duration::from_secs(5);
/// Longest a console message or a text quoted in a failure may be.
const QUOTE: usize = 200;
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

/// Why a step failed.
struct StepError {
    kind: FailureKind,
    message: String,
    /// The browser or chromedriver was lost: the session is not to be reused.
    lost: bool,
    /// The WebDriver error behind it, for the pool to judge whether the browser died.
    cause: Option<CmdError>,
}

impl StepError {
    fn expectation(message: impl Into<String>) -> Self {
        StepError {
            kind: FailureKind::Expectation,
            message: message.into(),
            lost: false,
            cause: None,
        }
    }
}

/// Runs `plan` in a fresh session and closes it, whatever happens.
pub(crate) async fn drive(browser: &Browser, ctx: &RunContext, plan: &Plan) -> Driven {
    let mut submitted_at = SystemTime::now();
    // Waiting for a pool slot and starting chromium can take seconds: time it as its own phase.
    ctx.begin("session");
    let session = browser.session().await;
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
                .push(format!("page {}", crate::probe::form::shown(&url)));
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

async fn run_step(
    session: &Session,
    action: &Action,
    timeout: Duration,
    vars: &TemplateVars<'_>,
) -> Result<(), StepError> {
    let client = &session.client;
    match action {
        Action::Open(url) => {
            let timeouts = fantoccini::wd::TimeoutConfiguration::new(
                None,
                Some(timeout),
                Some(Duration::ZERO),
            );
            client.update_timeouts(timeouts).await.map_err(classify)?;
            client
                .goto(&url.render(vars))
                .await
                .map_err(|e| load_error(e, timeout))
        }
        Action::Click(css) => {
            poll(timeout, move || async move {
                let el = match displayed(client, css).await? {
                    Ok(el) => el,
                    Err(seen) => return Ok(Err(seen)),
                };
                match el.click().await {
                    Ok(()) => Ok(Ok(())),
                    Err(e) if retryable(&e) => Ok(Err(Seen::new(format!(
                        "could not be clicked ({})",
                        first_line(&e)
                    )))),
                    Err(e) => Err(classify(e)),
                }
            })
            .await
        }
        Action::Fill { selector, text } => {
            let text = &text.render(vars);
            poll(timeout, move || async move {
                let el = match displayed(client, selector).await? {
                    Ok(el) => el,
                    Err(seen) => return Ok(Err(seen)),
                };
                match async {
                    el.clear().await?;
                    el.send_keys(text).await
                }
                .await
                {
                    Ok(()) => Ok(Ok(())),
                    Err(e) if retryable(&e) => Ok(Err(Seen::new(format!(
                        "could not be typed into ({})",
                        first_line(&e)
                    )))),
                    Err(e) => Err(classify(e)),
                }
            })
            .await
        }
        Action::Select { selector, value } => {
            poll(timeout, move || async move {
                let el = match present(client, selector).await? {
                    Ok(el) => el,
                    Err(seen) => return Ok(Err(seen)),
                };
                match el.select_by_value(value).await {
                    Ok(()) => Ok(Ok(())),
                    Err(e) if e.is_no_such_element() => {
                        Ok(Err(Seen::new(format!("has no <option value=\"{value}\">"))))
                    }
                    Err(e) if retryable(&e) => Ok(Err(Seen::new(format!(
                        "could not be selected ({})",
                        first_line(&e)
                    )))),
                    Err(e) => Err(classify(e)),
                }
            })
            .await
        }
        Action::Check(css) => {
            poll(timeout, move || async move {
                let el = match present(client, css).await? {
                    Ok(el) => el,
                    Err(seen) => return Ok(Err(seen)),
                };
                if el.is_selected().await.map_err(classify)? {
                    return Ok(Ok(()));
                }
                // Styled checkboxes hide the input behind a label: tick those as a script would.
                let clicked = if el.is_displayed().await.map_err(classify)? {
                    el.click().await
                } else {
                    script(client, "arguments[0].click();", &el).await.map(drop)
                };
                match clicked {
                    Ok(()) if el.is_selected().await.map_err(classify)? => Ok(Ok(())),
                    Ok(()) => Ok(Err(Seen::new("is still not ticked"))),
                    Err(e) if retryable(&e) => Ok(Err(Seen::new(format!(
                        "could not be ticked ({})",
                        first_line(&e)
                    )))),
                    Err(e) => Err(classify(e)),
                }
            })
            .await
        }
        Action::ScrollTo(css) => {
            poll(timeout, move || async move {
                let el = match present(client, css).await? {
                    Ok(el) => el,
                    Err(seen) => return Ok(Err(seen)),
                };
                let js = "arguments[0].scrollIntoView({block: 'center', inline: 'center'});";
                script(client, js, &el).await.map_err(classify)?;
                Ok(Ok(()))
            })
            .await
        }
        Action::WaitFor { selector, state } => {
            poll(timeout, move || async move {
                match state {
                    ElementState::Present => Ok(present(client, selector).await?.map(drop)),
                    ElementState::Visible => Ok(displayed(client, selector).await?.map(drop)),
                    ElementState::Gone => match present(client, selector).await? {
                        Err(_) => Ok(Ok(())),
                        Ok(el) => match el.is_displayed().await {
                            Ok(false) => Ok(Ok(())),
                            Ok(true) => Ok(Err(Seen::new("still visible"))),
                            Err(e) if retryable(&e) => Ok(Ok(())),
                            Err(e) => Err(classify(e)),
                        },
                    },
                }
            })
            .await
        }
        Action::Frame(FrameTarget::Parent) => client.enter_parent_frame().await.map_err(classify),
        Action::Frame(FrameTarget::Element(css)) => {
            poll(timeout, move || async move {
                let el = match present(client, css).await? {
                    Ok(el) => el,
                    Err(seen) => return Ok(Err(seen)),
                };
                match el.enter_frame().await {
                    Ok(()) => Ok(Ok(())),
                    Err(e) if retryable(&e) || is(&e, ErrorStatus::NoSuchFrame) => {
                        Ok(Err(Seen::new("is not a frame that can be entered")))
                    }
                    Err(e) => Err(classify(e)),
                }
            })
            .await
        }
        Action::ExpectText { selector, pattern } => {
            poll(timeout, move || async move {
                let el = match present(client, selector).await? {
                    Ok(el) => el,
                    Err(seen) => return Ok(Err(seen)),
                };
                let text = match el.text().await {
                    Ok(text) => text,
                    Err(e) if retryable(&e) => return Ok(Err(Seen::new("not on the page"))),
                    Err(e) => return Err(classify(e)),
                };
                if pattern.is_match(&text) {
                    Ok(Ok(()))
                } else {
                    Ok(Err(Seen {
                        what: format!("text does not match /{}/", pattern.as_str()),
                        tail: format!("; it read \"{}\"", quote(&text, QUOTE)),
                    }))
                }
            })
            .await
        }
        Action::Sleep(d) => {
            tokio::time::sleep(d.get()).await;
            Ok(())
        }
    }
}

/// Why a waiting step is not done yet: `{what} after 15s{tail}` once its time is up.
struct Seen {
    what: String,
    tail: String,
}

impl Seen {
    fn new(what: impl Into<String>) -> Self {
        Seen {
            what: what.into(),
            tail: String::new(),
        }
    }
}

/// Tries `attempt` every [`POLL`] until it is done or `timeout` has passed. `attempt` answers
/// `Ok(Ok(x))` when done, `Ok(Err(seen))` to try again, `Err` to give up at once.
async fn poll<T, Fut>(timeout: Duration, mut attempt: impl FnMut() -> Fut) -> Result<T, StepError>
where
    Fut: Future<Output = Result<Result<T, Seen>, StepError>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match attempt().await? {
            Ok(done) => return Ok(done),
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            return Err(StepError::expectation(format!(
                "{} after {}{}",
                seen.what,
                Dur(timeout),
                seen.tail
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The first element matching `css`, or "not on the page".
async fn present(
    client: &fantoccini::Client,
    css: &Css,
) -> Result<Result<Element, Seen>, StepError> {
    match client.find(Locator::Css(css.as_str())).await {
        Ok(el) => Ok(Ok(el)),
        Err(e) if retryable(&e) => Ok(Err(Seen::new("not on the page"))),
        Err(e) => Err(classify(e)),
    }
}

/// The first element matching `css` if it is displayed, or what it is instead.
async fn displayed(
    client: &fantoccini::Client,
    css: &Css,
) -> Result<Result<Element, Seen>, StepError> {
    let el = match present(client, css).await? {
        Ok(el) => el,
        Err(seen) => return Ok(Err(seen)),
    };
    match el.is_displayed().await {
        Ok(true) => Ok(Ok(el)),
        Ok(false) => Ok(Err(Seen::new("not visible"))),
        Err(e) if retryable(&e) => Ok(Err(Seen::new("not on the page"))),
        Err(e) => Err(classify(e)),
    }
}

async fn script(
    client: &fantoccini::Client,
    js: &str,
    el: &Element,
) -> Result<serde_json::Value, CmdError> {
    let arg = serde_json::to_value(el).map_err(CmdError::Json)?;
    client.execute(js, vec![arg]).await
}

fn is(e: &CmdError, status: ErrorStatus) -> bool {
    matches!(e, CmdError::Standard(w) if w.error == status)
}

/// Errors that a page still rendering or animating causes, worth another look.
fn retryable(e: &CmdError) -> bool {
    [
        ErrorStatus::NoSuchElement,
        ErrorStatus::StaleElementReference,
        ErrorStatus::ElementClickIntercepted,
        ErrorStatus::ElementNotInteractable,
        ErrorStatus::InvalidElementState,
    ]
    .into_iter()
    .any(|s| is(e, s))
}

/// A failed `goto`: the page's network error classified like the `http` kind's.
fn load_error(e: CmdError, timeout: Duration) -> StepError {
    if is(&e, ErrorStatus::Timeout) {
        return StepError::expectation(format!(
            "the page did not finish loading within {}",
            Dur(timeout)
        ));
    }
    let line = first_line(&e);
    let Some(at) = line.find("net::ERR_") else {
        return classify(e);
    };
    let code = line[at..]
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap_or("");
    let kind = if code.contains("NAME_NOT_RESOLVED") {
        FailureKind::Dns
    } else if code.contains("CERT") || code.contains("SSL") {
        FailureKind::Tls
    } else {
        FailureKind::Connect
    };
    StepError {
        kind,
        message: format!("the page did not load: {code}"),
        lost: false,
        cause: None,
    }
}

/// A WebDriver error that no step expects.
fn classify(e: CmdError) -> StepError {
    let lost = match &e {
        CmdError::Standard(w) => {
            let m = w.message.to_lowercase();
            matches!(
                w.error,
                ErrorStatus::InvalidSessionId | ErrorStatus::SessionNotCreated
            ) || m.contains("not reachable")
                || m.contains("disconnected")
                || m.contains("session deleted")
                || m.contains("tab crashed")
        }
        CmdError::Lost(_)
        | CmdError::Failed(_)
        | CmdError::FailedC(_)
        | CmdError::NotJson(_)
        | CmdError::Json(_)
        | CmdError::NotW3C(_) => true,
        _ => false,
    };
    let mut error = if lost {
        StepError {
            kind: FailureKind::Internal,
            message: format!("the browser was lost: {}", first_line(&e)),
            lost: true,
            cause: None,
        }
    } else if is(&e, ErrorStatus::UnexpectedAlertOpen) {
        StepError::expectation(format!("the page opened a dialog: {}", first_line(&e)))
    } else {
        StepError::expectation(first_line(&e))
    };
    error.cause = Some(e);
    error
}

/// The first line of a WebDriver error (chromedriver appends session info and a stack trace).
fn first_line(e: &CmdError) -> String {
    let text = match e {
        CmdError::Standard(w) => w.message.to_string(),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or("").trim().to_string()
}

/// At most `max` characters of `text`, whitespace runs collapsed, `…` when cut.
fn quote(text: &str, max: usize) -> String {
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
