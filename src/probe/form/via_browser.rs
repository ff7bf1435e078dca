//! `form` checks with `via: browser`: the form is filled in by steps in a real browser, for forms
//! that a script builds or submits. Running the steps is the `browser` kind's code; this file
//! only turns a form spec into a plan and refuses the fields that only mean something over HTTP.
//!
//! `url` becomes an `open` step in front of the steps (unless they start with one), and is then
//! step 1 in run messages and phases. `expect.body` becomes a last step that waits until the
//! page's text matches, so an acknowledgement a script writes a moment later still counts.

use super::{FormSpec, http};
use crate::deliver::OutsideHoursCall;
use crate::probe::browser::steps::{Action, Css, Step};
use crate::probe::browser::{self, Plan};
use serde::Deserialize;

/// How a `form` check submits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// As a browser without JavaScript would, over HTTP (the default).
    #[default]
    Http,
    /// With `steps` in a real browser.
    Browser,
}

/// Refuses browser-only fields on an HTTP form.
pub(super) fn check_http(spec: &FormSpec) -> Result<(), String> {
    let set = [
        ("steps", spec.steps.is_some()),
        ("step_timeout", spec.step_timeout.is_some()),
        (
            "fail_on_console_error",
            spec.fail_on_console_error.is_some(),
        ),
    ];
    match set.iter().find(|(_, is_set)| *is_set) {
        Some((field, _)) => Err(format!("`{field}` needs `via: browser`")),
        None => Ok(()),
    }
}

/// The plan of a `via: browser` form, or why the spec cannot have one.
pub(super) fn plan(spec: &FormSpec) -> Result<Plan, String> {
    let hint = |field: &str, hint: &str| {
        Err(format!(
            "`{field}` is for via: http; with via: browser, {hint}"
        ))
    };
    let expect = &spec.expect;
    // Hours matter to a browser run only through the delivery: the acknowledgement is one pattern.
    let no_call_outside_hours = spec
        .deliver
        .as_ref()
        .is_some_and(|d| d.call.is_some() && d.outside_hours == OutsideHoursCall::NoCall);
    let checks: [(&str, bool, &str); 15] = [
        (
            "form",
            spec.form != super::default_form(),
            "the steps find the fields themselves",
        ),
        (
            "fields",
            !spec.fields.is_empty(),
            "type into the page with `fill` steps",
        ),
        (
            "files",
            !spec.files.is_empty(),
            "file uploads are not supported",
        ),
        (
            "submit",
            spec.submit.is_some(),
            "press the button with a `click` step",
        ),
        (
            "action",
            spec.action.is_some(),
            "the page's own script decides where the form goes",
        ),
        (
            "headers",
            !spec.headers.is_empty(),
            "the browser sends its own headers",
        ),
        (
            "expect.status",
            expect.status.is_some(),
            "a browser does not show the answer's status; check what the page says with expect.body or `expect_text`",
        ),
        (
            "expect.json",
            !expect.json.is_empty(),
            "check what the page says with expect.body or `expect_text`",
        ),
        (
            "expect.headers",
            !expect.headers.is_empty(),
            "a browser does not show the answer's headers",
        ),
        (
            "expect.body_not",
            expect.body_not.is_some(),
            "check what the page says with `expect_text`",
        ),
        (
            "expect.max_latency",
            expect.max_latency.is_some(),
            "bound each step with its `timeout`",
        ),
        (
            "outside_hours",
            spec.outside_hours.is_some(),
            "accept both acknowledgements in one `expect_text` pattern",
        ),
        (
            "active_hours",
            spec.active_hours.is_some() && !no_call_outside_hours,
            "it only decides `deliver: { call, outside_hours: no_call }`; accept both acknowledgements in one `expect_text` pattern",
        ),
        (
            "max_redirects",
            spec.max_redirects != http::default_max_redirects(),
            "the browser follows redirects itself",
        ),
        (
            "max_body",
            spec.max_body != http::default_max_body(),
            "the browser reads whole pages itself",
        ),
    ];
    if let Some((field, why)) = browser::first_set(&checks) {
        return hint(field, why);
    }
    crate::net::parse_url(&spec.url)?;
    let Some(written) = &spec.steps else {
        return Err(
            "via: browser needs `steps`, e.g. steps: [ { fill: { selector: \"#message\", text: \"Automated test {{token}}, please ignore\" } }, { click: \"#send\" } ]".into(),
        );
    };
    let last = match &expect.body {
        Some(body) => vec![Step {
            action: Action::ExpectText {
                selector: Css::parse("body")?,
                pattern: body.clone(),
            },
            timeout: None,
        }],
        None => Vec::new(),
    };
    browser::plan_after_url(
        &spec.url,
        &written.0,
        last,
        spec.deliver.is_some(),
        spec.step_timeout,
        spec.fail_on_console_error.unwrap_or(false),
    )
}
