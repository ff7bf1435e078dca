//! The alerting task: run reports in, notifications out.
//!
//! One task owns the alert states, so reports, ticks, config changes and send results are handled
//! one at a time and never race. Sends run in their own tasks (a slow notifier must not delay the
//! others) and report back. SQLite work runs on the blocking pool.
//!
//! The config side ([`Setup`]) and the health record ([`Health`]) live in `service/setup.rs` and
//! `service/health.rs`; this file is the task itself.

mod health;
mod setup;

pub use health::Health;
pub use setup::{Setup, send_test};

use super::dispatch::{self, AfterFailure, Batch};
use super::engine::{self, AlertState, Event};
use super::store::{Queued, RunRecord, Store};
use crate::metrics::Metrics;
use crate::notify::{AlertNotice, NotifyError};
use crate::outcome::{Observation, RunReport};
use setup::CheckEntry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Where the time comes from (tests inject their own).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// How often time-driven work (grouping, retries, reminders, maintenance ends) is looked at.
const TICK: Duration = Duration::from_millis(500);

/// Run history that changes no alert state waits at most this long for others to share its
/// transaction...
const HISTORY_DELAY: Duration = Duration::from_millis(100);

/// ...or until this many runs wait. Together they bound what a crash can lose of the history.
const HISTORY_BATCH: usize = 500;

/// A request to the alerting task.
pub enum Command {
    /// Switch config.
    Apply(Box<Setup>),
}

/// The running alerting task.
pub struct AlertService {
    commands: mpsc::Sender<Command>,
    /// Notifier and storage health.
    pub health: Arc<Health>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl AlertService {
    /// Starts alerting on `reports` with the states saved in `store`.
    pub fn start(
        store: Arc<Store>,
        setup: Setup,
        reports: broadcast::Receiver<Arc<RunReport>>,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Result<AlertService, super::store::StoreError> {
        let states = store.load_states()?;
        let timed = states
            .iter()
            .filter(|(_, s)| s.time_driven())
            .map(|(name, _)| name.clone())
            .collect();
        let (commands, command_rx) = mpsc::channel(8);
        let health = Arc::new(Health::new(metrics.clone()));
        let stop = CancellationToken::new();
        let (results_tx, results_rx) = mpsc::channel(64);
        let worker = Worker {
            store,
            setup: Setup {
                checks: HashMap::new(),
                ..setup.clone()
            },
            states,
            timed,
            unsaved: HashSet::new(),
            history: Vec::new(),
            flush_at: None,
            tick_visits: 0,
            metrics,
            clock,
            health: health.clone(),
            in_flight: BTreeSet::new(),
            results: results_tx,
        };
        let task = tokio::spawn(worker.run(setup, reports, command_rx, results_rx, stop.clone()));
        Ok(AlertService {
            commands,
            health,
            stop,
            task,
        })
    }

    /// A handle that switches the task to a new config.
    pub fn commands(&self) -> AlertCommands {
        AlertCommands(self.commands.clone())
    }

    /// Stops the task after writing the run history that still waits for its batch. Alert state
    /// is already on disk; queued notifications go out at the next start.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Sends config changes to the alerting task.
#[derive(Clone)]
pub struct AlertCommands(mpsc::Sender<Command>);

impl AlertCommands {
    /// Switches to a new config's checks, routes and notifiers. Alert states of checks that
    /// stay are kept.
    pub async fn apply(&self, setup: Setup) {
        let _ = self.0.send(Command::Apply(Box::new(setup))).await;
    }
}

struct SendResult {
    batch: Batch,
    result: Result<(), NotifyError>,
}

struct Worker {
    store: Arc<Store>,
    setup: Setup,
    states: HashMap<String, AlertState>,
    /// Checks whose state time alone can change ([`AlertState::time_driven`]): all a tick visits.
    timed: HashSet<String>,
    /// Checks whose last state write failed: written again with their next run, changed or not.
    unsaved: HashSet<String>,
    /// Runs that changed no alert state, waiting to be written together (see [`HISTORY_BATCH`]).
    history: Vec<RunRecord>,
    /// When `history` is written at the latest.
    flush_at: Option<tokio::time::Instant>,
    /// States looked at by ticks, for tests that pin a tick's cost.
    tick_visits: u64,
    metrics: Arc<Metrics>,
    clock: Clock,
    health: Arc<Health>,
    in_flight: BTreeSet<(String, String)>,
    results: mpsc::Sender<SendResult>,
}

impl Worker {
    async fn run(
        mut self,
        first: Setup,
        mut reports: broadcast::Receiver<Arc<RunReport>>,
        mut commands: mpsc::Receiver<Command>,
        mut results: mpsc::Receiver<SendResult>,
        stop: CancellationToken,
    ) {
        self.apply(first).await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let flush_at = self.flush_at;
            // One task handles everything in turn, so the states need no lock; whichever comes
            // first is handled, the others wait in their channels.
            tokio::select! {
                _ = stop.cancelled() => break,
                // Waiting run history goes to disk at the latest HISTORY_DELAY after its first run.
                _ = async move {
                    match flush_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => self.flush().await,
                report = reports.recv() => match report {
                    Ok(report) => self.observe(&report).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::error!(missed = n, "alerting fell behind and missed run reports");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(Command::Apply(setup)) = commands.recv() => self.apply(*setup).await,
                Some(done) = results.recv() => self.sent(done).await,
                _ = tick.tick() => self.tick().await,
            }
        }
        self.flush().await;
    }

    /// Writes the run history that waits for its batch.
    async fn flush(&mut self) {
        self.flush_at = None;
        if self.history.is_empty() {
            return;
        }
        let runs = std::mem::take(&mut self.history);
        let keep = self.setup.keep_runs;
        let now = engine::secs(self.now());
        self.with_store("recording runs", move |s| {
            s.commit_runs(&runs, keep, None, &[], now)
        })
        .await;
    }

    fn now(&self) -> SystemTime {
        (self.clock)()
    }

    /// Runs a store operation on the blocking pool; failures are logged and shown in `/healthz`.
    async fn with_store<T: Send + 'static>(
        &self,
        what: &'static str,
        op: impl FnOnce(&Store) -> Result<T, super::store::StoreError> + Send + 'static,
    ) -> Option<T> {
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || op(&store)).await;
        match result {
            Ok(Ok(v)) => {
                self.health.storage(None);
                Some(v)
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "{what} failed");
                self.health.storage(Some(e.to_string()));
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "{what} panicked");
                self.health.storage(Some(format!("{what} panicked")));
                None
            }
        }
    }

    async fn apply(&mut self, setup: Setup) {
        // Waiting history is trimmed with the `keep_runs` it was recorded under.
        self.flush().await;
        let now = self.now();
        // Checks that left the config (or stopped alerting) resolve what they announced, through
        // the routes they had.
        let gone: Vec<String> = self
            .states
            .keys()
            .filter(|name| setup.checks.get(*name).is_none_or(|c| !c.policy.enabled))
            .cloned()
            .collect();
        for name in gone {
            self.timed.remove(&name);
            let Some(mut state) = self.states.remove(&name) else {
                continue;
            };
            let events = state.retire(now);
            let queued = match self.setup.checks.get(&name) {
                Some(entry) => self.queue(&name, entry, &events, now),
                None => Vec::new(),
            };
            let keep = self.setup.keep_runs;
            let forget = name.clone();
            let saved = self
                .with_store("forgetting a removed check's alert", move |s| {
                    s.commit(None, keep, &forget, None, &queued, engine::secs(now))
                })
                .await
                .is_some();
            self.saved(name, saved);
        }
        self.health.sync(setup.notifiers.keys().cloned());
        for (name, entry) in &setup.checks {
            if entry.policy.enabled {
                let firing = self.states.get(name).is_some_and(|s| s.firing);
                self.metrics.set_alert_firing(name, firing);
            }
        }
        self.setup = setup;
    }

    fn queue(
        &self,
        check: &str,
        entry: &CheckEntry,
        events: &[Event],
        now: SystemTime,
    ) -> Vec<Queued> {
        let due = engine::secs(now) + self.setup.group_wait.as_secs_f64();
        let mut out = Vec::new();
        for event in events {
            let notice = AlertNotice {
                fingerprint: format!("{check}@{}", engine::secs(event.since) as u64),
                check: check.to_string(),
                channel: entry.channel,
                kind: entry.kind,
                labels: entry.labels.as_ref().clone(),
                status: event.status,
                since: event.since,
                resolved_at: event.resolved_at,
                consecutive_failures: event.consecutive_failures,
                reason_kind: event.reason_kind.clone(),
                reason: event.reason.clone(),
                link: event.evidence.clone(),
            };
            tracing::info!(
                check,
                shop = %entry.shop,
                status = event.status.as_str(),
                reason = %event.reason_kind,
                notifiers = entry.targets.len(),
                "alert {}",
                event.status.as_str()
            );
            for target in &entry.targets {
                out.push(Queued {
                    notifier: target.notifier.clone(),
                    shop: entry.shop.clone(),
                    fallback: target.fallback.clone(),
                    is_fallback: false,
                    due_at: due,
                    notice: notice.clone(),
                });
            }
        }
        out
    }

    /// Remembers whether a check's state (or its removal) reached the disk.
    fn saved(&mut self, name: String, ok: bool) {
        if ok {
            self.unsaved.remove(&name);
        } else {
            self.unsaved.insert(name);
        }
    }

    /// Takes one finished run: constant work whatever the number of checks (one map lookup, one
    /// state). A run that changes its check's state or causes messages is written at once, with
    /// the history that waits, in one transaction; any other run only joins the waiting history.
    async fn observe(&mut self, report: &RunReport) {
        let Some(entry) = self.setup.checks.get(report.check.as_ref()).cloned() else {
            return;
        };
        let now = self.now();
        let failure = report.failure.as_ref();
        let record = RunRecord {
            check: report.check.to_string(),
            started_at: engine::secs(report.started_at),
            duration: report.duration.as_secs_f64(),
            result: report.result.as_str().to_string(),
            reason_kind: failure.map(|f| f.kind.as_str().to_string()),
            reason: failure.map(|f| f.message.clone()),
        };
        let name = report.check.to_string();
        // What to write of the alert state: nothing, the new state, or its removal (`None`).
        let (write, queued) = if entry.policy.enabled {
            let run = engine::FinishedRun {
                started_at: report.started_at,
                passed: report.result.passed(),
                reason_kind: failure
                    .map(|f| f.kind.as_str().to_string())
                    .unwrap_or_else(|| report.result.as_str().to_string()),
                reason: failure.map(|f| f.message.clone()).unwrap_or_default(),
                evidence: report.observations.iter().find_map(|o| match o {
                    Observation::Evidence(dir) => Some(dir.display().to_string()),
                    _ => None,
                }),
            };
            let quiet = super::maintenance::any_contains(&entry.maintenance, now);
            let state = self.states.entry(name.clone()).or_default();
            let before = state.clone();
            let events = state.observe(&run, &entry.policy, now, quiet);
            let changed = state.differs_on_disk(&before) || self.unsaved.contains(&name);
            let firing = state.firing;
            let timed = state.time_driven();
            // Copied only when it is written.
            let write = (changed || !events.is_empty()).then(|| Some(state.clone()));
            if timed {
                self.timed.insert(name.clone());
            } else {
                self.timed.remove(&name);
            }
            self.metrics.set_alert_firing(&name, firing);
            let queued = self.queue(&name, &entry, &events, now);
            (write, queued)
        } else {
            // Not alerting: its state was removed when it stopped; again only if that failed.
            (self.unsaved.contains(&name).then_some(None), Vec::new())
        };
        if queued.is_empty() && write.is_none() {
            self.history.push(record);
            if self.history.len() >= HISTORY_BATCH {
                self.flush().await;
            } else if self.flush_at.is_none() {
                self.flush_at = Some(tokio::time::Instant::now() + HISTORY_DELAY);
            }
            return;
        }
        let mut runs = std::mem::take(&mut self.history);
        self.flush_at = None;
        runs.push(record);
        let keep = self.setup.keep_runs;
        let queued_any = !queued.is_empty();
        let check = name.clone();
        let saved = self
            .with_store("recording a run", move |s| {
                let state = write.as_ref().map(|w| (check.as_str(), w.as_ref()));
                s.commit_runs(&runs, keep, state, &queued, engine::secs(now))
            })
            .await
            .is_some();
        self.saved(name, saved);
        if queued_any && self.setup.group_wait.is_zero() {
            self.pump().await;
        }
    }

    async fn tick(&mut self) {
        let now = self.now();
        // Only states that time can change: a tick costs nothing per check that is fine.
        let names: Vec<String> = self.timed.iter().cloned().collect();
        for name in names {
            self.tick_visits += 1;
            let Some(entry) = self.setup.checks.get(&name).cloned() else {
                continue;
            };
            if !entry.policy.enabled {
                continue;
            }
            let quiet = super::maintenance::any_contains(&entry.maintenance, now);
            let Some(state) = self.states.get_mut(&name) else {
                continue;
            };
            let before = state.clone();
            let events = state.tick(&entry.policy, now, quiet);
            if !state.time_driven() {
                self.timed.remove(&name);
            }
            if *state == before {
                continue;
            }
            let state = state.clone();
            let queued = self.queue(&name, &entry, &events, now);
            let keep = self.setup.keep_runs;
            let check = name.clone();
            let saved = self
                .with_store("saving alert state", move |s| {
                    s.commit(None, keep, &check, Some(&state), &queued, engine::secs(now))
                })
                .await
                .is_some();
            self.saved(name, saved);
        }
        self.pump().await;
    }

    /// Sends what is due.
    async fn pump(&mut self) {
        let Some(rows) = self
            .with_store("reading queued notifications", |s| s.outbox())
            .await
        else {
            return;
        };
        self.metrics
            .notifications_queued
            .set(i64::try_from(rows.len()).unwrap_or(i64::MAX));
        let now = engine::secs(self.now());
        for batch in dispatch::ready(rows, now, &self.in_flight) {
            let Some(entry) = self.setup.notifier(&batch.notifier).cloned() else {
                tracing::warn!(
                    notifier = %batch.notifier,
                    "notifier no longer configured; its queued notifications are dropped"
                );
                let ids: Vec<i64> = batch.rows.iter().map(|r| r.id).collect();
                self.with_store("dropping notifications", move |s| s.remove(&ids))
                    .await;
                continue;
            };
            self.in_flight
                .insert((batch.notifier.clone(), batch.shop.clone()));
            let notification =
                self.setup
                    .notification(&entry, &batch.shop, batch.notices.clone(), false);
            let results = self.results.clone();
            tokio::spawn(async move {
                let result = entry.notifier.send(&notification).await;
                let _ = results.send(SendResult { batch, result }).await;
            });
        }
    }

    async fn sent(&mut self, done: SendResult) {
        let SendResult { batch, result } = done;
        self.in_flight
            .remove(&(batch.notifier.clone(), batch.shop.clone()));
        let ids: Vec<i64> = batch.rows.iter().map(|r| r.id).collect();
        let counter = |result: &str| {
            self.metrics
                .notifications
                .with_label_values(&[batch.notifier.as_str(), result])
                .inc();
        };
        match result {
            Ok(()) => {
                counter("sent");
                self.health.record(&batch.notifier, None);
                tracing::info!(
                    notifier = %batch.notifier,
                    shop = %batch.shop,
                    alerts = batch.notices.len(),
                    "notification sent"
                );
                self.with_store("removing sent notifications", move |s| s.remove(&ids))
                    .await;
            }
            Err(error) => {
                counter("error");
                self.health.record(&batch.notifier, Some(error.to_string()));
                let now = engine::secs(self.now());
                let jitter = rand::random::<f64>();
                match dispatch::after_failure(&batch, &error, self.setup.attempts, now, jitter) {
                    AfterFailure::Retry { attempts, at } => {
                        tracing::warn!(
                            notifier = %batch.notifier,
                            shop = %batch.shop,
                            attempt = attempts,
                            retry_in_seconds = (at - now).max(0.0),
                            error = %error,
                            "notification failed; will retry"
                        );
                        self.with_store("scheduling a retry", move |s| {
                            s.retry_later(&ids, attempts, at)
                        })
                        .await;
                    }
                    AfterFailure::Drop { fallbacks } => {
                        counter("dropped");
                        tracing::error!(
                            notifier = %batch.notifier,
                            shop = %batch.shop,
                            error = %error,
                            fallback = fallbacks.first().map(|f| f.notifier.as_str()).unwrap_or("none"),
                            "notification given up"
                        );
                        self.with_store("handing over to the fallback", move |s| {
                            s.enqueue(&fallbacks)?;
                            s.remove(&ids)
                        })
                        .await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
