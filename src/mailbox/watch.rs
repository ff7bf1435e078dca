//! One watcher per mailbox: a single session serves every run waiting for a token there.
//!
//! Runs register a wait (token, since, deadline) and get a oneshot answer. While anyone waits, one
//! background task keeps one session open: it lists messages that arrived since the oldest wait
//! began, decodes each once, remembers which tokens it carried, answers the waits it can, deletes
//! test mail that asked for cleanup, and then idles (IMAP IDLE) or sleeps until the next look.
//! When nobody waits any more it logs out. So a hundred checks delivering into one support inbox
//! cost one IMAP connection, not a hundred, and a message that arrived before its run started
//! waiting (fast mail, slow form) is still found, because tokens are remembered per message.
//!
//! Every look also deletes mail carrying a token of [`LateMail`] (runs that gave up on their
//! message), reaching back to when the oldest of them was sent; [`Watcher::sweep`] asks for one
//! such look when no run waits.

use super::late::{Forgotten, LateMail};
use super::{MailSession, MailStore, MailboxError, MailboxSpec, MessageRef, Quota, message};
use crate::value::Pattern;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Notify, oneshot};

/// Mail that arrived shortly before the submit still counts: clocks of the shop's mail server and
/// ours differ, and IMAP's SINCE has day granularity anyway.
const CLOCK_SKEW: Duration = Duration::from_secs(120);
/// Remembered tokens are forgotten after this long.
const REMEMBER_FOR: Duration = Duration::from_secs(3 * 3600);
/// Quota is read at most this often.
const QUOTA_EVERY: Duration = Duration::from_secs(60);
/// Reconnect attempts after a lost session are spaced at least this far apart.
const RECONNECT_PAUSE: Duration = Duration::from_secs(2);

/// What a run waits for.
#[derive(Debug, Clone)]
pub struct WaitRequest {
    /// The token the message must contain.
    pub token: String,
    /// When the message was sent (submit time); earlier mail is not considered.
    pub since: SystemTime,
    /// A pattern the decoded message must match as well (`deliver.match`, `auto_reply.body`).
    pub pattern: Option<Pattern>,
    /// Delete the message once found.
    pub cleanup: bool,
}

/// A delivery found.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Folder it was found in.
    pub folder: String,
    /// Found in a spam folder.
    pub spam: bool,
    /// When supportwatch first saw it.
    pub observed_at: SystemTime,
    /// When the server stored it (IMAP INTERNALDATE / Maildir file time), if known.
    pub arrived: Option<SystemTime>,
    /// Decoded subject.
    pub subject: String,
    /// Result of the cleanup, when it was asked for.
    pub cleanup: Option<Result<(), String>>,
    /// The mailbox's quota as last read, if the server reports one.
    pub quota: Option<Quota>,
    /// What the bounce says, when this is the answer to [`Watcher::wait_bounce`].
    pub bounce: Option<super::dsn::Dsn>,
}

/// Why a wait ended without a delivery.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed.
    #[error("not found before the deadline")]
    NotFound,
    /// The mailbox could not be read (the last error seen).
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
}

/// The watcher of one mailbox. Cheap to clone.
#[derive(Clone)]
pub struct Watcher {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    store: Arc<dyn MailStore>,
    max_message: u64,
    wake: Notify,
    state: Mutex<State>,
    /// Tokens of runs that gave up; mail carrying one is deleted at every look.
    late: Arc<LateMail>,
}

#[derive(Default)]
struct State {
    running: bool,
    waiters: Vec<Waiter>,
    /// Sweeps waiting for the next look to finish; answered with how much late mail it deleted.
    sweeps: Vec<oneshot::Sender<usize>>,
    /// Token → messages that carried it (usually one).
    seen: HashMap<String, Vec<Seen>>,
    quota: Option<Quota>,
    quota_read: Option<Instant>,
    quota_unsupported_logged: bool,
}

struct Waiter {
    request: WaitRequest,
    /// Waits for a bounce of the message (a DSN carrying the token), not the message itself.
    bounce: bool,
    deadline: Instant,
    reply: oneshot::Sender<Result<Delivered, WaitError>>,
}

#[derive(Clone)]
struct Seen {
    message: MessageRef,
    decoded: Arc<message::Decoded>,
    observed_at: SystemTime,
    claimed: bool,
}

impl Watcher {
    /// A watcher for `store`; no connection is made until someone waits.
    pub fn new(name: &str, store: Arc<dyn MailStore>, spec: &MailboxSpec) -> Self {
        Self::with_late_mail(name, store, spec, Arc::new(LateMail::new()))
    }

    /// [`Watcher::new`], deleting mail that carries a token remembered in `late`.
    pub fn with_late_mail(
        name: &str,
        store: Arc<dyn MailStore>,
        spec: &MailboxSpec,
        late: Arc<LateMail>,
    ) -> Self {
        Watcher {
            shared: Arc::new(Shared {
                name: name.to_string(),
                store,
                max_message: spec.max_message.0,
                wake: Notify::new(),
                state: Mutex::new(State::default()),
                late,
            }),
        }
    }

    /// The remembered tokens this watcher deletes mail for.
    pub fn late_mail(&self) -> &Arc<LateMail> {
        &self.shared.late
    }

    /// Looks at the mailbox once for late mail (joining the look of waiting runs, if any),
    /// returning how many messages it deleted; 0 when the mailbox could not be read.
    pub async fn sweep(&self) -> usize {
        let (reply, answer) = oneshot::channel();
        let spawn = {
            let mut state = self.shared.lock();
            state.sweeps.push(reply);
            !std::mem::replace(&mut state.running, true)
        };
        if spawn {
            // The same task a wait starts: one session per mailbox, whoever asks.
            tokio::spawn(run(self.shared.clone()));
        } else {
            self.shared.wake.notify_one();
        }
        answer.await.unwrap_or(0)
    }

    /// The mailbox's name under `mailboxes:`.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The quota as last read, if the server reports one.
    pub fn last_quota(&self) -> Option<Quota> {
        self.shared.lock().quota
    }

    /// What the mailbox is, for messages.
    pub fn describe(&self) -> String {
        self.shared.store.describe()
    }

    /// Waits until a message carrying `request.token` is found or `deadline` passes.
    pub async fn wait(
        &self,
        request: WaitRequest,
        deadline: Instant,
    ) -> Result<Delivered, WaitError> {
        self.enqueue(request, false, deadline).await
    }

    /// Waits until a delivery status notification that failed the message carrying
    /// `request.token` is found (its [`Delivered::bounce`] says why) or `deadline` passes. Watch
    /// the sender's mailbox with it, beside the delivery wait; dropping the future ends the wait.
    pub async fn wait_bounce(
        &self,
        request: WaitRequest,
        deadline: Instant,
    ) -> Result<Delivered, WaitError> {
        self.enqueue(request, true, deadline).await
    }

    async fn enqueue(
        &self,
        request: WaitRequest,
        bounce: bool,
        deadline: Instant,
    ) -> Result<Delivered, WaitError> {
        let (reply, answer) = oneshot::channel();
        let spawn = {
            let mut state = self.shared.lock();
            state.waiters.push(Waiter {
                request,
                bounce,
                deadline,
                reply,
            });
            !std::mem::replace(&mut state.running, true)
        };
        if spawn {
            // The mailbox's one background task; it runs while anyone waits.
            tokio::spawn(run(self.shared.clone()));
        } else {
            self.shared.wake.notify_one();
        }
        // The task always answers; a dropped sender would mean it panicked.
        answer.await.unwrap_or_else(|_| {
            Err(WaitError::Mailbox(MailboxError::Protocol {
                what: self.shared.store.describe(),
                reason: "mailbox watcher stopped unexpectedly".into(),
            }))
        })
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The watcher's task: runs while anyone waits.
async fn run(shared: Arc<Shared>) {
    let mut session: Option<Box<dyn MailSession>> = None;
    let mut last_error: Option<MailboxError> = None;
    let mut last_connect: Option<Instant> = None;
    let poll = shared.store.poll_interval();
    loop {
        let now = Instant::now();
        // Expire waits whose deadline passed; stop when nobody waits.
        let (pending_since, nearest_deadline) = {
            let mut state = shared.lock();
            expire(&mut state, now, &last_error);
            if state.waiters.is_empty() && state.sweeps.is_empty() {
                state.running = false;
                break;
            }
            let since = state
                .waiters
                .iter()
                .map(|w| w.request.since)
                .chain(shared.late.oldest(&shared.name))
                .min()
                .unwrap_or_else(SystemTime::now);
            let deadline = state.waiters.iter().map(|w| w.deadline).min();
            (since, deadline.unwrap_or(now))
        };
        if session.is_none() {
            if let Some(at) = last_connect {
                let pause = RECONNECT_PAUSE.saturating_sub(at.elapsed());
                tokio::time::sleep(pause.min(nearest_deadline.saturating_duration_since(now)))
                    .await;
            }
            last_connect = Some(Instant::now());
            match shared.store.open().await {
                Ok(s) => {
                    session = Some(s);
                }
                Err(e) => {
                    tracing::warn!(mailbox = %shared.name, error = %e, "cannot open mailbox");
                    let permanent = matches!(
                        e,
                        MailboxError::Login { .. } | MailboxError::NoFolder { .. }
                    );
                    last_error = Some(e.clone());
                    if permanent {
                        // Wrong credentials do not fix themselves before the deadline.
                        fail_all(&shared, &e);
                    }
                    // A sweep does not wait for the mailbox to come back; the next one retries.
                    shared.lock().sweeps.clear();
                    continue;
                }
            }
        }
        let Some(s) = session.as_mut() else { continue };
        match scan(
            &shared,
            s.as_mut(),
            pending_since
                .checked_sub(CLOCK_SKEW)
                .unwrap_or(pending_since),
        )
        .await
        {
            Ok(()) => last_error = None,
            Err(e) => {
                tracing::warn!(mailbox = %shared.name, error = %e, "mailbox session lost");
                last_error = Some(e);
                shared.lock().sweeps.clear();
                if let Some(s) = session.take() {
                    s.close().await;
                }
                continue;
            }
        }
        let Some(s) = session.as_mut() else { continue };
        // Deliver answers (with cleanup) for what the scan found.
        let mut to_delete = Vec::new();
        let ready = {
            let mut state = shared.lock();
            let mut ready = Vec::new();
            answer_waiters(&mut state, &mut ready);
            for (_, seen, cleanup) in &ready {
                if *cleanup {
                    to_delete.push(seen.message.clone());
                }
            }
            ready
        };
        let mut cleanup_results = Vec::new();
        for m in &to_delete {
            let r = s.delete(m).await.map_err(|e| e.to_string());
            if let Err(e) = &r {
                tracing::warn!(mailbox = %shared.name, error = %e, "could not delete test mail");
            }
            cleanup_results.push((m.clone(), r));
        }
        let swept = delete_late(&shared, s.as_mut()).await;
        // Read before the sweeps are answered, so that a sweep also leaves the quota known.
        let quota = read_quota(&shared, s.as_mut()).await;
        for sweep in std::mem::take(&mut shared.lock().sweeps) {
            let _ = sweep.send(swept);
        }
        for (waiter, seen, cleanup) in ready {
            let cleanup = cleanup.then(|| {
                cleanup_results
                    .iter()
                    .find(|(m, _)| *m == seen.message)
                    .map(|(_, r)| r.clone())
                    .unwrap_or(Ok(()))
            });
            let _ = waiter.reply.send(Ok(Delivered {
                folder: seen.message.folder.clone(),
                spam: seen.message.spam,
                observed_at: seen.observed_at,
                arrived: seen.message.arrived,
                subject: seen.decoded.subject.clone(),
                cleanup,
                quota,
                bounce: seen.decoded.dsn.clone(),
            }));
        }
        // Idle until the mailbox changes, a new wait arrives, or the next look is due.
        let wait = {
            let state = shared.lock();
            let nearest = state.waiters.iter().map(|w| w.deadline).min();
            match nearest {
                None => Duration::ZERO,
                Some(d) => poll.min(d.saturating_duration_since(Instant::now())),
            }
        };
        if !wait.is_zero()
            && let Err(e) = s.wait_for_change(wait, &shared.wake).await
        {
            tracing::warn!(mailbox = %shared.name, error = %e, "mailbox session lost while waiting");
            last_error = Some(e);
            if let Some(s) = session.take() {
                s.close().await;
            }
        }
    }
    if let Some(s) = session.take() {
        s.close().await;
    }
}

/// Lists and decodes new messages, remembering their tokens.
async fn scan(
    shared: &Shared,
    session: &mut dyn MailSession,
    since: SystemTime,
) -> Result<(), MailboxError> {
    let new = session.list_new(since).await?;
    for m in new {
        if m.size.is_some_and(|s| s > shared.max_message) {
            tracing::debug!(mailbox = %shared.name, folder = %m.folder, size = ?m.size, "skipping a message larger than max_message");
            continue;
        }
        let Some(raw) = session.fetch(&m).await? else {
            continue;
        };
        let decoded = Arc::new(message::decode(&raw));
        if decoded.tokens.is_empty() {
            continue;
        }
        let observed_at = SystemTime::now();
        let mut state = shared.lock();
        for token in &decoded.tokens {
            state.seen.entry(token.clone()).or_default().push(Seen {
                message: m.clone(),
                decoded: decoded.clone(),
                observed_at,
                claimed: false,
            });
        }
    }
    let mut state = shared.lock();
    let horizon = SystemTime::now()
        .checked_sub(REMEMBER_FOR)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    state.seen.retain(|_, v| {
        v.retain(|s| s.observed_at >= horizon);
        !v.is_empty()
    });
    Ok(())
}

/// Deletes the messages seen that carry a remembered token no run waits for, then forgets the
/// token; returns how many it deleted. A failed delete keeps the token for the next look.
async fn delete_late(shared: &Shared, session: &mut dyn MailSession) -> usize {
    let late: Vec<(String, Vec<MessageRef>)> = {
        let mut state = shared.lock();
        let waited: Vec<String> = state
            .waiters
            .iter()
            .map(|w| w.request.token.clone())
            .collect();
        let mut late = Vec::new();
        for (token, list) in state.seen.iter_mut() {
            if waited.contains(token) || !shared.late.contains(&shared.name, token) {
                continue;
            }
            // The mail itself, and any auto-reply or bounce quoting its token.
            let messages: Vec<MessageRef> = list
                .iter_mut()
                .filter(|s| !s.claimed)
                .map(|s| {
                    s.claimed = true;
                    s.message.clone()
                })
                .collect();
            if !messages.is_empty() {
                late.push((token.clone(), messages));
            }
        }
        late
    };
    let mut total = 0;
    for (token, messages) in late {
        let mut deleted = 0;
        for message in &messages {
            match session.delete(message).await {
                Ok(()) => deleted += 1,
                Err(e) => {
                    tracing::warn!(mailbox = %shared.name, error = %e, "could not delete late test mail");
                    if let Some(list) = shared.lock().seen.get_mut(&token) {
                        list.iter_mut()
                            .filter(|s| s.message == *message)
                            .for_each(|s| s.claimed = false);
                    }
                }
            }
        }
        if deleted == 0 {
            continue;
        }
        total += deleted;
        let why = Forgotten::Deleted { messages: deleted };
        if let Some(t) = shared.late.forget(&shared.name, &token, why) {
            let age = SystemTime::now()
                .duration_since(t.sent_at)
                .unwrap_or_default();
            tracing::info!(
                mailbox = %shared.name,
                check = %t.check,
                age = %crate::value::short_duration(age),
                messages = deleted,
                "late test mail deleted"
            );
        }
    }
    total
}

/// Moves waiters whose message is known into `ready`, claiming the message.
fn answer_waiters(state: &mut State, ready: &mut Vec<(Waiter, Seen, bool)>) {
    let mut i = 0;
    while i < state.waiters.len() {
        let request = &state.waiters[i].request;
        let bounce = state.waiters[i].bounce;
        let found = state.seen.get_mut(&request.token).and_then(|list| {
            list.iter_mut().find(|s| {
                // A bounce carries the token too, but is never the delivery or the reply.
                let kind_fits = match &s.decoded.dsn {
                    Some(dsn) => bounce && dsn.is_failure(),
                    None => !bounce,
                };
                !s.claimed
                    && kind_fits
                    && request
                        .pattern
                        .as_ref()
                        .is_none_or(|p| p.is_match(&s.decoded.text))
            })
        });
        match found {
            Some(seen) => {
                seen.claimed = true;
                let seen = seen.clone();
                let waiter = state.waiters.swap_remove(i);
                let cleanup = waiter.request.cleanup;
                ready.push((waiter, seen, cleanup));
            }
            None => i += 1,
        }
    }
}

fn expire(state: &mut State, now: Instant, last_error: &Option<MailboxError>) {
    let mut i = 0;
    while i < state.waiters.len() {
        // A closed reply is a wait given up (its run was answered otherwise): drop it, so the
        // session is not kept open for nobody.
        if state.waiters[i].deadline <= now || state.waiters[i].reply.is_closed() {
            let waiter = state.waiters.swap_remove(i);
            let answer = match last_error {
                Some(e) => Err(WaitError::Mailbox(e.clone())),
                None => Err(WaitError::NotFound),
            };
            let _ = waiter.reply.send(answer);
        } else {
            i += 1;
        }
    }
}

fn fail_all(shared: &Shared, error: &MailboxError) {
    let mut state = shared.lock();
    for waiter in state.waiters.drain(..) {
        let _ = waiter.reply.send(Err(WaitError::Mailbox(error.clone())));
    }
}

async fn read_quota(shared: &Shared, session: &mut dyn MailSession) -> Option<Quota> {
    {
        let state = shared.lock();
        if state.quota_read.is_some_and(|t| t.elapsed() < QUOTA_EVERY) {
            return state.quota;
        }
    }
    let result = session.quota().await;
    let mut state = shared.lock();
    state.quota_read = Some(Instant::now());
    match result {
        Ok(Some(q)) => state.quota = Some(q),
        Ok(None) => {
            state.quota = None;
            if !std::mem::replace(&mut state.quota_unsupported_logged, true) {
                tracing::info!(mailbox = %shared.name, "the server does not support QUOTA; mailbox quota is not exported");
            }
        }
        Err(e) => {
            tracing::warn!(mailbox = %shared.name, error = %e, "cannot read the mailbox quota");
        }
    }
    state.quota
}
