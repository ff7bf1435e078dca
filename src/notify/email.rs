//! E-mail notifier (SMTP through lettre).

use super::{Notification, Notifier, NotifyError};
use crate::config::{Secret, Text};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;

/// `kind: email`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    /// `smtp://host[:25]`, `smtp+starttls://host[:587]` or `smtps://host[:465]`.
    pub smtp: Text,
    /// SMTP AUTH login; needs TLS.
    pub user: Option<Text>,
    /// SMTP AUTH password; never printed.
    pub password: Option<Secret>,
    /// PEM file with the CA(s) to trust instead of the system roots.
    pub ca_file: Option<Text>,
    /// Sender address.
    pub from: Text,
    /// Recipients.
    pub to: Vec<Text>,
}

/// Checks the spec at load time.
pub fn validate(_spec: &EmailSpec) -> Result<(), String> {
    Ok(())
}

/// Sends through email.
pub struct EmailNotifier {
    #[allow(dead_code)]
    name: String,
}

impl EmailNotifier {
    /// Builds the notifier.
    pub fn build(name: &str, _spec: &EmailSpec, _timeout: Duration) -> Result<Self, String> {
        Ok(EmailNotifier {
            name: name.to_string(),
        })
    }
}

impl Notifier for EmailNotifier {
    fn send<'a>(&'a self, _n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move { Err(NotifyError::permanent("not implemented yet")) })
    }
}

/// Host of the `smtp` URL.
pub fn server_host(spec: &EmailSpec) -> Option<String> {
    url::Url::parse(spec.smtp.expose())
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
}
