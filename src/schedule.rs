//! The scheduler: when each check runs, and how many runs go at once.
//!
//! Every check has one ticker task. Its first run is placed at a stable offset inside its interval
//! (a hash of its name, aligned to the wall clock), so 1,000 checks on a 1-minute interval spread
//! over the minute instead of firing together, and keep their phase across restarts and reloads.
//! Each due run becomes its own task, which waits for its permits — per endpoint first (the
//! scarcest: default one run at a time against one `host:port`), then per kind, then global — and
//! only then starts its probe. A check whose server hangs therefore holds only its own endpoint's
//! permit and one global permit, never the other checks' timers. A run still waiting when its next
//! run falls due gives that slot up, counted and logged as skipped with the limit that held it.
//!
//! Each check's run slot ([`watchdog::RunSlot`]) says whether a run is in progress; it is carried
//! across reloads for checks whose identity is unchanged, so a reload never starts a run beside
//! one still going. The watchdog reads the slots to notice a stalled scheduler.

mod limits;
pub mod watchdog;

pub use limits::{Acquisition, HeldBy, Limits, Permits, host_of};

use crate::assemble::{Prepared, PreparedCheck};
use crate::config::SchedulerConfig;
use crate::metrics::{ConfiguredCheck, Metrics, SkipReason};
use crate::outcome::RunReport;
use crate::runner;
use crate::value::{Channel, Kind};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use watchdog::{Begin, RunSlot};

/// Delay from `now` until the check's first due time: a stable offset within `interval`, derived
/// from the check's name and aligned to the Unix epoch.
pub fn first_delay(name: &str, interval: Duration, now: SystemTime) -> Duration {
    let period = interval.as_millis().max(1);
    let offset = u128::from(fnv1a(name.as_bytes())) % period;
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let wait = (offset + period - now_ms % period) % period;
    Duration::from_millis(u64::try_from(wait).unwrap_or(0))
}

/// FNV-1a: stable across Rust versions and processes, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

struct Inner {
    metrics: Arc<Metrics>,
    reports: broadcast::Sender<Arc<RunReport>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    run_ids: AtomicU64,
    state: Mutex<Generation>,
}

/// What makes two configs' checks the same check for the overlap guard: a check keeps its run
/// slot across a reload unless its name, kind, channel or labels change.
#[derive(PartialEq, Eq, Hash)]
struct SlotKey {
    name: String,
    kind: Kind,
    channel: Channel,
    labels: Arc<BTreeMap<String, String>>,
}

impl SlotKey {
    fn of(check: &PreparedCheck) -> Self {
        let id = check.check.identity();
        SlotKey {
            name: id.name.to_string(),
            kind: id.kind,
            channel: id.channel,
            labels: id.labels.clone(),
        }
    }
}

/// The tickers of one loaded config; replaced as a whole on reload.
struct Generation {
    limits: Arc<Limits>,
    tickers: CancellationToken,
    /// Every configured check's run slot; carried over to the next generation by [`SlotKey`].
    slots: HashMap<SlotKey, Arc<RunSlot>>,
}

/// Runs checks on their schedules until shut down.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl Scheduler {
    /// A scheduler with no checks yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let (reports, _) = broadcast::channel(1024);
        Scheduler {
            inner: Arc::new(Inner {
                metrics,
                reports,
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                run_ids: AtomicU64::new(0),
                state: Mutex::new(Generation {
                    limits: Arc::new(Limits::new(&SchedulerConfig::default())),
                    tickers: CancellationToken::new(),
                    slots: HashMap::new(),
                }),
            }),
        }
    }

    /// Every finished run, as it finishes. Slow receivers miss reports rather than slow runs.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RunReport>> {
        self.inner.reports.subscribe()
    }

    /// Starts scheduling `prepared`, replacing whatever ran before. Runs already in progress
    /// finish; their checks' next runs follow the new config.
    pub fn apply(&self, prepared: &Prepared) {
        let inner = &self.inner;
        inner
            .metrics
            .sync_checks(prepared.checks.iter().map(|c| ConfiguredCheck {
                id: c.check.identity(),
                delivers: c.check.delivers(),
            }));
        let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        // Unchanged limits keep their semaphores, so runs in flight across a reload still count.
        // Built before the old tickers stop, so nothing has changed yet if building fails.
        let limits = if state.limits.config != prepared.config.scheduler {
            Arc::new(Limits::new(&prepared.config.scheduler))
        } else {
            state.limits.clone()
        };
        state.tickers.cancel();
        state.limits = limits;
        state.tickers = inner.shutdown.child_token();
        // A check still running keeps its slot, so the new ticker cannot start a second run
        // beside it; removed checks' slots go with the old map (their last runs just finish).
        let mut old_slots = std::mem::take(&mut state.slots);
        for check in &prepared.checks {
            let key = SlotKey::of(check);
            let slot = old_slots.remove(&key).unwrap_or_else(|| {
                Arc::new(RunSlot::new(
                    check.name().clone(),
                    check.check.interval.get(),
                ))
            });
            state.slots.insert(key, slot.clone());
            let ticker = Ticker {
                inner: inner.clone(),
                check: check.clone(),
                limits: state.limits.clone(),
                cancel: state.tickers.clone(),
                slot,
            };
            // One task per check, tracked so shutdown waits for it; it ends when its generation
            // is cancelled (reload, shutdown).
            inner.tracker.spawn(ticker.run());
        }
        tracing::info!(checks = prepared.checks.len(), "schedule applied");
    }

    /// Starts the watchdog: every `period` it exports the oldest due-but-not-started run and
    /// flags a stalled scheduler (see [`watchdog`]). It stops at shutdown.
    pub fn start_watchdog(&self, period: Duration) {
        let inner = self.inner.clone();
        let slots = move || -> Vec<Arc<RunSlot>> {
            let state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            state.slots.values().cloned().collect()
        };
        // Not tracked: it holds no run, and shutdown cancels it.
        tokio::spawn(watchdog::watch(
            slots,
            self.inner.metrics.clone(),
            period,
            self.inner.shutdown.clone(),
        ));
    }

    /// Stops scheduling, waits up to `grace` for runs in progress, and reports whether they all
    /// finished in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        let drained = tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(grace = ?grace, "runs still in progress at the end of the shutdown grace period");
        }
        drained
    }
}

struct Ticker {
    inner: Arc<Inner>,
    check: Arc<PreparedCheck>,
    limits: Arc<Limits>,
    cancel: CancellationToken,
    slot: Arc<RunSlot>,
}

impl Ticker {
    async fn run(self) {
        let interval = self.check.check.interval.get();
        let mut due =
            Instant::now() + first_delay(&self.check.check.name, interval, SystemTime::now());
        loop {
            self.slot.plan(due, interval);
            // Cancelled by a reload (a new ticker takes over the slot) or at shutdown.
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep_until(due) => {}
            }
            let this_due = due;
            due += interval;
            let now = Instant::now();
            if due <= now {
                // The process was stopped or starved for a whole interval: skip the missed slots
                // instead of firing them all at once.
                let behind = (now - due).as_nanos() / interval.as_nanos().max(1) + 1;
                due += interval * u32::try_from(behind).unwrap_or(u32::MAX);
            }
            let name = &self.check.check.name;
            match self.slot.begin(this_due) {
                Begin::Start => {
                    let run = run_one(
                        self.inner.clone(),
                        self.check.clone(),
                        self.limits.clone(),
                        self.slot.clone(),
                        self.cancel.clone(),
                        this_due,
                        due,
                    );
                    // One task per due run, tracked so shutdown can wait for it.
                    self.inner.tracker.spawn(run);
                }
                // The waiting run counts the slot it gives up when this due time passes.
                Begin::StillWaiting => {}
                Begin::StillRunning => {
                    self.inner.metrics.record_skipped(name, SkipReason::Overlap);
                    tracing::warn!(check = %name, reason = "overlap", "run skipped: the previous run is still in progress");
                }
            }
        }
    }
}

/// Waits for the run's permits, giving up one due slot (counted and logged as skipped) each time
/// the next run falls due meanwhile; then runs the check.
async fn run_one(
    inner: Arc<Inner>,
    check: Arc<PreparedCheck>,
    limits: Arc<Limits>,
    slot: Arc<RunSlot>,
    generation: CancellationToken,
    mut due: Instant,
    mut next_due: Instant,
) {
    let interval = check.check.interval.get();
    let name = &check.check.name;
    let mut acquisition = limits.begin(&check);
    loop {
        // Waiting for permits is abandoned at a reload (the new config's ticker takes over) and
        // at shutdown; a run that has started is let finish.
        let acquired = tokio::select! {
            r = acquisition.until(next_due) => r,
            _ = generation.cancelled() => {
                slot.finished();
                return;
            }
        };
        match acquired {
            Ok(()) => break,
            Err(held_by) => {
                inner.metrics.record_skipped(name, SkipReason::Permits);
                tracing::warn!(
                    check = %name,
                    reason = "permits",
                    limit = %held_by,
                    "run skipped: still waiting for {held_by} when the next run was due"
                );
                // This run now stands for the next due slot.
                due = next_due;
                next_due += interval;
                slot.rewait(due);
            }
        }
    }
    let permits = acquisition.into_permits();
    slot.started();
    let lag = Instant::now().saturating_duration_since(due);
    let run_id = inner.run_ids.fetch_add(1, Ordering::Relaxed) + 1;
    let span = tracing::info_span!("run", check = %check.check.name, kind = %check.check.kind(), run = run_id);
    inner.metrics.running.inc();
    let submitted = runner::submit(&check, run_id, Some(lag))
        .instrument(span.clone())
        .await;
    inner.metrics.running.dec();
    // Waiting for a delivery (minutes, for mail) holds no permit and does not block the check's
    // next run: each run has its own token, so overlapping waits do not confuse each other.
    drop(permits);
    slot.finished();
    let delivering = submitted.has_follow_up();
    if delivering {
        inner.metrics.delivery_started(&check.check.name);
    }
    let finished = runner::finish(submitted).instrument(span.clone()).await;
    if delivering {
        inner.metrics.delivery_finished(&check.check.name);
    }
    let report = finished.report;
    if let Some(late) = finished.late {
        let metrics = inner.metrics.clone();
        let name = check.check.name.clone();
        // Not tracked: a late watch must not hold up shutdown.
        tokio::spawn(
            async move {
                let outcome = late.await;
                match outcome {
                    crate::outcome::LateDelivery::Arrived(after) => tracing::warn!(
                        check = %name,
                        after = %crate::value::short_duration(after),
                        "delivery arrived after its deadline"
                    ),
                    crate::outcome::LateDelivery::Lost => {
                        tracing::warn!(check = %name, "delivery lost: not arrived within the late window")
                    }
                    crate::outcome::LateDelivery::Bounced => {
                        tracing::warn!(check = %name, "delivery lost: the mail bounced")
                    }
                }
                metrics.record_late(&name, outcome);
            }
            .instrument(span.clone()),
        );
    }
    inner.metrics.record(&report);
    span.in_scope(|| crate::report::log(&report));
    // No receiver is fine: reports are for the demo and tests.
    let _ = inner.reports.send(Arc::new(report));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::PreparedCheck;
    use crate::outcome::{
        FailureKind, FollowUp, FollowUpResult, LateDelivery, Outcome, RunContext,
    };
    use crate::probe::Probe;
    use futures::FutureExt;
    use futures::future::BoxFuture;

    /// Submits instantly; its delivery "arrives" only after `wait`, then fails as not delivered
    /// with a late watch that reports it lost.
    struct SlowDelivery {
        wait: Duration,
    }

    impl Probe for SlowDelivery {
        fn hosts(&self) -> Vec<String> {
            vec!["shop.test".into()]
        }
        fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
            let wait = self.wait;
            let ctx = ctx.clone();
            Box::pin(async move {
                ctx.begin("submit");
                ctx.end();
                let stage = async move {
                    tokio::time::sleep(wait).await;
                    ctx.record("deliver", wait);
                    FollowUpResult {
                        outcome: Outcome::fail(
                            FailureKind::NotDelivered,
                            "not delivered within 2s",
                        ),
                        late: Some(async { LateDelivery::Lost }.boxed()),
                    }
                };
                Outcome {
                    follow_up: Some(FollowUp {
                        limit: Duration::from_secs(60),
                        stage: stage.boxed(),
                    }),
                    ..Outcome::default()
                }
            })
        }
    }

    struct Quick;

    impl Probe for Quick {
        fn hosts(&self) -> Vec<String> {
            vec!["shop.test".into()]
        }
        fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
            Box::pin(async { Outcome::pass() })
        }
    }

    fn prepared_with(probes: Vec<(&str, Arc<dyn Probe>)>) -> Prepared {
        prepared_from(
            "{ max_per_host: 1 }",
            "interval: 1s, timeout: 1s, retries: 0",
            probes,
        )
    }

    /// A config of http checks on `shop.test`, one per probe (named as given, each with the
    /// `check_fields`), under `scheduler`, whose runs are the given probes.
    fn prepared_from(
        scheduler: &str,
        check_fields: &str,
        probes: Vec<(&str, Arc<dyn Probe>)>,
    ) -> Prepared {
        let yaml: String = probes
            .iter()
            .map(|(name, _)| {
                format!(
                    "  - {{ name: {name}, kind: http, url: \"http://shop.test/\", {check_fields} }}\n"
                )
            })
            .collect();
        let mut config = crate::config::load_sources(&[(
            "t.yaml".into(),
            format!("scheduler: {scheduler}\nchecks:\n{yaml}"),
        )])
        .expect("valid config");
        let checks = std::mem::take(&mut config.checks)
            .into_iter()
            .zip(probes)
            .map(|(check, (_, probe))| Arc::new(PreparedCheck::new(check, probe)))
            .collect();
        Prepared {
            config,
            checks,
            notifiers: Default::default(),
            warnings: Vec::new(),
            redactor: Default::default(),
            mailboxes: Default::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_for_a_delivery_holds_no_permit() {
        // Both checks share one host with a per-host limit of 1. If the slow delivery held its
        // permit, the other check could not run at all for 4 s.
        let prepared = prepared_with(vec![
            (
                "delivers",
                Arc::new(SlowDelivery {
                    wait: Duration::from_secs(4),
                }),
            ),
            ("quick", Arc::new(Quick)),
        ]);
        let metrics = Arc::new(Metrics::new());
        let scheduler = Scheduler::new(metrics.clone());
        let mut reports = scheduler.subscribe();
        scheduler.apply(&prepared);
        // Wait until the delivering run has submitted and is waiting for its delivery.
        let pending = |metrics: &Metrics| {
            metrics.encode_text().lines().any(|l| {
                l.starts_with("supportwatch_deliveries_pending{")
                    && l.contains("check=\"delivers\"")
                    && l.ends_with(" 1")
            })
        };
        let waiting_deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !pending(&metrics) {
            assert!(
                tokio::time::Instant::now() < waiting_deadline,
                "the delivering run never started waiting"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let waiting_since = SystemTime::now();
        // Count the quick check's runs that started while the delivery was being waited for.
        let mut quick_runs = 0;
        let delivered = loop {
            let report = tokio::time::timeout(Duration::from_secs(30), reports.recv())
                .await
                .expect("reports keep coming")
                .expect("channel open");
            if &*report.check == "quick" {
                if report.started_at >= waiting_since {
                    quick_runs += 1;
                }
            } else {
                break report;
            }
        };
        assert!(
            quick_runs >= 2,
            "the quick check ran {quick_runs} times meanwhile"
        );
        let failure = delivered.failure.as_ref().expect("failed");
        assert_eq!(failure.kind, FailureKind::NotDelivered);
        let phases: Vec<&str> = delivered.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(phases, ["submit", "deliver"]);
        assert!(delivered.duration >= Duration::from_secs(4));
        // The late watch resolves at once as lost, and is counted.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = metrics.encode_text();
            if text.lines().any(|l| {
                l.starts_with("supportwatch_deliveries_lost_total{")
                    && l.contains("check=\"delivers\"")
                    && !l.ends_with(" 0")
            }) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "lost delivery not counted: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(scheduler.shutdown(Duration::from_secs(10)).await);
    }

    /// What [`Held`] probes saw: which check's attempt started, and the most in flight at once.
    #[derive(Default)]
    struct Seen {
        starts: Mutex<Vec<&'static str>>,
        in_flight: AtomicU64,
        max_in_flight: AtomicU64,
    }

    impl Seen {
        fn starts(&self) -> Vec<&'static str> {
            self.starts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        }
    }

    /// Leaves `in_flight` when an attempt ends, also when its timeout drops it.
    struct InFlight(Arc<Seen>);

    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Holds every attempt until `release` is closed (or the attempt times out).
    struct Held {
        name: &'static str,
        seen: Arc<Seen>,
        release: Arc<tokio::sync::Semaphore>,
    }

    impl Probe for Held {
        fn hosts(&self) -> Vec<String> {
            vec!["shop.test:80".into()]
        }
        fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
            Box::pin(async move {
                self.seen
                    .starts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(self.name);
                let now = self.seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
                let _guard = InFlight(self.seen.clone());
                // Closed to release every attempt at once.
                let _ = self.release.acquire().await;
                Outcome::pass()
            })
        }
    }

    /// Checks whose attempts last their whole 2 s timeout, retried 3 times: a run takes about 6 s,
    /// three due times.
    fn held_checks(
        scheduler: &str,
        names: &[&'static str],
        seen: &Arc<Seen>,
        release: &Arc<tokio::sync::Semaphore>,
    ) -> Prepared {
        let probes = names
            .iter()
            .map(|name| {
                let probe: Arc<dyn Probe> = Arc::new(Held {
                    name,
                    seen: seen.clone(),
                    release: release.clone(),
                });
                (*name, probe)
            })
            .collect();
        prepared_from(
            scheduler,
            "interval: 2s, timeout: 2s, retries: 3, retry_delay: 100ms",
            probes,
        )
    }

    fn skipped(metrics: &Metrics, check: &str, reason: &str) -> f64 {
        let text = metrics.encode_text();
        text.lines()
            .find(|l| {
                l.starts_with("supportwatch_check_skipped_runs_total{")
                    && l.contains(&format!("check=\"{check}\""))
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no skipped series for {check}: {text}"))
    }

    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Limits that would let runs of one check overlap: only the run slot prevents it.
    const ROOMY: &str = "{ max_per_host: 4 }";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_does_not_start_a_run_beside_one_still_going() {
        let seen = Arc::new(Seen::default());
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let metrics = Arc::new(Metrics::new());
        let scheduler = Scheduler::new(metrics.clone());
        scheduler.apply(&held_checks(ROOMY, &["slow"], &seen, &release));
        eventually("the first run never started", || !seen.starts().is_empty()).await;
        // Two reloads of the same check (fresh probes, same identity) while its run is held, then
        // long enough for the reloaded schedule's due times to come (interval 2 s).
        scheduler.apply(&held_checks(ROOMY, &["slow"], &seen, &release));
        scheduler.apply(&held_checks(ROOMY, &["slow"], &seen, &release));
        eventually(
            "the reloaded schedule never found the run in progress",
            || skipped(&metrics, "slow", "overlap") >= 1.0,
        )
        .await;
        assert_eq!(
            seen.max_in_flight.load(Ordering::SeqCst),
            1,
            "a second run started beside the first"
        );
        release.close();
        assert!(scheduler.shutdown(Duration::from_secs(10)).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_starved_of_permits_is_counted_as_skipped() {
        // Both checks share one endpoint (limit 1); whichever starts first keeps the permit for
        // its whole run (about 6 s), past the other's next due time.
        let seen = Arc::new(Seen::default());
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let metrics = Arc::new(Metrics::new());
        let scheduler = Scheduler::new(metrics.clone());
        scheduler.apply(&held_checks(
            "{ max_per_host: 1 }",
            &["a", "b"],
            &seen,
            &release,
        ));
        eventually("neither check started", || !seen.starts().is_empty()).await;
        let first = seen.starts()[0];
        let starved = if first == "a" { "b" } else { "a" };
        eventually("the starved run was never counted as skipped", || {
            skipped(&metrics, starved, "permits") >= 1.0
        })
        .await;
        assert!(
            !seen.starts().contains(&starved),
            "both ran on one endpoint with a limit of 1: {:?}",
            seen.starts()
        );
        assert_eq!(skipped(&metrics, first, "permits"), 0.0);
        release.close();
        assert!(scheduler.shutdown(Duration::from_secs(10)).await);
    }

    #[test]
    fn first_delay_is_stable_and_within_interval() {
        let interval = Duration::from_secs(60);
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = first_delay("shop-home", interval, now);
        assert_eq!(a, first_delay("shop-home", interval, now));
        assert!(a < interval);
        // One second later the same slot is one second closer.
        let later = first_delay("shop-home", interval, now + Duration::from_secs(1));
        assert_eq!((a + interval - later).as_millis() % 60_000, 1_000);
    }

    #[test]
    fn thousand_checks_spread_over_the_minute() {
        let interval = Duration::from_secs(60);
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut per_second = [0u32; 60];
        for i in 0..1000 {
            let d = first_delay(&format!("check-{i}"), interval, now);
            per_second[d.as_secs() as usize] += 1;
        }
        // Evenly spread would be 16.7 a second; lock step would be 1000 in one second.
        let max = per_second.iter().max().copied().unwrap_or(0);
        let empty = per_second.iter().filter(|n| **n == 0).count();
        assert!(max <= 35, "up to {max} checks start in the same second");
        assert_eq!(empty, 0, "some seconds of the minute have no check");
    }
}
