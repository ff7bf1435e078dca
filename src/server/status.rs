//! The status page for shop owners (`/status`, `/status/shop/NAME`) and its ops view
//! (`/status/check/NAME`, `/status/evidence/…`), rendered on the server from the run history's
//! roll-ups: no JavaScript, readable on a phone.
//!
//! Who sees what is decided here, before anything is read: a shop is listed only when
//! `status_page.shops` names it; `public: true` shows it to anyone, `token:` to whoever brings
//! `?token=` (or passes the server's basic auth); ops pages need the server's basic auth when it
//! is configured. Pages carry no secret: tokens are compared, never echoed, and check reasons are
//! scrubbed of configured secrets and of URLs (which may point inside the shop's network).

mod evidence;
mod render;

use super::auth::BasicAuth;
use crate::alert::Maintenance;
use crate::alert::store::Store;
pub use crate::config::status_page::{ShopAccess, StatusPageConfig};
use crate::notify::Language;
use crate::value::Channel;
use crate::value::redact::Redactor;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// One check as the page needs it.
#[derive(Debug, Clone)]
pub struct PageCheck {
    /// Check name.
    pub name: String,
    /// Shop label.
    pub shop: String,
    /// Support channel.
    pub channel: Channel,
    /// Maintenance windows that apply to it (global and its own).
    pub maintenance: Vec<Maintenance>,
    /// Mailboxes its deliveries are proven in: they belong to its shop.
    pub mailboxes: Vec<String>,
}

/// Everything the pages read: the store, and the config's part, replaced on each reload.
pub struct StatusPage {
    store: Arc<Store>,
    /// The config's part; a page takes the one in force when it starts.
    setup: RwLock<Arc<PageSetup>>,
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
    /// Store reads made, for tests that pin the work a page costs.
    reads: AtomicU64,
    /// Roll-up rows read, likewise.
    rows: AtomicU64,
}

/// What [`StatusPage::new`] needs besides the store: the `status_page:` section and what the
/// pages need of the rest of the config.
pub struct PageSetup {
    /// `status_page:`.
    pub config: StatusPageConfig,
    /// Every check.
    pub checks: Vec<PageCheck>,
    /// `alerting.shop_timezones`.
    pub zones: BTreeMap<String, String>,
    /// `alerting.timezone`.
    pub default_zone: Option<String>,
    /// `browser.artifacts.dir`: the only files `/status/evidence/` serves.
    pub artifacts: PathBuf,
    /// Scrubs configured secrets from check reasons.
    pub redactor: Redactor,
}

impl PageSetup {
    /// The IANA zone of `shop`'s times.
    pub(super) fn zone(&self, shop: &str) -> Option<&str> {
        self.zones
            .get(shop)
            .map(String::as_str)
            .or(self.default_zone.as_deref())
    }
}

impl StatusPage {
    /// A page over `store`, reading the time from `clock`.
    pub fn new(
        store: Arc<Store>,
        setup: PageSetup,
        clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
    ) -> StatusPage {
        StatusPage {
            store,
            setup: RwLock::new(Arc::new(setup)),
            clock,
            reads: AtomicU64::new(0),
            rows: AtomicU64::new(0),
        }
    }

    /// Puts a reloaded config's `status_page:` section, checks, zones and secrets in force;
    /// pages being made finish with the one they started with.
    pub fn apply(&self, setup: PageSetup) {
        // A poisoned lock only means a panic elsewhere while swapping an Arc; the value is whole.
        *self.setup.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(setup);
    }

    /// The config's part in force now.
    pub(super) fn setup(&self) -> Arc<PageSetup> {
        self.setup.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Store reads made by pages so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Roll-up rows read by pages so far.
    pub fn rows_read(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    fn rows(&self, n: usize) {
        self.rows.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The shops' index page.
    pub fn index_html(&self, lang: Language, ops: bool) -> String {
        let setup = self.setup();
        let shops: Vec<&str> = setup
            .config
            .shops
            .iter()
            .filter(|(_, access)| ops || access.public)
            .map(|(name, _)| name.as_str())
            .collect();
        render::index(lang, &shops)
    }

    /// One shop's page; `None` when the store cannot be read.
    pub fn shop_html(&self, shop: &str, lang: Language) -> Option<String> {
        render::shop(self, &self.setup(), shop, lang)
            .map_err(|e| tracing::warn!(error = %e, "status page: cannot read the history"))
            .ok()
    }

    /// One check's ops page; `None` for an unknown check or an unreadable store.
    pub fn check_html(&self, check: &str, lang: Language) -> Option<String> {
        let setup = self.setup();
        let check = setup.checks.iter().find(|c| c.name == check)?;
        render::check(self, &setup, check, lang)
            .map_err(|e| tracing::warn!(error = %e, "status page: cannot read the history"))
            .ok()
    }
}

/// The language a request asks for: the first of `ru`/`en` by `Accept-Language` weight, else
/// `fallback`.
pub fn language(headers: &HeaderMap, fallback: Language) -> Language {
    let Some(accept) = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
    else {
        return fallback;
    };
    let mut best: Option<(f32, Language)> = None;
    for part in accept.split(',') {
        let mut pieces = part.trim().split(';');
        let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = pieces
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let lang = match tag.split('-').next() {
            Some("ru") => Language::Ru,
            Some("en") => Language::En,
            _ => continue,
        };
        if best.is_none_or(|(b, _)| q > b) {
            best = Some((q, lang));
        }
    }
    best.map(|(_, l)| l).unwrap_or(fallback)
}

#[derive(Clone)]
struct Served {
    page: Arc<StatusPage>,
    auth: Option<Arc<BasicAuth>>,
}

/// The status routes; they answer 404 while `status_page.enabled` is off (a reload may turn it
/// on or off). `auth` is the server's basic auth.
pub fn router(page: Arc<StatusPage>, auth: Option<Arc<BasicAuth>>) -> Router {
    Router::new()
        .route("/status", get(index))
        .route("/status/shop/{name}", get(shop))
        .route("/status/check/{name}", get(check))
        .route("/status/evidence/{*path}", get(evidence::serve))
        .with_state(Served { page, auth })
}

/// Whether the request passes the server's basic auth; `None` when none is configured.
async fn ops_auth(served: &Served, headers: &HeaderMap) -> Option<bool> {
    let auth = served.auth.as_ref()?;
    let presented = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    Some(auth.allows(presented).await)
}

/// `None` when ops pages may be shown; else the 401 to answer.
async fn ops_refusal(served: &Served, headers: &HeaderMap) -> Option<Response> {
    match ops_auth(served, headers).await {
        None | Some(true) => None,
        Some(false) => Some(unauthorized()),
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"supportwatch\"")],
        "unauthorized\n",
    )
        .into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn html(body: String) -> Response {
    (
        [
            // No script runs on these pages, and they are framed by nobody.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
                 frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(body),
    )
        .into_response()
}

/// `None` when `status_page.enabled` (as last loaded) holds; else the 404 to answer.
fn disabled(served: &Served) -> Option<Response> {
    (!served.page.setup().config.enabled).then(not_found)
}

async fn index(State(served): State<Served>, headers: HeaderMap) -> Response {
    if let Some(off) = disabled(&served) {
        return off;
    }
    let lang = language(
        &headers,
        served.page.setup().config.language.unwrap_or_default(),
    );
    // Ops (basic auth passed) see every listed shop; others only the public ones.
    let ops = ops_auth(&served, &headers).await == Some(true);
    html(served.page.index_html(lang, ops))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Constant-time comparison: the time a refusal takes says nothing about the token.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn shop(
    State(served): State<Served>,
    Path(name): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    let setup = served.page.setup();
    if !setup.config.enabled {
        return not_found();
    }
    let Some(access) = setup.config.shops.get(&name) else {
        return not_found();
    };
    let by_token = match (&access.token, &query.token) {
        (Some(expected), Some(given)) => same(expected.expose(), given),
        _ => false,
    };
    if !access.public && !by_token && ops_auth(&served, &headers).await != Some(true) {
        return unauthorized();
    }
    let lang = language(
        &headers,
        served.page.setup().config.language.unwrap_or_default(),
    );
    let page = served.page.clone();
    // SQLite reads block: off the async workers.
    match tokio::task::spawn_blocking(move || page.shop_html(&name, lang)).await {
        Ok(Some(body)) => html(body),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "history unavailable\n").into_response(),
    }
}

async fn check(
    State(served): State<Served>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(off) = disabled(&served) {
        return off;
    }
    if let Some(refused) = ops_refusal(&served, &headers).await {
        return refused;
    }
    let lang = language(
        &headers,
        served.page.setup().config.language.unwrap_or_default(),
    );
    let page = served.page.clone();
    // SQLite reads block: off the async workers.
    match tokio::task::spawn_blocking(move || page.check_html(&name, lang)).await {
        Ok(Some(body)) => html(body),
        _ => not_found(),
    }
}

impl PageSetup {
    /// What the pages need from a prepared config; its redactor scrubs the reasons.
    pub fn from_prepared(prepared: &crate::assemble::Prepared) -> PageSetup {
        let config = &prepared.config;
        let redactor = (*prepared.redactor).clone();
        let checks = prepared
            .checks
            .iter()
            .map(|prepared| {
                let check = &prepared.check;
                let mut maintenance = config.alerting.maintenance.clone();
                if let Some(alert) = &check.alert {
                    maintenance.extend(alert.maintenance.iter().cloned());
                }
                PageCheck {
                    name: check.name.clone(),
                    shop: check
                        .labels
                        .get("shop")
                        .cloned()
                        .unwrap_or_else(|| crate::outcome::DEFAULT_SHOP.to_string()),
                    channel: check.channel,
                    maintenance,
                    mailboxes: check.mailboxes().into_iter().map(String::from).collect(),
                }
            })
            .collect();
        PageSetup {
            config: config.status_page.clone(),
            checks,
            zones: config.alerting.shop_timezones.clone(),
            default_zone: config.alerting.timezone.clone(),
            artifacts: config.browser.artifacts.dir.clone(),
            redactor,
        }
    }
}
