//! An open IMAP session: lists new mail in the watched and spam folders, fetches and deletes it,
//! reads the quota, and waits for changes with IDLE (or a plain sleep).
//!
//! Finding new mail does not rely on server-side text search (the watcher decodes bodies
//! itself): `UID SEARCH SINCE <a day early>` narrows each folder to recent mail, INTERNALDATE
//! decides exactly, and what this session already returned is remembered per folder and
//! UIDVALIDITY. The date and size of each UID are fetched once and kept, so a busy inbox costs
//! one SEARCH per folder and look, not a FETCH of the whole day's mail.
//!
//! A command that times out or breaks the connection leaves async-imap's reader in an unknown
//! state, so the session is then dropped: every later call fails at once and the watcher
//! reconnects.

use super::connect::{Caps, describe_error, login, timed_out};
use super::folders::{self, Folder, Listed};
use super::wire::Wire;
use super::{COMMAND_TIMEOUT, IDLE_MAX, ImapStore, LOGOUT_TIMEOUT};
use crate::mailbox::{MailSession, MailStore, MailboxError, MessageId, MessageRef, Quota};
use async_imap::Session;
use async_imap::error::Error as ImapError;
use async_imap::types::{Mailbox, NameAttribute, QuotaResourceName};
use futures::TryStreamExt;
use futures::future::BoxFuture;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio::time::error::Elapsed;

/// UIDs per `UID FETCH` of dates and sizes, to keep command lines short.
const FETCH_CHUNK: usize = 500;

/// An authenticated connection to one mailbox.
pub(crate) struct ImapSession {
    what: String,
    /// `None` once the connection is lost (or given to IDLE and not returned).
    conn: Option<Session<Wire>>,
    caps: Caps,
    /// Wait with IDLE: wanted by the config and offered by the server.
    use_idle: bool,
    /// Watched folders first, then spam folders.
    folders: Vec<Folder>,
    /// Per folder (wire name): what this session knows about its recent mail.
    known: HashMap<String, FolderState>,
    /// The selected folder (wire name) and its UIDVALIDITY.
    selected: Option<(String, u32)>,
    /// UIDNEXT of the first watched folder as of the last look: IDLE only reports what arrives
    /// after it starts, so mail that came in between is noticed by comparing.
    idle_uid_next: Option<u32>,
    max_message: u64,
}

#[derive(Default)]
struct FolderState {
    validity: u32,
    /// INTERNALDATE and RFC822.SIZE of recent UIDs.
    meta: HashMap<u32, Meta>,
    /// UIDs already returned by `list_new`.
    returned: HashSet<u32>,
}

#[derive(Clone, Copy)]
struct Meta {
    arrived: Option<SystemTime>,
    size: Option<u64>,
}

/// The error of a call on a session whose connection is gone.
fn lost(what: &str) -> MailboxError {
    MailboxError::Protocol {
        what: what.to_string(),
        reason: "the IMAP connection was lost after an earlier error".into(),
    }
}

/// What one bounded command came to, before it is judged by [`ImapSession::settle`].
type Attempt<T> = Result<async_imap::error::Result<T>, Elapsed>;

impl ImapSession {
    /// Connects, logs in and finds the folders to search.
    pub(super) async fn open(store: &ImapStore) -> Result<Self, MailboxError> {
        let (conn, caps) = login(store).await?;
        store.log_idle_choice(caps.idle);
        let mut session = ImapSession {
            what: store.describe(),
            conn: Some(conn),
            caps,
            use_idle: store.idle && caps.idle,
            folders: Vec::new(),
            known: HashMap::new(),
            selected: None,
            idle_uid_next: None,
            max_message: store.max_message,
        };
        let listed = session.list_folders().await?;
        match folders::resolve(&listed, &store.folders, store.spam_folders.as_deref()) {
            Ok(found) => session.folders = found,
            Err(folder) => {
                let what = session.what.clone();
                MailSession::close(Box::new(session)).await;
                return Err(MailboxError::NoFolder { what, folder });
            }
        }
        tracing::debug!(
            mailbox = %session.what,
            folders = ?session.folders.iter().map(|f| &f.name).collect::<Vec<_>>(),
            "imap session open"
        );
        Ok(session)
    }

    /// Judges a bounded command. A timeout or a broken connection also ends the session: its
    /// responses may still be on their way and would be read as answers to the next command.
    fn settle<T>(&mut self, command: &str, attempt: Attempt<T>) -> Result<T, MailboxError> {
        let reason = match attempt {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e @ (ImapError::No(_) | ImapError::Bad(_)))) => {
                format!("{command} failed: {}", describe_error(&e))
            }
            Ok(Err(e)) => {
                self.drop_connection();
                format!("{command} failed: {}", describe_error(&e))
            }
            Err(_) => {
                self.drop_connection();
                format!("{command} {}", timed_out(COMMAND_TIMEOUT))
            }
        };
        Err(MailboxError::Protocol {
            what: self.what.clone(),
            reason,
        })
    }

    fn drop_connection(&mut self) {
        self.conn = None;
        self.selected = None;
    }

    /// `LIST "" *`: every folder with its `\Junk` and `\Noselect` marks.
    async fn list_folders(&mut self) -> Result<Vec<Listed>, MailboxError> {
        let conn = self.conn.as_mut().ok_or_else(|| lost(&self.what))?;
        let attempt = tokio::time::timeout(COMMAND_TIMEOUT, async {
            let names: Vec<_> = conn.list(Some(""), Some("*")).await?.try_collect().await?;
            Ok(names
                .iter()
                .map(|n| Listed {
                    wire: n.name().to_string(),
                    junk: n.attributes().contains(&NameAttribute::Junk),
                    noselect: n.attributes().contains(&NameAttribute::NoSelect),
                })
                .collect())
        })
        .await;
        self.settle("LIST", attempt)
    }

    /// SELECTs `folder` (read-write: test mail is deleted later). `Ok(None)` when the server
    /// says it does not exist.
    async fn select(&mut self, folder: &Folder) -> Result<Option<Mailbox>, MailboxError> {
        let conn = self.conn.as_mut().ok_or_else(|| lost(&self.what))?;
        // A failed SELECT leaves no folder selected (RFC 3501 §6.3.1).
        self.selected = None;
        let attempt = tokio::time::timeout(COMMAND_TIMEOUT, conn.select(&folder.wire)).await;
        if let Ok(Err(ImapError::No(_))) = attempt {
            return Ok(None);
        }
        let mailbox = self.settle(&format!("SELECT {}", folder.name), attempt)?;
        self.selected = Some((folder.wire.clone(), mailbox.uid_validity.unwrap_or(0)));
        Ok(Some(mailbox))
    }

    /// SELECTs `folder` unless it is selected already; its UIDVALIDITY, `None` when the folder
    /// is gone.
    async fn ensure_selected(&mut self, folder: &Folder) -> Result<Option<u32>, MailboxError> {
        if let Some((wire, validity)) = &self.selected
            && *wire == folder.wire
        {
            return Ok(Some(*validity));
        }
        Ok(self
            .select(folder)
            .await?
            .map(|m| m.uid_validity.unwrap_or(0)))
    }

    fn folder_named(&self, name: &str) -> Option<Folder> {
        self.folders.iter().find(|f| f.name == name).cloned()
    }

    fn no_folder(&self, folder: &Folder) -> MailboxError {
        MailboxError::NoFolder {
            what: self.what.clone(),
            folder: folder.name.clone(),
        }
    }

    /// New mail of one folder.
    async fn list_folder(
        &mut self,
        folder: &Folder,
        search: &str,
        since: SystemTime,
        found: &mut Vec<MessageRef>,
    ) -> Result<(), MailboxError> {
        let Some(mailbox) = self.select(folder).await? else {
            if folder.required {
                return Err(self.no_folder(folder));
            }
            // A guessed spam folder that went away only means nothing can be filed there.
            tracing::debug!(mailbox = %self.what, folder = %folder.name, "spam folder is gone");
            return Ok(());
        };
        let validity = mailbox.uid_validity.unwrap_or(0);
        let conn = self.conn.as_mut().ok_or_else(|| lost(&self.what))?;
        let attempt = tokio::time::timeout(COMMAND_TIMEOUT, conn.uid_search(search)).await;
        let uids = self.settle("UID SEARCH", attempt)?;
        let mut uids: Vec<u32> = uids.into_iter().collect();
        uids.sort_unstable();

        let state = self.known.entry(folder.wire.clone()).or_default();
        if state.validity != validity {
            // New UIDVALIDITY: old UIDs mean nothing any more.
            *state = FolderState {
                validity,
                ..FolderState::default()
            };
        }
        // Forget what left the search window (expunged, or older than a day before `since`).
        let current: HashSet<u32> = uids.iter().copied().collect();
        state.meta.retain(|uid, _| current.contains(uid));
        state.returned.retain(|uid| current.contains(uid));
        let unknown: Vec<u32> = uids
            .iter()
            .copied()
            .filter(|uid| !state.returned.contains(uid) && !state.meta.contains_key(uid))
            .collect();

        for chunk in unknown.chunks(FETCH_CHUNK) {
            let set = folders::uid_set(chunk);
            let conn = self.conn.as_mut().ok_or_else(|| lost(&self.what))?;
            let attempt = tokio::time::timeout(COMMAND_TIMEOUT, async {
                conn.uid_fetch(&set, "(UID INTERNALDATE RFC822.SIZE)")
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await;
            let fetches = self.settle("UID FETCH", attempt)?;
            let state = self.known.entry(folder.wire.clone()).or_default();
            for f in fetches {
                // Unsolicited FETCH responses (someone changed flags meanwhile) may come along;
                // only answers to this request, which carry the date or size, count.
                let Some(uid) = f.uid.filter(|uid| chunk.binary_search(uid).is_ok()) else {
                    continue;
                };
                if f.internal_date().is_none() && f.size.is_none() {
                    continue;
                }
                let arrived = f.internal_date().map(|d| {
                    let secs = d.timestamp();
                    match u64::try_from(secs) {
                        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s),
                        Err(_) => SystemTime::UNIX_EPOCH,
                    }
                });
                state.meta.insert(
                    uid,
                    Meta {
                        arrived,
                        size: f.size.map(u64::from),
                    },
                );
            }
        }

        let state = self.known.entry(folder.wire.clone()).or_default();
        for uid in &uids {
            if state.returned.contains(uid) {
                continue;
            }
            // No metadata: expunged between SEARCH and FETCH.
            let Some(meta) = state.meta.get(uid).copied() else {
                continue;
            };
            // INTERNALDATE has whole seconds, so it stands for its whole second: mail stored
            // in the second `since` falls in is kept. Older mail is not marked returned: a
            // later look with an earlier `since` (a run that submitted long ago) must see it.
            if meta
                .arrived
                .is_some_and(|a| a + Duration::from_secs(1) <= since)
            {
                continue;
            }
            state.returned.insert(*uid);
            found.push(MessageRef {
                folder: folder.name.clone(),
                spam: folder.spam,
                id: MessageId::Uid {
                    validity,
                    uid: *uid,
                },
                arrived: meta.arrived,
                size: meta.size,
            });
        }
        if self.folders.first().is_some_and(|f| f.wire == folder.wire) {
            let after_found = uids.last().map(|u| u.saturating_add(1));
            self.idle_uid_next = mailbox.uid_next.max(after_found);
        }
        Ok(())
    }

    /// IDLE on the first watched folder until something happens there, `max` passes or `wake`
    /// is notified.
    async fn idle(&mut self, max: Duration, wake: &Notify) -> Result<(), MailboxError> {
        let Some(folder) = self.folders.first().cloned() else {
            return Ok(());
        };
        let Some(mailbox) = self.select(&folder).await? else {
            return Err(self.no_folder(&folder));
        };
        if let (Some(before), Some(now)) = (self.idle_uid_next, mailbox.uid_next)
            && now > before
        {
            // Mail arrived after the last look and before IDLE could report it.
            return Ok(());
        }
        let conn = self.conn.take().ok_or_else(|| lost(&self.what))?;
        // Responses nobody asked for (EXISTS, FETCH flags) pile up in async-imap's channel; the
        // SEARCH that follows a wake-up finds what they announce, so they are discarded.
        while conn.unsolicited_responses.try_recv().is_ok() {}
        let mut handle = conn.idle();
        match tokio::time::timeout(COMMAND_TIMEOUT, handle.init()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.selected = None;
                return Err(MailboxError::Protocol {
                    what: self.what.clone(),
                    reason: format!("IDLE failed: {}", describe_error(&e)),
                });
            }
            Err(_) => {
                self.selected = None;
                return Err(MailboxError::Protocol {
                    what: self.what.clone(),
                    reason: format!("IDLE {}", timed_out(COMMAND_TIMEOUT)),
                });
            }
        }
        let outcome = {
            // The server's news, our deadline and a wake-up from the watcher (a new wait, or
            // shutdown) race; whichever comes first ends the IDLE. async-imap's own timeout
            // restarts on every keep-alive, so the sleep is what bounds the wait.
            let (news, _stop) = handle.wait_with_timeout(max);
            tokio::select! {
                r = news => r.map(|_| ()),
                _ = wake.notified() => Ok(()),
                _ = tokio::time::sleep(max) => Ok(()),
            }
        };
        if let Err(e) = outcome {
            self.selected = None;
            return Err(MailboxError::Protocol {
                what: self.what.clone(),
                reason: format!("IDLE failed: {}", describe_error(&e)),
            });
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, handle.done()).await {
            Ok(Ok(conn)) => {
                self.conn = Some(conn);
                Ok(())
            }
            Ok(Err(e)) => {
                self.selected = None;
                Err(MailboxError::Protocol {
                    what: self.what.clone(),
                    reason: format!("ending IDLE failed: {}", describe_error(&e)),
                })
            }
            Err(_) => {
                self.selected = None;
                Err(MailboxError::Protocol {
                    what: self.what.clone(),
                    reason: format!("ending IDLE {}", timed_out(COMMAND_TIMEOUT)),
                })
            }
        }
    }
}

impl MailSession for ImapSession {
    fn list_new(
        &mut self,
        since: SystemTime,
    ) -> BoxFuture<'_, Result<Vec<MessageRef>, MailboxError>> {
        Box::pin(async move {
            let search = format!("SINCE {}", folders::search_since(since));
            let mut found = Vec::new();
            for folder in self.folders.clone() {
                self.list_folder(&folder, &search, since, &mut found)
                    .await?;
            }
            found.sort_by_key(|m| m.arrived);
            Ok(found)
        })
    }

    fn fetch<'a>(
        &'a mut self,
        message: &'a MessageRef,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, MailboxError>> {
        Box::pin(async move {
            let MessageId::Uid { validity, uid } = message.id else {
                return Ok(None);
            };
            if message.size.is_some_and(|s| s > self.max_message) {
                return Ok(None);
            }
            let Some(folder) = self.folder_named(&message.folder) else {
                return Ok(None);
            };
            if self.ensure_selected(&folder).await? != Some(validity) {
                // The folder was deleted or rebuilt: the UID names nothing any more.
                return Ok(None);
            }
            // PEEK leaves \Seen alone, so support staff do not find test mail marked read; the
            // partial fetch bounds what a lying RFC822.SIZE could make us read.
            let query = match u32::try_from(self.max_message.saturating_add(1)) {
                Ok(limit) => format!("(UID BODY.PEEK[]<0.{limit}>)"),
                Err(_) => "(UID BODY.PEEK[])".to_string(),
            };
            let conn = self.conn.as_mut().ok_or_else(|| lost(&self.what))?;
            let attempt = tokio::time::timeout(COMMAND_TIMEOUT, async {
                conn.uid_fetch(uid.to_string(), &query)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await;
            let fetches = self.settle("UID FETCH BODY", attempt)?;
            // A flag update for the same message may come along without a body.
            let body = fetches
                .iter()
                .filter(|f| f.uid == Some(uid))
                .find_map(|f| f.body());
            Ok(match body {
                Some(raw) if raw.len() as u64 <= self.max_message => Some(raw.to_vec()),
                _ => None,
            })
        })
    }

    fn delete<'a>(
        &'a mut self,
        message: &'a MessageRef,
    ) -> BoxFuture<'a, Result<(), MailboxError>> {
        Box::pin(async move {
            let MessageId::Uid { validity, uid } = message.id else {
                return Ok(());
            };
            let Some(folder) = self.folder_named(&message.folder) else {
                return Ok(());
            };
            if self.ensure_selected(&folder).await? != Some(validity) {
                return Ok(());
            }
            let uid = uid.to_string();
            let conn = self.conn.as_mut().ok_or_else(|| lost(&self.what))?;
            let attempt = tokio::time::timeout(COMMAND_TIMEOUT, async {
                conn.uid_store(&uid, "+FLAGS.SILENT (\\Deleted)")
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await;
            self.settle("UID STORE \\Deleted", attempt)?;
            let uidplus = self.caps.uidplus;
            let conn = self.conn.as_mut().ok_or_else(|| lost(&self.what))?;
            // Without UIDPLUS, EXPUNGE also removes whatever else someone flagged \Deleted in
            // this folder and left there; that is what their own client would do next anyway.
            let attempt = tokio::time::timeout(COMMAND_TIMEOUT, async {
                if uidplus {
                    conn.uid_expunge(&uid).await?.try_collect::<Vec<_>>().await
                } else {
                    conn.expunge().await?.try_collect::<Vec<_>>().await
                }
            })
            .await;
            self.settle("EXPUNGE", attempt)?;
            Ok(())
        })
    }

    fn wait_for_change<'a>(
        &'a mut self,
        max: Duration,
        wake: &'a Notify,
    ) -> BoxFuture<'a, Result<(), MailboxError>> {
        Box::pin(async move {
            if self.conn.is_none() {
                return Err(lost(&self.what));
            }
            if self.use_idle {
                return self.idle(max.min(IDLE_MAX), wake).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(max) => {}
                _ = wake.notified() => {}
            }
            Ok(())
        })
    }

    fn quota(&mut self) -> BoxFuture<'_, Result<Option<Quota>, MailboxError>> {
        Box::pin(async move {
            if !self.caps.quota {
                return Ok(None);
            }
            let conn = self.conn.as_mut().ok_or_else(|| lost(&self.what))?;
            let attempt = tokio::time::timeout(COMMAND_TIMEOUT, conn.get_quota_root("INBOX")).await;
            let (_roots, quotas) = self.settle("GETQUOTAROOT", attempt)?;
            // STORAGE is counted in units of 1024 octets (RFC 2087).
            Ok(quotas
                .iter()
                .flat_map(|q| &q.resources)
                .find(|r| r.name == QuotaResourceName::Storage)
                .map(|r| Quota {
                    used: r.usage.saturating_mul(1024),
                    limit: r.limit.saturating_mul(1024),
                }))
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Some(mut conn) = self.conn {
                // Polite and best effort: the session is over either way.
                let _ = tokio::time::timeout(LOGOUT_TIMEOUT, conn.logout()).await;
            }
        })
    }
}
