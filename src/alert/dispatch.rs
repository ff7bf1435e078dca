//! Which queued notifications go out now, together, and what happens when a send fails.
//!
//! Notifications are grouped per notifier and shop: when the first of a group is due (queued
//! `group_wait` ago), everything of that group goes out in one message, so three of a shop's
//! channels failing together make one message, not a storm. Two queued states of one incident
//! (fired, then resolved before the message left) collapse into the newer one.
//!
//! A failed send is retried with exponential backoff and jitter, or after the service's own
//! `retry_after`. A notification still failing after `attempts`, or failing permanently, is
//! dropped and handed to its route's fallback notifier.

use super::store::{OutboxRow, Queued};
use crate::notify::{AlertNotice, AlertStatus, NotifyError};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One message to send: a notifier, a shop, and the rows it carries.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Notifier name.
    pub notifier: String,
    /// Shop.
    pub shop: String,
    /// Every row the message covers (removed together on success).
    pub rows: Vec<OutboxRow>,
    /// The alerts to show, one per incident, firing first.
    pub notices: Vec<AlertNotice>,
}

/// The batches ready at `now`, skipping groups with a send in flight.
pub fn ready(rows: Vec<OutboxRow>, now: f64, in_flight: &BTreeSet<(String, String)>) -> Vec<Batch> {
    // A digest goes in a batch of its own (keyed by its fingerprint), never joined by alerts.
    let mut groups: BTreeMap<(String, String, Option<String>), Vec<OutboxRow>> = BTreeMap::new();
    for row in rows {
        let digest = row
            .queued
            .notice
            .digest
            .is_some()
            .then(|| row.queued.notice.fingerprint.clone());
        groups
            .entry((row.queued.notifier.clone(), row.queued.shop.clone(), digest))
            .or_default()
            .push(row);
    }
    let mut out = Vec::new();
    // One batch per notifier and shop at a time: `in_flight` is keyed so.
    let mut taken: BTreeSet<(String, String)> = BTreeSet::new();
    for ((notifier, shop, _), rows) in groups {
        if in_flight.contains(&(notifier.clone(), shop.clone())) {
            continue;
        }
        let due = rows
            .iter()
            .any(|r| r.queued.due_at <= now && r.next_attempt_at <= now);
        if !due {
            continue;
        }
        // Retrying rows wait for their own time; fresh ones join the group's message.
        let rows: Vec<OutboxRow> = rows
            .into_iter()
            .filter(|r| r.next_attempt_at <= now || r.attempts == 0)
            .collect();
        let mut latest: BTreeMap<&str, &OutboxRow> = BTreeMap::new();
        for r in &rows {
            let slot = latest
                .entry(r.queued.notice.fingerprint.as_str())
                .or_insert(r);
            if r.id > slot.id {
                *slot = r;
            }
        }
        let mut notices: Vec<AlertNotice> =
            latest.values().map(|r| r.queued.notice.clone()).collect();
        notices.sort_by_key(|n| {
            (
                match n.status {
                    AlertStatus::Firing => 0,
                    AlertStatus::Reminder => 1,
                    AlertStatus::Resolved => 2,
                },
                n.since,
                n.check.clone(),
            )
        });
        if !taken.insert((notifier.clone(), shop.clone())) {
            continue;
        }
        out.push(Batch {
            notifier,
            shop,
            rows,
            notices,
        });
    }
    out
}

/// What to do after a failed send.
#[derive(Clone, Debug)]
pub enum AfterFailure {
    /// Try again at this time (unix seconds), with this attempt count.
    Retry {
        /// Attempts made so far.
        attempts: u32,
        /// Next attempt, unix seconds.
        at: f64,
    },
    /// Give up; hand these to their fallbacks.
    Drop {
        /// Fallback deliveries to queue.
        fallbacks: Vec<Queued>,
    },
}

/// Longest pause between two attempts, whatever a service asks for.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Pause before attempt `attempts + 1`: 1 s, 2 s, 4 s, ... up to 5 minutes, ±20 % jitter so that
/// many notifications failing together do not retry in lock step; a service's `retry_after`
/// wins (plus up to 10 %), capped at [`MAX_BACKOFF`].
pub fn backoff(attempts: u32, asked: Option<Duration>, jitter: f64) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    match asked {
        Some(after) => after.min(MAX_BACKOFF).mul_f64(1.0 + 0.1 * jitter),
        None => {
            let base = Duration::from_secs(1u64 << attempts.saturating_sub(1).min(20))
                .min(Duration::from_secs(300));
            base.mul_f64(0.8 + 0.4 * jitter)
        }
    }
}

/// Decides the fate of `batch` after `error` on its latest attempt.
pub fn after_failure(
    batch: &Batch,
    error: &NotifyError,
    max_attempts: u32,
    now: f64,
    jitter: f64,
) -> AfterFailure {
    let attempts = batch.rows.iter().map(|r| r.attempts).max().unwrap_or(0) + 1;
    match error {
        NotifyError::Transient { after, .. } if attempts < max_attempts => AfterFailure::Retry {
            attempts,
            at: now + backoff(attempts, *after, jitter).as_secs_f64(),
        },
        _ => {
            // What the message said, per incident (fired then resolved is one resolve), goes to
            // each fallback its rows name, once.
            let mut fallbacks: BTreeMap<(String, &str), Queued> = BTreeMap::new();
            for row in batch.rows.iter().filter(|r| !r.queued.is_fallback) {
                let Some(fallback) = &row.queued.fallback else {
                    continue;
                };
                let fingerprint = row.queued.notice.fingerprint.as_str();
                let Some(notice) = batch.notices.iter().find(|n| n.fingerprint == fingerprint)
                else {
                    continue;
                };
                fallbacks
                    .entry((fallback.clone(), fingerprint))
                    .or_insert_with(|| Queued {
                        notifier: fallback.clone(),
                        shop: row.queued.shop.clone(),
                        fallback: None,
                        is_fallback: true,
                        due_at: now,
                        notice: notice.clone(),
                    });
            }
            let fallbacks = fallbacks.into_values().collect();
            AfterFailure::Drop { fallbacks }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Channel, Kind};

    fn row(
        id: i64,
        notifier: &str,
        shop: &str,
        check: &str,
        status: AlertStatus,
        due: f64,
    ) -> OutboxRow {
        OutboxRow {
            id,
            queued: Queued {
                notifier: notifier.into(),
                shop: shop.into(),
                fallback: Some("backup".into()),
                is_fallback: false,
                due_at: due,
                notice: AlertNotice {
                    digest: None,
                    id: format!("{check}@1:{}", status.as_str()),
                    fingerprint: format!("{check}@1"),
                    check: check.into(),
                    channel: Channel::Chat,
                    kind: Kind::Chat,
                    labels: Default::default(),
                    status,
                    since: std::time::UNIX_EPOCH,
                    resolved_at: None,
                    consecutive_failures: 2,
                    reason_kind: "no_reply".into(),
                    reason: "no reply".into(),
                    link: None,
                },
            },
            attempts: 0,
            next_attempt_at: due,
        }
    }

    #[test]
    fn one_message_per_notifier_and_shop_once_the_first_is_due() {
        let rows = vec![
            row(1, "tg", "shop-a", "chat", AlertStatus::Firing, 10.0),
            row(2, "tg", "shop-a", "form", AlertStatus::Firing, 15.0),
            row(3, "tg", "shop-a", "callback", AlertStatus::Firing, 20.0),
            row(4, "tg", "shop-b", "chat", AlertStatus::Firing, 20.0),
        ];
        assert!(ready(rows.clone(), 9.0, &BTreeSet::new()).is_empty());
        let batches = ready(rows.clone(), 10.0, &BTreeSet::new());
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].notices.len(), 3, "late joiners ride along");
        let busy = BTreeSet::from([("tg".to_string(), "shop-a".to_string())]);
        let batches = ready(rows, 20.0, &busy);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].shop, "shop-b");
    }

    #[test]
    fn fired_then_resolved_before_sending_is_one_resolve() {
        let rows = vec![
            row(1, "tg", "s", "chat", AlertStatus::Firing, 10.0),
            row(2, "tg", "s", "chat", AlertStatus::Resolved, 12.0),
        ];
        let batches = ready(rows, 10.0, &BTreeSet::new());
        assert_eq!(batches[0].rows.len(), 2);
        assert_eq!(batches[0].notices.len(), 1);
        assert_eq!(batches[0].notices[0].status, AlertStatus::Resolved);
    }

    #[test]
    fn retries_back_off_then_drop_to_the_fallback() {
        let batch = ready(
            vec![row(1, "tg", "s", "chat", AlertStatus::Firing, 0.0)],
            0.0,
            &BTreeSet::new(),
        )
        .remove(0);
        let e = NotifyError::transient("HTTP 500");
        let AfterFailure::Retry { attempts, at } = after_failure(&batch, &e, 5, 100.0, 0.5) else {
            panic!("a 500 is retried")
        };
        assert_eq!((attempts, at), (1, 101.0));
        let asked = NotifyError::Transient {
            message: "429".into(),
            after: Some(Duration::from_secs(7)),
        };
        let AfterFailure::Retry { at, .. } = after_failure(&batch, &asked, 5, 100.0, 0.0) else {
            panic!("429 is retried")
        };
        assert_eq!(at, 107.0);
        let AfterFailure::Drop { fallbacks } =
            after_failure(&batch, &NotifyError::permanent("401"), 5, 100.0, 0.0)
        else {
            panic!("permanent errors are not retried")
        };
        assert_eq!(fallbacks.len(), 1);
        assert_eq!(fallbacks[0].notifier, "backup");
        assert!(fallbacks[0].is_fallback);
        // Fired, then resolved before anything got through: the fallback hears the resolve, once.
        let both = ready(
            vec![
                row(1, "tg", "s", "chat", AlertStatus::Firing, 0.0),
                row(2, "tg", "s", "chat", AlertStatus::Resolved, 0.0),
            ],
            0.0,
            &BTreeSet::new(),
        )
        .remove(0);
        let AfterFailure::Drop { fallbacks } =
            after_failure(&both, &NotifyError::permanent("401"), 5, 100.0, 0.0)
        else {
            panic!("permanent errors are not retried")
        };
        assert_eq!(fallbacks.len(), 1);
        assert_eq!(fallbacks[0].notice.status, AlertStatus::Resolved);
        let mut tired = batch.clone();
        tired.rows[0].attempts = 4;
        assert!(matches!(
            after_failure(&tired, &e, 5, 100.0, 0.0),
            AfterFailure::Drop { .. }
        ));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let d = |n| backoff(n, None, 0.5).as_secs_f64();
        assert_eq!((d(1), d(2), d(3), d(4)), (1.0, 2.0, 4.0, 8.0));
        assert_eq!(d(30), 300.0);
        assert!(backoff(1, None, 0.0) < backoff(1, None, 1.0));
        assert_eq!(
            backoff(1, Some(Duration::from_secs(86_400)), 0.0),
            MAX_BACKOFF
        );
    }
}
