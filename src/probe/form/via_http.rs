//! `form` checks with `via: http` (the default): one run as a browser without JavaScript makes
//! it, step by step — load the page, read its form, fill it in, submit it, judge the answer.
//!
//! Each step returns the run's failed [`Outcome`] as its error, so the run reads as its list of
//! steps. Kept apart from the spec and the probe's building in `form.rs`, and from the HTML work
//! in `page.rs` and `data.rs`: this file is the HTTP exchange and what it reports.

use super::error::FormError;
use super::page::{self, PageForm};
use super::{FormProbe, deliver_for, expect_for};
use crate::net::Answer;
use crate::outcome::{FailureKind, Outcome, RunContext};
use crate::value::TemplateVars;
use reqwest::cookie::CookieStore;
use std::sync::Arc;
use std::time::SystemTime;

/// The submit request a browser would make, and what it says about itself for the details.
struct Submission {
    request: reqwest::RequestBuilder,
    method: reqwest::Method,
    /// `query string`, `multipart` or `urlencoded`.
    encoding: &'static str,
    /// Whether the page's `<meta name="csrf-token">` went along as `X-CSRF-Token`.
    csrf: bool,
}

impl FormProbe {
    /// One run over HTTP.
    pub(super) async fn run_over_http(&self, ctx: &RunContext) -> Outcome {
        match self.over_http(ctx).await {
            Ok(outcome) | Err(outcome) => outcome,
        }
    }

    /// The steps in order; `Err` is a run that failed before its answer could be judged.
    async fn over_http(&self, ctx: &RunContext) -> Result<Outcome, Outcome> {
        let spec = &self.spec;
        let (jar, client) = self.client()?;
        let page = self.load_page(&client, ctx).await?;
        let mut details = vec![format!("page {}: status {}", spec.url, page.status)];
        if page.url != self.url {
            details.push(format!(
                "page redirected to {}",
                crate::value::shown_url(&page.url)
            ));
        }
        let mut form = self.read_form(ctx, &page).await?;
        self.fill(ctx, &mut form)?;
        let target = form
            .target(&page.url, spec.action.as_ref())
            .map_err(expectation)?;
        let submission = self.submission(&client, ctx, &form, &page.url, &target)?;
        let shown_target = match &spec.action {
            Some(action) => format!("{action} (action:)"),
            None => crate::value::shown_url(&target),
        };
        self.describe(&form, &submission, &shown_target, &mut details);
        details.push(cookie_names(jar.as_ref(), &target));
        if submission.csrf {
            details.push("CSRF token from <meta name=\"csrf-token\"> sent as X-CSRF-Token".into());
        }

        let submitted_at = SystemTime::now();
        let sent = crate::net::send(ctx, submission.request, "submit", None, spec.max_body).await;
        let answer = match sent {
            Ok(answer) => answer,
            Err(broken) => {
                let what = format!("{} {shown_target}", submission.method);
                let mut failed = broken.into_outcome(&what, spec.max_redirects);
                failed.details = details;
                return Err(failed);
            }
        };
        Ok(self.judge(ctx, &answer, &target, details, submitted_at))
    }

    /// The run's own client around its own cookie jar (see the module doc of `form`).
    fn client(&self) -> Result<(Arc<reqwest::cookie::Jar>, reqwest::Client), Outcome> {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        match self
            .resolve
            .apply(crate::net::client_builder(
                self.roots.clone(),
                self.spec.max_redirects,
            ))
            .cookie_provider(jar.clone())
            .build()
        {
            Ok(client) => Ok((jar, client)),
            Err(e) => Err(Outcome::fail(
                FailureKind::Internal,
                format!("cannot build HTTP client: {}", crate::net::error_chain(&e)),
            )),
        }
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

    /// `load`: the page, which must answer 2xx and fit in `max_body` whole.
    async fn load_page(
        &self,
        client: &reqwest::Client,
        ctx: &RunContext,
    ) -> Result<Answer, Outcome> {
        let spec = &self.spec;
        let load = self.request(client, reqwest::Method::GET, self.url.clone(), ctx);
        let page = match crate::net::send(ctx, load, "load", None, spec.max_body).await {
            Ok(page) => page,
            Err(broken) => {
                return Err(broken.into_outcome(&format!("GET {}", spec.url), spec.max_redirects));
            }
        };
        if !(200..300).contains(&page.status) {
            return Err(Outcome::fail(
                FailureKind::Status,
                format!(
                    "page {} answered status {}, expected 2xx",
                    spec.url, page.status
                ),
            ));
        }
        if page.truncated {
            return Err(Outcome::fail(
                FailureKind::Expectation,
                format!(
                    "page {} is larger than max_body ({} bytes), so its form cannot be read whole; raise max_body",
                    spec.url, spec.max_body.0
                ),
            ));
        }
        Ok(page)
    }

    /// `parse`: the form read out of the page.
    async fn read_form(&self, ctx: &RunContext, page: &Answer) -> Result<PageForm, Outcome> {
        // Parsing a large page takes milliseconds of CPU: off the async workers it goes.
        ctx.begin("parse");
        let html = String::from_utf8_lossy(&page.body).into_owned();
        let selectors = self.selectors.clone();
        let page_name = self.spec.url.to_string();
        let parsed =
            tokio::task::spawn_blocking(move || page::read(&html, &page_name, &selectors)).await;
        ctx.end();
        match parsed {
            Ok(Ok(form)) => Ok(form),
            Ok(Err(e)) => Err(expectation(e)),
            Err(e) => Err(Outcome::fail(
                FailureKind::Internal,
                format!("reading the page failed: {e}"),
            )),
        }
    }

    /// The check's fields and files filled in, templated with the run's token, check and time.
    fn fill(&self, ctx: &RunContext, form: &mut PageForm) -> Result<(), Outcome> {
        let now = ctx.now_rfc3339();
        let vars = TemplateVars {
            token: &ctx.token,
            check: &ctx.check,
            now: &now,
        };
        form.fill_in(&self.spec, &vars).map_err(expectation)
    }

    /// The submit request: the form's method and target, `Referer`, `Origin` on a POST, the
    /// page's CSRF token, and the data encoded as the form says.
    fn submission(
        &self,
        client: &reqwest::Client,
        ctx: &RunContext,
        form: &PageForm,
        page: &url::Url,
        target: &url::Url,
    ) -> Result<Submission, Outcome> {
        let method = form.method.clone();
        let get = method == reqwest::Method::GET;
        let mut url = target.clone();
        if get {
            // A GET form replaces the action's query with its data, as a browser does.
            url.set_query(Some(&form.urlencoded()));
        }
        let mut submit = self
            .request(client, method.clone(), url, ctx)
            .header(reqwest::header::REFERER, referrer(page, target));
        if !get {
            // What a browser sends with a POST; frameworks check it against forged requests.
            submit = submit.header(reqwest::header::ORIGIN, page.origin().ascii_serialization());
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
                    return Err(Outcome::fail(
                        FailureKind::Internal,
                        format!("cannot encode the form: {}", crate::net::error_chain(&e)),
                    ));
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
        Ok(Submission {
            request: submit,
            method,
            encoding,
            csrf: csrf.is_some(),
        })
    }

    /// What is submitted, for the details: the form and where it goes, its fields by origin, and
    /// the submit button.
    fn describe(
        &self,
        form: &PageForm,
        submission: &Submission,
        shown_target: &str,
        details: &mut Vec<String>,
    ) {
        let matched = match form.matched {
            1 => String::new(),
            n => format!(" (first of {n} matches)"),
        };
        details.push(format!(
            "form \"{}\"{matched}: {} {shown_target}, {}",
            self.spec.form, submission.method, submission.encoding
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
    }

    /// `submit`'s answer judged by the expectations that apply now; when it passes, the
    /// follow-up that waits for the delivery.
    fn judge(
        &self,
        ctx: &RunContext,
        answer: &Answer,
        target: &url::Url,
        details: Vec<String>,
        submitted_at: SystemTime,
    ) -> Outcome {
        let spec = &self.spec;
        let mut outcome = Outcome {
            details,
            ..Outcome::pass()
        };
        if answer.url != *target {
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
        expect.check(&mut outcome, answer);
        if outcome.passed() {
            // A field holding a declared mailbox's address (the customer's e-mail) is where a
            // bounce of the shop's mail would go when the shop sends on the customer's behalf.
            let now = ctx.now_rfc3339();
            let vars = TemplateVars {
                token: &ctx.token,
                check: &ctx.check,
                now: &now,
            };
            let sender = spec
                .fields
                .values()
                .map(|t| t.render(&vars))
                .find(|v| self.mailboxes.is_declared_address(v));
            let deliver = deliver_for(spec, ctx.started_at);
            outcome.follow_up = crate::deliver::follow_up(
                ctx,
                submitted_at,
                deliver.as_ref(),
                None,
                &self.mailboxes,
                sender.as_deref(),
            );
        }
        outcome
    }
}

/// A form that cannot be filled in or submitted fails the run as an unmet expectation.
fn expectation(e: FormError) -> Outcome {
    Outcome::fail(FailureKind::Expectation, e.to_string())
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
