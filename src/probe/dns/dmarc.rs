//! DMARC (RFC 7489): the policy record at `_dmarc.<domain>`.
//!
//! A record is a `;`-separated tag list that must begin with `v=DMARC1`. `p=` is required; known
//! tags are checked for valid values and unknown tags are ignored, as the RFC says. Several DMARC
//! records at one name mean none applies (section 6.6.3), so that is an error here too.

use serde::Deserialize;
use std::fmt;

/// What a receiver is asked to do with mail that fails DMARC. Ordered from weakest to strongest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Deliver anyway; monitoring only.
    None,
    /// Treat as suspicious (spam folder).
    Quarantine,
    /// Reject during the SMTP session.
    Reject,
}

impl Policy {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(Policy::None),
            "quarantine" => Some(Policy::Quarantine),
            "reject" => Some(Policy::Reject),
            _ => None,
        }
    }

    /// The tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed DMARC record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmarcRecord {
    /// `p=`.
    pub policy: Policy,
    /// `sp=`, the policy for subdomains.
    pub subdomain_policy: Option<Policy>,
    /// `pct=`, the share of failing mail the policy applies to.
    pub pct: u8,
    /// `rua=` aggregate report addresses.
    pub rua: Vec<String>,
}

impl DmarcRecord {
    /// One line for people: `p=reject`, `p=none (weak: monitoring only), rua=...`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("p={}", self.policy)];
        if self.policy == Policy::None {
            parts[0].push_str(" (weak: monitoring only)");
        }
        if let Some(sp) = self.subdomain_policy {
            parts.push(format!("sp={sp}"));
        }
        if self.pct < 100 {
            parts.push(format!(
                "pct={} (policy applies to part of the mail)",
                self.pct
            ));
        }
        if self.rua.is_empty() {
            parts.push("no rua (no aggregate reports)".into());
        }
        parts.join(", ")
    }
}

/// Splits a record into trimmed `(name, value)` tags; empty tags (a trailing `;`) are skipped.
fn tags(text: &str) -> Result<Vec<(String, &str)>, String> {
    text.split(';')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (name, value) = t
                .split_once('=')
                .ok_or_else(|| format!("`{t}` is not a `tag=value` pair"))?;
            Ok((name.trim().to_ascii_lowercase(), value.trim()))
        })
        .collect()
}

/// Whether a TXT record is a DMARC record: its first tag is `v=DMARC1`.
pub fn is_dmarc(text: &str) -> bool {
    let first = text.split(';').next().unwrap_or_default();
    match first.split_once('=') {
        Some((name, value)) => name.trim().eq_ignore_ascii_case("v") && value.trim() == "DMARC1",
        None => false,
    }
}

/// The DMARC record among the TXT records at `name`: `Ok(None)` without one, an error with several.
pub fn select<'a>(name: &str, txt: &'a [String]) -> Result<Option<&'a str>, String> {
    let found: Vec<&str> = txt
        .iter()
        .map(String::as_str)
        .filter(|t| is_dmarc(t))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(format!(
            "{name} has {} DMARC records, so none applies (RFC 7489)",
            many.len()
        )),
    }
}

impl DmarcRecord {
    /// Parses a record (`v=DMARC1; p=...`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let tags = tags(text)?;
        match tags.first() {
            Some((name, "DMARC1")) if name == "v" => {}
            _ => return Err("does not start with `v=DMARC1`".into()),
        }
        let mut seen: Vec<&str> = Vec::new();
        let mut policy = None;
        let mut record = DmarcRecord {
            policy: Policy::None,
            subdomain_policy: None,
            pct: 100,
            rua: Vec::new(),
        };
        for (name, value) in &tags[1..] {
            if seen.contains(&name.as_str()) {
                return Err(format!("tag `{name}=` appears more than once"));
            }
            seen.push(name);
            let bad = || format!("invalid `{name}={value}`");
            match name.as_str() {
                "v" => return Err("`v=` must come first, and only once".into()),
                "p" => policy = Some(Policy::parse(value).ok_or_else(bad)?),
                "sp" => record.subdomain_policy = Some(Policy::parse(value).ok_or_else(bad)?),
                "pct" => {
                    record.pct = value
                        .parse::<u8>()
                        .ok()
                        .filter(|p| *p <= 100)
                        .ok_or_else(bad)?;
                }
                "adkim" | "aspf" if !matches!(value.to_ascii_lowercase().as_str(), "r" | "s") => {
                    return Err(format!("{}, expected r or s", bad()));
                }
                "ri" => {
                    value.parse::<u32>().map_err(|_| bad())?;
                }
                "rua" | "ruf" => {
                    let uris = uris(value).ok_or_else(bad)?;
                    if name == "rua" {
                        record.rua = uris;
                    }
                }
                // fo, rf and tags from future versions: ignored (section 6.3).
                _ => {}
            }
        }
        record.policy = policy.ok_or("no `p=` tag (the policy is required)")?;
        Ok(record)
    }
}

/// A comma-separated list of URIs, each with a scheme (`mailto:d@example.com`).
fn uris(value: &str) -> Option<Vec<String>> {
    value
        .split(',')
        .map(str::trim)
        .map(|u| {
            let (scheme, rest) = u.split_once(':')?;
            let scheme_ok = scheme.chars().next()?.is_ascii_alphabetic()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            (scheme_ok && !rest.is_empty()).then(|| u.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_typical_record() {
        let r = DmarcRecord::parse(
            "v=DMARC1; p=reject; sp=quarantine; pct=50; rua=mailto:d@shop.test; adkim=s;",
        )
        .unwrap();
        assert_eq!(r.policy, Policy::Reject);
        assert_eq!(r.subdomain_policy, Some(Policy::Quarantine));
        assert_eq!(r.pct, 50);
        assert_eq!(r.rua, vec!["mailto:d@shop.test".to_string()]);
        assert!(r.describe().starts_with("p=reject, sp=quarantine, pct=50"));
    }

    #[test]
    fn none_is_weak_and_policies_order() {
        let r = DmarcRecord::parse("v=DMARC1;p=none").unwrap();
        assert_eq!(r.policy, Policy::None);
        assert!(r.describe().contains("weak"), "{}", r.describe());
        assert!(Policy::None < Policy::Quarantine && Policy::Quarantine < Policy::Reject);
    }

    #[test]
    fn rejects_bad_records() {
        for (record, needle) in [
            ("v=DMARC1; rua=mailto:a@b.test", "no `p=` tag"),
            ("p=reject; v=DMARC1", "v=DMARC1"),
            ("v=DMARC2; p=reject", "v=DMARC1"),
            ("v=DMARC1; p=block", "invalid `p=block`"),
            ("v=DMARC1; p=none; p=reject", "appears more than once"),
            ("v=DMARC1; p=none; pct=150", "invalid `pct=150`"),
            ("v=DMARC1; p=none; adkim=x", "expected r or s"),
            ("v=DMARC1; p=none; rua=d@shop.test", "invalid `rua="),
            ("v=DMARC1; p=none; junk", "not a `tag=value` pair"),
        ] {
            let err = DmarcRecord::parse(record).unwrap_err();
            assert!(err.contains(needle), "{record}: {err}");
        }
        // Unknown tags are ignored.
        assert!(DmarcRecord::parse("v=DMARC1; p=none; np=reject").is_ok());
    }

    #[test]
    fn duplicates_mean_no_policy() {
        let txt = vec![
            "v=DMARC1; p=none".to_string(),
            "v=DMARC1; p=reject".to_string(),
        ];
        let err = select("_dmarc.x.test", &txt).unwrap_err();
        assert!(err.contains("2 DMARC records"), "{err}");
        assert_eq!(
            select("_dmarc.x.test", &txt[..1]).unwrap(),
            Some("v=DMARC1; p=none")
        );
        assert!(!is_dmarc("v=spf1 -all"));
    }
}
