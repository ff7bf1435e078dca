//! The `status_page:` section: whether the daemon serves `/status`, in which language, and who
//! may see each shop (the pages themselves are in `server::status`).

use crate::notify::Language;
use crate::value::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The `status_page:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPageConfig {
    /// Serve `/status` (default false).
    #[serde(default)]
    pub enabled: bool,
    /// Language when the browser asks for neither `ru` nor `en` (default `en`).
    pub language: Option<Language>,
    /// The shops shown, by shop label, and who may see each.
    #[serde(default)]
    pub shops: BTreeMap<String, ShopAccess>,
}

/// Who may see one shop's page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopAccess {
    /// Anyone may see it.
    #[serde(default)]
    pub public: bool,
    /// Whoever brings `?token=` with this value may see it (as may the server's basic auth users).
    pub token: Option<Secret>,
}
