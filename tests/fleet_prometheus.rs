//! The fleet against the engines it is meant to run on: real `supportwatch run` processes on
//! loopback scraped by a real Prometheus (`/usr/bin/prometheus`) that evaluates the shipped
//! `dashboards/fleet-alerts.yml` and alerts into a real Alertmanager
//! (`/usr/bin/prometheus-alertmanager`). Three shards of one 300-check config export every check
//! exactly once, as Prometheus's API shows, and a killed shard pages; a channel failing from one
//! location does not page, failing from two pages once, without a location label.
//!
//! The rules' `for:` durations are minutes; the tests load a copy with every `for:` shortened to
//! [`SHORT_FOR`] and the expressions exactly as shipped (`shortened_fleet_rules` asserts both).

mod common;

use axum::Router;
use axum::routing::get;
use common::alertmanager::Alertmanager;
use common::binary::Binary;
use common::breakable::Shop;
use common::daemon::ConfigDir;
use common::prometheus::{Prometheus, value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const CHECKS: usize = 300;

/// What every `for:` of the fleet rules becomes: two rule evaluations at `evaluation_interval: 1s`.
const SHORT_FOR: &str = "2s";

/// `dashboards/fleet-alerts.yml` with every `for:` value replaced by [`SHORT_FOR`] and nothing
/// else changed: the substitution is text (the comments stay), and both texts are parsed to
/// prove that each rule's `for` changed and no expression, label or annotation did.
fn shortened_fleet_rules() -> String {
    let shipped = include_str!("../dashboards/fleet-alerts.yml");
    let mut replaced = 0;
    let mut text = String::new();
    for line in shipped.lines() {
        let body = line.trim_start();
        if body.starts_with("for: ") {
            let indent = &line[..line.len() - body.len()];
            text.push_str(&format!("{indent}for: {SHORT_FOR}\n"));
            replaced += 1;
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    let parse = |yaml: &str| -> serde_json::Value {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("fleet rules YAML: {e}"))
    };
    let mut expected = parse(shipped);
    let mut alerts = 0;
    for group in expected["groups"].as_array_mut().into_iter().flatten() {
        for rule in group["rules"].as_array_mut().into_iter().flatten() {
            if rule.get("alert").is_some() {
                alerts += 1;
                let shipped_for = rule["for"].as_str().unwrap_or_default();
                assert!(
                    shipped_for.ends_with('m'),
                    "{}: `for: {shipped_for}` is no longer minutes; revisit SHORT_FOR",
                    rule["alert"]
                );
                rule["for"] = SHORT_FOR.into();
            }
        }
    }
    assert!(
        alerts >= 5,
        "only {alerts} alerting rules in fleet-alerts.yml"
    );
    assert_eq!(
        replaced, alerts,
        "every alerting rule's `for:` and nothing else"
    );
    assert_eq!(
        parse(&text),
        expected,
        "the shortened rules differ from the shipped ones in more than `for`"
    );
    text
}

/// A Prometheus config like README's "Fleet alerting through Prometheus" example: the job
/// `supportwatch` with `honor_labels`, one static group per location (`None`: no location), the
/// fleet rules, and `am` as the Alertmanager; everything every second.
fn prometheus_config(groups: &[(Option<&str>, Vec<String>)], am: &Alertmanager) -> String {
    let mut yaml = format!(
        "global:\n\
         \x20 scrape_interval: 1s\n\
         \x20 scrape_timeout: 1s\n\
         \x20 evaluation_interval: 1s\n\
         rule_files: [fleet-alerts.yml]\n\
         alerting:\n\
         \x20 alertmanagers:\n\
         \x20   - static_configs:\n\
         \x20       - targets: [\"{}\"]\n\
         scrape_configs:\n\
         \x20 - job_name: supportwatch\n\
         \x20   honor_labels: true\n\
         \x20   static_configs:\n",
        am.addr
    );
    for (location, targets) in groups {
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        yaml.push_str(&format!("      - targets: [{}]\n", targets.join(", ")));
        if let Some(location) = location {
            yaml.push_str(&format!("        labels: {{ location: {location} }}\n"));
        }
    }
    yaml
}

/// The label `name` of a sample or alert.
fn label<'v>(item: &'v serde_json::Value, name: &str) -> &'v str {
    item["metric"][name]
        .as_str()
        .or_else(|| item["labels"][name].as_str())
        .unwrap_or_default()
}

/// Asserts that none of `pids` (processes the test started and has dropped) is still running.
fn assert_gone(pids: &[(&str, u32)]) {
    for (what, pid) in pids {
        // Dropping kills and reaps, so a running or unreaped process still has its /proc entry.
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{what} (pid {pid}) outlived the test"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_split_300_checks_in_prometheus_and_a_killed_shard_pages() {
    let rules = shortened_fleet_rules();
    let site = common::serve(Router::new().route("/", get(|| async { "ok" }))).await;
    // Identical checks, one directory (so one alert database) per instance.
    let dirs: Vec<ConfigDir> = (0..3).map(|_| ConfigDir::new()).collect();
    for dir in &dirs {
        dir.write("checks.yaml", &common::many_http_checks(site, CHECKS));
    }
    let mut instances: Vec<Binary> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let shard = format!("{i}/3");
            Binary::start(dir.path(), &[("SUPPORTWATCH_SHARD", shard.as_str())])
        })
        .collect();
    let addrs: Vec<String> = instances.iter_mut().map(|b| b.addr().to_string()).collect();
    let am = Alertmanager::start().await;
    let config = prometheus_config(&[(None, addrs.clone())], &am);
    let prometheus = Prometheus::start(&config, &[("fleet-alerts.yml", &rules)]).await;

    let rule = prometheus.evaluated_rule("FleetShardMissing").await;
    assert_eq!(rule["health"], "ok", "{rule}");
    assert_eq!(rule["duration"], 2.0, "{rule}");
    prometheus
        .wait_query(
            r#"up{job="supportwatch"} == 1"#,
            "every instance should be scraped",
            |s| s.len() == 3,
        )
        .await;

    // Every check by exactly one instance: 300 checks, each counted once across the instances.
    let per_check = prometheus
        .wait_query(
            r#"count by (check) (supportwatch_check_runs_total{job="supportwatch",result="success"})"#,
            "all 300 checks should be exported",
            |s| s.len() == CHECKS,
        )
        .await;
    let twice: Vec<&serde_json::Value> = per_check.iter().filter(|s| value(s) != 1.0).collect();
    assert!(
        twice.is_empty(),
        "checks not on exactly one instance: {twice:#?}"
    );
    let per_instance = prometheus
        .query(r#"count by (instance) (supportwatch_check_runs_total{job="supportwatch",result="success"})"#)
        .await;
    assert_eq!(per_instance.len(), 3, "{per_instance:#?}");
    for sample in &per_instance {
        let n = value(sample);
        assert!(n > 0.0 && n < CHECKS as f64, "{sample}");
    }
    let owned = prometheus
        .query(r#"sum(supportwatch_checks_owned{job="supportwatch"})"#)
        .await;
    assert_eq!(owned.len(), 1, "{owned:#?}");
    assert_eq!(value(&owned[0]), CHECKS as f64);
    let configured = prometheus
        .query(r#"supportwatch_checks_configured{job="supportwatch"} == 300"#)
        .await;
    assert_eq!(configured.len(), 3, "{configured:#?}");
    let shards = prometheus
        .query(r#"count by (shard, shards) (supportwatch_shard_info{job="supportwatch"})"#)
        .await;
    let mut seen: Vec<(&str, &str, f64)> = shards
        .iter()
        .map(|s| (label(s, "shard"), label(s, "shards"), value(s)))
        .collect();
    seen.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(
        seen,
        vec![("0", "3", 1.0), ("1", "3", 1.0), ("2", "3", 1.0)]
    );

    // Shard 1 crashes (SIGKILL: no goodbye): the instance and its shard page.
    let victim = addrs[1].clone();
    instances[1].child.kill().expect("kill shard 1");
    let _ = instances[1].child.wait();
    let down = am
        .wait_for(
            "alertname",
            "FleetInstanceDown",
            "the killed instance should page",
            |a| a.iter().any(|a| label(a, "instance") == victim),
        )
        .await;
    assert_eq!(down.len(), 1, "only the killed instance is down: {down:#?}");
    assert_eq!(label(&down[0], "job"), "supportwatch");
    assert_eq!(label(&down[0], "severity"), "critical");
    let missing = am
        .wait_for(
            "alertname",
            "FleetShardMissing",
            "the killed instance's shard should page as missing",
            |a| !a.is_empty(),
        )
        .await;
    assert_eq!(missing.len(), 1, "{missing:#?}");
    assert_eq!(
        missing[0]["labels"],
        serde_json::json!({
            "alertname": "FleetShardMissing", "job": "supportwatch", "shards": "3",
            "severity": "critical"
        })
    );
    // Prometheus sees the other two shards still reporting, so the gap is shard 1 alone.
    let left = prometheus
        .query(r#"supportwatch_shard_info{job="supportwatch"}"#)
        .await;
    let mut left: Vec<&str> = left.iter().map(|s| label(s, "shard")).collect();
    left.sort_unstable();
    assert_eq!(left, vec!["0", "2"]);

    let pids = [
        ("prometheus", prometheus.pid()),
        ("alertmanager", am.pid()),
        ("supportwatch shard 0", instances[0].child.id()),
        ("supportwatch shard 2", instances[2].child.id()),
    ];
    drop(prometheus);
    drop(am);
    drop(instances);
    assert_gone(&pids);
}

/// The config of one location: the check `support-chat` of the chat channel, pointed at that
/// location's own shop server, so breaking the server is that location's path to it failing. One
/// retry: a healthy location's run must not fail from one slow moment of a loaded machine.
fn one_chat_check(shop: &Shop) -> String {
    format!(
        "checks:\n  - {{ name: support-chat, kind: http, channel: chat, url: \"http://{}/svc/chat\", \
         interval: 2s, timeout: 2s, retries: 1, retry_delay: 0s }}\n",
        shop.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_location_failing_does_not_page_two_do_once() {
    let rules = shortened_fleet_rules();
    let (msk_shop, vvo_shop) = (Shop::start().await, Shop::start().await);
    let (msk_dir, vvo_dir) = (ConfigDir::new(), ConfigDir::new());
    msk_dir.write("checks.yaml", &one_chat_check(&msk_shop));
    vvo_dir.write("checks.yaml", &one_chat_check(&vvo_shop));
    // The flag in one location, the environment variable in the other.
    let mut msk = Binary::start_with(msk_dir.path(), &["--location", "msk"], &[], None);
    let mut vvo = Binary::start(vvo_dir.path(), &[("SUPPORTWATCH_LOCATION", "vvo")]);
    let am = Alertmanager::start().await;
    let config = prometheus_config(
        &[
            (Some("msk"), vec![msk.addr().to_string()]),
            (Some("vvo"), vec![vvo.addr().to_string()]),
        ],
        &am,
    );
    let prometheus = Prometheus::start(&config, &[("fleet-alerts.yml", &rules)]).await;
    let rule = prometheus.evaluated_rule("FleetSupportChannelDown").await;
    assert_eq!(rule["health"], "ok", "{rule}");
    assert_eq!(rule["duration"], 2.0, "{rule}");
    let check = r#"supportwatch_check_success{job="supportwatch",check="support-chat"}"#;
    prometheus
        .wait_query(
            &format!("{check} == 1"),
            "both locations should pass first",
            |s| s.len() == 2,
        )
        .await;

    // vvo's path to the shop breaks; msk's still works.
    vvo_shop.set("chat", true);
    let failing = prometheus
        .wait_query(
            &format!("{check} == 0"),
            "vvo's failure should reach Prometheus",
            |s| !s.is_empty(),
        )
        .await;
    assert_eq!(failing.len(), 1, "{failing:#?}");
    assert_eq!(label(&failing[0], "location"), "vvo");
    let broken_at = jiff::Timestamp::now();
    // Let the rule look at vvo's failure well past its `for:`: three times over.
    let deadline = Instant::now() + common::prometheus::WITHIN;
    loop {
        let rule = prometheus.rule("FleetSupportChannelDown").await;
        let evaluated: jiff::Timestamp = rule["lastEvaluation"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no lastEvaluation: {rule}"));
        if evaluated.duration_since(broken_at) > jiff::SignedDuration::from_secs(6) {
            assert_eq!(rule["health"], "ok", "{rule}");
            assert_eq!(rule["alerts"], serde_json::json!([]), "{rule}");
            break;
        }
        assert!(Instant::now() < deadline, "the rule stopped: {rule}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Still failing from vvo alone, and through all of it the rule was never even pending.
    let failing = prometheus.query(&format!("{check} == 0")).await;
    assert_eq!(failing.len(), 1, "{failing:#?}");
    assert_eq!(label(&failing[0], "location"), "vvo");
    let ever = prometheus
        .query(r#"count_over_time(ALERTS{alertname="FleetSupportChannelDown"}[5m])"#)
        .await;
    assert_eq!(ever, Vec::<serde_json::Value>::new(), "one location paged");
    let paged = am.active("check", "support-chat").await;
    assert_eq!(paged, Vec::<serde_json::Value>::new(), "one location paged");

    // msk's path breaks too: the channel is down for real, and pages once.
    msk_shop.set("chat", true);
    am.wait_for(
        "check",
        "support-chat",
        "failing from both locations should page",
        |a| !a.is_empty(),
    )
    .await;
    // Give Prometheus a few more evaluations (and sends) to show it stays one alert.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let paged = am.active("check", "support-chat").await;
    assert_eq!(paged.len(), 1, "one deduplicated alert: {paged:#?}");
    let shop = label(&paged[0], "shop").to_string();
    assert_eq!(
        paged[0]["labels"],
        serde_json::json!({
            "alertname": "FleetSupportChannelDown", "check": "support-chat", "channel": "chat",
            "shop": shop, "job": "supportwatch", "severity": "critical"
        })
    );
    assert!(!shop.is_empty(), "{paged:#?}");
    assert_eq!(paged[0]["status"]["state"], "active", "{paged:#?}");
    let all: Vec<serde_json::Value> = am.active("alertname", "FleetSupportChannelDown").await;
    assert_eq!(all.len(), 1, "{all:#?}");
    let by_location: BTreeMap<String, f64> = prometheus
        .query(&format!("{check} == 0"))
        .await
        .iter()
        .map(|s| (label(s, "location").to_string(), value(s)))
        .collect();
    assert_eq!(
        by_location,
        BTreeMap::from([("msk".to_string(), 0.0), ("vvo".to_string(), 0.0)])
    );

    // Both recover: the alert resolves in Alertmanager.
    msk_shop.set("chat", false);
    vvo_shop.set("chat", false);
    am.wait_for(
        "check",
        "support-chat",
        "the alert should resolve once both locations pass",
        |a| a.is_empty(),
    )
    .await;

    let pids = [
        ("prometheus", prometheus.pid()),
        ("alertmanager", am.pid()),
        ("supportwatch msk", msk.child.id()),
        ("supportwatch vvo", vvo.child.id()),
    ];
    drop(prometheus);
    drop(am);
    drop(msk);
    drop(vvo);
    assert_gone(&pids);
}
