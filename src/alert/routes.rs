//! Routing: which notifiers hear about which checks.
//!
//! A route matches checks by label (`shop`, `channel`, `kind`, `check` or any static label; a
//! list means "any of") and names its notifiers and an optional fallback. Every matching route
//! applies, so the owner's Telegram and the ops' Alertmanager can both hear of one failure.

use crate::config::{Channel, Check, Config, Kind};
use crate::notify::{NotifierSpec, ServiceSpec};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// One entry of `alerting.routes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Label → accepted values; empty matches every check.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, OneOrMany>,
    /// Notifiers told.
    pub notify: Vec<String>,
    /// Told instead when one of `notify` fails for good.
    pub fallback: Option<String>,
}

/// A YAML scalar or list of scalars.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Any of these.
    Many(Vec<String>),
}

impl OneOrMany {
    fn contains(&self, value: &str) -> bool {
        match self {
            OneOrMany::One(v) => v == value,
            OneOrMany::Many(vs) => vs.iter().any(|v| v == value),
        }
    }
}

/// One notifier a check's alerts go to, with its fallback.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// Notifier name.
    pub notifier: String,
    /// Notifier used when this one fails for good.
    pub fallback: Option<String>,
}

fn label<'a>(check: &'a Check, key: &str) -> Option<&'a str> {
    match key {
        "check" => Some(check.name.as_str()),
        "channel" => Some(check.channel.as_str()),
        "kind" => Some(check.kind().as_str()),
        "shop" => Some(check.shop()),
        other => check.labels.get(other).map(String::as_str),
    }
}

impl Route {
    /// Whether the route applies to `check`.
    pub fn matches(&self, check: &Check) -> bool {
        self.matchers
            .iter()
            .all(|(key, values)| label(check, key).is_some_and(|v| values.contains(v)))
    }
}

/// The notifiers `check`'s alerts go to: its own `alert.notify` and every matching route's.
pub fn targets(check: &Check, routes: &[Route]) -> Vec<Target> {
    let mut out: BTreeMap<String, Option<String>> = BTreeMap::new();
    if let Some(own) = &check.alert {
        for n in &own.notify {
            out.entry(n.clone()).or_insert_with(|| own.fallback.clone());
        }
    }
    for route in routes.iter().filter(|r| r.matches(check)) {
        for n in &route.notify {
            let slot = out.entry(n.clone()).or_insert(None);
            if slot.is_none() {
                *slot = route.fallback.clone();
            }
        }
    }
    out.into_iter()
        .map(|(notifier, fallback)| Target {
            // A notifier that is its own fallback has none.
            fallback: fallback.filter(|f| *f != notifier),
            notifier,
        })
        .collect()
}

/// Hosts a check depends on to receive mail: the SMTP server of a `mail` check and the IMAP
/// server of the mailbox its deliveries are proven in.
fn mail_hosts(check: &Check, config: &Config) -> BTreeSet<String> {
    let mut hosts = BTreeSet::new();
    if let crate::config::CheckSpec::Mail(spec) = &check.spec
        && let Ok(target) = crate::probe::mail::target::Target::parse(&spec.smtp)
    {
        hosts.insert(target.host);
    }
    let (deliver, _) = check.spec.deliveries();
    if let Some(mailbox) = deliver
        .and_then(|d| d.mailbox.as_ref())
        .and_then(|m| config.mailboxes.get(m))
        && mailbox.imap.is_some()
        && let Ok(target) = crate::mailbox::imap::ImapTarget::parse(mailbox)
    {
        hosts.insert(target.host.to_ascii_lowercase());
    }
    hosts
}

/// Warnings `validate` prints: checks whose failures nobody would hear of, and mail checks that
/// could only be reported through the mail server they check.
pub fn warnings(config: &Config) -> Vec<String> {
    let notifiers = &config.notifiers;
    let routes = &config.alerting.routes;
    let mut out = Vec::new();
    if notifiers.is_empty() {
        return out;
    }
    for check in &config.checks {
        if check.alert.as_ref().and_then(|a| a.enabled) == Some(false) {
            continue;
        }
        let targets = targets(check, routes);
        if targets.is_empty() {
            out.push(format!(
                "check \"{}\": no route reaches a notifier; its failures show only in metrics",
                check.name
            ));
            continue;
        }
        let mail_channel = matches!(check.channel, Channel::Email | Channel::FeedbackForm)
            || check.kind() == Kind::Mail;
        if !mail_channel {
            continue;
        }
        let hosts = mail_hosts(check, config);
        let through_same_mail = |name: &str| {
            notifiers.get(name).is_some_and(|spec: &NotifierSpec| {
                matches!(spec.service, ServiceSpec::Email(_))
                    && (hosts.is_empty()
                        || crate::notify::mail_server(spec).is_some_and(|h| hosts.contains(&h)))
            })
        };
        let every_way = targets
            .iter()
            .flat_map(|t| std::iter::once(&t.notifier).chain(t.fallback.iter()))
            .all(|n| through_same_mail(n));
        if every_way {
            out.push(format!(
                "check \"{}\": its alerts can only reach people by e-mail through the mail \
                 server it checks{}; add a notifier that does not depend on it (telegram, \
                 webhook, ...) as a route or a fallback",
                check.name,
                if hosts.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        hosts.iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                }
            ));
        }
    }
    out
}
