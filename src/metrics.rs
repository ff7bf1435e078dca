//! Every metric supportwatch exports, defined in this one module.
//!
//! Per-check series live in a custom store rather than in `prometheus` vectors: each check has its
//! own set of static labels (`shop`, `location`, ...), and a reload must drop the series of removed
//! checks. Scheduler self-metrics use plain `prometheus` types. Labels are bounded: check names,
//! closed enums and config values — never tokens, URLs or error texts.

use crate::outcome::{
    CertReport, CheckIdentity, FailureKind, LateDelivery, Observation, RunReport, RunResult,
};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Metric name prefix.
pub const PREFIX: &str = "supportwatch_";

/// Bucket bounds for check and phase durations, seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Bucket bounds for scheduler lag, seconds.
pub const LAG_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// Bucket bounds for delivery and auto-reply latency, seconds (mail takes seconds to minutes).
pub const DELIVERY_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// (name without prefix, help, type) of every per-check metric.
pub const CHECK_METRICS: &[(&str, &str, MetricType)] = &[
    (
        "check_success",
        "1 if the check's last run passed, 0 if it failed.",
        MetricType::GAUGE,
    ),
    (
        "check_duration_seconds",
        "Duration of check runs, all attempts included.",
        MetricType::HISTOGRAM,
    ),
    (
        "check_runs_total",
        "Finished check runs by result (success, retried_success, failure, timeout).",
        MetricType::COUNTER,
    ),
    (
        "check_failures_total",
        "Failed check runs by bounded failure reason.",
        MetricType::COUNTER,
    ),
    (
        "check_phase_duration_seconds",
        "Duration of each phase of a check's last attempt.",
        MetricType::HISTOGRAM,
    ),
    (
        "check_last_run_timestamp_seconds",
        "Unix time the check's last run started.",
        MetricType::GAUGE,
    ),
    (
        "check_skipped_runs_total",
        "Runs not started because the check's previous run was still going.",
        MetricType::COUNTER,
    ),
    (
        "http_status_code",
        "HTTP status code of the check's last answer.",
        MetricType::GAUGE,
    ),
    (
        "http_body_truncated_total",
        "Answers whose body was cut at max_body.",
        MetricType::COUNTER,
    ),
    (
        "tls_cert_not_after_timestamp_seconds",
        "Not-after of the leaf certificate presented at a target.",
        MetricType::GAUGE,
    ),
    (
        "tls_chain_not_after_timestamp_seconds",
        "Earliest not-after across the certificate chain at a target.",
        MetricType::GAUGE,
    ),
    (
        "tls_chain_verified",
        "1 if the chain at a target verifies to a trusted root.",
        MetricType::GAUGE,
    ),
    (
        "tls_name_matches",
        "1 if the leaf certificate is valid for the target's host name.",
        MetricType::GAUGE,
    ),
    (
        "delivery_latency_seconds",
        "Time from submit until the token was seen at the far end (mailbox, webhook, ...).",
        MetricType::HISTOGRAM,
    ),
    (
        "delivery_last_timestamp_seconds",
        "Unix time of the check's last proven delivery.",
        MetricType::GAUGE,
    ),
    (
        "deliveries_pending",
        "Runs that have submitted and are waiting for their delivery.",
        MetricType::GAUGE,
    ),
    (
        "deliveries_late_total",
        "Deliveries that arrived after their deadline (the run had already failed).",
        MetricType::COUNTER,
    ),
    (
        "deliveries_lost_total",
        "Deliveries that did not arrive even within the late window.",
        MetricType::COUNTER,
    ),
    (
        "auto_reply_latency_seconds",
        "Time from submit until the shop's automatic acknowledgement reached the sender.",
        MetricType::HISTOGRAM,
    ),
    (
        "chat_first_response_seconds",
        "Time from sending a chat check's first message until the bot's first reply.",
        MetricType::HISTOGRAM,
    ),
    (
        "alert_firing",
        "1 while the check's alert is firing (failure threshold reached, not yet resolved).",
        MetricType::GAUGE,
    ),
    (
        "dns_spf_lookups",
        "DNS lookups the domain's SPF record needs (the limit is 10).",
        MetricType::GAUGE,
    ),
];

#[derive(Clone, Default)]
struct Hist {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Hist {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (i, b) in bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn to_proto(&self, bounds: &[f64]) -> proto::Histogram {
        let mut h = proto::Histogram::default();
        h.set_sample_count(self.count);
        h.set_sample_sum(self.sum);
        let buckets = bounds
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut bucket = proto::Bucket::default();
                bucket.set_upper_bound(*b);
                bucket.set_cumulative_count(self.counts.get(i).copied().unwrap_or(0));
                bucket
            })
            .collect();
        h.set_bucket(buckets);
        h
    }
}

#[derive(Default)]
struct CheckSeries {
    labels: Vec<(String, String)>,
    success: Option<bool>,
    last_run: Option<f64>,
    runs: [u64; RunResult::ALL.len()],
    failures: BTreeMap<FailureKind, u64>,
    skipped: u64,
    duration: Hist,
    phases: BTreeMap<String, Hist>,
    http_status: Option<u16>,
    body_truncated: u64,
    certs: BTreeMap<String, CertReport>,
    spf: BTreeMap<String, u32>,
    /// Whether the check has a delivery stage (its delivery series are exported from zero).
    delivers: bool,
    delivery_latency: Hist,
    delivery_last: Option<f64>,
    deliveries_pending: i64,
    deliveries_late: u64,
    deliveries_lost: u64,
    auto_reply_latency: Hist,
    chat_first_response: Hist,
    /// Whether the check's alert fires; `None` until the alert engine has said.
    alert_firing: Option<bool>,
}

/// What the metrics need of one configured check: its identity (the labels of its series) and
/// whether its runs wait for a delivery (so delivery series are exported for it).
#[derive(Clone, Copy, Debug)]
pub struct ConfiguredCheck<'a> {
    /// Name, kind, channel and static labels.
    pub id: CheckIdentity<'a>,
    /// Whether runs leave a delivery to wait for.
    pub delivers: bool,
}

/// All of supportwatch's metrics.
pub struct Metrics {
    registry: Registry,
    /// Name and type of every registered family, series or not (see [`exported_names`]).
    families: BTreeMap<String, MetricType>,
    checks: RwLock<BTreeMap<Arc<str>, Arc<Mutex<CheckSeries>>>>,
    /// Delay between when a run was due and when its probe started, seconds.
    pub scheduler_lag: Histogram,
    /// Runs in progress.
    pub running: IntGauge,
    /// Checks in the loaded config.
    pub configured: IntGauge,
    /// Config reloads by result.
    pub reloads: IntCounterVec,
    /// 1 if the last reload succeeded.
    pub last_reload_successful: IntGauge,
    /// Unix time of the last successful (re)load.
    pub last_reload_success_time: Gauge,
    /// Storage quota usage per mailbox.
    pub mailbox_quota: GaugeVec,
    /// Notifications by notifier and result (sent, error, dropped).
    pub notifications: IntCounterVec,
    /// 1 while a notifier's last attempt succeeded, 0 while it fails.
    pub notifier_up: IntGaugeVec,
    /// Notifications decided but not yet sent (grouping, retries, waiting for a fallback).
    pub notifications_queued: IntGauge,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let n = |name: &str| format!("{PREFIX}{name}");
        let scheduler_lag = Histogram::with_opts(
            HistogramOpts::new(
                n("scheduler_lag_seconds"),
                "Delay between when a run was due and when its probe started.",
            )
            .buckets(LAG_BUCKETS.to_vec()),
        )
        .expect("static metric definition");
        let running = IntGauge::new(n("scheduler_running_checks"), "Check runs in progress.")
            .expect("static metric definition");
        let configured = IntGauge::new(n("checks_configured"), "Checks in the loaded config.")
            .expect("static metric definition");
        let reloads = IntCounterVec::new(
            Opts::new(
                n("config_reloads_total"),
                "Config reloads by result (success, failure).",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let last_reload_successful = IntGauge::new(
            n("config_last_reload_successful"),
            "1 if the last config reload succeeded, 0 if it was refused.",
        )
        .expect("static metric definition");
        let last_reload_success_time = Gauge::new(
            n("config_last_reload_success_timestamp_seconds"),
            "Unix time of the last successful config load.",
        )
        .expect("static metric definition");
        let build_info = IntGauge::with_opts(
            Opts::new(
                n("build_info"),
                "Always 1; labelled with the supportwatch version.",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("static metric definition");
        build_info.set(1);
        let mailbox_quota = GaugeVec::new(
            Opts::new(
                n("mailbox_quota_used_ratio"),
                "Storage quota used / limit of a mailbox declared under mailboxes.",
            ),
            &["mailbox"],
        )
        .expect("static metric definition");
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        let notifications = IntCounterVec::new(
            Opts::new(
                n("notifications_total"),
                "Alert notifications by notifier and result: sent, error (an attempt failed and is \
                 retried or handed to the fallback), dropped (given up).",
            ),
            &["notifier", "result"],
        )
        .expect("static metric definition");
        let notifier_up = IntGaugeVec::new(
            Opts::new(
                n("notifier_up"),
                "1 if the notifier's last send succeeded (or it has not sent yet), 0 if it failed.",
            ),
            &["notifier"],
        )
        .expect("static metric definition");
        let notifications_queued = IntGauge::new(
            n("notifications_queued"),
            "Alert notifications decided but not yet sent.",
        )
        .expect("static metric definition");
        let mut families = BTreeMap::new();
        for c in [
            Box::new(scheduler_lag.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(running.clone()),
            Box::new(configured.clone()),
            Box::new(reloads.clone()),
            Box::new(last_reload_successful.clone()),
            Box::new(last_reload_success_time.clone()),
            Box::new(build_info),
            Box::new(mailbox_quota.clone()),
            Box::new(notifications.clone()),
            Box::new(notifier_up.clone()),
            Box::new(notifications_queued.clone()),
        ] {
            // `collect()` yields a label vector's family even before it has a series.
            for family in c.collect() {
                families.insert(family.name().to_string(), family.get_field_type());
            }
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            families,
            checks: RwLock::new(BTreeMap::new()),
            scheduler_lag,
            running,
            configured,
            reloads,
            last_reload_successful,
            last_reload_success_time,
            mailbox_quota,
            notifications,
            notifier_up,
            notifications_queued,
        }
    }

    /// Makes the notifier series those of `notifiers` (name, up): counters start at zero, the
    /// health of removed ones goes; counters of removed notifiers stay until restart, as counters
    /// should.
    pub fn sync_notifiers<'a>(&self, notifiers: impl IntoIterator<Item = (&'a str, bool)>) {
        self.notifier_up.reset();
        for (name, up) in notifiers {
            self.notifier_up
                .with_label_values(&[name])
                .set(i64::from(up));
            for result in ["sent", "error", "dropped"] {
                self.notifications.with_label_values(&[name, result]);
            }
        }
    }

    /// Records whether `check`'s alert fires.
    pub fn set_alert_firing(&self, check: &str, firing: bool) {
        if let Some(s) = self.series(check) {
            lock(&s).alert_firing = Some(firing);
        }
    }

    /// Makes the per-check series match `checks`: keeps the series of unchanged checks (their
    /// counters go on), starts fresh ones for new or relabelled checks, drops removed ones.
    pub fn sync_checks<'a>(&self, checks: impl IntoIterator<Item = ConfiguredCheck<'a>>) {
        let mut map = self.checks.write().unwrap_or_else(|e| e.into_inner());
        let mut next = BTreeMap::new();
        for ConfiguredCheck { id, delivers } in checks {
            let labels = base_labels(&id);
            let key: Arc<str> = Arc::from(id.name);
            let series = match map.remove(&key) {
                Some(existing) if lock(&existing).labels == labels => {
                    lock(&existing).delivers = delivers;
                    existing
                }
                _ => Arc::new(Mutex::new(CheckSeries {
                    labels,
                    delivers,
                    ..CheckSeries::default()
                })),
            };
            next.insert(key, series);
        }
        self.configured
            .set(i64::try_from(next.len()).unwrap_or(i64::MAX));
        *map = next;
    }

    fn series(&self, check: &str) -> Option<Arc<Mutex<CheckSeries>>> {
        let map = self.checks.read().unwrap_or_else(|e| e.into_inner());
        map.get(check).cloned()
    }

    /// Counts a run that was not started because the previous one was still going.
    pub fn record_skipped(&self, check: &str) {
        if let Some(s) = self.series(check) {
            lock(&s).skipped += 1;
        }
    }

    /// Records a finished run.
    pub fn record(&self, report: &RunReport) {
        if let Some(lag) = report.lag {
            self.scheduler_lag.observe(lag.as_secs_f64());
        }
        let Some(series) = self.series(&report.check) else {
            return;
        };
        let mut s = lock(&series);
        s.success = Some(report.result.passed());
        s.last_run = Some(unix_seconds(report.started_at));
        if let Some(i) = RunResult::ALL.iter().position(|r| *r == report.result) {
            s.runs[i] += 1;
        }
        if let Some(f) = &report.failure {
            *s.failures.entry(f.kind).or_default() += 1;
        }
        s.duration
            .observe(DURATION_BUCKETS, report.duration.as_secs_f64());
        for phase in &report.phases {
            if let Some(d) = phase.duration {
                s.phases
                    .entry(phase.name.clone())
                    .or_default()
                    .observe(DURATION_BUCKETS, d.as_secs_f64());
            }
        }
        for o in &report.observations {
            match o {
                Observation::HttpStatus(code) => s.http_status = Some(*code),
                Observation::BodyTruncated => s.body_truncated += 1,
                // A path per run: for alerts and people, never a label.
                Observation::Evidence(_) => {}
                Observation::Cert(c) => {
                    s.certs.insert(c.target.clone(), c.clone());
                }
                Observation::SpfLookups { domain, lookups } => {
                    s.spf.insert(domain.clone(), *lookups);
                }
                Observation::DeliveryLatency(d) => {
                    s.delivery_latency
                        .observe(DELIVERY_BUCKETS, d.as_secs_f64());
                    s.delivery_last = Some(unix_seconds(SystemTime::now()));
                }
                Observation::AutoReplyLatency(d) => {
                    s.auto_reply_latency
                        .observe(DELIVERY_BUCKETS, d.as_secs_f64());
                }
                Observation::ChatFirstResponse(d) => {
                    s.chat_first_response
                        .observe(DURATION_BUCKETS, d.as_secs_f64());
                }
                Observation::MailboxQuota { mailbox, ratio } => {
                    self.mailbox_quota
                        .with_label_values(&[mailbox.as_str()])
                        .set(*ratio);
                }
            }
        }
    }

    /// A run of `check` has submitted and now waits for its delivery.
    pub fn delivery_started(&self, check: &str) {
        if let Some(s) = self.series(check) {
            let mut s = lock(&s);
            s.delivers = true;
            s.deliveries_pending += 1;
        }
    }

    /// A run of `check` stopped waiting for its delivery (found or not).
    pub fn delivery_finished(&self, check: &str) {
        if let Some(s) = self.series(check) {
            let mut s = lock(&s);
            s.deliveries_pending = (s.deliveries_pending - 1).max(0);
        }
    }

    /// How a delivery that missed its deadline ended.
    pub fn record_late(&self, check: &str, late: LateDelivery) {
        if let Some(s) = self.series(check) {
            let mut s = lock(&s);
            match late {
                LateDelivery::Arrived(_) => s.deliveries_late += 1,
                LateDelivery::Lost => s.deliveries_lost += 1,
            }
        }
    }

    /// Records the result of a config (re)load.
    pub fn record_reload(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
        self.last_reload_successful.set(i64::from(ok));
        if ok {
            self.last_reload_success_time
                .set(unix_seconds(SystemTime::now()));
        }
    }

    /// Every metric family, ready to encode.
    pub fn gather(&self) -> Vec<MetricFamily> {
        let mut families = self.registry.gather();
        families.extend(self.check_families());
        families.extend(browser_families(crate::browser::pool_stats()));
        families
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode_text(&self) -> String {
        let mut buf = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode(&self.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    fn check_families(&self) -> Vec<MetricFamily> {
        let all: Vec<Arc<Mutex<CheckSeries>>> = {
            let map = self.checks.read().unwrap_or_else(|e| e.into_inner());
            map.values().cloned().collect()
        };
        let mut out: BTreeMap<&'static str, Vec<proto::Metric>> = BTreeMap::new();
        for series in all {
            // One check's lock at a time: a scrape never stalls the scheduler for long.
            let s = lock(&series);
            let mut push = |name: &'static str, extra: &[(&str, &str)], value: Value| {
                out.entry(name)
                    .or_default()
                    .push(metric(&s.labels, extra, value));
            };
            if let Some(ok) = s.success {
                push("check_success", &[], Value::Gauge(f64::from(u8::from(ok))));
            }
            if let Some(t) = s.last_run {
                push("check_last_run_timestamp_seconds", &[], Value::Gauge(t));
            }
            if let Some(firing) = s.alert_firing {
                push(
                    "alert_firing",
                    &[],
                    Value::Gauge(f64::from(u8::from(firing))),
                );
            }
            for (i, result) in RunResult::ALL.iter().enumerate() {
                push(
                    "check_runs_total",
                    &[("result", result.as_str())],
                    Value::Counter(s.runs[i] as f64),
                );
            }
            for (kind, n) in &s.failures {
                push(
                    "check_failures_total",
                    &[("reason", kind.as_str())],
                    Value::Counter(*n as f64),
                );
            }
            push(
                "check_skipped_runs_total",
                &[],
                Value::Counter(s.skipped as f64),
            );
            if s.duration.count > 0 {
                push(
                    "check_duration_seconds",
                    &[],
                    Value::Histogram(s.duration.to_proto(DURATION_BUCKETS)),
                );
            }
            for (phase, h) in &s.phases {
                push(
                    "check_phase_duration_seconds",
                    &[("phase", phase.as_str())],
                    Value::Histogram(h.to_proto(DURATION_BUCKETS)),
                );
            }
            if let Some(code) = s.http_status {
                push("http_status_code", &[], Value::Gauge(f64::from(code)));
                push(
                    "http_body_truncated_total",
                    &[],
                    Value::Counter(s.body_truncated as f64),
                );
            }
            for (target, c) in &s.certs {
                let t = [("target", target.as_str())];
                push(
                    "tls_cert_not_after_timestamp_seconds",
                    &t,
                    Value::Gauge(c.leaf_not_after as f64),
                );
                push(
                    "tls_chain_not_after_timestamp_seconds",
                    &t,
                    Value::Gauge(c.chain_not_after as f64),
                );
                push(
                    "tls_chain_verified",
                    &t,
                    Value::Gauge(f64::from(u8::from(c.chain_verified))),
                );
                push(
                    "tls_name_matches",
                    &t,
                    Value::Gauge(f64::from(u8::from(c.name_matches))),
                );
            }
            if s.delivers {
                push(
                    "delivery_latency_seconds",
                    &[],
                    Value::Histogram(s.delivery_latency.to_proto(DELIVERY_BUCKETS)),
                );
                if let Some(t) = s.delivery_last {
                    push("delivery_last_timestamp_seconds", &[], Value::Gauge(t));
                }
                push(
                    "deliveries_pending",
                    &[],
                    Value::Gauge(s.deliveries_pending as f64),
                );
                push(
                    "deliveries_late_total",
                    &[],
                    Value::Counter(s.deliveries_late as f64),
                );
                push(
                    "deliveries_lost_total",
                    &[],
                    Value::Counter(s.deliveries_lost as f64),
                );
                if s.auto_reply_latency.count > 0 {
                    push(
                        "auto_reply_latency_seconds",
                        &[],
                        Value::Histogram(s.auto_reply_latency.to_proto(DELIVERY_BUCKETS)),
                    );
                }
            }
            if s.chat_first_response.count > 0 {
                push(
                    "chat_first_response_seconds",
                    &[],
                    Value::Histogram(s.chat_first_response.to_proto(DURATION_BUCKETS)),
                );
            }
            for (domain, n) in &s.spf {
                push(
                    "dns_spf_lookups",
                    &[("domain", domain.as_str())],
                    Value::Gauge(f64::from(*n)),
                );
            }
        }
        CHECK_METRICS
            .iter()
            .filter_map(|(name, help, kind)| {
                let metrics = out.remove(name)?;
                let mut family = MetricFamily::default();
                family.set_name(format!("{PREFIX}{name}"));
                family.set_help((*help).to_string());
                family.set_field_type(*kind);
                family.set_metric(metrics);
                Some(family)
            })
            .collect()
    }
}

/// (name without prefix, help, type) of the browser pool's metrics.
pub const BROWSER_METRICS: &[(&str, &str, MetricType)] = &[
    (
        "browser_sessions_active",
        "Browser sessions open now.",
        MetricType::GAUGE,
    ),
    (
        "browser_sessions_waiting",
        "Browser runs waiting for a free session slot (browser.max_sessions).",
        MetricType::GAUGE,
    ),
    (
        "browser_driver_restarts_total",
        "chromedriver processes replaced because they died or stopped answering.",
        MetricType::COUNTER,
    ),
    (
        "browser_artifacts_written_total",
        "Failure evidence sets (screenshot and/or page source) written.",
        MetricType::COUNTER,
    ),
];

/// The browser pool's numbers are process-wide statics in `browser` (a reload replaces the pool
/// while old runs finish), so they are read at scrape time rather than registered.
fn browser_families(stats: crate::browser::PoolStats) -> Vec<MetricFamily> {
    let values = [
        Value::Gauge(stats.sessions_active as f64),
        Value::Gauge(stats.sessions_waiting as f64),
        Value::Counter(stats.driver_restarts as f64),
        Value::Counter(stats.artifacts_written as f64),
    ];
    BROWSER_METRICS
        .iter()
        .zip(values)
        .map(|((name, help, kind), value)| {
            let mut family = MetricFamily::default();
            family.set_name(format!("{PREFIX}{name}"));
            family.set_help((*help).to_string());
            family.set_field_type(*kind);
            family.set_metric(vec![metric(&[], &[], value)]);
            family
        })
        .collect()
}

enum Value {
    Gauge(f64),
    Counter(f64),
    Histogram(proto::Histogram),
}

fn metric(base: &[(String, String)], extra: &[(&str, &str)], value: Value) -> proto::Metric {
    let mut labels: Vec<proto::LabelPair> = base
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra.iter().copied())
        .map(|(k, v)| {
            let mut l = proto::LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect();
    labels.sort_by(|a, b| a.name().cmp(b.name()));
    let mut m = proto::Metric::default();
    m.set_label(labels);
    match value {
        Value::Gauge(v) => {
            let mut g = proto::Gauge::default();
            g.set_value(v);
            m.set_gauge(g);
        }
        Value::Counter(v) => {
            let mut c = proto::Counter::default();
            c.set_value(v);
            m.set_counter(c);
        }
        Value::Histogram(h) => m.set_histogram(h),
    }
    m
}

fn base_labels(check: &CheckIdentity<'_>) -> Vec<(String, String)> {
    let mut labels = vec![
        ("check".to_string(), check.name.to_string()),
        ("channel".to_string(), check.channel.as_str().to_string()),
        ("kind".to_string(), check.kind.as_str().to_string()),
    ];
    labels.extend(check.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Every metric family supportwatch can export, full name to type, whether or not it has series
/// yet: a label vector shows in [`Metrics::gather`] only once one of its label values is used, and
/// per-check families only once a check has run. Dashboards and alert rules are tested against it.
pub fn exported_names() -> BTreeMap<String, MetricType> {
    let mut names = Metrics::new().families;
    names.extend(
        CHECK_METRICS
            .iter()
            .chain(BROWSER_METRICS)
            .map(|(name, _, kind)| (format!("{PREFIX}{name}"), *kind)),
    );
    names
}
