//! The scheduler: when each check runs, and how many runs go at once.
//!
//! Every check has one ticker task. Its first run is placed at a stable offset inside its interval
//! (a hash of its name, aligned to the wall clock), so 1,000 checks on a 1-minute interval spread
//! over the minute instead of firing together, and keep their phase across restarts and reloads.
//! Each due run becomes its own task, which waits for its permits — per host first (the scarcest:
//! default one run at a time against one shop), then per kind, then global — and only then starts
//! its probe. A check whose server hangs therefore holds only its own host's permit and one global
//! permit, never the other checks' timers.

use crate::assemble::{Prepared, PreparedCheck};
use crate::config::{MAX_CONCURRENCY_LIMIT, SchedulerConfig};
use crate::metrics::{ConfiguredCheck, Metrics};
use crate::outcome::RunReport;
use crate::runner;
use crate::value::Kind;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Concurrency limits: global, per kind, per host.
pub struct Limits {
    config: SchedulerConfig,
    global: Arc<Semaphore>,
    per_kind: HashMap<Kind, Arc<Semaphore>>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A semaphore for a limit of `n` runs. Config load refuses limits outside
/// `1..=`[`MAX_CONCURRENCY_LIMIT`]; clamping here as well means no value that ever reaches the
/// scheduler can panic it (`Semaphore::new` panics past `Semaphore::MAX_PERMITS`) or leave a kind
/// that never runs (a limit of 0).
fn limit_semaphore(n: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(n.clamp(1, MAX_CONCURRENCY_LIMIT)))
}

/// Permits held by one run; released when dropped.
pub struct Permits(#[allow(dead_code)] Vec<OwnedSemaphorePermit>);

impl Limits {
    /// Limits as configured.
    pub fn new(config: &SchedulerConfig) -> Self {
        Limits {
            config: config.clone(),
            global: limit_semaphore(config.max_concurrent),
            per_kind: config
                .max_per_kind
                .iter()
                .map(|(k, n)| (*k, limit_semaphore(*n)))
                .collect(),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    fn host(&self, host: &str) -> Arc<Semaphore> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        // Known hosts (every run but a host's first) take no allocation for the key.
        if let Some(known) = hosts.get(host) {
            return known.clone();
        }
        hosts
            .entry(host.to_string())
            .or_insert_with(|| {
                let n = self
                    .config
                    .hosts
                    .get(host)
                    .copied()
                    .unwrap_or(self.config.max_per_host);
                limit_semaphore(n)
            })
            .clone()
    }

    /// Waits for every permit `check` needs. Hosts are taken in sorted order (no deadlock between
    /// checks that share several hosts), and before the global permit, so runs queued behind a
    /// slow host do not starve everyone else of global permits.
    pub async fn acquire(&self, check: &PreparedCheck) -> Permits {
        let mut held = Vec::with_capacity(check.hosts.len() + 2);
        for host in &check.hosts {
            if let Ok(p) = self.host(host).acquire_owned().await {
                held.push(p);
            }
        }
        if let Some(kind) = self.per_kind.get(&check.check.kind())
            && let Ok(p) = kind.clone().acquire_owned().await
        {
            held.push(p);
        }
        if let Ok(p) = self.global.clone().acquire_owned().await {
            held.push(p);
        }
        Permits(held)
    }
}

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

/// The tickers of one loaded config; replaced as a whole on reload.
struct Generation {
    limits: Arc<Limits>,
    tickers: CancellationToken,
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
        for check in &prepared.checks {
            let ticker = Ticker {
                inner: inner.clone(),
                check: check.clone(),
                limits: state.limits.clone(),
                cancel: state.tickers.clone(),
                running: Arc::new(AtomicBool::new(false)),
            };
            inner.tracker.spawn(ticker.run());
        }
        tracing::info!(checks = prepared.checks.len(), "schedule applied");
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
    running: Arc<AtomicBool>,
}

impl Ticker {
    async fn run(self) {
        let interval = self.check.check.interval.get();
        let mut due =
            Instant::now() + first_delay(&self.check.check.name, interval, SystemTime::now());
        loop {
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
            if self.running.swap(true, Ordering::AcqRel) {
                self.inner.metrics.record_skipped(&self.check.check.name);
                tracing::warn!(check = %self.check.check.name, "previous run still in progress; skipping this one");
                continue;
            }
            self.inner.tracker.spawn(run_one(
                self.inner.clone(),
                self.check.clone(),
                self.limits.clone(),
                self.running.clone(),
                this_due,
            ));
        }
    }
}

async fn run_one(
    inner: Arc<Inner>,
    check: Arc<PreparedCheck>,
    limits: Arc<Limits>,
    running: Arc<AtomicBool>,
    due: Instant,
) {
    // Waiting for permits is abandoned at shutdown; a run that has started is let finish.
    let permits = tokio::select! {
        p = limits.acquire(&check) => p,
        _ = inner.shutdown.cancelled() => {
            running.store(false, Ordering::Release);
            return;
        }
    };
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
    running.store(false, Ordering::Release);
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
        let yaml: String = probes
            .iter()
            .map(|(name, _)| {
                format!(
                    "  - {{ name: {name}, kind: http, url: \"http://shop.test/\", interval: 1s, timeout: 1s, retries: 0 }}\n"
                )
            })
            .collect();
        let mut config = crate::config::load_sources(&[(
            "t.yaml".into(),
            format!("scheduler: {{ max_per_host: 1 }}\nchecks:\n{yaml}"),
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

    #[test]
    fn limits_clamp_values_the_semaphore_would_panic_on() {
        let config = SchedulerConfig {
            max_concurrent: usize::MAX,
            max_per_kind: [(Kind::Http, 0), (Kind::Tls, usize::MAX)].into(),
            max_per_host: usize::MAX,
            hosts: [("h".to_string(), usize::MAX), ("z".to_string(), 0)].into(),
            ..SchedulerConfig::default()
        };
        let limits = Limits::new(&config);
        assert_eq!(limits.global.available_permits(), MAX_CONCURRENCY_LIMIT);
        assert_eq!(limits.per_kind[&Kind::Http].available_permits(), 1);
        assert_eq!(
            limits.per_kind[&Kind::Tls].available_permits(),
            MAX_CONCURRENCY_LIMIT
        );
        assert_eq!(limits.host("h").available_permits(), MAX_CONCURRENCY_LIMIT);
        assert_eq!(limits.host("z").available_permits(), 1);
        assert_eq!(
            limits.host("other").available_permits(),
            MAX_CONCURRENCY_LIMIT
        );
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
