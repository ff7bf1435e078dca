//! `supportwatch report` on a seeded database: the JSON shape scripts rely on, the text for
//! people, and a read beside a writer holding the database open, as the daemon does.

use serde_json::Value;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};
use supportwatch::alert::store::{Incident, RunRecord, Store};

const BIN: &str = env!("CARGO_BIN_EXE_supportwatch");

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

fn run(check: &str, channel: &str, kind: &str, ago: f64, failed: bool, latency: f64) -> RunRecord {
    RunRecord {
        check: check.into(),
        started_at: now() - ago,
        duration: 1.0,
        result: if failed { "failure" } else { "success" }.into(),
        reason_kind: failed.then(|| "no_reply".into()),
        reason: failed.then(|| "no reply within 30s".into()),
        shop: "berlin".into(),
        channel: channel.into(),
        kind: kind.into(),
        latency: (!failed).then_some(latency),
        ..RunRecord::default()
    }
}

fn incident(ago: f64, lasted: Option<f64>) -> Incident {
    let started_at = now() - ago;
    Incident {
        check: "chat-bot".into(),
        shop: "berlin".into(),
        channel: "chat".into(),
        kind: "chat".into(),
        started_at,
        ended_at: lasted.map(|l| started_at + l),
        reason_kind: "no_reply".into(),
        reason: "no reply within 30s".into(),
    }
}

/// A config naming the database, Berlin's zone for the shop, and one check of the shop.
fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("history.db");
    let yaml = format!(
        "storage: {{ path: {db:?} }}
alerting:
  shop_timezones: {{ berlin: Europe/Berlin }}
checks:
  - name: site
    kind: http
    url: http://127.0.0.1:9/
    labels: {{ shop: berlin }}
",
        db = db.display().to_string()
    );
    std::fs::write(dir.path().join("shop.yaml"), yaml).expect("write config");
    let store = Store::open(&db).expect("open");
    // 200 form runs over the last two days, 4 failed, deliveries of 40 s; 20 chats, 2 failed,
    // first replies of 3 s; then an incident 14 minutes long and one still going.
    let mut runs = Vec::new();
    for i in 0..200 {
        runs.push(run(
            "form",
            "feedback_form",
            "form",
            600.0 + f64::from(i) * 800.0,
            i % 50 == 0,
            40.0,
        ));
    }
    for i in 0..20 {
        runs.push(run(
            "chat-bot",
            "chat",
            "chat",
            900.0 + f64::from(i) * 3600.0,
            i < 2,
            3.0,
        ));
    }
    let incidents = [
        incident(3.0 * 3600.0, Some(14.0 * 60.0)),
        incident(300.0, None),
    ];
    store
        .commit_runs(&runs, 10_000, None, &incidents, &[], now())
        .expect("seed");
    (dir, store)
}

fn report(dir: &tempfile::TempDir, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("report")
        .args(args)
        .arg("--config")
        .arg(dir.path())
        .output()
        .expect("run supportwatch report")
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

#[test]
fn json_report_has_the_documented_shape_and_figures() {
    // The seeding store stays open, as the daemon's would: the report reads beside it.
    let (dir, _writer) = setup();
    let out = report(
        &dir,
        &["--shop", "berlin", "--since", "7d", "--format", "json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(keys(&v), ["channels", "from", "shop", "timezone", "to"]);
    assert_eq!(v["shop"], "berlin");
    assert_eq!(v["timezone"], "Europe/Berlin");
    let to = v["to"].as_str().expect("to");
    assert!(to.ends_with("+01:00") || to.ends_with("+02:00"), "{to}");
    let channels = v["channels"].as_array().expect("channels");
    let names: Vec<&str> = channels
        .iter()
        .map(|c| c["channel"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(names, ["chat", "feedback_form"]);
    for c in channels {
        assert_eq!(
            keys(c),
            [
                "channel",
                "failures",
                "incidents",
                "latency_max_seconds",
                "latency_p50_seconds",
                "latency_p95_seconds",
                "outages",
                "runs",
                "traffic",
                "uptime"
            ]
        );
    }
    let (chat, form) = (&channels[0], &channels[1]);
    assert_eq!(
        (form["runs"].as_u64(), form["failures"].as_u64()),
        (Some(200), Some(4))
    );
    assert_eq!(form["uptime"].as_f64(), Some(0.98));
    assert_eq!(form["traffic"]["form"].as_u64(), Some(200));
    let p50 = form["latency_p50_seconds"].as_f64().expect("p50");
    assert!((36.0..=40.0).contains(&p50), "p50 {p50}");
    assert_eq!(form["latency_max_seconds"].as_f64(), Some(40.0));
    assert_eq!(form["incidents"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        (chat["runs"].as_u64(), chat["failures"].as_u64()),
        (Some(20), Some(2))
    );
    assert_eq!(chat["traffic"]["chat"].as_u64(), Some(20));
    let incidents = chat["incidents"].as_array().expect("incidents");
    assert_eq!(incidents.len(), 2);
    // One after the other, not together: two outages as well.
    assert_eq!(chat["outages"].as_u64(), Some(2));
    assert_eq!(form["outages"].as_u64(), Some(0));
    assert_eq!(
        keys(&incidents[0]),
        [
            "check",
            "duration_seconds",
            "ended",
            "reason",
            "reason_kind",
            "started"
        ]
    );
    assert_eq!(incidents[0]["duration_seconds"].as_f64(), Some(840.0));
    assert_eq!(incidents[0]["reason_kind"], "no_reply");
    assert!(incidents[0]["ended"].is_string());
    assert!(incidents[1]["ended"].is_null(), "the second still lasts");
}

#[test]
fn text_report_lists_channels_and_incidents() {
    let (dir, _writer) = setup();
    let out = report(&dir, &["--shop", "berlin", "--since", "2d"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let form = text
        .lines()
        .find(|l| l.starts_with("feedback_form"))
        .unwrap_or_else(|| panic!("no feedback_form line in:\n{text}"));
    assert!(
        form.contains("98.00 %") && form.contains("200 form"),
        "{form}"
    );
    assert!(text.contains("incidents: 2"), "{text}");
    assert!(text.contains("ongoing"), "{text}");
}

#[test]
fn an_unknown_shop_is_an_error_naming_the_configured_ones() {
    let (dir, _writer) = setup();
    let out = report(&dir, &["--shop", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no shop `nowhere`") && stderr.contains("berlin"),
        "{stderr}"
    );
}

#[test]
fn since_must_be_a_duration() {
    let (dir, _writer) = setup();
    let out = report(&dir, &["--shop", "berlin", "--since", "a week"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
}

#[test]
fn runs_recorded_long_ago_stay_out_of_a_short_range() {
    let (dir, _writer) = setup();
    let out = report(
        &dir,
        &["--shop", "berlin", "--since", "1h", "--format", "json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let form = v["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["channel"] == "feedback_form"))
        .expect("feedback_form");
    // Runs 600 s + 800 s·i ago: within the hour (and the partial hour before it) only a few.
    let runs = form["runs"].as_u64().expect("runs");
    assert!((4..=9).contains(&runs), "{runs}");
}
