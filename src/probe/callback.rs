//! `callback` checks: submit the shop's callback-request form and prove the request reached the
//! people who will call back — a webhook to supportwatch's own receiver (CRM, telephony), a mail
//! in a mailbox, or an API that lists pending callbacks (`http_poll`).
//!
//! A callback form is an HTML form like any other, so the mechanics (CSRF, cookies, `via:
//! browser` with steps) are the `form` kind's, shared rather than copied: the spec is a
//! [`FormSpec`] and the probe a [`FormProbe`]. What differs is what the check must prove: a
//! callback request nobody receives is the failure this kind exists to catch, so `deliver` is
//! required. The acknowledgement `expect` can express the off-hours answer ("we will call you
//! back tomorrow at 9:00").

use super::Shared;
use super::form::{self, FormProbe, FormSpec};
use std::sync::Arc;

/// Checks a spec at load time: everything a `form` needs, plus a `deliver` block.
pub fn validate(spec: &FormSpec) -> Result<(), String> {
    if spec.deliver.is_none() {
        return Err("a callback check must prove the request arrives: add deliver: { webhook: NAME } (or mailbox: NAME, or http_poll: { url: … })".into());
    }
    form::validate(spec)
}

/// Builds the probe: the `form` probe over the same spec.
pub fn build(
    spec: &Arc<FormSpec>,
    resolve: &crate::net::Resolve,
    shared: &Shared,
) -> Result<FormProbe, String> {
    validate(spec)?;
    FormProbe::build(spec, resolve, shared)
}

/// What `list` shows.
pub fn summary(spec: &FormSpec) -> String {
    format!("callback {}", form::summary(spec))
}
