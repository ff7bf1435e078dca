//! `http` checks: one request with expectations on status, body, JSON, headers and latency.
//!
//! Each run opens a new connection (the pool keeps no idle connections), as a customer's browser
//! would after a while, so TLS and connect problems are seen. The body is read in chunks up to
//! `max_body` and the connection is dropped there: a 2 GB answer costs neither memory nor time.
//!
//! The expectations on the answer, shared with the `form` kind, are in `http/expect.rs`.

mod expect;

pub use expect::{HttpExpect, StatusExpect};

use super::{Probe, Shared};
use crate::net::{ClientKey, parse_url, send, validate_headers};
use crate::outcome::{Outcome, RunContext};
use crate::value::{ByteSize, Template, TemplateVars, Text};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Config of an `http` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// `http://` or `https://` URL; `${ENV}` allowed.
    pub url: Text,
    /// Request method, `GET` by default.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers; values may use `${ENV}`.
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    /// Raw request body (templated: `{{token}}`, `{{check}}`, `{{now}}`).
    pub body: Option<Template>,
    /// JSON request body; string values are templated.
    pub json: Option<serde_json::Value>,
    /// URL-encoded form body; values are templated.
    pub form: Option<BTreeMap<String, Template>>,
    /// What the answer must look like.
    #[serde(default)]
    pub expect: HttpExpect,
    /// Redirects followed at most (0: none).
    #[serde(default = "default_max_redirects")]
    pub max_redirects: usize,
    /// Bytes of body read at most; the rest is not downloaded.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// PEM file with the CA(s) to trust instead of the system roots; `${ENV}` allowed.
    pub ca_file: Option<Text>,
}

fn default_method() -> String {
    "GET".into()
}
pub(crate) fn default_max_redirects() -> usize {
    5
}
pub(crate) fn default_max_body() -> ByteSize {
    ByteSize(1 << 20)
}

/// Checks the parts of a spec serde cannot: one body at most, a usable URL and method.
pub fn validate(spec: &HttpSpec) -> Result<(), String> {
    compile(spec).map(|_| ())
}

/// What [`validate`] works out and the probe keeps, so it is worked out once.
struct Compiled {
    url: url::Url,
    method: reqwest::Method,
    json: Option<JsonTemplate>,
}

fn compile(spec: &HttpSpec) -> Result<Compiled, String> {
    let bodies = [
        spec.body.is_some(),
        spec.json.is_some(),
        spec.form.is_some(),
    ];
    if bodies.iter().filter(|b| **b).count() > 1 {
        return Err("set only one of `body`, `json` and `form`".into());
    }
    let url = parse_url(&spec.url)?;
    let method = reqwest::Method::from_bytes(spec.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("invalid method `{}`", spec.method))?;
    validate_headers(&spec.headers)?;
    spec.expect.validate()?;
    let json = spec.json.as_ref().map(compile_json).transpose()?;
    Ok(Compiled { url, method, json })
}

/// A JSON body whose strings are `${ENV}`-interpolated and `{{token}}`-templated.
#[derive(Debug, Clone)]
enum JsonTemplate {
    Str(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
    Other(serde_json::Value),
}

fn compile_json(v: &serde_json::Value) -> Result<JsonTemplate, String> {
    Ok(match v {
        serde_json::Value::String(s) => JsonTemplate::Str(Template::parse(Text::interpolate(s)?)?),
        serde_json::Value::Array(items) => {
            JsonTemplate::Array(items.iter().map(compile_json).collect::<Result<_, _>>()?)
        }
        serde_json::Value::Object(map) => JsonTemplate::Object(
            map.iter()
                .map(|(k, v)| compile_json(v).map(|t| (k.clone(), t)))
                .collect::<Result<_, _>>()?,
        ),
        other => JsonTemplate::Other(other.clone()),
    })
}

impl JsonTemplate {
    fn render(&self, vars: &TemplateVars<'_>) -> serde_json::Value {
        match self {
            JsonTemplate::Str(t) => serde_json::Value::String(t.render(vars)),
            JsonTemplate::Array(items) => {
                serde_json::Value::Array(items.iter().map(|i| i.render(vars)).collect())
            }
            JsonTemplate::Object(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.render(vars)))
                    .collect(),
            ),
            JsonTemplate::Other(v) => v.clone(),
        }
    }
}

/// A ready-to-run `http` check.
pub struct HttpProbe {
    /// Shared with the check's config rather than copied: 10,000 checks hold one copy each.
    spec: Arc<HttpSpec>,
    /// Parsed once at load; re-parsing it was a measurable share of every run's CPU.
    url: url::Url,
    method: reqwest::Method,
    json: Option<JsonTemplate>,
    host: String,
    client: reqwest::Client,
}

impl HttpProbe {
    /// Builds the probe, sharing a client with checks of the same transport options.
    pub fn build(
        spec: &Arc<HttpSpec>,
        resolve: &crate::net::Resolve,
        shared: &Shared,
    ) -> Result<Self, String> {
        let Compiled { url, method, json } = compile(spec)?;
        let host = crate::net::url_endpoint(&url);
        let client = shared.http_clients.get(ClientKey {
            max_redirects: spec.max_redirects,
            ca_file: spec.ca_file.as_ref().map(|t| PathBuf::from(t.expose())),
            resolve: resolve.clone(),
        })?;
        Ok(HttpProbe {
            spec: spec.clone(),
            url,
            method,
            json,
            host,
            client,
        })
    }

    async fn attempt(&self, ctx: &RunContext) -> Outcome {
        let now = ctx.now_rfc3339();
        let vars = TemplateVars {
            token: &ctx.token,
            check: &ctx.check,
            now: &now,
        };
        let mut request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .header(crate::TOKEN_HEADER, &ctx.token);
        for (name, value) in &self.spec.headers {
            request = request.header(name.as_str(), value.expose());
        }
        if let Some(body) = &self.spec.body {
            request = request.body(body.render(&vars));
        } else if let Some(json) = &self.json {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json.render(&vars).to_string());
        } else if let Some(form) = &self.spec.form {
            let mut encoder = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in form {
                encoder.append_pair(k, &v.render(&vars));
            }
            request = request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(encoder.finish());
        }

        let answer = match send(ctx, request, "request", Some("body"), self.spec.max_body).await {
            Ok(answer) => answer,
            Err(broken) => {
                let what = format!("{} {}", self.spec.method, self.spec.url);
                return broken.into_outcome(&what, self.spec.max_redirects);
            }
        };
        let mut outcome = Outcome::pass();
        answer.note(&mut outcome);
        self.spec.expect.check(&mut outcome, &answer);
        outcome
    }
}

impl Probe for HttpProbe {
    fn hosts(&self) -> Vec<String> {
        vec![self.host.clone()]
    }

    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
        Box::pin(self.attempt(ctx))
    }
}
