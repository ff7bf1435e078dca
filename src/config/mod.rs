//! Configuration: every `*.yaml` in a directory, merged, checked completely at load.
//!
//! Config is inert data. Everything that can be wrong with it — unknown fields, bad durations,
//! regexes that do not compile, unknown template variables, missing `${ENV}` secrets, duplicate
//! names — is found here and reported together, each problem with `file:line:column` and the
//! check it belongs to. Nothing here touches the network.

mod bounds;
mod error;
mod load;
mod merge;
mod parse;

pub mod status_page;
mod warnings;

pub use bounds::MAX_CONCURRENCY_LIMIT;
pub use error::{ConfigError, ConfigErrors};
pub use load::{load_dir, load_sources};
pub use warnings::warnings;

use crate::outcome::CheckIdentity;
use crate::value::{Channel, Dur, Kind};

use crate::deliver::{AutoReplySpec, DeliverSpec};
use crate::probe::{
    self, dns::DnsSpec, form::FormSpec, http::HttpSpec, mail::MailSpec, tls::TlsSpec,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The whole loaded configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Every check, in file order (files sorted by name).
    pub checks: Vec<Check>,
    /// Mailboxes deliveries are proven in, by name.
    pub mailboxes: BTreeMap<String, crate::mailbox::MailboxSpec>,
    /// SIP accounts `phone` checks send as, by name.
    pub phones: BTreeMap<String, crate::sip::PhoneSpec>,
    /// Webhook receivers (`POST /hooks/NAME`) deliveries can be proven at, by name.
    pub hooks: BTreeMap<String, crate::hooks::HookSpec>,
    /// The browser used by `browser` checks and `form` checks with `via: browser`.
    pub browser: crate::browser::BrowserConfig,
    /// The built-in web server.
    pub server: ServerConfig,
    /// Concurrency limits and shutdown behaviour.
    pub scheduler: SchedulerConfig,
    /// Where alerts go, by name.
    pub notifiers: BTreeMap<String, crate::notify::NotifierSpec>,
    /// When alerts fire and who hears of them.
    pub alerting: crate::alert::AlertingConfig,
    /// The SQLite database with alert state and run history.
    pub storage: crate::alert::StorageConfig,
    /// The status page for shop owners.
    pub status_page: status_page::StatusPageConfig,
    /// The weekly digest to shop owners, when configured.
    pub digest: Option<crate::alert::digest::DigestConfig>,
    /// The files the config was read from.
    pub files: Vec<PathBuf>,
    /// Every secret value read from the files (for the redactor; `Debug` shows only a count).
    pub secrets: crate::value::redact::RedactorBuilder,
}

impl Config {
    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Whether `name` can be a fleet location (`locations:`, `run --location`): 1 to 64 letters,
/// digits, `_`, `-` or `.`, so it is a plain label value everywhere it goes.
pub fn is_location(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// One check, with defaults applied.
#[derive(Debug, Clone)]
pub struct Check {
    /// Unique name, `[A-Za-z0-9._-]`.
    pub name: String,
    /// The support channel this check proves.
    pub channel: Channel,
    /// Static labels, `shop` always among them.
    pub labels: crate::outcome::Labels,
    /// Time between runs.
    pub interval: Dur,
    /// Bound on one attempt.
    pub timeout: Dur,
    /// Extra attempts before a run counts as failed.
    pub retries: u32,
    /// Pause between attempts.
    pub retry_delay: Dur,
    /// The check's own alerting rules.
    pub alert: Option<crate::alert::CheckAlert>,
    /// What the check does.
    pub spec: CheckSpec,
    /// Host overrides (`resolve:`): where its connections go instead of what DNS says.
    pub resolve: crate::net::Resolve,
    /// `locations:`: the only fleet locations (`run --location`) that run the check.
    pub locations: Option<Vec<String>>,
    /// Where the check is defined.
    pub origin: Origin,
}

impl Check {
    /// The check's kind.
    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }
    /// The `shop` label.
    pub fn shop(&self) -> &str {
        self.identity().shop()
    }
    /// Who the check is, for metrics, routes and alert texts.
    pub fn identity(&self) -> CheckIdentity<'_> {
        CheckIdentity {
            name: &self.name,
            kind: self.kind(),
            channel: self.channel,
            labels: &self.labels,
        }
    }
    /// The check's identity with its own `alert:` block, for alerting.
    pub fn alert_rules(&self) -> crate::alert::CheckRules<'_> {
        crate::alert::CheckRules {
            id: self.identity(),
            alert: self.alert.as_ref(),
        }
    }
    /// The mailboxes (names under `mailboxes:`) the check's deliveries are proven in: a mailbox
    /// belongs to the shops of the checks that use it.
    pub fn mailboxes(&self) -> Vec<&str> {
        let (deliver, auto_reply) = self.spec.deliveries();
        let mut out: Vec<&str> = deliver
            .and_then(|d| d.mailbox.as_deref())
            .into_iter()
            .chain(auto_reply.map(|a| a.mailbox.as_str()))
            .collect();
        out.dedup();
        out
    }
    /// Whether a run leaves a delivery (`deliver`, `auto_reply`) to wait for.
    pub fn delivers(&self) -> bool {
        let (deliver, auto_reply) = self.spec.deliveries();
        deliver.is_some() || auto_reply.is_some()
    }
}

/// Where something is defined in the config files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// File path as given.
    pub file: PathBuf,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// The kind-specific part of a check, selected by its `kind` field.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckSpec {
    /// HTTP request with expectations.
    Http(std::sync::Arc<HttpSpec>),
    /// Fill in and submit an HTML form; optionally prove delivery.
    Form(std::sync::Arc<FormSpec>),
    /// Submit a callback-request form (as `form` does); prove the request reached its
    /// destination.
    Callback(std::sync::Arc<FormSpec>),
    /// Send a mail over SMTP; prove delivery and the auto-reply.
    Mail(std::sync::Arc<MailSpec>),
    /// Drive a real browser through steps.
    Browser(std::sync::Arc<crate::probe::browser::BrowserSpec>),
    /// TLS handshake and certificate inspection.
    Tls(TlsSpec),
    /// DNS records, SPF and DMARC.
    Dns(DnsSpec),
    /// Talk to a chat bot and time its reply.
    Chat(std::sync::Arc<crate::probe::chat::ChatSpec>),
    /// Ping a PBX or SIP trunk over SIP.
    Phone(std::sync::Arc<crate::probe::phone::PhoneCheckSpec>),
}

impl CheckSpec {
    /// The kind of this spec.
    pub fn kind(&self) -> Kind {
        match self {
            CheckSpec::Http(_) => Kind::Http,
            CheckSpec::Form(_) => Kind::Form,
            CheckSpec::Callback(_) => Kind::Callback,
            CheckSpec::Mail(_) => Kind::Mail,
            CheckSpec::Browser(_) => Kind::Browser,
            CheckSpec::Tls(_) => Kind::Tls,
            CheckSpec::Dns(_) => Kind::Dns,
            CheckSpec::Chat(_) => Kind::Chat,
            CheckSpec::Phone(_) => Kind::Phone,
        }
    }

    /// Checks what serde cannot check about a spec (exclusive fields, URL syntax, ...), at load time.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            CheckSpec::Http(s) => probe::http::validate(s),
            CheckSpec::Form(s) => probe::form::validate(s),
            CheckSpec::Callback(s) => probe::callback::validate(s),
            CheckSpec::Mail(s) => probe::mail::validate(s),
            CheckSpec::Browser(s) => probe::browser::validate(s),
            CheckSpec::Tls(s) => probe::tls::validate(s),
            CheckSpec::Dns(s) => probe::dns::validate(s),
            CheckSpec::Chat(s) => probe::chat::validate(s),
            CheckSpec::Phone(s) => probe::phone::validate(s),
        }
    }

    /// A one-line description of what the check contacts, safe to print (templates, not secrets).
    pub fn summary(&self) -> String {
        match self {
            CheckSpec::Http(s) => format!("{} {}", s.method.to_ascii_uppercase(), s.url),
            CheckSpec::Form(s) => probe::form::summary(s),
            CheckSpec::Callback(s) => probe::callback::summary(s),
            CheckSpec::Mail(s) => probe::mail::summary(s),
            CheckSpec::Browser(s) => probe::browser::summary(s),
            CheckSpec::Tls(s) => s
                .targets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            CheckSpec::Dns(s) => probe::dns::summary(s),
            CheckSpec::Chat(s) => probe::chat::summary(s),
            CheckSpec::Phone(s) => probe::phone::summary(s),
        }
    }

    /// Whether runs drive a real browser (`browser`, or `via: browser`).
    pub fn uses_browser(&self) -> bool {
        match self {
            CheckSpec::Browser(_) => true,
            CheckSpec::Form(s) | CheckSpec::Callback(s) => s.via == probe::form::Via::Browser,
            CheckSpec::Chat(s) => s.via == probe::chat::Via::Browser,
            CheckSpec::Http(_)
            | CheckSpec::Mail(_)
            | CheckSpec::Tls(_)
            | CheckSpec::Dns(_)
            | CheckSpec::Phone(_) => false,
        }
    }

    /// The check's `deliver` and `auto_reply` blocks, for kinds that have them.
    pub fn deliveries(&self) -> (Option<&DeliverSpec>, Option<&AutoReplySpec>) {
        match self {
            CheckSpec::Form(s) | CheckSpec::Callback(s) => (s.deliver.as_ref(), None),
            CheckSpec::Mail(s) => (s.deliver.as_ref(), s.auto_reply.as_ref()),
            CheckSpec::Browser(s) => (s.deliver.as_ref(), None),
            CheckSpec::Http(_)
            | CheckSpec::Tls(_)
            | CheckSpec::Dns(_)
            | CheckSpec::Chat(_)
            | CheckSpec::Phone(_) => (None, None),
        }
    }
}

/// The built-in web server (`/metrics`, `/healthz`, `/-/reload`, `/hooks/`). Everything but
/// `listen` takes effect at start; a reload that changes it only warns.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: std::net::SocketAddr,
    /// Serve `/hooks/` on this address instead of `listen` (the only part that must face the
    /// internet); `listen` then serves no hooks.
    #[serde(default)]
    pub hooks_listen: Option<std::net::SocketAddr>,
    /// Allow `POST /-/reload` over HTTP (off by default, as Prometheus's lifecycle API); needs
    /// `basic_auth_users`. SIGHUP always reloads.
    #[serde(default)]
    pub enable_lifecycle: bool,
    /// Serve HTTPS with this certificate and key (PEM files), as exporter-toolkit's web config.
    #[serde(default)]
    pub tls_server_config: Option<TlsServerConfig>,
    /// User → bcrypt hash; when set, every endpoint but `/healthz` and `/hooks/` asks for them.
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
    /// Open connections at most, both listeners together (default: a quarter of the file
    /// descriptor limit, so outgoing check connections always have room).
    #[serde(default)]
    pub max_connections: Option<usize>,
}

/// The most inbound connections `server.max_connections` may allow.
pub const MAX_CONNECTIONS: usize = 1_000_000;

impl ServerConfig {
    /// What is wrong with these settings, each as a sentence, checked at load (so `validate`
    /// reports it too).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.enable_lifecycle && self.basic_auth_users.is_empty() {
            problems.push(
                "server.enable_lifecycle needs server.basic_auth_users: /-/reload must not be \
                 open to anyone who can reach the port (SIGHUP reloads without it)"
                    .to_string(),
            );
        }
        for (user, hash) in &self.basic_auth_users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                problems.push(format!(
                    "server.basic_auth_users: the hash of user `{user}` is not a bcrypt hash \
                     (`$2y$…`); make one with `htpasswd -nBC 10 {user}`"
                ));
            }
        }
        if let Some(tls) = &self.tls_server_config
            && let Err(problem) = crate::tlsconf::server_config(&tls.cert_file, &tls.key_file)
        {
            problems.push(format!("server.tls_server_config: {problem}"));
        }
        if let Some(max) = self.max_connections
            && !(1..=MAX_CONNECTIONS).contains(&max)
        {
            problems.push(format!(
                "`server.max_connections` is {max}; allowed 1 to {MAX_CONNECTIONS}"
            ));
        }
        problems
    }
}

/// `server.tls_server_config`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

fn default_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 9750))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            hooks_listen: None,
            enable_lifecycle: false,
            tls_server_config: None,
            basic_auth_users: BTreeMap::new(),
            max_connections: None,
        }
    }
}

/// Limits that keep supportwatch a good guest and its host healthy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Runs in flight at once, all kinds together.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Runs in flight at once per kind (`http: 50`); unlisted kinds share only the global limit.
    #[serde(default)]
    pub max_per_kind: BTreeMap<Kind, usize>,
    /// Runs in flight at once against one endpoint (`host:port`).
    #[serde(default = "default_max_per_host")]
    pub max_per_host: usize,
    /// Overrides of `max_per_host`: `host:port` for one endpoint, a bare host for each of its
    /// ports (`shop.example.ru: 2`).
    #[serde(default)]
    pub hosts: BTreeMap<String, usize>,
    /// How long SIGTERM waits for running checks before exiting.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: Dur,
}

fn default_max_concurrent() -> usize {
    64
}
fn default_max_per_host() -> usize {
    1
}
fn default_shutdown_grace() -> Dur {
    Dur::secs(30)
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_concurrent: default_max_concurrent(),
            max_per_kind: BTreeMap::new(),
            max_per_host: default_max_per_host(),
            hosts: BTreeMap::new(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

/// Values every check inherits unless it sets its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Default `interval`.
    pub interval: Option<Dur>,
    /// Default `timeout`.
    pub timeout: Option<Dur>,
    /// Default `retries`.
    pub retries: Option<u32>,
    /// Default `retry_delay`.
    pub retry_delay: Option<Dur>,
    /// Labels merged under each check's own.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Built-in defaults, used when neither the check nor `defaults` says otherwise.
pub const DEFAULT_INTERVAL: Dur = Dur::secs(60);
/// Built-in attempt timeout.
pub const DEFAULT_TIMEOUT: Dur = Dur::secs(30);
/// Built-in retries.
pub const DEFAULT_RETRIES: u32 = 1;
/// Built-in pause between attempts.
pub const DEFAULT_RETRY_DELAY: Dur = Dur::secs(2);
