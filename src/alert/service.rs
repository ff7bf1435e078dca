//! The alerting task: run reports in, notifications out.
//!
//! One task owns the alert states, so reports, ticks, config changes and send results are handled
//! one at a time and never race. Sends run in their own tasks (a slow notifier must not delay the
//! others) and report back. SQLite work runs on the blocking pool.
//!
//! Alerting never waits for the disk: states and the outbox of notifications live in the task's
//! memory, and sends go out from there. Every change is written through to SQLite at once; when a
//! write fails (disk full, read-only, I/O error) the task keeps alerting from memory, retries
//! with backoff, and writes what it holds in one transaction once the disk takes writes again
//! ([`Store::catch_up`]). A send's result is recorded as soon as it comes back, so a crash can
//! repeat at most the messages whose sending and recording it fell between.
//!
//! The config side ([`Setup`]) and the health record ([`Health`]) live in `service/setup.rs` and
//! `service/health.rs`; this file is the task itself.

mod digest;
mod health;
mod record;
mod setup;

pub use health::Health;
pub use setup::{Setup, send_test};

use super::dispatch::{self, AfterFailure, Batch};
use super::engine::{self, AlertState, Event};
use super::store::{IncidentChange, OutboxRow, Queued, RunRecord, Store};
use crate::metrics::Metrics;
use crate::notify::{AlertNotice, AlertStatus, NotifyError};
use crate::outcome::{Observation, RunReport};
use setup::CheckEntry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

/// Run history held in memory while the disk refuses writes; the oldest rows go first beyond it.
const HISTORY_BACKLOG: usize = 10_000;

/// First pause before writing again after a storage failure; doubles up to [`CATCH_UP_MAX`].
const CATCH_UP_FIRST: Duration = Duration::from_millis(500);

/// Longest pause between two attempts to bring the disk up to date.
const CATCH_UP_MAX: Duration = Duration::from_secs(5);

/// How often raw runs and roll-ups past their retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How long a stop waits for sends in flight to answer, so that their results are recorded
/// rather than the messages sent again after the next start.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// A request to the alerting task.
pub enum Command {
    /// Switch config.
    Apply(Box<Setup>),
    /// Send every shop's weekly digest now (`demo --digest-now`).
    DigestNow,
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
        let outbox: BTreeMap<i64, OutboxRow> =
            store.outbox()?.into_iter().map(|r| (r.id, r)).collect();
        let next_row = outbox.keys().next_back().map_or(1, |id| id + 1);
        let digest_periods = store.digest_periods()?;
        let timed = states
            .iter()
            .filter(|(_, s)| s.time_driven())
            .map(|(name, _)| name.clone())
            .collect();
        let (commands, command_rx) = mpsc::channel(8);
        let health = Arc::new(Health::new(metrics.clone()));
        health.storage_ok(engine::secs(clock()));
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
            outbox,
            next_row,
            behind: None,
            incidents: Vec::new(),
            prune_at: tokio::time::Instant::now(),
            tick_visits: 0,
            digest_periods,
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

    /// Stops the task: sends in flight get up to 5 s to answer and their results are recorded,
    /// then the waiting run history is written (and, if the disk failed, everything it missed).
    /// Queued notifications not yet sent go out at the next start.
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

    /// Queues every shop's weekly digest of the week up to now, whatever the schedule.
    pub async fn digest_now(&self) {
        let _ = self.0.send(Command::DigestNow).await;
    }
}

/// The disk missed writes; when to try to catch up.
struct Behind {
    /// Catch-up attempts that failed.
    failures: u32,
    /// The next attempt.
    retry_at: tokio::time::Instant,
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
    /// Runs that changed no alert state, waiting to be written together (see [`HISTORY_BATCH`]);
    /// while the disk fails, every run not yet written (see [`HISTORY_BACKLOG`]).
    history: Vec<RunRecord>,
    /// When `history` is written at the latest.
    flush_at: Option<tokio::time::Instant>,
    /// Notifications decided and not yet sent, by row id: what is sent from. The outbox table is
    /// its copy on disk, under the same ids.
    outbox: BTreeMap<i64, OutboxRow>,
    /// The id of the next queued notification.
    next_row: i64,
    /// Set while the disk is behind memory (a write failed): no write is tried except the catch-up.
    behind: Option<Behind>,
    /// Incidents begun or ended and not yet on disk: written with the state that caused them,
    /// or by the catch-up.
    incidents: Vec<IncidentChange>,
    /// When old runs and roll-ups are pruned next.
    prune_at: tokio::time::Instant,
    /// States looked at by ticks, for tests that pin a tick's cost.
    tick_visits: u64,
    /// The last digest period queued per shop, as in the store.
    digest_periods: HashMap<String, i64>,
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
                Some(command) = commands.recv() => match command {
                    Command::Apply(setup) => self.apply(*setup).await,
                    Command::DigestNow => {
                        self.digests(true).await;
                        self.pump().await;
                    }
                },
                Some(done) = results.recv() => self.sent(done).await,
                _ = tick.tick() => self.tick().await,
            }
        }
        // Sends in flight finish within STOP_WAIT and their results are recorded: a message that
        // went out is not sent again after the next start. Only the result channel is read now.
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        while !self.in_flight.is_empty() {
            match tokio::time::timeout_at(deadline, results.recv()).await {
                Ok(Some(done)) => self.sent(done).await,
                Ok(None) | Err(_) => {
                    tracing::warn!(
                        sends = self.in_flight.len(),
                        "stopping with notifications in flight; they are sent again at the next start"
                    );
                    break;
                }
            }
        }
        self.flush().await;
        if let Some(behind) = &mut self.behind {
            behind.retry_at = tokio::time::Instant::now();
        }
        self.catch_up().await;
    }

    /// Writes the run history that waits for its batch.
    async fn flush(&mut self) {
        self.flush_at = None;
        if self.history.is_empty() {
            return;
        }
        if self.behind.is_some() {
            // The catch-up writes them; until then memory holds a bounded backlog.
            let excess = self.history.len().saturating_sub(HISTORY_BACKLOG);
            self.history.drain(..excess);
            return;
        }
        let runs = std::mem::take(&mut self.history);
        let keep = self.setup.keep_runs;
        let now = engine::secs(self.now());
        let written = runs.clone();
        if !self
            .write("record_runs", "recording runs", move |s| {
                s.commit_runs(&written, keep, None, &[], &[], now)
            })
            .await
        {
            self.history = runs;
        }
    }

    fn now(&self) -> SystemTime {
        (self.clock)()
    }

    /// Writes through to the store on the blocking pool, unless the disk is already behind
    /// (then the catch-up writes it). Whether it was written; a failure is logged, counted, shown
    /// in `/healthz`, and puts the task behind. Memory has the change either way: the caller
    /// only remembers what the catch-up must write besides the outbox (states, runs).
    async fn write(
        &mut self,
        operation: &'static str,
        what: &'static str,
        op: impl FnOnce(&Store) -> Result<(), super::store::StoreError> + Send + 'static,
    ) -> bool {
        if self.behind.is_some() {
            return false;
        }
        let store = self.store.clone();
        // The blocking pool, so that a slow disk never stalls the runtime's workers.
        let result = tokio::task::spawn_blocking(move || op(&store)).await;
        let error = match result {
            Ok(Ok(())) => {
                self.health.storage_ok(engine::secs(self.now()));
                return true;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("{what} panicked: {e}"),
        };
        tracing::error!(
            error = %error,
            "{what} failed; alerting goes on from memory and writes it when storage works again"
        );
        self.health.storage_failed(operation, error);
        self.behind = Some(Behind {
            failures: 0,
            retry_at: tokio::time::Instant::now() + CATCH_UP_FIRST,
        });
        false
    }

    /// When the disk is behind and the time has come, writes what it missed: the states whose
    /// writes failed, the waiting runs and the whole outbox, in one transaction.
    async fn catch_up(&mut self) {
        let Some(behind) = &self.behind else {
            return;
        };
        if tokio::time::Instant::now() < behind.retry_at {
            return;
        }
        let states: Vec<(String, Option<AlertState>)> = self
            .unsaved
            .iter()
            .map(|name| (name.clone(), self.states.get(name).cloned()))
            .collect();
        let outbox: Vec<OutboxRow> = self.outbox.values().cloned().collect();
        let runs = self.history.clone();
        let incidents = self.incidents.clone();
        let keep = self.setup.keep_runs;
        let now = engine::secs(self.now());
        let store = self.store.clone();
        // The blocking pool, as every write.
        let result = tokio::task::spawn_blocking(move || {
            store.catch_up(&runs, keep, &states, &incidents, &outbox, now)
        })
        .await;
        let error = match result {
            Ok(Ok(())) => {
                tracing::info!(
                    states = self.unsaved.len(),
                    queued = self.outbox.len(),
                    runs = self.history.len(),
                    "storage works again; alert state and queued notifications written"
                );
                self.behind = None;
                self.unsaved.clear();
                self.history.clear();
                self.incidents.clear();
                self.flush_at = None;
                self.health.storage_ok(now);
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("writing to storage panicked: {e}"),
        };
        tracing::warn!(error = %error, "storage still fails; alerting goes on from memory");
        self.health.storage_failed("catch_up", error);
        if let Some(behind) = &mut self.behind {
            behind.failures += 1;
            let pause = CATCH_UP_FIRST
                .saturating_mul(1 << behind.failures.min(16))
                .min(CATCH_UP_MAX);
            behind.retry_at = tokio::time::Instant::now() + pause;
        }
    }

    /// Puts `queued` into the outbox under fresh ids; the rows, for writing through.
    fn admit(&mut self, queued: Vec<Queued>) -> Vec<OutboxRow> {
        let rows: Vec<OutboxRow> = queued
            .into_iter()
            .map(|queued| {
                let id = self.next_row;
                self.next_row += 1;
                OutboxRow {
                    id,
                    next_attempt_at: queued.due_at,
                    queued,
                    attempts: 0,
                }
            })
            .collect();
        for row in &rows {
            self.outbox.insert(row.id, row.clone());
        }
        rows
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
            let queued = match self.setup.checks.get(&name).cloned() {
                Some(entry) => {
                    self.note_incidents(&name, &entry, &events);
                    self.queue(&name, &entry, &events, now)
                }
                None => Vec::new(),
            };
            let queued = self.admit(queued);
            let keep = self.setup.keep_runs;
            let forget = name.clone();
            let incidents = self.incidents.clone();
            let saved = self
                .write(
                    "save_alert_state",
                    "forgetting a removed check's alert",
                    move |s| {
                        let state = Some((forget.as_str(), None));
                        s.commit_runs(&[], keep, state, &incidents, &queued, engine::secs(now))
                    },
                )
                .await;
            self.incidents_saved(saved);
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

    /// Remembers the incidents that `events` begin or end, to be written with the state.
    fn note_incidents(&mut self, check: &str, entry: &CheckEntry, events: &[Event]) {
        for event in events {
            let ended_at = match event.status {
                AlertStatus::Firing => None,
                AlertStatus::Resolved => {
                    Some(engine::secs(event.resolved_at.unwrap_or(self.now())))
                }
                AlertStatus::Reminder => continue,
            };
            self.incidents.push(IncidentChange {
                check: check.to_string(),
                shop: entry.shop.clone(),
                channel: entry.channel.as_str().to_string(),
                kind: entry.kind.as_str().to_string(),
                started_at: engine::secs(event.since),
                ended_at,
                reason_kind: event.reason_kind.clone(),
                reason: event.reason.clone(),
            });
        }
    }

    /// Forgets the incident changes once a write took them.
    fn incidents_saved(&mut self, saved: bool) {
        if saved {
            self.incidents.clear();
        }
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
            let fingerprint = format!("{check}@{}", engine::secs(event.since) as u64);
            // One key per transition: a re-send of it carries the same, a reminder its own.
            let id = match event.status {
                AlertStatus::Firing | AlertStatus::Resolved => {
                    format!("{fingerprint}:{}", event.status.as_str())
                }
                AlertStatus::Reminder => {
                    format!("{fingerprint}:reminder@{}", engine::secs(now) as u64)
                }
            };
            let notice = AlertNotice {
                digest: None,
                id,
                fingerprint,
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
            shop: entry.shop.clone(),
            channel: entry.channel.as_str().to_string(),
            kind: entry.kind.as_str().to_string(),
            latency: latency(report),
            values: record::observed_values(report),
            details: record::run_details(report),
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
            self.note_incidents(&name, &entry, &events);
            let queued = self.queue(&name, &entry, &events, now);
            (write, queued)
        } else {
            // Not alerting: its state was removed when it stopped; again only if that failed.
            (self.unsaved.contains(&name).then_some(None), Vec::new())
        };
        let queued = self.admit(queued);
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
        let state_written = write.is_some();
        let written = runs.clone();
        let incidents = self.incidents.clone();
        let saved = self
            .write("save_alert_state", "recording a run", move |s| {
                let state = write.as_ref().map(|w| (check.as_str(), w.as_ref()));
                s.commit_runs(
                    &written,
                    keep,
                    state,
                    &incidents,
                    &queued,
                    engine::secs(now),
                )
            })
            .await;
        self.incidents_saved(saved);
        if !saved {
            // Kept for the catch-up, the oldest first to go.
            self.history = runs;
            let excess = self.history.len().saturating_sub(HISTORY_BACKLOG);
            self.history.drain(..excess);
        }
        if state_written {
            self.saved(name, saved);
        }
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
            self.note_incidents(&name, &entry, &events);
            let queued = self.queue(&name, &entry, &events, now);
            let queued = self.admit(queued);
            let keep = self.setup.keep_runs;
            let check = name.clone();
            let incidents = self.incidents.clone();
            let saved = self
                .write("save_alert_state", "saving alert state", move |s| {
                    let state = Some((check.as_str(), Some(&state)));
                    s.commit_runs(&[], keep, state, &incidents, &queued, engine::secs(now))
                })
                .await;
            self.incidents_saved(saved);
            self.saved(name, saved);
        }
        self.prune().await;
        self.catch_up().await;
        self.digests(false).await;
        self.pump().await;
    }

    /// Once an hour, deletes raw runs, roll-ups and incidents past their retention. A failure
    /// is counted like any write's (`operation="prune"`); nothing is behind for it, so it is
    /// simply tried again next hour.
    async fn prune(&mut self) {
        if tokio::time::Instant::now() < self.prune_at || self.behind.is_some() {
            return;
        }
        self.prune_at = tokio::time::Instant::now() + PRUNE_EVERY;
        let now = engine::secs(self.now());
        let (runs_for, rollups_for) = self.setup.retention;
        let runs_before = now - runs_for.as_secs_f64();
        let hourly_before = now - super::store::rollup::HOURLY_FOR as f64;
        let rollups_before = now - rollups_for.as_secs_f64();
        let store = self.store.clone();
        // The blocking pool, as every write; a big first prune must not stall the runtime.
        let result = tokio::task::spawn_blocking(move || {
            store.prune(runs_before, hourly_before, rollups_before)
        })
        .await;
        match result {
            Ok(Ok(deleted)) => tracing::debug!(deleted, "old run history pruned"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "pruning old run history failed; tried again in an hour");
                self.metrics
                    .storage_errors
                    .with_label_values(&["prune"])
                    .inc();
            }
            Err(e) => tracing::warn!(error = %e, "pruning old run history panicked"),
        }
    }

    /// Sends what is due.
    async fn pump(&mut self) {
        self.metrics
            .notifications_queued
            .set(i64::try_from(self.outbox.len()).unwrap_or(i64::MAX));
        if self.outbox.is_empty() {
            return;
        }
        let rows: Vec<OutboxRow> = self.outbox.values().cloned().collect();
        let now = engine::secs(self.now());
        for batch in dispatch::ready(rows, now, &self.in_flight) {
            let Some(entry) = self.setup.notifier(&batch.notifier).cloned() else {
                tracing::warn!(
                    notifier = %batch.notifier,
                    "notifier no longer configured; its queued notifications are dropped"
                );
                let ids: Vec<i64> = batch.rows.iter().map(|r| r.id).collect();
                for id in &ids {
                    self.outbox.remove(id);
                }
                self.write("update_outbox", "dropping notifications", move |s| {
                    s.remove(&ids)
                })
                .await;
                continue;
            };
            self.in_flight
                .insert((batch.notifier.clone(), batch.shop.clone()));
            let notification =
                self.setup
                    .notification(&entry, &batch.shop, batch.notices.clone(), false);
            let results = self.results.clone();
            // Its own task, so that a slow notifier delays nobody; the result comes back over
            // `results` to this task, which alone changes the outbox.
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
        let metrics = self.metrics.clone();
        let counter = |result: &str| {
            metrics
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
                for id in &ids {
                    self.outbox.remove(id);
                }
                // Written at once, before anything else is handled: the window in which a crash
                // makes this message go out again is this one write.
                self.write("update_outbox", "removing sent notifications", move |s| {
                    s.remove(&ids)
                })
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
                        for id in &ids {
                            if let Some(row) = self.outbox.get_mut(id) {
                                row.attempts = attempts;
                                row.next_attempt_at = at;
                            }
                        }
                        self.write("update_outbox", "scheduling a retry", move |s| {
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
                        for id in &ids {
                            self.outbox.remove(id);
                        }
                        let fallbacks = self.admit(fallbacks);
                        self.write("update_outbox", "handing over to the fallback", move |s| {
                            s.hand_over(&fallbacks, &ids)
                        })
                        .await;
                    }
                }
            }
        }
    }
}

/// The run's meaningful latency, seconds: delivery time for mail and forms, first reply for
/// chat, time to ring for calls, else the duration of a passed run. A failed run without such an observation has none,
/// so that timeouts do not pose as slow answers.
fn latency(report: &RunReport) -> Option<f64> {
    let observed = report.observations.iter().find_map(|o| match o {
        Observation::DeliveryLatency(d)
        | Observation::ChatFirstResponse(d)
        | Observation::PhoneRing(d) => Some(*d),
        Observation::HttpStatus(_)
        | Observation::PhoneAnswer(_)
        | Observation::PhoneAudioLevel(_)
        | Observation::BodyTruncated
        | Observation::Cert(_)
        | Observation::AutoReplyLatency(_)
        | Observation::MailboxQuota { .. }
        | Observation::Evidence(_)
        | Observation::SpfLookups { .. } => None,
    });
    match observed {
        Some(d) => Some(d.as_secs_f64()),
        None => report
            .result
            .passed()
            .then_some(report.duration.as_secs_f64()),
    }
}

#[cfg(test)]
mod tests;
