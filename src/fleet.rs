//! Running as one instance of a fleet: `--shard I/N` and `--location NAME`.
//!
//! A fleet has no coordinator of its own. Every instance loads and validates the whole config,
//! then keeps the checks it owns: those whose name hashes into its shard (a fixed FNV-1a 64 hash,
//! the same on every platform and version, so N instances agree on the split without talking)
//! and whose `locations:` (if any) include its location. The instance's location becomes a
//! `location` label on every check, so every series and every alert carries it; Prometheus and
//! Alertmanager do the rest (see the README, "Running a fleet").

use crate::assemble::Prepared;
use crate::config::{Check, ConfigError, ConfigErrors};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// The most shards a fleet may have.
pub const MAX_SHARDS: u32 = 1024;

/// The label the instance's location is exported as.
pub const LOCATION_LABEL: &str = "location";

/// Why a `--shard` or `--location` value cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    /// Not `I/N` or `auto/N`.
    #[error("`{0}` is not a shard: write I/N (e.g. 0/3, the first of three) or auto/N")]
    Syntax(String),
    /// `N` out of range.
    #[error("`{0}`: the number of shards must be between 1 and {MAX_SHARDS}")]
    Count(String),
    /// `I` not below `N`.
    #[error("`{0}`: the shard index counts from 0 and must be below the number of shards")]
    Index(String),
    /// `auto/N` without an ordinal in the pod name.
    #[error(
        "`{0}`: auto takes the shard from the trailing -<number> of POD_NAME or HOSTNAME (a \
         StatefulSet pod such as supportwatch-2), but {1}"
    )]
    NoOrdinal(String, String),
    /// A location that cannot be a label value everywhere.
    #[error(
        "location `{0}`: use 1 to 64 letters, digits, `_`, `-` or `.` (e.g. msk, vvo, eu-west-1)"
    )]
    Location(String),
}

/// One shard of N: this instance runs the checks whose name hashes to `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index, below `count`.
    pub index: u32,
    /// Number of shards in the fleet.
    pub count: u32,
}

impl Shard {
    /// Parses `I/N`, or `auto/N` with `I` from the trailing `-<digits>` of `POD_NAME` (else
    /// `HOSTNAME`) as `env` reports them.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, PlacementError> {
        let syntax = || PlacementError::Syntax(text.to_string());
        let (index, count) = text.trim().split_once('/').ok_or_else(syntax)?;
        let count: u32 = count.trim().parse().map_err(|_| syntax())?;
        if !(1..=MAX_SHARDS).contains(&count) {
            return Err(PlacementError::Count(text.to_string()));
        }
        let index = match index.trim() {
            "auto" => ordinal(text, &env)?,
            digits => digits.parse().map_err(|_| syntax())?,
        };
        if index >= count {
            return Err(PlacementError::Index(text.to_string()));
        }
        Ok(Shard { index, count })
    }

    /// Whether the check named `name` belongs to this shard.
    pub fn owns(&self, name: &str) -> bool {
        shard_of(name, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The ordinal of a StatefulSet pod: the digits after the last `-` of `POD_NAME`, else of
/// `HOSTNAME`.
fn ordinal(text: &str, env: &impl Fn(&str) -> Option<String>) -> Result<u32, PlacementError> {
    let mut seen = Vec::new();
    for var in ["POD_NAME", "HOSTNAME"] {
        match env(var).filter(|v| !v.is_empty()) {
            Some(name) => {
                let n = name
                    .rsplit_once('-')
                    .filter(|(_, d)| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|(_, d)| d.parse().ok());
                if let Some(n) = n {
                    return Ok(n);
                }
                seen.push(format!("{var}={name} has none"));
            }
            None => seen.push(format!("{var} is not set")),
        }
    }
    Err(PlacementError::NoOrdinal(
        text.to_string(),
        seen.join(" and "),
    ))
}

/// FNV-1a, 64 bits (offset basis 0xcbf29ce484222325, prime 0x100000001b3), over the UTF-8 bytes of
/// `name`. Fixed forever: changing it would move checks between the shards of a running fleet.
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The shard (of `count`) that runs the check named `name`: [`name_hash`] modulo `count`.
pub fn shard_of(name: &str, count: u32) -> u32 {
    // The remainder is below `count`, itself a u32.
    (name_hash(name) % u64::from(count.max(1))) as u32
}

/// Checks a location name (the `--location` value and the entries of `locations:`).
pub fn validate_location(name: &str) -> Result<(), PlacementError> {
    if crate::config::is_location(name) {
        Ok(())
    } else {
        Err(PlacementError::Location(name.to_string()))
    }
}

/// Where this instance stands in its fleet. The default (no shard, no location) runs everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// `--shard`: run only this shard's checks.
    pub shard: Option<Shard>,
    /// `--location`: label everything with it; skip checks limited to other locations.
    pub location: Option<String>,
}

impl Placement {
    /// Whether this instance runs `check`.
    pub fn owns(&self, check: &Check) -> bool {
        let in_shard = self.shard.is_none_or(|s| s.owns(&check.name));
        let here = match (&self.location, &check.locations) {
            (Some(location), Some(allowed)) => allowed.iter().any(|l| l == location),
            (None, _) | (_, None) => true,
        };
        in_shard && here
    }

    /// Which instances run `check` (its shard, its locations), for the hooks of other shards.
    pub fn owner_of(&self, check: &Check) -> String {
        let mut whose = Vec::new();
        if let Some(shard) = self.shard {
            whose.push(format!(
                "shard {}/{}",
                shard_of(&check.name, shard.count),
                shard.count
            ));
        }
        if let Some(locations) = &check.locations {
            whose.push(format!("locations {}", locations.join(", ")));
        }
        whose.join(", ")
    }

    /// The labels every series of the instance carries besides the checks' own.
    pub fn instance_labels(&self) -> Vec<(String, String)> {
        self.location
            .iter()
            .map(|l| (LOCATION_LABEL.to_string(), l.clone()))
            .collect()
    }

    /// Narrows `prepared` to what this instance runs: the checks it owns, each labelled with the
    /// instance's location; phone accounts only other instances' checks use are dropped, so two
    /// instances never hold one registration. Returns the webhooks that only other instances'
    /// checks wait on, each with who serves it. A check whose own `location` label disagrees with
    /// `--location` is an error: the series would lie about where they were measured.
    pub fn apply(&self, prepared: &mut Prepared) -> Result<BTreeMap<String, String>, ConfigErrors> {
        let mut errors = Vec::new();
        if let Some(location) = &self.location {
            // Only the checks it runs: one limited to another location never gets this label.
            for c in prepared.checks.iter().filter(|c| self.owns(&c.check)) {
                if let Some(own) = c.check.labels.get(LOCATION_LABEL)
                    && own != location
                {
                    errors.push(ConfigError {
                        file: Some(c.check.origin.file.clone()),
                        position: Some((c.check.origin.line, c.check.origin.column)),
                        check: Some(c.check.name.clone()),
                        message: format!(
                            "label location=`{own}` contradicts --location {location}; the \
                             instance's location labels every series, so drop the label (limit \
                             the check with `locations: [{own}]` instead)"
                        ),
                    });
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let limited = prepared
            .checks
            .iter()
            .filter(|c| c.check.locations.is_some())
            .count();
        if self.location.is_none() && limited > 0 {
            prepared.warnings.push(format!(
                "{limited} check(s) have `locations:` but this instance has no --location, so it \
                 runs them all; start it with --location NAME (or SUPPORTWATCH_LOCATION) to run \
                 only those meant for its location"
            ));
        }
        let (owned, others): (Vec<_>, Vec<_>) = std::mem::take(&mut prepared.checks)
            .into_iter()
            .partition(|c| self.owns(&c.check));
        let hook_of = |c: &Check| {
            let (deliver, _) = c.spec.deliveries();
            deliver.and_then(|d| match d.target() {
                Ok(crate::deliver::Target::Webhook(hook)) => Some(hook.to_string()),
                _ => None,
            })
        };
        let ours: BTreeSet<String> = owned.iter().filter_map(|c| hook_of(&c.check)).collect();
        let mut elsewhere: BTreeMap<String, String> = BTreeMap::new();
        for c in &others {
            if let Some(hook) = hook_of(&c.check).filter(|h| !ours.contains(h)) {
                let owner = format!("check {} ({})", c.check.name, self.owner_of(&c.check));
                elsewhere
                    .entry(hook)
                    .and_modify(|o| {
                        o.push_str("; ");
                        o.push_str(&owner)
                    })
                    .or_insert(owner);
            }
        }
        let phones_used: BTreeSet<&str> = owned.iter().flat_map(|c| phones_of(&c.check)).collect();
        let phones_elsewhere: BTreeSet<String> = others
            .iter()
            .flat_map(|c| phones_of(&c.check))
            .filter(|p| !phones_used.contains(p))
            .map(str::to_string)
            .collect();
        prepared
            .config
            .phones
            .retain(|name, _| !phones_elsewhere.contains(name));
        prepared.checks = owned
            .into_iter()
            .map(|c| match &self.location {
                Some(location) if c.check.labels.get(LOCATION_LABEL) != Some(location) => {
                    let mut labels = (*c.check.labels).clone();
                    labels.insert(LOCATION_LABEL.to_string(), location.clone());
                    Arc::new(c.relabelled(Arc::new(labels)))
                }
                _ => c,
            })
            .collect();
        Ok(elsewhere)
    }
}

/// The phone accounts a check uses: `phone: NAME` of a phone check, `deliver: { call: NAME }`.
fn phones_of(check: &Check) -> Vec<&str> {
    let mut names = Vec::new();
    if let crate::config::CheckSpec::Phone(spec) = &check.spec
        && let Some(name) = &spec.phone
    {
        names.push(name.as_str());
    }
    let (deliver, _) = check.spec.deliveries();
    if let Some(name) = deliver.and_then(|d| d.call.as_ref()) {
        names.push(name.as_str());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_hash_is_fnv1a_64_and_never_changes() {
        // The published FNV-1a 64 test vectors, and the shards of a few check names: a change
        // here moves checks between the shards of every running fleet.
        assert_eq!(name_hash(""), 0xcbf29ce484222325);
        assert_eq!(name_hash("a"), 0xaf63dc4c8601ec8c);
        assert_eq!(name_hash("foobar"), 0x85944171f73967e8);
        assert_eq!(name_hash("support-form"), 0xd3c4a47a8cf188c5);
        assert_eq!(shard_of("foobar", 3), 0);
        assert_eq!(shard_of("support-form", 3), 0);
        assert_eq!(shard_of("shop-000", 3), 1);
        assert_eq!(shard_of("a", 3), 1);
        assert_eq!(shard_of("anything", 1), 0);
    }

    #[test]
    fn shards_parse_from_numbers_and_from_the_pod_name() {
        let none = env(&[]);
        assert_eq!(Shard::parse("2/3", &none), Ok(Shard { index: 2, count: 3 }));
        let pod = env(&[("POD_NAME", "supportwatch-2"), ("HOSTNAME", "node-7")]);
        assert_eq!(
            Shard::parse("auto/3", &pod),
            Ok(Shard { index: 2, count: 3 })
        );
        let host = env(&[("HOSTNAME", "supportwatch-1")]);
        assert_eq!(
            Shard::parse("auto/3", &host),
            Ok(Shard { index: 1, count: 3 })
        );
        for (bad, why) in [
            ("3/3", PlacementError::Index("3/3".into())),
            ("0/0", PlacementError::Count("0/0".into())),
            ("0/1025", PlacementError::Count("0/1025".into())),
            ("1", PlacementError::Syntax("1".into())),
            ("-1/3", PlacementError::Syntax("-1/3".into())),
            ("a/3", PlacementError::Syntax("a/3".into())),
        ] {
            assert_eq!(Shard::parse(bad, &none), Err(why), "{bad}");
        }
        let err = Shard::parse("auto/3", env(&[("HOSTNAME", "box")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`auto/3`: auto takes the shard from the trailing -<number> of POD_NAME or HOSTNAME \
             (a StatefulSet pod such as supportwatch-2), but POD_NAME is not set and \
             HOSTNAME=box has none"
        );
        assert_eq!(
            Shard::parse("auto/2", &pod),
            Err(PlacementError::Index("auto/2".into()))
        );
    }

    #[test]
    fn locations_are_label_friendly_names() {
        assert!(validate_location("vvo").is_ok());
        assert!(validate_location("eu-west-1.a_b").is_ok());
        for bad in ["", "msk vvo", "мск", "a/b", &"x".repeat(65)] {
            assert!(validate_location(bad).is_err(), "{bad}");
        }
    }
}
