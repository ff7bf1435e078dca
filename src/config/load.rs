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
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(e) => {
                errors.extend(
                    ConfigErrors::one(Some(dir), format!("cannot list config directory: {e}")).0,
                );
                continue;
            }
        };
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        );
        // `.#name.yaml` is the lock link an editor leaves while a file has unsaved changes.
        let editor_lock = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".#"));
        if !is_yaml || editor_lock {
            continue;
        }
        // A `*.yaml` that is not a readable regular file is an error, not a silent skip: the
        // checks the user meant to write there would otherwise never run.
        match config_file_problem(&path) {
            None => paths.push(path),
            Some(message) => errors.extend(ConfigErrors::one(Some(&path), message).0),
        }
    }
    paths.sort();
    errors.sort_by(|a, b| a.file.cmp(&b.file));
    if paths.is_empty() && errors.is_empty() {
        return Err(ConfigErrors::one(
            Some(dir),
            "no *.yaml files here; write a check (see README.md) or pass --config DIR",
        ));
    }
    let mut sources = Vec::new();
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

/// Why `path` (a `*.yaml` entry) cannot be a config file, if it cannot. Only looks at metadata:
/// opening a FIFO would block until something writes to it.
fn config_file_problem(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => None,
        Ok(meta) => Some(format!(
            "is a {}, not a config file; remove it or rename it so it does not end in .yaml/.yml",
            crate::value::file_type_name(&meta.file_type())
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some("is a symbolic link to a file that does not exist; fix or remove the link".into())
        }
        Err(e) => Some(format!("cannot read: {e}")),
    }
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
