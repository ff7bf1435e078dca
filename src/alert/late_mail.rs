//! The daemon's keeper of late test mail: remembered tokens on disk, the periodic sweep, metrics.
//!
//! Runs remember the token of test mail they did not find in the process-wide
//! [`LateMail`] (see [`crate::mailbox::late`]); every look at a mailbox deletes mail carrying
//! one. This module makes that survive restarts and happen even when no run looks:
//!
//! - a writer task takes each change over a channel (runs never wait for the disk), writes
//!   batches to the `late_mail` table, and counts deletions and expiries. A failed write is
//!   logged, counted in `supportwatch_storage_errors_total{operation="late_mail"}` and shown in
//!   `/healthz`; the writer then retries by replacing the table with what memory holds.
//! - a sweep task, at start, after each reload and every [`SWEEP_EVERY`], forgets expired tokens
//!   and asks each mailbox that has tokens for one look (joining the look of waiting runs).

use super::service::Health;
use super::store::Store;
use crate::deliver::Mailboxes;
use crate::mailbox::late::{Forgotten, LateChange, LateJournal, LateMail};
use crate::metrics::Metrics;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How often mailboxes with remembered tokens are looked at when no run looks.
pub const SWEEP_EVERY: Duration = Duration::from_secs(300);
/// First retry after a failed write; doubled up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How long [`LateMailKeeper::stop`] waits for the last writes.
const FLUSH_WITHIN: Duration = Duration::from_secs(5);

enum Msg {
    Change(LateChange),
    /// Answered once everything before it is written (or the write failed).
    Flush(oneshot::Sender<()>),
}

/// Hands changes to the writer task; never blocks.
struct Journal {
    tx: mpsc::UnboundedSender<Msg>,
}

impl LateJournal for Journal {
    fn record(&self, change: LateChange) {
        // Fails only once the writer has stopped (shutdown): nothing is left to write to.
        let _ = self.tx.send(Msg::Change(change));
    }
}

/// The running writer and sweep.
pub struct LateMailKeeper {
    /// The tokens, to share with every config's mailboxes.
    pub late: Arc<LateMail>,
    tx: mpsc::UnboundedSender<Msg>,
    mailboxes: watch::Sender<Mailboxes>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl LateMailKeeper {
    /// Reads the remembered tokens from `store` into `late` and starts the writer and the sweep.
    pub fn start(
        late: Arc<LateMail>,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<Self, super::store::StoreError> {
        let restored = store.late_tokens()?;
        if !restored.is_empty() {
            tracing::info!(
                tokens = restored.len(),
                "watching for test mail that earlier runs did not find"
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        if !late.attach(Arc::new(Journal { tx: tx.clone() }), restored) {
            tracing::warn!("late test mail tokens already have a journal; not persisting twice");
        }
        metrics
            .mail_late_remembered
            .set(late.snapshot().len() as i64);
        let writer = Writer {
            store,
            metrics,
            health,
            late: Arc::downgrade(&late),
            behind: None,
        };
        // The writer owns the table; it ends when every sender is gone (the keeper and the
        // memory's journal).
        let writer = tokio::spawn(writer.run(rx));
        let (mailboxes, current) = watch::channel(Mailboxes::default());
        // The sweep follows the applied config's mailboxes; it ends with the keeper.
        let sweep = tokio::spawn(sweep(late.clone(), current));
        Ok(LateMailKeeper {
            late,
            tx,
            mailboxes,
            tasks: std::sync::Mutex::new(vec![writer, sweep]),
        })
    }

    /// Sweeps `mailboxes` from now on (a config was applied), starting with one sweep now, and
    /// remembers new tokens for `late_mail_for`.
    pub fn apply(&self, mailboxes: &Mailboxes, late_mail_for: Duration, metrics: &Metrics) {
        self.late.set_remember_for(late_mail_for);
        for name in mailboxes.names() {
            metrics.mail_late_deleted.with_label_values(&[name]);
            metrics.mail_late_expired.with_label_values(&[name]);
        }
        self.mailboxes.send_replace(mailboxes.clone());
    }

    /// Writes what is pending (bounded by a few seconds) and stops both tasks.
    pub async fn stop(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(FLUSH_WITHIN, written).await;
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
        }
    }
}

/// Sweeps at each config change and every [`SWEEP_EVERY`].
async fn sweep(late: Arc<LateMail>, mut current: watch::Receiver<Mailboxes>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A new config, or the period: whichever comes first.
        tokio::select! {
            changed = current.changed() => if changed.is_err() { break },
            _ = every.tick() => {}
        }
        late.expire(SystemTime::now());
        let mailboxes = current.borrow_and_update().clone();
        let deleted = mailboxes.sweep_late().await;
        tracing::debug!(deleted, "late test mail sweep done");
    }
}

struct Writer {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Weak: the memory holds the journal that feeds this task, which must end when it goes.
    late: Weak<LateMail>,
    /// After a failed write: when to retry, and the pause after that.
    behind: Option<(tokio::time::Instant, Duration)>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        loop {
            let next = match self.behind {
                None => rx.recv().await,
                Some((retry_at, _)) => {
                    // Behind: the next change, or the time to catch up.
                    tokio::select! {
                        msg = rx.recv() => msg,
                        _ = tokio::time::sleep_until(retry_at) => {
                            self.catch_up().await;
                            continue;
                        }
                    }
                }
            };
            let Some(first) = next else { break };
            let mut batch = Vec::new();
            let mut flushes = Vec::new();
            let mut msg = Some(first);
            while let Some(m) = msg {
                match m {
                    Msg::Change(change) => {
                        self.count(&change);
                        batch.push(change);
                    }
                    Msg::Flush(done) => flushes.push(done),
                }
                msg = rx.try_recv().ok();
            }
            if let Some(late) = self.late.upgrade() {
                self.metrics
                    .mail_late_remembered
                    .set(late.snapshot().len() as i64);
            }
            if self.behind.is_some() {
                if !flushes.is_empty() {
                    self.catch_up().await;
                }
            } else if !batch.is_empty() {
                self.write(batch).await;
            }
            for done in flushes {
                let _ = done.send(());
            }
        }
    }

    fn count(&self, change: &LateChange) {
        match change {
            LateChange::Forgotten { token, why } => match why {
                Forgotten::Deleted { messages } => self
                    .metrics
                    .mail_late_deleted
                    .with_label_values(&[token.mailbox.as_str()])
                    .inc_by(*messages as u64),
                Forgotten::Expired => self
                    .metrics
                    .mail_late_expired
                    .with_label_values(&[token.mailbox.as_str()])
                    .inc(),
                Forgotten::Found => {}
            },
            LateChange::Remembered(_) => {}
        }
    }

    async fn write(&mut self, batch: Vec<LateChange>) {
        let store = self.store.clone();
        // The blocking pool, so that a slow disk never stalls the runtime's workers.
        let result = tokio::task::spawn_blocking(move || store.write_late_changes(&batch)).await;
        self.settle(result, "writing late test mail tokens");
    }

    /// Replaces the table with what memory holds.
    async fn catch_up(&mut self) {
        let Some(late) = self.late.upgrade() else {
            self.behind = None;
            return;
        };
        let tokens = late.snapshot();
        let store = self.store.clone();
        // The blocking pool, as every write.
        let result = tokio::task::spawn_blocking(move || store.replace_late_tokens(&tokens)).await;
        if self.settle(result, "catching up late test mail tokens") {
            tracing::info!("storage works again; late test mail tokens written");
        }
    }

    /// Records the result of a write; whether it succeeded.
    fn settle(
        &mut self,
        result: Result<Result<(), super::store::StoreError>, tokio::task::JoinError>,
        what: &str,
    ) -> bool {
        let error = match result {
            Ok(Ok(())) => {
                self.behind = None;
                self.health
                    .storage_ok(super::engine::secs(SystemTime::now()));
                return true;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("{what} panicked: {e}"),
        };
        tracing::error!(
            error = %error,
            "{what} failed; late test mail is still deleted while supportwatch runs, and the \
             tokens are written when storage works again"
        );
        self.health.storage_failed("late_mail", error);
        let pause = match self.behind {
            None => RETRY_FIRST,
            Some((_, pause)) => (pause * 2).min(RETRY_MAX),
        };
        self.behind = Some((tokio::time::Instant::now() + pause, pause));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (up to 10 s) until `done` holds.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_refused_write_is_counted_and_shown_and_caught_up_later() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("sw.db")).expect("open"));
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new(metrics.clone()));
        let late = Arc::new(LateMail::new());
        let keeper =
            LateMailKeeper::start(late.clone(), store.clone(), metrics.clone(), health.clone())
                .expect("start");
        let errors = || {
            metrics
                .storage_errors
                .with_label_values(&["late_mail"])
                .get()
        };
        store.refuse_writes(true);
        let sent = SystemTime::now();
        late.remember(
            "support",
            "sw-support-mail-1-00000001",
            "support-mail",
            sent,
        );
        until("the failed write is counted", || errors() == 1).await;
        assert!(
            health.storage_error().is_some(),
            "/healthz shows the failure"
        );
        assert_eq!(metrics.storage_healthy.get(), 0);
        store.refuse_writes(false);
        until("the catch-up writes the token", || {
            store.late_tokens().is_ok_and(|t| t.len() == 1)
        })
        .await;
        assert!(health.storage_error().is_none());
        assert_eq!(metrics.mail_late_remembered.get(), 1);
        // A deletion is counted and forgets the token on disk too.
        late.forget(
            "support",
            "sw-support-mail-1-00000001",
            Forgotten::Deleted { messages: 2 },
        );
        keeper.stop().await;
        assert_eq!(
            metrics
                .mail_late_deleted
                .with_label_values(&["support"])
                .get(),
            2
        );
        assert_eq!(store.late_tokens().expect("read"), Vec::new());
        assert_eq!(errors(), 1, "no failure besides the refused write");
    }
}
