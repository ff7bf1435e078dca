//! Test mail that turns up after its run gave up on it.
//!
//! When a run ends without finding its message (not delivered in time, or the mailbox could not
//! be read), the message may still be on its way: a mail server deferred it during an outage and
//! delivers it hours later, where support staff would see it. So the run leaves its token here,
//! per mailbox, for at least a day. Every look at that mailbox — a run's wait, or the daemon's
//! periodic sweep — deletes any message that carries a remembered token (the test mail itself,
//! or an auto-reply quoting it in its subject or `In-Reply-To`), and forgets the token.
//!
//! This module keeps the tokens in memory and reports every change to a [`LateJournal`]; the
//! daemon's journal writes them to its database (so a restart does not forget them) and counts
//! the deletions. Without a journal (`supportwatch check`) they live as long as the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// How long a token is remembered by default (`storage.late_mail_for`): a deferred mail is
/// usually retried for days, but a day covers the outages that matter and bounds what is kept.
pub const REMEMBER_FOR: Duration = Duration::from_secs(24 * 3600);

/// A token of a run whose message was not found, in one mailbox.
#[derive(Debug, Clone, PartialEq)]
pub struct LateToken {
    /// The mailbox (name under `mailboxes:`).
    pub mailbox: String,
    /// The run's token.
    pub token: String,
    /// The check that sent it, for the log.
    pub check: String,
    /// When the run submitted it.
    pub sent_at: SystemTime,
    /// When it is forgotten even if nothing carrying it turned up.
    pub expires_at: SystemTime,
}

/// Why a token was forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgotten {
    /// Messages carrying it were deleted.
    Deleted {
        /// How many (the mail, and any auto-reply or bounce quoting the token).
        messages: usize,
    },
    /// A run's own wait found (and handled) the message.
    Found,
    /// Nothing carrying it turned up before it expired.
    Expired,
}

/// A change to the remembered tokens.
#[derive(Debug, Clone, PartialEq)]
pub enum LateChange {
    /// A token to remember.
    Remembered(LateToken),
    /// A token forgotten, and why.
    Forgotten {
        /// The token as it was remembered.
        token: LateToken,
        /// Why.
        why: Forgotten,
    },
}

/// Where changes go: the daemon's database writer. Called with the memory's lock released; must
/// not block (hand the change to a task).
pub trait LateJournal: Send + Sync {
    /// Records one change.
    fn record(&self, change: LateChange);
}

/// The remembered tokens of every mailbox. One per process (the daemon's survives reloads), shared
/// by every watcher through [`crate::deliver::Mailboxes`].
#[derive(Default)]
pub struct LateMail {
    /// Mailbox → token → what is remembered of it.
    tokens: Mutex<HashMap<String, HashMap<String, LateToken>>>,
    /// Set once the daemon's database is open (after the config that names it was read).
    journal: OnceLock<Arc<dyn LateJournal>>,
    /// How long new tokens are remembered, when not [`REMEMBER_FOR`] (the config's setting).
    remember_for: Mutex<Option<Duration>>,
}

impl LateMail {
    /// Tokens remembered in memory only.
    pub fn new() -> Self {
        LateMail::default()
    }

    /// Sends every change from now on to `journal`, and remembers `restored` (read back from
    /// it). Only the first call attaches; `false` for a later one.
    pub fn attach(&self, journal: Arc<dyn LateJournal>, restored: Vec<LateToken>) -> bool {
        if self.journal.set(journal).is_err() {
            return false;
        }
        let mut tokens = self.lock();
        for t in restored {
            tokens
                .entry(t.mailbox.clone())
                .or_default()
                .insert(t.token.clone(), t);
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, LateToken>>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, change: LateChange) {
        if let Some(journal) = self.journal.get() {
            journal.record(change);
        }
    }

    /// Remembers tokens from now on for `period` (tokens already remembered keep their expiry).
    pub fn set_remember_for(&self, period: Duration) {
        *self.remember_for.lock().unwrap_or_else(|e| e.into_inner()) = Some(period);
    }

    /// Remembers `token` of `check`, sent at `sent_at`, in `mailbox` for [`REMEMBER_FOR`] (or
    /// as set) from now.
    pub fn remember(&self, mailbox: &str, token: &str, check: &str, sent_at: SystemTime) {
        let period = self
            .remember_for
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or(REMEMBER_FOR);
        let entry = LateToken {
            mailbox: mailbox.to_string(),
            token: token.to_string(),
            check: check.to_string(),
            sent_at,
            expires_at: SystemTime::now() + period,
        };
        let fresh = self
            .lock()
            .entry(mailbox.to_string())
            .or_default()
            .insert(token.to_string(), entry.clone())
            .is_none();
        if fresh {
            self.record(LateChange::Remembered(entry));
        }
    }

    /// Forgets `token` in `mailbox`, returning what was remembered of it.
    pub fn forget(&self, mailbox: &str, token: &str, why: Forgotten) -> Option<LateToken> {
        let taken = {
            let mut tokens = self.lock();
            let list = tokens.get_mut(mailbox)?;
            let taken = list.remove(token);
            if list.is_empty() {
                tokens.remove(mailbox);
            }
            taken
        }?;
        self.record(LateChange::Forgotten {
            token: taken.clone(),
            why,
        });
        Some(taken)
    }

    /// Forgets every token that expired by `now`; returns how many.
    pub fn expire(&self, now: SystemTime) -> usize {
        let expired: Vec<LateToken> = {
            let mut tokens = self.lock();
            let mut expired = Vec::new();
            tokens.retain(|_, list| {
                list.retain(|_, t| {
                    let keep = t.expires_at > now;
                    if !keep {
                        expired.push(t.clone());
                    }
                    keep
                });
                !list.is_empty()
            });
            expired
        };
        for token in &expired {
            tracing::info!(
                mailbox = %token.mailbox,
                check = %token.check,
                "test mail never turned up; its token is forgotten"
            );
            self.record(LateChange::Forgotten {
                token: token.clone(),
                why: Forgotten::Expired,
            });
        }
        expired.len()
    }

    /// Whether `token` is remembered in `mailbox`.
    pub fn contains(&self, mailbox: &str, token: &str) -> bool {
        self.lock()
            .get(mailbox)
            .is_some_and(|list| list.contains_key(token))
    }

    /// When the oldest token remembered in `mailbox` was sent: a look at the mailbox must reach
    /// back that far.
    pub fn oldest(&self, mailbox: &str) -> Option<SystemTime> {
        self.lock()
            .get(mailbox)
            .and_then(|list| list.values().map(|t| t.sent_at).min())
    }

    /// Mailboxes with remembered tokens.
    pub fn mailboxes(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Every remembered token (what the journal's catch-up writes).
    pub fn snapshot(&self) -> Vec<LateToken> {
        self.lock()
            .values()
            .flat_map(|list| list.values().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<LateChange>>);

    impl LateJournal for Recorder {
        fn record(&self, change: LateChange) {
            self.0.lock().expect("recorder lock").push(change);
        }
    }

    #[test]
    fn remembers_forgets_and_expires_with_every_change_journaled_once() {
        let journal = Arc::new(Recorder::default());
        let late = LateMail::new();
        assert!(late.attach(journal.clone(), Vec::new()));
        assert!(!late.attach(journal.clone(), Vec::new()), "attached once");
        let sent = SystemTime::now() - Duration::from_secs(60);
        late.remember("support", "sw-a-1-00000001", "a", sent);
        late.remember("support", "sw-a-1-00000001", "a", sent);
        late.remember("customer", "sw-a-1-00000001", "a", sent);
        late.remember(
            "support",
            "sw-b-1-00000002",
            "b",
            sent - Duration::from_secs(5),
        );
        assert_eq!(late.oldest("support"), Some(sent - Duration::from_secs(5)));
        assert!(late.contains("customer", "sw-a-1-00000001"));
        let forgotten = late
            .forget(
                "support",
                "sw-a-1-00000001",
                Forgotten::Deleted { messages: 1 },
            )
            .expect("it was remembered");
        assert_eq!(forgotten.check, "a");
        assert!(
            late.forget(
                "support",
                "sw-a-1-00000001",
                Forgotten::Deleted { messages: 1 }
            )
            .is_none()
        );
        assert_eq!(late.expire(SystemTime::now()), 0);
        assert_eq!(
            late.expire(SystemTime::now() + REMEMBER_FOR + Duration::from_secs(1)),
            2
        );
        assert!(late.mailboxes().is_empty());
        let changes = journal.0.lock().expect("recorder lock");
        let kinds: Vec<_> = changes
            .iter()
            .map(|c| match c {
                LateChange::Remembered(t) => format!("+{}", t.mailbox),
                LateChange::Forgotten { token, why } => format!("-{} {why:?}", token.mailbox),
            })
            .collect();
        assert_eq!(kinds.len(), 6, "{kinds:?}");
        assert_eq!(
            &kinds[..4],
            [
                "+support",
                "+customer",
                "+support",
                "-support Deleted { messages: 1 }"
            ]
        );
        assert!(
            kinds[4..].iter().all(|k| k.ends_with("Expired")),
            "{kinds:?}"
        );
    }
}
