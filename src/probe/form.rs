//! `form` checks: load a page, fill in its HTML form and submit it as a browser without JavaScript
//! would, check the acknowledgement, and with `deliver`, prove the message arrived.
//!
//! A shop's forgery protection must see an ordinary visitor, so the run carries what the page
//! handed out: hidden inputs (nonces, CSRF tokens), the cookies set while loading it (redirects
//! included), and a `<meta name="csrf-token">` as `X-CSRF-Token`. Each run gets its own cookie
//! jar and so its own HTTP client: a shared jar would mix the sessions of concurrent runs, and
//! forms are checked every few minutes, so building a client per run costs nothing that matters.
//!
//! Phases: `load` (the page), `parse`, `submit` (the form and its answer), then `deliver`.
//! The answer is judged by the same [`HttpExpect`] as the `http` kind.
//!
//! With `via: browser` the form is filled in by `steps` in a real browser instead (forms that a
//! script builds or submits); see `via_browser.rs`. The HTTP run's steps are in `via_http.rs`.

mod data;
mod error;
mod page;
mod via_browser;
mod via_http;

pub use via_browser::Via;

use super::http::{self, HttpExpect};
use super::{Probe, Shared};
use crate::deliver::{DeliverSpec, Mailboxes};
use crate::outcome::{Outcome, RunContext};
use crate::value::ByteSize;
use crate::value::{Dur, Template, Text};
use futures::future::BoxFuture;
use page::Selectors;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A `form` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormSpec {
    /// The page that holds the form; `${ENV}` allowed.
    pub url: Text,
    /// CSS selector of the form (default `form`); the first match is used.
    #[serde(default = "default_form")]
    pub form: String,
    /// Field name → value (templated: `{{token}}`, `{{check}}`, `{{now}}`). Fields not listed
    /// keep what the page gave them.
    #[serde(default)]
    pub fields: BTreeMap<String, Template>,
    /// File input name → file to attach (the form must be `multipart/form-data`).
    #[serde(default)]
    pub files: BTreeMap<String, FileSpec>,
    /// CSS selector of the submit button whose name and value are sent (default: the form's
    /// first submit button, as when Enter is pressed).
    pub submit: Option<String>,
    /// Where to submit instead of the form's `action`, resolved against the page: the REST
    /// endpoint that a script (e.g. Contact Form 7) posts the form to.
    pub action: Option<Text>,
    /// Extra headers on both requests; values may use `${ENV}`.
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    /// What the answer to the submit must look like (as for `http`).
    #[serde(default)]
    pub expect: HttpExpect,
    /// When the channel is staffed; outside these hours `outside_hours` replaces `expect`.
    pub active_hours: Option<crate::hours::ActiveHours>,
    /// The acknowledgement expected outside `active_hours`, e.g. a proposed call-back time
    /// rather than "we will call you in 15 minutes".
    pub outside_hours: Option<HttpExpect>,
    /// Redirects followed at most, per request.
    #[serde(default = "http::default_max_redirects")]
    pub max_redirects: usize,
    /// Bytes read at most of the page and of the answer.
    #[serde(default = "http::default_max_body")]
    pub max_body: ByteSize,
    /// PEM file with the CA(s) to trust instead of the system roots (with `via: browser`:
    /// besides chromium's own, for that check's browser only); `${ENV}` allowed.
    pub ca_file: Option<Text>,
    /// Where the submitted message must arrive.
    pub deliver: Option<DeliverSpec>,
    /// `http` (default) submits over HTTP; `browser` runs `steps` in a real browser.
    #[serde(default)]
    pub via: Via,
    /// With `via: browser`: what to do on the page after opening `url`.
    pub steps: Option<crate::probe::browser::steps::Steps>,
    /// With `via: browser`: timeout of a step that sets none (default 10s).
    pub step_timeout: Option<Dur>,
    /// With `via: browser`: fail the run on a JavaScript error (default false).
    pub fail_on_console_error: Option<bool>,
}

/// A file attached to a file input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// File name as sent.
    pub name: String,
    /// Content (templated).
    pub content: Template,
    /// MIME type (default `application/octet-stream`).
    pub content_type: Option<String>,
}

fn default_form() -> String {
    "form".into()
}

/// Checks a spec at load time: URLs, selectors, headers, MIME types, and that a delivery can be
/// recognised; with `via: browser`, the steps instead of the HTTP-only fields.
pub fn validate(spec: &FormSpec) -> Result<(), String> {
    match spec.via {
        Via::Http => {
            via_browser::check_http(spec)?;
            compile(spec)?;
            check_token(spec)
        }
        Via::Browser => via_browser::plan(spec).map(|_| ()),
    }
}

/// What [`validate`] works out and the probe keeps.
struct Compiled {
    url: url::Url,
    selectors: Selectors,
}

fn compile(spec: &FormSpec) -> Result<Compiled, String> {
    let url = crate::net::parse_url(&spec.url)?;
    let selector = |field: &str, text: &str| {
        scraper::Selector::parse(text)
            .map_err(|e| format!("invalid CSS selector `{text}` in `{field}`: {}", why(&e)))
    };
    let selectors = Selectors {
        form: selector("form", &spec.form)?,
        form_text: spec.form.clone(),
        submit: spec
            .submit
            .as_ref()
            .map(|s| selector("submit", s).map(|sel| (sel, s.clone())))
            .transpose()?,
    };
    if let Some(action) = &spec.action {
        let target = url
            .join(action.expose())
            .map_err(|e| format!("invalid action `{action}`: {e}"))?;
        if !matches!(target.scheme(), "http" | "https") {
            return Err(format!("action `{action}` must be an http(s) URL"));
        }
    }
    crate::net::validate_headers(&spec.headers)?;
    spec.expect.validate()?;
    // In a browser, hours only decide the delivery (`via_browser::plan` says when they may be set).
    match (&spec.active_hours, &spec.outside_hours) {
        (Some(_), None) if spec.via == Via::Http => {
            return Err(
                "`active_hours` needs `outside_hours`: the acknowledgement expected outside them"
                    .into(),
            );
        }
        (None, Some(_)) => {
            return Err("`outside_hours` needs `active_hours`".into());
        }
        (_, Some(outside)) => outside.validate()?,
        (Some(_), None) | (None, None) => {}
    }
    for (name, file) in &spec.files {
        if let Some(ct) = &file.content_type
            && reqwest::multipart::Part::text("").mime_str(ct).is_err()
        {
            return Err(format!(
                "files.{name}.content_type `{ct}` is not a MIME type like text/plain"
            ));
        }
    }
    Ok(Compiled { url, selectors })
}

/// With `deliver`, the run's token must be in what the form sends, or its arrival cannot be told.
fn check_token(spec: &FormSpec) -> Result<(), String> {
    let token_sent = spec.fields.values().any(Template::uses_token)
        || spec.files.values().any(|f| f.content.uses_token());
    if spec.deliver.is_some() && !token_sent {
        return Err(
            "deliver needs the run's token in what the form sends: put {{token}} in a field, e.g. message: \"Automated test {{token}}, please ignore\"".into(),
        );
    }
    Ok(())
}

/// What is wrong with a selector. scraper prints most errors as "Unexpected error occurred.
/// Please report this to the developer" and a debug dump; the dump's variant name says it.
pub(crate) fn why(e: &scraper::error::SelectorErrorKind) -> String {
    let scraper::error::SelectorErrorKind::UnexpectedSelectorParseError(kind) = e else {
        return e.to_string();
    };
    let debug = format!("{kind:?}");
    let (name, rest) = debug.split_once('(').unwrap_or((&debug, ""));
    let mut words = String::new();
    for c in name.chars() {
        if c.is_uppercase() && !words.is_empty() {
            words.push(' ');
        }
        words.push(c.to_ascii_lowercase());
    }
    match rest.strip_suffix(')') {
        Some(detail) => format!("{words} ({detail})"),
        None => words,
    }
}

/// A ready-to-run `form` check.
pub struct FormProbe {
    spec: Arc<FormSpec>,
    url: url::Url,
    /// Shared with the parse task on the blocking pool.
    selectors: Arc<Selectors>,
    /// Loaded once at build, so a run only builds its client around them.
    roots: Arc<rustls::RootCertStore>,
    /// The check's host overrides, applied to each run's client.
    resolve: crate::net::Resolve,
    hosts: Vec<String>,
    mailboxes: Mailboxes,
    /// With `via: browser`: the browser pool and the steps.
    browser: Option<(Arc<crate::browser::Browser>, crate::probe::browser::Plan)>,
}

impl FormProbe {
    /// Builds the probe.
    pub fn build(
        spec: &Arc<FormSpec>,
        resolve: &crate::net::Resolve,
        shared: &Shared,
    ) -> Result<Self, String> {
        shared.mailboxes.check(spec.deliver.as_ref(), None)?;
        validate(spec)?;
        let Compiled { url, selectors } = compile(spec)?;
        let browser = match spec.via {
            Via::Http => None,
            Via::Browser => {
                let browser = shared.browser.clone().ok_or("no browser configured")?;
                let mut plan = via_browser::plan(spec)?;
                plan.session = crate::probe::browser::session_options(
                    spec.ca_file.as_ref(),
                    resolve,
                    &browser,
                )?;
                Some((browser, plan))
            }
        };
        let ca_file = spec
            .ca_file
            .as_ref()
            .map(|t| std::path::PathBuf::from(t.expose()));
        let roots = crate::tlsconf::roots(ca_file.as_deref())?;
        let mut hosts = vec![crate::net::url_endpoint(&url)];
        // An `action` on another host (a form service, a CRM) loads that host as well.
        if let Some(host) = spec
            .action
            .as_ref()
            .and_then(|a| url.join(a.expose()).ok())
            .map(|a| crate::net::url_endpoint(&a))
        {
            hosts.push(host);
        }
        Ok(FormProbe {
            spec: spec.clone(),
            url,
            selectors: Arc::new(selectors),
            roots,
            resolve: resolve.clone(),
            hosts,
            mailboxes: shared.mailboxes.clone(),
            browser,
        })
    }

    async fn attempt(&self, ctx: &RunContext) -> Outcome {
        let spec = &self.spec;
        if let Some((browser, plan)) = &self.browser {
            let deliver = deliver_for(spec, ctx.started_at);
            return crate::probe::browser::run_plan(
                browser,
                ctx,
                plan,
                deliver.as_ref(),
                &self.mailboxes,
            )
            .await;
        }
        self.run_over_http(ctx).await
    }
}

impl Probe for FormProbe {
    fn hosts(&self) -> Vec<String> {
        self.hosts.clone()
    }
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
        Box::pin(self.attempt(ctx))
    }
}

/// What `list` shows.
pub fn summary(spec: &FormSpec) -> String {
    match (spec.via, &spec.steps) {
        (Via::Browser, Some(steps)) => {
            format!("form at {} via browser, {} steps", spec.url, steps.0.len())
        }
        _ => format!("form \"{}\" at {}", spec.form, spec.url),
    }
}

/// Whether a run started at `now` is outside the check's `active_hours` (never without them).
fn is_outside_hours(spec: &FormSpec, now: std::time::SystemTime) -> bool {
    spec.active_hours
        .as_ref()
        .is_some_and(|hours| !hours.contains(now))
}

/// The expectations that apply to a run started at `now`: `outside_hours` when `now` is outside
/// `active_hours`, `expect` otherwise. The flag says which.
pub(crate) fn expect_for(spec: &FormSpec, now: std::time::SystemTime) -> (&HttpExpect, bool) {
    match &spec.outside_hours {
        Some(outside) if is_outside_hours(spec, now) => (outside, true),
        _ => (&spec.expect, false),
    }
}

/// The delivery a run started at `now` must prove, over HTTP and in a browser alike: `deliver`
/// as the hours make it (outside them with `outside_hours: no_call`, no call may come).
pub(crate) fn deliver_for(spec: &FormSpec, now: std::time::SystemTime) -> Option<DeliverSpec> {
    let outside = is_outside_hours(spec, now);
    spec.deliver.as_ref().map(|d| d.for_hours(outside))
}
