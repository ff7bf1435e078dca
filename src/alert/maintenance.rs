//! Maintenance windows: when results are recorded but nobody is notified.
//!
//! Two forms: a weekly range in the `active_hours` syntax (`Sun 02:00-04:00 Europe/Moscow`) for
//! routine work, and a one-off `{ from, to }` pair of RFC 3339 times for a planned migration.

use crate::hours::ActiveHours;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::SystemTime;

/// One maintenance window.
#[derive(Clone)]
pub enum Maintenance {
    /// Every week at the same times.
    Weekly(ActiveHours),
    /// Once, between two instants.
    Once {
        /// Start, inclusive.
        from: SystemTime,
        /// End, exclusive.
        to: SystemTime,
    },
}

impl Maintenance {
    /// Whether `at` falls inside the window.
    pub fn contains(&self, at: SystemTime) -> bool {
        match self {
            Maintenance::Weekly(hours) => hours.contains(at),
            Maintenance::Once { from, to } => *from <= at && at < *to,
        }
    }
}

impl fmt::Debug for Maintenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Maintenance::Weekly(h) => write!(f, "weekly {h:?}"),
            Maintenance::Once { from, to } => write!(
                f,
                "{} to {}",
                humantime::format_rfc3339_seconds(*from),
                humantime::format_rfc3339_seconds(*to)
            ),
        }
    }
}

fn instant(text: &str) -> Result<SystemTime, String> {
    let ts: jiff::Timestamp = text.parse().map_err(|e| {
        format!("`{text}` is not a time with an offset, e.g. `2026-12-01T02:00:00+03:00`: {e}")
    })?;
    Ok(SystemTime::from(ts))
}

impl<'de> Deserialize<'de> for Maintenance {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Weekly(String),
            Once { from: String, to: String },
        }
        let raw = Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "maintenance: write a weekly range like `Sun 02:00-04:00 Europe/Moscow` or \
                 `{ from: 2026-12-01T02:00:00+03:00, to: 2026-12-01T06:00:00+03:00 }`",
            )
        })?;
        match raw {
            Raw::Weekly(text) => ActiveHours::parse(&text)
                .map(Maintenance::Weekly)
                .map_err(|e| serde::de::Error::custom(format!("maintenance: {e}"))),
            Raw::Once { from, to } => {
                let from = instant(&from).map_err(serde::de::Error::custom)?;
                let to = instant(&to).map_err(serde::de::Error::custom)?;
                if to <= from {
                    return Err(serde::de::Error::custom(
                        "maintenance: `to` must be after `from`",
                    ));
                }
                Ok(Maintenance::Once { from, to })
            }
        }
    }
}

/// Whether any window contains `at`.
pub fn any_contains(windows: &[Maintenance], at: SystemTime) -> bool {
    windows.iter().any(|w| w.contains(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Maintenance, String> {
        serde_saphyr::from_str::<Maintenance>(yaml).map_err(|e| e.to_string())
    }

    fn at(rfc3339: &str) -> SystemTime {
        instant(rfc3339).expect("test time")
    }

    #[test]
    fn weekly_and_once() {
        let weekly = parse("\"Sun 02:00-04:00 Europe/Moscow\"").expect("weekly");
        assert!(weekly.contains(at("2026-11-29T02:30:00+03:00")));
        assert!(!weekly.contains(at("2026-11-29T04:00:00+03:00")));
        let once =
            parse("{ from: \"2026-12-01T02:00:00+03:00\", to: \"2026-12-01T06:00:00+03:00\" }")
                .expect("once");
        assert!(once.contains(at("2026-12-01T05:59:59+03:00")));
        assert!(!once.contains(at("2026-12-01T06:00:00+03:00")));
        assert!(!once.contains(at("2026-12-01T01:59:59+03:00")));
    }

    #[test]
    fn errors_say_what_to_write() {
        let e = parse("{ from: \"2026-12-01T02:00:00+03:00\", to: \"2026-12-01T01:00:00+03:00\" }")
            .expect_err("reversed");
        assert!(e.contains("`to` must be after `from`"), "{e}");
        let e = parse("\"Sunday-ish 2-4\"").expect_err("nonsense");
        assert!(e.contains("maintenance"), "{e}");
        let e = parse("{ from: \"tomorrow\", to: \"later\" }").expect_err("no offset");
        assert!(e.contains("not a time with an offset"), "{e}");
    }
}
