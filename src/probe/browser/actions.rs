//! What each step does in the browser, and how WebDriver errors become step failures.
//!
//! Waiting steps poll every 100 ms until their element is ready or their timeout has passed,
//! remembering what they saw last ([`Seen`]) so the failure can say it ("not visible after 15s").
//! Errors a page causes while it is still rendering or animating (element missing, stale,
//! covered, not yet interactable) are worth another look; any other WebDriver error ends the
//! step at once.

use super::drive::{QUOTE, quote};
use super::steps::{Action, Css, ElementState, FrameTarget};
use crate::browser::Session;
use crate::outcome::FailureKind;
use crate::value::{Dur, TemplateVars};
use fantoccini::Locator;
use fantoccini::elements::Element;
use fantoccini::error::{CmdError, ErrorStatus};
use std::time::{Duration, Instant};

/// How often a waiting step looks again.
const POLL: Duration = Duration::from_millis(100);

/// Why a step failed.
pub(super) struct StepError {
    pub kind: FailureKind,
    pub message: String,
    /// The browser or chromedriver was lost: the session is not to be reused.
    pub lost: bool,
    /// The WebDriver error behind it, for the pool to judge whether the browser died.
    pub cause: Option<CmdError>,
}

impl StepError {
    pub(super) fn expectation(message: impl Into<String>) -> Self {
        StepError {
            kind: FailureKind::Expectation,
            message: message.into(),
            lost: false,
            cause: None,
        }
    }
}

/// Does one step; `timeout` bounds its waiting.
pub(super) async fn run_step(
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
                .map_err(|e| load_error(e, timeout))?;
            match client.execute(ERROR_PAGE, Vec::new()).await {
                Ok(serde_json::Value::String(code)) => Err(net_error(&code)),
                Ok(_) => Ok(()),
                Err(e) => Err(classify(e)),
            }
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

/// Tells whether the page that `goto` ended on is chromium's own error page, and which network
/// error it shows: `null` for a real page, else the code (`ERR_CERT_DATE_INVALID`).
///
/// chromedriver reports most failed loads as a failed `goto`, but a certificate error is shown as
/// an interstitial that chromium commits like a page: the `goto` succeeds, and WebDriver's URL is
/// still the one asked for. The document's own URL is not: chromium's error pages, interstitial
/// or not, are `chrome-error://chromewebdata/`, which no site can serve. The code is the page's
/// load-time data (`errorCode`, the interstitial's `net::ERR_…`), else what the page shows in
/// `#error-code` or its text; the text a site could write plays no part in the decision itself.
const ERROR_PAGE: &str = r#"
if (!String(document.URL).startsWith("chrome-error://")) { return null; }
const data = (typeof loadTimeDataRaw === "object" && loadTimeDataRaw) || {};
const shown = document.getElementById("error-code");
const texts = [data.errorCode, shown && shown.textContent, document.body && document.body.innerText];
for (const text of texts) {
  const found = /ERR_[A-Z0-9_]+/.exec(String(text || ""));
  if (found) { return found[0]; }
}
return "an error page without a code";
"#;

/// chromium's error page instead of the page: its network error, classified like a failed
/// `goto`'s.
fn net_error(code: &str) -> StepError {
    let code = match code.strip_prefix("net::") {
        Some(_) => code.to_string(),
        None if code.starts_with("ERR_") => format!("net::{code}"),
        None => code.to_string(),
    };
    let hint = if code == "net::ERR_CERT_AUTHORITY_INVALID" {
        " (the certificate's issuer is not trusted; for a private CA, give it as `ca_file`)"
    } else {
        ""
    };
    StepError {
        kind: net_error_kind(&code),
        message: format!("the page did not load: {code}{hint}"),
        lost: false,
        cause: None,
    }
}

/// The failure kind of a chromium network error code, as the `http` kind would file it.
fn net_error_kind(code: &str) -> FailureKind {
    if code.contains("NAME_NOT_RESOLVED") {
        FailureKind::Dns
    } else if code.contains("CERT") || code.contains("SSL") {
        FailureKind::Tls
    } else {
        FailureKind::Connect
    }
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
    StepError {
        kind: net_error_kind(code),
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
