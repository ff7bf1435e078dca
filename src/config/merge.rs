//! Merging the parsed files into one [`Config`], with the problems that only show across files.
//!
//! Each file parses on its own (see `parse`); only here are names checked for uniqueness across
//! files, sections checked to be set once, defaults applied to checks, and the references between
//! parts (a check's delivery to a mailbox or hook, an alert route to a notifier) validated. The
//! order of the steps is the order problems are reported in.

use super::bounds;
use super::error::ConfigError;
use super::parse::{CheckDoc, FileDoc};
use super::{
    Check, Config, DEFAULT_INTERVAL, DEFAULT_RETRIES, DEFAULT_RETRY_DELAY, DEFAULT_TIMEOUT,
    Defaults, Origin, SchedulerConfig, ServerConfig,
};
use crate::mailbox::MailboxSpec;
use crate::value::{Dur, Kind};
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Label names that supportwatch sets itself and a check may not override.
const RESERVED_LABELS: &[&str] = &[
    "check", "channel", "kind", "result", "phase", "reason", "target", "domain", "le", "job",
    "instance", "quantile",
];
const MAX_STATIC_LABELS: usize = 10;

/// Every file's sections, each section taken from one file and each name declared once; checks
/// wait here, unchecked, until the mailboxes and hooks of every file are known.
#[derive(Default)]
struct Sections {
    defaults: Option<(PathBuf, Defaults)>,
    server: Option<(PathBuf, ServerConfig)>,
    scheduler: Option<(PathBuf, Spanned<SchedulerConfig>)>,
    browser: Option<(PathBuf, Spanned<crate::browser::BrowserConfig>)>,
    raw_checks: Vec<(PathBuf, Spanned<CheckDoc>)>,
    mailboxes: BTreeMap<String, MailboxSpec>,
    phones: BTreeMap<String, crate::sip::PhoneSpec>,
    hooks: BTreeMap<String, crate::hooks::HookSpec>,
    notifiers: BTreeMap<String, crate::notify::NotifierSpec>,
    alerting: Option<(PathBuf, Spanned<crate::alert::AlertingConfig>)>,
    storage: Option<(PathBuf, Spanned<crate::alert::StorageConfig>)>,
    status_page: Option<(PathBuf, super::status_page::StatusPageConfig)>,
    digest: Option<(PathBuf, Spanned<crate::alert::digest::DigestConfig>)>,
}

/// What a check is completed and validated against: the defaults and the named sections its
/// deliveries may refer to.
struct CheckContext<'a> {
    defaults: &'a Defaults,
    mailboxes: &'a BTreeMap<String, MailboxSpec>,
    phones: &'a BTreeMap<String, crate::sip::PhoneSpec>,
    hooks: &'a BTreeMap<String, crate::hooks::HookSpec>,
}

/// Merges the parsed files into one config; every problem found is appended to `errors`.
pub(super) fn merge(docs: Vec<(PathBuf, FileDoc)>, errors: &mut Vec<ConfigError>) -> Config {
    let files = docs.iter().map(|(p, _)| p.clone()).collect();
    let sections = gather(docs, errors);
    let defaults = sections.defaults.map(|(_, d)| d).unwrap_or_default();
    let (browser, scheduler) = browser_and_scheduler(sections.browser, sections.scheduler, errors);
    let context = CheckContext {
        defaults: &defaults,
        mailboxes: &sections.mailboxes,
        phones: &sections.phones,
        hooks: &sections.hooks,
    };
    let checks = merge_checks(sections.raw_checks, &context, errors);
    let alerting = merge_alerting(sections.alerting, &sections.notifiers, &checks, errors);
    let digest = digest(sections.digest, &sections.notifiers, &checks, errors);
    let server = sections.server.map(|(_, s)| s).unwrap_or_default();
    errors.extend(server.problems().into_iter().map(ConfigError::general));
    Config {
        checks,
        mailboxes: sections.mailboxes,
        phones: sections.phones,
        hooks: sections.hooks,
        browser,
        server,
        scheduler,
        notifiers: sections.notifiers,
        alerting,
        storage: storage(sections.storage, errors),
        status_page: sections.status_page.map(|(_, s)| s).unwrap_or_default(),
        digest,
        files,
        secrets: Default::default(),
    }
}

/// Collects the sections of every file, file by file: named sections merged (and validated) as
/// they come, single sections kept from their first file, checks kept for later.
fn gather(docs: Vec<(PathBuf, FileDoc)>, errors: &mut Vec<ConfigError>) -> Sections {
    let mut s = Sections::default();
    let mut mailbox_origins: HashMap<String, Origin> = HashMap::new();
    let mut phone_origins: HashMap<String, Origin> = HashMap::new();
    let mut hook_origins: HashMap<String, Origin> = HashMap::new();
    let mut notifier_origins: HashMap<String, Origin> = HashMap::new();
    for (path, doc) in docs {
        merge_named(
            "hook",
            &path,
            doc.hooks,
            crate::hooks::validate,
            &mut s.hooks,
            &mut hook_origins,
            errors,
        );
        merge_named(
            "mailbox",
            &path,
            doc.mailboxes,
            |m| crate::mailbox::validate(m).and_then(|()| joined(bounds::mailbox(m))),
            &mut s.mailboxes,
            &mut mailbox_origins,
            errors,
        );
        merge_named(
            "phone",
            &path,
            doc.phones,
            crate::sip::account::validate,
            &mut s.phones,
            &mut phone_origins,
            errors,
        );
        merge_named(
            "notifier",
            &path,
            doc.notifiers,
            |n| crate::notify::validate(n).and_then(|()| joined(bounds::notifier(n))),
            &mut s.notifiers,
            &mut notifier_origins,
            errors,
        );
        set_once(&mut s.alerting, "alerting", &path, doc.alerting, errors);
        set_once(&mut s.storage, "storage", &path, doc.storage, errors);
        set_once(
            &mut s.status_page,
            "status_page",
            &path,
            doc.status_page,
            errors,
        );
        set_once(&mut s.digest, "digest", &path, doc.digest, errors);
        set_once(&mut s.defaults, "defaults", &path, doc.defaults, errors);
        set_once(&mut s.server, "server", &path, doc.server, errors);
        set_once(&mut s.scheduler, "scheduler", &path, doc.scheduler, errors);
        set_once(&mut s.browser, "browser", &path, doc.browser, errors);
        for spanned in doc.checks {
            s.raw_checks.push((path.clone(), spanned));
        }
    }
    s
}

/// The browser section (validated) and the scheduler's limits, which take the browser pool's size
/// as the default cap on browser checks.
fn browser_and_scheduler(
    browser: Option<(PathBuf, Spanned<crate::browser::BrowserConfig>)>,
    scheduler: Option<(PathBuf, Spanned<SchedulerConfig>)>,
    errors: &mut Vec<ConfigError>,
) -> (crate::browser::BrowserConfig, SchedulerConfig) {
    let (browser_at, browser) = section_origin(browser);
    let mut problems = crate::browser::validate(&browser).err().unwrap_or_default();
    problems.extend(bounds::browser(&browser));
    push_located(errors, browser_at.as_ref(), problems);
    let (scheduler_at, mut scheduler) = section_origin(scheduler);
    // Checked before the browser's default cap is added: only the user's values are reported.
    push_located(errors, scheduler_at.as_ref(), bounds::scheduler(&scheduler));
    // Browser runs beyond the pool would only wait for a session inside their timeout; let them
    // wait in the scheduler instead.
    scheduler
        .max_per_kind
        .entry(Kind::Browser)
        .or_insert(browser.max_sessions.clamp(1, bounds::MAX_CONCURRENCY_LIMIT));
    push_located(
        errors,
        scheduler_at.as_ref(),
        host_limit_problems(&scheduler).collect(),
    );
    (browser, scheduler)
}

/// A single section's value (its default when absent) and where it starts.
fn section_origin<T: Default>(section: Option<(PathBuf, Spanned<T>)>) -> (Option<Origin>, T) {
    match section {
        Some((file, spanned)) => (
            Some(Origin {
                file,
                line: spanned.referenced.line(),
                column: spanned.referenced.column(),
            }),
            spanned.value,
        ),
        None => (None, T::default()),
    }
}

/// Adds `problems` of a section that starts at `at`.
fn push_located(errors: &mut Vec<ConfigError>, at: Option<&Origin>, problems: Vec<String>) {
    errors.extend(problems.into_iter().map(|message| ConfigError {
        file: at.map(|o| o.file.clone()),
        position: at.map(|o| (o.line, o.column)),
        check: None,
        message,
    }));
}

/// The `storage:` section, its numbers checked.
fn storage(
    section: Option<(PathBuf, Spanned<crate::alert::StorageConfig>)>,
    errors: &mut Vec<ConfigError>,
) -> crate::alert::StorageConfig {
    let (at, storage) = section_origin(section);
    push_located(errors, at.as_ref(), bounds::storage(&storage));
    storage
}

/// The `digest:` section, checked against the notifiers and the shops of the checks.
fn digest(
    section: Option<(PathBuf, Spanned<crate::alert::digest::DigestConfig>)>,
    notifiers: &BTreeMap<String, crate::notify::NotifierSpec>,
    checks: &[Check],
    errors: &mut Vec<ConfigError>,
) -> Option<crate::alert::digest::DigestConfig> {
    let (file, spanned) = section?;
    let at = Origin {
        file,
        line: spanned.referenced.line(),
        column: spanned.referenced.column(),
    };
    let mut shops: Vec<&str> = checks.iter().map(Check::shop).collect();
    shops.sort_unstable();
    shops.dedup();
    push_located(errors, Some(&at), spanned.value.problems(notifiers, &shops));
    Some(spanned.value)
}

/// Several range problems of one named thing as one message.
fn joined(problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Problems of `scheduler.hosts` keys: a key is a host (each of its ports) or
/// `host:port` (one endpoint), never a URL. (Its limits are checked with the other numbers.)
fn host_limit_problems(scheduler: &SchedulerConfig) -> impl Iterator<Item = String> + '_ {
    scheduler.hosts.keys().filter_map(|key| {
        let (host, port) = match key.rsplit_once(':') {
            // An IPv6 address is bracketed when it has a port, bare when not.
            Some((host, port)) if host.starts_with('[') || !host.contains(':') => (
                host.trim_start_matches('[').trim_end_matches(']'),
                Some(port),
            ),
            _ => (key.trim_start_matches('[').trim_end_matches(']'), None),
        };
        let valid_host = !host.is_empty()
            && !host.contains(['/', '@', ' ', '?', '#'])
            && (url::Host::parse(host).is_ok() || host.parse::<std::net::Ipv6Addr>().is_ok());
        let valid_port = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
        if !valid_host || !valid_port {
            Some(format!(
                "scheduler.hosts: `{key}` is not a host or host:port (e.g. `shop.example.ru` for \
                 each of its ports, `shop.example.ru:443` for one endpoint)"
            ))
        } else {
            None
        }
    })
}

/// Every check completed from the defaults and validated, in file order; names unique across files.
fn merge_checks(
    raw_checks: Vec<(PathBuf, Spanned<CheckDoc>)>,
    context: &CheckContext<'_>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Check> {
    let mut seen: HashMap<String, Origin> = HashMap::new();
    let mut checks = Vec::new();
    for (path, spanned) in raw_checks {
        checks.push(merge_check(path, spanned, context, &mut seen, errors));
    }
    checks
}

/// One check: its name, labels, timing, spec and deliveries checked, each problem located at the
/// check.
fn merge_check(
    path: PathBuf,
    spanned: Spanned<CheckDoc>,
    context: &CheckContext<'_>,
    seen: &mut HashMap<String, Origin>,
    errors: &mut Vec<ConfigError>,
) -> Check {
    let origin = Origin {
        file: path,
        line: spanned.referenced.line(),
        column: spanned.referenced.column(),
    };
    let doc = spanned.value;
    let mut problem = |message: String| {
        errors.push(ConfigError {
            file: Some(origin.file.clone()),
            position: Some((origin.line, origin.column)),
            check: Some(doc.name.clone()),
            message,
        })
    };
    if let Err(m) = validate_name(&doc.name) {
        problem(m);
    }
    if let Some(first) = seen.get(&doc.name) {
        problem(format!(
            "duplicate check name (first defined at {first}); names must be unique"
        ));
    } else {
        seen.insert(doc.name.clone(), origin.clone());
    }
    let labels = std::sync::Arc::new(check_labels(&doc, context.defaults, &mut problem));
    let timing = check_timing(&doc, context.defaults, &mut problem);
    let resolve = crate::net::Resolve::parse(&doc.resolve).unwrap_or_else(|problems| {
        problems.into_iter().for_each(&mut problem);
        crate::net::Resolve::default()
    });
    if let (false, Some(why)) = (doc.resolve.is_empty(), doc.spec.kind().ignores_resolve()) {
        problem(format!("`resolve` does not apply here: {why}"));
    }
    if let Err(m) = doc.spec.validate() {
        problem(m);
    }
    bounds::check_spec(&doc.spec)
        .into_iter()
        .for_each(&mut problem);
    if let Some(a) = &doc.alert {
        bounds::alert_rules(
            "alert.",
            a.failure_threshold,
            a.success_threshold,
            a.repeat,
            a.window.as_ref(),
        )
        .into_iter()
        .for_each(&mut problem);
    }
    let (deliver, auto_reply) = doc.spec.deliveries();
    if let Err(m) = crate::deliver::validate(deliver, auto_reply, context.mailboxes, context.hooks)
    {
        problem(m);
    }
    if let Some(name) = deliver.and_then(|d| d.call.as_ref()) {
        match context.phones.get(name) {
            None => problem(format!(
                "deliver: call `{name}` names no account under `phones:` (declared: {})",
                names(context.phones.keys())
            )),
            Some(phone) if !phone.register => problem(format!(
                "deliver: call `{name}` needs `register: true` on the account, so that it can \
                 receive calls"
            )),
            Some(_) => {}
        }
    }
    if let crate::config::CheckSpec::Phone(spec) = &doc.spec
        && let Some(name) = &spec.phone
        && !context.phones.contains_key(name)
    {
        let declared: Vec<String> = context.phones.keys().cloned().collect();
        let hint = crate::value::closest(name, &declared)
            .map(|best| format!(" (did you mean `{best}`?)"))
            .unwrap_or_default();
        problem(format!(
            "`phone: {name}` names no account under `phones:` (declared: {}){hint}",
            names(context.phones.keys())
        ));
    }
    if let Some(locations) = &doc.locations {
        if locations.is_empty() {
            problem(
                "`locations` is empty, so no instance would run the check; list where it runs \
                 (e.g. `locations: [msk, vvo]`) or remove the field"
                    .to_string(),
            );
        }
        for location in locations {
            if !super::is_location(location) {
                problem(format!(
                    "locations: `{location}` is not a location name: use 1 to 64 letters, \
                     digits, `_`, `-` or `.` (e.g. msk, vvo, eu-west-1)"
                ));
            }
        }
    }
    let channel = doc.channel.unwrap_or(doc.spec.kind().default_channel());
    Check {
        name: doc.name,
        channel,
        labels,
        interval: timing.interval,
        timeout: timing.timeout,
        retries: timing.retries,
        retry_delay: timing.retry_delay,
        alert: doc.alert,
        spec: doc.spec,
        resolve,
        locations: doc.locations,
        origin,
    }
}

/// A check's static labels: the defaults', its own, and `shop` (its own, else the default shop).
/// Values may use `${ENV}` (`region: "${REGION}"`): one config, a label per deployment.
fn check_labels(
    doc: &CheckDoc,
    defaults: &Defaults,
    problem: &mut impl FnMut(String),
) -> BTreeMap<String, String> {
    let mut labels = defaults.labels.clone();
    labels.extend(doc.labels.clone());
    for (name, value) in labels.iter_mut() {
        match crate::value::expand(value) {
            Ok(expanded) => *value = expanded,
            Err(e) => problem(format!("labels.{name}: {e}")),
        }
    }
    if let Some(shop) = &doc.shop {
        labels.insert("shop".into(), shop.clone());
    }
    labels
        .entry("shop".into())
        .or_insert_with(|| crate::outcome::DEFAULT_SHOP.into());
    for name in labels.keys() {
        if let Err(m) = validate_label_name(name) {
            problem(m);
        }
    }
    if labels.len() > MAX_STATIC_LABELS {
        problem(format!(
            "{} labels; at most {MAX_STATIC_LABELS} keep metrics cheap",
            labels.len()
        ));
    }
    labels
}

/// When and how long a check runs, from the check, else the defaults, else the built-in values.
struct Timing {
    interval: Dur,
    timeout: Dur,
    retries: u32,
    retry_delay: Dur,
}

fn check_timing(doc: &CheckDoc, defaults: &Defaults, problem: &mut impl FnMut(String)) -> Timing {
    let interval = doc
        .interval
        .or(defaults.interval)
        .unwrap_or(DEFAULT_INTERVAL);
    let timeout = doc.timeout.or(defaults.timeout).unwrap_or(DEFAULT_TIMEOUT);
    let retries = doc.retries.or(defaults.retries).unwrap_or(DEFAULT_RETRIES);
    let retry_delay = doc
        .retry_delay
        .or(defaults.retry_delay)
        .unwrap_or(DEFAULT_RETRY_DELAY);
    bounds::timing(interval, timeout, retries, retry_delay)
        .into_iter()
        .for_each(&mut *problem);
    if timeout > interval {
        problem(format!(
            "timeout {timeout} is longer than interval {interval}; runs would pile up"
        ));
    }
    Timing {
        interval,
        timeout,
        retries,
        retry_delay,
    }
}

/// The alerting section, with the checks' alert rules and routes validated against the notifiers;
/// a problem of one check's rules is located at that check, others at the section.
fn merge_alerting(
    alerting: Option<(PathBuf, Spanned<crate::alert::AlertingConfig>)>,
    notifiers: &BTreeMap<String, crate::notify::NotifierSpec>,
    checks: &[Check],
    errors: &mut Vec<ConfigError>,
) -> crate::alert::AlertingConfig {
    let (alerting_origin, alerting) = section_origin(alerting);
    push_located(
        errors,
        alerting_origin.as_ref(),
        bounds::alerting(&alerting),
    );
    for (check, message) in
        crate::alert::validate(&alerting, notifiers, checks.iter().map(Check::alert_rules))
    {
        let origin = check
            .as_ref()
            .and_then(|name| checks.iter().find(|c| &c.name == name))
            .map(|c| c.origin.clone())
            .or(alerting_origin.clone());
        errors.push(ConfigError {
            file: origin.as_ref().map(|o| o.file.clone()),
            position: origin.map(|o| (o.line, o.column)),
            check,
            message,
        });
    }
    alerting
}

/// Adds one file's declarations of a named section (`mailboxes:`, `hooks:`): each name declared
/// once across all files, valid as a name, and valid by `validate`; problems are located.
fn merge_named<T>(
    what: &str,
    path: &Path,
    declared: BTreeMap<String, Spanned<T>>,
    validate: impl Fn(&T) -> Result<(), String>,
    merged: &mut BTreeMap<String, T>,
    origins: &mut HashMap<String, Origin>,
    errors: &mut Vec<ConfigError>,
) {
    for (name, spanned) in declared {
        let origin = Origin {
            file: path.to_path_buf(),
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
        };
        let mut problem = |message: String| {
            errors.push(ConfigError {
                file: Some(origin.file.clone()),
                position: Some((origin.line, origin.column)),
                check: None,
                message: format!("{what} `{name}`: {message}"),
            })
        };
        if let Some(first) = origins.get(&name) {
            problem(format!("declared twice (first at {first})"));
            continue;
        }
        if let Err(m) = validate_name(&name) {
            problem(m);
        }
        if let Err(m) = validate(&spanned.value) {
            problem(m);
        }
        origins.insert(name.clone(), origin);
        merged.insert(name, spanned.value);
    }
}

fn set_once<T>(
    slot: &mut Option<(PathBuf, T)>,
    section: &str,
    path: &Path,
    value: Option<T>,
    errors: &mut Vec<ConfigError>,
) {
    let Some(value) = value else { return };
    if let Some((first, _)) = slot {
        errors.push(ConfigError {
            file: Some(path.to_path_buf()),
            position: None,
            check: None,
            message: format!(
                "`{section}` is already set in {}; keep it in one file",
                first.display()
            ),
        });
    } else {
        *slot = Some((path.to_path_buf(), value));
    }
}

fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 100 {
        return Err("name must have 1 to 100 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "name `{name}` may only use letters, digits, `-`, `_` and `.` (it becomes a metric label and a directory name)"
        ));
    }
    Ok(())
}

fn validate_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__");
    if !valid {
        return Err(format!(
            "label name `{name}` is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if RESERVED_LABELS.contains(&name) {
        return Err(format!(
            "label `{name}` is set by supportwatch itself; choose another name"
        ));
    }
    Ok(())
}

/// Declared names for a message: `a`, `b` or `none`.
fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = keys.map(String::as_str).collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}
