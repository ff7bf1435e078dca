//! Routing: which notifiers hear about which checks.
//!
//! A route matches checks by label (`shop`, `channel`, `kind`, `check` or any static label; a
//! list means "any of") and names its notifiers and an optional fallback. Every matching route
//! applies, so the owner's Telegram and the ops' Alertmanager can both hear of one failure.

use super::CheckRules;
use crate::outcome::CheckIdentity;
use serde::Deserialize;
use std::collections::BTreeMap;

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

fn label<'a>(check: &CheckIdentity<'a>, key: &str) -> Option<&'a str> {
    match key {
        "check" => Some(check.name),
        "channel" => Some(check.channel.as_str()),
        "kind" => Some(check.kind.as_str()),
        "shop" => Some(check.shop()),
        other => check.labels.get(other).map(String::as_str),
    }
}

impl Route {
    /// Whether the route applies to `check`.
    pub fn matches(&self, check: &CheckIdentity<'_>) -> bool {
        self.matchers
            .iter()
            .all(|(key, values)| label(check, key).is_some_and(|v| values.contains(v)))
    }
}

/// The notifiers `check`'s alerts go to: its own `alert.notify` and every matching route's.
pub fn targets(check: &CheckRules<'_>, routes: &[Route]) -> Vec<Target> {
    let mut out: BTreeMap<String, Option<String>> = BTreeMap::new();
    if let Some(own) = check.alert {
        for n in &own.notify {
            out.entry(n.clone()).or_insert_with(|| own.fallback.clone());
        }
    }
    for route in routes.iter().filter(|r| r.matches(&check.id)) {
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
