//! Parsing one config file into its sections, finding every problem with its position.
//!
//! serde stops at the first error of a document, so a file is parsed in two steps when it has
//! problems: a lenient pass finds where each check starts, then each check is parsed on its own
//! (with blank lines in front so that line numbers stay those of the file). One typo therefore
//! does not hide the next check's typo, and every message names its check. Kept apart from merging:
//! this part knows YAML and serde's messages, merging knows only the parsed documents.

use super::error::ConfigError;
use super::{CheckSpec, Defaults, SchedulerConfig, ServerConfig};
use crate::mailbox::MailboxSpec;
use crate::value::{Channel, Dur, closest};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDoc {
    pub(super) defaults: Option<Defaults>,
    #[serde(default)]
    pub(super) checks: Vec<Spanned<CheckDoc>>,
    #[serde(default)]
    pub(super) mailboxes: BTreeMap<String, Spanned<MailboxSpec>>,
    #[serde(default)]
    pub(super) phones: BTreeMap<String, Spanned<crate::sip::PhoneSpec>>,
    #[serde(default)]
    pub(super) hooks: BTreeMap<String, Spanned<crate::hooks::HookSpec>>,
    pub(super) browser: Option<Spanned<crate::browser::BrowserConfig>>,
    pub(super) server: Option<ServerConfig>,
    pub(super) scheduler: Option<Spanned<SchedulerConfig>>,
    #[serde(default)]
    pub(super) notifiers: BTreeMap<String, Spanned<crate::notify::NotifierSpec>>,
    pub(super) alerting: Option<Spanned<crate::alert::AlertingConfig>>,
    pub(super) storage: Option<Spanned<crate::alert::StorageConfig>>,
    pub(super) status_page: Option<super::status_page::StatusPageConfig>,
    pub(super) digest: Option<Spanned<crate::alert::digest::DigestConfig>>,
}

/// Top-level sections other than `checks`, parsed alone when a file has errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SectionsDoc {
    defaults: Option<Defaults>,
    checks: Option<IgnoredAny>,
    mailboxes: Option<BTreeMap<String, MailboxSpec>>,
    phones: Option<BTreeMap<String, crate::sip::PhoneSpec>>,
    hooks: Option<BTreeMap<String, crate::hooks::HookSpec>>,
    browser: Option<crate::browser::BrowserConfig>,
    server: Option<ServerConfig>,
    scheduler: Option<SchedulerConfig>,
    notifiers: Option<BTreeMap<String, crate::notify::NotifierSpec>>,
    alerting: Option<crate::alert::AlertingConfig>,
    storage: Option<crate::alert::StorageConfig>,
    status_page: Option<super::status_page::StatusPageConfig>,
    digest: Option<crate::alert::digest::DigestConfig>,
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
    "resolve",
    "locations",
];

#[derive(Deserialize)]
pub(super) struct CheckDoc {
    pub(super) name: String,
    pub(super) channel: Option<Channel>,
    pub(super) shop: Option<String>,
    pub(super) interval: Option<Dur>,
    pub(super) timeout: Option<Dur>,
    pub(super) retries: Option<u32>,
    pub(super) retry_delay: Option<Dur>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    pub(super) alert: Option<crate::alert::CheckAlert>,
    #[serde(default)]
    pub(super) resolve: BTreeMap<String, String>,
    pub(super) locations: Option<Vec<String>>,
    #[serde(flatten)]
    pub(super) spec: CheckSpec,
}

pub(super) fn parse_file(path: &Path, text: &str) -> Result<FileDoc, Vec<ConfigError>> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(FileDoc {
            defaults: None,
            checks: Vec::new(),
            mailboxes: BTreeMap::new(),
            phones: BTreeMap::new(),
            hooks: BTreeMap::new(),
            browser: None,
            server: None,
            scheduler: None,
            notifiers: BTreeMap::new(),
            alerting: None,
            storage: None,
            status_page: None,
            digest: None,
        });
    }
    let first =
        match serde_saphyr::from_str_with_options::<FileDoc>(text, options(false, text.len())) {
            Ok(doc) => return Ok(doc),
            Err(e) => e,
        };
    let whole_file_error = || vec![saphyr_error(path, None, &first, &[])];
    // Find every problem, not just the first: parse each check alone, then the other sections.
    // Duplicate keys are tolerated here only to find the checks; the strict per-check parse below
    // still reports them.
    let Ok(lenient) =
        serde_saphyr::from_str_with_options::<LenientDoc>(text, options(true, text.len()))
    else {
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
        match serde_saphyr::from_str_with_options::<CheckDoc>(&block, options(false, block.len())) {
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
    if let Err(e) =
        serde_saphyr::from_str_with_options::<SectionsDoc>(text, options(false, text.len()))
    {
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

/// Parser options for a document of `text_len` bytes.
///
/// The node and event budgets grow with the document: YAML needs at least one byte of text per
/// node it writes out, so an ordinary file of any size the loader accepts (8 MiB) fits, however
/// many checks it has. What an alias bomb multiplies — nodes replayed through aliases — stays
/// under the library's fixed alias limits (`alias_limits`, 1,000,000 replayed events, and the
/// alias/anchor ratio heuristic), so a bomb is refused after bounded work and memory whatever
/// the file's size.
pub(super) fn options(tolerate_duplicates: bool, text_len: usize) -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = budget.max_nodes.max(text_len.saturating_add(1024));
    budget.max_events = budget
        .max_events
        .max(text_len.saturating_mul(2).saturating_add(1024));
    options.budget = Some(budget);
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
