//! What the alerting task takes from a config: a [`Setup`] with one `CheckEntry` per check.
//!
//! The config side of alerting, apart from the task that runs it: assembly builds a `Setup` from
//! each loaded config and hands it to the task on start and on every reload; `send_test`
//! (`supportwatch notify-test`) only needs a `Setup`, not the task.

use crate::alert::digest::{DigestConfig, Every};
use crate::alert::{
    AlertingConfig, CheckRules, DEFAULT_ATTEMPTS, DEFAULT_GROUP_WAIT, Maintenance, Policy,
    StorageConfig, Target, routes,
};
use crate::notify::{AlertNotice, Notification, NotifierEntry};
use crate::value::{Channel, Kind};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// What the alerting task knows about one check.
#[derive(Clone, Debug)]
pub(super) struct CheckEntry {
    pub(super) channel: Channel,
    pub(super) kind: Kind,
    pub(super) labels: crate::outcome::Labels,
    pub(super) shop: String,
    pub(super) policy: Policy,
    pub(super) targets: Vec<Target>,
    pub(super) maintenance: Vec<Maintenance>,
}

/// Everything the alerting task needs from a config.
#[derive(Clone)]
pub struct Setup {
    /// Shared, so a report or a tick takes a check's entry without copying its labels.
    pub(super) checks: HashMap<String, Arc<CheckEntry>>,
    pub(super) notifiers: BTreeMap<String, NotifierEntry>,
    pub(super) group_wait: Duration,
    pub(super) attempts: u32,
    pub(super) keep_runs: u32,
    /// How long raw runs are kept, then daily roll-ups and ended incidents.
    pub(super) retention: (Duration, Duration),
    pub(super) status_url: Option<String>,
    pub(super) timezone: Option<String>,
    /// The weekly digest, when the config has a `digest:` section.
    pub(super) digest: Option<Arc<DigestSetup>>,
    /// The mailboxes of each shop (a mailbox belongs to the shops of the checks that use it).
    pub(super) mailboxes: BTreeMap<String, Vec<String>>,
}

/// The `digest:` section, resolved against the checks and the alert zones.
#[derive(Clone, Debug)]
pub(super) struct DigestSetup {
    pub(super) every: Every,
    pub(super) notifiers: Vec<String>,
    /// Each shop with the zone its digest is timed and written in.
    pub(super) shops: Vec<(String, jiff::tz::TimeZone)>,
    pub(super) targets: BTreeMap<Channel, crate::value::Dur>,
}

impl Setup {
    /// What the alerting task needs of a config: the `alerting:` section, the `storage:`
    /// retention settings, every check's identity and `alert:` block, and the built notifiers.
    pub fn new<'a>(
        global: &AlertingConfig,
        storage: &StorageConfig,
        checks: impl IntoIterator<Item = CheckRules<'a>>,
        notifiers: BTreeMap<String, NotifierEntry>,
    ) -> Setup {
        let checks = checks
            .into_iter()
            .map(|rules| {
                let own = rules.alert;
                let mut maintenance = global.maintenance.clone();
                maintenance.extend(own.map(|a| a.maintenance.clone()).unwrap_or_default());
                (
                    rules.id.name.to_string(),
                    Arc::new(CheckEntry {
                        channel: rules.id.channel,
                        kind: rules.id.kind,
                        labels: rules.id.labels.clone(),
                        shop: rules.id.shop().to_string(),
                        policy: Policy::resolve(global, own),
                        targets: routes::targets(&rules, &global.routes),
                        maintenance,
                    }),
                )
            })
            .collect();
        Setup {
            checks,
            notifiers,
            group_wait: global.group_wait.unwrap_or(DEFAULT_GROUP_WAIT).get(),
            attempts: global.attempts.unwrap_or(DEFAULT_ATTEMPTS).max(1),
            keep_runs: storage.keep_runs.max(1),
            retention: (storage.runs_for.get(), storage.rollups_for.get()),
            status_url: global.status_url.as_ref().map(|t| t.expose().to_string()),
            timezone: global.timezone.clone(),
            digest: None,
            mailboxes: BTreeMap::new(),
        }
    }

    /// This setup with the shops each mailbox belongs to (mailbox → shops).
    pub fn with_mailboxes(mut self, shops_of: BTreeMap<String, Vec<String>>) -> Setup {
        for (mailbox, shops) in shops_of {
            for shop in shops {
                self.mailboxes
                    .entry(shop)
                    .or_default()
                    .push(mailbox.clone());
            }
        }
        self
    }

    /// This setup sending the weekly digest `digest` (`None`: no digest); `global` gives the
    /// shops' zones where the digest names none. A section that fails validation sends none.
    pub fn with_digest(mut self, digest: Option<&DigestConfig>, global: &AlertingConfig) -> Setup {
        let Some(d) = digest else {
            return self;
        };
        let Ok(every) = Every::parse(&d.every) else {
            return self;
        };
        let mut shops: Vec<String> = if d.shops.is_empty() {
            self.checks.values().map(|c| c.shop.clone()).collect()
        } else {
            d.shops.clone()
        };
        shops.sort_unstable();
        shops.dedup();
        let fixed = d
            .timezone
            .as_deref()
            .and_then(|z| jiff::tz::TimeZone::get(z).ok());
        let shops = shops
            .into_iter()
            .map(|shop| {
                let zone = fixed
                    .clone()
                    .unwrap_or_else(|| crate::alert::shop_zone(global, &shop));
                (shop, zone)
            })
            .collect();
        self.digest = Some(Arc::new(DigestSetup {
            every,
            notifiers: d.notifiers.clone(),
            shops,
            targets: d.targets.clone(),
        }));
        self
    }

    /// A notification for `notifier` carrying `alerts`.
    pub fn notification(
        &self,
        entry: &NotifierEntry,
        shop: &str,
        alerts: Vec<AlertNotice>,
        test: bool,
    ) -> Notification {
        // A digest rides the outbox as a notice of its own batch (`dispatch::ready`); it is
        // sent in place of alert texts.
        let mut alerts = alerts;
        let digest = alerts
            .iter()
            .position(|a| a.digest.is_some())
            .and_then(|i| alerts.remove(i).digest)
            .map(|d| *d);
        Notification {
            digest,
            shop: shop.to_string(),
            language: entry.language,
            audience: entry.audience,
            alerts,
            test,
            status_url: self.status_url.clone(),
            timezone: self.timezone.clone(),
        }
    }

    /// The notifier named `name`.
    pub fn notifier(&self, name: &str) -> Option<&NotifierEntry> {
        self.notifiers.get(name)
    }
}

/// Sends a test message through one notifier (`supportwatch notify-test`).
pub async fn send_test(setup: &Setup, name: &str, shop: &str) -> Result<(), String> {
    let Some(entry) = setup.notifier(name) else {
        let known: Vec<&str> = setup.notifiers.keys().map(String::as_str).collect();
        return Err(format!(
            "no notifier `{name}` (declared: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    };
    let notification = setup.notification(entry, shop, Vec::new(), true);
    entry
        .notifier
        .send(&notification)
        .await
        .map_err(|e| format!("notifier `{name}` ({}): {e}", entry.kind))
}
