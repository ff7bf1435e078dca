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
//! script builds or submits); see `via_browser.rs`.

mod data;
mod error;
mod page;
mod via_browser;

pub use via_browser::Via;

use super::http::{self, HttpExpect};
use super::{Probe, Shared};
use crate::deliver::{DeliverSpec, Mailboxes};
use crate::outcome::{FailureKind, Outcome, RunContext};
use crate::value::ByteSize;
use crate::value::{Dur, Template, TemplateVars, Text};
use error::FormError;
use futures::future::BoxFuture;
use page::{PageForm, Selectors, Upload};
use reqwest::cookie::CookieStore;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

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
    /// PEM file with the CA(s) to trust instead of the system roots; `${ENV}` allowed.
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
    match (&spec.active_hours, &spec.outside_hours) {
        (Some(_), None) => {
            return Err(
                "`active_hours` needs `outside_hours`: the acknowledgement expected outside them"
                    .into(),
            );
        }
        (None, Some(_)) => {
            return Err("`outside_hours` needs `active_hours`".into());
        }
        (_, Some(outside)) => outside.validate()?,
        (None, None) => {}
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
    hosts: Vec<String>,
    mailboxes: Mailboxes,
    /// With `via: browser`: the browser pool and the steps.
    browser: Option<(Arc<crate::browser::Browser>, crate::probe::browser::Plan)>,
}

impl FormProbe {
    /// Builds the probe.
    pub fn build(spec: &Arc<FormSpec>, shared: &Shared) -> Result<Self, String> {
        shared.mailboxes.check(spec.deliver.as_ref(), None)?;
        validate(spec)?;
        let Compiled { url, selectors } = compile(spec)?;
        let browser = match spec.via {
            Via::Http => None,
            Via::Browser => Some((
                shared.browser.clone().ok_or("no browser configured")?,
                via_browser::plan(spec)?,
            )),
        };
        let ca_file = spec
            .ca_file
            .as_ref()
            .map(|t| std::path::PathBuf::from(t.expose()));
        let roots = crate::tlsconf::roots(ca_file.as_deref())?;
        let mut hosts: Vec<String> = url.host_str().map(str::to_string).into_iter().collect();
        // An `action` on another host (a form service, a CRM) loads that host as well.
        if let Some(host) = spec
            .action
            .as_ref()
            .and_then(|a| url.join(a.expose()).ok())
            .and_then(|a| a.host_str().map(str::to_string))
        {
            hosts.push(host);
        }
        Ok(FormProbe {
            spec: spec.clone(),
            url,
            selectors: Arc::new(selectors),
            roots,
            hosts,
            mailboxes: shared.mailboxes.clone(),
            browser,
        })
    }

    fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        url: url::Url,
        ctx: &RunContext,
    ) -> reqwest::RequestBuilder {
        let mut request = client
            .request(method, url)
            .header(crate::TOKEN_HEADER, &ctx.token);
        for (name, value) in &self.spec.headers {
            request = request.header(name.as_str(), value.expose());
        }
        request
    }

    async fn attempt(&self, ctx: &RunContext) -> Outcome {
        let spec = &self.spec;
        if let Some((browser, plan)) = &self.browser {
            return crate::probe::browser::run_plan(
                browser,
                ctx,
                plan,
                spec.deliver.as_ref(),
                &self.mailboxes,
            )
            .await;
        }
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = match crate::net::client_builder(self.roots.clone(), spec.max_redirects)
            .cookie_provider(jar.clone())
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                return Outcome::fail(
                    FailureKind::Internal,
                    format!("cannot build HTTP client: {}", crate::net::error_chain(&e)),
                );
            }
        };

        let load = self.request(&client, reqwest::Method::GET, self.url.clone(), ctx);
        let page = match crate::net::send(ctx, load, "load", None, spec.max_body).await {
            Ok(page) => page,
            Err(broken) => {
                return broken.into_outcome(&format!("GET {}", spec.url), spec.max_redirects);
            }
        };
        if !(200..300).contains(&page.status) {
            return Outcome::fail(
                FailureKind::Status,
                format!(
                    "page {} answered status {}, expected 2xx",
                    spec.url, page.status
                ),
            );
        }
        if page.truncated {
            return Outcome::fail(
                FailureKind::Expectation,
                format!(
                    "page {} is larger than max_body ({} bytes), so its form cannot be read whole; raise max_body",
                    spec.url, spec.max_body.0
                ),
            );
        }
        let mut details = vec![format!("page {}: status {}", spec.url, page.status)];
        if page.url != self.url {
            details.push(format!(
                "page redirected to {}",
                crate::value::shown_url(&page.url)
            ));
        }

        // Parsing a large page takes milliseconds of CPU: off the async workers it goes.
        ctx.begin("parse");
        let html = String::from_utf8_lossy(&page.body).into_owned();
        let selectors = self.selectors.clone();
        let page_name = spec.url.to_string();
        let parsed =
            tokio::task::spawn_blocking(move || page::read(&html, &page_name, &selectors)).await;
        ctx.end();
        let mut form = match parsed {
            Ok(Ok(form)) => form,
            Ok(Err(e)) => return Outcome::fail(FailureKind::Expectation, e.to_string()),
            Err(e) => {
                return Outcome::fail(
                    FailureKind::Internal,
                    format!("reading the page failed: {e}"),
                );
            }
        };
        let now = ctx.now_rfc3339();
        let vars = TemplateVars {
            token: &ctx.token,
            check: &ctx.check,
            now: &now,
        };
        if let Err(e) = self.fill(&mut form, &vars) {
            return Outcome::fail(FailureKind::Expectation, e.to_string());
        }
        let target = match self.target(&form, &page.url) {
            Ok(target) => target,
            Err(e) => return Outcome::fail(FailureKind::Expectation, e.to_string()),
        };

        let method = form.method.clone();
        let get = method == reqwest::Method::GET;
        let mut url = target.clone();
        if get {
            // A GET form replaces the action's query with its data, as a browser does.
            url.set_query(Some(&form.urlencoded()));
        }
        let mut submit = self
            .request(&client, method.clone(), url, ctx)
            .header(reqwest::header::REFERER, referrer(&page.url, &target));
        if !get {
            // What a browser sends with a POST; frameworks check it against forged requests.
            submit = submit.header(
                reqwest::header::ORIGIN,
                page.url.origin().ascii_serialization(),
            );
        }
        let csrf = form
            .csrf_meta
            .as_deref()
            .and_then(|t| reqwest::header::HeaderValue::from_str(t).ok());
        if let Some(token) = &csrf {
            submit = submit.header("x-csrf-token", token.clone());
        }
        let encoding = if get {
            "query string"
        } else if form.multipart {
            match form.multipart() {
                Ok(body) => submit = submit.multipart(body),
                Err(e) => {
                    return Outcome::fail(
                        FailureKind::Internal,
                        format!("cannot encode the form: {}", crate::net::error_chain(&e)),
                    );
                }
            }
            "multipart"
        } else {
            submit = submit
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form.urlencoded());
            "urlencoded"
        };

        let matched = match form.matched {
            1 => String::new(),
            n => format!(" (first of {n} matches)"),
        };
        let shown_target = match &spec.action {
            Some(action) => format!("{action} (action:)"),
            None => crate::value::shown_url(&target),
        };
        details.push(format!(
            "form \"{}\"{matched}: {method} {shown_target}, {encoding}",
            spec.form
        ));
        let t = form.tally();
        let files = match t.files {
            0 => String::new(),
            1 => " and 1 file".to_string(),
            n => format!(" and {n} files"),
        };
        details.push(format!(
            "sent {} fields ({} hidden, {} defaults, {} filled){files}",
            t.hidden + t.defaults + t.filled,
            t.hidden,
            t.defaults,
            t.filled,
        ));
        if let Some(i) = form.submitter
            && let Some(button) = form.controls.get(i)
            && !button.name.is_empty()
        {
            details.push(format!("submit button \"{}\"", button.name));
        }
        details.push(cookie_names(jar.as_ref(), &target));
        if csrf.is_some() {
            details.push("CSRF token from <meta name=\"csrf-token\"> sent as X-CSRF-Token".into());
        }

        let submitted_at = SystemTime::now();
        let answer = match crate::net::send(ctx, submit, "submit", None, spec.max_body).await {
            Ok(answer) => answer,
            Err(broken) => {
                let mut failed =
                    broken.into_outcome(&format!("{method} {shown_target}"), spec.max_redirects);
                failed.details = details;
                return failed;
            }
        };
        let mut outcome = Outcome {
            details,
            ..Outcome::pass()
        };
        if answer.url != target {
            outcome.details.push(format!(
                "answer from {}",
                crate::value::shown_url(&answer.url)
            ));
        }
        answer.note(&mut outcome);
        let (expect, outside) = expect_for(spec, ctx.started_at);
        if outside {
            outcome
                .details
                .push("outside active hours: expecting the off-hours acknowledgement".into());
        }
        expect.check(&mut outcome, &answer);
        if outcome.passed() {
            outcome.follow_up = crate::deliver::follow_up(
                ctx,
                submitted_at,
                spec.deliver.as_ref(),
                None,
                &self.mailboxes,
            );
        }
        outcome
    }

    /// Fills in the check's fields and files and checks nothing `required` is left empty.
    fn fill(&self, form: &mut PageForm, vars: &TemplateVars<'_>) -> Result<(), FormError> {
        for (name, value) in &self.spec.fields {
            form.fill(name, value.render(vars))?;
        }
        for (name, file) in &self.spec.files {
            form.attach(
                name,
                Upload {
                    file_name: file.name.clone(),
                    content: file.content.render(vars),
                    content_type: file
                        .content_type
                        .clone()
                        .unwrap_or_else(|| data::OCTET_STREAM.into()),
                },
            )?;
        }
        form.check_required()
    }

    /// Where the form goes: `action:` from the config, else the form's action resolved against
    /// the page's `<base href>` and URL, else the page itself.
    fn target(&self, form: &PageForm, page: &url::Url) -> Result<url::Url, FormError> {
        let base = form
            .base
            .as_deref()
            .and_then(|b| page.join(b).ok())
            .unwrap_or_else(|| page.clone());
        let (resolved, written) = match (&self.spec.action, &form.action) {
            (Some(action), _) => (page.join(action.expose()), action.to_string()),
            (None, Some(action)) => (base.join(action), action.clone()),
            (None, None) => (Ok(page.clone()), crate::value::shown_url(page)),
        };
        match resolved {
            Ok(mut url) if matches!(url.scheme(), "http" | "https") => {
                url.set_fragment(None);
                Ok(url)
            }
            _ => Err(FormError::BadAction {
                form: self.spec.form.clone(),
                action: written,
            }),
        }
    }
}

/// The `Referer` a browser sends: the whole page URL to its own origin, only the origin to
/// another (the default `strict-origin-when-cross-origin` policy), never credentials.
fn referrer(page: &url::Url, target: &url::Url) -> String {
    if page.origin() == target.origin() {
        let mut url = page.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_fragment(None);
        url.to_string()
    } else {
        format!("{}/", page.origin().ascii_serialization())
    }
}

/// The names (never the values) of the cookies the submit carries.
fn cookie_names(jar: &reqwest::cookie::Jar, target: &url::Url) -> String {
    let names: Vec<String> = jar
        .cookies(target)
        .and_then(|h| h.to_str().ok().map(str::to_string))
        .map(|header| {
            header
                .split(';')
                .filter_map(|pair| pair.split('=').next())
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        "no cookies carried".into()
    } else {
        format!("cookies carried: {}", names.join(", "))
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

/// The expectations that apply to a run started at `now`: `outside_hours` when `now` is outside
/// `active_hours`, `expect` otherwise. The flag says which.
pub(crate) fn expect_for(spec: &FormSpec, now: std::time::SystemTime) -> (&HttpExpect, bool) {
    match (&spec.active_hours, &spec.outside_hours) {
        (Some(hours), Some(outside)) if !hours.contains(now) => (outside, true),
        _ => (&spec.expect, false),
    }
}
