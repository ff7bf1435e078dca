//! One HTTP exchange, bounded: send, read the body up to a limit, classify what broke.

use super::error_chain;
use crate::outcome::{FailureKind, Observation, Outcome, RunContext};
use crate::value::ByteSize;
use std::time::{Duration, Instant};

/// An HTTP answer with its body read up to `max_body`.
pub(crate) struct Answer {
    /// Final status code, after redirects.
    pub(crate) status: u16,
    /// Final URL, after redirects.
    pub(crate) url: url::Url,
    /// Headers of the final response.
    pub(crate) headers: reqwest::header::HeaderMap,
    /// The body, or its first `max_body` bytes.
    pub(crate) body: Vec<u8>,
    /// Whether the body was longer than `max_body` and cut there.
    pub(crate) truncated: bool,
    /// From sending the request to the end of the body.
    pub(crate) elapsed: Duration,
}

/// An exchange that produced no whole answer: the request failed, or the body broke off.
pub(crate) struct Broken {
    error: reqwest::Error,
    /// The status, when the failure came while reading the body.
    status: Option<u16>,
}

impl Broken {
    /// The failed outcome, naming `what` was requested (`POST https://…`; templates, not secrets).
    pub(crate) fn into_outcome(self, what: &str, max_redirects: usize) -> Outcome {
        let mut failed = classify(self.error, what, max_redirects);
        failed
            .observations
            .extend(self.status.map(Observation::HttpStatus));
        failed
    }
}

/// Reads `response`'s body up to `limit` bytes; `true` when there was more. The rest is never
/// read: a 2 GB answer costs `limit` bytes of memory, not 2 GB.
pub(crate) async fn read_body(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// Sends `request`, timed as phase `phase`, and reads the body up to `max_body`: in phase
/// `body_phase` when given, else still in `phase`.
pub(crate) async fn send(
    ctx: &RunContext,
    request: reqwest::RequestBuilder,
    phase: &str,
    body_phase: Option<&str>,
    max_body: ByteSize,
) -> Result<Answer, Broken> {
    let started = Instant::now();
    ctx.begin(phase);
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(error) => {
            ctx.end();
            return Err(Broken {
                error,
                status: None,
            });
        }
    };
    let status = response.status().as_u16();
    if let Some(name) = body_phase {
        ctx.begin(name);
    }
    let limit = usize::try_from(max_body.0).unwrap_or(usize::MAX);
    let (body, truncated) = match read_body(&mut response, limit).await {
        Ok(read) => read,
        Err(error) => {
            ctx.end();
            return Err(Broken {
                error,
                status: Some(status),
            });
        }
    };
    ctx.end();
    let url = response.url().clone();
    let headers = std::mem::take(response.headers_mut());
    // Dropping the response here closes the connection: the rest of a huge body is not read.
    drop(response);
    Ok(Answer {
        status,
        url,
        headers,
        body,
        truncated,
        elapsed: started.elapsed(),
    })
}

impl Answer {
    /// Records the status (observation and detail) and the body's size.
    pub(crate) fn note(&self, outcome: &mut Outcome) {
        outcome
            .observations
            .push(Observation::HttpStatus(self.status));
        outcome.details.push(format!("status {}", self.status));
        if self.truncated {
            outcome.observations.push(Observation::BodyTruncated);
            outcome
                .details
                .push(format!("body cut at {} bytes (max_body)", self.body.len()));
        } else {
            outcome
                .details
                .push(format!("body {} bytes", self.body.len()));
        }
    }
}

/// Classifies a failed exchange; `what` names the request without secrets (`GET <template>`).
fn classify(e: reqwest::Error, what: &str, max_redirects: usize) -> Outcome {
    let e = e.without_url();
    let chain = error_chain(&e);
    let lower = chain.to_lowercase();
    if e.is_redirect() {
        return Outcome::fail(
            FailureKind::Expectation,
            format!("more than {max_redirects} redirects (max_redirects)"),
        );
    }
    let kind = if e.is_timeout() {
        FailureKind::Timeout
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        FailureKind::Tls
    } else if e.is_connect() && lower.contains("dns error") {
        // hyper's connector names a failed lookup so; the override-free name did not resolve.
        FailureKind::Dns
    } else if e.is_connect() {
        FailureKind::Connect
    } else {
        FailureKind::Protocol
    };
    Outcome::fail(kind, format!("{what}: {chain}"))
}
