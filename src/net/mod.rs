//! The HTTP pieces every layer shares: clients and their cache, the bounded body reader, one
//! exchange with its failure classes, URL and header validation, and error chains without URLs.
//!
//! Probes, deliveries and notifiers all speak HTTP; keeping these here, at the ground, lets each
//! of them use the same limits and the same secret-free errors without importing one another.

mod client;
mod exchange;
mod resolve;

pub use client::ClientCache;
pub(crate) use client::{ClientKey, client_builder};
pub(crate) use exchange::{Answer, read_body, send};
pub use resolve::{ConnectError, Resolve};

use crate::value::Text;
use std::collections::BTreeMap;

/// The endpoint a probe contacts, as the per-endpoint concurrency limit keys it: `host:port`
/// (an IPv6 address in brackets), or the bare host when the port is not known.
pub(crate) fn endpoint(host: &str, port: Option<u16>) -> String {
    let bracketed = host.contains(':') && !host.starts_with('[');
    match (port, bracketed) {
        (Some(port), true) => format!("[{host}]:{port}"),
        (Some(port), false) => format!("{host}:{port}"),
        (None, _) => host.to_string(),
    }
}

/// [`endpoint`] of a URL, the port defaulting from its scheme (`https` 443, `ws` 80, ...).
pub(crate) fn url_endpoint(url: &url::Url) -> String {
    endpoint(
        url.host_str().unwrap_or_default(),
        url.port_or_known_default(),
    )
}

/// Parses a check's `url`, which must be `http://` or `https://` with a host.
pub(crate) fn parse_url(text: &Text) -> Result<url::Url, String> {
    let url = url::Url::parse(text.expose()).map_err(|e| format!("invalid url `{text}`: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "url `{text}` must be http:// or https:// with a host"
        ));
    }
    Ok(url)
}

/// Checks that extra request headers are valid HTTP (names and `${ENV}`-expanded values).
pub(crate) fn validate_headers(headers: &BTreeMap<String, Text>) -> Result<(), String> {
    for (name, value) in headers {
        reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name `{name}`"))?;
        reqwest::header::HeaderValue::from_str(value.expose())
            .map_err(|_| format!("header `{name}` has a value that is not valid in HTTP"))?;
    }
    Ok(())
}

/// The error and its causes, without the URL (which may hold a secret).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
