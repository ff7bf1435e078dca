//! Seeds a supportwatch database with a long run history, through the store's own write path
//! (`Store::commit_runs`, the call the alerting task makes), for `bench/status-page`.
//!
//! ```text
//! cargo run --release --example seed_history -- DB CHECKS SHOPS DAYS
//! ```
//!
//! Check `cI` belongs to shop `shopI%SHOPS`. The last 35 days (the hourly roll-ups' retention)
//! get one run per check and hour, older days one run per check and day, then the history is
//! pruned the way the daemon prunes it (raw runs 7 days, hourly roll-ups 35 days), so the file
//! holds what a daemon that ran that long holds: one hourly roll-up per check and hour, one
//! daily per check and day, whatever the check's interval. Every check has three ended
//! incidents (their hours failed); every hundredth check is failing now, with an open incident
//! and a firing alert state.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use supportwatch::alert::engine::AlertState;
use supportwatch::alert::store::{IncidentChange, RunRecord, Store};

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
const HOURLY_DAYS: i64 = 35;
const RAW_DAYS: i64 = 7;
const CHANNELS: [&str; 6] = [
    "feedback_form",
    "callback",
    "chat",
    "email",
    "phone",
    "website",
];

struct Plan {
    checks: usize,
    shops: usize,
    /// This hour's start, unix seconds.
    now: i64,
}

impl Plan {
    fn shop(&self, i: usize) -> String {
        format!("shop{}", i % self.shops)
    }

    /// The starts of check `i`'s three ended incidents: spread over 90 days, two hours each.
    fn incidents(&self, i: usize, days: i64) -> [i64; 3] {
        let span = days.max(1) * DAY;
        let base = (i as i64 * 7_919) % span;
        [0, 1, 2].map(|k| {
            let back = (base + k * span / 3) % span + 3 * HOUR;
            (self.now - back).div_euclid(HOUR) * HOUR
        })
    }

    fn failing_now(&self, i: usize) -> bool {
        i.is_multiple_of(100)
    }

    fn run(&self, i: usize, start: i64, failed: bool) -> RunRecord {
        let check = format!("c{i}");
        RunRecord {
            check,
            started_at: start as f64 + (i % 3_000) as f64 / 10.0,
            duration: 0.4,
            result: if failed { "failure" } else { "success" }.into(),
            reason_kind: failed.then(|| "http_status".into()),
            reason: failed.then(|| "answered 503".into()),
            shop: self.shop(i),
            channel: CHANNELS[i % CHANNELS.len()].into(),
            kind: "http".into(),
            // Latencies spread over a few buckets, as real pages answer.
            latency: (!failed).then(|| 0.05 + ((i as i64 + start / HOUR) % 17) as f64 * 0.03),
            ..RunRecord::default()
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, checks, shops, days] = args.as_slice() else {
        return Err("usage: seed_history DB CHECKS SHOPS DAYS".into());
    };
    let (db, checks, shops, days) = (
        PathBuf::from(db),
        checks.parse::<usize>()?,
        shops.parse::<usize>()?.max(1),
        days.parse::<i64>()?,
    );
    let now_secs = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let plan = Plan {
        checks,
        shops,
        now: now_secs.div_euclid(HOUR) * HOUR,
    };
    let store = Store::open(&db)?;
    let started = Instant::now();
    // Keeps a week of hourly runs per check, as `storage.runs_for: 7d` would.
    let keep = (RAW_DAYS * 24) as u32;
    let windows: Vec<(usize, [i64; 3])> = (0..plan.checks)
        .map(|i| (i, plan.incidents(i, days)))
        .collect();
    let failed_at = |i: usize, start: i64, period: i64| {
        windows[i]
            .1
            .iter()
            .any(|&s| start <= s + HOUR && s < start + period)
            || (plan.failing_now(i) && start >= plan.now - 2 * HOUR)
    };
    // Older days: one run per check and day (their hourly roll-ups are pruned below).
    let mut batches = 0u64;
    for d in (HOURLY_DAYS..days).rev() {
        let start = (plan.now - d * DAY).div_euclid(DAY) * DAY + 12 * HOUR;
        let runs: Vec<RunRecord> = (0..plan.checks)
            .map(|i| plan.run(i, start, failed_at(i, start - 12 * HOUR, DAY)))
            .collect();
        store.commit_runs(&runs, keep, None, &[], &[], start as f64)?;
        batches += 1;
    }
    // The last 35 days (or fewer): one run per check and hour, one transaction per hour.
    for h in (0..(HOURLY_DAYS.min(days) * 24)).rev() {
        let start = plan.now - h * HOUR;
        let runs: Vec<RunRecord> = (0..plan.checks)
            .map(|i| plan.run(i, start, failed_at(i, start, HOUR)))
            .collect();
        store.commit_runs(&runs, keep, None, &[], &[], start as f64)?;
        batches += 1;
        if batches.is_multiple_of(100) {
            eprintln!(
                "seed_history: {batches} batches of {} runs, {:.0?}",
                plan.checks,
                started.elapsed()
            );
        }
    }
    // The incidents: three ended ones per check, written in batches as the alerting task would.
    let mut changes = Vec::new();
    for (i, starts) in &windows {
        for &s in starts {
            changes.push(IncidentChange {
                check: format!("c{i}"),
                shop: plan.shop(*i),
                channel: CHANNELS[i % CHANNELS.len()].into(),
                kind: "http".into(),
                started_at: s as f64,
                ended_at: Some((s + 2 * HOUR) as f64),
                reason_kind: "http_status".into(),
                reason: "answered 503".into(),
            });
        }
    }
    for chunk in changes.chunks(3_000) {
        store.commit_runs(&[], keep, None, chunk, &[], plan.now as f64)?;
    }
    // The checks failing now: a firing state and an open incident each, one transaction each.
    for i in (0..plan.checks).filter(|&i| plan.failing_now(i)) {
        let since = (plan.now - 2 * HOUR) as f64;
        let state = AlertState {
            firing: true,
            consecutive_failures: 3,
            failing_since: Some(since),
            reason_kind: "http_status".into(),
            reason: "answered 503".into(),
            announced: true,
            ..AlertState::default()
        };
        let open = IncidentChange {
            check: format!("c{i}"),
            shop: plan.shop(i),
            channel: CHANNELS[i % CHANNELS.len()].into(),
            kind: "http".into(),
            started_at: since,
            ended_at: None,
            reason_kind: "http_status".into(),
            reason: "answered 503".into(),
        };
        let name = format!("c{i}");
        store.commit_runs(
            &[],
            keep,
            Some((name.as_str(), Some(&state))),
            &[open],
            &[],
            plan.now as f64,
        )?;
    }
    let now = plan.now as f64;
    let pruned = store.prune(
        now - (RAW_DAYS * DAY) as f64,
        now - (HOURLY_DAYS * DAY) as f64,
        now - (400 * DAY) as f64,
    )?;
    eprintln!(
        "seed_history: {} checks, {} shops, {days} days, {batches} batches, {} incidents, \
         {pruned} rows pruned, in {:.1?}",
        plan.checks,
        plan.shops,
        changes.len() + plan.checks.div_ceil(100),
        started.elapsed()
    );
    Ok(())
}
