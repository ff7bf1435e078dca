//! The scheduler against real servers: hung and slow-drip servers must not delay healthy checks,
//! and the per-host limit must hold.

mod common;

use common::{prepare, start_drip, start_shop, start_silent};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use supportwatch::metrics::Metrics;
use supportwatch::outcome::RunResult;
use supportwatch::schedule::{Limits, Scheduler};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_and_dripping_servers_do_not_delay_healthy_checks() {
    // Each misbehaving server has a host of its own (the per-host limit is per host); the healthy
    // shop is on 127.0.0.1.
    let shop = start_shop("127.0.0.1").await;
    let silent = start_silent("127.0.0.2").await;
    let drip = start_drip("127.0.0.3").await;
    let mut yaml = String::from("scheduler: { max_per_host: 4 }\nchecks:\n");
    yaml.push_str(&format!(
        "  - {{ name: hung, kind: http, url: \"http://{silent}/\", interval: 3s, timeout: 2500ms, retries: 0 }}\n"
    ));
    yaml.push_str(&format!(
        "  - {{ name: drip, kind: http, url: \"http://{drip}/\", interval: 3s, timeout: 2500ms, retries: 0 }}\n"
    ));
    for i in 0..4 {
        yaml.push_str(&format!(
            "  - {{ name: healthy-{i}, kind: http, url: \"{}\", interval: 1s, timeout: 1s, retries: 0 }}\n",
            shop.url("/ok")
        ));
    }
    let prepared = prepare(&yaml);
    let metrics = Arc::new(Metrics::new());
    let scheduler = Scheduler::new(metrics.clone());
    let mut reports = scheduler.subscribe();
    scheduler.apply(&prepared);

    let mut by_check: HashMap<String, Vec<_>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(7);
    while let Ok(Ok(report)) = tokio::time::timeout_at(deadline, reports.recv()).await {
        by_check
            .entry(report.check.to_string())
            .or_default()
            .push(report);
    }
    assert!(scheduler.shutdown(Duration::from_secs(5)).await);

    for i in 0..4 {
        let runs = &by_check[&format!("healthy-{i}")];
        // 7 s at a 1 s interval: at least 5 runs even on a loaded machine, all on time.
        assert!(runs.len() >= 5, "healthy-{i} ran {} times", runs.len());
        for r in runs {
            assert_eq!(r.result, RunResult::Success, "{:?}", r.failure);
            let lag = r.lag.expect("scheduled runs have a lag");
            assert!(
                lag < Duration::from_millis(500),
                "healthy-{i} started {lag:?} late"
            );
        }
    }
    let hung = &by_check["hung"][0];
    assert_eq!(hung.result, RunResult::Timeout);
    assert_eq!(
        hung.failure.as_ref().map(|f| f.message.as_str()),
        Some("timed out after 2500ms during request")
    );
    let drip = &by_check["drip"][0];
    assert_eq!(drip.result, RunResult::Timeout);
    assert_eq!(
        drip.failure.as_ref().map(|f| f.message.as_str()),
        Some("timed out after 2500ms during body")
    );
    let text = metrics.encode_text();
    let prefix = r#"supportwatch_check_runs_total{channel="website",check="hung",kind="http",result="timeout",shop="default"} "#;
    let timeouts: usize = text
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.parse().ok())
        .expect("timeout counter of the hung check");
    assert!(timeouts >= by_check["hung"].len(), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_kind_and_global_limits_bound_runs_in_flight() {
    // (scheduler settings, most runs seen at the server at once)
    for (settings, expected_max) in [
        ("max_per_host: 1", 1),
        ("max_per_host: 3", 3),
        ("max_per_host: 6, max_per_kind: { http: 2 }", 2),
        ("max_per_host: 6, max_concurrent: 4", 4),
    ] {
        let shop = start_shop("127.0.0.1").await;
        let mut yaml = format!("scheduler: {{ {settings} }}\nchecks:\n");
        for i in 0..6 {
            yaml.push_str(&format!(
                "  - {{ name: slow-{i}, kind: http, url: \"{}\" }}\n",
                shop.url("/slow")
            ));
        }
        let prepared = prepare(&yaml);
        let limits = Arc::new(Limits::new(&prepared.config.scheduler));
        let runs = prepared.checks.iter().map(|c| {
            let limits = limits.clone();
            let c = c.clone();
            tokio::spawn(async move {
                let _permits = limits.acquire(&c).await;
                supportwatch::runner::execute(&c, 1, None).await
            })
        });
        for r in futures::future::join_all(runs).await {
            let r = r.expect("run task");
            assert_eq!(r.result, RunResult::Success, "{:?}", r.failure);
        }
        assert_eq!(
            shop.stats.slow_max.load(Ordering::SeqCst),
            expected_max,
            "{settings}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_still_going_when_the_next_is_due_is_skipped_and_counted() {
    let silent = start_silent("127.0.0.4").await;
    // timeout (1s) equals the interval and the retry adds more: the next slot finds it running.
    let prepared = prepare(&format!(
        "checks:\n  - {{ name: stuck, kind: http, url: \"http://{silent}/\", interval: 1s, timeout: 1s, retries: 1, retry_delay: 500ms }}\n"
    ));
    let metrics = Arc::new(Metrics::new());
    let scheduler = Scheduler::new(metrics.clone());
    scheduler.apply(&prepared);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    scheduler.shutdown(Duration::from_secs(5)).await;
    let text = metrics.encode_text();
    let skipped = text
        .lines()
        .find(|l| {
            l.starts_with("supportwatch_check_skipped_runs_total{")
                && l.contains("reason=\"overlap\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("skipped counter exported");
    assert!(skipped >= 1.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_check_finish() {
    let shop = start_shop("127.0.0.1").await;
    // /slow answers after 300 ms; the check is due within its first second.
    let prepared = prepare(&format!(
        "checks:\n  - {{ name: slow, kind: http, url: \"{}\", interval: 1s, timeout: 1s }}\n",
        shop.url("/slow")
    ));
    let metrics = Arc::new(Metrics::new());
    let scheduler = Scheduler::new(metrics.clone());
    let mut reports = scheduler.subscribe();
    scheduler.apply(&prepared);
    let started = tokio::time::Instant::now();
    while metrics.running.get() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the check never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        scheduler.shutdown(Duration::from_secs(5)).await,
        "did not drain"
    );
    let report = reports
        .try_recv()
        .expect("the running check finished and reported");
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert_eq!(metrics.running.get(), 0);
}
