//! Who a check is, as everything that reports on it sees it: name, kind, channel and labels.
//!
//! Metrics, alert routes and alert texts need only this much of a check; taking this borrowed view
//! instead of the whole config entry keeps them below the config layer.

use crate::value::{Channel, Kind};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A check's static labels, sorted by name. Shared: the config, alerting and metrics all hold the
/// same map, so 10,000 checks keep one copy of their labels, not one per consumer.
pub type Labels = Arc<BTreeMap<String, String>>;

/// The shop label value for checks that name none.
pub const DEFAULT_SHOP: &str = "default";

/// A check's identity, borrowed from its config.
#[derive(Clone, Copy, Debug)]
pub struct CheckIdentity<'a> {
    /// Unique name.
    pub name: &'a str,
    /// The check's kind.
    pub kind: Kind,
    /// The support channel it proves.
    pub channel: Channel,
    /// Static labels, `shop` among them.
    pub labels: &'a Labels,
}

impl<'a> CheckIdentity<'a> {
    /// The `shop` label.
    pub fn shop(&self) -> &'a str {
        self.labels
            .get("shop")
            .map(String::as_str)
            .unwrap_or(DEFAULT_SHOP)
    }
}
