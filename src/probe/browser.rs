//! `browser` checks: ordered WebDriver steps in headless chromium.

use super::{FailureKind, Outcome, Probe, RunContext, Shared};
use crate::deliver::DeliverSpec;
use futures::future::BoxFuture;
use serde::Deserialize;
use std::sync::Arc;

/// A `browser` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserSpec {
    /// The steps, in order.
    pub steps: Vec<serde_json::Value>,
    /// Where the submitted message must arrive.
    pub deliver: Option<DeliverSpec>,
}

/// Checks a spec at load time.
pub fn validate(_spec: &BrowserSpec) -> Result<(), String> {
    Ok(())
}

/// What `list` shows.
pub fn summary(spec: &BrowserSpec) -> String {
    format!("browser, {} steps", spec.steps.len())
}

/// The probe.
pub struct BrowserProbe {
    browser: Arc<crate::browser::Browser>,
}

impl BrowserProbe {
    /// Builds the probe.
    pub fn build(spec: &BrowserSpec, shared: &Shared) -> Result<Self, String> {
        shared.mailboxes.check(spec.deliver.as_ref(), None)?;
        let browser = shared.browser.clone().ok_or("no browser configured")?;
        Ok(BrowserProbe { browser })
    }
}

impl Probe for BrowserProbe {
    fn hosts(&self) -> Vec<String> {
        Vec::new()
    }
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match self.browser.session().await {
                Ok(session) => {
                    session.close().await;
                    Outcome::fail(FailureKind::Internal, "browser steps not built yet")
                }
                Err(e) => Outcome::fail(FailureKind::Internal, e.to_string()),
            }
        })
    }
}
