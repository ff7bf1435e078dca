//! Hourly and daily roll-ups of the run history: per check and UTC hour (or UTC day), the runs,
//! the failures and a small fixed histogram of the check's meaningful latency.
//!
//! Roll-ups are updated as runs are recorded, in the same transaction, one read and one write
//! per (check, hour) and (check, day) the batch touches, so recording costs the same whatever the
//! size of the history. Histograms have fixed log-spaced buckets, so that the roll-ups of any
//! range merge into one histogram and its p50/p95 are real quantiles, within a bucket's width
//! (±9 %), not averages of percentiles.

use super::{RunRecord, Store, StoreError};
use rusqlite::{StatementStatus, params};
use std::collections::BTreeMap;

/// Seconds in an hourly roll-up.
pub const HOUR: i64 = 3600;
/// Seconds in a daily (UTC day) roll-up.
pub const DAY: i64 = 86_400;
/// How long hourly roll-ups are kept: ranges within it are read hour by hour (local days, DST),
/// older ones from the daily roll-ups.
pub const HOURLY_FOR: i64 = 35 * DAY;

/// Lower edge of the first bucket, seconds; faster latencies count in it.
const FIRST_EDGE: f64 = 0.01;
/// Buckets per doubling: each bucket is 2^(1/4) ≈ 1.19 times as wide as the previous.
const PER_DOUBLING: f64 = 4.0;
/// Buckets: 0.01 s up to 0.01 × 2^24 s ≈ 46 h; slower latencies count in the last.
const BUCKETS: usize = 96;

/// Counts of latencies in fixed log-spaced buckets, with the exact maximum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    counts: BTreeMap<usize, u64>,
    max: Option<f64>,
}

impl Histogram {
    /// Counts one latency, seconds.
    pub fn add(&mut self, secs: f64) {
        if !secs.is_finite() || secs < 0.0 {
            return;
        }
        *self.counts.entry(bucket(secs)).or_default() += 1;
        self.max = Some(self.max.map_or(secs, |m| m.max(secs)));
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (b, c) in &other.counts {
            *self.counts.entry(*b).or_default() += c;
        }
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// Latencies counted.
    pub fn count(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The largest latency counted, exactly.
    pub fn max(&self) -> Option<f64> {
        self.max
    }

    /// The `q` quantile (0..=1): the geometric middle of the bucket holding it, never above
    /// the maximum; `None` when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: the smallest value with at least q of all at or below.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, c) in &self.counts {
            seen += c;
            if seen >= rank {
                let mid = FIRST_EDGE * 2f64.powf((*b as f64 + 0.5) / PER_DOUBLING);
                return Some(self.max.map_or(mid, |m| mid.min(m)));
            }
        }
        self.max
    }

    /// `index:count` pairs, as stored.
    fn encode(&self) -> String {
        let pairs: Vec<String> = self
            .counts
            .iter()
            .map(|(b, c)| format!("{b}:{c}"))
            .collect();
        pairs.join(" ")
    }

    /// Reads what [`Histogram::encode`] wrote; a malformed pair (written by a bug) is skipped.
    fn decode(text: &str, max: Option<f64>) -> Histogram {
        let counts = text
            .split_whitespace()
            .filter_map(|pair| {
                let (b, c) = pair.split_once(':')?;
                let b: usize = b.parse().ok()?;
                (b < BUCKETS).then_some(())?;
                Some((b, c.parse().ok()?))
            })
            .collect();
        Histogram { counts, max }
    }
}

fn bucket(secs: f64) -> usize {
    if secs <= FIRST_EDGE {
        return 0;
    }
    let i = ((secs / FIRST_EDGE).log2() * PER_DOUBLING).floor();
    (i as usize).min(BUCKETS - 1)
}

/// One roll-up row.
#[derive(Clone, Debug, PartialEq)]
pub struct RollupRow {
    /// Check name.
    pub check: String,
    /// [`HOUR`] or [`DAY`].
    pub period: i64,
    /// Start of the hour or UTC day, unix seconds.
    pub start: i64,
    /// The check's shop.
    pub shop: String,
    /// The check's channel.
    pub channel: String,
    /// The check's kind.
    pub kind: String,
    /// Runs started in the period.
    pub runs: u64,
    /// Of which failed.
    pub failures: u64,
    /// Their latencies.
    pub latency: Histogram,
}

/// Adds `runs` to their hourly and daily roll-ups; `steps` grows by the SQLite VM steps used.
pub(super) fn record(
    tx: &rusqlite::Transaction<'_>,
    runs: &[RunRecord],
    steps: &mut u64,
) -> rusqlite::Result<()> {
    // The batch first merged in memory: one read and one write per row touched.
    let mut touched: BTreeMap<(&str, i64, i64), RollupRow> = BTreeMap::new();
    for run in runs {
        for period in [HOUR, DAY] {
            let start = (run.started_at.floor() as i64).div_euclid(period) * period;
            let row = touched
                .entry((run.check.as_str(), period, start))
                .or_insert_with(|| RollupRow {
                    check: run.check.clone(),
                    period,
                    start,
                    shop: run.shop.clone(),
                    channel: run.channel.clone(),
                    kind: run.kind.clone(),
                    runs: 0,
                    failures: 0,
                    latency: Histogram::default(),
                });
            row.runs += 1;
            row.failures += u64::from(run.failed());
            if let Some(l) = run.latency {
                row.latency.add(l);
            }
        }
    }
    let mut read = tx.prepare_cached(
        "SELECT runs, failures, latency_max, buckets FROM rollups
         WHERE check_name = ?1 AND period = ?2 AND start = ?3",
    )?;
    let mut write = tx.prepare_cached(
        "INSERT OR REPLACE INTO rollups (check_name, period, start, shop, channel, kind, runs,
                                         failures, latency_max, buckets)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for ((check, period, start), mut row) in touched {
        let old = read
            .query_row(params![check, period, start], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<f64>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        *steps += read.reset_status(StatementStatus::VmStep) as u64;
        if let Some((runs, failures, max, buckets)) = old {
            row.runs += runs.max(0) as u64;
            row.failures += failures.max(0) as u64;
            row.latency.merge(&Histogram::decode(&buckets, max));
        }
        write.execute(params![
            check,
            period,
            start,
            row.shop,
            row.channel,
            row.kind,
            row.runs as i64,
            row.failures as i64,
            row.latency.max(),
            row.latency.encode()
        ])?;
        *steps += write.reset_status(StatementStatus::VmStep) as u64;
    }
    Ok(())
}

/// Which roll-ups to read.
#[derive(Clone, Debug, Default)]
pub struct RollupQuery<'a> {
    /// [`HOUR`] or [`DAY`].
    pub period: i64,
    /// Rows starting at or after, unix seconds.
    pub from: i64,
    /// Rows starting before, unix seconds.
    pub to: i64,
    /// Only this shop's checks.
    pub shop: Option<&'a str>,
    /// Only this check.
    pub check: Option<&'a str>,
}

/// Runs and failures of one roll-up row, read without its histogram.
#[derive(Clone, Debug, PartialEq)]
pub struct RollupCounts {
    /// Check name.
    pub check: String,
    /// Start of the hour or UTC day, unix seconds.
    pub start: i64,
    /// Runs started in the period.
    pub runs: u64,
    /// Of which failed.
    pub failures: u64,
}

/// Columns of a whole [`RollupRow`].
const ROW_COLUMNS: &str =
    "check_name, period, start, shop, channel, kind, runs, failures, latency_max, buckets";
/// Columns of [`RollupCounts`]: uptime needs no histogram, so none is read or decoded.
const COUNT_COLUMNS: &str = "check_name, start, runs, failures";

/// The roll-up query for `q`'s filters, selecting `columns`. A filter is an equality SQLite can
/// use an index for: a catch-all `(?4 IS NULL OR shop = ?4)` cannot, and made one shop's page
/// scan every shop's rows (7 M rows, 16 s, at 10,000 checks). Every statement names all five
/// parameters.
fn rollups_sql(q: &RollupQuery<'_>, columns: &str) -> String {
    let filter = match (q.check, q.shop) {
        // The primary key (check_name, period, start).
        (Some(_), _) => {
            "check_name = ?5 AND period = ?1 AND start >= ?2 AND start < ?3
               AND (?4 IS NULL OR shop = ?4)"
        }
        // rollups_by_shop (shop, period, start).
        (None, Some(_)) => {
            "shop = ?4 AND period = ?1 AND start >= ?2 AND start < ?3
               AND (?5 IS NULL OR check_name = ?5)"
        }
        // rollups_by_age (period, start).
        (None, None) => {
            "period = ?1 AND start >= ?2 AND start < ?3
               AND (?4 IS NULL OR shop = ?4) AND (?5 IS NULL OR check_name = ?5)"
        }
    };
    format!("SELECT {columns} FROM rollups WHERE {filter} ORDER BY check_name, start")
}

impl Store {
    /// Roll-up rows matching `q`, by check and start.
    pub fn rollups(&self, q: &RollupQuery<'_>) -> Result<Vec<RollupRow>, StoreError> {
        self.read_rollups(q, ROW_COLUMNS, |r| {
            Ok(RollupRow {
                check: r.get(0)?,
                period: r.get(1)?,
                start: r.get(2)?,
                shop: r.get(3)?,
                channel: r.get(4)?,
                kind: r.get(5)?,
                runs: r.get::<_, i64>(6)?.max(0) as u64,
                failures: r.get::<_, i64>(7)?.max(0) as u64,
                latency: Histogram::decode(&r.get::<_, String>(9)?, r.get(8)?),
            })
        })
    }

    /// Runs and failures of the roll-up rows matching `q`, by check and start: what uptime
    /// needs, without reading or decoding a histogram.
    pub fn rollup_counts(&self, q: &RollupQuery<'_>) -> Result<Vec<RollupCounts>, StoreError> {
        self.read_rollups(q, COUNT_COLUMNS, |r| {
            Ok(RollupCounts {
                check: r.get(0)?,
                start: r.get(1)?,
                runs: r.get::<_, i64>(2)?.max(0) as u64,
                failures: r.get::<_, i64>(3)?.max(0) as u64,
            })
        })
    }

    fn read_rollups<T>(
        &self,
        q: &RollupQuery<'_>,
        columns: &str,
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&rollups_sql(q, columns))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![q.period, q.from, q.to, q.shop, q.check], map)
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e));
        self.read_steps.fetch_add(
            stmt.reset_status(StatementStatus::VmStep) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        rows
    }

    /// Deletes raw runs started before `runs_before`, hourly roll-ups before `hourly_before`,
    /// daily roll-ups and ended incidents before `rollups_before` (unix seconds), in one
    /// transaction; returns the rows deleted.
    pub fn prune(
        &self,
        runs_before: f64,
        hourly_before: f64,
        rollups_before: f64,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = self.begin(&mut conn)?;
        let mut deleted = 0;
        let mut run = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<(), StoreError> {
            deleted += tx.execute(sql, p).map_err(|e| self.err(e))?;
            Ok(())
        };
        run("DELETE FROM runs WHERE started_at < ?1", &[&runs_before])?;
        run(
            "DELETE FROM rollups WHERE period = ?1 AND start < ?2",
            &[&HOUR, &hourly_before],
        )?;
        run(
            "DELETE FROM rollups WHERE period = ?1 AND start < ?2",
            &[&DAY, &rollups_before],
        )?;
        run(
            "DELETE FROM incidents WHERE ended_at IS NOT NULL AND ended_at < ?1",
            &[&rollups_before],
        )?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each filter's query searches an index on that filter, never every shop's rows: the cost
    /// of one shop's page must not grow with the other shops.
    #[test]
    fn each_rollup_filter_searches_its_own_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("history.db")).expect("store");
        let plan = |shop: Option<&str>, check: Option<&str>| {
            let q = RollupQuery {
                period: HOUR,
                from: 0,
                to: 1,
                shop,
                check,
            };
            let conn = store.conn();
            let mut stmt = conn
                .prepare(&format!(
                    "EXPLAIN QUERY PLAN {}",
                    rollups_sql(&q, ROW_COLUMNS)
                ))
                .expect("plan");
            let rows = stmt
                .query_map(params![q.period, q.from, q.to, q.shop, q.check], |r| {
                    r.get::<_, String>(3)
                })
                .expect("query");
            rows.map(|r| r.expect("row")).collect::<Vec<_>>().join("; ")
        };
        let by_shop = plan(Some("shop"), None);
        assert!(
            by_shop.contains("INDEX rollups_by_shop (shop=?"),
            "{by_shop}"
        );
        let by_check = plan(None, Some("check"));
        assert!(by_check.contains("PRIMARY KEY (check_name=?"), "{by_check}");
        let all = plan(None, None);
        assert!(all.contains("INDEX rollups_by_age (period=?"), "{all}");
    }

    #[test]
    fn quantiles_of_merged_histograms_are_within_a_bucket() {
        // 1..=1000 seconds over two histograms, as two hours' roll-ups would hold them.
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        for i in 1..=1000 {
            if i % 2 == 0 {
                a.add(f64::from(i))
            } else {
                b.add(f64::from(i))
            }
        }
        let decoded = Histogram::decode(&b.encode(), b.max());
        assert_eq!(decoded, b);
        a.merge(&decoded);
        assert_eq!(a.count(), 1000);
        assert_eq!(a.max(), Some(1000.0));
        let width = 2f64.powf(1.0 / PER_DOUBLING);
        for (q, exact) in [(0.5, 500.0), (0.95, 950.0)] {
            let got = a.quantile(q).expect("quantile");
            assert!(
                got >= exact / width && got <= exact * width,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(a.quantile(1.0), Some(1000.0), "never above the maximum");
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
