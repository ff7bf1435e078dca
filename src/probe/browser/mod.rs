//! `browser` checks: ordered WebDriver steps in headless chromium, for JavaScript-rendered forms
//! and widgets that a plain HTTP client cannot use.
//!
//! The steps (`steps.rs`) are checked when the config loads; running them (`drive.rs`) is shared
//! with `form` checks that say `via: browser`. Each step is a phase named `<number>_<action>`
//! (`1_open`, `2_click`), so a run that timed out says which step it hung in. A failed run keeps
//! a screenshot and the page's HTML under `browser.artifacts.dir`, and lists their paths in its
//! details.
//!
//! With `deliver`, the delivery deadline counts from the start of the last `click` step (the one
//! that sends the message), or of the last `open` when there is no click.

mod actions;
mod drive;
pub mod steps;

pub(crate) use drive::{Plan, drive};

use super::{Probe, Shared};
use crate::deliver::{DeliverSpec, Mailboxes};
use crate::outcome::{Outcome, RunContext};
use crate::value::{Dur, TemplateVars, Text};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::sync::Arc;
use steps::{Action, Step, Steps};

/// A `browser` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserSpec {
    /// The steps, in order; the first is an `open`.
    pub steps: Steps,
    /// Timeout of a step that sets none (default 10s).
    #[serde(default = "default_step_timeout")]
    pub step_timeout: Dur,
    /// Fail the run when the page logs a JavaScript error (default false: errors are listed in
    /// the details only).
    #[serde(default)]
    pub fail_on_console_error: bool,
    /// Where the submitted message must arrive.
    pub deliver: Option<DeliverSpec>,
    /// PEM file with CA(s) that this check's chromium trusts besides its own roots; `${ENV}`
    /// allowed.
    pub ca_file: Option<Text>,
}

/// The default `step_timeout`.
pub(crate) fn default_step_timeout() -> Dur {
    Dur::secs(10)
}

/// Checks a spec at load time (the steps themselves were checked while parsing).
pub fn validate(spec: &BrowserSpec) -> Result<(), String> {
    check_step_timeout(spec.step_timeout)?;
    check_steps(&spec.steps.0, spec.deliver.is_some(), "steps")
}

/// A zero `step_timeout` would fail every waiting step at once.
pub(crate) fn check_step_timeout(d: Dur) -> Result<(), String> {
    if d.get().is_zero() {
        return Err("step_timeout must be longer than 0s".into());
    }
    Ok(())
}

/// Checks what a list of steps needs as a whole: an `open` first, and the run's token in what
/// is typed when a delivery must be proven. `what` names the list in messages.
pub(crate) fn check_steps(steps: &[Step], deliver: bool, what: &str) -> Result<(), String> {
    match steps.first().map(|s| &s.action) {
        None => {
            return Err(format!(
                "{what} is empty: start with `- open: \"https://shop.example/\"`"
            ));
        }
        Some(Action::Open(_)) => {}
        Some(first) => {
            return Err(format!(
                "{what} must start with `open` (step 1 is `{}`): add `- open: URL` first",
                first.name()
            ));
        }
    }
    if deliver && !steps.iter().any(|s| s.action.uses_token()) {
        return Err(
            "deliver needs the run's token in what the steps type: put {{token}} in a fill step, e.g. fill: { selector: \"#message\", text: \"Automated test {{token}}, please ignore\" }".into(),
        );
    }
    Ok(())
}

/// The plan of a kind that opens a page and then runs the user's steps (`form` and `chat` with
/// `via: browser`): an `open` of `url` first unless the steps start with one, the steps, then the
/// kind's own closing steps (`last`: the acknowledgement or reply to wait for), all checked.
pub(crate) fn plan_after_url(
    url: &crate::value::Text,
    written: &[Step],
    last: Vec<Step>,
    deliver: bool,
    step_timeout: Option<Dur>,
    fail_on_console_error: bool,
) -> Result<Plan, String> {
    let mut steps = Vec::with_capacity(written.len() + 1 + last.len());
    if !matches!(written.first().map(|s| &s.action), Some(Action::Open(_))) {
        steps.push(Step {
            action: Action::Open(crate::value::Template::parse(url.clone())?),
            timeout: None,
        });
    }
    steps.extend(written.iter().cloned());
    steps.extend(last);
    check_steps(&steps, deliver, "steps")?;
    let step_timeout = step_timeout.unwrap_or_else(default_step_timeout);
    check_step_timeout(step_timeout)?;
    Ok(Plan {
        steps,
        step_timeout: step_timeout.get(),
        fail_on_console_error,
        session: crate::browser::SessionOptions::default(),
    })
}

/// A check's trust and host overrides for its sessions: the CAs of its `ca_file` (read now, so
/// a bad file is a config error) and its `resolve:`.
pub(crate) fn session_options(
    ca_file: Option<&Text>,
    resolve: &crate::net::Resolve,
    browser: &crate::browser::Browser,
) -> Result<crate::browser::SessionOptions, String> {
    if ca_file.is_some() && browser.config().webdriver_url.is_some() {
        return Err(crate::browser::REMOTE_CA_FILE.into());
    }
    let ca_file = ca_file.map(|t| std::path::PathBuf::from(t.expose()));
    crate::browser::SessionOptions::new(ca_file.as_deref(), resolve)
}

/// The first field of `fields` (name, is set, what to do instead) that is set: the fields a
/// `via: browser` check refuses because they mean nothing in a browser.
pub(crate) fn first_set<'a>(fields: &[(&'a str, bool, &'a str)]) -> Option<(&'a str, &'a str)> {
    fields
        .iter()
        .find(|(_, set, _)| *set)
        .map(|(field, _, hint)| (*field, *hint))
}

/// What `list` shows.
pub fn summary(spec: &BrowserSpec) -> String {
    let first = match spec.steps.0.first().map(|s| &s.action) {
        Some(Action::Open(url)) => format!(" from {url}"),
        _ => String::new(),
    };
    format!("browser, {} steps{first}", spec.steps.0.len())
}

/// The host of the first `open` step (for the per-host limit), rendered with sample values: a
/// `{{token}}` can only sit in the path or query, never change the host.
pub(crate) fn first_host(steps: &[Step]) -> Vec<String> {
    let vars = TemplateVars {
        token: "t",
        check: "c",
        now: "n",
    };
    steps
        .iter()
        .find_map(|s| match &s.action {
            Action::Open(url) => url::Url::parse(&url.render(&vars))
                .ok()
                .filter(|u| u.host_str().is_some())
                .map(|u| crate::net::url_endpoint(&u)),
            _ => None,
        })
        .into_iter()
        .collect()
}

/// The probe.
pub struct BrowserProbe {
    browser: Arc<crate::browser::Browser>,
    plan: Plan,
    hosts: Vec<String>,
    deliver: Option<DeliverSpec>,
    mailboxes: Mailboxes,
}

impl BrowserProbe {
    /// Builds the probe; reads `ca_file`.
    pub fn build(
        spec: &BrowserSpec,
        resolve: &crate::net::Resolve,
        shared: &Shared,
    ) -> Result<Self, String> {
        shared.mailboxes.check(spec.deliver.as_ref(), None)?;
        validate(spec)?;
        let browser = shared.browser.clone().ok_or("no browser configured")?;
        let session = session_options(spec.ca_file.as_ref(), resolve, &browser)?;
        Ok(BrowserProbe {
            browser,
            plan: Plan {
                steps: spec.steps.0.clone(),
                step_timeout: spec.step_timeout.get(),
                fail_on_console_error: spec.fail_on_console_error,
                session,
            },
            hosts: first_host(&spec.steps.0),
            deliver: spec.deliver.clone(),
            mailboxes: shared.mailboxes.clone(),
        })
    }
}

impl Probe for BrowserProbe {
    fn hosts(&self) -> Vec<String> {
        self.hosts.clone()
    }
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
        Box::pin(run_plan(
            &self.browser,
            ctx,
            &self.plan,
            self.deliver.as_ref(),
            &self.mailboxes,
        ))
    }
}

/// Runs `plan` and, when every step passed, hands the delivery to the run's second stage.
pub(crate) async fn run_plan(
    browser: &crate::browser::Browser,
    ctx: &RunContext,
    plan: &Plan,
    deliver: Option<&DeliverSpec>,
    mailboxes: &Mailboxes,
) -> Outcome {
    let driven = drive(browser, ctx, plan).await;
    let mut outcome = driven.outcome;
    if outcome.passed() {
        outcome.follow_up =
            crate::deliver::follow_up(ctx, driven.submitted_at, deliver, None, mailboxes, None);
    }
    outcome
}
