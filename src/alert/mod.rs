//! Alerting: from run results to messages people act on.
//!
//! Every finished run goes through a per-check state machine ([`engine`]) that decides when an
//! alert fires, reminds and resolves. Its decisions are written, together with the new state, to
//! SQLite in one transaction ([`store`]): a restart never forgets an alert (a message whose send
//! was in flight at shutdown is sent again: at least once, never lost).
//!
//! A state is written only when it changed. A run that changes nothing but the history is not
//! written on its own: such rows wait for at most 100 ms or 500 runs, whichever comes first, and
//! go out with the next state write or at stop. A crash can lose that much history (at most
//! 100 ms' worth, never more than 500 rows), never a state or a message. The
//! [`dispatch`]er then groups what is due per shop and notifier, sends it, retries with backoff,
//! and hands it to the route's fallback when a notifier keeps failing. [`service`] ties these to
//! the scheduler and to config reloads.

pub mod digest;
pub mod dispatch;
pub mod engine;
pub mod history;
pub mod late_mail;
pub mod maintenance;
pub mod routes;
pub mod service;
pub mod store;

use crate::notify::Language;
use crate::outcome::CheckIdentity;
use crate::value::{Dur, Text};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use maintenance::Maintenance;
pub use routes::{Route, Target};

/// The `alerting:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Consecutive failed runs that fire an alert (default 2).
    pub failure_threshold: Option<u32>,
    /// Consecutive passed runs that resolve it (default 1).
    pub success_threshold: Option<u32>,
    /// Send a message when an alert resolves (default true).
    pub send_on_resolved: Option<bool>,
    /// Remind while an alert keeps firing, e.g. `4h` (default: never).
    pub repeat: Option<Dur>,
    /// Also fire when this many runs failed within a time window, passes in between or not.
    pub window: Option<WindowRule>,
    /// Times when results are recorded but nobody is notified.
    #[serde(default)]
    pub maintenance: Vec<Maintenance>,
    /// How long the first alert of a shop waits for others to join its message (default 30s).
    pub group_wait: Option<Dur>,
    /// Default language of notifier texts (`en` or `ru`).
    pub language: Option<Language>,
    /// Time zone of times in texts (IANA name, default the system's).
    pub timezone: Option<String>,
    /// Each shop's own time zone (IANA name), by shop label: its days in `supportwatch report`
    /// begin at its midnight. A shop not listed uses `timezone`, else UTC.
    #[serde(default)]
    pub shop_timezones: BTreeMap<String, String>,
    /// Link put into every message (a status page or Grafana dashboard).
    pub status_url: Option<Text>,
    /// Attempts per notification before it is dropped or handed to the fallback (default 5).
    pub attempts: Option<u32>,
    /// Which notifiers hear about which checks.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// A check's own `alert:` block; unset fields inherit from `alerting:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckAlert {
    /// See [`AlertingConfig::failure_threshold`].
    pub failure_threshold: Option<u32>,
    /// See [`AlertingConfig::success_threshold`].
    pub success_threshold: Option<u32>,
    /// See [`AlertingConfig::send_on_resolved`].
    pub send_on_resolved: Option<bool>,
    /// See [`AlertingConfig::repeat`].
    pub repeat: Option<Dur>,
    /// See [`AlertingConfig::window`].
    pub window: Option<WindowRule>,
    /// Maintenance windows of this check, in addition to the global ones.
    #[serde(default)]
    pub maintenance: Vec<Maintenance>,
    /// Notifiers told about this check besides those the routes choose.
    #[serde(default)]
    pub notify: Vec<String>,
    /// Used when one of `notify` fails.
    pub fallback: Option<String>,
    /// `false` turns alerting off for this check (results are still recorded).
    pub enabled: Option<bool>,
}

/// What alerting needs of one check: who it is and its own `alert:` block.
#[derive(Clone, Copy, Debug)]
pub struct CheckRules<'a> {
    /// Name, kind, channel and labels.
    pub id: CheckIdentity<'a>,
    /// The check's `alert:` block, if it has one.
    pub alert: Option<&'a CheckAlert>,
}

/// `failures: 3, in: 10m`: fire when that many runs failed within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRule {
    /// Failed runs needed.
    pub failures: u32,
    /// The window.
    #[serde(rename = "in")]
    pub within: Dur,
}

/// The `storage:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// SQLite database file (default `./supportwatch.db`); `${ENV}` allowed.
    #[serde(default = "default_storage_path")]
    pub path: Text,
    /// Runs kept per check (default 1000).
    #[serde(default = "default_keep_runs")]
    pub keep_runs: u32,
    /// How long the token of test mail not found by its run is remembered, so that the mail is
    /// deleted when it turns up (default 24h; at least a day).
    #[serde(default = "default_late_mail_for")]
    pub late_mail_for: Dur,
    /// How long raw runs are kept (default 7d; between 1h and 400d). `keep_runs` caps them too.
    #[serde(default = "default_runs_for")]
    pub runs_for: Dur,
    /// How long daily roll-ups and ended incidents are kept (default 400d; at least 90d).
    /// Hourly roll-ups are kept for 35 days.
    #[serde(default = "default_rollups_for")]
    pub rollups_for: Dur,
}

fn default_runs_for() -> Dur {
    Dur::secs(7 * 86_400)
}

fn default_rollups_for() -> Dur {
    Dur::secs(400 * 86_400)
}

fn default_late_mail_for() -> Dur {
    Dur::secs(crate::mailbox::late::REMEMBER_FOR.as_secs())
}

fn default_storage_path() -> Text {
    Text::literal("supportwatch.db")
}

impl StorageConfig {
    /// The database file.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(self.path.expose())
    }
}
fn default_keep_runs() -> u32 {
    1000
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: default_storage_path(),
            keep_runs: default_keep_runs(),
            late_mail_for: default_late_mail_for(),
            runs_for: default_runs_for(),
            rollups_for: default_rollups_for(),
        }
    }
}

/// A check's alerting rules, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Alerting on at all.
    pub enabled: bool,
    /// Consecutive failures to fire.
    pub failure_threshold: u32,
    /// Consecutive passes to resolve.
    pub success_threshold: u32,
    /// Send resolves.
    pub send_on_resolved: bool,
    /// Reminder interval.
    pub repeat: Option<std::time::Duration>,
    /// Window rule.
    pub window: Option<WindowRule>,
}

/// Built-in `failure_threshold`.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 2;
/// Built-in `success_threshold`.
pub const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;
/// Built-in `group_wait`.
pub const DEFAULT_GROUP_WAIT: Dur = Dur::secs(30);
/// Built-in `attempts`.
pub const DEFAULT_ATTEMPTS: u32 = 5;

impl Policy {
    /// The policy of a check with `own` under `global`.
    pub fn resolve(global: &AlertingConfig, own: Option<&CheckAlert>) -> Policy {
        let own = own.cloned().unwrap_or_default();
        Policy {
            enabled: own.enabled.unwrap_or(true),
            failure_threshold: own
                .failure_threshold
                .or(global.failure_threshold)
                .unwrap_or(DEFAULT_FAILURE_THRESHOLD)
                .max(1),
            success_threshold: own
                .success_threshold
                .or(global.success_threshold)
                .unwrap_or(DEFAULT_SUCCESS_THRESHOLD)
                .max(1),
            send_on_resolved: own
                .send_on_resolved
                .or(global.send_on_resolved)
                .unwrap_or(true),
            repeat: own.repeat.or(global.repeat).map(|d| d.get()),
            window: own.window.or(global.window),
        }
    }
}

/// Checks the `alerting:` section and the checks' `alert:` blocks against the declared notifiers.
pub fn validate<'a>(
    alerting: &AlertingConfig,
    notifiers: &BTreeMap<String, crate::notify::NotifierSpec>,
    checks: impl IntoIterator<Item = CheckRules<'a>>,
) -> Vec<(Option<String>, String)> {
    let mut problems = Vec::new();
    let known: Vec<&str> = notifiers.keys().map(String::as_str).collect();
    let mut name_ok = |name: &str, place: &str, check: Option<&str>| {
        if !notifiers.contains_key(name) {
            let hint = crate::value::closest(name, &known)
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_else(|| {
                    if known.is_empty() {
                        " (declare it under `notifiers:`)".to_string()
                    } else {
                        format!(" (declared: {})", known.join(", "))
                    }
                });
            problems.push((
                check.map(str::to_string),
                format!("{place}: unknown notifier `{name}`{hint}"),
            ));
        }
    };
    for (i, route) in alerting.routes.iter().enumerate() {
        let place = format!("alerting.routes[{i}]");
        for name in route.notify.iter().chain(route.fallback.iter()) {
            name_ok(name, &place, None);
        }
    }
    for check in checks {
        if let Some(own) = check.alert {
            for name in own.notify.iter().chain(own.fallback.iter()) {
                name_ok(name, "alert", Some(check.id.name));
            }
        }
    }
    for (i, route) in alerting.routes.iter().enumerate() {
        if route.notify.is_empty() {
            problems.push((
                None,
                format!("alerting.routes[{i}]: `notify` lists no notifier"),
            ));
        }
    }
    if let Some(w) = alerting.window
        && w.failures == 0
    {
        problems.push((
            None,
            "alerting.window: `failures` must be at least 1".into(),
        ));
    }
    if let Some(tz) = &alerting.timezone
        && jiff::tz::TimeZone::get(tz).is_err()
    {
        problems.push((
            None,
            format!("alerting.timezone: unknown time zone `{tz}` (write e.g. `Europe/Moscow`)"),
        ));
    }
    for (shop, tz) in &alerting.shop_timezones {
        if jiff::tz::TimeZone::get(tz).is_err() {
            problems.push((
                None,
                format!(
                    "alerting.shop_timezones.{shop}: unknown time zone `{tz}` \
                     (write e.g. `Europe/Berlin`)"
                ),
            ));
        }
    }
    problems
}

/// The time zone of `shop`'s days: its own, else `alerting.timezone`, else UTC.
pub fn shop_zone(alerting: &AlertingConfig, shop: &str) -> jiff::tz::TimeZone {
    alerting
        .shop_timezones
        .get(shop)
        .or(alerting.timezone.as_ref())
        .and_then(|name| jiff::tz::TimeZone::get(name).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC)
}
