//! Mailboxes where deliveries are proven: IMAP servers and local Maildirs, declared once under
//! `mailboxes:` and shared by every check that delivers into them.
//!
//! A mailbox backend only knows how to list, fetch and delete messages and how to wait for a
//! change ([`MailSession`]). Everything about tokens — decoding MIME, matching, remembering which
//! message carried which token — lives in [`watch`], so IMAP and Maildir behave the same.

pub mod dsn;
pub mod imap;
pub mod late;
pub mod maildir;
pub mod message;
pub mod watch;

use crate::value::{Dur, Secret, Text};
use futures::future::BoxFuture;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

pub use watch::{Delivered, WaitError, Watcher};

/// One entry under `mailboxes:`. Exactly one of `imap` and `maildir` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxSpec {
    /// `imaps://host[:993]` (implicit TLS) or `imap://host[:143]` (STARTTLS, required).
    pub imap: Option<Text>,
    /// A local Maildir (the directory holding `cur/`, `new/`, `tmp/`).
    pub maildir: Option<Text>,
    /// IMAP login name.
    pub user: Option<Text>,
    /// The mailbox's own e-mail address (default: `user`, when it is an address). Bounces of a
    /// check's mail sent from this address are looked for here.
    pub address: Option<Text>,
    /// IMAP password; `${ENV}` or `${file:...}`, never printed.
    pub password: Option<Secret>,
    /// IMAP authentication: `login` (default) or `plain` (AUTHENTICATE PLAIN).
    #[serde(default)]
    pub auth: ImapAuth,
    /// PEM file with the CA(s) to trust instead of the system roots.
    pub ca_file: Option<Text>,
    /// Folders a delivery is expected in.
    #[serde(default = "default_folders")]
    pub folders: Vec<String>,
    /// Folders searched as well; a token found there fails the run with "delivered to spam".
    /// Default: the folder the server marks `\Junk`, else any of `Junk`, `Spam`, `Junk E-mail`,
    /// `[Gmail]/Spam` (Maildir: `Junk`, `Spam`, `Junk E-mail`).
    pub spam_folders: Option<Vec<String>>,
    /// Use IMAP IDLE when the server offers it (default true); polling otherwise.
    #[serde(default = "default_true")]
    pub idle: bool,
    /// How often the folders are searched when IDLE is off or unavailable, and how often the
    /// spam folders are searched while idling.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Dur,
    /// Fail deliveries into this mailbox when its storage quota is used above this ratio.
    pub quota_max: Option<Ratio>,
    /// Largest message fetched when looking for a token; bigger ones are skipped.
    #[serde(default = "default_max_message")]
    pub max_message: crate::value::ByteSize,
}

impl MailboxSpec {
    /// The address mail to this mailbox is sent to, lower case: `address`, else `user` when it
    /// is an address.
    pub fn own_address(&self) -> Option<String> {
        self.address
            .as_ref()
            .or(self.user.as_ref())
            .map(|a| a.expose().trim().to_ascii_lowercase())
            .filter(|a| a.contains('@'))
    }
}

fn default_folders() -> Vec<String> {
    vec!["INBOX".into()]
}
fn default_true() -> bool {
    true
}
fn default_poll_interval() -> Dur {
    Dur::secs(10)
}
fn default_max_message() -> crate::value::ByteSize {
    crate::value::ByteSize(10 << 20)
}

/// IMAP authentication mechanism.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImapAuth {
    /// The `LOGIN` command.
    #[default]
    Login,
    /// `AUTHENTICATE PLAIN` (RFC 4616).
    Plain,
}

/// A ratio written as `90%` or `0.9`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Ratio(pub f64);

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", (self.0 * 1000.0).round() / 10.0)
    }
}

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        let value = match Raw::deserialize(deserializer)? {
            Raw::Number(n) => n,
            Raw::Text(t) => {
                let t = t.trim();
                match t.strip_suffix('%') {
                    Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
                    None => t.parse::<f64>(),
                }
                .map_err(|_| {
                    serde::de::Error::custom(format!("invalid ratio `{t}`: write e.g. `90%`"))
                })?
            }
        };
        if !(0.0..=1.0).contains(&value) {
            return Err(serde::de::Error::custom(
                "a ratio must be between 0% and 100%",
            ));
        }
        Ok(Ratio(value))
    }
}

/// Checks a mailbox declaration without touching the network.
pub fn validate(spec: &MailboxSpec) -> Result<(), String> {
    if let Some(address) = &spec.address
        && !address.expose().contains('@')
    {
        return Err(format!(
            "`address` `{address}` is not an e-mail address: write e.g. monitor@example.ru"
        ));
    }
    match (&spec.imap, &spec.maildir) {
        (Some(_), Some(_)) => Err("set only one of `imap` and `maildir`".into()),
        (None, None) => Err("set `imap: imaps://host` or `maildir: /path`".into()),
        (Some(_), None) => imap::ImapTarget::parse(spec).map(|_| ()),
        (None, Some(_)) => {
            if spec.user.is_some() || spec.password.is_some() {
                return Err("`user` and `password` belong to `imap` mailboxes".into());
            }
            Ok(())
        }
    }
}

/// Builds the backend of a mailbox declaration.
pub fn build(name: &str, spec: &MailboxSpec) -> Result<Arc<dyn MailStore>, String> {
    validate(spec)?;
    match (&spec.imap, &spec.maildir) {
        (Some(_), _) => Ok(Arc::new(imap::ImapStore::build(name, spec)?)),
        (_, Some(path)) => Ok(Arc::new(maildir::MaildirStore::new(
            name,
            PathBuf::from(path.expose()),
            spec,
        ))),
        (None, None) => Err("no backend".into()),
    }
}

/// A mailbox backend: opens sessions.
pub trait MailStore: Send + Sync {
    /// What the mailbox is, for messages: `imap support@mail.example.ru` or `maildir /var/mail/x`.
    fn describe(&self) -> String;
    /// How long to wait between searches when the session cannot notify changes.
    fn poll_interval(&self) -> Duration;
    /// Connects and logs in.
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn MailSession>, MailboxError>>;
}

/// An open connection to a mailbox.
pub trait MailSession: Send {
    /// Messages in the watched and spam folders that arrived at or after `since` and that this
    /// session has not returned before.
    fn list_new(
        &mut self,
        since: SystemTime,
    ) -> BoxFuture<'_, Result<Vec<MessageRef>, MailboxError>>;
    /// The raw RFC 5322 bytes of a message; `None` when it is gone or larger than `max_message`.
    fn fetch<'a>(
        &'a mut self,
        message: &'a MessageRef,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, MailboxError>>;
    /// Deletes a message for good (IMAP: flag `\Deleted` and expunge it).
    fn delete<'a>(&'a mut self, message: &'a MessageRef)
    -> BoxFuture<'a, Result<(), MailboxError>>;
    /// Waits until the mailbox changes, `max` passes or `wake` is notified, whichever is first.
    fn wait_for_change<'a>(
        &'a mut self,
        max: Duration,
        wake: &'a Notify,
    ) -> BoxFuture<'a, Result<(), MailboxError>>;
    /// Storage quota of the watched folders' root; `None` when the server has no QUOTA.
    fn quota(&mut self) -> BoxFuture<'_, Result<Option<Quota>, MailboxError>>;
    /// Logs out politely.
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A message found by [`MailSession::list_new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    /// Folder it is in.
    pub folder: String,
    /// Whether that folder is a spam folder.
    pub spam: bool,
    /// Backend identity: IMAP UID or the Maildir file name.
    pub id: MessageId,
    /// When the server stored it (IMAP INTERNALDATE, Maildir file time).
    pub arrived: Option<SystemTime>,
    /// Size in bytes, when known before fetching.
    pub size: Option<u64>,
}

/// Identity of a message within its folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageId {
    /// IMAP UID (with the folder's UIDVALIDITY).
    Uid {
        /// UIDVALIDITY of the folder when the UID was read.
        validity: u32,
        /// The UID.
        uid: u32,
    },
    /// A Maildir file.
    Path(PathBuf),
}

/// Storage quota usage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// Used, in bytes.
    pub used: u64,
    /// Limit, in bytes.
    pub limit: u64,
}

impl Quota {
    /// Used / limit, 0 when there is no limit.
    pub fn ratio(&self) -> f64 {
        if self.limit == 0 {
            0.0
        } else {
            self.used as f64 / self.limit as f64
        }
    }
}

/// Why a mailbox could not be read. Messages name the mailbox and never contain a password.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MailboxError {
    /// TCP connect failed.
    #[error("{what}: connect to {addr} failed: {reason}")]
    Connect {
        /// The mailbox, e.g. `imap support@mail.example.ru`.
        what: String,
        /// `host:port`.
        addr: String,
        /// The cause.
        reason: String,
    },
    /// TLS (or STARTTLS) failed.
    #[error("{what}: TLS with {addr} failed: {reason}")]
    Tls {
        /// The mailbox.
        what: String,
        /// `host:port`.
        addr: String,
        /// The cause.
        reason: String,
    },
    /// The server refused the credentials.
    #[error("imap login to {user} failed: {reason}")]
    Login {
        /// The login name.
        user: String,
        /// The server's answer, e.g. `authentication rejected`.
        reason: String,
    },
    /// A folder from the config does not exist.
    #[error("{what}: folder `{folder}` does not exist")]
    NoFolder {
        /// The mailbox.
        what: String,
        /// The folder.
        folder: String,
    },
    /// The server broke protocol or the connection dropped.
    #[error("{what}: {reason}")]
    Protocol {
        /// The mailbox.
        what: String,
        /// The cause.
        reason: String,
    },
    /// A local Maildir could not be read or changed.
    #[error("{what}: {reason}")]
    Io {
        /// The mailbox.
        what: String,
        /// The cause.
        reason: String,
    },
}

impl MailboxError {
    /// The bounded failure class of a run that could not read its mailbox.
    pub fn failure_kind(&self) -> crate::outcome::FailureKind {
        use crate::outcome::FailureKind;
        match self {
            MailboxError::Connect { .. } => FailureKind::Connect,
            MailboxError::Tls { .. } => FailureKind::Tls,
            MailboxError::Login { .. }
            | MailboxError::NoFolder { .. }
            | MailboxError::Protocol { .. }
            | MailboxError::Io { .. } => FailureKind::Mailbox,
        }
    }
}
