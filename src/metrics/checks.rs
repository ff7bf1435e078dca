//! The per-check series store and its rendering.
//!
//! Per-check series are kept here rather than in `prometheus` vectors because each check has its
//! own set of static labels and a reload must drop the series of removed checks. The runner records
//! into this store; a scrape renders it into families (the custom collector, [`Metrics::gather`]).

use super::labels::{Value, base_labels, metric};
use super::{
    CHECK_METRICS, ConfiguredCheck, DELIVERY_BUCKETS, DURATION_BUCKETS, Metrics, PREFIX,
    unix_seconds,
};
use crate::outcome::{CertReport, FailureKind, LateDelivery, Observation, RunReport, RunResult};
use prometheus::proto::{self, MetricFamily};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

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
pub(super) struct CheckSeries {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
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

    pub(super) fn check_families(&self) -> Vec<MetricFamily> {
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
