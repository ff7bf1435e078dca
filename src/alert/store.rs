//! SQLite storage: alert state, run history, the notification outbox and late test mail.
//!
//! A run's record, its check's new alert state and the notifications it caused are written in one
//! transaction, so after a crash either all of them are there or none. Runs that changed no state
//! may share one transaction ([`Store::commit_runs`]); the alerting task decides when. Notifications are deleted
//! only after they were sent: one decided before a restart is sent after it, and an announced
//! incident is remembered as announced, so it is neither re-sent nor forgotten.
//!
//! The store is the alerting task's copy on disk, not its working memory: the task keeps states
//! and the outbox in memory and sends from there, so a failing disk delays persistence, never an
//! alert. After failed writes [`Store::catch_up`] writes what memory holds in one go.
//!
//! The schema is versioned with `PRAGMA user_version`; each entry of [`MIGRATIONS`] moves it one
//! version up and is applied once, in order, in a transaction.
//!
//! The tokens of late test mail have a table of their own ([`late_mail`]); hourly and daily
//! roll-ups of the runs ([`rollup`]) and incidents ([`incidents`]) are written with the runs.

mod incidents;
mod last_values;
mod late_mail;
pub mod rollup;

pub use incidents::{Incident, IncidentChange};
pub use last_values::{LastValue, LastValueRow, ValueKind};
pub use rollup::{Histogram, RollupCounts, RollupRow};

use super::engine::AlertState;
use crate::notify::AlertNotice;
use rusqlite::{Connection, StatementStatus, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Schema migrations, oldest first. Never edit one that has shipped; add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: alert state, run history, outbox.
    "CREATE TABLE alert_state (
         check_name TEXT PRIMARY KEY,
         state      TEXT NOT NULL,
         updated_at REAL NOT NULL
     );
     CREATE TABLE runs (
         id          INTEGER PRIMARY KEY,
         check_name  TEXT NOT NULL,
         started_at  REAL NOT NULL,
         duration    REAL NOT NULL,
         result      TEXT NOT NULL,
         reason_kind TEXT,
         reason      TEXT
     );
     CREATE INDEX runs_by_check ON runs (check_name, id);
     CREATE TABLE outbox (
         id              INTEGER PRIMARY KEY,
         notifier        TEXT NOT NULL,
         shop            TEXT NOT NULL,
         fallback        TEXT,
         is_fallback     INTEGER NOT NULL DEFAULT 0,
         due_at          REAL NOT NULL,
         next_attempt_at REAL NOT NULL,
         attempts        INTEGER NOT NULL DEFAULT 0,
         notice          TEXT NOT NULL
     );",
    // 2: tokens of runs whose test mail was not found, so late mail is deleted after a restart.
    "CREATE TABLE late_mail (
         mailbox    TEXT NOT NULL,
         token      TEXT NOT NULL,
         check_name TEXT NOT NULL,
         sent_at    REAL NOT NULL,
         expires_at REAL NOT NULL,
         PRIMARY KEY (mailbox, token)
     );",
    // 3: each run's meaningful latency, hourly and daily roll-ups per check, incidents.
    "ALTER TABLE runs ADD COLUMN latency REAL;
     ALTER TABLE runs ADD COLUMN shop TEXT NOT NULL DEFAULT '';
     ALTER TABLE runs ADD COLUMN channel TEXT NOT NULL DEFAULT '';
     ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT '';
     CREATE INDEX runs_by_time ON runs (started_at);
     CREATE TABLE rollups (
         check_name  TEXT NOT NULL,
         period      INTEGER NOT NULL,
         start       INTEGER NOT NULL,
         shop        TEXT NOT NULL,
         channel     TEXT NOT NULL,
         kind        TEXT NOT NULL,
         runs        INTEGER NOT NULL,
         failures    INTEGER NOT NULL,
         latency_max REAL,
         buckets     TEXT NOT NULL,
         PRIMARY KEY (check_name, period, start)
     ) WITHOUT ROWID;
     CREATE INDEX rollups_by_shop ON rollups (shop, period, start);
     CREATE INDEX rollups_by_age ON rollups (period, start);
     CREATE TABLE incidents (
         check_name  TEXT NOT NULL,
         started_at  REAL NOT NULL,
         shop        TEXT NOT NULL,
         channel     TEXT NOT NULL,
         kind        TEXT NOT NULL,
         ended_at    REAL,
         reason_kind TEXT NOT NULL,
         reason      TEXT NOT NULL,
         PRIMARY KEY (check_name, started_at)
     );
     CREATE INDEX incidents_by_shop ON incidents (shop, started_at);",
    // 4: the last weekly digest period queued per shop, so each period is sent once.
    "CREATE TABLE digests (
         shop   TEXT PRIMARY KEY,
         period INTEGER NOT NULL
     );",
    // 5: the last certificate expiry and mailbox fill observed, and each run's phases and
    // observations (redacted JSON, bounded).
    "CREATE TABLE last_values (
         kind        TEXT NOT NULL,
         subject     TEXT NOT NULL,
         check_name  TEXT NOT NULL,
         shop        TEXT NOT NULL,
         value       REAL NOT NULL,
         observed_at REAL NOT NULL,
         PRIMARY KEY (kind, subject, check_name)
     ) WITHOUT ROWID;
     CREATE INDEX last_values_by_shop ON last_values (shop, kind);
     ALTER TABLE runs ADD COLUMN details TEXT;",
];

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("storage {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The file was written by a newer supportwatch.
    #[error(
        "storage {path}: schema version {found} is newer than this supportwatch knows ({known}); \
         upgrade supportwatch or point storage.path elsewhere"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// Ours.
        known: i64,
    },
    /// A read-only open found a schema other than this supportwatch's.
    #[error(
        "storage {path}: schema version {found}, this supportwatch reads version {known}; \
         start this supportwatch's daemon once to migrate it, or use the matching version"
    )]
    OtherVersion {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// Ours.
        known: i64,
    },
}

/// A finished run, as kept in the history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunRecord {
    /// Check name.
    pub check: String,
    /// Start, unix seconds.
    pub started_at: f64,
    /// Duration, seconds.
    pub duration: f64,
    /// `success`, `retried_success`, `failure`, `timeout`.
    pub result: String,
    /// Bounded failure reason.
    pub reason_kind: Option<String>,
    /// Failure message.
    pub reason: Option<String>,
    /// The check's shop label.
    pub shop: String,
    /// The check's channel (`feedback_form`, `chat`, ...).
    pub channel: String,
    /// The check's kind (`form`, `chat`, ...).
    pub kind: String,
    /// The check's meaningful latency, seconds: delivery time for mail and forms, first reply
    /// for chat, else the duration of a passed run; `None` for a failed run that measured none.
    pub latency: Option<f64>,
    /// Certificate expiries and mailbox fills the run observed (kept as the last values).
    pub values: Vec<LastValue>,
    /// The run's phases and observations, JSON, redacted and bounded (see
    /// `alert::service::run_details`); `None` for none.
    pub details: Option<String>,
}

impl RunRecord {
    /// Whether the run failed (`failure` or `timeout`).
    pub fn failed(&self) -> bool {
        !matches!(self.result.as_str(), "success" | "retried_success")
    }
}

/// A notification to queue: one alert for one notifier.
#[derive(Clone, Debug)]
pub struct Queued {
    /// Notifier name.
    pub notifier: String,
    /// Shop, the grouping key.
    pub shop: String,
    /// Notifier told instead if this one fails for good.
    pub fallback: Option<String>,
    /// This is itself a fallback delivery (it gets no further fallback).
    pub is_fallback: bool,
    /// Earliest send, unix seconds (now + group_wait).
    pub due_at: f64,
    /// The alert.
    pub notice: AlertNotice,
}

/// A queued notification with its delivery progress.
#[derive(Clone, Debug)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// What is queued.
    pub queued: Queued,
    /// Attempts made.
    pub attempts: u32,
    /// Earliest next attempt, unix seconds.
    pub next_attempt_at: f64,
}

/// The database.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Write transactions begun, for tests that pin how much a run costs.
    transactions: AtomicU64,
    /// SQLite VM steps spent recording runs, for tests that pin that it does not grow with
    /// the history.
    steps: AtomicU64,
    /// SQLite VM steps spent reading roll-ups, for tests that pin what a page costs.
    read_steps: AtomicU64,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A missing directory is reported by SQLite below, with the path.
            let _ = std::fs::create_dir_all(dir);
        }
        let mut conn = Connection::open(path).map_err(err)?;
        // WAL: readers never block the writer; NORMAL sync is durable across process crashes,
        // which is what alert state needs, and costs no fsync per run.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        let known = MIGRATIONS.len() as i64;
        if found > known {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = conn.transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(err)?;
            tx.commit().map_err(err)?;
            tracing::info!(path = %path.display(), version = i + 1, "storage schema migrated");
        }
        Ok(Store {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            transactions: AtomicU64::new(0),
            steps: AtomicU64::new(0),
            read_steps: AtomicU64::new(0),
        })
    }

    /// Opens an existing database for reading only (`supportwatch report`), alongside a
    /// running daemon: WAL lets it read while the daemon writes. The schema must be this
    /// supportwatch's.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        let known = MIGRATIONS.len() as i64;
        if found != known {
            return Err(StoreError::OtherVersion {
                path: path.to_path_buf(),
                found,
                known,
            });
        }
        Ok(Store {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            transactions: AtomicU64::new(0),
            steps: AtomicU64::new(0),
            read_steps: AtomicU64::new(0),
        })
    }

    /// SQLite VM steps spent recording runs (inserts, trims, roll-ups) since the store opened.
    pub fn record_steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    /// SQLite VM steps spent reading roll-ups since the store opened.
    pub fn read_steps(&self) -> u64 {
        self.read_steps.load(Ordering::Relaxed)
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin<'c>(&self, conn: &'c mut Connection) -> Result<rusqlite::Transaction<'c>, StoreError> {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        conn.transaction().map_err(|e| self.err(e))
    }

    /// Makes every write fail (`PRAGMA query_only`) while `refuse` holds, as a full or
    /// read-only disk would.
    #[cfg(test)]
    pub(crate) fn refuse_writes(&self, refuse: bool) {
        self.conn()
            .pragma_update(None, "query_only", refuse)
            .expect("set query_only");
    }

    /// Write transactions begun since the store was opened.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// The schema version.
    pub fn version(&self) -> Result<i64, StoreError> {
        self.conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Every check's saved alert state. A state that does not parse (written by a bug) is
    /// dropped with a warning rather than stopping alerting for every check.
    pub fn load_states(&self) -> Result<HashMap<String, AlertState>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT check_name, state FROM alert_state")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = HashMap::new();
        for row in rows {
            let (check, json) = row.map_err(|e| self.err(e))?;
            match serde_json::from_str(&json) {
                Ok(state) => {
                    out.insert(check, state);
                }
                Err(e) => tracing::warn!(%check, error = %e, "unreadable alert state dropped"),
            }
        }
        Ok(out)
    }

    /// Records a run (keeping the newest `keep_runs` of its check), the check's new alert state
    /// and the notifications it caused, all or nothing.
    pub fn commit(
        &self,
        run: Option<&RunRecord>,
        keep_runs: u32,
        check: &str,
        state: Option<&AlertState>,
        queued: &[OutboxRow],
        now: f64,
    ) -> Result<(), StoreError> {
        let runs = run.map(std::slice::from_ref).unwrap_or_default();
        self.commit_runs(runs, keep_runs, Some((check, state)), &[], queued, now)
    }

    /// Records `runs` (keeping the newest `keep_runs` of each check, and adding them to their
    /// roll-ups), and, when given, one check's alert state (`None`: forgotten), the incidents
    /// it began or ended and the notifications it caused, all in one transaction.
    pub fn commit_runs(
        &self,
        runs: &[RunRecord],
        keep_runs: u32,
        state: Option<(&str, Option<&AlertState>)>,
        incidents: &[IncidentChange],
        queued: &[OutboxRow],
        now: f64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = self.begin(&mut conn)?;
        self.insert_runs(&tx, runs, keep_runs)?;
        if let Some((check, state)) = state {
            write_state(&tx, check, state, now).map_err(|e| self.err(e))?;
        }
        incidents::write(&tx, incidents).map_err(|e| self.err(e))?;
        insert_rows(&tx, queued).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Queues notifications (fallback deliveries) and removes the rows `done`, together.
    pub fn hand_over(&self, queued: &[OutboxRow], done: &[i64]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = self.begin(&mut conn)?;
        insert_rows(&tx, queued).map_err(|e| self.err(e))?;
        delete_rows(&tx, done).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Brings the disk up to what the alerting task holds in memory after writes failed: the
    /// waiting `runs`, the `states` whose writes were lost (`None`: forgotten), and the whole
    /// `outbox` in place of the table's, with the incident changes not yet written, in one
    /// transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn catch_up(
        &self,
        runs: &[RunRecord],
        keep_runs: u32,
        states: &[(String, Option<AlertState>)],
        incidents: &[IncidentChange],
        outbox: &[OutboxRow],
        now: f64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = self.begin(&mut conn)?;
        self.insert_runs(&tx, runs, keep_runs)?;
        incidents::write(&tx, incidents).map_err(|e| self.err(e))?;
        for (check, state) in states {
            write_state(&tx, check, state.as_ref(), now).map_err(|e| self.err(e))?;
        }
        tx.execute("DELETE FROM outbox", [])
            .map_err(|e| self.err(e))?;
        insert_rows(&tx, outbox).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Everything queued.
    pub fn outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, notifier, shop, fallback, is_fallback, due_at, next_attempt_at,
                        attempts, notice
                 FROM outbox ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, f64>(5)?,
                    r.get::<_, f64>(6)?,
                    r.get::<_, u32>(7)?,
                    r.get::<_, String>(8)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, notifier, shop, fallback, is_fallback, due_at, next, attempts, json) =
                row.map_err(|e| self.err(e))?;
            match serde_json::from_str::<AlertNotice>(&json) {
                Ok(notice) => out.push(OutboxRow {
                    id,
                    queued: Queued {
                        notifier,
                        shop,
                        fallback,
                        is_fallback,
                        due_at,
                        notice,
                    },
                    attempts,
                    next_attempt_at: next,
                }),
                Err(e) => {
                    tracing::warn!(id, error = %e, "unreadable queued notification dropped");
                    conn.execute("DELETE FROM outbox WHERE id = ?1", params![id])
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        Ok(out)
    }

    /// The last digest period recorded per shop (unix seconds of its start).
    pub fn digest_periods(&self) -> Result<HashMap<String, i64>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT shop, period FROM digests")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Records `period` as `shop`'s last digest and queues its messages `rows`, together: a
    /// crash leaves either both or neither, so a period is neither lost nor sent twice.
    pub fn queue_digest(
        &self,
        shop: &str,
        period: i64,
        rows: &[OutboxRow],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = self.begin(&mut conn)?;
        tx.execute(
            "INSERT INTO digests (shop, period) VALUES (?1, ?2)
             ON CONFLICT (shop) DO UPDATE SET period = excluded.period",
            params![shop, period],
        )
        .map_err(|e| self.err(e))?;
        insert_rows(&tx, rows).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Removes sent (or dropped) notifications.
    pub fn remove(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = self.begin(&mut conn)?;
        delete_rows(&tx, ids).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Records a failed attempt.
    pub fn retry_later(&self, ids: &[i64], attempts: u32, next_at: f64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = self.begin(&mut conn)?;
        for id in ids {
            tx.execute(
                "UPDATE outbox SET attempts = ?2, next_attempt_at = ?3 WHERE id = ?1",
                params![id, attempts, next_at],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The newest `limit` runs of `check`, newest first.
    pub fn recent_runs(&self, check: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT check_name, started_at, duration, result, reason_kind, reason, shop,
                        channel, kind, latency, details
                 FROM runs WHERE check_name = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![check, limit], |r| {
                Ok(RunRecord {
                    check: r.get(0)?,
                    started_at: r.get(1)?,
                    duration: r.get(2)?,
                    result: r.get(3)?,
                    reason_kind: r.get(4)?,
                    reason: r.get(5)?,
                    shop: r.get(6)?,
                    channel: r.get(7)?,
                    kind: r.get(8)?,
                    latency: r.get(9)?,
                    // Observed values are kept in their own table, not per run.
                    values: Vec::new(),
                    details: r.get(10)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Inserts `runs`, trims each check among them to its newest `keep_runs` and adds them to
    /// their roll-ups, counting the VM steps spent.
    fn insert_runs(
        &self,
        tx: &rusqlite::Transaction<'_>,
        runs: &[RunRecord],
        keep_runs: u32,
    ) -> Result<(), StoreError> {
        let mut steps = 0;
        let result = insert_runs(tx, runs, keep_runs, &mut steps);
        self.steps.fetch_add(steps, Ordering::Relaxed);
        result.map_err(|e| self.err(e))
    }

    /// Runs kept for `check`.
    pub fn run_count(&self, check: &str) -> Result<i64, StoreError> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM runs WHERE check_name = ?1",
                params![check],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }
}

/// Inserts `runs`, then trims each check among them to its newest `keep_runs`, then adds them to
/// their roll-ups; `steps` grows by the VM steps spent.
fn insert_runs(
    tx: &rusqlite::Transaction<'_>,
    runs: &[RunRecord],
    keep_runs: u32,
    steps: &mut u64,
) -> rusqlite::Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO runs (check_name, started_at, duration, result, reason_kind, reason, shop,
                           channel, kind, latency, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for run in runs {
        insert.execute(params![
            run.check,
            run.started_at,
            run.duration,
            run.result,
            run.reason_kind,
            run.reason,
            run.shop,
            run.channel,
            run.kind,
            run.latency,
            run.details
        ])?;
        *steps += insert.reset_status(StatementStatus::VmStep) as u64;
    }
    let mut trim = tx.prepare_cached(
        "DELETE FROM runs WHERE check_name = ?1 AND id <= (
             SELECT id FROM runs WHERE check_name = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )?;
    let mut trimmed = std::collections::HashSet::new();
    for run in runs {
        if trimmed.insert(run.check.as_str()) {
            trim.execute(params![run.check, keep_runs])?;
            *steps += trim.reset_status(StatementStatus::VmStep) as u64;
        }
    }
    rollup::record(tx, runs, steps)?;
    last_values::write(tx, runs)
}

/// Writes one check's alert state, or forgets it (`None`).
fn write_state(
    tx: &rusqlite::Transaction<'_>,
    check: &str,
    state: Option<&AlertState>,
    now: f64,
) -> rusqlite::Result<()> {
    match state {
        Some(state) => {
            let json = serde_json::to_string(state).unwrap_or_default();
            tx.execute(
                "INSERT INTO alert_state (check_name, state, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (check_name) DO UPDATE SET state = ?2, updated_at = ?3",
                params![check, json, now],
            )?;
        }
        None => {
            tx.execute(
                "DELETE FROM alert_state WHERE check_name = ?1",
                params![check],
            )?;
        }
    }
    Ok(())
}

fn delete_rows(tx: &rusqlite::Transaction<'_>, ids: &[i64]) -> rusqlite::Result<()> {
    let mut delete = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
    for id in ids {
        delete.execute(params![id])?;
    }
    Ok(())
}

/// Writes `rows` under their own ids (the alerting task numbers them, so that its copy in memory
/// and the table name the same row), replacing a row of the same id.
fn insert_rows(tx: &rusqlite::Transaction<'_>, rows: &[OutboxRow]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO outbox (id, notifier, shop, fallback, is_fallback, due_at,
                                        next_attempt_at, attempts, notice)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for row in rows {
        let q = &row.queued;
        let json = serde_json::to_string(&q.notice).unwrap_or_default();
        insert.execute(params![
            row.id,
            q.notifier,
            q.shop,
            q.fallback,
            q.is_fallback,
            q.due_at,
            row.next_attempt_at,
            row.attempts,
            json
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(check: &str, i: u32) -> RunRecord {
        RunRecord {
            check: check.into(),
            started_at: f64::from(i),
            duration: 0.5,
            result: "failure".into(),
            reason_kind: Some("timeout".into()),
            reason: Some("no answer".into()),
            shop: "demo".into(),
            channel: "chat".into(),
            kind: "chat".into(),
            latency: None,
            ..RunRecord::default()
        }
    }

    #[test]
    fn migrates_once_and_keeps_bounded_history() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("sw.db");
        {
            let store = Store::open(&path).expect("open");
            assert_eq!(store.version().expect("version"), MIGRATIONS.len() as i64);
            for i in 0..30 {
                store
                    .commit(Some(&run("a", i)), 10, "a", None, &[], 0.0)
                    .expect("commit");
            }
            store
                .commit(Some(&run("b", 1)), 10, "b", None, &[], 0.0)
                .expect("commit");
            assert_eq!(store.run_count("a").expect("count"), 10);
            let recent = store.recent_runs("a", 3).expect("recent");
            assert_eq!(recent[0].started_at, 29.0);
            assert_eq!(store.run_count("b").expect("count"), 1);
        }
        // Reopening does not migrate again and keeps the data.
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.run_count("a").expect("count"), 10);
    }

    #[test]
    fn a_newer_schema_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sw.db");
        {
            let conn = Connection::open(&path).expect("open");
            conn.pragma_update(None, "user_version", 99)
                .expect("set version");
        }
        let Err(e) = Store::open(&path) else {
            panic!("a newer schema must be refused")
        };
        assert!(
            e.to_string().contains("newer than this supportwatch"),
            "{e}"
        );
    }

    /// A firing notice of chat check `check`.
    fn firing(check: &str) -> AlertNotice {
        AlertNotice {
            digest: None,
            id: format!("{check}@1:firing"),
            fingerprint: format!("{check}@1"),
            check: check.into(),
            channel: crate::value::Channel::Chat,
            kind: crate::value::Kind::Chat,
            labels: Default::default(),
            status: crate::notify::AlertStatus::Firing,
            since: std::time::UNIX_EPOCH,
            resolved_at: None,
            consecutive_failures: 3,
            reason_kind: "no_reply".into(),
            reason: "no reply within 30s".into(),
            link: None,
        }
    }

    #[test]
    fn state_and_outbox_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("sw.db")).expect("open");
        let state = AlertState {
            firing: true,
            announced: true,
            consecutive_failures: 3,
            ..AlertState::default()
        };
        let notice = firing("a");
        let queued = Queued {
            notifier: "tg".into(),
            shop: "demo".into(),
            fallback: Some("mail".into()),
            is_fallback: false,
            due_at: 10.0,
            notice,
        };
        store
            .commit(None, 10, "a", Some(&state), &[queued_row(7, queued)], 5.0)
            .expect("commit");
        assert_eq!(store.load_states().expect("states")["a"], state);
        let rows = store.outbox().expect("outbox");
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].id, 7,
            "a row keeps the id the alerting task gave it"
        );
        assert_eq!(rows[0].queued.fallback.as_deref(), Some("mail"));
        store.retry_later(&[rows[0].id], 2, 20.0).expect("retry");
        let rows = store.outbox().expect("outbox");
        assert_eq!((rows[0].attempts, rows[0].next_attempt_at), (2, 20.0));
        store.remove(&[rows[0].id]).expect("remove");
        assert!(store.outbox().expect("outbox").is_empty());
        store.commit(None, 10, "a", None, &[], 6.0).expect("forget");
        assert!(store.load_states().expect("states").is_empty());
    }

    fn queued_row(id: i64, queued: Queued) -> OutboxRow {
        OutboxRow {
            id,
            next_attempt_at: queued.due_at,
            queued,
            attempts: 0,
        }
    }

    #[test]
    fn catching_up_replaces_the_outbox_and_writes_lost_states() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("sw.db")).expect("open");
        let queued = |check: &str| Queued {
            notifier: "ops".into(),
            shop: "demo".into(),
            fallback: None,
            is_fallback: false,
            due_at: 1.0,
            notice: firing(check),
        };
        let state = AlertState {
            firing: true,
            announced: true,
            ..AlertState::default()
        };
        // On disk before the failure: a state of "gone" and a row already sent since.
        store
            .commit(
                None,
                10,
                "gone",
                Some(&state),
                &[queued_row(1, queued("gone"))],
                1.0,
            )
            .expect("commit");
        store
            .catch_up(
                &[run("a", 1)],
                10,
                &[("a".into(), Some(state.clone())), ("gone".into(), None)],
                &[],
                &[queued_row(2, queued("a"))],
                2.0,
            )
            .expect("catch up");
        let states = store.load_states().expect("states");
        assert_eq!(states.len(), 1);
        assert_eq!(states["a"], state);
        let rows = store.outbox().expect("outbox");
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].id, rows[0].queued.notice.check.as_str()), (2, "a"));
        assert_eq!(store.run_count("a").expect("count"), 1);
    }
}
