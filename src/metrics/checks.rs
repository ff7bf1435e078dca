//! The per-check series store and its rendering.
//!
//! Per-check series are kept here rather than in `prometheus` vectors because each check has its
//! own set of static labels and a reload must drop the series of removed checks. The runner records
//! into this store; a scrape writes it as text straight into the exposition.
//!
//! Per check there are only last-run gauges and a few counters (blackbox_exporter's shape), so a
//! plain passing `http` check is about a dozen series: distributions over time are Prometheus's
//! job (`quantile_over_time`) or live in the bounded per-kind and per-channel histograms.

use super::labels::{base_labels, write_header, write_sample};
use super::{CHECK_METRICS, ConfiguredCheck, Metrics, PREFIX, unix_seconds};
use crate::outcome::{CertReport, FailureKind, LateDelivery, Observation, RunReport, RunResult};
use prometheus::proto::MetricType;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Phase names the probes use. A phase outside this set is exported as `other`, and a browser
/// step (`3_click`) as `steps`, so a check's series never depend on what a step is called or how
/// many there are.
const PHASES: &[&str] = &[
    "answer",
    "artifacts",
    "auth",
    "auto_reply",
    "body",
    "connect",
    "deliver",
    "dmarc",
    "hangup",
    "load",
    "line",
    "listen",
    "options",
    "parse",
    "poll",
    "queue",
    "reply",
    "request",
    "resolve",
    "ringing",
    "send",
    "session",
    "spf",
    "starttls",
    "submit",
    "tls",
];

/// The bounded `phase` label of a phase name. A phase of one of several targets
/// (`connect@mail.example.ru:587`) counts as its phase.
fn phase_label(name: &str) -> &'static str {
    let name = name.split_once('@').map_or(name, |(phase, _)| phase);
    if let Some(known) = PHASES.iter().find(|p| **p == name) {
        return known;
    }
    match name.split_once('_') {
        Some((n, _)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => "steps",
        _ => "other",
    }
}

#[derive(Default)]
pub(super) struct CheckSeries {
    /// Sorted label pairs every series of the check carries.
    labels: Vec<(String, String)>,
    success: Option<bool>,
    last_run: Option<f64>,
    runs: [u64; RunResult::ALL.len()],
    /// Only reasons that occurred: a passing check has no failure series.
    failures: BTreeMap<FailureKind, u64>,
    /// By [`SkipReason`], in [`SkipReason::ALL`] order.
    skipped: [u64; SkipReason::ALL.len()],
    /// The last run's duration, seconds.
    duration: Option<f64>,
    /// The last attempt's phases by bounded label, seconds (phases of one label are summed).
    phases: BTreeMap<&'static str, f64>,
    http_status: Option<u16>,
    body_truncated: u64,
    certs: BTreeMap<String, CertReport>,
    spf: BTreeMap<String, u32>,
    /// Whether the check has a delivery stage (its delivery series are exported from zero).
    delivers: bool,
    /// The last proven delivery's latency, seconds.
    delivery_latency: Option<f64>,
    delivery_last: Option<f64>,
    deliveries_pending: i64,
    deliveries_late: u64,
    deliveries_lost: u64,
    auto_reply_latency: Option<f64>,
    chat_first_response: Option<f64>,
    phone_ring: Option<f64>,
    phone_answer: Option<f64>,
    phone_audio_level: Option<f64>,
    /// Whether the check's alert fires; `None` until the alert engine has said.
    alert_firing: Option<bool>,
}

/// Why a due run was not started (the `reason` of `check_skipped_runs_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The check's previous run was still in progress.
    Overlap = 0,
    /// The run was still waiting for a concurrency permit (endpoint, host, kind or global limit)
    /// when the next run fell due.
    Permits = 1,
}

impl SkipReason {
    /// Every reason, in label order.
    pub const ALL: [SkipReason; 2] = [SkipReason::Overlap, SkipReason::Permits];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Overlap => "overlap",
            SkipReason::Permits => "permits",
        }
    }
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
        let count = i64::try_from(next.len()).unwrap_or(i64::MAX);
        self.configured.set(count);
        self.checks_owned.set(count);
        *map = next;
    }

    fn series(&self, check: &str) -> Option<Arc<Mutex<CheckSeries>>> {
        let map = self.checks.read().unwrap_or_else(|e| e.into_inner());
        map.get(check).cloned()
    }

    /// Counts a due run that was not started, and why.
    pub fn record_skipped(&self, check: &str, reason: SkipReason) {
        if let Some(s) = self.series(check) {
            lock(&s).skipped[reason as usize] += 1;
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
        let duration = report.duration.as_secs_f64();
        s.duration = Some(duration);
        self.run_duration
            .with_label_values(&[report.kind])
            .observe(duration);
        // Last attempt only: a phase the last attempt did not reach is not exported.
        s.phases.clear();
        for phase in &report.phases {
            if let Some(d) = phase.duration {
                *s.phases.entry(phase_label(&phase.name)).or_default() += d.as_secs_f64();
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
                    s.delivery_latency = Some(d.as_secs_f64());
                    s.delivery_last = Some(unix_seconds(SystemTime::now()));
                    self.delivery_latency
                        .with_label_values(&[report.channel])
                        .observe(d.as_secs_f64());
                }
                Observation::AutoReplyLatency(d) => {
                    s.auto_reply_latency = Some(d.as_secs_f64());
                    self.auto_reply_latency
                        .with_label_values(&[report.channel])
                        .observe(d.as_secs_f64());
                }
                Observation::ChatFirstResponse(d) => {
                    s.chat_first_response = Some(d.as_secs_f64());
                    self.chat_first_response
                        .with_label_values(&[report.channel])
                        .observe(d.as_secs_f64());
                }
                Observation::PhoneRing(d) => s.phone_ring = Some(d.as_secs_f64()),
                Observation::PhoneAnswer(d) => s.phone_answer = Some(d.as_secs_f64()),
                Observation::PhoneAudioLevel(level) => s.phone_audio_level = Some(*level),
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
                LateDelivery::Lost | LateDelivery::Bounced => s.deliveries_lost += 1,
            }
        }
    }

    /// Every per-check series as text, in chunks of about [`CHUNK_BYTES`].
    ///
    /// The exposition needs all series of a family together, so the checks are walked once per
    /// family; each check's lock is held only while its lines of that family are written, so a
    /// scrape never stalls the runs for long. Only one chunk exists at a time: memory for a scrape
    /// does not grow with the number of checks beyond a pointer per check. A scrape is not a
    /// snapshot: a run finishing mid-scrape may show in one family and not yet in an earlier one,
    /// as with any Prometheus collector.
    pub(super) fn check_chunks(&self) -> CheckChunks {
        let series = {
            let map = self.checks.read().unwrap_or_else(|e| e.into_inner());
            map.values().cloned().collect()
        };
        CheckChunks {
            series,
            family: 0,
            next: 0,
            header_written: false,
        }
    }
}

/// About how many bytes of exposition one chunk of a `/metrics` body holds.
pub(super) const CHUNK_BYTES: usize = 64 * 1024;

/// The per-check families, written a chunk at a time (see [`Metrics::check_chunks`]).
pub(super) struct CheckChunks {
    /// The checks when the scrape began; a check removed by a reload mid-scrape still shows.
    series: Vec<Arc<Mutex<CheckSeries>>>,
    /// Index into [`CHECK_METRICS`] of the family being written.
    family: usize,
    /// The next check to write in that family.
    next: usize,
    /// Whether the family's `# HELP`/`# TYPE` lines are written (only once it has a series).
    header_written: bool,
}

impl Iterator for CheckChunks {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let mut out = String::new();
        let mut name = String::new();
        while let Some((family, help, kind)) = CHECK_METRICS.get(self.family) {
            name.clear();
            name.push_str(PREFIX);
            name.push_str(family);
            while let Some(series) = self.series.get(self.next) {
                self.next += 1;
                let s = lock(series);
                let header_written = &mut self.header_written;
                s.samples(family, &mut |extra, value| {
                    if !*header_written {
                        *header_written = true;
                        write_header(&mut out, &name, help, type_name(*kind));
                    }
                    write_sample(&mut out, &name, &s.labels, extra, value);
                });
                if out.len() >= CHUNK_BYTES {
                    return Some(out);
                }
            }
            self.family += 1;
            self.next = 0;
            self.header_written = false;
        }
        (!out.is_empty()).then_some(out)
    }
}

fn type_name(kind: MetricType) -> &'static str {
    match kind {
        MetricType::COUNTER => "counter",
        MetricType::GAUGE => "gauge",
        MetricType::HISTOGRAM => "histogram",
        MetricType::SUMMARY => "summary",
        MetricType::UNTYPED => "untyped",
    }
}

/// Receives one series: its labels beyond the check's own (sorted by name) and its value.
type Emit<'e> = dyn FnMut(&[(&str, &str)], f64) + 'e;

fn bool_value(b: bool) -> f64 {
    f64::from(u8::from(b))
}

impl CheckSeries {
    /// Hands each series of `family` (a name from [`CHECK_METRICS`]) to `emit`.
    fn samples(&self, family: &str, emit: &mut Emit<'_>) {
        match family {
            "check_success" => {
                if let Some(ok) = self.success {
                    emit(&[], bool_value(ok));
                }
            }
            "check_duration_seconds" => {
                if let Some(d) = self.duration {
                    emit(&[], d);
                }
            }
            // All four results from zero, unlike failure reasons: four series keep `increase()`
            // exact from a check's first failure or timeout and give ratios a denominator.
            "check_runs_total" => {
                for (result, n) in RunResult::ALL.iter().zip(self.runs) {
                    emit(&[("result", result.as_str())], n as f64);
                }
            }
            "check_failures_total" => {
                for (kind, n) in &self.failures {
                    emit(&[("reason", kind.as_str())], *n as f64);
                }
            }
            "check_phase_duration_seconds" => {
                for (phase, d) in &self.phases {
                    emit(&[("phase", phase)], *d);
                }
            }
            "check_last_run_timestamp_seconds" => {
                if let Some(t) = self.last_run {
                    emit(&[], t);
                }
            }
            // Both reasons from zero, like results: a skip shows in `increase()` from the first.
            "check_skipped_runs_total" => {
                for (reason, n) in SkipReason::ALL.iter().zip(self.skipped) {
                    emit(&[("reason", reason.as_str())], n as f64);
                }
            }
            "http_status_code" => {
                if let Some(code) = self.http_status {
                    emit(&[], f64::from(code));
                }
            }
            "http_body_truncated_total" if self.http_status.is_some() => {
                emit(&[], self.body_truncated as f64);
            }
            "tls_cert_not_after_timestamp_seconds" => {
                for (target, c) in &self.certs {
                    emit(&[("target", target)], c.leaf_not_after as f64);
                }
            }
            "tls_chain_not_after_timestamp_seconds" => {
                for (target, c) in &self.certs {
                    emit(&[("target", target)], c.chain_not_after as f64);
                }
            }
            "tls_chain_verified" => {
                for (target, c) in &self.certs {
                    emit(&[("target", target)], bool_value(c.chain_verified));
                }
            }
            "tls_name_matches" => {
                for (target, c) in &self.certs {
                    emit(&[("target", target)], bool_value(c.name_matches));
                }
            }
            "delivery_latency_seconds" => {
                if let Some(d) = self.delivery_latency {
                    emit(&[], d);
                }
            }
            "delivery_last_timestamp_seconds" => {
                if let Some(t) = self.delivery_last {
                    emit(&[], t);
                }
            }
            "deliveries_pending" if self.delivers => emit(&[], self.deliveries_pending as f64),
            "deliveries_late_total" if self.delivers => emit(&[], self.deliveries_late as f64),
            "deliveries_lost_total" if self.delivers => emit(&[], self.deliveries_lost as f64),
            "auto_reply_latency_seconds" => {
                if let Some(d) = self.auto_reply_latency {
                    emit(&[], d);
                }
            }
            "chat_first_response_seconds" => {
                if let Some(d) = self.chat_first_response {
                    emit(&[], d);
                }
            }
            "phone_ring_seconds" => {
                if let Some(d) = self.phone_ring {
                    emit(&[], d);
                }
            }
            "phone_answer_seconds" => {
                if let Some(d) = self.phone_answer {
                    emit(&[], d);
                }
            }
            "phone_audio_level_dbfs" => {
                if let Some(level) = self.phone_audio_level {
                    emit(&[], level);
                }
            }
            "alert_firing" => {
                if let Some(firing) = self.alert_firing {
                    emit(&[], bool_value(firing));
                }
            }
            "dns_spf_lookups" => {
                for (domain, n) in &self.spf {
                    emit(&[("domain", domain)], f64::from(*n));
                }
            }
            // Delivery families of a check without a delivery stage, or a name not in
            // `CHECK_METRICS` (the unit tests render every family).
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{CheckIdentity, Failure, RunContext};
    use crate::value::{Channel, Kind};
    use std::collections::{BTreeSet, HashSet};
    use std::time::Duration;

    fn metrics_with(name: &str, kind: Kind, channel: Channel, delivers: bool) -> Metrics {
        let metrics = Metrics::new();
        let labels = Arc::new(BTreeMap::from([("shop".to_string(), "vesna".to_string())]));
        metrics.sync_checks([ConfiguredCheck {
            id: CheckIdentity {
                name,
                kind,
                channel,
                labels: &labels,
            },
            delivers,
        }]);
        metrics
    }

    fn report(name: &str, result: RunResult, phases: &[(&str, u64)]) -> RunReport {
        let ctx = RunContext::new(Arc::from(name), "t".to_string());
        for (phase, ms) in phases {
            ctx.record(*phase, Duration::from_millis(*ms));
        }
        RunReport {
            check: Arc::from(name),
            kind: "http",
            channel: "website",
            run_id: 1,
            token: "t".to_string(),
            started_at: SystemTime::now(),
            lag: Some(Duration::from_millis(3)),
            duration: Duration::from_millis(120),
            attempts: 1,
            result,
            phases: ctx.take_phases(),
            failure: None,
            observations: vec![Observation::HttpStatus(200)],
            details: Vec::new(),
        }
    }

    /// The lines of `check`'s series in the exposition.
    fn series_of<'a>(text: &'a str, check: &str) -> Vec<&'a str> {
        let label = format!("check=\"{check}\"");
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&label))
            .collect()
    }

    /// blackbox_exporter exports 18 series per HTTP probe; a per-check histogram alone is 16.
    #[test]
    fn a_plain_passing_http_check_exports_at_most_15_series() {
        let metrics = metrics_with("home", Kind::Http, Channel::Website, false);
        for _ in 0..3 {
            metrics.record(&report(
                "home",
                RunResult::Success,
                &[("request", 80), ("body", 40)],
            ));
        }
        metrics.set_alert_firing("home", false);
        let text = metrics.encode_text();
        let series = series_of(&text, "home");
        assert!(
            series.len() <= 15,
            "{} series:\n{}",
            series.len(),
            series.join("\n")
        );
        assert!(
            series.contains(&r#"supportwatch_check_phase_duration_seconds{channel="website",check="home",kind="http",phase="request",shop="vesna"} 0.08"#),
            "{text}"
        );
        assert!(
            series.contains(&r#"supportwatch_check_duration_seconds{channel="website",check="home",kind="http",shop="vesna"} 0.12"#),
            "{text}"
        );
        assert!(
            series.contains(&r#"supportwatch_check_runs_total{channel="website",check="home",kind="http",result="success",shop="vesna"} 3"#),
            "{text}"
        );
        assert!(!text.contains("check_failures_total{"), "{text}");
        // The distribution is kept per kind, not per check.
        assert!(
            text.contains(r#"supportwatch_run_duration_seconds_count{kind="http"} 3"#),
            "{text}"
        );
    }

    /// A scrape's memory is one chunk, however many checks there are: the body of 3,000 checks is
    /// many chunks, none much over [`CHUNK_BYTES`], and together they are the whole exposition
    /// with each family's series together under one header.
    #[test]
    fn the_exposition_is_written_in_bounded_chunks() {
        let metrics = Metrics::new();
        let names: Vec<String> = (0..3000).map(|i| format!("check-{i}")).collect();
        let labels = Arc::new(BTreeMap::from([("shop".to_string(), "vesna".to_string())]));
        metrics.sync_checks(names.iter().map(|name| ConfiguredCheck {
            id: CheckIdentity {
                name,
                kind: Kind::Http,
                channel: Channel::Website,
                labels: &labels,
            },
            delivers: false,
        }));
        for name in &names {
            metrics.record(&report(name, RunResult::Success, &[("request", 80)]));
        }
        let chunks: Vec<String> = metrics.exposition().collect();
        let longest_line = chunks
            .iter()
            .flat_map(|c| c.lines())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(chunks.len() > 20, "{} chunks", chunks.len());
        for chunk in &chunks {
            assert!(
                chunk.len() < CHUNK_BYTES + 2 * longest_line + 512,
                "a chunk of {} bytes",
                chunk.len()
            );
            assert!(chunk.ends_with('\n'), "a chunk ends mid-line");
        }
        let text: String = chunks.concat();
        assert_eq!(text, metrics.encode_text());
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains("check=\"check-"))
            .count();
        assert_eq!(samples, names.len() * series_of(&text, "check-0").len());
        for (family, _, _) in CHECK_METRICS {
            let header = format!("# TYPE {PREFIX}{family} ");
            assert!(
                text.matches(&header).count() <= 1,
                "{family} has two headers"
            );
        }
    }

    #[test]
    fn a_failure_reason_is_exported_once_it_occurs() {
        let metrics = metrics_with("home", Kind::Http, Channel::Website, false);
        let mut failed = report("home", RunResult::Failure, &[("request", 5)]);
        failed.failure = Some(Failure {
            kind: FailureKind::Status,
            message: "500".to_string(),
        });
        metrics.record(&failed);
        let text = metrics.encode_text();
        assert!(
            text.contains(r#"supportwatch_check_failures_total{channel="website",check="home",kind="http",reason="status",shop="vesna"} 1"#),
            "{text}"
        );
        assert_eq!(
            text.matches("supportwatch_check_failures_total{").count(),
            1
        );
    }

    #[test]
    fn phase_labels_come_from_a_fixed_set() {
        let metrics = metrics_with("js-form", Kind::Http, Channel::Website, false);
        let steps: Vec<(String, u64)> = (1..=40).map(|i| (format!("{i}_click"), 1)).collect();
        let mut phases: Vec<(&str, u64)> = steps.iter().map(|(n, ms)| (n.as_str(), *ms)).collect();
        phases.push(("session", 2));
        phases.push(("made up by someone", 3));
        phases.push(("tls@mail.example.ru:465", 4));
        metrics.record(&report("js-form", RunResult::Success, &phases));
        let text = metrics.encode_text();
        let phases: BTreeSet<&str> = series_of(&text, "js-form")
            .into_iter()
            .filter(|l| l.starts_with("supportwatch_check_phase_duration_seconds{"))
            .filter_map(|l| l.split("phase=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(phases, BTreeSet::from(["other", "session", "steps", "tls"]));
        assert!(
            text.contains(r#"phase="steps",shop="vesna"} 0.04"#),
            "{text}"
        );
    }

    #[test]
    fn phone_phases_keep_their_names() {
        // The round trip of a phone check's OPTIONS is its `options` phase (and `auth` when the
        // server challenged): no series of its own.
        for phase in ["connect", "options", "auth"] {
            assert_eq!(phase_label(phase), phase);
        }
    }

    /// Every per-check family of a check with every observation: rendered, with the declared type,
    /// each family's HELP and TYPE once and its series together (what `promtool check metrics`
    /// and Prometheus's parser require), label values escaped.
    #[test]
    fn the_exposition_is_well_formed() {
        let metrics = Metrics::new();
        let labels = Arc::new(BTreeMap::from([(
            "shop".to_string(),
            "say \"hi\"\\\n".to_string(),
        )]));
        let names = ["a", "b"];
        metrics.sync_checks(names.iter().map(|name| ConfiguredCheck {
            id: CheckIdentity {
                name,
                kind: Kind::Http,
                channel: Channel::Email,
                labels: &labels,
            },
            delivers: true,
        }));
        for name in names {
            let mut r = report(name, RunResult::Failure, &[("connect", 1), ("tls", 2)]);
            r.failure = Some(Failure {
                kind: FailureKind::Tls,
                message: "expired".to_string(),
            });
            r.observations = vec![
                Observation::HttpStatus(200),
                Observation::BodyTruncated,
                Observation::Evidence("/tmp/x".into()),
                Observation::Cert(CertReport {
                    target: "shop.example:443".to_string(),
                    leaf_not_after: 1_900_000_000,
                    chain_not_after: 1_800_000_000,
                    chain_verified: true,
                    name_matches: true,
                }),
                Observation::SpfLookups {
                    domain: "shop.example".to_string(),
                    lookups: 4,
                },
                Observation::DeliveryLatency(Duration::from_secs(7)),
                Observation::AutoReplyLatency(Duration::from_secs(9)),
                Observation::ChatFirstResponse(Duration::from_millis(700)),
                Observation::PhoneRing(Duration::from_millis(200)),
                Observation::PhoneAnswer(Duration::from_millis(4200)),
                Observation::PhoneAudioLevel(-18.5),
            ];
            metrics.record(&r);
            metrics.record_skipped(name, SkipReason::Overlap);
            metrics.delivery_started(name);
            metrics.set_alert_firing(name, true);
        }
        let text = metrics.encode_text();
        let exported = crate::metrics::exported_names();
        let mut seen_help = HashSet::new();
        let mut seen_type = HashSet::new();
        let mut done = HashSet::new();
        let mut current: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default().to_string();
                assert!(seen_help.insert(name.clone()), "HELP of {name} twice");
                if let Some(previous) = current.replace(name) {
                    done.insert(previous);
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_default();
                assert!(seen_type.insert(name.to_string()), "TYPE of {name} twice");
                assert_eq!(Some(name), current.as_deref(), "TYPE without its HELP");
                let declared = exported.get(name).map(|k| type_name(*k));
                assert_eq!(declared, Some(kind), "{name}");
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let family = current.as_deref().unwrap_or_default();
            let of_family = name == family
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(family));
            assert!(of_family, "{name} outside its family (in {family})");
            assert!(!done.contains(family), "{family} is not contiguous");
            let value = line.rsplit(' ').next().unwrap_or_default();
            assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
        }
        for (name, _, _) in CHECK_METRICS {
            let full = format!("{PREFIX}{name}");
            assert!(seen_type.contains(&full), "{full} is never rendered");
        }
        assert!(
            text.contains(r#"shop="say \"hi\"\\\n"}"#),
            "label values are escaped: {text}"
        );
    }
}
