//! Why a run failed: a bounded class (the `reason` label) and a message for people.

use std::fmt;

/// Why an attempt failed: a bounded kind (exported as a metric label) and a message for people.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// Bounded classification.
    pub kind: FailureKind,
    /// What went wrong, naming the cause; never contains secrets.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Bounded failure classes, used as the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// The run exceeded its `timeout`.
    Timeout,
    /// TCP connect refused, unreachable or reset.
    Connect,
    /// TLS handshake or certificate problem.
    Tls,
    /// The certificate expired or is closer to expiry than `warn_before`.
    CertExpiry,
    /// Name resolution failed or records are missing/wrong.
    Dns,
    /// Unexpected HTTP status.
    Status,
    /// Body, header, JSON or latency expectation not met.
    Expectation,
    /// The server broke protocol (bad HTTP, bad SMTP greeting, ...).
    Protocol,
    /// A problem in supportwatch itself while running the check.
    Internal,
    /// The submitted message did not arrive within `deliver.within`.
    NotDelivered,
    /// The submitted message arrived in a spam folder.
    Spam,
    /// The mail server refused the message because the mailbox is full (452/552).
    MailboxFull,
    /// The message was accepted, then bounced: a delivery status notification of it reached
    /// the sender's mailbox.
    Bounced,
    /// The mailbox's storage quota is used above `quota_max`.
    Quota,
    /// The mailbox could not be read (login rejected, folder missing, session lost).
    Mailbox,
    /// The SMTP server refused the message.
    Smtp,
    /// The automatic acknowledgement did not arrive or did not say what it should.
    AutoReply,
    /// The chat bot did not answer within `within`.
    NoReply,
    /// The chat bot answered, but later than `within`: alive, and too slow.
    SlowReply,
    /// The SIP server refused the account's credentials (401/407 after answering the challenge).
    Auth,
    /// The SIP server does not know the number or URI (404/484).
    NotFound,
    /// The line or PBX is temporarily unavailable (480/503).
    Unavailable,
    /// The SIP server refused the request with another final status (4xx–6xx).
    Rejected,
    /// The called line is busy (486/600).
    Busy,
    /// The called line rang past `expect.answer_within` without being answered (cancelled).
    NoAnswer,
    /// The call was answered but nothing, or nothing above `expect.min_level_dbfs`, was heard.
    SilentLine,
}

impl FailureKind {
    /// Every kind, for metrics that must expose all label values.
    pub const ALL: [FailureKind; 26] = [
        FailureKind::Timeout,
        FailureKind::Connect,
        FailureKind::Tls,
        FailureKind::CertExpiry,
        FailureKind::Dns,
        FailureKind::Status,
        FailureKind::Expectation,
        FailureKind::Protocol,
        FailureKind::Internal,
        FailureKind::NotDelivered,
        FailureKind::Spam,
        FailureKind::MailboxFull,
        FailureKind::Bounced,
        FailureKind::Quota,
        FailureKind::Mailbox,
        FailureKind::Smtp,
        FailureKind::AutoReply,
        FailureKind::NoReply,
        FailureKind::SlowReply,
        FailureKind::Auth,
        FailureKind::NotFound,
        FailureKind::Unavailable,
        FailureKind::Rejected,
        FailureKind::Busy,
        FailureKind::NoAnswer,
        FailureKind::SilentLine,
    ];

    /// The kind whose label value is `label` (as stored with alerts), if any.
    pub fn from_label(label: &str) -> Option<FailureKind> {
        FailureKind::ALL.into_iter().find(|k| k.as_str() == label)
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Connect => "connect",
            FailureKind::Tls => "tls",
            FailureKind::CertExpiry => "cert_expiry",
            FailureKind::Dns => "dns",
            FailureKind::Status => "status",
            FailureKind::Expectation => "expectation",
            FailureKind::Protocol => "protocol",
            FailureKind::Internal => "internal",
            FailureKind::NotDelivered => "not_delivered",
            FailureKind::Spam => "spam",
            FailureKind::MailboxFull => "mailbox_full",
            FailureKind::Bounced => "bounced",
            FailureKind::Quota => "quota",
            FailureKind::Mailbox => "mailbox",
            FailureKind::Smtp => "smtp",
            FailureKind::AutoReply => "auto_reply",
            FailureKind::NoReply => "no_reply",
            FailureKind::SlowReply => "slow_reply",
            FailureKind::Auth => "auth",
            FailureKind::NotFound => "not_found",
            FailureKind::Unavailable => "unavailable",
            FailureKind::Rejected => "rejected",
            FailureKind::Busy => "busy",
            FailureKind::NoAnswer => "no_answer",
            FailureKind::SilentLine => "silent_line",
        }
    }
}
