//! `chat` checks with `via: browser`: the chat widget is used in a real browser. The user's
//! `steps` type and send the message; a last step, added here, waits up to `within` for the
//! element `reply_in` to show text matching the reply regex. Running the steps is the `browser`
//! kind's code.
//!
//! The first response time is that last step's duration: it starts as soon as the sending step
//! has finished and ends when the reply is on the page.

use super::{ChatExpect, ChatSpec};
use crate::outcome::{Observation, Outcome, RunContext};
use crate::probe::Shared;
use crate::probe::browser::steps::{Action, Css, Step};
use crate::probe::browser::{self, Plan};
use crate::value::Pattern;
use std::sync::Arc;

/// Refuses the fields that mean nothing in a browser, and requires what it needs.
pub(super) fn check(spec: &ChatSpec) -> Result<(), String> {
    let http_only = [
        (
            "message",
            spec.message.is_some(),
            "type it with a `fill` step",
        ),
        (
            "script",
            !spec.script.is_empty(),
            "write the turns as steps",
        ),
        (
            "request",
            spec.request.is_some(),
            "the page sends what it sends",
        ),
        (
            "session_at",
            spec.session_at.is_some(),
            "the page keeps its session",
        ),
        (
            "reply_at",
            spec.reply_at.is_some(),
            "name the reply's element with `reply_in`",
        ),
        (
            "poll",
            spec.poll.is_some(),
            "the page shows the reply itself",
        ),
        (
            "headers",
            !spec.headers.is_empty(),
            "the browser sends its own headers",
        ),
        (
            "subprotocol",
            spec.subprotocol.is_some(),
            "the page opens its own sockets",
        ),
        (
            "handshake",
            !spec.handshake.is_empty(),
            "the page opens its own sockets",
        ),
    ];
    if let Some((field, hint)) = browser::first_set(&http_only) {
        return Err(format!("`{field}` is not for via: browser; {hint}"));
    }
    plan(spec, &spec.expect).map(|_| ())
}

fn plan(spec: &ChatSpec, expect: &ChatExpect) -> Result<Plan, String> {
    let Some(written) = &spec.steps else {
        return Err("via: browser needs `steps` that type and send the message, e.g. [ { fill: { selector: \"#chat-input\", text: \"Automated test {{token}}, please ignore\" } }, { click: \"#chat-send\" } ]".into());
    };
    let Some(reply_in) = &spec.reply_in else {
        return Err(
            "via: browser needs `reply_in`: the CSS selector where the bot's reply appears".into(),
        );
    };
    let pattern = match &expect.reply {
        None => Pattern::compile(r"\S")?,
        Some(r) => r.fixed().cloned().ok_or_else(|| {
            format!(
                "`{{{{token}}}}` in the reply regex is not supported with via: browser (`{}`)",
                r.as_str()
            )
        })?,
    };
    let reply = Step {
        action: Action::ExpectText {
            selector: Css::parse(reply_in)?,
            pattern,
        },
        timeout: Some(expect.within),
    };
    browser::plan_after_url(
        &spec.url,
        &written.0,
        vec![reply],
        false,
        spec.step_timeout,
        false,
    )
}

/// The browser pool and both plans, made once at build.
pub(super) struct Browsing {
    browser: Arc<crate::browser::Browser>,
    within: Plan,
    outside: Option<Plan>,
}

impl Browsing {
    /// Builds both plans with the check's trust (`ca_file`, read now) and host overrides.
    pub(super) fn build(
        spec: &ChatSpec,
        resolve: &crate::net::Resolve,
        shared: &Shared,
    ) -> Result<Self, String> {
        let browser = shared.browser.clone().ok_or("no browser configured")?;
        let session = browser::session_options(spec.ca_file.as_ref(), resolve, &browser)?;
        let with_session = |mut plan: Plan| {
            plan.session = session.clone();
            plan
        };
        Ok(Browsing {
            within: with_session(plan(spec, &spec.expect)?),
            outside: spec
                .outside_hours
                .as_ref()
                .map(|o| plan(spec, o).map(with_session))
                .transpose()?,
            browser,
        })
    }

    pub(super) async fn run(&self, ctx: &RunContext, outside_hours: bool) -> Outcome {
        let plan = match (&self.outside, outside_hours) {
            (Some(outside), true) => outside,
            _ => &self.within,
        };
        let driven = browser::drive(&self.browser, ctx, plan).await;
        let mut outcome = driven.outcome;
        let last = format!("{}_expect_text", plan.steps.len());
        // The reply step read nothing at all: the bot is silent, the same `no_reply` as over
        // HTTP and WebSocket. (A wrong text keeps the step's message, which quotes it.)
        let silent = format!("step {} (expect_text", plan.steps.len());
        if let Some(failure) = &mut outcome.failure
            && failure.message.starts_with(&silent)
            && failure.message.ends_with("it read \"\"")
            && let Some(Step {
                timeout: Some(within),
                ..
            }) = plan.steps.last()
        {
            failure.kind = crate::outcome::FailureKind::NoReply;
            failure.message = format!("no reply within {within}");
        }
        if outcome.passed()
            && let Some(first) = ctx.phase_duration(&last)
        {
            outcome
                .observations
                .push(Observation::ChatFirstResponse(first));
            outcome
                .details
                .push(format!("first reply after {} ms", first.as_millis()));
        }
        outcome
    }
}
