//! Turning lettre's errors into failures people can act on: the step that failed, the server's
//! own words, the bounded kind, and whether the server asked us to back off.

use super::target::{Security, Target};
use crate::outcome::FailureKind;
use std::error::Error as _;
use std::fmt;
use std::io;
use std::time::Duration;

/// Bound on the TCP connect (lettre's own timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on any one step of the dialogue. The check's `timeout` usually ends the run first; this
/// only guarantees a worded failure when it is set longer.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Server answers quoted in failures are cut here, so a chatty server cannot bloat reports.
const MAX_ANSWER: usize = 300;

/// Why a session failed.
#[derive(Debug)]
pub struct SmtpFailure {
    /// Bounded class.
    pub kind: FailureKind,
    /// For people; quotes the server, never the password.
    pub message: String,
    /// The server's 4xx answer when it asked us to come back later (the account backs off).
    pub transient: Option<String>,
    /// Whether a session was opened, i.e. the account was used.
    pub reached: bool,
}

/// A server's negative answer: its code and text.
struct Answer {
    code: u16,
    text: String,
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {}", self.code, self.text)
        }
    }
}

impl Answer {
    fn of(e: &lettre::transport::smtp::Error) -> Option<Answer> {
        let code = u16::from(e.status()?);
        let text = e.source().map(|s| s.to_string()).unwrap_or_default();
        Some(Answer {
            code,
            text: one_line(&text),
        })
    }
    fn transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    /// 452/552 to RCPT TO or DATA: the recipient's storage is exhausted (RFC 5321 4.2.2, RFC
    /// 3463 x.2.2). The same codes with x.3.4 mean "message too big", which is not the mailbox.
    fn mailbox_full(&self) -> bool {
        matches!(self.code, 452 | 552)
            && !self.text.starts_with("5.3.4")
            && !self.text.starts_with("4.3.4")
            && !self.text.starts_with("4.5.3")
    }
}

/// Collapses a multi-line answer into one trimmed line, cut at [`MAX_ANSWER`] characters.
pub fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() > MAX_ANSWER {
        format!("{}…", joined.chars().take(MAX_ANSWER).collect::<String>())
    } else {
        joined
    }
}

/// The innermost I/O error behind a lettre error, if any.
fn io_cause<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e io::Error> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return Some(io);
        }
        source = s.source();
    }
    None
}

/// The TLS error behind an I/O error (tokio-rustls wraps rustls' errors in `io::Error`).
fn tls_cause(io: &io::Error) -> Option<&rustls::Error> {
    io.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Words an I/O error the way people say it (`connection refused`, not `os error 111`).
fn io_words(io: &io::Error) -> String {
    match io.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut => format!(
            "no answer within {}",
            crate::value::short_duration(CONNECT_TIMEOUT)
        ),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::UnexpectedEof => "connection closed".into(),
        io::ErrorKind::AddrNotAvailable => "address not available".into(),
        _ => io.to_string(),
    }
}

/// Whether an I/O error is about reaching the server at all (rather than a broken session).
fn is_connect_error(io: &io::Error) -> bool {
    matches!(
        io.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::TimedOut
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::AddrNotAvailable
    )
}

/// The step of the dialogue that failed, for wording.
#[derive(Clone, Copy)]
pub enum Step<'a> {
    /// TCP connect, implicit TLS, greeting and EHLO.
    Connect,
    /// STARTTLS and the EHLO after it.
    StartTls,
    /// AUTH as this login.
    Auth(&'a str),
    /// MAIL FROM with this sender.
    MailFrom(&'a str),
    /// RCPT TO with this recipient.
    RcptTo(&'a str),
    /// The DATA command.
    Data,
    /// The message content and the server's verdict on it.
    Message,
}

impl Step<'_> {
    fn name(self) -> &'static str {
        match self {
            Step::Connect => "the greeting",
            Step::StartTls => "STARTTLS",
            Step::Auth(_) => "AUTH",
            Step::MailFrom(_) => "MAIL FROM",
            Step::RcptTo(_) => "RCPT TO",
            Step::Data => "DATA",
            Step::Message => "the message",
        }
    }
}

/// Builds the failures of one session.
pub struct Failer<'a> {
    /// The server.
    pub target: &'a Target,
    /// The AUTH password, redacted from every text.
    pub password: Option<&'a str>,
    /// Whether the session got as far as the server's greeting.
    pub reached: bool,
}

impl Failer<'_> {
    pub fn fail(
        &self,
        kind: FailureKind,
        message: String,
        transient: Option<String>,
    ) -> SmtpFailure {
        SmtpFailure {
            kind,
            message: self.redact(message),
            transient: transient.map(|t| self.redact(t)),
            reached: self.reached,
        }
    }

    /// A server could quote what it was sent; the password must not reach a report anyway.
    pub fn redact(&self, text: String) -> String {
        match self.password {
            Some(p) if !p.is_empty() && text.contains(p) => text.replace(p, "<redacted>"),
            _ => text,
        }
    }

    /// The server went silent at `step` for longer than [`STEP_TIMEOUT`].
    pub fn timeout(&self, step: Step<'_>) -> SmtpFailure {
        self.fail(
            FailureKind::Timeout,
            format!(
                "smtp server {} did not answer within {} (at {})",
                self.target.addr(),
                crate::value::short_duration(STEP_TIMEOUT),
                step.name()
            ),
            None,
        )
    }

    /// Classifies a lettre error at `step`.
    pub fn classify(&self, step: Step<'_>, e: &lettre::transport::smtp::Error) -> SmtpFailure {
        let addr = self.target.addr();
        if let Some(answer) = Answer::of(e) {
            let transient = answer.transient().then(|| answer.to_string());
            let (kind, message) = match step {
                Step::Connect => (
                    FailureKind::Smtp,
                    format!("smtp server {addr} refused the session: {answer}"),
                ),
                Step::StartTls => (
                    FailureKind::Smtp,
                    format!("smtp server {addr} refused STARTTLS: {answer}"),
                ),
                Step::Auth(user) => (
                    FailureKind::Smtp,
                    format!("smtp authentication as {user} failed: {answer}"),
                ),
                Step::MailFrom(from) => (
                    FailureKind::Smtp,
                    format!("MAIL FROM:<{from}> refused: {answer}"),
                ),
                // The recipient's quota, not our account: no back-off, so the next run sees at
                // once whether the mailbox was emptied.
                Step::RcptTo(_) | Step::Data | Step::Message if answer.mailbox_full() => {
                    (FailureKind::MailboxFull, format!("mailbox full: {answer}"))
                }
                Step::RcptTo(to) => (
                    FailureKind::Smtp,
                    format!("RCPT TO:<{to}> refused: {answer}"),
                ),
                Step::Data => (FailureKind::Smtp, format!("DATA refused: {answer}")),
                Step::Message => (
                    FailureKind::Smtp,
                    format!("message refused after DATA: {answer}"),
                ),
            };
            let transient = transient.filter(|_| kind != FailureKind::MailboxFull);
            // The server answered, so the account was used, even when it refused the greeting.
            let mut failure = self.fail(kind, message, transient);
            failure.reached = true;
            return failure;
        }
        let io = io_cause(e);
        if let Some(tls) = io.and_then(tls_cause) {
            return self.fail(
                FailureKind::Tls,
                format!("TLS handshake with {addr} failed: {tls}"),
                None,
            );
        }
        match (step, io) {
            (Step::Connect, Some(io)) if is_connect_error(io) => self.fail(
                FailureKind::Connect,
                format!("smtp connect to {addr} failed: {}", io_words(io)),
                None,
            ),
            // An implicit-TLS server that hangs up mid-handshake is a TLS problem.
            (Step::Connect, Some(io)) if self.target.security == Security::Implicit => self.fail(
                FailureKind::Tls,
                format!("TLS handshake with {addr} failed: {}", io_words(io)),
                None,
            ),
            (Step::StartTls, Some(io)) => self.fail(
                FailureKind::Tls,
                format!(
                    "TLS handshake with {addr} (STARTTLS) failed: {}",
                    io_words(io)
                ),
                None,
            ),
            (_, Some(io)) => self.fail(
                FailureKind::Connect,
                format!(
                    "smtp server {addr} dropped the connection at {}: {}",
                    step.name(),
                    io_words(io)
                ),
                None,
            ),
            (_, None) if e.is_response() => {
                let cause = e.source().map(|s| s.to_string()).unwrap_or_default();
                let message = if cause == "incomplete response" {
                    format!(
                        "smtp server {addr} closed the connection at {}",
                        step.name()
                    )
                } else {
                    format!(
                        "smtp server {addr} answered {} with something that is not SMTP: {}",
                        step.name(),
                        one_line(&cause)
                    )
                };
                self.fail(FailureKind::Protocol, message, None)
            }
            (_, None) => self.fail(
                FailureKind::Protocol,
                format!("smtp with {addr} failed at {}: {e}", step.name()),
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Text;

    #[test]
    fn answers_are_one_trimmed_line_and_mailbox_full_is_recognised() {
        assert_eq!(
            one_line(" 5.2.2 <a@b>:\r\n  Mailbox   full \n"),
            "5.2.2 <a@b>: Mailbox full"
        );
        assert!(one_line(&"x".repeat(1000)).chars().count() <= MAX_ANSWER + 1);
        let full = Answer {
            code: 552,
            text: "5.2.2 Mailbox full".into(),
        };
        assert!(full.mailbox_full());
        assert!(!full.transient());
        let big = Answer {
            code: 552,
            text: "5.3.4 Message size exceeds fixed limit".into(),
        };
        assert!(!big.mailbox_full());
        let busy = Answer {
            code: 451,
            text: "4.3.0 Try again".into(),
        };
        assert!(busy.transient() && !busy.mailbox_full());
        assert_eq!(busy.to_string(), "451 4.3.0 Try again");
    }

    #[test]
    fn the_password_is_redacted_from_server_text() {
        let t = Target::parse(&Text::literal("smtps://mail.example.ru")).unwrap();
        let failer = Failer {
            target: &t,
            password: Some("hunter2"),
            reached: true,
        };
        let f = failer.fail(
            FailureKind::Smtp,
            "535 5.7.8 bad password hunter2".into(),
            Some("hunter2".into()),
        );
        assert_eq!(f.message, "535 5.7.8 bad password <redacted>");
        assert_eq!(f.transient.as_deref(), Some("<redacted>"));
    }
}
