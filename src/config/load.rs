//! Reading config files and collecting every problem with its location.
//!
//! serde stops at the first error of a document, so a file is parsed in two steps when it has
//! problems: a lenient pass finds where each check starts, then each check is parsed on its own
//! (with blank lines in front so that line numbers stay those of the file). One typo therefore
//! does not hide the next check's typo, and every message names its check.

use super::{
    Check, CheckSpec, Config, DEFAULT_INTERVAL, DEFAULT_RETRIES, DEFAULT_RETRY_DELAY, DEFAULT_SHOP,
    DEFAULT_TIMEOUT, Defaults, Origin, SchedulerConfig, ServerConfig,
};
use crate::mailbox::MailboxSpec;
use crate::value::{Channel, Dur, Kind, closest};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest config file read; protects against pointing `--config` at the wrong directory.
const MAX_FILE_BYTES: u64 = 8 << 20;

/// One problem in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File, when the problem is inside one.
    pub file: Option<PathBuf>,
    /// 1-based line and column, when known.
    pub position: Option<(u64, u64)>,
    /// The check the problem belongs to.
    pub check: Option<String>,
    /// What is wrong and, where it can be guessed, how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some((line, col)) = self.position {
                write!(f, ":{line}:{col}")?;
            }
            f.write_str(": ")?;
        }
        if let Some(check) = &self.check {
            write!(f, "check \"{check}\": ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a config, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} in the config",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    fn one(file: Option<&Path>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            file: file.map(Path::to_path_buf),
            position: None,
            check: None,
            message: message.into(),
        }])
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    defaults: Option<Defaults>,
    #[serde(default)]
    checks: Vec<Spanned<CheckDoc>>,
    #[serde(default)]
    mailboxes: BTreeMap<String, Spanned<MailboxSpec>>,
    #[serde(default)]
    hooks: BTreeMap<String, Spanned<crate::hooks::HookSpec>>,
    browser: Option<crate::browser::BrowserConfig>,
    server: Option<ServerConfig>,
    scheduler: Option<SchedulerConfig>,
    #[serde(default)]
    notifiers: BTreeMap<String, Spanned<crate::notify::NotifierSpec>>,
    alerting: Option<Spanned<crate::alert::AlertingConfig>>,
    storage: Option<crate::alert::StorageConfig>,
}

/// Top-level sections other than `checks`, parsed alone when a file has errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SectionsDoc {
    defaults: Option<Defaults>,
    checks: Option<IgnoredAny>,
    mailboxes: Option<BTreeMap<String, MailboxSpec>>,
    hooks: Option<BTreeMap<String, crate::hooks::HookSpec>>,
    browser: Option<crate::browser::BrowserConfig>,
    server: Option<ServerConfig>,
    scheduler: Option<SchedulerConfig>,
    notifiers: Option<BTreeMap<String, crate::notify::NotifierSpec>>,
    alerting: Option<crate::alert::AlertingConfig>,
    storage: Option<crate::alert::StorageConfig>,
}

#[derive(Deserialize)]
struct LenientDoc {
    #[serde(default)]
    checks: Vec<Spanned<LenientCheck>>,
}

#[derive(Deserialize)]
struct LenientCheck {
    name: Option<String>,
}

/// Fields every check has, whatever its kind (used for "did you mean" suggestions).
const COMMON_FIELDS: &[&str] = &[
    "name",
    "kind",
    "channel",
    "shop",
    "interval",
    "timeout",
    "retries",
    "retry_delay",
    "labels",
    "alert",
];

#[derive(Deserialize)]
struct CheckDoc {
    name: String,
    channel: Option<Channel>,
    shop: Option<String>,
    interval: Option<Dur>,
    timeout: Option<Dur>,
    retries: Option<u32>,
    retry_delay: Option<Dur>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    alert: Option<crate::alert::CheckAlert>,
    #[serde(flatten)]
    spec: CheckSpec,
}

/// Loads every `*.yaml` / `*.yml` file in `dir` (sorted by name).
pub fn load_dir(dir: &Path) -> Result<Config, ConfigErrors> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ConfigErrors::one(
            Some(dir),
            format!("cannot read config directory: {e} (pass --config DIR)"),
        )
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml") | Some("yml")
                )
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(ConfigErrors::one(
            Some(dir),
            "no *.yaml files here; write a check (see README.md) or pass --config DIR",
        ));
    }
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match read_limited(&path) {
            Ok(text) => sources.push((path, text)),
            Err(message) => errors.extend(ConfigErrors::one(Some(&path), message).0),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    load_sources(&sources)
}

fn read_limited(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "file is {} bytes, larger than the {MAX_FILE_BYTES} bytes a config file may have",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// Loads config from already-read `(path, text)` pairs; the paths are only used in messages.
pub fn load_sources(sources: &[(PathBuf, String)]) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut docs = Vec::new();
    for (path, text) in sources {
        match parse_file(path, text) {
            Ok(doc) => docs.push((path.clone(), doc)),
            Err(mut e) => errors.append(&mut e),
        }
    }
    let config = merge(docs, &mut errors);
    if errors.is_empty() && config.checks.is_empty() {
        // Also what a half-written file looks like while an editor saves it: never reload into it.
        errors.push(ConfigError {
            file: None,
            position: None,
            check: None,
            message: "no checks defined: add at least one under `checks:`".into(),
        });
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn parse_file(path: &Path, text: &str) -> Result<FileDoc, Vec<ConfigError>> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(FileDoc {
            defaults: None,
            checks: Vec::new(),
            mailboxes: BTreeMap::new(),
            hooks: BTreeMap::new(),
            browser: None,
            server: None,
            scheduler: None,
            notifiers: BTreeMap::new(),
            alerting: None,
            storage: None,
        });
    }
    let first = match serde_saphyr::from_str_with_options::<FileDoc>(text, options(false)) {
        Ok(doc) => return Ok(doc),
        Err(e) => e,
    };
    let whole_file_error = || vec![saphyr_error(path, None, &first, &[])];
    // Find every problem, not just the first: parse each check alone, then the other sections.
    // Duplicate keys are tolerated here only to find the checks; the strict per-check parse below
    // still reports them.
    let Ok(lenient) = serde_saphyr::from_str_with_options::<LenientDoc>(text, options(true)) else {
        return Err(whole_file_error());
    };
    let mut errors = Vec::new();
    for (i, check) in lenient.checks.iter().enumerate() {
        let name = check
            .value
            .name
            .clone()
            .unwrap_or_else(|| format!("#{}", i + 1));
        let loc = check.referenced;
        let Some(block) = isolate_block(text, loc.line(), loc.column()) else {
            return Err(whole_file_error());
        };
        match serde_saphyr::from_str_with_options::<CheckDoc>(&block, options(false)) {
            Err(e) => {
                let mut error = saphyr_error(path, Some(name), &e, COMMON_FIELDS);
                // Errors raised inside the kind-specific part carry no position; point at the check.
                error.position = error.position.or(Some((loc.line(), loc.column())));
                errors.push(error);
            }
            // A check that parses can still be wrong in ways serde cannot see (URL syntax, ...).
            Ok(doc) => {
                if let Err(message) = doc.spec.validate() {
                    errors.push(ConfigError {
                        file: Some(path.to_path_buf()),
                        position: Some((loc.line(), loc.column())),
                        check: Some(name),
                        message,
                    });
                }
            }
        }
    }
    if let Err(e) = serde_saphyr::from_str_with_options::<SectionsDoc>(text, options(false)) {
        errors.push(saphyr_error(path, None, &e, &[]));
    }
    if errors.is_empty() {
        errors = whole_file_error();
    }
    // A duplicate key inside a check is seen by both the check's and the sections' pass.
    let mut unique: Vec<ConfigError> = Vec::with_capacity(errors.len());
    for e in errors {
        if !unique
            .iter()
            .any(|u| u.position == e.position && u.message == e.message)
        {
            unique.push(e);
        }
    }
    Err(unique)
}

fn options(tolerate_duplicates: bool) -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = if tolerate_duplicates {
        serde_saphyr::DuplicateKeyPolicy::LastWins
    } else {
        serde_saphyr::DuplicateKeyPolicy::Error
    };
    options.with_snippet = false;
    // Only `true`/`false` are booleans: `n`, `no`, `off` stay strings (form field names, values).
    options.strict_booleans = true;
    options
}

/// The text of the block-sequence item starting at (`line`, `column`), padded with blank lines and
/// spaces so that positions inside it equal positions in the file. `None` for flow-style items.
fn isolate_block(text: &str, line: u64, column: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let first_index = usize::try_from(line).ok()?.checked_sub(1)?;
    let first = *lines.get(first_index)?;
    let content_start = usize::try_from(column).ok()?.checked_sub(1)?;
    let prefix = first.get(..content_start)?;
    // Block items look like `  - name: x`: only spaces and the dash before the content.
    if !prefix.chars().all(|c| c == ' ' || c == '-') || !prefix.contains('-') {
        return None;
    }
    let dash_column = prefix.rfind('-')?;
    let mut block = "\n".repeat(first_index);
    block.push_str(&" ".repeat(content_start));
    block.push_str(&first[content_start..]);
    block.push('\n');
    for l in &lines[first_index + 1..] {
        let trimmed = l.trim_start();
        let indent = l.len() - trimmed.len();
        if !trimmed.is_empty() && !trimmed.starts_with('#') && indent <= dash_column {
            break;
        }
        block.push_str(l);
        block.push('\n');
    }
    Some(block)
}

fn saphyr_error(
    path: &Path,
    check: Option<String>,
    e: &serde_saphyr::Error,
    extra_fields: &[&str],
) -> ConfigError {
    let position = e
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| (l.line(), l.column()));
    let raw = e.without_snippet().to_string();
    let stripped = strip_position_prefix(&raw);
    let message = match stripped.strip_prefix("duplicate mapping key: ") {
        Some(rest) => {
            let key = rest
                .split(", set DuplicateKeyPolicy")
                .next()
                .unwrap_or(rest);
            format!("duplicate key `{key}`: each key may appear only once")
        }
        None if stripped.starts_with("budget breached") => format!(
            "{stripped}: the document expands to more YAML nodes or aliases than a config may \
             (alias bombs are refused)"
        ),
        None => stripped.to_string(),
    };
    let message = message.as_str();
    ConfigError {
        file: Some(path.to_path_buf()),
        position,
        check,
        message: with_suggestion(message, extra_fields),
    }
}

fn strip_position_prefix(raw: &str) -> &str {
    let mut s = raw.trim().trim_start_matches("error: ");
    // The position is printed in front as file:line:col; drop serde's own copy at the end.
    if let Some(at) = s.find(" at line ")
        && s[at..].contains(", column ")
    {
        s = &s[..at];
    }
    if let Some(rest) = s.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
        && rest.split_whitespace().nth(1) == Some("column")
    {
        return after;
    }
    s
}

/// Appends "(did you mean `x`?)" to unknown-field and unknown-variant messages.
fn with_suggestion(message: &str, extra: &[&str]) -> String {
    let first_line = message.lines().next().unwrap_or(message);
    for what in ["unknown field `", "unknown variant `"] {
        let Some(start) = first_line.find(what) else {
            continue;
        };
        let after = &first_line[start + what.len()..];
        let Some(end) = after.find('`') else { continue };
        let wrong = &after[..end];
        let expected = after[end..]
            .split_once("expected")
            .map(|(_, list)| list)
            .unwrap_or("");
        let mut candidates: Vec<String> = expected
            .trim_start_matches(" one of")
            .split(',')
            .map(|c| c.trim().trim_matches('`').to_string())
            .filter(|c| !c.is_empty())
            .collect();
        if what == "unknown field `" {
            candidates.extend(extra.iter().map(|s| s.to_string()));
        }
        if let Some(best) = closest(wrong, &candidates) {
            return format!("{first_line} (did you mean `{best}`?)");
        }
    }
    first_line.to_string()
}

/// Label names that supportwatch sets itself and a check may not override.
const RESERVED_LABELS: &[&str] = &[
    "check", "channel", "kind", "result", "phase", "reason", "target", "domain", "le", "job",
    "instance", "quantile",
];
const MAX_STATIC_LABELS: usize = 10;

fn merge(docs: Vec<(PathBuf, FileDoc)>, errors: &mut Vec<ConfigError>) -> Config {
    let mut defaults: Option<(PathBuf, Defaults)> = None;
    let mut server: Option<(PathBuf, ServerConfig)> = None;
    let mut scheduler: Option<(PathBuf, SchedulerConfig)> = None;
    let mut browser: Option<(PathBuf, crate::browser::BrowserConfig)> = None;
    let mut raw_checks = Vec::new();
    let mut mailboxes: BTreeMap<String, MailboxSpec> = BTreeMap::new();
    let mut mailbox_origins: HashMap<String, Origin> = HashMap::new();
    let mut hooks: BTreeMap<String, crate::hooks::HookSpec> = BTreeMap::new();
    let mut hook_origins: HashMap<String, Origin> = HashMap::new();
    let mut notifiers: BTreeMap<String, crate::notify::NotifierSpec> = BTreeMap::new();
    let mut notifier_origins: HashMap<String, Origin> = HashMap::new();
    let mut alerting: Option<(PathBuf, Spanned<crate::alert::AlertingConfig>)> = None;
    let mut storage: Option<(PathBuf, crate::alert::StorageConfig)> = None;
    let files = docs.iter().map(|(p, _)| p.clone()).collect();
    for (path, doc) in docs {
        merge_named(
            "hook",
            &path,
            doc.hooks,
            crate::hooks::validate,
            &mut hooks,
            &mut hook_origins,
            errors,
        );
        merge_named(
            "mailbox",
            &path,
            doc.mailboxes,
            crate::mailbox::validate,
            &mut mailboxes,
            &mut mailbox_origins,
            errors,
        );
        merge_named(
            "notifier",
            &path,
            doc.notifiers,
            crate::notify::validate,
            &mut notifiers,
            &mut notifier_origins,
            errors,
        );
        set_once(&mut alerting, "alerting", &path, doc.alerting, errors);
        set_once(&mut storage, "storage", &path, doc.storage, errors);
        set_once(&mut defaults, "defaults", &path, doc.defaults, errors);
        set_once(&mut server, "server", &path, doc.server, errors);
        set_once(&mut scheduler, "scheduler", &path, doc.scheduler, errors);
        set_once(&mut browser, "browser", &path, doc.browser, errors);
        for spanned in doc.checks {
            raw_checks.push((path.clone(), spanned));
        }
    }
    let defaults = defaults.map(|(_, d)| d).unwrap_or_default();
    let mut scheduler = scheduler.map(|(_, s)| s).unwrap_or_default();
    let (browser_file, browser) = match browser {
        Some((file, b)) => (Some(file), b),
        None => (None, crate::browser::BrowserConfig::default()),
    };
    if let Err(problems) = crate::browser::validate(&browser) {
        errors.extend(problems.into_iter().map(|message| ConfigError {
            file: browser_file.clone(),
            position: None,
            check: None,
            message,
        }));
    }
    // Browser runs beyond the pool would only wait for a session inside their timeout; let them
    // wait in the scheduler instead.
    scheduler
        .max_per_kind
        .entry(Kind::Browser)
        .or_insert(browser.max_sessions.max(1));
    if scheduler.max_concurrent == 0 || scheduler.max_per_host == 0 {
        errors.push(ConfigError {
            file: None,
            position: None,
            check: None,
            message: "scheduler: max_concurrent and max_per_host must be at least 1".into(),
        });
    }
    let mut seen: HashMap<String, Origin> = HashMap::new();
    let mut checks = Vec::new();
    for (path, spanned) in raw_checks {
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
        let mut labels = defaults.labels.clone();
        labels.extend(doc.labels.clone());
        if let Some(shop) = &doc.shop {
            labels.insert("shop".into(), shop.clone());
        }
        labels
            .entry("shop".into())
            .or_insert_with(|| DEFAULT_SHOP.into());
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
        if interval < Dur::secs(1) {
            problem(format!(
                "interval {interval} is shorter than the minimum 1s"
            ));
        }
        if timeout.get().is_zero() {
            problem("timeout must be longer than 0s".into());
        }
        if timeout > interval {
            problem(format!(
                "timeout {timeout} is longer than interval {interval}; runs would pile up"
            ));
        }
        if retries > 10 {
            problem(format!("retries {retries} is more than 10"));
        }
        if let Err(m) = doc.spec.validate() {
            problem(m);
        }
        let (deliver, auto_reply) = doc.spec.deliveries();
        if let Err(m) = crate::deliver::validate(deliver, auto_reply, &mailboxes, &hooks) {
            problem(m);
        }
        let channel = doc.channel.unwrap_or(doc.spec.kind().default_channel());
        checks.push(Check {
            name: doc.name,
            channel,
            labels,
            interval,
            timeout,
            retries,
            retry_delay,
            alert: doc.alert,
            spec: doc.spec,
            origin,
        });
    }
    let (alerting_origin, alerting) = match alerting {
        Some((file, a)) => (
            Some(Origin {
                file,
                line: a.referenced.line(),
                column: a.referenced.column(),
            }),
            a.value,
        ),
        None => (None, crate::alert::AlertingConfig::default()),
    };
    for (check, message) in
        crate::alert::validate(&alerting, &notifiers, checks.iter().map(Check::alert_rules))
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
    Config {
        checks,
        mailboxes,
        hooks,
        browser,
        server: server.map(|(_, s)| s).unwrap_or_default(),
        scheduler,
        notifiers,
        alerting,
        storage: storage.map(|(_, s)| s).unwrap_or_default(),
        files,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolates_a_block_item_keeping_positions() {
        let text = "checks:\n  - name: a\n    kind: http\n  - name: b\n    url: x\nserver: {}\n";
        let block = isolate_block(text, 4, 5).unwrap();
        assert_eq!(block, "\n\n\n    name: b\n    url: x\n");
        assert!(isolate_block("checks: [{name: a}]\n", 1, 11).is_none());
    }

    #[test]
    fn suggests_the_closest_field() {
        let m = with_suggestion("unknown field `urll`, expected one of `url`, `method`", &[]);
        assert!(m.ends_with("(did you mean `url`?)"), "{m}");
        let m = with_suggestion("unknown field `intervall`, expected `url`", COMMON_FIELDS);
        assert!(m.ends_with("(did you mean `interval`?)"), "{m}");
        let m = with_suggestion("unknown field `zzz`, expected `url`", &[]);
        assert!(!m.contains("did you mean"));
    }
}
