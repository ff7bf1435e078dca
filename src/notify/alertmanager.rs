//! Prometheus Alertmanager v2 API notifier (POST /api/v2/alerts).

use super::{Notification, Notifier, NotifyError};
use crate::config::{Secret, Text};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;

/// `kind: alertmanager`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerSpec {
    /// Alertmanager base URL, e.g. `http://alertmanager:9093`.
    pub url: Text,
    /// Basic-auth user.
    pub user: Option<Text>,
    /// Basic-auth password; never printed.
    pub password: Option<Secret>,
    /// PEM file with the CA(s) to trust instead of the system roots.
    pub ca_file: Option<Text>,
}

/// Checks the spec at load time.
pub fn validate(_spec: &AlertmanagerSpec) -> Result<(), String> {
    Ok(())
}

/// Sends through alertmanager.
pub struct AlertmanagerNotifier {
    #[allow(dead_code)]
    name: String,
}

impl AlertmanagerNotifier {
    /// Builds the notifier.
    pub fn build(name: &str, _spec: &AlertmanagerSpec, _timeout: Duration) -> Result<Self, String> {
        Ok(AlertmanagerNotifier {
            name: name.to_string(),
        })
    }
}

impl Notifier for AlertmanagerNotifier {
    fn send<'a>(&'a self, _n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move { Err(NotifyError::permanent("not implemented yet")) })
    }
}
