//! Each check's run slot, and the watchdog that notices when due runs are not being started.
//!
//! A [`RunSlot`] is the one place that knows whether a check has a run in progress (waiting for
//! its permits, or running) and when its ticker next wants to start one. Slots outlive a reload
//! for checks whose identity is unchanged, so a run still going across a reload keeps the next
//! one from overlapping it.
//!
//! The watchdog reads every slot once a second: the oldest run that is due but not started is
//! exported as `supportwatch_scheduler_oldest_overdue_seconds`; when a check's run has been due
//! for much longer than its interval (3 intervals, at least a minute), the scheduler is stalled —
//! logged at error level, `supportwatch_scheduler_stalled` 1, and `/healthz` answers 503 — until
//! runs start again. The decision ([`survey`]) takes the time as an argument, so it is tested
//! without waiting.

use crate::metrics::Metrics;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a check's slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No run in progress.
    Idle,
    /// A run due at this instant waits for its permits.
    Waiting(Instant),
    /// A run has its permits and is running.
    Running,
}

/// A snapshot of one slot, as the watchdog sees it.
#[derive(Debug, Clone, Copy)]
pub struct SlotView {
    /// What the slot is doing.
    pub phase: Phase,
    /// When the ticker wants to start the next run (None before its first tick is planned).
    pub next_due: Option<Instant>,
    /// The check's interval.
    pub interval: Duration,
}

/// One check's run state, shared by its ticker (across reloads) and its runs.
pub struct RunSlot {
    /// The check's name, for the watchdog's messages.
    pub name: Arc<str>,
    view: Mutex<SlotView>,
}

/// What the ticker may do at a due time.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// Start a run (the slot is now waiting for its permits).
    Start,
    /// A run is still waiting for permits; it counts this slot as skipped when it gives it up.
    StillWaiting,
    /// A run is still running: this one is skipped as an overlap.
    StillRunning,
}

impl RunSlot {
    /// An idle slot.
    pub fn new(name: Arc<str>, interval: Duration) -> Self {
        RunSlot {
            name,
            view: Mutex::new(SlotView {
                phase: Phase::Idle,
                next_due: None,
                interval,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotView> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot as it is now.
    pub fn view(&self) -> SlotView {
        *self.lock()
    }

    /// The ticker's plan: the next run is due at `due`, every `interval`.
    pub fn plan(&self, due: Instant, interval: Duration) {
        let mut view = self.lock();
        view.next_due = Some(due);
        view.interval = interval;
    }

    /// A run is due at `due`: starts one unless one is in progress.
    pub fn begin(&self, due: Instant) -> Begin {
        let mut view = self.lock();
        match view.phase {
            Phase::Idle => {
                view.phase = Phase::Waiting(due);
                Begin::Start
            }
            Phase::Waiting(_) => Begin::StillWaiting,
            Phase::Running => Begin::StillRunning,
        }
    }

    /// The waiting run gave up the slot due at its mark and now stands for the one due at `due`.
    pub fn rewait(&self, due: Instant) {
        let mut view = self.lock();
        if let Phase::Waiting(_) = view.phase {
            view.phase = Phase::Waiting(due);
        }
    }

    /// The waiting run has its permits.
    pub fn started(&self) {
        self.lock().phase = Phase::Running;
    }

    /// The run is over (or abandoned before starting): the next one may start.
    pub fn finished(&self) {
        self.lock().phase = Phase::Idle;
    }
}

/// A check whose due run has not started.
#[derive(Debug, Clone, PartialEq)]
pub struct Overdue {
    /// The check.
    pub check: Arc<str>,
    /// For how long its run has been due.
    pub overdue: Duration,
    /// Its interval.
    pub interval: Duration,
}

impl Overdue {
    /// Why the scheduler counts as stalled, for logs and `/healthz`.
    pub fn reason(&self) -> String {
        format!(
            "check {} has been due for {}s without starting (interval {}s)",
            self.check,
            self.overdue.as_secs(),
            self.interval.as_secs_f64()
        )
    }
}

/// What the watchdog found.
#[derive(Debug, Default, PartialEq)]
pub struct Survey {
    /// The run that has been due the longest without starting.
    pub oldest: Option<Overdue>,
    /// The most overdue check past its stall threshold, if any.
    pub stalled: Option<Overdue>,
}

/// How long a check's run may be due without starting before the scheduler counts as stalled:
/// three intervals, and never less than a minute (a busy host or a short queue behind a slow
/// endpoint is not a stall).
pub fn stall_threshold(interval: Duration) -> Duration {
    interval.saturating_mul(3).max(Duration::from_secs(60))
}

/// For how long the slot's run has been due without starting, at `now`.
fn overdue(view: &SlotView, now: Instant) -> Option<Duration> {
    // A waiting run stands for the slot due at its mark; a ticker that has not woken for its
    // planned time (a blocked runtime, a lost task) leaves `next_due` in the past.
    let since = match (view.phase, view.next_due) {
        (Phase::Waiting(due), Some(next)) => due.min(next),
        (Phase::Waiting(due), None) => due,
        (Phase::Idle | Phase::Running, Some(next)) => next,
        (Phase::Idle | Phase::Running, None) => return None,
    };
    now.checked_duration_since(since).filter(|d| !d.is_zero())
}

/// The oldest due run and any stall among `slots`, at `now`.
pub fn survey<'a>(
    slots: impl IntoIterator<Item = (&'a Arc<str>, SlotView)>,
    now: Instant,
) -> Survey {
    let mut found = Survey::default();
    for (check, view) in slots {
        let Some(late) = overdue(&view, now) else {
            continue;
        };
        let entry = Overdue {
            check: check.clone(),
            overdue: late,
            interval: view.interval,
        };
        if late > stall_threshold(view.interval)
            && found.stalled.as_ref().is_none_or(|s| late > s.overdue)
        {
            found.stalled = Some(entry.clone());
        }
        if found.oldest.as_ref().is_none_or(|o| late > o.overdue) {
            found.oldest = Some(entry);
        }
    }
    found
}

/// Surveys `slots()` every `period` until `stop`, exporting what it finds; logs when a stall
/// begins and when it ends.
pub async fn watch(
    slots: impl Fn() -> Vec<Arc<RunSlot>>,
    metrics: Arc<Metrics>,
    period: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(period);
    // After a pause (a blocked runtime) one survey is enough; a burst would say the same.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_stalled = false;
    loop {
        // The watchdog stops with the scheduler; each tick reads the slots under their own locks.
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let slots = slots();
        let found = survey(slots.iter().map(|s| (&s.name, s.view())), Instant::now());
        metrics.scheduler_oldest_overdue.set(
            found
                .oldest
                .as_ref()
                .map_or(0.0, |o| o.overdue.as_secs_f64()),
        );
        match &found.stalled {
            Some(stall) => {
                let reason = stall.reason();
                if !was_stalled {
                    tracing::error!(check = %stall.check, "scheduler stalled: {reason}");
                }
                metrics.set_scheduler_stall(Some(reason));
            }
            // Cleared only when a stall ends, so the watchdog writes nothing while all is well.
            None if was_stalled => {
                tracing::info!("scheduler no longer stalled: due runs are starting again");
                metrics.set_scheduler_stall(None);
            }
            None => {}
        }
        was_stalled = found.stalled.is_some();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(phase: Phase, next_due: Option<Instant>, interval_secs: u64) -> SlotView {
        SlotView {
            phase,
            next_due,
            interval: Duration::from_secs(interval_secs),
        }
    }

    #[test]
    fn nothing_due_is_nothing_overdue() {
        let t0 = Instant::now();
        let a: Arc<str> = Arc::from("a");
        let found = survey(
            [(&a, view(Phase::Idle, Some(t0 + Duration::from_secs(5)), 10))],
            t0,
        );
        assert_eq!(found, Survey::default());
        let found = survey([(&a, view(Phase::Running, None, 10))], t0);
        assert_eq!(found, Survey::default());
    }

    #[test]
    fn the_oldest_due_run_is_reported_and_a_stall_only_past_its_threshold() {
        let t0 = Instant::now();
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) =
            (Arc::from("a"), Arc::from("b"), Arc::from("c"));
        let s = Duration::from_secs;
        // a: its ticker planned a run 30 s ago and never woke (interval 10 s: threshold 60 s).
        // b: a run due 50 s ago still waits for permits (the ticker is on time).
        // c: running, next run planned in the future.
        let slots = [
            (&a, view(Phase::Idle, Some(t0 + s(100)), 10)),
            (&b, view(Phase::Waiting(t0 + s(80)), Some(t0 + s(140)), 10)),
            (&c, view(Phase::Running, Some(t0 + s(135)), 10)),
        ];
        let found = survey(slots, t0 + s(130));
        assert_eq!(
            found.oldest,
            Some(Overdue {
                check: b.clone(),
                overdue: s(50),
                interval: s(10)
            })
        );
        assert_eq!(found.stalled, None, "50 s is under the 60 s minimum");
        // 31 s later b has waited 81 s: stalled; a (61 s) is too, but b is the worse.
        let found = survey(slots, t0 + s(161));
        let stalled = found.stalled.expect("stalled");
        assert_eq!((&*stalled.check, stalled.overdue), ("b", s(81)));
        assert_eq!(
            stalled.reason(),
            "check b has been due for 81s without starting (interval 10s)"
        );
    }

    #[test]
    fn a_long_interval_stretches_the_threshold() {
        let t0 = Instant::now();
        let a: Arc<str> = Arc::from("hourly");
        // Interval 1 h: 2 h overdue is not yet a stall, 3 h and a second is.
        let slots = [(&a, view(Phase::Idle, Some(t0), 3600))];
        assert_eq!(survey(slots, t0 + Duration::from_secs(7200)).stalled, None);
        assert!(
            survey(slots, t0 + Duration::from_secs(10_801))
                .stalled
                .is_some()
        );
    }

    #[test]
    fn a_slot_starts_one_run_at_a_time() {
        let t0 = Instant::now();
        let slot = RunSlot::new(Arc::from("a"), Duration::from_secs(1));
        assert_eq!(slot.begin(t0), Begin::Start);
        assert_eq!(slot.begin(t0), Begin::StillWaiting);
        slot.started();
        assert_eq!(slot.begin(t0), Begin::StillRunning);
        slot.finished();
        assert_eq!(slot.begin(t0), Begin::Start);
    }
}
