//! Notifier and storage health as the alerting task last saw it, read by `/healthz`.
//!
//! Apart from the task because it is shared: the task writes it while the server reads it from
//! other tasks, through a std mutex that is never held across an await.

use crate::metrics::Metrics;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Notifier and storage health, for `/healthz`. The one record of whether a notifier works:
/// `supportwatch_notifier_up` is written from it, so the two never disagree (not even across a
/// reload).
pub struct Health {
    metrics: Arc<Metrics>,
    inner: Mutex<HealthInner>,
}

#[derive(Default)]
struct HealthInner {
    /// Notifier → the error of its last attempt, `None` while it works.
    notifiers: BTreeMap<String, Option<String>>,
    storage_error: Option<String>,
}

impl Health {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Health {
            metrics,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notifiers whose last attempt failed, with the error (scrubbed of the config's secrets:
    /// a mail server may quote the AUTH string it refused).
    pub fn failing_notifiers(&self) -> Vec<(String, String)> {
        self.lock()
            .notifiers
            .iter()
            .filter_map(|(name, e)| {
                let error = crate::value::redact::scrub_installed(e.as_deref()?);
                Some((name.clone(), error))
            })
            .collect()
    }

    /// Whether every configured notifier is failing.
    pub fn all_notifiers_failing(&self) -> bool {
        let inner = self.lock();
        !inner.notifiers.is_empty() && inner.notifiers.values().all(Option::is_some)
    }

    /// The last storage error, while storage fails.
    pub fn storage_error(&self) -> Option<String> {
        self.lock().storage_error.clone()
    }

    /// Keeps what is known of the notifiers that stay, forgets removed ones.
    pub(super) fn sync(&self, names: impl Iterator<Item = String>) {
        let mut inner = self.lock();
        let mut old = std::mem::take(&mut inner.notifiers);
        inner.notifiers = names
            .map(|n| {
                let last = old.remove(&n).flatten();
                (n, last)
            })
            .collect();
        self.metrics.sync_notifiers(
            inner
                .notifiers
                .iter()
                .map(|(name, error)| (name.as_str(), error.is_none())),
        );
    }

    pub(super) fn record(&self, notifier: &str, error: Option<String>) {
        let mut inner = self.lock();
        if let Some(last) = inner.notifiers.get_mut(notifier) {
            self.metrics
                .notifier_up
                .with_label_values(&[notifier])
                .set(i64::from(error.is_none()));
            *last = error;
        }
    }

    /// A write reached the disk at `now` (unix seconds): storage is healthy.
    pub(crate) fn storage_ok(&self, now: f64) {
        self.lock().storage_error = None;
        self.metrics.storage_healthy.set(1);
        self.metrics.storage_last_success.set(now);
    }

    /// A write of `operation` (one of [`crate::metrics::STORAGE_OPERATIONS`]) failed with `error`.
    pub(crate) fn storage_failed(&self, operation: &str, error: String) {
        self.lock().storage_error = Some(error);
        self.metrics.storage_healthy.set(0);
        self.metrics
            .storage_errors
            .with_label_values(&[operation])
            .inc();
    }
}
