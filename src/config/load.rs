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
use std::collections::BTreeMap;
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
    // `{{phone.NAME.number}}` in one file may name an account declared in another: every
    // file's numbers are known before any template is parsed.
    crate::value::with_phone_numbers(phone_numbers(sources), || {
        for (path, text) in sources {
            match parse_file(path, text) {
                Ok(doc) => docs.push((path.clone(), doc)),
                Err(mut e) => errors.append(&mut e),
            }
        }
    });
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

/// Every file's `phones:` accounts and their numbers, read leniently: a file that does not
/// parse contributes nothing here and reports its problems in the real parse.
fn phone_numbers(sources: &[(PathBuf, String)]) -> BTreeMap<String, Option<String>> {
    #[derive(serde::Deserialize)]
    struct PhonesOnly {
        #[serde(default)]
        phones: BTreeMap<String, NumberOnly>,
    }
    #[derive(serde::Deserialize)]
    struct NumberOnly {
        number: Option<crate::value::Text>,
    }
    let mut numbers = BTreeMap::new();
    // Only a config that uses the placeholder pays for the second reading.
    if !sources.iter().any(|(_, text)| text.contains("phone.")) {
        return numbers;
    }
    for (_, text) in sources.iter().filter(|(_, t)| t.contains("phones")) {
        if let Ok(doc) = serde_saphyr::from_str_with_options::<PhonesOnly>(
            text,
            super::parse::options(true, text.len()),
        ) {
            for (name, phone) in doc.phones {
                numbers.insert(name, phone.number.map(|n| n.expose().to_string()));
            }
        }
    }
    numbers
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` ordinary `http` checks; `rich` ones have about 45 YAML nodes each, plain ones 19.
    fn http_checks(n: usize, rich: bool) -> String {
        let extra = if rich {
            "    labels: { team: support, region: msk, tier: gold, owner: anna }\n    \
             headers: { accept: text/html, x-a: a, x-b: b, x-c: c, x-d: d, x-e: e }\n    \
             json: { a: 1, b: 2, c: 3, d: 4 }\n"
        } else {
            "    labels: { team: support, region: msk }\n"
        };
        let mut yaml = String::from("checks:\n");
        for i in 0..n {
            yaml.push_str(&format!(
                "  - name: shop-{i}\n    kind: http\n    url: \"https://shop-{i}.example.ru/contacts\"\n    \
                 interval: 5m\n    timeout: 30s\n{extra}    expect: {{ status: 200 }}\n"
            ));
        }
        yaml
    }

    fn write_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    const ONE_CHECK: &str =
        "checks:\n  - { name: home, kind: http, url: \"https://x.example/\" }\n";

    #[test]
    fn a_single_file_of_thousands_of_checks_loads() {
        for (n, rich) in [(6_000, true), (20_000, false)] {
            let yaml = http_checks(n, rich);
            // More nodes than the YAML library allows a document by default.
            let by_default = serde_saphyr::from_str::<serde_json::Value>(&yaml).unwrap_err();
            assert!(by_default.to_string().contains("budget"), "{by_default}");
            let config = load_sources(&[(PathBuf::from("many.yaml"), yaml)])
                .unwrap_or_else(|e| panic!("{n} checks: {e}"));
            assert_eq!(config.checks.len(), n);
        }
    }

    #[test]
    fn an_alias_bomb_in_a_large_file_is_still_refused_quickly() {
        // Padding raises the node budget with the file's size; the aliases' expansion is
        // bounded on its own and still breaks it.
        let mut yaml = http_checks(3_000, false);
        yaml.push_str(
            "  - name: bomb\n    kind: http\n    url: https://shop.example.ru/\n    json:\n      \
             a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let mut previous = 'a';
        for level in "bcdefghi".chars() {
            let refs = vec![format!("*{previous}"); 9].join(",");
            yaml.push_str(&format!("      {level}: &{level} [{refs}]\n"));
            previous = level;
        }
        let started = std::time::Instant::now();
        let errors = load_sources(&[(PathBuf::from("bomb.yaml"), yaml)]).unwrap_err();
        assert!(
            errors.to_string().contains("alias bombs are refused"),
            "{errors}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn yaml_entries_that_are_not_regular_files_are_errors_naming_the_path() {
        let dir = write_dir(&[("a.yaml", ONE_CHECK)]);
        std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("dangling.yml"))
            .unwrap();
        let fifo = dir.path().join("pipe.yaml");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        // An editor's lock link is not a config file and not an error.
        std::os::unix::fs::symlink("user@host.1234", dir.path().join(".#a.yaml")).unwrap();
        // Returns at all: the FIFO is never opened.
        let errors = load_dir(dir.path()).unwrap_err();
        let shown: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        let at = |name: &str| dir.path().join(name).display().to_string();
        assert_eq!(
            shown,
            [
                format!(
                    "{}: is a symbolic link to a file that does not exist; fix or remove the link",
                    at("dangling.yml")
                ),
                format!(
                    "{}: is a FIFO, not a config file; remove it or rename it so it does not end in .yaml/.yml",
                    at("pipe.yaml")
                ),
                format!(
                    "{}: is a directory, not a config file; remove it or rename it so it does not end in .yaml/.yml",
                    at("sub.yaml")
                ),
            ]
        );
        std::fs::remove_dir(dir.path().join("sub.yaml")).unwrap();
        std::fs::remove_file(dir.path().join("dangling.yml")).unwrap();
        std::fs::remove_file(&fifo).unwrap();
        assert_eq!(load_dir(dir.path()).unwrap().checks.len(), 1);
    }
}
