//! The built-in web server's own metrics: connections and refused webhooks.
//!
//! Kept apart from the scheduler's families so the accept loop and the webhook handler touch
//! only what they own; registered with the rest in [`super::Metrics::new`].

use super::PREFIX;
use prometheus::core::Collector;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

/// Which listener a connection came in on (the `listener` label).
pub const LISTENERS: [&str; 2] = ["main", "hooks"];
/// Why a connection was refused at accept or closed by the server.
pub const CONNECTION_REASONS: [&str; 4] = ["limit", "evicted", "header_timeout", "reserve_only"];

/// Connection and webhook counters of the web server.
pub struct ServerMetrics {
    /// Connections open now, by listener.
    pub connections_open: IntGaugeVec,
    /// Connections refused at accept, or closed before they sent a complete request, by reason.
    pub connections_closed: IntCounterVec,
    /// Webhook requests refused, by reason.
    pub webhook_rejected: IntCounterVec,
}

impl ServerMetrics {
    pub(super) fn new() -> Self {
        let n = |name: &str| format!("{PREFIX}{name}");
        let connections_open = IntGaugeVec::new(
            Opts::new(
                n("http_server_connections_open"),
                "Connections open on the built-in web server, by listener (main, hooks).",
            ),
            &["listener"],
        )
        .expect("static metric definition");
        let connections_closed = IntCounterVec::new(
            Opts::new(
                n("http_server_connections_limited_total"),
                "Connections refused or closed by the web server's limits, by reason: limit \
                 (refused at accept, too many open), evicted (closed while waiting for its first \
                 request to make room), header_timeout (request head not sent in time), \
                 reserve_only (only /metrics and /healthz are served while the rest is full).",
            ),
            &["listener", "reason"],
        )
        .expect("static metric definition");
        let webhook_rejected = IntCounterVec::new(
            Opts::new(
                n("webhook_rejected_total"),
                "Webhook requests refused, by reason: unknown_hook, bad_signature, rate_limited, \
                 too_large, slow_body, other_shard (a hook of checks another fleet instance runs).",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        for listener in LISTENERS {
            connections_open.with_label_values(&[listener]);
            for reason in CONNECTION_REASONS {
                connections_closed.with_label_values(&[listener, reason]);
            }
        }
        for reason in crate::hooks::Rejection::ALL {
            webhook_rejected.with_label_values(&[reason.as_str()]);
        }
        ServerMetrics {
            connections_open,
            connections_closed,
            webhook_rejected,
        }
    }

    /// The collectors to register.
    pub(super) fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.connections_open.clone()),
            Box::new(self.connections_closed.clone()),
            Box::new(self.webhook_rejected.clone()),
        ]
    }
}
