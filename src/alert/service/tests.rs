//! What a run and a tick cost the alerting task, counted rather than timed: store transactions
//! and states visited must not grow with the number of configured checks.

use super::*;
use crate::alert::Policy;
use crate::outcome::{Failure, FailureKind, RunResult};
use crate::value::{Channel, Kind};
use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

fn setup(checks: usize) -> Setup {
    let policy = Policy {
        enabled: true,
        failure_threshold: 2,
        success_threshold: 1,
        send_on_resolved: true,
        repeat: Some(Duration::from_secs(3600)),
        window: None,
    };
    let entry = Arc::new(CheckEntry {
        channel: Channel::Chat,
        kind: Kind::Chat,
        labels: Default::default(),
        shop: "demo".into(),
        policy,
        targets: Vec::new(),
        maintenance: Vec::new(),
    });
    Setup {
        checks: (0..checks)
            .map(|i| (format!("check-{i}"), entry.clone()))
            .collect(),
        notifiers: BTreeMap::new(),
        group_wait: Duration::from_secs(30),
        attempts: 5,
        keep_runs: 10,
        retention: (
            Duration::from_secs(7 * 86_400),
            Duration::from_secs(400 * 86_400),
        ),
        status_url: None,
        timezone: None,
        digest: None,
        mailboxes: BTreeMap::new(),
    }
}

fn worker(store: Arc<Store>, setup: Setup) -> Worker {
    let metrics = Arc::new(Metrics::new());
    let clock: Clock = Arc::new(|| UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    // Nothing is sent in these tests: the receiver of send results is not needed.
    let (results, _) = mpsc::channel(1);
    Worker {
        store,
        states: HashMap::new(),
        timed: HashSet::new(),
        unsaved: HashSet::new(),
        history: Vec::new(),
        flush_at: None,
        outbox: BTreeMap::new(),
        next_row: 1,
        digest_periods: HashMap::new(),
        behind: None,
        incidents: Vec::new(),
        // Pruning is hourly upkeep, not per-run work: out of the way of the counted costs.
        prune_at: tokio::time::Instant::now() + PRUNE_EVERY,
        tick_visits: 0,
        health: Arc::new(Health::new(metrics.clone())),
        metrics,
        clock,
        in_flight: BTreeSet::new(),
        results,
        setup,
    }
}

fn report(check: &str, passed: bool) -> RunReport {
    RunReport {
        check: Arc::from(check),
        kind: "chat",
        channel: "chat",
        run_id: 1,
        token: String::new(),
        started_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        lag: None,
        duration: Duration::from_millis(20),
        attempts: 1,
        result: if passed {
            RunResult::Success
        } else {
            RunResult::Failure
        },
        phases: Vec::new(),
        failure: (!passed).then(|| Failure {
            kind: FailureKind::Timeout,
            message: "no answer".into(),
        }),
        observations: Vec::new(),
        details: Vec::new(),
    }
}

/// What one scenario cost.
#[derive(Debug, PartialEq)]
struct Cost {
    passing_transactions: u64,
    quiet_tick_visits: u64,
    failing_transactions: u64,
    firing_tick_visits: u64,
}

/// With `checks` configured and known (each with a saved, healthy state): 1,000 passing runs
/// with a tick after every 50, then one check failing three times with ten ticks.
async fn cost(checks: usize) -> Cost {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("sw.db")).expect("open"));
    let mut w = worker(store.clone(), setup(0));
    w.apply(setup(checks)).await;
    for i in 0..checks {
        let healthy = AlertState {
            consecutive_successes: 3,
            ..AlertState::default()
        };
        w.states.insert(format!("check-{i}"), healthy);
    }

    let before = store.transactions();
    for i in 0..1000 {
        w.observe(&report(&format!("check-{}", i % 7), true)).await;
        if i % 50 == 49 {
            w.tick().await;
        }
    }
    w.flush().await;
    let passing_transactions = store.transactions() - before;
    let quiet_tick_visits = w.tick_visits;
    assert_eq!(store.run_count("check-0").expect("count"), 10);

    let before = store.transactions();
    for _ in 0..3 {
        w.observe(&report("check-0", false)).await;
    }
    let failing_transactions = store.transactions() - before;
    let visits = w.tick_visits;
    for _ in 0..10 {
        w.tick().await;
    }
    assert!(w.states["check-0"].firing);
    Cost {
        passing_transactions,
        quiet_tick_visits,
        failing_transactions,
        firing_tick_visits: w.tick_visits - visits,
    }
}

#[tokio::test]
async fn per_run_and_per_tick_work_does_not_grow_with_the_number_of_checks() {
    let small = cost(100).await;
    let large = cost(10_000).await;
    assert_eq!(small, large);
    assert_eq!(
        small,
        Cost {
            // 1,000 runs that change no state: two full batches, not one write per run.
            passing_transactions: 2,
            // No state is time-driven: ticks visit none of them.
            quiet_tick_visits: 0,
            // Each failing run changes its state (and the second fires): written at once.
            failing_transactions: 3,
            // One firing check: each tick looks at it alone.
            firing_tick_visits: 10,
        }
    );
}

#[tokio::test]
async fn an_unchanged_state_is_not_rewritten_and_waiting_history_is_written_when_the_task_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("sw.db")).expect("open"));
    let mut w = worker(store.clone(), setup(0));
    w.apply(setup(3)).await;
    // A first pass on a fresh state is a state the disk does not hold yet... but equal to the
    // default that a missing row means, so it joins the batch like every later pass.
    w.observe(&report("check-1", true)).await;
    w.observe(&report("check-1", true)).await;
    assert_eq!(store.transactions(), 0);
    assert_eq!(store.run_count("check-1").expect("count"), 0);

    // The task ends when the scheduler's channel closes (or on `stop`): it writes what waits.
    let (tx, rx) = broadcast::channel(4);
    let (_commands, command_rx) = mpsc::channel(1);
    let (_results, results_rx) = mpsc::channel(1);
    let first = setup(3);
    tx.send(Arc::new(report("check-1", true))).expect("send");
    drop(tx);
    w.run(first, rx, command_rx, results_rx, CancellationToken::new())
        .await;
    assert_eq!(store.run_count("check-1").expect("count"), 3);
    assert!(store.load_states().expect("states").is_empty());
}

#[tokio::test]
async fn waiting_history_is_written_without_further_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("sw.db")).expect("open"));
    let w = worker(store.clone(), setup(0));
    let (tx, rx) = broadcast::channel(4);
    let (_commands, command_rx) = mpsc::channel(1);
    let (_results, results_rx) = mpsc::channel(1);
    let stop = CancellationToken::new();
    // The task under test, as `AlertService::start` runs it.
    let task = tokio::spawn(w.run(setup(3), rx, command_rx, results_rx, stop.clone()));
    tx.send(Arc::new(report("check-2", true))).expect("send");
    // No further run and no stop: the batch's deadline alone writes it. Polled, not timed; the
    // limit only keeps a broken build from hanging.
    let mut written = false;
    for _ in 0..500 {
        if store.run_count("check-2").expect("count") == 1 {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    task.await.expect("task");
    assert!(written, "a lone run's history must not wait for more runs");
}

#[tokio::test]
async fn a_store_that_refuses_writes_delays_persistence_not_alerts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("sw.db")).expect("open"));
    let mut w = worker(store.clone(), setup(0));
    let mut routed = setup(1);
    for entry in routed.checks.values_mut() {
        let mut e = entry.as_ref().clone();
        e.targets = vec![crate::alert::Target {
            notifier: "ops".into(),
            fallback: None,
        }];
        *entry = Arc::new(e);
    }
    w.apply(routed).await;

    store.refuse_writes(true);
    w.observe(&report("check-0", false)).await;
    w.observe(&report("check-0", false)).await;
    // Decided and queued in memory, from where it is sent; the disk has none of it.
    assert!(w.states["check-0"].firing);
    assert_eq!(w.outbox.len(), 1);
    let queued = w.outbox.values().next().expect("queued").clone();
    assert_eq!(queued.queued.notice.id, "check-0@1800000000:firing");
    assert!(store.outbox().expect("outbox").is_empty());
    assert!(store.load_states().expect("states").is_empty());
    assert!(w.health.storage_error().is_some());
    assert_eq!(w.metrics.storage_healthy.get(), 0);
    let metrics = w.metrics.clone();
    let errors = |op: &str| metrics.storage_errors.with_label_values(&[op]).get();
    assert_eq!(
        errors("save_alert_state"),
        1,
        "no write is tried while behind"
    );

    // Still refused: the catch-up fails and waits longer before the next attempt.
    let now = tokio::time::Instant::now();
    w.behind.as_mut().expect("behind").retry_at = now;
    w.catch_up().await;
    let behind = w.behind.as_ref().expect("still behind");
    assert_eq!(behind.failures, 1);
    assert!(behind.retry_at >= now + CATCH_UP_FIRST);
    assert_eq!(errors("catch_up"), 1);

    // Writable again: one transaction brings the disk up to memory.
    store.refuse_writes(false);
    w.behind.as_mut().expect("behind").retry_at = tokio::time::Instant::now();
    w.catch_up().await;
    assert!(w.behind.is_none());
    assert!(w.health.storage_error().is_none());
    assert_eq!(w.metrics.storage_healthy.get(), 1);
    assert!(store.load_states().expect("states")["check-0"].firing);
    let rows = store.outbox().expect("outbox");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, queued.id);
    assert_eq!(rows[0].queued.notice.id, queued.queued.notice.id);
    assert_eq!(store.run_count("check-0").expect("count"), 2);
}

/// An alert that fires and resolves through the engine leaves one incident, begun when the
/// failures began and ended when the check passed again, with the shop, channel and reason.
#[tokio::test]
async fn firing_and_resolving_records_an_incident() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("sw.db")).expect("open"));
    let mut w = worker(store.clone(), setup(0));
    w.apply(setup(1)).await;
    let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let at = |secs: u64| {
        let mut r = report("check-0", secs >= 600);
        r.started_at = start + Duration::from_secs(secs);
        r
    };
    w.observe(&at(0)).await;
    w.observe(&at(60)).await;
    let (from, to) = (1_799_999_000.0, 1_800_010_000.0);
    let open = store.incidents("demo", from, to).expect("incidents");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (
            open[0].check.as_str(),
            open[0].channel.as_str(),
            open[0].started_at
        ),
        ("check-0", "chat", 1_800_000_000.0)
    );
    assert_eq!(open[0].ended_at, None);
    assert_eq!(
        (open[0].reason_kind.as_str(), open[0].reason.as_str()),
        ("timeout", "no answer")
    );
    w.clock = Arc::new(move || start + Duration::from_secs(600));
    w.observe(&at(600)).await;
    let closed = store.incidents("demo", from, to).expect("incidents");
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].ended_at, Some(1_800_000_600.0));
    assert_eq!(
        closed[0].reason, "no answer",
        "the end keeps the reason it began with"
    );
    assert!(
        w.incidents.is_empty(),
        "written, nothing left for a catch-up"
    );
    // The runs reached the roll-ups with their meaningful latency (a passed run's duration).
    let sum = crate::alert::history::History::new(&store, start + Duration::from_secs(700))
        .summary(
            crate::alert::history::Scope::Channel {
                shop: "demo",
                channel: "chat",
            },
            start,
            start + Duration::from_secs(700),
        )
        .expect("summary");
    assert_eq!((sum.runs, sum.failures, sum.latency.count()), (3, 2, 1));
}

/// The hourly upkeep deletes raw runs older than `storage.runs_for` and keeps their roll-ups.
#[tokio::test]
async fn a_tick_prunes_runs_past_their_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("sw.db")).expect("open"));
    let mut w = worker(store.clone(), setup(1));
    let now = 1_800_000_000.0;
    let record = |age_days: f64| RunRecord {
        check: "check-0".into(),
        started_at: now - age_days * 86_400.0,
        duration: 1.0,
        result: "success".into(),
        reason_kind: None,
        reason: None,
        shop: "demo".into(),
        channel: "chat".into(),
        kind: "chat".into(),
        latency: Some(1.0),
        ..RunRecord::default()
    };
    store
        .commit_runs(&[record(8.0), record(1.0)], 10, None, &[], &[], now)
        .expect("seed");
    w.tick().await;
    assert_eq!(store.run_count("check-0").expect("count"), 2, "not due yet");
    w.prune_at = tokio::time::Instant::now();
    w.tick().await;
    assert_eq!(store.run_count("check-0").expect("count"), 1);
    let at = |secs: f64| UNIX_EPOCH + Duration::from_secs_f64(secs);
    let sum = crate::alert::history::History::new(&store, at(now))
        .summary(
            crate::alert::history::Scope::Check("check-0"),
            at(now - 10.0 * 86_400.0),
            at(now),
        )
        .expect("summary");
    assert_eq!(sum.runs, 2, "the roll-ups still count the pruned run");
    assert!(
        w.prune_at > tokio::time::Instant::now(),
        "next prune an hour later"
    );
}

#[tokio::test]
async fn a_shops_digest_names_its_certificates_and_only_its_own_mailboxes_from_the_store() {
    use crate::outcome::CertReport;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("sw.db")).expect("open"));
    // check-0 and check-1 belong to shop demo; the mailbox "orders" to another shop.
    let mut own = setup(2);
    own.mailboxes = BTreeMap::from([("demo".to_string(), vec!["support".to_string()])]);
    let mut w = worker(store.clone(), own.clone());
    let now = 1_800_000_000;
    let mut observed = report("check-0", true);
    observed.observations = vec![
        Observation::Cert(CertReport {
            target: "shop.example:443".into(),
            leaf_not_after: now + 12 * 86_400 + 600,
            chain_not_after: now + 90 * 86_400,
            chain_verified: true,
            name_matches: true,
        }),
        Observation::Cert(CertReport {
            target: "far.example:443".into(),
            leaf_not_after: now + 200 * 86_400,
            chain_not_after: now + 200 * 86_400,
            chain_verified: true,
            name_matches: true,
        }),
        Observation::MailboxQuota {
            mailbox: "support".into(),
            ratio: 0.91,
        },
        Observation::MailboxQuota {
            mailbox: "orders".into(),
            ratio: 0.99,
        },
    ];
    w.observe(&observed).await;
    // The task ends when the scheduler's channel closes: it writes what waits.
    let (tx, rx) = broadcast::channel(1);
    let (_commands, command_rx) = mpsc::channel(1);
    let (_results, results_rx) = mpsc::channel(1);
    drop(tx);
    w.run(
        own.clone(),
        rx,
        command_rx,
        results_rx,
        CancellationToken::new(),
    )
    .await;
    let at = UNIX_EPOCH + Duration::from_secs(now as u64);
    let extras = digest::extras(&store, &own, "demo", at).expect("extras");
    assert_eq!(extras.certs.len(), 1, "{:?}", extras.certs);
    assert_eq!(extras.certs[0].0, "check-0");
    assert!(
        (extras.certs[0].1 - 12.0).abs() < 0.01,
        "{:?}",
        extras.certs
    );
    assert_eq!(extras.mailboxes, vec![("support".to_string(), 0.91)]);
    // Another shop sees neither: its checks observed no certificate, its mailboxes none.
    let other = digest::extras(&store, &own, "elsewhere", at).expect("extras");
    assert!(
        other.certs.is_empty() && other.mailboxes.is_empty(),
        "{other:?}"
    );
    // The run's phases and observations went into its history, as JSON.
    let runs = store.recent_runs("check-0", 1).expect("runs");
    let details: serde_json::Value =
        serde_json::from_str(runs[0].details.as_deref().expect("details")).expect("JSON");
    assert_eq!(details["observations"][2]["mailbox"], "support");
}
