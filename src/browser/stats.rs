//! Process-wide counters of the browser pool, read by `metrics` at scrape time.
//!
//! They are statics rather than fields of [`super::Browser`] because a config reload builds a new
//! `Browser` while runs of the old one finish: the exported numbers must cover both, and a
//! counter must not restart from zero on reload.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

static ACTIVE: AtomicI64 = AtomicI64::new(0);
static WAITING: AtomicI64 = AtomicI64::new(0);
static RESTARTS: AtomicU64 = AtomicU64::new(0);
static ARTIFACTS: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the pool's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Browser sessions open now.
    pub sessions_active: u64,
    /// Runs waiting for a free session slot now.
    pub sessions_waiting: u64,
    /// chromedriver processes replaced because they died or stopped answering.
    pub driver_restarts: u64,
    /// Failure evidence sets (screenshot and/or page source) written.
    pub artifacts_written: u64,
}

/// The pool's numbers now, across every `Browser` in the process.
pub fn pool_stats() -> PoolStats {
    let gauge = |g: &AtomicI64| u64::try_from(g.load(Ordering::Relaxed)).unwrap_or(0);
    PoolStats {
        sessions_active: gauge(&ACTIVE),
        sessions_waiting: gauge(&WAITING),
        driver_restarts: RESTARTS.load(Ordering::Relaxed),
        artifacts_written: ARTIFACTS.load(Ordering::Relaxed),
    }
}

pub(crate) fn driver_restarted() {
    RESTARTS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn artifacts_written() {
    ARTIFACTS.fetch_add(1, Ordering::Relaxed);
}

/// Counts one run waiting for a slot while alive; a guard, so a run whose future is dropped
/// mid-wait (timeout) is uncounted too.
pub(crate) struct Waiting(());

impl Waiting {
    pub(crate) fn enter() -> Self {
        WAITING.fetch_add(1, Ordering::Relaxed);
        Waiting(())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one open session while alive (held by the session's lease, so it is uncounted only
/// once the browser is really gone).
pub(crate) struct Active(());

impl Active {
    pub(crate) fn enter() -> Self {
        ACTIVE.fetch_add(1, Ordering::Relaxed);
        Active(())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::Relaxed);
    }
}
