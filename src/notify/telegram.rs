//! Telegram Bot API notifier (sendMessage).

use super::{Notification, Notifier, NotifyError};
use crate::config::{Secret, Text};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;

/// `kind: telegram`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSpec {
    /// Bot token from @BotFather; never printed.
    pub bot_token: Secret,
    /// Chat, group or channel id (`-100…`) or `@channelname`.
    pub chat_id: Text,
    /// Bot API base URL, for a self-hosted Bot API server (default `https://api.telegram.org`).
    pub api_url: Option<Text>,
    /// Forum topic to post into.
    pub message_thread_id: Option<i64>,
}

/// Checks the spec at load time.
pub fn validate(_spec: &TelegramSpec) -> Result<(), String> {
    Ok(())
}

/// Sends through telegram.
pub struct TelegramNotifier {
    #[allow(dead_code)]
    name: String,
}

impl TelegramNotifier {
    /// Builds the notifier.
    pub fn build(name: &str, _spec: &TelegramSpec, _timeout: Duration) -> Result<Self, String> {
        Ok(TelegramNotifier {
            name: name.to_string(),
        })
    }
}

impl Notifier for TelegramNotifier {
    fn send<'a>(&'a self, _n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move { Err(NotifyError::permanent("not implemented yet")) })
    }
}
