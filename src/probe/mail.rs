//! `mail` checks: send a mail over SMTP, then prove it arrived (and was acknowledged).

use super::{Outcome, Probe, RunContext, Shared};
use crate::config::Text;
use crate::deliver::DeliverSpec;
use futures::future::BoxFuture;
use serde::Deserialize;

/// A `mail` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSpec {
    /// SMTP server URL.
    pub url: Text,
    /// Where the submitted message must arrive.
    pub deliver: Option<DeliverSpec>,
    /// The automatic acknowledgement that must reach the sender.
    pub auto_reply: Option<crate::deliver::AutoReplySpec>,
}

/// Checks a spec at load time.
pub fn validate(_spec: &MailSpec) -> Result<(), String> {
    Ok(())
}

/// The probe.
pub struct MailProbe {
    host: String,
}

impl MailProbe {
    /// Builds the probe.
    pub fn build(spec: &MailSpec, shared: &Shared) -> Result<Self, String> {
        shared
            .mailboxes
            .check(spec.deliver.as_ref(), spec.auto_reply.as_ref())?;
        let url = url::Url::parse(spec.url.expose()).map_err(|e| e.to_string())?;
        Ok(MailProbe {
            host: url.host_str().unwrap_or_default().to_string(),
        })
    }
}

impl Probe for MailProbe {
    fn hosts(&self) -> Vec<String> {
        vec![self.host.clone()]
    }
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
        Box::pin(async { Outcome::fail(super::FailureKind::Internal, "mail probe not built yet") })
    }
}

/// What `list` shows.
pub fn summary(spec: &MailSpec) -> String {
    format!("mail via {}", spec.url)
}
