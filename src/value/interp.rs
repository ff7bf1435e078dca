//! `${ENV}`, `${ENV:-default}` and `${file:PATH}` in config values.
//!
//! Interpolation happens per field, after YAML parsing, never on the raw file text: a secret that
//! contains `:` or `#` cannot change the structure of the document. The resulting [`Text`] keeps the
//! template it came from and shows only that in `Debug`/`Display`, so a secret pulled in from the
//! environment never reaches logs, `list`, `check` output or error messages.

use serde::{Deserialize, Deserializer};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

thread_local! {
    /// Variables that take precedence over the process environment while a config is loaded.
    /// The demo uses it to hand its ports to `checks/demo.yaml` without touching the process
    /// environment (which is not thread safe to modify).
    static OVERLAY: RefCell<Option<HashMap<String, String>>> = const { RefCell::new(None) };
}

/// Runs `f` with `vars` visible to interpolation in addition to the process environment.
pub fn with_overlay<T>(vars: &HashMap<String, String>, f: impl FnOnce() -> T) -> T {
    let previous = OVERLAY.with(|o| o.replace(Some(vars.clone())));
    let result = f();
    OVERLAY.with(|o| *o.borrow_mut() = previous);
    result
}

fn lookup_env(name: &str) -> Option<String> {
    let overlaid = OVERLAY.with(|o| o.borrow().as_ref().and_then(|m| m.get(name).cloned()));
    overlaid.or_else(|| std::env::var(name).ok())
}

/// A string from config after interpolation. `Debug` and `Display` show the template as written
/// (`https://shop/?key=${SHOP_KEY}`), never the interpolated secret.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Text {
    template: String,
    value: String,
}

impl Text {
    /// A literal value with nothing to hide (used for built-in values and tests).
    pub fn literal(value: impl Into<String>) -> Self {
        let value = value.into();
        Text {
            template: value.clone(),
            value,
        }
    }

    /// Interpolates `template`; the error says which variable is missing and how to fix it.
    pub fn interpolate(template: &str) -> Result<Self, String> {
        Ok(Text {
            template: template.to_string(),
            value: expand(template)?,
        })
    }

    /// The interpolated value, for use on the wire. Never log it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The value as written in the config file, safe to print.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Whether any part of the value came from the environment or a file.
    pub fn is_interpolated(&self) -> bool {
        self.template != self.value
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.template, f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.template)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let template = String::deserialize(deserializer)?;
        Text::interpolate(&template).map_err(serde::de::Error::custom)
    }
}

/// A secret (password, token): prints as `<redacted>` unless it came from a `${…}` reference, in
/// which case the reference itself is shown so the reader knows where it comes from.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret(Text);

impl Secret {
    /// The secret value, for use on the wire only.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_interpolated() && !self.0.template().contains(self.0.expose()) {
            f.write_str(self.0.template())
        } else {
            f.write_str("<redacted>")
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Text::deserialize(deserializer)?;
        // The config's redactor learns every secret as it is read; see `value::redact`.
        super::redact::note_secret(text.expose());
        Ok(Secret(text))
    }
}

/// Expands every `${…}` in `template`. `$$` is a literal `$`.
pub fn expand(template: &str) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        let Some(body_and_rest) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_and_rest.find('}') else {
            return Err(format!(
                "unterminated `${{` in `{template}`: close it with `}}` or write `$$` for a literal `$`"
            ));
        };
        let reference = &body_and_rest[..end];
        out.push_str(&resolve(reference)?);
        rest = &body_and_rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The most a `${file:PATH}` file may hold: a password, token or key is far smaller, and the bound
/// keeps a mistyped path (`/dev/zero`, a log file) from being read into memory.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// The text of a secret file: a regular file (not a FIFO, device or directory, which could block
/// the load or never end) of at most [`MAX_SECRET_FILE_BYTES`].
fn read_secret_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let cannot = |what: String| {
        format!("cannot read secret file `{path}` (from `${{file:{path}}}`): {what}")
    };
    // Checked before opening: opening a FIFO for reading blocks until a writer appears.
    let meta = std::fs::metadata(path).map_err(|e| cannot(e.to_string()))?;
    if !meta.is_file() {
        return Err(cannot(format!(
            "it is not a regular file (it is a {})",
            file_type_name(&meta.file_type())
        )));
    }
    let file = std::fs::File::open(path).map_err(|e| cannot(e.to_string()))?;
    let mut bytes = Vec::new();
    // One byte more than allowed tells "too large" apart from "exactly at the limit", also for a
    // file that grows after the size check.
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(e.to_string()))?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(cannot(format!(
            "it is larger than the {MAX_SECRET_FILE_BYTES} bytes a secret file may have"
        )));
    }
    String::from_utf8(bytes).map_err(|_| cannot("it is not UTF-8 text".into()))
}

/// What a file that is not a regular file is, in words.
pub fn file_type_name(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "device";
        }
        if t.is_socket() {
            return "socket";
        }
    }
    if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symbolic link"
    } else if t.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

fn resolve(reference: &str) -> Result<String, String> {
    if let Some(path) = reference.strip_prefix("file:") {
        let content = read_secret_file(path)?;
        // Files written by editors and `echo` end in a newline; that one is not part of the secret.
        let trimmed = content
            .strip_suffix("\r\n")
            .or_else(|| content.strip_suffix('\n'))
            .unwrap_or(&content);
        if trimmed.contains(['\n', '\r']) {
            return Err(format!(
                "secret file `{path}` holds several lines; a config value must be a single line"
            ));
        }
        return Ok(trimmed.to_string());
    }
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "invalid reference `${{{reference}}}`: use `${{NAME}}`, `${{NAME:-default}}` or `${{file:/path}}`"
        ));
    }
    let value = match (lookup_env(name), default) {
        (Some(v), _) => v,
        (None, Some(d)) => d.to_string(),
        (None, None) => {
            return Err(format!(
                "environment variable `{name}` is not set (set it, or write `${{{name}:-default}}`)"
            ));
        }
    };
    if value.contains(['\n', '\r']) {
        return Err(format!(
            "environment variable `{name}` contains a line break; a config value must be a single line"
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_variables_defaults_and_escapes() {
        let v = vars(&[("SW_T_HOST", "shop.example"), ("SW_T_KEY", "s3cr3t")]);
        with_overlay(&v, || {
            let t = Text::interpolate("https://${SW_T_HOST}/?k=${SW_T_KEY}&p=${SW_T_NONE:-1}$$")
                .unwrap();
            assert_eq!(t.expose(), "https://shop.example/?k=s3cr3t&p=1$");
            assert!(!format!("{t:?} {t}").contains("s3cr3t"));
        });
    }

    #[test]
    fn missing_variable_names_itself() {
        let err = Text::interpolate("${SW_T_SURELY_MISSING}").unwrap_err();
        assert!(err.contains("`SW_T_SURELY_MISSING` is not set"), "{err}");
    }

    #[test]
    fn refuses_multiline_values() {
        let v = vars(&[("SW_T_ML", "a\nb")]);
        let err = with_overlay(&v, || Text::interpolate("${SW_T_ML}").unwrap_err());
        assert!(err.contains("line break"), "{err}");
    }

    #[test]
    fn reads_secret_files_without_their_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\n").unwrap();
        let t = Text::interpolate(&format!("${{file:{}}}", path.display())).unwrap();
        assert_eq!(t.expose(), "hunter2");
        let secret = Secret(t);
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn secret_files_are_bounded_and_regular() {
        let dir = tempfile::tempdir().unwrap();
        let at_limit = dir.path().join("at_limit");
        std::fs::write(&at_limit, "a".repeat(MAX_SECRET_FILE_BYTES as usize)).unwrap();
        let t = Text::interpolate(&format!("${{file:{}}}", at_limit.display())).unwrap();
        assert_eq!(t.expose().len(), MAX_SECRET_FILE_BYTES as usize);

        let big = dir.path().join("big");
        std::fs::write(&big, "a".repeat(MAX_SECRET_FILE_BYTES as usize + 1)).unwrap();
        let err = Text::interpolate(&format!("${{file:{}}}", big.display())).unwrap_err();
        assert!(err.contains("larger than the 65536 bytes"), "{err}");

        let err = Text::interpolate("${file:/dev/zero}").unwrap_err();
        assert!(
            err.contains("`/dev/zero`") && err.contains("not a regular file (it is a device)"),
            "{err}"
        );

        let err = Text::interpolate(&format!("${{file:{}}}", dir.path().display())).unwrap_err();
        assert!(err.contains("it is a directory"), "{err}");

        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Would block forever if the FIFO were opened.
        let err = Text::interpolate(&format!("${{file:{}}}", fifo.display())).unwrap_err();
        assert!(err.contains("it is a FIFO"), "{err}");
    }

    #[test]
    fn literal_secret_is_redacted() {
        let s = Secret(Text::literal("hunter2"));
        assert_eq!(format!("{s:?}"), "<redacted>");
    }
}
