//! The shipped Grafana dashboard and Prometheus rules: every metric they name is one supportwatch
//! exports (the list comes from `src/metrics/mod.rs`, not from this file), the dashboard imports
//! cleanly (datasource input, template variables, unique ids, no overlapping panels), and every
//! alert has `promtool test rules` cases for firing and for staying quiet. The same holds for the
//! fleet rules (`fleet-alerts.yml`), which promtool also checks and runs here.

use prometheus::proto::MetricType;
use regex::Regex;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use supportwatch::metrics::{self, CHECK_METRICS, Metrics, PREFIX};

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// supportwatch metric names in a PromQL expression (or any text).
fn metric_names(text: &str) -> BTreeSet<String> {
    let name = Regex::new(r"(?:^|[^A-Za-z0-9_:])(supportwatch_[A-Za-z0-9_:]*)").unwrap();
    name.captures_iter(text).map(|c| c[1].to_string()).collect()
}

/// The exported family a name in a query refers to: itself, or the histogram whose
/// `_bucket` / `_sum` / `_count` series it is.
fn family<'a>(name: &'a str, exported: &BTreeMap<String, MetricType>) -> Option<&'a str> {
    if exported.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .find(|base| exported.get(*base) == Some(&MetricType::HISTOGRAM))
}

/// The names in `used` that supportwatch does not export, each with where it was used.
fn unknown(
    used: &BTreeMap<String, BTreeSet<String>>,
    exported: &BTreeMap<String, MetricType>,
) -> Vec<String> {
    used.iter()
        .filter(|(name, _)| family(name, exported).is_none())
        .map(|(name, places)| format!("{name} (in {})", join(places)))
        .collect()
}

fn join(items: &BTreeSet<String>) -> String {
    items.iter().cloned().collect::<Vec<_>>().join(", ")
}

fn record(used: &mut BTreeMap<String, BTreeSet<String>>, text: &str, place: &str) {
    for name in metric_names(text) {
        used.entry(name).or_default().insert(place.to_string());
    }
}

/// Every string in a JSON document with its path (`panels[3].targets[0].expr`).
fn strings<'a>(value: &'a Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((path, s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                strings(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                strings(item, path, out);
            }
        }
        _ => {}
    }
}

/// Every `datasource` object in a JSON document.
fn datasources<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| datasources(item, out)),
        Value::Object(map) => {
            for (key, item) in map {
                if key == "datasource" && item.is_object() {
                    out.push(item);
                } else {
                    datasources(item, out);
                }
            }
        }
        _ => {}
    }
}

fn dashboard() -> Value {
    serde_json::from_str(&read("dashboards/supportwatch.json"))
        .unwrap_or_else(|e| panic!("dashboards/supportwatch.json: {e}"))
}

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
}

impl Rule {
    fn name(&self) -> &str {
        self.alert
            .as_deref()
            .or(self.record.as_deref())
            .unwrap_or("?")
    }
}

#[derive(Deserialize)]
struct TestFile {
    rule_files: Vec<String>,
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
struct TestGroup {
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
}

#[derive(Deserialize)]
struct InputSeries {
    series: String,
}

#[derive(Deserialize)]
struct AlertTest {
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct ExprTest {
    expr: String,
}

fn rules() -> RuleFile {
    rules_in("dashboards/alerts.yml")
}

fn rule_tests() -> TestFile {
    rule_tests_in("dashboards/alerts_test.yml")
}

fn rules_in(path: &str) -> RuleFile {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rule_tests_in(path: &str) -> TestFile {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn dashboard_and_rules_use_only_exported_metrics() {
    let exported = metrics::exported_names();
    let mut used = BTreeMap::new();

    let mut texts = Vec::new();
    let dashboard = dashboard();
    strings(&dashboard, String::new(), &mut texts);
    for (path, text) in texts {
        record(&mut used, text, &format!("supportwatch.json {path}"));
    }
    for group in rules().groups {
        for rule in group.rules {
            let place = format!("alerts.yml {}/{}", group.name, rule.name());
            record(&mut used, &rule.expr, &place);
        }
    }
    for (i, group) in rule_tests().tests.iter().enumerate() {
        let place = format!("alerts_test.yml tests[{i}]");
        for input in &group.input_series {
            record(&mut used, &input.series, &place);
        }
        for test in &group.promql_expr_test {
            record(&mut used, &test.expr, &place);
        }
    }

    // The files do name metrics: an empty set would pass for the wrong reason.
    for name in [
        "supportwatch_check_success",
        "supportwatch_chat_first_response_seconds",
        "supportwatch_alert_firing",
        "supportwatch_notifications_total",
        "supportwatch_notifier_up",
        "supportwatch_notifications_queued",
    ] {
        assert!(used.contains_key(name), "{name} is not used anywhere");
    }
    let unknown = unknown(&used, &exported);
    assert!(
        unknown.is_empty(),
        "names supportwatch does not export (see src/metrics/mod.rs):\n{}",
        unknown.join("\n")
    );
}

#[test]
fn a_made_up_name_is_reported() {
    let exported = metrics::exported_names();
    let mut used = BTreeMap::new();
    record(
        &mut used,
        "sum(rate(supportwatch_made_up_total[5m])) / sum(supportwatch_check_success_count) \
         + histogram_quantile(0.5, rate(supportwatch_run_duration_seconds_bucket[5m])) \
         + sum(supportwatch_check_duration_seconds_count) \
         + my_supportwatch_thing + supportwatch_checks_configured",
        "test",
    );
    assert_eq!(
        used.keys().collect::<Vec<_>>(),
        [
            "supportwatch_check_duration_seconds_count",
            "supportwatch_check_success_count",
            "supportwatch_checks_configured",
            "supportwatch_made_up_total",
            "supportwatch_run_duration_seconds_bucket",
        ]
    );
    // `_count` belongs to histograms only; check_success and check_duration_seconds are gauges.
    assert_eq!(
        unknown(&used, &exported),
        [
            "supportwatch_check_duration_seconds_count (in test)",
            "supportwatch_check_success_count (in test)",
            "supportwatch_made_up_total (in test)",
        ]
    );
}

#[test]
fn exported_names_cover_everything_gathered() {
    let exported = metrics::exported_names();
    // Label vectors without series and per-check families before any run are included.
    for (name, kind) in [
        ("supportwatch_notifications_total", MetricType::COUNTER),
        ("supportwatch_notifier_up", MetricType::GAUGE),
        ("supportwatch_mailbox_quota_used_ratio", MetricType::GAUGE),
        (
            "supportwatch_chat_first_response_seconds",
            MetricType::GAUGE,
        ),
        ("supportwatch_check_duration_seconds", MetricType::GAUGE),
        ("supportwatch_run_duration_seconds", MetricType::HISTOGRAM),
        (
            "supportwatch_channel_delivery_latency_seconds",
            MetricType::HISTOGRAM,
        ),
        ("supportwatch_build_info", MetricType::GAUGE),
        ("supportwatch_browser_sessions_active", MetricType::GAUGE),
    ] {
        assert_eq!(exported.get(name), Some(&kind), "{name}");
    }
    let metrics = Metrics::new();
    metrics.sync_notifiers([("telegram", true)]);
    metrics
        .mailbox_quota
        .with_label_values(&["support"])
        .set(0.5);
    for family in metrics.gather() {
        assert_eq!(
            exported.get(family.name()),
            Some(&family.get_field_type()),
            "{} is gathered but not in exported_names()",
            family.name()
        );
    }
    // The per-check families are written into the exposition, not gathered.
    for line in metrics.encode_text().lines() {
        let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|t| t.split_once(' '))
        else {
            continue;
        };
        let declared = exported.get(name).map(|k| format!("{k:?}").to_lowercase());
        assert_eq!(declared.as_deref(), Some(kind), "{name}");
    }
}

/// Per-check series carry `shop`, `channel` and `check`: every dashboard selector of a per-check
/// metric filters by the three variables.
#[test]
fn dashboard_queries_of_per_check_metrics_use_the_variables() {
    let exported = metrics::exported_names();
    let per_check: BTreeSet<String> = CHECK_METRICS
        .iter()
        .map(|(name, _, _)| format!("{PREFIX}{name}"))
        .collect();
    let selector = Regex::new(r"(supportwatch_[A-Za-z0-9_:]*)(\{[^}]*\})?").unwrap();
    let mut texts = Vec::new();
    let dashboard = dashboard();
    strings(&dashboard, String::new(), &mut texts);
    let mut missing = Vec::new();
    for (path, text) in texts
        .iter()
        .filter(|(path, _)| path.starts_with("panels") && path.ends_with(".expr"))
    {
        for c in selector.captures_iter(text) {
            let Some(family) = family(&c[1], &exported) else {
                continue;
            };
            if !per_check.contains(family) {
                continue;
            }
            let matchers = c.get(2).map_or("", |m| m.as_str());
            for variable in ["shop", "channel", "check"] {
                if !matchers.contains(&format!("{variable}=~\"${variable}\"")) {
                    missing.push(format!(
                        "{path}: {} has no {variable}=~\"${variable}\"",
                        &c[1]
                    ));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn dashboard_imports_with_a_datasource_input_and_variables() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().is_some(), "schemaVersion");
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()), "uid");

    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
            && i["type"] == "datasource"
            && i["pluginId"] == "prometheus"),
        "__inputs has no DS_PROMETHEUS datasource"
    );
    // Every Prometheus datasource reference is the input, so an import binds the whole
    // dashboard to one Prometheus (the built-in annotation uses Grafana's own datasource).
    let mut refs = Vec::new();
    datasources(&d, &mut refs);
    assert!(!refs.is_empty());
    let wrong: Vec<_> = refs
        .iter()
        .filter(|ds| ds["type"] != "grafana" && ds["uid"] != "${DS_PROMETHEUS}")
        .collect();
    assert!(
        wrong.is_empty(),
        "datasources not bound to the input: {wrong:?}"
    );

    let variables: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for name in ["shop", "channel", "check"] {
        assert!(variables.contains(&name), "no template variable {name}");
    }

    let required: BTreeSet<&str> = d["__requires"]
        .as_array()
        .expect("__requires")
        .iter()
        .filter(|r| r["type"] == "panel")
        .filter_map(|r| r["id"].as_str())
        .collect();
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(u64, [u64; 4])> = Vec::new();
    for panel in d["panels"].as_array().expect("panels") {
        // Collapsed rows carry their panels inside.
        let nested = panel["panels"].as_array().into_iter().flatten();
        for p in std::iter::once(panel).chain(nested) {
            let id = p["id"].as_u64().expect("panel id");
            assert!(ids.insert(id), "panel id {id} is used twice");
            let kind = p["type"].as_str().expect("panel type");
            assert!(
                kind == "row" || required.contains(kind),
                "panel {id}: type {kind} is not in __requires"
            );
            if kind != "row" {
                assert!(
                    p["targets"].as_array().is_some_and(|t| !t.is_empty()),
                    "panel {id} has no query"
                );
            }
        }
        let g = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_u64().expect("gridPos"));
        assert!(
            x + w <= 24 && w > 0 && h > 0,
            "panel {}: gridPos {g}",
            panel["id"]
        );
        for (other, [ox, oy, ow, oh]) in &boxes {
            let apart = x + w <= *ox || *ox + ow <= x || y + h <= *oy || *oy + oh <= y;
            assert!(apart, "panels {} and {other} overlap", panel["id"]);
        }
        boxes.push((panel["id"].as_u64().unwrap_or(0), [x, y, w, h]));
    }
}

/// promtool passes a test of an alert name that no rule has (nothing fires, as "expected"), and a
/// rule with no quiet case could fire on everything: each alert needs both.
#[test]
fn every_alert_is_tested_firing_and_quiet() {
    let alerts = tested_firing_and_quiet("alerts.yml", "alerts_test.yml");
    for expected in [
        "SupportChannelDown",
        "CertificateExpiringSoon",
        "MailboxQuotaHigh",
        "SupportwatchDown",
        "SupportwatchAbsent",
        "SchedulerLagging",
        "NotifierFailing",
        "AlertNotificationsDropped",
    ] {
        assert!(alerts.contains(expected), "alerts.yml has no {expected}");
    }
}

#[test]
fn every_fleet_alert_is_tested_firing_and_quiet() {
    let alerts = tested_firing_and_quiet("fleet-alerts.yml", "fleet-alerts_test.yml");
    for expected in [
        "FleetSupportChannelDown",
        "FleetInstanceDown",
        "FleetShardMissing",
        "FleetAbsent",
        "FleetChecksOwnedDropped",
    ] {
        assert!(
            alerts.contains(expected),
            "fleet-alerts.yml has no {expected}"
        );
    }
}

/// The alert names of `dashboards/{rules}`, after asserting that `dashboards/{tests}` loads that
/// file alone and tests each of its alerts firing and quiet, and no other alert.
fn tested_firing_and_quiet(rules: &str, tests: &str) -> BTreeSet<String> {
    let rule_file = rules_in(&format!("dashboards/{rules}"));
    let test_file = rule_tests_in(&format!("dashboards/{tests}"));
    assert_eq!(test_file.rule_files, [rules], "{tests}: rule_files");
    let alerts: BTreeSet<String> = rule_file
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter_map(|r| r.alert.clone())
        .collect();
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in test_file.tests.iter().flat_map(|t| &t.alert_rule_test) {
        assert!(
            alerts.contains(&test.alertname),
            "{tests} tests {}, which {rules} does not define",
            test.alertname
        );
        if test.exp_alerts.is_empty() {
            quiet.insert(test.alertname.clone());
        } else {
            fires.insert(test.alertname.clone());
        }
    }
    let untested: Vec<_> = alerts.difference(&fires).collect();
    assert!(
        untested.is_empty(),
        "{tests}: never tested firing: {untested:?}"
    );
    let untested: Vec<_> = alerts.difference(&quiet).collect();
    assert!(
        untested.is_empty(),
        "{tests}: never tested quiet: {untested:?}"
    );
    alerts
}

/// promtool itself: both rule files load, and their unit tests pass (what scripts/test also runs,
/// here so that `cargo test` alone catches a broken rule).
#[test]
fn promtool_checks_and_tests_the_rules() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
        ["check", "rules", "fleet-alerts.yml"],
        ["test", "rules", "fleet-alerts_test.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect(
                "promtool must be installed: apt-get install prometheus (scripts/test does it)",
            );
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The fleet rules name only metrics supportwatch exports, including the shard metrics, and do
/// name the ones they are about.
#[test]
fn fleet_rules_use_only_exported_metrics() {
    let exported = metrics::exported_names();
    let mut used = BTreeMap::new();
    for group in rules_in("dashboards/fleet-alerts.yml").groups {
        for rule in group.rules {
            let place = format!("fleet-alerts.yml {}/{}", group.name, rule.name());
            record(&mut used, &rule.expr, &place);
        }
    }
    for (i, group) in rule_tests_in("dashboards/fleet-alerts_test.yml")
        .tests
        .iter()
        .enumerate()
    {
        let place = format!("fleet-alerts_test.yml tests[{i}]");
        for input in &group.input_series {
            record(&mut used, &input.series, &place);
        }
    }
    for name in [
        "supportwatch_check_success",
        "supportwatch_shard_info",
        "supportwatch_checks_owned",
        "supportwatch_checks_configured",
    ] {
        assert!(used.contains_key(name), "{name} is not used anywhere");
    }
    let unknown = unknown(&used, &exported);
    assert!(
        unknown.is_empty(),
        "names supportwatch does not export (see src/metrics/mod.rs):\n{}",
        unknown.join("\n")
    );
}
