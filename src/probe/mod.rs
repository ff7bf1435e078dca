//! Probes: one module per check kind, all behind the small [`Probe`] trait.
//!
//! A probe does the network work of one attempt and returns an [`Outcome`]: a failed check is a
//! value, not an `Err`. Timeouts, retries, concurrency limits and metrics belong to the scheduler
//! and runner, which know nothing of any probe's details.

pub mod browser;
pub mod callback;
pub mod chat;
pub mod dns;
pub mod form;
pub mod http;
pub mod mail;
pub mod tls;

use crate::config::CheckSpec;
use futures::future::BoxFuture;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// One attempt of a check, with everything a probe needs to know about the run it belongs to.
pub trait Probe: Send + Sync {
    /// The hosts this probe contacts, for the per-host concurrency limit.
    fn hosts(&self) -> Vec<String>;
    /// Performs one attempt. Must not panic on any input from the network.
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Outcome>;
}

/// Builds the probe for a check kind. Errors are config problems (an unreadable `ca_file`, ...).
pub fn build(spec: &CheckSpec, shared: &Shared) -> Result<Arc<dyn Probe>, String> {
    match spec {
        CheckSpec::Http(s) => http::HttpProbe::build(s, shared).map(|p| Arc::new(p) as _),
        CheckSpec::Form(s) => form::FormProbe::build(s, shared).map(|p| Arc::new(p) as _),
        CheckSpec::Callback(s) => callback::build(s, shared).map(|p| Arc::new(p) as _),
        CheckSpec::Mail(s) => mail::MailProbe::build(s, shared).map(|p| Arc::new(p) as _),
        CheckSpec::Browser(s) => browser::BrowserProbe::build(s, shared).map(|p| Arc::new(p) as _),
        CheckSpec::Tls(s) => tls::TlsProbe::build(s, shared).map(|p| Arc::new(p) as _),
        CheckSpec::Dns(s) => dns::DnsProbe::build(s, shared).map(|p| Arc::new(p) as _),
        CheckSpec::Chat(s) => chat::ChatProbe::build(s, shared).map(|p| Arc::new(p) as _),
    }
}

/// Checks what serde cannot check about a spec (exclusive fields, URL syntax, ...), at load time.
pub fn validate(spec: &CheckSpec) -> Result<(), String> {
    match spec {
        CheckSpec::Http(s) => http::validate(s),
        CheckSpec::Form(s) => form::validate(s),
        CheckSpec::Callback(s) => callback::validate(s),
        CheckSpec::Mail(s) => mail::validate(s),
        CheckSpec::Browser(s) => browser::validate(s),
        CheckSpec::Tls(s) => tls::validate(s),
        CheckSpec::Dns(s) => dns::validate(s),
        CheckSpec::Chat(s) => chat::validate(s),
    }
}

/// A one-line description of what the check contacts, safe to print (templates, not secrets).
pub fn summary(spec: &CheckSpec) -> String {
    match spec {
        CheckSpec::Http(s) => format!("{} {}", s.method.to_ascii_uppercase(), s.url),
        CheckSpec::Form(s) => form::summary(s),
        CheckSpec::Callback(s) => callback::summary(s),
        CheckSpec::Mail(s) => mail::summary(s),
        CheckSpec::Browser(s) => browser::summary(s),
        CheckSpec::Tls(s) => s
            .targets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        CheckSpec::Dns(s) => dns::summary(s),
        CheckSpec::Chat(s) => chat::summary(s),
    }
}

/// Resources shared by all probes of one loaded config (HTTP clients, trust stores).
#[derive(Default)]
pub struct Shared {
    pub(crate) http_clients: http::ClientCache,
    /// Every declared mailbox with its watcher.
    pub mailboxes: crate::deliver::Mailboxes,
    /// The browser pool (started on first use).
    pub browser: Option<Arc<crate::browser::Browser>>,
}

/// The state of one attempt: its token and the phases timed so far.
///
/// The runner keeps the context outside the probe's future, so when the attempt times out and the
/// future is dropped, the phases recorded up to that moment still tell *where* it hung.
///
/// Clones share the phase list: a run's second stage (waiting for a delivery) records its phases
/// into the same run.
#[derive(Clone)]
pub struct RunContext {
    /// The check's name.
    pub check: Arc<str>,
    /// Correlation token carried into whatever the check submits.
    pub token: String,
    /// Wall-clock start of the attempt.
    pub started_at: SystemTime,
    phases: Arc<Mutex<Vec<PhaseTiming>>>,
}

/// How long one phase of an attempt took.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PhaseTiming {
    /// Phase name (`connect`, `tls`, `request`, `body`, ...), from a bounded set per kind.
    pub name: String,
    /// Duration; `None` while the phase is still open.
    #[serde(serialize_with = "serialize_opt_secs")]
    pub duration: Option<Duration>,
    #[serde(skip)]
    started: Instant,
}

/// Serializes an optional duration as seconds (JSON output of `check --json`).
pub(crate) fn serialize_opt_secs<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl RunContext {
    /// A fresh context for one attempt.
    pub fn new(check: Arc<str>, token: String) -> Self {
        RunContext {
            check,
            token,
            started_at: SystemTime::now(),
            phases: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Ends the open phase, if any, and starts `name`.
    pub fn begin(&self, name: impl Into<String>) {
        let now = Instant::now();
        let mut phases = self.lock();
        close_open(&mut phases, now);
        phases.push(PhaseTiming {
            name: name.into(),
            duration: None,
            started: now,
        });
    }

    /// Records a finished phase that ran alongside others (so `begin` would close them).
    pub fn record(&self, name: impl Into<String>, duration: Duration) {
        self.lock().push(PhaseTiming {
            name: name.into(),
            duration: Some(duration),
            started: Instant::now(),
        });
    }

    /// Ends the open phase, if any.
    pub fn end(&self) {
        close_open(&mut self.lock(), Instant::now());
    }

    /// Times `fut` as phase `name`.
    pub async fn timed<T>(&self, name: impl Into<String>, fut: impl Future<Output = T>) -> T {
        self.begin(name);
        let out = fut.await;
        self.end();
        out
    }

    /// How long the last phase called `name` took, if it has ended.
    pub fn phase_duration(&self, name: &str) -> Option<Duration> {
        self.lock()
            .iter()
            .rev()
            .find(|p| p.name == name)
            .and_then(|p| p.duration)
    }

    /// The phase still open (where a timed-out attempt was stuck), if any.
    pub fn open_phase(&self) -> Option<String> {
        self.lock()
            .iter()
            .rev()
            .find(|p| p.duration.is_none())
            .map(|p| p.name.clone())
    }

    /// All phases, open ones closed at `now`.
    pub fn take_phases(&self) -> Vec<PhaseTiming> {
        let mut phases = self.lock();
        close_open(&mut phases, Instant::now());
        std::mem::take(&mut *phases)
    }

    /// Values for `{{token}}`-style templates in this attempt.
    pub fn now_rfc3339(&self) -> String {
        humantime::format_rfc3339_seconds(self.started_at).to_string()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PhaseTiming>> {
        // A poisoned lock only means another thread panicked mid-push; the data is still usable.
        self.phases.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn close_open(phases: &mut [PhaseTiming], now: Instant) {
    for p in phases.iter_mut().filter(|p| p.duration.is_none()) {
        p.duration = Some(now.saturating_duration_since(p.started));
    }
}

/// What one attempt found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `None` when the attempt passed.
    pub failure: Option<Failure>,
    /// Measurements exported as metrics (status code, certificate expiry, ...).
    pub observations: Vec<Observation>,
    /// Human-readable facts for `check` output and logs; never secrets.
    pub details: Vec<String>,
    /// The run's second stage, when the attempt submitted something whose arrival must be
    /// proven. The runner awaits it after the run's concurrency permits are released.
    pub follow_up: Option<FollowUp>,
}

/// The second stage of a run: waiting for what the first stage submitted to arrive.
pub struct FollowUp {
    /// Hard bound on the stage (the probe enforces its own `within`; this is the backstop).
    pub limit: Duration,
    /// The stage; its outcome's failure, observations and details are merged into the run's.
    pub stage: BoxFuture<'static, FollowUpResult>,
}

impl fmt::Debug for FollowUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FollowUp")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// What the second stage found, and, when the delivery missed its deadline, a watch for it
/// arriving late.
pub struct FollowUpResult {
    /// Failure, observations and details of the stage.
    pub outcome: Outcome,
    /// Resolves when the late watch ends: the delivery arrived after all, or it is lost.
    pub late: Option<BoxFuture<'static, LateDelivery>>,
}

/// How a delivery that missed its deadline ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateDelivery {
    /// It arrived after the deadline, this long after the submit.
    Arrived(Duration),
    /// It did not arrive within the late window.
    Lost,
}

impl Outcome {
    /// A passing outcome.
    pub fn pass() -> Self {
        Outcome::default()
    }
    /// A failing outcome.
    pub fn fail(kind: FailureKind, message: impl Into<String>) -> Self {
        Outcome {
            failure: Some(Failure {
                kind,
                message: message.into(),
            }),
            ..Outcome::default()
        }
    }
    /// Marks the outcome failed unless it already failed (the first reason is kept).
    pub fn fail_with(&mut self, kind: FailureKind, message: impl Into<String>) {
        if self.failure.is_none() {
            self.failure = Some(Failure {
                kind,
                message: message.into(),
            });
        }
    }
    /// Whether the attempt passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

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
}

impl FailureKind {
    /// Every kind, for metrics that must expose all label values.
    pub const ALL: [FailureKind; 17] = [
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
        FailureKind::Quota,
        FailureKind::Mailbox,
        FailureKind::Smtp,
        FailureKind::AutoReply,
        FailureKind::NoReply,
    ];

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
            FailureKind::Quota => "quota",
            FailureKind::Mailbox => "mailbox",
            FailureKind::Smtp => "smtp",
            FailureKind::AutoReply => "auto_reply",
            FailureKind::NoReply => "no_reply",
        }
    }
}

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
