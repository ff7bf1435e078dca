//! supportwatch: synthetic checks that prove an online shop's support channels work.
//!
//! The flow of one run: [`config`] (inert, fully validated data) → [`schedule`] (when, how many at
//! once) → [`runner`] (timeout, retries) → a [`probe`] (the network work of one attempt) →
//! [`metrics`] and the report stream. See `ARCHITECTURE.md`.

pub mod alert;
pub mod browser;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod demo;
pub mod hooks;
pub mod hours;
pub mod mailbox;
pub mod metrics;
pub mod notify;
pub mod probe;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod server;
pub mod tlsconf;

/// `User-Agent` of every request: says it is an automated test, so shops can filter it.
pub const USER_AGENT: &str = concat!(
    "supportwatch/",
    env!("CARGO_PKG_VERSION"),
    " (automated support-channel test)"
);

/// Header that carries a run's correlation token on HTTP requests.
pub const TOKEN_HEADER: &str = "x-supportwatch-token";
