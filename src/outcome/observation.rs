//! Measurements a run made, which the metrics module exports.

use std::time::Duration;

/// A measurement a probe made, exported by the metrics module.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// Final HTTP status code.
    HttpStatus(u16),
    /// The body was longer than `max_body` and was cut there.
    BodyTruncated,
    /// A certificate chain inspected at one target.
    Cert(CertReport),
    /// The submitted message arrived this long after the submit (our own observation).
    DeliveryLatency(Duration),
    /// The automatic acknowledgement arrived this long after the submit.
    AutoReplyLatency(Duration),
    /// A chat bot's first reply came this long after the first message was sent.
    ChatFirstResponse(Duration),
    /// A call's first 180/183 came this long after its INVITE (the one that went through).
    PhoneRing(Duration),
    /// A call's 2xx came this long after its INVITE (the one that went through).
    PhoneAnswer(Duration),
    /// The RMS level of what an answered call played, dBFS (`sip::audio::FLOOR_DBFS` for
    /// silence or nothing).
    PhoneAudioLevel(f64),
    /// A mailbox's storage quota usage.
    MailboxQuota {
        /// The mailbox's name under `mailboxes:`.
        mailbox: String,
        /// Used / limit.
        ratio: f64,
    },
    /// Where the evidence of a failed run (screenshot, page) was saved: a directory.
    Evidence(std::path::PathBuf),
    /// Number of DNS lookups an SPF record needs (RFC 7208 allows 10).
    SpfLookups {
        /// The domain whose SPF record was evaluated.
        domain: String,
        /// Lookups counted.
        lookups: u32,
    },
}

/// What the TLS probe learned about one target's certificate chain.
#[derive(Clone, Debug, PartialEq)]
pub struct CertReport {
    /// The target as configured (`host:port` or `scheme://host:port`), a bounded label value.
    pub target: String,
    /// Leaf certificate not-after, Unix seconds.
    pub leaf_not_after: i64,
    /// Earliest not-after across the presented chain, Unix seconds.
    pub chain_not_after: i64,
    /// The chain verifies to a trusted root (system roots or `ca_file`), ignoring expiry.
    pub chain_verified: bool,
    /// The leaf is valid for the host name.
    pub name_matches: bool,
}
