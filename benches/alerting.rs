//! Alerting bench: what alerting adds to every run, for instances with thousands of checks.
//!
//! Run: `cargo bench --bench alerting`.
//!
//! - engine: `AlertState::observe` for runs that flap between pass and fail (the costliest path:
//!   the window rule is on);
//! - store: `Store::commit` of one run with its check's new state, the per-run transaction the
//!   daemon makes, on a temporary file (WAL, `synchronous = NORMAL`), with history pruning at 1000
//!   runs per check;
//! - dispatch: `dispatch::ready` over an outbox of 10,000 queued messages for 100 shops (a large
//!   outage), the work of one tick.

use std::time::{Duration, Instant, UNIX_EPOCH};
use supportwatch::alert::dispatch;
use supportwatch::alert::engine::{AlertState, FinishedRun};
use supportwatch::alert::store::{OutboxRow, Queued, RunRecord, Store};
use supportwatch::alert::{Policy, WindowRule};
use supportwatch::notify::{AlertNotice, AlertStatus};
use supportwatch::value::{Channel, Dur, Kind};

fn main() {
    let policy = Policy {
        enabled: true,
        failure_threshold: 2,
        success_threshold: 1,
        send_on_resolved: true,
        repeat: Some(Duration::from_secs(4 * 3600)),
        window: Some(WindowRule {
            failures: 3,
            within: Dur::secs(600),
        }),
    };

    let n = 1_000_000u64;
    let mut states: Vec<AlertState> = vec![AlertState::default(); 1000];
    let started = Instant::now();
    let mut events = 0usize;
    for i in 0..n {
        let at = UNIX_EPOCH + Duration::from_secs(1_000_000 + i * 60 / 1000);
        let run = FinishedRun {
            started_at: at,
            passed: i % 3 == 0,
            reason_kind: "timeout".into(),
            reason: "no answer within 30s".into(),
            evidence: None,
        };
        events += states[(i % 1000) as usize]
            .observe(&run, &policy, at, false)
            .len();
    }
    let per = started.elapsed() / n as u32;
    println!("engine: {n} observations over 1000 checks, {per:?} each ({events} events)");

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("bench.db")).expect("open store");
    let state = AlertState {
        firing: true,
        announced: true,
        consecutive_failures: 5,
        ..AlertState::default()
    };
    let runs = 20_000u32;
    let started = Instant::now();
    for i in 0..runs {
        let check = format!("check-{}", i % 2000);
        let record = RunRecord {
            check: check.clone(),
            started_at: f64::from(i),
            duration: 0.2,
            result: "failure".into(),
            reason_kind: Some("status".into()),
            reason: Some("HTTP 500".into()),
            shop: "demo".into(),
            channel: "website".into(),
            kind: "http".into(),
            latency: None,
            ..RunRecord::default()
        };
        store
            .commit(Some(&record), 1000, &check, Some(&state), &[], f64::from(i))
            .expect("commit");
    }
    let elapsed = started.elapsed();
    println!(
        "store: {runs} run commits over 2000 checks in {elapsed:?}: {:.0} runs/s, {:?} each",
        f64::from(runs) / elapsed.as_secs_f64(),
        elapsed / runs
    );

    let notice = |i: usize| AlertNotice {
        digest: None,
        id: format!("check-{i}@1:firing"),
        fingerprint: format!("check-{i}@1"),
        check: format!("check-{i}"),
        channel: Channel::FeedbackForm,
        kind: Kind::Form,
        labels: Default::default(),
        status: AlertStatus::Firing,
        since: UNIX_EPOCH,
        resolved_at: None,
        consecutive_failures: 2,
        reason_kind: "not_delivered".into(),
        reason: "not delivered within 5m".into(),
        link: None,
    };
    let queued: Vec<OutboxRow> = (0..10_000)
        .map(|i| OutboxRow {
            id: i64::try_from(i).expect("small") + 1,
            queued: Queued {
                notifier: format!("notifier-{}", i % 5),
                shop: format!("shop-{}", i % 100),
                fallback: None,
                is_fallback: false,
                due_at: 0.0,
                notice: notice(i),
            },
            attempts: 0,
            next_attempt_at: 0.0,
        })
        .collect();
    store.hand_over(&queued, &[]).expect("enqueue");
    let started = Instant::now();
    let rows = store.outbox().expect("outbox");
    let read = started.elapsed();
    let started = Instant::now();
    let batches = dispatch::ready(rows, 1.0, &Default::default());
    println!(
        "dispatch: outbox of 10000 read in {read:?}, grouped into {} messages in {:?}",
        batches.len(),
        started.elapsed()
    );
}
