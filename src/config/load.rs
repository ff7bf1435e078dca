//! Loading the config: reading the files of a directory, parsing each, merging them into one
//! [`Config`] and collecting every problem on the way.
//!
//! The steps live in their own modules: `parse` (one file's YAML into sections, with located
//! errors), `merge` (the sections of all files into a `Config`, with the checks across them) and
//! `error` (the problem types).

use super::Config;
use super::error::{ConfigError, ConfigErrors};
use super::merge::merge;
use super::parse::parse_file;
use std::path::{Path, PathBuf};

/// Largest config file read; protects against pointing `--config` at the wrong directory.
const MAX_FILE_BYTES: u64 = 8 << 20;

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
    // Every `Secret` deserialized while the files are parsed is remembered for the redactor.
    let (loaded, secrets) = crate::value::redact::collect_secrets(|| load_collected(sources));
    loaded.map(|mut config| {
        config.secrets.secrets(secrets.iter().map(String::as_str));
        config
    })
}

fn load_collected(sources: &[(PathBuf, String)]) -> Result<Config, ConfigErrors> {
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
        errors.push(ConfigError::general(
            "no checks defined: add at least one under `checks:`",
        ));
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}
