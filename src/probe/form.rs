//! `form` checks: load a page, fill in and submit its HTML form, check the acknowledgement.

use super::{Outcome, Probe, RunContext, Shared};
use crate::config::Text;
use crate::deliver::DeliverSpec;
use futures::future::BoxFuture;
use serde::Deserialize;

/// A `form` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormSpec {
    /// The page that holds the form.
    pub url: Text,
    /// Where the submitted message must arrive.
    pub deliver: Option<DeliverSpec>,
}

/// Checks a spec at load time.
pub fn validate(_spec: &FormSpec) -> Result<(), String> {
    Ok(())
}

/// The probe.
pub struct FormProbe {
    host: String,
}

impl FormProbe {
    /// Builds the probe.
    pub fn build(spec: &FormSpec, shared: &Shared) -> Result<Self, String> {
        shared.mailboxes.check(spec.deliver.as_ref(), None)?;
        let url = url::Url::parse(spec.url.expose()).map_err(|e| e.to_string())?;
        Ok(FormProbe {
            host: url.host_str().unwrap_or_default().to_string(),
        })
    }
}

impl Probe for FormProbe {
    fn hosts(&self) -> Vec<String> {
        vec![self.host.clone()]
    }
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
        Box::pin(async { Outcome::fail(super::FailureKind::Internal, "form probe not built yet") })
    }
}

/// What `list` shows.
pub fn summary(spec: &FormSpec) -> String {
    format!("form at {}", spec.url)
}
