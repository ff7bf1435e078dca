//! The weekly digest: once per period, each shop's week in one message to its owner, through
//! the notifiers the `digest:` section names.
//!
//! - **When**: `every: "Mon 09:00"` in the digest's time zone. A period is the time from one
//!   such moment to the next; the period a moment belongs to starts at the latest occurrence
//!   at or before it ([`Every::period_start`]).
//! - **Exactly once**: the alerting task compares each shop's current period with the last one
//!   it queued (table `digests`), and queues the digest into the outbox in the same transaction
//!   that records the period. The outbox then retries and survives restarts like any alert; a
//!   restart within the period finds the period recorded and sends nothing. After a downtime
//!   that spans several periods only the current one is sent: the latest week is what an owner
//!   reads, three stale reports in a row are noise.
//! - **First start**: a shop with no recorded period records the current one without sending,
//!   so installing supportwatch on a Wednesday does not send a report of an empty week.
//! - **What**: [`content`] builds it from the roll-ups and incidents of the week before the
//!   period's start, plus the last certificate expiries of the shop's checks and fills of the
//!   shop's mailboxes (those its checks deliver to) that the store keeps.

pub mod content;

pub use crate::notify::DigestMessage;
use crate::notify::{NotifierSpec, ServiceSpec};
use crate::value::{Channel, Dur};
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// The `digest:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    /// Weekday and local time it is sent, `Mon 09:00`.
    pub every: String,
    /// IANA zone of `every` and of the times in the digest (default: the shop's alert zone).
    pub timezone: Option<String>,
    /// Notifiers it goes through, each once per shop.
    pub notifiers: Vec<String>,
    /// Shops it is sent for (default: every shop of the config).
    #[serde(default)]
    pub shops: Vec<String>,
    /// The owner's targets per channel: the p95 latency (delivery, first reply, ring) the
    /// channel should stay within.
    #[serde(default)]
    pub targets: BTreeMap<Channel, Dur>,
}

/// Longest target accepted: a week, the digest's own period.
const MAX_TARGET: Duration = Duration::from_secs(7 * 86_400);

impl DigestConfig {
    /// Every problem of the section, given the declared notifiers and the shops of the checks.
    pub fn problems(
        &self,
        notifiers: &BTreeMap<String, NotifierSpec>,
        shops: &[&str],
    ) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = Every::parse(&self.every) {
            out.push(format!("digest.every: {e}"));
        }
        if let Some(zone) = &self.timezone
            && TimeZone::get(zone).is_err()
        {
            out.push(format!(
                "digest.timezone: unknown time zone `{zone}`; use an IANA name such as \
                 Europe/Moscow"
            ));
        }
        if self.notifiers.is_empty() {
            out.push("digest.notifiers: empty; name at least one notifier to send it".into());
        }
        for name in &self.notifiers {
            match notifiers.get(name).map(|n| &n.service) {
                None => out.push(format!(
                    "digest.notifiers: no notifier `{name}` under notifiers: (declared: {})",
                    known(notifiers.keys().map(String::as_str))
                )),
                Some(ServiceSpec::Alertmanager(_)) => out.push(format!(
                    "digest.notifiers: `{name}` is an alertmanager notifier, which carries alerts \
                     only; use a telegram, email, slack or webhook notifier"
                )),
                Some(
                    ServiceSpec::Telegram(_)
                    | ServiceSpec::Email(_)
                    | ServiceSpec::Webhook(_)
                    | ServiceSpec::Slack(_),
                ) => {}
            }
        }
        for shop in &self.shops {
            if !shops.contains(&shop.as_str()) {
                out.push(format!(
                    "digest.shops: no check belongs to shop `{shop}` (shops: {})",
                    known(shops.iter().copied())
                ));
            }
        }
        for (channel, target) in &self.targets {
            if target.get().is_zero() || target.get() > MAX_TARGET {
                out.push(format!(
                    "digest.targets.{channel}: {target} is out of range; use between 1s and 7d"
                ));
            }
        }
        out
    }
}

fn known<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// A weekday and a local time: when a digest is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Every {
    weekday: Weekday,
    hour: i8,
    minute: i8,
}

impl Every {
    /// Parses `Mon 09:00` (English weekday, three letters or whole, any case; 24-hour time).
    pub fn parse(text: &str) -> Result<Every, String> {
        let bad = || {
            format!("`{text}` is not a weekday and a time; write e.g. `Mon 09:00` (24-hour time)")
        };
        let mut parts = text.split_whitespace();
        let (Some(day), Some(time), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let weekday = crate::hours::weekday(day).map_err(|_| bad())?;
        let (h, m) = time.split_once(':').ok_or_else(bad)?;
        let hour: i8 = h.parse().map_err(|_| bad())?;
        let minute: i8 = m.parse().map_err(|_| bad())?;
        if !(0..24).contains(&hour) || !(0..60).contains(&minute) || m.len() != 2 {
            return Err(bad());
        }
        Ok(Every {
            weekday,
            hour,
            minute,
        })
    }

    /// Start (unix seconds) of the period `now` is in: the latest occurrence at or before
    /// `now`, in `zone` (a time a DST change skips is taken as the moment after the gap).
    pub fn period_start(&self, now: SystemTime, zone: &TimeZone) -> i64 {
        let now = jiff::Timestamp::try_from(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let today = now.to_zoned(zone.clone()).date();
        let back = i64::from(
            (today.weekday().to_monday_zero_offset() - self.weekday.to_monday_zero_offset())
                .rem_euclid(7),
        );
        for extra in [0, 7, 14] {
            let Ok(day) = today.checked_sub(jiff::Span::new().days(back + extra)) else {
                continue;
            };
            let Ok(at) = day.at(self.hour, self.minute, 0, 0).to_zoned(zone.clone()) else {
                continue;
            };
            if at.timestamp() <= now {
                return at.timestamp().as_second();
            }
        }
        now.as_second() - 7 * 86_400
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        let ts: jiff::Timestamp = text.parse().expect("timestamp");
        SystemTime::from(ts)
    }

    #[test]
    fn periods_start_at_the_latest_occurrence_in_the_zone() {
        let every = Every::parse("Mon 09:00").expect("parses");
        let moscow = TimeZone::get("Europe/Moscow").expect("zone");
        // Monday 7 Dec 2026, 09:00 Moscow is 06:00 UTC.
        let monday = at("2026-12-07T06:00:00Z");
        let start = jiff::Timestamp::try_from(monday).expect("ts").as_second();
        assert_eq!(every.period_start(monday, &moscow), start);
        assert_eq!(
            every.period_start(at("2026-12-07T05:59:59Z"), &moscow),
            start - 7 * 86_400
        );
        assert_eq!(
            every.period_start(at("2026-12-13T20:00:00Z"), &moscow),
            start
        );
        assert_eq!(Every::parse("sunday 23:59").map(|e| e.minute), Ok(59));
        for bad in [
            "Mon",
            "Mon 9",
            "Mon 24:00",
            "Mon 09:60",
            "Lun 09:00",
            "Mon 09:00 x",
        ] {
            let err = Every::parse(bad).expect_err(bad);
            assert!(err.contains("Mon 09:00"), "{err}");
        }
    }
}
