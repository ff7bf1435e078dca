//! IMAP mailboxes (async-imap over tokio-rustls): implicit TLS or STARTTLS, LOGIN or AUTH PLAIN,
//! IDLE with a polling fallback, QUOTA.
//!
//! The store holds what a connection needs (target, credentials, the TLS client config built
//! once from `ca_file`); every [`MailStore::open`] makes one connection ([`connect`]) and returns
//! an [`session::ImapSession`]. Reconnecting is the watcher's job: any failure on the wire ends
//! the session with [`MailboxError::Protocol`] and the watcher opens a new one.
//!
//! Every network step is bounded ([`CONNECT_TIMEOUT`], [`COMMAND_TIMEOUT`]), so a server that
//! stops answering costs a run its mailbox, never the watcher task.
//!
//! Submodules: [`connect`] (TCP, TLS, STARTTLS, login), [`session`] (the [`MailSession`]
//! commands), [`folders`] (which folders to look in, folder-name encoding, search dates) and
//! [`wire`] (the byte stream under async-imap, which keeps the password out of its logs).

mod connect;
mod folders;
mod session;
pub(crate) mod wire;

use super::{ImapAuth, MailSession, MailStore, MailboxError, MailboxSpec};
use crate::value::Secret;
use futures::future::BoxFuture;
use rustls::pki_types::ServerName;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Bound on resolving, connecting and the TLS handshake (STARTTLS included), each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on one IMAP command and its responses (LOGIN, SELECT, FETCH, …).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the polite LOGOUT when a session ends.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// RFC 2177: a client re-issues IDLE at least every 29 minutes, or servers may drop it.
const IDLE_MAX: Duration = Duration::from_secs(29 * 60);

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

    /// `host:port`, for messages (IPv6 in brackets).
    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// An IMAP mailbox.
pub struct ImapStore {
    target: ImapTarget,
    /// The name the certificate must be valid for (the URL's host).
    server_name: ServerName<'static>,
    tls: tokio_rustls::TlsConnector,
    user: String,
    password: Secret,
    auth: ImapAuth,
    folders: Vec<String>,
    spam_folders: Option<Vec<String>>,
    idle: bool,
    poll_interval: Duration,
    max_message: u64,
    /// Whether IDLE is used is logged once per store, not once per reconnect.
    idle_logged: AtomicBool,
}

impl ImapStore {
    /// Builds the store (reads `ca_file`).
    pub fn build(_name: &str, spec: &MailboxSpec) -> Result<Self, String> {
        let target = ImapTarget::parse(spec)?;
        let server_name = ServerName::try_from(target.host.clone())
            .map_err(|_| format!("imap host `{}` is not a valid host name", target.host))?;
        let roots = crate::tlsconf::roots(spec.ca_file.as_ref().map(|t| Path::new(t.expose())))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(crate::tlsconf::client_config(roots)));
        let password = spec
            .password
            .clone()
            .ok_or("an imap mailbox needs `user` and `password`")?;
        Ok(ImapStore {
            target,
            server_name,
            tls,
            user: spec
                .user
                .as_ref()
                .map(|u| u.expose().to_string())
                .unwrap_or_default(),
            password,
            auth: spec.auth,
            folders: spec.folders.clone(),
            spam_folders: spec.spam_folders.clone(),
            idle: spec.idle,
            poll_interval: spec.poll_interval.get(),
            max_message: spec.max_message.0,
            idle_logged: AtomicBool::new(false),
        })
    }

    /// Logs, once per store, whether changes are waited for with IDLE or by polling.
    fn log_idle_choice(&self, server_has_idle: bool) {
        if self.idle_logged.swap(true, Ordering::Relaxed) {
            return;
        }
        let what = self.describe();
        match (self.idle, server_has_idle) {
            (true, true) => {
                tracing::info!(mailbox = %what, "using IMAP IDLE: new mail is noticed as it arrives")
            }
            (true, false) => tracing::info!(
                mailbox = %what,
                poll_interval = ?self.poll_interval,
                "the server does not offer IMAP IDLE; polling instead"
            ),
            (false, _) => tracing::info!(
                mailbox = %what,
                poll_interval = ?self.poll_interval,
                "IMAP IDLE is turned off (idle: false); polling"
            ),
        }
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
            let session = session::ImapSession::open(self).await?;
            Ok(Box::new(session) as Box<dyn MailSession>)
        })
    }
}
