//! Reading the run history for people: uptime, latency quantiles, synthetic traffic and
//! incidents over a range, per check, channel or shop, and day by day in a shop's time zone;
//! incidents of one channel that overlap merged into the owner's outages ([`outages`]).
//!
//! Reads the store's roll-ups only (never the raw runs, except [`History::recent_runs`]), so a
//! range costs one row per check and hour (or day) whatever the number of runs.
//!
//! - **Uptime** is `1 − failed runs / runs`: checks run on a fixed interval, so counting runs
//!   weighs time evenly, and counts merge exactly across roll-ups (a time-weighted figure would
//!   need each outage's edges, which the incidents hold).
//! - **Latency** is the check's meaningful latency (delivery time for mail and forms, first
//!   reply for chat, else the duration of a passed run); p50/p95 come from the merged
//!   histograms of the range, within a bucket's width (±9 %).
//! - **Ranges** are read from hourly roll-ups when they start within the last
//!   [`HOURLY_FOR`] (whole UTC hours), else from daily roll-ups (whole UTC days).
//! - **Local days** ([`History::days`]) merge UTC hours into the shop's days, so a day of a
//!   DST change has 23 or 25 hours. Zones whose offset is not whole hours (India) put each
//!   hour in the day it starts in.

pub mod report;

use super::store::rollup::{DAY, HOUR, HOURLY_FOR, RollupQuery};
use super::store::{Histogram, Incident, RollupRow, RunRecord, Store, StoreError};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// What a figure covers.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// One check.
    Check(&'a str),
    /// Every check of a shop.
    Shop(&'a str),
    /// A shop's checks of one channel (`feedback_form`, `chat`, ...).
    Channel {
        /// Shop label.
        shop: &'a str,
        /// Channel name.
        channel: &'a str,
    },
}

/// Runs, failures, latency and traffic over a range.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Runs.
    pub runs: u64,
    /// Of which failed.
    pub failures: u64,
    /// The runs' latencies.
    pub latency: Histogram,
    /// Runs by check kind (`form` → 2016): the synthetic traffic.
    pub traffic: BTreeMap<String, u64>,
}

impl Summary {
    /// Adds one roll-up row.
    pub fn add(&mut self, row: &RollupRow) {
        self.runs += row.runs;
        self.failures += row.failures;
        self.latency.merge(&row.latency);
        *self.traffic.entry(row.kind.clone()).or_default() += row.runs;
    }

    /// `1 − failures / runs`; `None` without runs.
    pub fn uptime(&self) -> Option<f64> {
        (self.runs > 0).then(|| 1.0 - self.failures as f64 / self.runs as f64)
    }

    /// Median latency, seconds.
    pub fn p50(&self) -> Option<f64> {
        self.latency.quantile(0.5)
    }

    /// 95th percentile latency, seconds.
    pub fn p95(&self) -> Option<f64> {
        self.latency.quantile(0.95)
    }
}

/// The history as of one moment (the injected clock's now).
pub struct History<'s> {
    store: &'s Store,
    now: SystemTime,
}

fn secs(t: SystemTime) -> i64 {
    super::engine::secs(t).floor() as i64
}

impl<'s> History<'s> {
    /// The history in `store`, read as of `now`.
    pub fn new(store: &'s Store, now: SystemTime) -> History<'s> {
        History { store, now }
    }

    /// The roll-up rows of `scope` in `[from, to)`: hourly within [`HOURLY_FOR`], else daily.
    fn rows(&self, scope: Scope<'_>, from: i64, to: i64) -> Result<Vec<RollupRow>, StoreError> {
        let hourly = from >= secs(self.now) - HOURLY_FOR;
        let period = if hourly { HOUR } else { DAY };
        let (shop, check, channel) = match scope {
            Scope::Check(c) => (None, Some(c), None),
            Scope::Shop(s) => (Some(s), None, None),
            Scope::Channel { shop, channel } => (Some(shop), None, Some(channel)),
        };
        let mut rows = self.store.rollups(&RollupQuery {
            period,
            from: from.div_euclid(period) * period,
            to,
            shop,
            check,
        })?;
        if let Some(channel) = channel {
            rows.retain(|r| r.channel == channel);
        }
        Ok(rows)
    }

    /// Figures of `scope` over `[from, to)`.
    pub fn summary(
        &self,
        scope: Scope<'_>,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Summary, StoreError> {
        let mut sum = Summary::default();
        for row in self.rows(scope, secs(from), secs(to))? {
            sum.add(&row);
        }
        Ok(sum)
    }

    /// Figures of each of `shop`'s channels over `[from, to)`, by channel name.
    pub fn by_channel(
        &self,
        shop: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<BTreeMap<String, Summary>, StoreError> {
        let mut out: BTreeMap<String, Summary> = BTreeMap::new();
        for row in self.rows(Scope::Shop(shop), secs(from), secs(to))? {
            out.entry(row.channel.clone()).or_default().add(&row);
        }
        Ok(out)
    }

    /// Figures of `scope` for each local day from `first` to `last` (inclusive) in `zone`,
    /// from hourly roll-ups; days without runs are left out.
    pub fn days(
        &self,
        scope: Scope<'_>,
        zone: &TimeZone,
        first: Date,
        last: Date,
    ) -> Result<BTreeMap<Date, Summary>, StoreError> {
        let start = |d: Date| {
            d.to_zoned(zone.clone())
                .map(|z| z.timestamp().as_second())
                .unwrap_or_default()
        };
        let from = start(first);
        let to = last.tomorrow().map(start).unwrap_or(i64::MAX).max(from);
        let mut out: BTreeMap<Date, Summary> = BTreeMap::new();
        let rows = self.store.rollups(&RollupQuery {
            period: HOUR,
            from,
            to,
            ..self.filter(scope)
        })?;
        for row in rows {
            if let Scope::Channel { channel, .. } = scope
                && row.channel != channel
            {
                continue;
            }
            let Ok(at) = jiff::Timestamp::from_second(row.start) else {
                continue;
            };
            out.entry(at.to_zoned(zone.clone()).date())
                .or_default()
                .add(&row);
        }
        Ok(out)
    }

    fn filter<'q>(&self, scope: Scope<'q>) -> RollupQuery<'q> {
        match scope {
            Scope::Check(c) => RollupQuery {
                check: Some(c),
                ..RollupQuery::default()
            },
            Scope::Shop(shop) | Scope::Channel { shop, .. } => RollupQuery {
                shop: Some(shop),
                ..RollupQuery::default()
            },
        }
    }

    /// `shop`'s incidents that overlap `[from, to)`, oldest first.
    pub fn incidents(
        &self,
        shop: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<Incident>, StoreError> {
        self.store
            .incidents(shop, super::engine::secs(from), super::engine::secs(to))
    }

    /// The newest `n` raw runs of `check`, newest first.
    pub fn recent_runs(&self, check: &str, n: u32) -> Result<Vec<RunRecord>, StoreError> {
        self.store.recent_runs(check, n)
    }

    /// The moment the history is read at.
    pub fn now(&self) -> SystemTime {
        self.now
    }
}

/// An owner thinks in channels: two checks of one channel failing together are one outage, not
/// two. Overlapping incidents of a channel become one, from the first start to the last end (open
/// while any of them is), with the first one's check and reason; oldest first. The status page
/// and the digest show these; `supportwatch report` keeps each check's incidents beside their
/// count.
pub fn outages(mut incidents: Vec<Incident>) -> Vec<Incident> {
    incidents.sort_by(|a, b| {
        (a.channel.as_str(), a.started_at)
            .partial_cmp(&(b.channel.as_str(), b.started_at))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut merged: Vec<Incident> = Vec::with_capacity(incidents.len());
    for incident in incidents {
        if let Some(last) = merged.last_mut()
            && last.channel == incident.channel
            && last.ended_at.is_none_or(|end| incident.started_at <= end)
        {
            last.ended_at = match (last.ended_at, incident.ended_at) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            continue;
        }
        merged.push(incident);
    }
    merged.sort_by(|a, b| a.started_at.total_cmp(&b.started_at));
    merged
}

#[cfg(test)]
mod tests;
