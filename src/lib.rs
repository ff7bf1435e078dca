//! supportwatch: synthetic checks that prove an online shop's support channels work.
//!
//! The flow of one run: [`config`] (inert, fully validated data) → [`assemble`] (probes built) →
//! [`schedule`] (when, how many at once) → [`runner`] (timeout, retries) → a [`probe`] (the
//! network work of one attempt) → [`metrics`], [`alert`] and the report stream. See
//! `ARCHITECTURE.md`.
//!
//! The modules form layers, listed here ground first; a module uses only the layers before it.

// Ground: values, the run vocabulary, shared network pieces.
pub mod hours;
pub mod net;
pub mod outcome;
pub mod sip;
pub mod tlsconf;
pub mod value;

// Components, each owning its spec and its `validate`.
pub mod browser;
pub mod deliver;
pub mod hooks;
pub mod mailbox;
pub mod probe;

// What reads finished runs and sends alerts.
pub mod metrics;
pub mod notify;
pub mod report;

// The aggregate config and the alerting that follows it.
pub mod alert;
pub mod config;

// Assembly and the running daemon.
pub mod assemble;
pub mod daemon;
pub mod demo;
pub mod fleet;
pub mod runner;
pub mod schedule;
pub mod server;

/// `User-Agent` of every request: says it is an automated test, so shops can filter it.
pub const USER_AGENT: &str = concat!(
    "supportwatch/",
    env!("CARGO_PKG_VERSION"),
    " (automated support-channel test)"
);

/// Header that carries a run's correlation token on HTTP requests.
pub const TOKEN_HEADER: &str = "x-supportwatch-token";
