//! Slack-compatible incoming webhook notifier (Slack, Mattermost, Rocket.Chat).

use super::{Notification, Notifier, NotifyError};
use crate::config::{Secret, Text};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;

/// `kind: slack`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSpec {
    /// Incoming webhook URL; it is a credential, so it is never printed.
    pub url: Secret,
    /// Channel override, where the service allows one.
    pub channel: Option<Text>,
    /// Sender name override, where the service allows one.
    pub username: Option<Text>,
}

/// Checks the spec at load time.
pub fn validate(_spec: &SlackSpec) -> Result<(), String> {
    Ok(())
}

/// Sends through slack.
pub struct SlackNotifier {
    #[allow(dead_code)]
    name: String,
}

impl SlackNotifier {
    /// Builds the notifier.
    pub fn build(name: &str, _spec: &SlackSpec, _timeout: Duration) -> Result<Self, String> {
        Ok(SlackNotifier {
            name: name.to_string(),
        })
    }
}

impl Notifier for SlackNotifier {
    fn send<'a>(&'a self, _n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move { Err(NotifyError::permanent("not implemented yet")) })
    }
}
