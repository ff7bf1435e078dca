//! Active hours: when a support channel is staffed, e.g. `Mon-Fri 09:00-21:00 Europe/Moscow`.
//!
//! A chat answered by people during office hours answers with an auto-reply at night; a check
//! that knows the hours can expect the right thing at each time. Several ranges may be given, as
//! a YAML list or `;`-separated in one string (`Mon-Fri 09:00-21:00 Europe/Moscow; Sat
//! 10:00-16:00 Europe/Moscow`). A range whose end is before its start runs over midnight
//! (`Fri 22:00-02:00` covers Friday night until Saturday 02:00).
//!
//! Time zones come from `jiff` with its bundled tz database, so the answer does not depend on
//! whether the host (often a slim container) has `/usr/share/zoneinfo`.

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::SystemTime;

/// One or more weekly ranges, each in its own time zone.
#[derive(Clone)]
pub struct ActiveHours {
    ranges: Vec<Range>,
    source: String,
}

#[derive(Clone)]
struct Range {
    /// Indexed by `Weekday::to_monday_zero_offset`.
    days: [bool; 7],
    /// Minutes since midnight; `end` may be 1440 (`24:00`).
    start: u16,
    end: u16,
    tz: TimeZone,
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

impl ActiveHours {
    /// Parses `DAYS HH:MM-HH:MM ZONE`, several `;`-separated. `DAYS` is `Mon-Fri`, `Mon,Wed,Sat`,
    /// `Sat` or `daily`; `ZONE` an IANA name (`Europe/Moscow`) or `UTC`.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_all(&[text])
    }

    fn parse_all(texts: &[&str]) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for part in texts.iter().flat_map(|t| t.split(';')) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            ranges.push(parse_range(part).map_err(|e| format!("active_hours `{part}`: {e}"))?);
        }
        if ranges.is_empty() {
            return Err(
                "active_hours is empty; write e.g. `Mon-Fri 09:00-21:00 Europe/Moscow`".into(),
            );
        }
        Ok(ActiveHours {
            ranges,
            source: texts.join("; "),
        })
    }

    /// Whether `at` falls in any of the ranges.
    pub fn contains(&self, at: SystemTime) -> bool {
        let Ok(ts) = jiff::Timestamp::try_from(at) else {
            // Outside jiff's range (years beyond ±9999): no shop is open then.
            return false;
        };
        self.ranges.iter().any(|r| r.contains(ts))
    }
}

impl Range {
    fn contains(&self, ts: jiff::Timestamp) -> bool {
        let local = ts.to_zoned(self.tz.clone());
        let day = usize::from(local.weekday().to_monday_zero_offset().unsigned_abs());
        let minute =
            u16::from(local.hour().unsigned_abs()) * 60 + u16::from(local.minute().unsigned_abs());
        if self.start < self.end {
            self.days[day] && (self.start..self.end).contains(&minute)
        } else {
            // Over midnight: the evening belongs to the listed day, the small hours to the day
            // before.
            let yesterday = (day + 6) % 7;
            (self.days[day] && minute >= self.start) || (self.days[yesterday] && minute < self.end)
        }
    }
}

fn parse_range(text: &str) -> Result<Range, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [days, times, zone] = words[..] else {
        return Err(
            "expected `DAYS HH:MM-HH:MM ZONE`, e.g. `Mon-Fri 09:00-21:00 Europe/Moscow`".into(),
        );
    };
    let days = parse_days(days)?;
    let (start, end) = times
        .split_once('-')
        .ok_or_else(|| format!("`{times}` is not a time range like 09:00-21:00"))?;
    let (start, end) = (parse_clock(start)?, parse_clock(end)?);
    if start == end {
        return Err(format!("`{times}` is an empty range"));
    }
    if start == 24 * 60 {
        return Err("a range cannot start at 24:00".into());
    }
    let tz = TimeZone::get(zone)
        .map_err(|_| format!("unknown time zone `{zone}`; use an IANA name like Europe/Moscow"))?;
    Ok(Range {
        days,
        start,
        end,
        tz,
    })
}

/// The weekday named `name`: `Mon` … `Sun` or `Monday` … `Sunday`, in any case.
pub fn weekday(name: &str) -> Result<Weekday, String> {
    day_index(name).map(|i| DAYS[i].1)
}

fn day_index(name: &str) -> Result<usize, String> {
    let lower = name.to_ascii_lowercase();
    DAYS.iter()
        .position(|(n, _)| lower.len() >= 3 && (lower == *n || full_name(lower.as_str(), n)))
        .ok_or_else(|| {
            format!("unknown day `{name}`, expected Mon, Tue, Wed, Thu, Fri, Sat or Sun")
        })
}

/// `monday` for `mon`, `tuesday` for `tue`, ...
fn full_name(lower: &str, short: &str) -> bool {
    lower.starts_with(short) && lower.ends_with("day") && lower.len() <= 9
}

fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    if matches!(text.to_ascii_lowercase().as_str(), "daily" | "*") {
        return Ok([true; 7]);
    }
    for item in text.split(',') {
        match item.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day_index(from)?, day_index(to)?);
                // `Fri-Mon` wraps over the weekend.
                let mut d = from;
                loop {
                    days[d] = true;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day_index(item)?] = true,
        }
    }
    Ok(days)
}

fn parse_clock(text: &str) -> Result<u16, String> {
    let bad = || format!("`{text}` is not a time of day like 09:00");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m != 0) || text.len() != 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl fmt::Debug for ActiveHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

impl fmt::Display for ActiveHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for ActiveHours {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let texts = match Raw::deserialize(deserializer)? {
            Raw::One(s) => vec![s],
            Raw::Many(v) => v,
        };
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        ActiveHours::parse_all(&refs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        SystemTime::from(rfc3339.parse::<jiff::Timestamp>().unwrap())
    }

    #[test]
    fn office_hours_in_moscow() {
        let h = ActiveHours::parse("Mon-Fri 09:00-21:00 Europe/Moscow").unwrap();
        // 2026-11-23 is a Monday; Moscow is UTC+3.
        assert!(h.contains(at("2026-11-23T06:00:00Z")));
        assert!(!h.contains(at("2026-11-23T05:59:59Z")));
        assert!(!h.contains(at("2026-11-23T18:00:00Z")));
        assert!(!h.contains(at("2026-11-28T10:00:00Z")), "Saturday");
    }

    #[test]
    fn several_ranges_and_midnight() {
        let h = ActiveHours::parse("Sat 10:00-16:00 UTC; Fri 22:00-02:00 UTC").unwrap();
        assert!(h.contains(at("2026-11-28T11:00:00Z")));
        assert!(h.contains(at("2026-11-27T23:00:00Z")), "Friday night");
        assert!(
            h.contains(at("2026-11-28T01:00:00Z")),
            "small hours of Saturday"
        );
        assert!(!h.contains(at("2026-11-28T03:00:00Z")));
    }

    #[test]
    fn errors_are_precise() {
        let e = |s: &str| ActiveHours::parse(s).unwrap_err();
        assert_eq!(
            e("Mon-Fri 09:00-21:00 Europe/Moskva"),
            "active_hours `Mon-Fri 09:00-21:00 Europe/Moskva`: unknown time zone `Europe/Moskva`; use an IANA name like Europe/Moscow"
        );
        assert!(e("Mon-Fro 09:00-21:00 UTC").contains("unknown day `Fro`"));
        assert!(e("Mon 9:00-25:00 UTC").contains("not a time of day"));
        assert!(e("Mon 09:00-21:00").contains("expected `DAYS HH:MM-HH:MM ZONE`"));
    }
}
