//! Roll-ups read back: local days across DST, quantiles, pruning, the cost of recording, and
//! incidents merged into outages.

use super::*;
use crate::alert::store::RunRecord;
use jiff::civil::date;
use std::time::{Duration, UNIX_EPOCH};

fn at(ts: &str) -> SystemTime {
    let t: jiff::Timestamp = ts.parse().expect("timestamp");
    SystemTime::from(t)
}

fn secs_of(t: SystemTime) -> f64 {
    crate::alert::engine::secs(t)
}

fn run(check: &str, started: SystemTime, failed: bool, latency: f64) -> RunRecord {
    RunRecord {
        check: check.into(),
        started_at: secs_of(started),
        duration: 1.0,
        result: if failed { "failure" } else { "success" }.into(),
        reason_kind: failed.then(|| "timeout".into()),
        reason: failed.then(|| "no answer".into()),
        shop: "berlin".into(),
        channel: "feedback_form".into(),
        kind: "form".into(),
        latency: Some(latency),
        ..RunRecord::default()
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("sw.db")).expect("open");
    (dir, store)
}

/// One run every 30 minutes from 27 to 31 March 2026 (UTC); Berlin moves its clocks forward
/// on the 29th at 02:00, so that local day has 23 hours. A failure half an hour either side of
/// the local midnight between the 28th and the 29th lands in the right day.
#[test]
fn local_days_follow_berlin_across_midnight_and_dst() {
    let (_dir, store) = store();
    let first = at("2026-03-27T00:00:00Z");
    let mut runs = Vec::new();
    for i in 0..(4 * 48) {
        let t = first + Duration::from_secs(i * 1800);
        let failed = t == at("2026-03-28T22:30:00Z") || t == at("2026-03-28T23:30:00Z");
        // The 29th (local) is slow: 100 s deliveries, 10 s otherwise.
        let slow = t >= at("2026-03-28T23:00:00Z") && t < at("2026-03-29T22:00:00Z");
        runs.push(run("form", t, failed, if slow { 100.0 } else { 10.0 }));
    }
    // Recorded in small batches, as the alerting task does, so roll-ups are updated in place.
    for chunk in runs.chunks(7) {
        store
            .commit_runs(chunk, 1_000_000, None, &[], &[], 0.0)
            .expect("commit");
    }
    let history = History::new(&store, at("2026-03-31T00:00:00Z"));
    let zone = TimeZone::get("Europe/Berlin").expect("zone");
    let days = history
        .days(
            Scope::Shop("berlin"),
            &zone,
            date(2026, 3, 28),
            date(2026, 3, 30),
        )
        .expect("days");
    let got: Vec<(Date, u64, u64)> = days.iter().map(|(d, s)| (*d, s.runs, s.failures)).collect();
    assert_eq!(
        got,
        vec![
            (date(2026, 3, 28), 48, 1),
            (date(2026, 3, 29), 46, 1),
            (date(2026, 3, 30), 48, 0),
        ]
    );
    let slow = &days[&date(2026, 3, 29)];
    let p50 = slow.p50().expect("p50");
    assert!((92.0..=109.0).contains(&p50), "p50 {p50}");
    assert_eq!(slow.latency.max(), Some(100.0));
    let calm = &days[&date(2026, 3, 30)];
    let p95 = calm.p95().expect("p95");
    assert!((9.2..=10.0).contains(&p95), "p95 {p95}");
    // The same range read as one: 4 failures' worth of uptime, every run counted once.
    let all = history
        .summary(
            Scope::Channel {
                shop: "berlin",
                channel: "feedback_form",
            },
            first,
            at("2026-03-31T00:00:00Z"),
        )
        .expect("summary");
    assert_eq!((all.runs, all.failures), (192, 2));
    assert_eq!(all.traffic.get("form"), Some(&192));
    assert_eq!(all.uptime(), Some(1.0 - 2.0 / 192.0));
    // The median of the whole range merges the histograms: 46 slow runs of 192 do not move it.
    let p50 = all.p50().expect("p50");
    assert!((9.2..=10.0).contains(&p50), "p50 {p50}");
}

/// Raw runs past `runs_for` go; the roll-ups keep counting them, hourly within 35 days and
/// daily for older ranges, until `rollups_for`.
#[test]
fn pruning_keeps_rollups_after_raw_runs_are_gone() {
    let (_dir, store) = store();
    let now = at("2026-06-30T12:00:00Z");
    let day = Duration::from_secs(86_400);
    let mut runs = Vec::new();
    for d in [1u32, 10, 50, 500] {
        let t = now - day * d;
        runs.push(run("form", t, d == 10, 30.0));
    }
    store
        .commit_runs(&runs, 1_000_000, None, &[], &[], 0.0)
        .expect("commit");
    let now_s = secs_of(now);
    let deleted = store
        .prune(
            now_s - 7.0 * 86_400.0,
            now_s - 35.0 * 86_400.0,
            now_s - 400.0 * 86_400.0,
        )
        .expect("prune");
    assert!(deleted > 0);
    assert_eq!(
        store.run_count("form").expect("count"),
        1,
        "only the 1-day-old run"
    );
    let history = History::new(&store, now);
    let month = history
        .summary(Scope::Check("form"), now - day * 30, now)
        .expect("month");
    assert_eq!((month.runs, month.failures), (2, 1), "hourly roll-ups");
    let quarter = history
        .summary(Scope::Check("form"), now - day * 90, now)
        .expect("quarter");
    assert_eq!((quarter.runs, quarter.failures), (3, 1), "daily roll-ups");
    let year = history
        .summary(Scope::Check("form"), now - day * 600, now)
        .expect("year");
    assert_eq!(
        year.runs, 3,
        "the 500-day-old run's roll-up is past rollups_for"
    );
    assert_eq!(history.recent_runs("form", 10).expect("recent").len(), 1);
}

/// SQLite VM steps to record one run of a check at its `keep_runs` cap, beside a history of
/// `others` runs of other checks spread over 60 days.
fn steps_for_one_run(others: u32) -> u64 {
    let (_dir, store) = store();
    let now = at("2026-06-30T12:00:00Z");
    let own: Vec<RunRecord> = (0..100)
        .map(|i| {
            run(
                "form",
                now - Duration::from_secs(300 * (100 - i)),
                false,
                5.0,
            )
        })
        .collect();
    let other: Vec<RunRecord> = (0..others)
        .map(|i| {
            let age = Duration::from_secs(u64::from(i % 17_280) * 300);
            run(&format!("other-{}", i % 50), now - age, i % 9 == 0, 5.0)
        })
        .collect();
    store
        .commit_runs(&other, 1_000_000, None, &[], &[], 0.0)
        .expect("seed");
    store
        .commit_runs(&own, 100, None, &[], &[], 0.0)
        .expect("seed");
    let before = store.record_steps();
    store
        .commit_runs(&[run("form", now, true, 7.0)], 100, None, &[], &[], 0.0)
        .expect("record");
    store.record_steps() - before
}

#[test]
fn recording_a_run_costs_the_same_whatever_the_history() {
    let small = steps_for_one_run(0);
    let large = steps_for_one_run(60_000);
    assert!(small > 0);
    // The same statements on the same few rows; only B-tree depth may add a step or two.
    assert!(
        large <= small + small / 10,
        "one run took {small} steps beside no history, {large} beside 60,000 runs"
    );
}

#[test]
fn an_empty_range_has_no_figures() {
    let (_dir, store) = store();
    let history = History::new(&store, UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let sum = history
        .summary(Scope::Shop("none"), UNIX_EPOCH, history.now())
        .expect("summary");
    assert_eq!((sum.runs, sum.uptime(), sum.p50()), (0, None, None));
}

fn incident(check: &str, channel: &str, started_at: f64, ended_at: Option<f64>) -> Incident {
    Incident {
        check: check.into(),
        shop: "vesna".into(),
        channel: channel.into(),
        kind: "http".into(),
        started_at,
        ended_at,
        reason_kind: "no_reply".into(),
        reason: "no reply".into(),
    }
}

fn spans(incidents: &[Incident]) -> Vec<(&str, f64, Option<f64>)> {
    incidents
        .iter()
        .map(|i| (i.channel.as_str(), i.started_at, i.ended_at))
        .collect()
}

#[test]
fn overlapping_incidents_of_one_channel_are_one_outage() {
    let merged = outages(vec![
        incident("chat-ws", "chat", 110.0, Some(300.0)),
        incident("chat-api", "chat", 100.0, Some(200.0)),
        // Later, apart from the first outage: its own line.
        incident("chat-api", "chat", 400.0, Some(500.0)),
        // Another channel at the same time stays apart.
        incident("form", "feedback_form", 105.0, Some(150.0)),
        // One check still failing keeps the merged outage open.
        incident("mail-a", "email", 600.0, Some(700.0)),
        incident("mail-b", "email", 650.0, None),
    ]);
    assert_eq!(
        spans(&merged),
        vec![
            ("chat", 100.0, Some(300.0)),
            ("feedback_form", 105.0, Some(150.0)),
            ("chat", 400.0, Some(500.0)),
            ("email", 600.0, None),
        ]
    );
    assert_eq!(
        merged[0].check, "chat-api",
        "the first one's reason and check"
    );
}
