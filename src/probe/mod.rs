//! Probes: one module per check kind, all behind the small [`Probe`] trait.
//!
//! A probe does the network work of one attempt and returns an [`Outcome`]: a failed check is a
//! value, not an `Err`. Timeouts, retries, concurrency limits and metrics belong to the scheduler
//! and runner, which know nothing of any probe's details. Each kind's module owns its spec and its
//! `validate`; the per-kind dispatch lives above, in `config` (validate, summary) and `assemble`
//! (build), so this layer never names the aggregate config.

pub mod browser;
pub mod callback;
pub mod chat;
pub mod dns;
pub mod form;
pub mod http;
pub mod mail;
pub mod phone;
pub mod phone_call;
pub mod tls;

use crate::outcome::{Outcome, RunContext};
use futures::future::BoxFuture;
use std::sync::Arc;

/// One attempt of a check, with everything a probe needs to know about the run it belongs to.
pub trait Probe: Send + Sync {
    /// The endpoints this probe contacts, `host:port` (see `net::endpoint`), for the per-endpoint
    /// concurrency limit.
    fn hosts(&self) -> Vec<String>;
    /// Performs one attempt. Must not panic on any input from the network.
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Outcome>;
}

/// Resources shared by all probes of one loaded config (HTTP clients, trust stores).
#[derive(Default)]
pub struct Shared {
    pub(crate) http_clients: crate::net::ClientCache,
    /// Every declared mailbox with its watcher.
    pub mailboxes: crate::deliver::Mailboxes,
    /// The browser pool (started on first use).
    pub browser: Option<Arc<crate::browser::Browser>>,
    /// Every SIP account under `phones:`, by name.
    pub phones: std::collections::BTreeMap<String, Arc<crate::sip::PhoneSpec>>,
    /// One semaphore per account under `phones:` (its `max_calls` permits): how many calls the
    /// account may have up at once.
    pub phone_lines: std::collections::BTreeMap<String, Arc<tokio::sync::Semaphore>>,
}
