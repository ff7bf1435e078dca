//! Generic JSON webhook notifier.

use super::{Notification, Notifier, NotifyError};
use crate::config::{Secret, Text};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;

/// `kind: webhook`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Where the JSON payload is POSTed.
    pub url: Text,
    /// HMAC-SHA256 key; the signature goes in `X-Supportwatch-Signature: sha256=<hex>`.
    pub secret: Option<Secret>,
    /// Extra request headers (an `Authorization` header, ...); values never printed.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, Secret>,
}

/// Checks the spec at load time.
pub fn validate(_spec: &WebhookSpec) -> Result<(), String> {
    Ok(())
}

/// Sends through webhook.
pub struct WebhookNotifier {
    #[allow(dead_code)]
    name: String,
}

impl WebhookNotifier {
    /// Builds the notifier.
    pub fn build(name: &str, _spec: &WebhookSpec, _timeout: Duration) -> Result<Self, String> {
        Ok(WebhookNotifier {
            name: name.to_string(),
        })
    }
}

impl Notifier for WebhookNotifier {
    fn send<'a>(&'a self, _n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move { Err(NotifyError::permanent("not implemented yet")) })
    }
}
