//! Human durations in config files: `500ms`, `30s`, `5m`, `2h`, `21d`, or a sum such as `1h30m`.
//!
//! A bare number is refused on purpose: `timeout: 30` could mean seconds or milliseconds, and a
//! monitoring tool that guesses wrong pages people at night.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A duration read from config; displays in the same notation it accepts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// Builds from whole seconds.
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    /// Builds from milliseconds.
    pub const fn millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    /// The std duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

/// The longest duration any config field accepts (ten years). Fields have tighter ranges of their
/// own; this bound is what makes `Instant + duration` and timer arithmetic safe everywhere.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Parses `500ms`, `30s`, `5m`, `2h`, `21d` and sums like `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration: write e.g. `30s`".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration `{s}`: expected a number, e.g. `30s`"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration `{s}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "invalid duration `{s}`: add a unit (ms, s, m, h, d), e.g. `{number}s`"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration `{s}`: unknown unit `{other}`, expected one of ms, s, m, h, d"
                ));
            }
        };
        let too_large = || {
            format!(
                "invalid duration `{s}`: longer than the {} a config duration may be",
                Dur(MAX_DURATION)
            )
        };
        let part = number.checked_mul(millis_per_unit).ok_or_else(too_large)?;
        total = total
            .checked_add(Duration::from_millis(part))
            .filter(|t| *t <= MAX_DURATION)
            .ok_or_else(too_large)?;
    }
    Ok(total)
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let units: [(u128, &str); 5] = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
            (1, "ms"),
        ];
        if ms == 0 {
            return f.write_str("0s");
        }
        for (size, unit) in units {
            if ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_sums() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(
            parse_duration("21d").unwrap(),
            Duration::from_secs(21 * 86400)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn refuses_bare_numbers_and_unknown_units() {
        assert!(parse_duration("30").unwrap_err().contains("add a unit"));
        assert!(
            parse_duration("3w")
                .unwrap_err()
                .contains("unknown unit `w`")
        );
        assert!(
            parse_duration("s")
                .unwrap_err()
                .contains("expected a number")
        );
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn refuses_sums_and_parts_that_overflow() {
        for text in [
            "18446744073709551615d",
            "18446744073709551615ms18446744073709551615ms",
            "99999999999999999999s",
            "3651d",
            "3650d1ms",
        ] {
            let e = parse_duration(text).unwrap_err();
            assert!(e.contains(&format!("`{text}`")), "{text}: {e}");
        }
        // Each part fits; their sum overflows `Duration` itself.
        let many = "18446744073709551615ms".repeat(1100);
        assert!(
            parse_duration(&many)
                .unwrap_err()
                .contains("longer than the 3650d")
        );
        assert_eq!(parse_duration("3650d").unwrap(), MAX_DURATION);
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        assert_eq!(Dur::millis(1500).to_string(), "1500ms");
        assert_eq!(Dur::secs(300).to_string(), "5m");
        assert_eq!(Dur::secs(21 * 86400).to_string(), "21d");
    }
}
