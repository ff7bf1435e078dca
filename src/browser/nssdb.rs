//! A private NSS database for one session's chromium, so that a check's `ca_file` is trusted by
//! that chromium only.
//!
//! chromium on Linux trusts, besides its own root store, the CAs in the user's NSS database at
//! `$HOME/.pki/nssdb`. A session with CAs to trust gets a HOME of its own inside its profile
//! directory, holding a database that NSS's `certutil` makes with only those CAs, and chromium is
//! started through a two-line launcher that sets that HOME: chromedriver is shared by every
//! session and has no way to give one session's browser an environment of its own. Everything is
//! removed with the profile.
//!
//! chromium's `--ignore-certificate-errors-spki-list` is not used: it ignores *every* error of a
//! matching chain, an expired certificate and a wrong name included, and it matches only the
//! certificates the server sends, which usually leaves out the root a `ca_file` holds.

use super::BrowserError;
use rustls::pki_types::CertificateDer;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Debian package that has `certutil`.
pub const CERTUTIL_HINT: &str = "apt-get install libnss3-tools";
/// How long one `certutil` run may take (it takes milliseconds).
const CERTUTIL_TIMEOUT: Duration = Duration::from_secs(10);
/// Names chromium goes by on PATH, tried in order when `browser.chromium` is not set.
const CHROMIUM_NAMES: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome-stable",
    "google-chrome",
];

/// Makes `<profile>/home` with an NSS database that trusts `trust` as CAs for server
/// certificates, and a launcher `<profile>/chromium` that starts chromium (`chromium`, else the
/// first found on PATH) with that HOME. Returns the launcher, for the session's `binary`.
pub(super) async fn prepare(
    profile: &Path,
    trust: &[CertificateDer<'_>],
    chromium: Option<&str>,
) -> Result<PathBuf, BrowserError> {
    let fail = |m: String| BrowserError::Session(format!("cannot trust the ca_file: {m}"));
    let chromium = find_chromium(chromium)?;
    let home = profile.join("home");
    let db = home.join(".pki").join("nssdb");
    std::fs::create_dir_all(&db)
        .map_err(|e| fail(format!("cannot create {}: {e}", db.display())))?;
    let db_arg = format!("sql:{}", db.display());
    certutil(&["-N", "-d", &db_arg, "--empty-password"]).await?;
    for (i, cert) in trust.iter().enumerate() {
        let file = home.join(format!("ca-{i}.der"));
        std::fs::write(&file, cert.as_ref())
            .map_err(|e| fail(format!("cannot write {}: {e}", file.display())))?;
        let file = file.display().to_string();
        let nickname = format!("supportwatch ca_file {}", i + 1);
        // `C,,`: a CA trusted to issue server certificates, and nothing else (not mail, not code).
        certutil(&[
            "-A", "-d", &db_arg, "-t", "C,,", "-n", &nickname, "-i", &file,
        ])
        .await?;
    }
    let launcher = profile.join("chromium");
    let script = format!(
        "#!/bin/sh\nHOME={} exec {} \"$@\"\n",
        shell_quote(&home.display().to_string()),
        shell_quote(&chromium.display().to_string())
    );
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&launcher)
        .and_then(|mut f| std::io::Write::write_all(&mut f, script.as_bytes()))
        .map_err(|e| fail(format!("cannot write {}: {e}", launcher.display())))?;
    Ok(launcher)
}

/// Runs `certutil` with `args`, bounded; its complaint becomes the error.
async fn certutil(args: &[&str]) -> Result<(), BrowserError> {
    let run = tokio::process::Command::new("certutil")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(CERTUTIL_TIMEOUT, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BrowserError::Session(format!(
                "a ca_file on a browser check needs NSS's certutil; install it with `{CERTUTIL_HINT}`"
            )));
        }
        Ok(Err(e)) => return Err(BrowserError::Session(format!("cannot run certutil: {e}"))),
        Err(_) => {
            return Err(BrowserError::Session(format!(
                "certutil did not finish within {}s",
                CERTUTIL_TIMEOUT.as_secs()
            )));
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    Err(BrowserError::Session(format!(
        "certutil refused the ca_file ({}): {}",
        output.status,
        super::session::trim_message(&said)
    )))
}

/// The chromium to launch: `configured` (a path, or a name on PATH), else the first of the usual
/// names found on PATH.
fn find_chromium(configured: Option<&str>) -> Result<PathBuf, BrowserError> {
    match configured {
        Some(c) if c.contains('/') => Ok(PathBuf::from(c)),
        Some(c) => super::driver::on_path(c)
            .ok_or_else(|| BrowserError::Session(format!("browser.chromium `{c}` is not on PATH"))),
        None => CHROMIUM_NAMES
            .iter()
            .find_map(|n| super::driver::on_path(n))
            .ok_or_else(|| {
                BrowserError::Session(format!(
                    "chromium not found on PATH; install it with `{}` or set browser.chromium",
                    super::INSTALL_HINT
                ))
            }),
    }
}

/// `text` as one single-quoted shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
