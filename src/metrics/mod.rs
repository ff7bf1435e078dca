//! Every metric supportwatch exports, defined in this one module.
//!
//! Per-check series live in a custom store rather than in `prometheus` vectors: each check has its
//! own set of static labels (`shop`, `location`, ...), and a reload must drop the series of removed
//! checks. Scheduler self-metrics use plain `prometheus` types. Labels are bounded: check names,
//! closed enums and config values — never tokens, URLs or error texts.
//!
//! The module is split by what changes together: this file holds the names and help of every
//! family, the registered scheduler/config/notifier metrics and the [`Metrics`] handle; `checks`
//! the per-check series store (a reload syncs it) and its text rendering at scrape time; `browser` the
//! browser pool's families, read from process-wide statics; `labels` building one exported series.

mod browser;
mod checks;
mod labels;
pub mod server;

pub use browser::{BROWSER_METRICS, SIP_LINE_METRICS};
pub use checks::SkipReason;

use crate::outcome::CheckIdentity;
use browser::{browser_families, sip_line_families};
use checks::CheckSeries;
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use std::collections::BTreeMap;

/// The alert database's write operations: the bounded values of
/// `supportwatch_storage_errors_total{operation}`.
pub const STORAGE_OPERATIONS: [&str; 6] = [
    "record_runs",
    "save_alert_state",
    "update_outbox",
    "catch_up",
    "late_mail",
    "prune",
];
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Metric name prefix.
pub const PREFIX: &str = "supportwatch_";

/// Bucket bounds for run durations (per kind) and chat replies (per channel), seconds.
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
        "Duration of the check's last run, all attempts included.",
        MetricType::GAUGE,
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
        "Duration of each phase of the check's last attempt (phases from the kind's fixed set).",
        MetricType::GAUGE,
    ),
    (
        "check_last_run_timestamp_seconds",
        "Unix time the check's last run started.",
        MetricType::GAUGE,
    ),
    (
        "check_skipped_runs_total",
        "Due runs not started, by reason: overlap (the previous run still going), permits (still \
         waiting for a concurrency limit when the next run fell due).",
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
        "Time from submit until the token was seen at the far end (mailbox, webhook, ...), last \
         proven delivery.",
        MetricType::GAUGE,
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
        "Time from submit until the shop's automatic acknowledgement reached the sender, last one.",
        MetricType::GAUGE,
    ),
    (
        "chat_first_response_seconds",
        "Time from sending a chat check's first message until the bot's first reply, last run.",
        MetricType::GAUGE,
    ),
    (
        "phone_ring_seconds",
        "Time from a phone call's INVITE until the line rang (first 180/183), last run that rang.",
        MetricType::GAUGE,
    ),
    (
        "phone_answer_seconds",
        "Time from a phone call's INVITE until it was answered (2xx), last answered run.",
        MetricType::GAUGE,
    ),
    (
        "phone_audio_level_dbfs",
        "RMS level in dBFS (0 is full scale) of what the answered line played while listened to; -100 for silence or no audio. Last answered run.",
        MetricType::GAUGE,
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
    /// Checks in the loaded config (every shard's).
    pub configured: IntGauge,
    /// Checks this instance runs (its shard's, at its location).
    pub checks_owned: IntGauge,
    /// Always 1, labelled with the instance's shard and the number of shards.
    shard_info: IntGaugeVec,
    /// Labels added to every series (the instance's `location`), sorted by name.
    instance_labels: RwLock<Vec<(String, String)>>,
    /// The daemon's phone lines, read at scrape time (set once, by the daemon that owns them).
    lines: std::sync::OnceLock<Arc<crate::sip::line::Lines>>,
    /// Config reloads by result.
    pub reloads: IntCounterVec,
    /// 1 if the last reload succeeded.
    pub last_reload_successful: IntGauge,
    /// Unix time of the last successful (re)load.
    pub last_reload_success_time: Gauge,
    /// Storage quota usage per mailbox.
    pub mailbox_quota: GaugeVec,
    /// Late test mail deleted per mailbox (messages that arrived after their run gave up).
    pub mail_late_deleted: IntCounterVec,
    /// Tokens of late test mail forgotten per mailbox because nothing carrying them arrived.
    pub mail_late_expired: IntCounterVec,
    /// Tokens of late test mail remembered now.
    pub mail_late_remembered: IntGauge,
    /// Notifications by notifier and result (sent, error, dropped).
    pub notifications: IntCounterVec,
    /// 1 while a notifier's last attempt succeeded, 0 while it fails.
    pub notifier_up: IntGaugeVec,
    /// Notifications decided but not yet sent (grouping, retries, waiting for a fallback).
    pub notifications_queued: IntGauge,
    /// Failed writes of the alert database, by operation.
    pub storage_errors: IntCounterVec,
    /// 1 while the alert database takes writes, 0 while they fail.
    pub storage_healthy: IntGauge,
    /// Unix time of the last successful write of the alert database.
    pub storage_last_success: Gauge,
    /// Age of the oldest run that is due but not started, seconds (the scheduler watchdog's).
    pub scheduler_oldest_overdue: Gauge,
    /// 1 while the scheduler watchdog finds due runs not being started.
    pub scheduler_stalled: IntGauge,
    /// Why the scheduler counts as stalled, while it does (for `/healthz`).
    scheduler_stall: Mutex<Option<String>>,
    /// The web server's connections and refused webhooks.
    pub server: Arc<server::ServerMetrics>,
    /// Run durations per kind: the distribution lives here, bounded by the kinds, rather than in
    /// a histogram per check (per check, Prometheus keeps the last durations).
    run_duration: HistogramVec,
    /// Delivery latency per channel.
    delivery_latency: HistogramVec,
    /// Auto-reply latency per channel.
    auto_reply_latency: HistogramVec,
    /// Chat first-response time per channel.
    chat_first_response: HistogramVec,
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
        let configured = IntGauge::new(
            n("checks_configured"),
            "Checks in the loaded config, every shard's.",
        )
        .expect("static metric definition");
        let checks_owned = IntGauge::new(
            n("checks_owned"),
            "Checks this instance runs: those of its shard, at its location.",
        )
        .expect("static metric definition");
        let shard_info = IntGaugeVec::new(
            Opts::new(
                n("shard_info"),
                "Always 1; labelled with the instance's shard (0-based) and the number of shards \
                 (0 of 1 without --shard).",
            ),
            &["shard", "shards"],
        )
        .expect("static metric definition");
        shard_info.with_label_values(&["0", "1"]).set(1);
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
        let mail_late_deleted = IntCounterVec::new(
            Opts::new(
                n("mail_late_deleted_total"),
                "Test messages (and auto-replies quoting them) deleted from a mailbox after their \
                 run had given up on them: mail that arrived late, e.g. after an outage.",
            ),
            &["mailbox"],
        )
        .expect("static metric definition");
        let mail_late_expired = IntCounterVec::new(
            Opts::new(
                n("mail_late_expired_total"),
                "Tokens of test mail never found forgotten after a day: nothing carrying them \
                 reached the mailbox.",
            ),
            &["mailbox"],
        )
        .expect("static metric definition");
        let mail_late_remembered = IntGauge::new(
            n("mail_late_remembered"),
            "Tokens of test mail not found by its run, still watched for so that the mail is \
             deleted when it turns up.",
        )
        .expect("static metric definition");
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
        let storage_errors = IntCounterVec::new(
            Opts::new(
                n("storage_errors_total"),
                "Failed writes of the alert database by operation (record_runs, save_alert_state, \
                 update_outbox, catch_up, late_mail, prune); alerting goes on from memory meanwhile.",
            ),
            &["operation"],
        )
        .expect("static metric definition");
        for operation in STORAGE_OPERATIONS {
            storage_errors.with_label_values(&[operation]);
        }
        let storage_healthy = IntGauge::new(
            n("storage_healthy"),
            "1 while the alert database takes writes, 0 while writes fail and alert state and \
             queued notifications live only in memory.",
        )
        .expect("static metric definition");
        // The daemon does not start without its database: healthy until a write fails.
        storage_healthy.set(1);
        let storage_last_success = Gauge::new(
            n("storage_last_success_timestamp_seconds"),
            "Unix time of the last successful write of the alert database.",
        )
        .expect("static metric definition");
        let histogram = |name: &str, help: &str, label: &str, buckets: &[f64]| {
            HistogramVec::new(
                HistogramOpts::new(n(name), help).buckets(buckets.to_vec()),
                &[label],
            )
            .expect("static metric definition")
        };
        let run_duration = histogram(
            "run_duration_seconds",
            "Duration of check runs by kind, all attempts included.",
            "kind",
            DURATION_BUCKETS,
        );
        let delivery_latency = histogram(
            "channel_delivery_latency_seconds",
            "Time from submit until the token was seen at the far end, by channel.",
            "channel",
            DELIVERY_BUCKETS,
        );
        let auto_reply_latency = histogram(
            "channel_auto_reply_latency_seconds",
            "Time from submit until the shop's automatic acknowledgement arrived, by channel.",
            "channel",
            DELIVERY_BUCKETS,
        );
        let chat_first_response = histogram(
            "channel_chat_first_response_seconds",
            "Time from a chat check's first message until the bot's first reply, by channel.",
            "channel",
            DURATION_BUCKETS,
        );
        let scheduler_oldest_overdue = Gauge::new(
            n("scheduler_oldest_overdue_seconds"),
            "Time since the oldest run that is due but not started fell due (0 when none is).",
        )
        .expect("static metric definition");
        let scheduler_stalled = IntGauge::new(
            n("scheduler_stalled"),
            "1 while a check's run has been due for over 3 intervals (at least 1 minute) without \
             starting.",
        )
        .expect("static metric definition");

        let server = server::ServerMetrics::new();
        let mut families = BTreeMap::new();
        let collectors = [
            Box::new(run_duration.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(delivery_latency.clone()),
            Box::new(auto_reply_latency.clone()),
            Box::new(chat_first_response.clone()),
            Box::new(scheduler_lag.clone()),
            Box::new(running.clone()),
            Box::new(configured.clone()),
            Box::new(checks_owned.clone()),
            Box::new(shard_info.clone()),
            Box::new(reloads.clone()),
            Box::new(last_reload_successful.clone()),
            Box::new(last_reload_success_time.clone()),
            Box::new(build_info),
            Box::new(mailbox_quota.clone()),
            Box::new(mail_late_deleted.clone()),
            Box::new(mail_late_expired.clone()),
            Box::new(mail_late_remembered.clone()),
            Box::new(notifications.clone()),
            Box::new(notifier_up.clone()),
            Box::new(notifications_queued.clone()),
            Box::new(storage_errors.clone()),
            Box::new(storage_healthy.clone()),
            Box::new(storage_last_success.clone()),
            Box::new(scheduler_oldest_overdue.clone()),
            Box::new(scheduler_stalled.clone()),
        ];
        for c in collectors.into_iter().chain(server.collectors()) {
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
            checks_owned,
            shard_info,
            instance_labels: RwLock::new(Vec::new()),
            lines: std::sync::OnceLock::new(),
            reloads,
            last_reload_successful,
            last_reload_success_time,
            mailbox_quota,
            mail_late_deleted,
            mail_late_expired,
            mail_late_remembered,
            notifications,
            notifier_up,
            notifications_queued,
            storage_errors,
            storage_healthy,
            storage_last_success,
            scheduler_oldest_overdue,
            scheduler_stalled,
            scheduler_stall: Mutex::new(None),
            server: Arc::new(server),
            run_duration,
            delivery_latency,
            auto_reply_latency,
            chat_first_response,
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

    /// Records where the instance stands in its fleet: `supportwatch_shard_info` shows `shard`
    /// (index, count), and `labels` (the instance's `location`) go on every registered series.
    /// The per-check series carry the location among the checks' own labels.
    pub fn set_placement(&self, shard: (u32, u32), labels: Vec<(String, String)>) {
        self.shard_info.reset();
        self.shard_info
            .with_label_values(&[&shard.0.to_string(), &shard.1.to_string()])
            .set(1);
        let mut labels = labels;
        labels.sort();
        *self
            .instance_labels
            .write()
            .unwrap_or_else(|e| e.into_inner()) = labels;
    }

    /// Sets (or clears) the reason the scheduler counts as stalled.
    pub fn set_scheduler_stall(&self, reason: Option<String>) {
        self.scheduler_stalled.set(i64::from(reason.is_some()));
        *self
            .scheduler_stall
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = reason;
    }

    /// Why the scheduler counts as stalled, while it does.
    pub fn scheduler_stall(&self) -> Option<String> {
        self.scheduler_stall
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reports `lines` (their registration state and counters) in every scrape.
    pub fn report_lines(&self, lines: Arc<crate::sip::line::Lines>) {
        let _ = self.lines.set(lines);
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

    /// The registered and browser families, ready to encode. The per-check families are not
    /// among them: they are written straight into the exposition by [`Metrics::exposition`].
    pub fn gather(&self) -> Vec<MetricFamily> {
        let mut families = self.registry.gather();
        families.extend(browser_families(crate::browser::pool_stats()));
        if let Some(lines) = self.lines.get() {
            families.extend(sip_line_families(&lines.stats()));
        }
        let instance = self
            .instance_labels
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if !instance.is_empty() {
            for family in &mut families {
                for metric in family.mut_metric() {
                    let mut labels = metric.take_label();
                    for (name, value) in instance.iter() {
                        let mut pair = prometheus::proto::LabelPair::default();
                        pair.set_name(name.clone());
                        pair.set_value(value.clone());
                        labels.push(pair);
                    }
                    labels.sort_by(|a, b| a.name().cmp(b.name()));
                    metric.set_label(labels);
                }
            }
        }
        families
    }

    /// The Prometheus text exposition of every metric, as chunks to send one after another.
    ///
    /// The few registered and browser families go through the `prometheus` encoder into the first
    /// chunk; the per-check families, which grow with the checks, are written as text a chunk at a
    /// time while the body is sent, so a scrape of 10,000 checks holds one chunk, never the whole
    /// exposition and never a copy of it as objects.
    pub fn exposition(&self) -> impl Iterator<Item = String> + Send + 'static {
        let mut buf = Vec::with_capacity(checks::CHUNK_BYTES);
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode(&self.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        // The encoder writes only UTF-8 (names, escaped label values, numbers).
        let registered = String::from_utf8(buf).unwrap_or_default();
        std::iter::once(registered).chain(self.check_chunks())
    }

    /// The whole exposition as one string (for `check`, tests and small configs).
    pub fn encode_text(&self) -> String {
        self.exposition().collect()
    }
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
            .chain(SIP_LINE_METRICS)
            .map(|(name, _, kind)| (format!("{PREFIX}{name}"), *kind)),
    );
    names
}
