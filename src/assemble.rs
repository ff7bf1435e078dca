//! Assembly: from a validated [`Config`] to everything a run needs, built.
//!
//! [`prepare`] builds one probe per check (the per-kind dispatch lives here, in [`build_probe`]),
//! the mailboxes and their watchers, the browser pool and every notifier, and collects what cannot
//! be built as located config errors. The runner, scheduler and daemon above take a [`Prepared`];
//! nothing below this layer names it.

use crate::config::{Check, CheckSpec, Config, ConfigError, ConfigErrors};
use crate::probe::{self, Probe, Shared};
use crate::value::redact::{Redactor, RedactorBuilder};
use std::sync::Arc;

/// A check with its probe built: ready to run.
pub struct PreparedCheck {
    /// The check's config.
    pub check: Check,
    /// Its probe.
    pub probe: Arc<dyn Probe>,
    /// Endpoints (`host:port`) it contacts, for the per-endpoint limit; sorted and deduplicated.
    pub hosts: Vec<String>,
    /// Scrubs the config's secrets from the run's report (see [`Prepared::redactor`]).
    pub redactor: Arc<Redactor>,
    name: Arc<str>,
}

impl PreparedCheck {
    /// A check with its probe (normally made by [`prepare`]).
    pub fn new(check: Check, probe: Arc<dyn Probe>) -> Self {
        let mut hosts = probe.hosts();
        hosts.sort();
        hosts.dedup();
        PreparedCheck {
            name: Arc::from(check.name.as_str()),
            check,
            probe,
            hosts,
            redactor: Arc::default(),
        }
    }

    /// The same check, its reports scrubbed by `redactor`.
    pub fn with_redactor(mut self, redactor: Arc<Redactor>) -> Self {
        self.redactor = redactor;
        self
    }

    /// The same check and probe with other static labels (an instance's `location`).
    pub fn relabelled(&self, labels: crate::outcome::Labels) -> Self {
        let mut check = self.check.clone();
        check.labels = labels;
        PreparedCheck {
            check,
            probe: self.probe.clone(),
            hosts: self.hosts.clone(),
            redactor: self.redactor.clone(),
            name: self.name.clone(),
        }
    }

    /// The check's name as a shared string.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }
}

/// A validated config with every probe built.
pub struct Prepared {
    /// The config.
    pub config: Config,
    /// One entry per check, in config order.
    pub checks: Vec<Arc<PreparedCheck>>,
    /// Every notifier, built.
    pub notifiers: std::collections::BTreeMap<String, crate::notify::NotifierEntry>,
    /// Things that work but probably are not what the user wants (`validate` prints them).
    pub warnings: Vec<String>,
    /// Every secret of this config: what the runner scrubs from reports and, once this config is
    /// in force, the log writer from log lines. A reload brings its own.
    pub redactor: Arc<Redactor>,
    /// The declared mailboxes with their watchers (the daemon's late-mail sweep looks at them).
    pub mailboxes: crate::deliver::Mailboxes,
}

impl Prepared {
    /// What the alerting task needs of this config.
    pub fn alert_setup(&self) -> crate::alert::service::Setup {
        crate::alert::service::Setup::new(
            &self.config.alerting,
            &self.config.storage,
            self.checks.iter().map(|c| c.check.alert_rules()),
            self.notifiers.clone(),
        )
        .with_digest(self.config.digest.as_ref(), &self.config.alerting)
        .with_mailboxes(self.mailbox_shops())
    }

    /// The shops each mailbox belongs to: those of the checks that use it.
    pub fn mailbox_shops(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for prepared in &self.checks {
            let check = &prepared.check;
            for mailbox in check.mailboxes() {
                let shops = out.entry(mailbox.to_string()).or_default();
                let shop = check.identity().shop().to_string();
                if !shops.contains(&shop) {
                    shops.push(shop);
                }
            }
        }
        out
    }
}

/// Builds every probe; problems (an unreadable `ca_file`, ...) are collected with their location.
///
/// The checks move from `config.checks` into [`Prepared::checks`], so each is held once.
pub fn prepare(config: Config) -> Result<Prepared, ConfigErrors> {
    let hooks = Arc::new(crate::hooks::Hooks::default());
    hooks.configure(&config.hooks);
    prepare_with(config, hooks)
}

/// [`prepare`], with `deliver: { webhook: … }` waiting on `hooks`: the registry the daemon's web
/// server feeds. (Plain `prepare` gives the checks a private registry nothing feeds, which is
/// right for `validate` and `list`.)
pub fn prepare_with(
    config: Config,
    hooks: Arc<crate::hooks::Hooks>,
) -> Result<Prepared, ConfigErrors> {
    prepare_shared(config, hooks, Arc::default(), Arc::default())
}

/// [`prepare_with`], the mailboxes deleting late test mail remembered in `late` and
/// `deliver: { call: … }` waiting on `lines`: the daemon's, which outlive reloads.
pub fn prepare_shared(
    mut config: Config,
    hooks: Arc<crate::hooks::Hooks>,
    late: Arc<crate::mailbox::late::LateMail>,
    lines: Arc<crate::sip::line::Lines>,
) -> Result<Prepared, ConfigErrors> {
    crate::tlsconf::install_crypto_provider();
    let redactor = Arc::new(redactor_for(&config));
    let mut errors = Vec::new();
    let mailboxes = crate::deliver::Mailboxes::build_with(&config.mailboxes, late)
        .unwrap_or_else(|messages| {
            errors.extend(messages.into_iter().map(ConfigError::general));
            crate::deliver::Mailboxes::default()
        })
        .with_hooks(hooks)
        .with_lines(lines);
    let shared = probe::Shared {
        mailboxes,
        browser: Some(Arc::new(crate::browser::Browser::new(
            config.browser.clone(),
        ))),
        phones: config
            .phones
            .iter()
            .map(|(name, spec)| (name.clone(), Arc::new(spec.clone())))
            .collect(),
        phone_lines: config
            .phones
            .iter()
            .map(|(name, spec)| {
                let permits = spec.max_calls.unwrap_or(1) as usize;
                (name.clone(), Arc::new(tokio::sync::Semaphore::new(permits)))
            })
            .collect(),
        ..probe::Shared::default()
    };
    let warnings = crate::config::warnings(&config);
    let notifiers = crate::notify::build_notifiers(
        &config.notifiers,
        config.alerting.language.unwrap_or_default(),
    )
    .unwrap_or_else(|messages| {
        errors.extend(messages.into_iter().map(ConfigError::general));
        Default::default()
    });
    let mut checks = Vec::with_capacity(config.checks.len());
    for check in std::mem::take(&mut config.checks) {
        match build_probe(&check.spec, &check.resolve, &shared) {
            Ok(probe) => checks.push(Arc::new(
                PreparedCheck::new(check, probe).with_redactor(redactor.clone()),
            )),
            Err(message) => errors.push(ConfigError {
                file: Some(check.origin.file.clone()),
                position: Some((check.origin.line, check.origin.column)),
                check: Some(check.name.clone()),
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(Prepared {
            config,
            checks,
            notifiers,
            warnings,
            redactor,
            mailboxes: shared.mailboxes.clone(),
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The redactor for `config`: every secret read from its files, each password with the user name
/// configured beside it (so the AUTH PLAIN and basic-auth strings made of both are known), and
/// what `${…}` put into request headers (`Authorization: Bearer ${SHOP_API_TOKEN}`), which a
/// server may echo just as well.
fn redactor_for(config: &Config) -> Redactor {
    use crate::notify::ServiceSpec;
    use crate::value::{Secret, Text};
    fn login(builder: &mut RedactorBuilder, user: &Option<Text>, password: &Option<Secret>) {
        if let (Some(user), Some(password)) = (user, password) {
            builder.login(user.expose(), password.expose());
        }
    }
    fn headers(builder: &mut RedactorBuilder, headers: &std::collections::BTreeMap<String, Text>) {
        for value in headers.values().filter(|v| v.is_interpolated()) {
            // The words the template does not hold came from `${…}`: `Bearer` stays readable.
            for word in value.expose().split_whitespace() {
                if !value.template().contains(word) {
                    builder.secret(word);
                }
            }
        }
    }
    let mut builder: RedactorBuilder = config.secrets.clone();
    for mailbox in config.mailboxes.values() {
        login(&mut builder, &mailbox.user, &mailbox.password);
    }
    for check in &config.checks {
        match &check.spec {
            CheckSpec::Mail(mail) => login(&mut builder, &mail.user, &mail.password),
            CheckSpec::Http(http) => headers(&mut builder, &http.headers),
            CheckSpec::Form(form) | CheckSpec::Callback(form) => {
                headers(&mut builder, &form.headers)
            }
            CheckSpec::Chat(chat) => headers(&mut builder, &chat.headers),
            CheckSpec::Browser(_) | CheckSpec::Tls(_) | CheckSpec::Dns(_) | CheckSpec::Phone(_) => {
            }
        }
    }
    for phone in config.phones.values() {
        login(&mut builder, &Some(phone.user.clone()), &phone.password);
        if let Some(auth_user) = &phone.auth_user {
            login(&mut builder, &Some(auth_user.clone()), &phone.password);
        }
    }
    for notifier in config.notifiers.values() {
        match &notifier.service {
            ServiceSpec::Email(email) => login(&mut builder, &email.user, &email.password),
            ServiceSpec::Alertmanager(am) => login(&mut builder, &am.user, &am.password),
            ServiceSpec::Telegram(_) | ServiceSpec::Webhook(_) | ServiceSpec::Slack(_) => {}
        }
    }
    builder.build()
}

/// Builds the probe for a check kind. Errors are config problems (an unreadable `ca_file`, ...).
///
/// `resolve` (the check's host overrides) goes to the kinds whose connections honour it; the
/// config refuses it on the others (`Kind::ignores_resolve`).
pub fn build_probe(
    spec: &CheckSpec,
    resolve: &crate::net::Resolve,
    shared: &Shared,
) -> Result<Arc<dyn Probe>, String> {
    match spec {
        CheckSpec::Http(s) => {
            probe::http::HttpProbe::build(s, resolve, shared).map(|p| Arc::new(p) as _)
        }
        CheckSpec::Form(s) => {
            probe::form::FormProbe::build(s, resolve, shared).map(|p| Arc::new(p) as _)
        }
        CheckSpec::Callback(s) => {
            probe::callback::build(s, resolve, shared).map(|p| Arc::new(p) as _)
        }
        CheckSpec::Mail(s) => probe::mail::MailProbe::build(s, shared).map(|p| Arc::new(p) as _),
        CheckSpec::Browser(s) => {
            probe::browser::BrowserProbe::build(s, resolve, shared).map(|p| Arc::new(p) as _)
        }
        CheckSpec::Tls(s) => {
            probe::tls::TlsProbe::build(s, resolve, shared).map(|p| Arc::new(p) as _)
        }
        CheckSpec::Dns(s) => probe::dns::DnsProbe::build(s, shared).map(|p| Arc::new(p) as _),
        CheckSpec::Chat(s) => {
            probe::chat::ChatProbe::build(s, resolve, shared).map(|p| Arc::new(p) as _)
        }
        CheckSpec::Phone(s) => probe::phone::PhoneProbe::build(s, shared).map(|p| Arc::new(p) as _),
    }
}
