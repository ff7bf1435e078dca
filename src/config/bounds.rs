//! The ranges the numbers of a config must lie in, checked at load.
//!
//! serde checks that a number fits its Rust type; that is not the same as making sense. A
//! `max_concurrent` of 2^64-1 fits a `usize` but would make the scheduler's semaphore panic, a
//! `max_per_kind` of 0 would mean that kind never runs, a `failure_threshold` of 0 would fire on a
//! success. Every limit here is generous for real use and tight enough that nothing downstream
//! (timers, semaphores, `Instant` arithmetic, allocations) can overflow or starve. Each problem
//! names the field and the allowed range; the caller adds file, line and check.

use super::SchedulerConfig;
use crate::value::{ByteSize, Dur};
use std::fmt::Display;

/// The largest concurrency limit (`scheduler.max_concurrent`, `max_per_kind`, `max_per_host`,
/// `hosts`). Far above what 2 cores can run; far below what a semaphore refuses.
pub const MAX_CONCURRENCY_LIMIT: usize = 10_000;

/// The longest a check's `interval` may be.
const MAX_INTERVAL: Dur = Dur::secs(30 * 86_400);
/// The longest a single attempt, a step or a notifier send may take.
const MAX_ATTEMPT: Dur = Dur::secs(3_600);
/// The longest a delivery or a reply may be waited for.
const MAX_WAIT: Dur = Dur::secs(7 * 86_400);
/// The most attempts a check may retry.
pub(super) const MAX_RETRIES: u32 = 10;

/// Collects range problems as `field is VALUE; allowed MIN to MAX` messages.
#[derive(Default)]
pub(super) struct Ranges {
    pub(super) problems: Vec<String>,
}

impl Ranges {
    /// `value` must lie in `min..=max`.
    pub(super) fn number<T: PartialOrd + Display>(
        &mut self,
        field: &str,
        value: T,
        min: T,
        max: T,
    ) {
        if value < min || value > max {
            self.problems
                .push(format!("`{field}` is {value}; allowed {min} to {max}"));
        }
    }

    /// A set `value` must lie in `min..=max`.
    fn opt_number<T: PartialOrd + Display>(
        &mut self,
        field: &str,
        value: Option<T>,
        min: T,
        max: T,
    ) {
        if let Some(value) = value {
            self.number(field, value, min, max);
        }
    }

    /// A set duration must lie in `min..=max`.
    fn opt_duration(&mut self, field: &str, value: Option<Dur>, min: Dur, max: Dur) {
        self.opt_number(field, value, min, max);
    }

    fn size(&mut self, field: &str, value: ByteSize, min: ByteSize, max: ByteSize) {
        if value.0 < min.0 || value.0 > max.0 {
            self.problems.push(format!(
                "`{field}` is {} bytes; allowed {} to {} bytes",
                value.0, min.0, max.0
            ));
        }
    }
}

/// The `scheduler:` section.
pub(super) fn scheduler(s: &SchedulerConfig) -> Vec<String> {
    let mut r = Ranges::default();
    let max = MAX_CONCURRENCY_LIMIT;
    r.number("scheduler.max_concurrent", s.max_concurrent, 1, max);
    r.number("scheduler.max_per_host", s.max_per_host, 1, max);
    for (kind, n) in &s.max_per_kind {
        r.number(
            &format!("scheduler.max_per_kind.{}", kind.as_str()),
            *n,
            1,
            max,
        );
    }
    for (host, n) in &s.hosts {
        r.number(&format!("scheduler.hosts.{host}"), *n, 1, max);
    }
    r.number(
        "scheduler.shutdown_grace",
        s.shutdown_grace,
        Dur::secs(0),
        MAX_ATTEMPT,
    );
    r.problems
}

/// A check's `interval`, `timeout`, `retries` and `retry_delay`, defaults applied.
pub(super) fn timing(interval: Dur, timeout: Dur, retries: u32, retry_delay: Dur) -> Vec<String> {
    let mut r = Ranges::default();
    r.number("interval", interval, Dur::secs(1), MAX_INTERVAL);
    r.number("timeout", timeout, Dur::millis(1), MAX_ATTEMPT);
    r.number("retries", retries, 0, MAX_RETRIES);
    r.number("retry_delay", retry_delay, Dur::secs(0), MAX_ATTEMPT);
    r.problems
}

/// The numbers inside a check's kind-specific part.
pub(super) fn check_spec(spec: &super::CheckSpec) -> Vec<String> {
    use super::CheckSpec;
    let mut r = Ranges::default();
    let body_sizes = (ByteSize(1), ByteSize(1 << 30));
    let step = |r: &mut Ranges, d: Option<Dur>| {
        r.opt_duration("step_timeout", d, Dur::millis(1), MAX_ATTEMPT)
    };
    match spec {
        CheckSpec::Http(s) => {
            r.number("max_redirects", s.max_redirects, 0, 20);
            r.size("max_body", s.max_body, body_sizes.0, body_sizes.1);
            http_expect(&mut r, "expect", &s.expect);
        }
        CheckSpec::Form(s) | CheckSpec::Callback(s) => {
            r.number("max_redirects", s.max_redirects, 0, 20);
            r.size("max_body", s.max_body, body_sizes.0, body_sizes.1);
            http_expect(&mut r, "expect", &s.expect);
            if let Some(e) = &s.outside_hours {
                http_expect(&mut r, "outside_hours", e);
            }
            step(&mut r, s.step_timeout);
            deliver(&mut r, s.deliver.as_ref());
        }
        CheckSpec::Mail(s) => {
            r.opt_duration("min_interval", s.min_interval, Dur::secs(0), MAX_WAIT);
            deliver(&mut r, s.deliver.as_ref());
            if let Some(a) = &s.auto_reply {
                r.number("auto_reply.within", a.within, Dur::millis(1), MAX_WAIT);
            }
        }
        CheckSpec::Browser(s) => {
            step(&mut r, Some(s.step_timeout));
            deliver(&mut r, s.deliver.as_ref());
        }
        CheckSpec::Tls(s) => {
            // No certificate is valid for longer than a year or so.
            r.number(
                "warn_before",
                s.warn_before,
                Dur::secs(0),
                Dur::secs(365 * 86_400),
            );
        }
        CheckSpec::Dns(s) => {
            r.opt_number("expect.spf_max_lookups", s.expect.spf_max_lookups, 1, 100);
        }
        CheckSpec::Chat(s) => {
            step(&mut r, s.step_timeout);
            r.number("expect.within", s.expect.within, Dur::millis(1), MAX_WAIT);
            if let Some(e) = &s.outside_hours {
                r.number("outside_hours.within", e.within, Dur::millis(1), MAX_WAIT);
            }
            if let Some(p) = &s.poll {
                r.number("poll.interval", p.interval, Dur::millis(10), MAX_ATTEMPT);
            }
        }
        // `expect.status` (SIP codes) and `expect.min_level_dbfs` are checked by
        // `probe::phone::validate`.
        CheckSpec::Phone(s) => {
            r.opt_duration("listen", s.listen, Dur::millis(100), Dur::secs(300));
            r.opt_duration(
                "expect.answer_within",
                s.expect.answer_within,
                Dur::millis(100),
                Dur::secs(600),
            );
        }
    }
    r.problems
}

fn http_expect(r: &mut Ranges, at: &str, e: &crate::probe::http::HttpExpect) {
    r.opt_duration(
        &format!("{at}.max_latency"),
        e.max_latency,
        Dur::millis(1),
        MAX_ATTEMPT,
    );
}

fn deliver(r: &mut Ranges, d: Option<&crate::deliver::DeliverSpec>) {
    let Some(d) = d else { return };
    r.number("deliver.within", d.within, Dur::millis(1), MAX_WAIT);
    r.opt_duration("deliver.late_window", d.late_window, Dur::secs(0), MAX_WAIT);
    if let Some(p) = &d.http_poll {
        r.number(
            "deliver.http_poll.interval",
            p.interval,
            Dur::millis(10),
            MAX_ATTEMPT,
        );
    }
}

/// An `alerting:` section or a check's `alert:` block (`at` is the field prefix).
pub(super) fn alert_rules(
    at: &str,
    failure_threshold: Option<u32>,
    success_threshold: Option<u32>,
    repeat: Option<Dur>,
    window: Option<&crate::alert::WindowRule>,
) -> Vec<String> {
    let mut r = Ranges::default();
    r.opt_number(
        &format!("{at}failure_threshold"),
        failure_threshold,
        1,
        1000,
    );
    r.opt_number(
        &format!("{at}success_threshold"),
        success_threshold,
        1,
        1000,
    );
    r.opt_duration(&format!("{at}repeat"), repeat, Dur::secs(1), MAX_WAIT);
    if let Some(w) = window {
        r.number(&format!("{at}window.failures"), w.failures, 1, 1000);
        r.number(&format!("{at}window.in"), w.within, Dur::secs(1), MAX_WAIT);
    }
    r.problems
}

/// The rest of the `alerting:` section.
pub(super) fn alerting(a: &crate::alert::AlertingConfig) -> Vec<String> {
    let mut problems = alert_rules(
        "alerting.",
        a.failure_threshold,
        a.success_threshold,
        a.repeat,
        a.window.as_ref(),
    );
    let mut r = Ranges::default();
    r.opt_duration(
        "alerting.group_wait",
        a.group_wait,
        Dur::secs(0),
        MAX_ATTEMPT,
    );
    r.opt_number("alerting.attempts", a.attempts, 1, 100);
    problems.append(&mut r.problems);
    problems
}

/// The `storage:` section.
pub(super) fn storage(s: &crate::alert::StorageConfig) -> Vec<String> {
    let mut r = Ranges::default();
    r.number("storage.keep_runs", s.keep_runs, 1, 1_000_000);
    // Mail deferred during an outage is delivered hours later: less than a day would leave it.
    r.number(
        "storage.late_mail_for",
        s.late_mail_for,
        Dur::secs(86_400),
        MAX_INTERVAL,
    );
    // Under an hour a run would be pruned before its hour's roll-up is complete to compare.
    r.number(
        "storage.runs_for",
        s.runs_for,
        Dur::secs(3600),
        Dur::secs(400 * 86_400),
    );
    // The owner's view promises 90 days of history.
    r.number(
        "storage.rollups_for",
        s.rollups_for,
        Dur::secs(90 * 86_400),
        Dur::secs(3650 * 86_400),
    );
    r.problems
}

/// One notifier.
pub(super) fn notifier(n: &crate::notify::NotifierSpec) -> Vec<String> {
    let mut r = Ranges::default();
    r.opt_duration("timeout", n.timeout, Dur::millis(1), MAX_ATTEMPT);
    use crate::notify::ServiceSpec;
    match &n.service {
        ServiceSpec::Alertmanager(a) => {
            r.opt_duration("ends_after", a.ends_after, Dur::secs(60), MAX_INTERVAL);
        }
        ServiceSpec::Telegram(_)
        | ServiceSpec::Email(_)
        | ServiceSpec::Webhook(_)
        | ServiceSpec::Slack(_) => {}
    }
    r.problems
}

/// One mailbox.
pub(super) fn mailbox(m: &crate::mailbox::MailboxSpec) -> Vec<String> {
    let mut r = Ranges::default();
    r.number(
        "poll_interval",
        m.poll_interval,
        Dur::millis(100),
        MAX_ATTEMPT,
    );
    r.size("max_message", m.max_message, ByteSize(1), ByteSize(1 << 30));
    r.problems
}

/// The `browser:` section.
pub(super) fn browser(b: &crate::browser::BrowserConfig) -> Vec<String> {
    let mut r = Ranges::default();
    r.number("browser.max_sessions", b.max_sessions, 1, 64);
    r.number("browser.artifacts.keep", b.artifacts.keep, 0, 100_000);
    r.problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Kind;

    #[test]
    fn scheduler_limits_outside_their_range_are_named_with_the_range() {
        // Not every field is named, so that a new scheduler field does not break this test.
        let s = SchedulerConfig {
            max_concurrent: usize::MAX,
            max_per_kind: [(Kind::Http, 0)].into(),
            max_per_host: 0,
            hosts: [("shop.example".to_string(), 10_001)].into(),
            ..SchedulerConfig::default()
        };
        let problems = scheduler(&s);
        assert_eq!(
            problems,
            [
                "`scheduler.max_concurrent` is 18446744073709551615; allowed 1 to 10000",
                "`scheduler.max_per_host` is 0; allowed 1 to 10000",
                "`scheduler.max_per_kind.http` is 0; allowed 1 to 10000",
                "`scheduler.hosts.shop.example` is 10001; allowed 1 to 10000",
            ]
        );
        let s = SchedulerConfig {
            shutdown_grace: Dur::secs(7200),
            ..SchedulerConfig::default()
        };
        assert_eq!(
            scheduler(&s),
            ["`scheduler.shutdown_grace` is 2h; allowed 0s to 1h"]
        );
        assert!(scheduler(&SchedulerConfig::default()).is_empty());
    }

    #[test]
    fn late_mail_is_remembered_between_a_day_and_a_month() {
        let storage = |secs| crate::alert::StorageConfig {
            late_mail_for: Dur::secs(secs),
            ..Default::default()
        };
        assert!(super::storage(&storage(86_400)).is_empty());
        assert!(super::storage(&storage(30 * 86_400)).is_empty());
        assert_eq!(
            super::storage(&storage(3_600)),
            ["`storage.late_mail_for` is 1h; allowed 1d to 30d"]
        );
        assert_eq!(
            super::storage(&storage(31 * 86_400)),
            ["`storage.late_mail_for` is 31d; allowed 1d to 30d"]
        );
    }

    #[test]
    fn timing_limits() {
        assert!(timing(Dur::secs(60), Dur::secs(30), 1, Dur::secs(2)).is_empty());
        assert_eq!(
            timing(Dur::secs(31 * 86_400), Dur::secs(0), 11, Dur::secs(3601)),
            [
                "`interval` is 31d; allowed 1s to 30d",
                "`timeout` is 0s; allowed 1ms to 1h",
                "`retries` is 11; allowed 0 to 10",
                "`retry_delay` is 3601s; allowed 0s to 1h",
            ]
        );
    }

    #[test]
    fn notifier_limits() {
        let spec: crate::notify::NotifierSpec = serde_saphyr::from_str(
            "kind: alertmanager\nurl: http://127.0.0.1:9093\ntimeout: 2h\nends_after: 10s\n",
        )
        .unwrap();
        assert_eq!(
            notifier(&spec),
            [
                "`timeout` is 2h; allowed 1ms to 1h",
                "`ends_after` is 10s; allowed 1m to 30d",
            ]
        );
    }

    #[test]
    fn alert_rule_limits() {
        assert_eq!(
            alert_rules("alert.", Some(0), Some(1001), Some(Dur::secs(0)), None),
            [
                "`alert.failure_threshold` is 0; allowed 1 to 1000",
                "`alert.success_threshold` is 1001; allowed 1 to 1000",
                "`alert.repeat` is 0s; allowed 1s to 7d",
            ]
        );
    }
}
