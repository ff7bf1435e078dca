//! The alerting task's side of the weekly digest: at each tick, each shop whose period has
//! turned gets its digest queued into the outbox, in the same transaction that records the
//! period (see `alert::digest` for the rules).

use super::Worker;
use super::setup::DigestSetup;
use crate::alert::digest::DigestMessage;
use crate::alert::digest::content::{self, CERT_DAYS, Extras, MAILBOX_FULL};
use crate::alert::engine;
use crate::alert::history::{History, report};
use crate::alert::store::{Queued, ValueKind};
use crate::notify::{AlertNotice, AlertStatus, Language};
use crate::value::{Channel, Kind};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// The range a digest covers: the week before its moment.
const WEEK: Duration = Duration::from_secs(7 * 86_400);

impl Worker {
    /// Queues the digests that are due. `now_for_all`: send every shop's digest of the week
    /// up to now at once, whatever the schedule (`demo --digest-now`).
    pub(super) async fn digests(&mut self, now_for_all: bool) {
        let Some(setup) = self.setup.digest.clone() else {
            if now_for_all {
                tracing::warn!("no digest: section in the config; no digest to send");
            }
            return;
        };
        if self.behind.is_some() {
            // Queued rows and the period must reach the disk together; the next tick after
            // the catch-up tries again.
            return;
        }
        let now = self.now();
        for (shop, zone) in &setup.shops {
            let period = setup.every.period_start(now, zone);
            let last = self.digest_periods.get(shop).copied();
            let due = match last {
                _ if now_for_all => true,
                // The first start: the period in progress counts as sent (see module doc).
                None => false,
                Some(last) => last < period,
            };
            if !due && last.is_some() {
                continue;
            }
            let queued = if due {
                // A forced digest covers the week up to now; a scheduled one the week before
                // its period started, however late it goes out.
                let end = if now_for_all {
                    now
                } else {
                    SystemTime::UNIX_EPOCH + Duration::from_secs(period.max(0).unsigned_abs())
                };
                match self.compose(&setup, shop, zone, period, end).await {
                    Ok(queued) => queued,
                    Err(e) => {
                        tracing::warn!(shop = %shop, error = %e, "cannot build the weekly digest; tried again at the next tick");
                        continue;
                    }
                }
            } else {
                Vec::new()
            };
            let rows = self.admit(queued);
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let owned = shop.clone();
            let written = self
                .write("queue_digest", "queueing the weekly digest", move |s| {
                    s.queue_digest(&owned, period, &rows)
                })
                .await;
            if written {
                self.digest_periods.insert(shop.clone(), period);
                if due {
                    tracing::info!(shop = %shop, messages = ids.len(), "weekly digest queued");
                }
            } else {
                // Not recorded, so not sent either: the catch-up would write the rows without
                // the period, and a restart would send the digest again.
                for id in ids {
                    self.outbox.remove(&id);
                }
            }
        }
    }

    /// One outbox row per digest notifier, in its language.
    async fn compose(
        &self,
        setup: &DigestSetup,
        shop: &str,
        zone: &jiff::tz::TimeZone,
        period: i64,
        end: SystemTime,
    ) -> Result<Vec<Queued>, String> {
        let store = self.store.clone();
        let (owned, owned_zone) = (shop.to_string(), zone.clone());
        let setup_all = self.setup.clone();
        let now = self.now();
        // Reading the roll-ups is SQLite work: the blocking pool, like every store call.
        let (built, extras) = tokio::task::spawn_blocking(move || {
            let built = report::build(&History::new(&store, end), &owned, WEEK, &owned_zone)?;
            let extras = extras(&store, &setup_all, &owned, now)?;
            Ok::<_, crate::alert::store::StoreError>((built, extras))
        })
        .await
        .map_err(|e| format!("reading the history panicked: {e}"))?
        .map_err(|e| e.to_string())?;
        let mut by_language: BTreeMap<&'static str, DigestMessage> = BTreeMap::new();
        let mut out = Vec::new();
        let due_at = engine::secs(self.now());
        for name in &setup.notifiers {
            let Some(entry) = self.setup.notifier(name) else {
                continue;
            };
            let key = match entry.language {
                Language::En => "en",
                Language::Ru => "ru",
            };
            let message = by_language
                .entry(key)
                .or_insert_with(|| {
                    content::compose(
                        entry.language,
                        period,
                        &built,
                        &setup.targets,
                        &extras,
                        zone,
                    )
                })
                .clone();
            out.push(Queued {
                notifier: name.clone(),
                shop: shop.to_string(),
                fallback: None,
                is_fallback: false,
                due_at,
                notice: notice(shop, period, end, message),
            });
        }
        Ok(out)
    }
}

/// The outbox's stand-in notice for a digest: its fingerprint names shop and period.
fn notice(shop: &str, period: i64, end: SystemTime, message: DigestMessage) -> AlertNotice {
    let fingerprint = format!("digest:{shop}:{period}");
    AlertNotice {
        id: fingerprint.clone(),
        fingerprint,
        check: String::new(),
        channel: Channel::Website,
        kind: Kind::Http,
        labels: BTreeMap::from([("shop".to_string(), shop.to_string())]),
        status: AlertStatus::Firing,
        since: end,
        resolved_at: None,
        consecutive_failures: 0,
        reason_kind: "digest".into(),
        reason: String::new(),
        link: None,
        digest: Some(Box::new(message)),
    }
}

/// Certificates of `shop`'s checks expiring within [`CERT_DAYS`] (the soonest target of each
/// check), and the shop's mailboxes above [`MAILBOX_FULL`], from the last values the store
/// keeps: a shop's digest names only the mailboxes its own checks use.
pub(super) fn extras(
    store: &crate::alert::store::Store,
    setup: &super::Setup,
    shop: &str,
    now: SystemTime,
) -> Result<Extras, crate::alert::store::StoreError> {
    let now = engine::secs(now);
    let mailboxes: Vec<&str> = setup
        .mailboxes
        .get(shop)
        .map(|m| m.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let mut out = Extras::default();
    for row in store.last_values(shop, &mailboxes)? {
        match row.value.kind {
            ValueKind::CertNotAfter => {
                // A check removed from the config no longer speaks for the shop.
                let mine = setup.checks.get(&row.check).is_some_and(|c| c.shop == shop);
                let days = (row.value.value - now) / 86_400.0;
                if !mine || days >= CERT_DAYS {
                    continue;
                }
                match out.certs.iter_mut().find(|(c, _)| *c == row.check) {
                    Some((_, d)) => *d = d.min(days),
                    None => out.certs.push((row.check.clone(), days)),
                }
            }
            ValueKind::MailboxFill => {
                if row.value.value > MAILBOX_FULL {
                    out.mailboxes
                        .push((row.value.subject.clone(), row.value.value));
                }
            }
        }
    }
    Ok(out)
}
