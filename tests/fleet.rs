//! A fleet of real `supportwatch run` processes on loopback: `--shard I/N` splits one config so that
//! every check runs on exactly one instance (as `/metrics` and `list --shard` both show),
//! `--location` labels every exported series and skips checks meant for other locations, hooks of
//! other shards' checks are answered 421, and unusable values stop the binary with exit 2.

mod common;

use axum::Router;
use axum::routing::get;
use common::binary::{Binary, metric_sum};
use common::daemon::{ConfigDir, get_text};
use std::collections::BTreeSet;
use std::process::Command;
use supportwatch::daemon::{ConfigSource, Daemon};
use supportwatch::fleet::{Placement, Shard};

const CHECKS: usize = 300;

/// The checks whose series an exposition holds (from `check_runs_total`, exported for every
/// check the instance runs).
fn exported_checks(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("supportwatch_check_runs_total{") && l.contains("result=\"success\"")
        })
        .filter_map(|l| {
            let from = l.find("check=\"")? + "check=\"".len();
            let to = from + l[from..].find('"')?;
            Some(l[from..to].to_string())
        })
        .collect()
}

fn list(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_supportwatch"))
        .arg("list")
        .arg("--config")
        .arg(dir)
        .args(args)
        .env_remove("SUPPORTWATCH_SHARD")
        .env_remove("SUPPORTWATCH_LOCATION")
        .output()
        .expect("run supportwatch list");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_run_every_check_exactly_once() {
    let site = common::serve(Router::new().route("/", get(|| async { "ok" }))).await;
    // One config, three instances, each with its own alert database: `--shard 0/3`, the
    // environment variable, and `auto/3` from a StatefulSet pod name.
    let dirs: Vec<ConfigDir> = (0..3).map(|_| ConfigDir::new()).collect();
    for dir in &dirs {
        dir.write("checks.yaml", &common::many_http_checks(site, CHECKS));
    }
    let mut instances = vec![
        Binary::start_with(dirs[0].path(), &["--shard", "0/3"], &[], None),
        Binary::start_with(dirs[1].path(), &[], &[("SUPPORTWATCH_SHARD", "1/3")], None),
        Binary::start_with(
            dirs[2].path(),
            &["--shard", "auto/3"],
            &[("POD_NAME", "supportwatch-2"), ("HOSTNAME", "node-1")],
            None,
        ),
    ];
    let mut all = BTreeSet::new();
    let mut total = 0;
    for (i, instance) in instances.iter_mut().enumerate() {
        let addr = instance.addr();
        let metrics = get_text(&format!("http://{addr}/metrics")).await;
        let checks = exported_checks(&metrics);
        assert!(
            !checks.is_empty() && checks.len() < CHECKS,
            "shard {i} runs {} checks",
            checks.len()
        );
        assert_eq!(
            metric_sum(&metrics, "supportwatch_checks_owned", &[]),
            Some(checks.len() as f64),
            "shard {i}"
        );
        assert_eq!(
            metric_sum(&metrics, "supportwatch_checks_configured", &[]),
            Some(CHECKS as f64)
        );
        let shard = format!("supportwatch_shard_info{{shard=\"{i}\",shards=\"3\"}} 1");
        assert!(
            metrics.lines().any(|l| l == shard),
            "no `{shard}` in:\n{metrics}"
        );
        // `list --shard` agrees with what the instance runs.
        let (code, listed, err) = list(dirs[0].path(), &["--shard", &format!("{i}/3")]);
        assert_eq!(code, Some(0), "{err}");
        let listed: BTreeSet<String> = listed
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        assert_eq!(listed, checks, "list --shard {i}/3");
        total += checks.len();
        all.extend(checks);
        if i == 0 {
            common::promtool_check(&metrics);
        }
    }
    // Each check on exactly one instance: the sizes add up to the union, which is everything.
    assert_eq!(total, CHECKS);
    assert_eq!(all.len(), CHECKS);
    // `list --shards 3` names each check's shard, the same split.
    let (code, listed, err) = list(dirs[0].path(), &["--shards", "3"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(listed.lines().count(), CHECKS);
    for line in listed.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let expected = format!("shard={}/3", supportwatch::fleet::shard_of(name, 3));
        assert!(line.contains(&expected), "{line}");
    }
    for instance in instances {
        let (code, log) = instance.stop();
        assert_eq!(code, Some(0), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_labels_every_series_and_skips_checks_meant_for_others() {
    let site = common::serve(Router::new().route("/", get(|| async { "ok" }))).await;
    let dir = ConfigDir::new();
    dir.write(
        "checks.yaml",
        &format!(
            "checks:\n\
             \x20 - {{ name: everywhere, kind: http, url: \"http://{site}/\", interval: 2s, timeout: 1s }}\n\
             \x20 - {{ name: moscow, kind: http, url: \"http://{site}/\", locations: [msk, vvo] }}\n\
             \x20 - {{ name: far-east, kind: http, url: \"http://{site}/\", locations: [vvo] }}\n"
        ),
    );
    let mut msk = Binary::start_with(dir.path(), &["--location", "msk"], &[], None);
    let addr = msk.addr();
    // After a run, so the last-run gauges and the per-kind histogram have series too.
    let deadline = std::time::Instant::now() + common::binary::WITHIN;
    let metrics = loop {
        let metrics = get_text(&format!("http://{addr}/metrics")).await;
        if metric_sum(
            &metrics,
            "supportwatch_check_runs_total",
            &["check=\"everywhere\"", "result=\"success\""],
        )
        .is_some_and(|n| n >= 1.0)
        {
            break metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`everywhere` never ran:\n{}",
            msk.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let samples: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(samples.len() > 50, "{metrics}");
    for sample in &samples {
        assert!(
            sample.contains("location=\"msk\""),
            "a series without the instance's location: {sample}"
        );
    }
    for needle in [
        "supportwatch_build_info{",
        "supportwatch_scheduler_running_checks{",
        "supportwatch_run_duration_seconds_bucket{",
        "supportwatch_shard_info{location=\"msk\",shard=\"0\",shards=\"1\"} 1",
    ] {
        assert!(metrics.contains(needle), "no `{needle}` in:\n{metrics}");
    }
    assert_eq!(
        exported_checks(&metrics),
        BTreeSet::from(["everywhere".to_string(), "moscow".to_string()])
    );
    common::promtool_check(&metrics);
    let (code, log) = msk.stop();
    assert_eq!(code, Some(0), "{log}");

    // Without --location everything runs, with a warning that some checks name locations.
    let mut anywhere = Binary::start_with(dir.path(), &[], &[], None);
    let addr = anywhere.addr();
    let metrics = get_text(&format!("http://{addr}/metrics")).await;
    assert_eq!(exported_checks(&metrics).len(), 3);
    assert!(!metrics.contains("location="), "{metrics}");
    anywhere.wait_for_line(
        "2 check(s) have `locations:` but this instance has no --location",
        0,
    );

    // `list --location` shows the same choice.
    let (code, listed, err) = list(dir.path(), &["--location", "vvo"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.contains("locations=vvo"), "{listed}");
}

#[tokio::test]
async fn a_static_location_label_must_agree_with_the_instance() {
    let dir = ConfigDir::new();
    dir.write(
        "checks.yaml",
        "checks:\n  - { name: home, kind: http, url: \"http://127.0.0.1:1/\", labels: { location: vvo } }\n",
    );
    let placement = Placement {
        shard: None,
        location: Some("msk".into()),
    };
    let err = Daemon::start_placed(
        ConfigSource::Dir(dir.path().to_path_buf()),
        Some("127.0.0.1:0".parse().expect("addr")),
        placement,
    )
    .await
    .err()
    .expect("a contradicting location label is refused");
    let text = err.to_string();
    assert!(
        text.contains("check \"home\": label location=`vvo` contradicts --location msk"),
        "{text}"
    );
}

#[tokio::test]
async fn a_hook_of_another_shards_check_answers_421_naming_it() {
    supportwatch::tlsconf::install_crypto_provider();
    let dir = ConfigDir::new();
    dir.write(
        "checks.yaml",
        "hooks:\n  crm: { secret: 0123456789abcdef0123, signature: url }\n\
         checks:\n\
         \x20 - name: far-east-form\n\
         \x20   kind: form\n\
         \x20   url: http://127.0.0.1:1/contacts\n\
         \x20   form: form\n\
         \x20   fields: { message: \"Automated test {{token}}\" }\n\
         \x20   locations: [vvo]\n\
         \x20   deliver: { webhook: crm, within: 1m }\n",
    );
    let placement = Placement {
        shard: None,
        location: Some("msk".into()),
    };
    let daemon = Daemon::start_placed(
        ConfigSource::Dir(dir.path().to_path_buf()),
        Some("127.0.0.1:0".parse().expect("addr")),
        placement,
    )
    .await
    .unwrap_or_else(|e| panic!("the daemon should start:\n{e}"));
    let answer = reqwest::Client::new()
        .post(format!(
            "http://{}/hooks/crm/0123456789abcdef0123",
            daemon.addr
        ))
        .body("sw-x")
        .send()
        .await
        .expect("post the hook");
    assert_eq!(answer.status().as_u16(), 421);
    let body = answer.text().await.expect("body");
    assert_eq!(
        body,
        "hook crm is served by the instance that runs check far-east-form (locations vvo); \
         route it there\n"
    );
    daemon.stop().await;
}

#[test]
fn unusable_shards_and_locations_exit_2_with_the_reason() {
    let dir = ConfigDir::new();
    dir.write("checks.yaml", "checks: []\n");
    for (args, env, message) in [
        (
            &["--shard", "3/3"][..],
            &[][..],
            "error: --shard (or SUPPORTWATCH_SHARD) `3/3`: the shard index counts from 0 and must \
             be below the number of shards",
        ),
        (
            &["--shard", "0/0"],
            &[],
            "`0/0`: the number of shards must be between 1 and 1024",
        ),
        (
            &["--shard", "two"],
            &[],
            "`two` is not a shard: write I/N (e.g. 0/3, the first of three) or auto/N",
        ),
        (
            &[],
            &[("SUPPORTWATCH_SHARD", "1-3")],
            "`1-3` is not a shard",
        ),
        (
            &["--shard", "auto/3"],
            &[("HOSTNAME", "worker")],
            "but POD_NAME is not set and HOSTNAME=worker has none",
        ),
        (
            &["--location", "msk vvo"],
            &[],
            "error: --location (or SUPPORTWATCH_LOCATION): location `msk vvo`: use 1 to 64 \
             letters, digits, `_`, `-` or `.`",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_supportwatch"))
            .args(["run", "--listen", "127.0.0.1:0", "--config"])
            .arg(dir.path())
            .args(args)
            .env_remove("POD_NAME")
            .env_remove("SUPPORTWATCH_SHARD")
            .env_remove("SUPPORTWATCH_LOCATION")
            .envs(env.iter().copied())
            .output()
            .expect("run supportwatch");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    // The same parser in the library: the pod ordinal, and its bound.
    let pod = |var: &str| (var == "POD_NAME").then(|| "supportwatch-2".to_string());
    assert_eq!(
        Shard::parse("auto/3", pod),
        Ok(Shard { index: 2, count: 3 })
    );
    assert!(Shard::parse("auto/2", pod).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_carry_the_location_and_labels_may_come_from_the_environment() {
    supportwatch::tlsconf::install_crypto_provider();
    // Posing as Alertmanager: what the instance posts is what Alertmanager would group by.
    let alertmanager = common::recorder::Recorder::start().await;
    let dir = ConfigDir::new();
    dir.write(
        "checks.yaml",
        &format!(
            "notifiers:\n  am: {{ kind: alertmanager, url: \"{}\" }}\n\
             alerting: {{ failure_threshold: 1, group_wait: 0s, routes: [ {{ notify: [am] }} ] }}\n\
             checks:\n\
             \x20 - name: down\n\
             \x20   kind: http\n\
             \x20   url: \"http://127.0.0.1:{}/\"\n\
             \x20   interval: 2s\n\
             \x20   timeout: 1s\n\
             \x20   labels: {{ team: \"${{FLEET_TEST_TEAM:-ops}}\" }}\n",
            alertmanager.url(""),
            common::closed_port()
        ),
    );
    let placement = Placement {
        shard: Some(Shard { index: 0, count: 1 }),
        location: Some("vvo".into()),
    };
    let daemon = Daemon::start_placed(
        ConfigSource::Dir(dir.path().to_path_buf()),
        Some("127.0.0.1:0".parse().expect("addr")),
        placement,
    )
    .await
    .unwrap_or_else(|e| panic!("the daemon should start:\n{e}"));
    alertmanager
        .wait_until("the firing alert", |got| {
            got.iter().any(|r| r.path == "/api/v2/alerts")
        })
        .await;
    let posted = alertmanager
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v2/alerts")
        .expect("an alert");
    let alerts = posted.json();
    assert_eq!(
        alerts[0]["labels"],
        serde_json::json!({
            "alertname": "SupportChannelDown", "check": "down", "channel": "website",
            "kind": "http", "shop": "default", "team": "ops", "location": "vvo"
        })
    );
    daemon.stop().await;
}

#[test]
fn locations_are_checked_at_load_with_their_place() {
    let load = |yaml: &str| {
        supportwatch::config::load_sources(&[(
            std::path::PathBuf::from("fleet.yaml"),
            yaml.to_string(),
        )])
        .expect_err("bad locations are refused")
        .to_string()
    };
    let errors = load(
        "checks:\n\
         \x20 - { name: nowhere, kind: http, url: \"http://127.0.0.1:1/\", locations: [] }\n\
         \x20 - { name: spaced, kind: http, url: \"http://127.0.0.1:1/\", locations: [msk, \"v v o\"] }\n",
    );
    for needle in [
        "fleet.yaml:2:5: check \"nowhere\": `locations` is empty, so no instance would run the \
         check",
        "fleet.yaml:3:5: check \"spaced\": locations: `v v o` is not a location name",
    ] {
        assert!(errors.contains(needle), "no `{needle}` in:\n{errors}");
    }
    let typo = load(
        "checks:\n  - { name: typo, kind: http, url: \"http://127.0.0.1:1/\", location: [msk] }\n",
    );
    assert!(
        typo.contains("check \"typo\": unknown field `location`")
            && typo.contains("(did you mean `locations`?)"),
        "{typo}"
    );
}
