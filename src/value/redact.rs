//! The redactor: scrubs every known secret value, and the forms it travels in, out of text that
//! leaves the process.
//!
//! [`Secret`](super::Secret) keeps a password out of `Debug` and `Display`, but servers echo what
//! they were sent: an IMAP `NO` that quotes the password, an SMTP `535` that quotes the AUTH PLAIN
//! string. Those echoes arrive as plain text inside failure messages, so they are scrubbed where a
//! run's report leaves the runner, in the log writer and in the binary's error output.
//!
//! Which values are secret: every [`Secret`](super::Secret) read while a config loads (collected
//! by [`collect_secrets`]), whether it came from `${ENV}`, `${file:…}` or a literal, and what
//! `${…}` put into a request header (added when the config is prepared). Other
//! [`Text`](super::Text) interpolations (host names, ports) are not secrets and stay readable.
//!
//! Which forms are matched, for each secret: the value itself; its base64 (standard and URL-safe,
//! with and without padding); the AUTH PLAIN strings `base64("\0user\0pass")` and
//! `base64("user\0user\0pass")` (and basic auth's `base64("user:pass")`) for every user name
//! configured next to a password; the part of any base64 text that encodes the secret at any
//! byte offset (so an AUTH PLAIN string with an unknown user name is still covered, up to a few
//! characters at its edges); its percent-encoded forms (upper and lower case hex, `+` for
//! space); and its JSON and Rust string escapes.
//!
//! A message cut short (ending in `…`, as every truncation in supportwatch does) may end in the
//! first part of a secret; any first part of at least [`MIN_SECRET_CHARS`] characters followed by
//! `…` is redacted too. A cut without `…` is not recognised.
//!
//! Short secrets: a value of fewer than [`MIN_SECRET_CHARS`] characters is not matched at all,
//! because scrubbing every `abc` from every message would make messages unreadable and would tell
//! a reader the secret anyway. The offset-independent base64 parts are only used when they are at
//! least [`MIN_BASE64_CORE`] characters long, for the same reason.
//!
//! Matching is one Aho-Corasick automaton over all forms, built once per config. Overlapping
//! matches are merged, so an AUTH PLAIN string goes whole even though the password's own base64
//! part matches inside it, and of two secrets that overlap in a text neither is left in part.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

/// What replaces a secret.
pub const MARKER: &str = "<redacted>";

/// Secrets shorter than this (in characters) are not redacted; see the module documentation.
pub const MIN_SECRET_CHARS: usize = 4;

/// The shortest offset-independent base64 fragment that is redacted on its own.
pub const MIN_BASE64_CORE: usize = 8;

thread_local! {
    /// Secrets read while [`collect_secrets`] runs on this thread. Config parsing is synchronous,
    /// so everything deserialized for one load happens inside the closure on one thread.
    static COLLECTED: RefCell<Option<BTreeSet<String>>> = const { RefCell::new(None) };
}

/// Runs `f` (a config load) and returns, beside its result, every secret value deserialized
/// meanwhile on this thread.
pub fn collect_secrets<T>(f: impl FnOnce() -> T) -> (T, BTreeSet<String>) {
    let previous = COLLECTED.with(|c| c.replace(Some(BTreeSet::new())));
    let result = f();
    let collected = COLLECTED.with(|c| c.replace(previous)).unwrap_or_default();
    // A load nested in another (none today) still reports its secrets to the outer one.
    COLLECTED.with(|c| {
        if let Some(outer) = c.borrow_mut().as_mut() {
            outer.extend(collected.iter().cloned());
        }
    });
    (result, collected)
}

/// Called by `Secret`'s deserializer: remembers `value` if a [`collect_secrets`] is running.
pub(super) fn note_secret(value: &str) {
    COLLECTED.with(|c| {
        if let Some(set) = c.borrow_mut().as_mut() {
            set.insert(value.to_string());
        }
    });
}

/// Collects secrets and user names, then builds a [`Redactor`].
#[derive(Default, Clone, PartialEq, Eq)]
pub struct RedactorBuilder {
    secrets: BTreeSet<String>,
    logins: BTreeSet<(String, String)>,
}

impl std::fmt::Debug for RedactorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values: they are the secrets.
        f.debug_struct("RedactorBuilder")
            .field("secrets", &self.secrets.len())
            .field("logins", &self.logins.len())
            .finish()
    }
}

impl RedactorBuilder {
    /// Adds a secret value (a password, token or key).
    pub fn secret(&mut self, value: &str) -> &mut Self {
        self.secrets.insert(value.to_string());
        self
    }

    /// Adds secret values.
    pub fn secrets<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) -> &mut Self {
        for value in values {
            self.secret(value);
        }
        self
    }

    /// Adds a user name and its password, so the AUTH PLAIN and HTTP basic-auth strings made of
    /// both are known.
    pub fn login(&mut self, user: &str, password: &str) -> &mut Self {
        self.secret(password);
        self.logins.insert((user.to_string(), password.to_string()));
        self
    }

    /// Builds the matcher over every form of every secret.
    pub fn build(&self) -> Redactor {
        let mut forms = BTreeSet::new();
        for secret in &self.secrets {
            if secret.chars().count() < MIN_SECRET_CHARS {
                continue;
            }
            forms_of(secret, &mut forms);
        }
        for (user, password) in &self.logins {
            if password.chars().count() < MIN_SECRET_CHARS {
                continue;
            }
            for plain in [
                format!("\0{user}\0{password}"),
                format!("{user}\0{user}\0{password}"),
                format!("{user}:{password}"),
            ] {
                base64_forms(plain.as_bytes(), &mut forms);
            }
        }
        // Never match the empty string (it would match everywhere).
        forms.retain(|f| !f.is_empty());
        // Messages quoting a server are cut to a bounded length, ending in "…": a secret cut
        // there is still a secret, down to its first few characters.
        let mut cut = BTreeSet::new();
        for form in &forms {
            for (end, _) in form.char_indices().skip(MIN_SECRET_CHARS) {
                cut.insert(format!("{}…", &form[..end]));
            }
        }
        forms.extend(cut);
        let patterns: Vec<String> = forms.into_iter().collect();
        let matcher = if patterns.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                .ok()
        };
        Redactor {
            matcher,
            secrets: self.secrets.len(),
        }
    }
}

/// Scrubs known secrets from text. Cheap to share ([`Arc`]); an empty one changes nothing.
#[derive(Default, Clone)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    secrets: usize,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the patterns: they are the secrets.
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets)
            .finish()
    }
}

impl Redactor {
    /// A redactor for `secrets` alone (no user names known).
    pub fn for_secrets<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut builder = RedactorBuilder::default();
        builder.secrets(secrets);
        builder.build()
    }

    /// Whether `text` holds any known secret form.
    pub fn finds(&self, text: &str) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(text))
    }

    /// `text` with every known secret form replaced by [`MARKER`].
    pub fn scrub(&self, text: &str) -> String {
        match self.scrub_bytes(text.as_bytes()) {
            // Spans start and end at pattern boundaries, and patterns are whole UTF-8 strings,
            // so the result is UTF-8; the lossy conversion never replaces anything.
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            None => text.to_string(),
        }
    }

    /// Scrubs `text` in place (no allocation when nothing matches).
    pub fn scrub_in_place(&self, text: &mut String) {
        if self.finds(text) {
            *text = self.scrub(text);
        }
    }

    /// Scrubs raw bytes (a log line); `None` when nothing matched.
    ///
    /// Overlapping matches (one secret ending where another begins, or one inside another) are
    /// merged into one span and replaced by one marker, so no part of either is left.
    pub fn scrub_bytes(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let m = self.matcher.as_ref()?;
        if !m.is_match(bytes) {
            return None;
        }
        let mut spans: Vec<(usize, usize)> = m
            .find_overlapping_iter(bytes)
            .map(|found| (found.start(), found.end()))
            .collect();
        spans.sort_unstable();
        let mut out = Vec::with_capacity(bytes.len());
        let mut copied = 0;
        let mut spans = spans.into_iter().peekable();
        while let Some((start, mut end)) = spans.next() {
            while let Some(&(next_start, next_end)) = spans.peek() {
                if next_start > end {
                    break;
                }
                end = end.max(next_end);
                spans.next();
            }
            out.extend_from_slice(&bytes[copied..start]);
            out.extend_from_slice(MARKER.as_bytes());
            copied = end;
        }
        out.extend_from_slice(&bytes[copied..]);
        Some(out)
    }
}

/// The redactors the log writer and the binary's error output use: that of the config loaded
/// last, and the one before it, whose runs may still be finishing (and logging) after a reload.
static INSTALLED: RwLock<Option<Installed>> = RwLock::new(None);

struct Installed {
    newest: Arc<Redactor>,
    previous: Option<Arc<Redactor>>,
}

/// Makes `redactor` the one [`current`] returns (done when a config is loaded); the one it
/// replaces keeps scrubbing log lines until the next load.
pub fn install(redactor: Arc<Redactor>) {
    // A poisoned lock only means a panic elsewhere while swapping an Arc; the value is whole.
    let mut slot = INSTALLED.write().unwrap_or_else(|e| e.into_inner());
    let previous = slot.take().map(|installed| installed.newest);
    *slot = Some(Installed {
        newest: redactor,
        previous,
    });
}

/// The redactor installed last, or an empty one before any config was loaded.
pub fn current() -> Arc<Redactor> {
    let slot = INSTALLED.read().unwrap_or_else(|e| e.into_inner());
    slot.as_ref()
        .map(|installed| installed.newest.clone())
        .unwrap_or_default()
}

/// `bytes` scrubbed by the installed redactors; `None` when nothing matched.
pub fn scrub_installed_bytes(bytes: &[u8]) -> Option<Vec<u8>> {
    let (newest, previous) = {
        let slot = INSTALLED.read().unwrap_or_else(|e| e.into_inner());
        let installed = slot.as_ref()?;
        (installed.newest.clone(), installed.previous.clone())
    };
    let scrubbed = newest.scrub_bytes(bytes);
    let Some(previous) = previous else {
        return scrubbed;
    };
    let once = scrubbed.as_deref().unwrap_or(bytes);
    previous.scrub_bytes(once).or(scrubbed)
}

/// `text` scrubbed by the installed redactors.
pub fn scrub_installed(text: &str) -> String {
    match scrub_installed_bytes(text.as_bytes()) {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => text.to_string(),
    }
}

/// A writer that scrubs what passes through it with the installed redactors: the log writer.
///
/// The log formatter writes each event in one `write_all`, so a secret is never split across two
/// calls; the scrubbed bytes go out whole, and the caller is told its bytes were all taken.
pub struct RedactingWriter<W>(pub W);

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match scrub_installed_bytes(buf) {
            Some(scrubbed) => self.0.write_all(&scrubbed)?,
            None => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn forms_of(secret: &str, forms: &mut BTreeSet<String>) {
    forms.insert(secret.to_string());
    let bytes = secret.as_bytes();
    base64_forms(bytes, forms);
    // The secret inside a longer base64 text, at each of the three byte offsets.
    for offset in 0..3 {
        let core = base64_core(bytes, offset);
        if core.len() >= MIN_BASE64_CORE {
            forms.insert(core.clone());
            forms.insert(core.replace('+', "-").replace('/', "_"));
        }
    }
    for plus_for_space in [false, true] {
        for upper in [false, true] {
            forms.insert(percent_encode(bytes, plus_for_space, upper));
        }
    }
    if let Ok(json) = serde_json::to_string(secret) {
        forms.insert(json.trim_matches('"').to_string());
    }
    let debug = format!("{secret:?}");
    forms.insert(debug.trim_matches('"').to_string());
}

fn base64_forms(bytes: &[u8], forms: &mut BTreeSet<String>) {
    let padded = BASE64.encode(bytes);
    let url_safe = padded.replace('+', "-").replace('/', "_");
    forms.insert(padded.trim_end_matches('=').to_string());
    forms.insert(url_safe.trim_end_matches('=').to_string());
    forms.insert(padded);
    forms.insert(url_safe);
}

/// The base64 characters that depend only on `bytes` when they start `offset` bytes into a
/// longer text: whatever precedes or follows them, these characters are the same.
fn base64_core(bytes: &[u8], offset: usize) -> String {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(bytes);
    let encoded = BASE64.encode(&padded);
    let start_bit = 8 * offset;
    let end_bit = 8 * (offset + bytes.len());
    encoded
        .chars()
        .enumerate()
        .filter(|(i, _)| 6 * i >= start_bit && 6 * i + 6 <= end_bit)
        .map(|(_, c)| c)
        .collect()
}

/// Percent-encoding of every byte outside the unreserved set (RFC 3986).
fn percent_encode(bytes: &[u8], plus_for_space: bool, upper: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else if b == b' ' && plus_for_space {
            out.push('+');
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_the_secret_and_its_encodings() {
        let secret = "Hunter2 pass/word+";
        let r = Redactor::for_secrets([secret]);
        for form in [
            secret.to_string(),
            BASE64.encode(secret.as_bytes()),
            BASE64
                .encode(secret.as_bytes())
                .trim_end_matches('=')
                .to_string(),
            "Hunter2%20pass%2Fword%2B".to_string(),
            "Hunter2+pass%2fword%2b".to_string(),
        ] {
            let text = format!("server said: {form} (end)");
            let scrubbed = r.scrub(&text);
            assert_eq!(scrubbed, "server said: <redacted> (end)", "form {form}");
        }
    }

    #[test]
    fn scrubs_auth_plain_with_known_and_unknown_user_names() {
        let password = "correct-horse-battery";
        let mut builder = RedactorBuilder::default();
        builder.login("monitor@shop.example", password);
        let r = builder.build();
        for plain in [
            format!("\0monitor@shop.example\0{password}"),
            format!("monitor@shop.example\0monitor@shop.example\0{password}"),
        ] {
            let encoded = BASE64.encode(plain.as_bytes());
            let text = format!("535 5.7.8 rejected {encoded}");
            assert_eq!(r.scrub(&text), "535 5.7.8 rejected <redacted>");
        }
        // A user name nobody configured: the part that encodes the password still goes.
        for user in ["x", "xy", "xyz"] {
            let encoded = BASE64.encode(format!("\0{user}\0{password}").as_bytes());
            let scrubbed = r.scrub(&format!("535 {encoded}"));
            assert!(scrubbed.contains(MARKER), "{user}: {scrubbed}");
            // At most a few characters at each edge of the password's part are left.
            let left = scrubbed.replace("535 ", "").replace(MARKER, "");
            assert!(left.len() <= 12, "{user}: {scrubbed}");
        }
    }

    #[test]
    fn a_secret_cut_short_is_still_scrubbed() {
        let r = Redactor::for_secrets(["correct-horse-battery"]);
        assert_eq!(
            r.scrub("NO bad password correct-hor…"),
            "NO bad password <redacted>"
        );
        assert_eq!(
            r.scrub("NO bad password corr…"),
            "NO bad password <redacted>"
        );
        // Too short a part to tell, and no cut at all: left alone.
        assert_eq!(r.scrub("NO bad password cor…"), "NO bad password cor…");
        assert_eq!(r.scrub("a correct answer"), "a correct answer");
    }

    #[test]
    fn overlapping_secrets_are_scrubbed_whole() {
        // One secret is a part of another, and two overlap in the text.
        let r = Redactor::for_secrets(["token-abcdef", "abcdef-suffix", "abcd"]);
        assert_eq!(r.scrub("a token-abcdef b"), "a <redacted> b");
        assert_eq!(r.scrub("x token-abcdef-suffix y"), "x <redacted> y");
        assert_eq!(r.scrub("only abcdef-suffix"), "only <redacted>");
        assert_eq!(r.scrub("abcd abcd"), "<redacted> <redacted>");
    }

    #[test]
    fn short_secrets_are_not_redacted() {
        let r = Redactor::for_secrets(["abc", "", "ok"]);
        assert_eq!(r.scrub("abc ok fine"), "abc ok fine");
        assert!(!r.finds("abc"));
        let r = Redactor::for_secrets(["abcd"]);
        assert_eq!(r.scrub("abcd"), MARKER);
    }

    #[test]
    fn scrubs_json_escapes_and_bytes() {
        let secret = "quote\"back\\slash";
        let r = Redactor::for_secrets([secret]);
        let json = serde_json::json!({ "message": format!("NO {secret}") }).to_string();
        assert!(!r.scrub(&json).contains("slash"), "{}", r.scrub(&json));
        let line = format!("log: {secret}\n");
        let scrubbed = r.scrub_bytes(line.as_bytes()).expect("matched");
        assert_eq!(scrubbed, b"log: <redacted>\n");
        assert!(r.scrub_bytes(b"nothing here").is_none());
    }

    #[test]
    fn collects_secrets_read_during_a_load() {
        let (secret, collected) = collect_secrets(|| {
            serde_json::from_str::<super::super::Secret>("\"s3cret-value\"").expect("a string")
        });
        assert_eq!(secret.expose(), "s3cret-value");
        assert!(collected.contains("s3cret-value"));
        // Outside a collection nothing is remembered.
        let (_, empty) = collect_secrets(|| ());
        assert!(empty.is_empty());
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let r = Redactor::for_secrets(["s3cret-value"]);
        assert!(!format!("{r:?}").contains("s3cret"));
    }
}
