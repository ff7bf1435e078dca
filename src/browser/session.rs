//! One run's browser session: opening it, reading its console, and making sure it ends.
//!
//! A session ends one of three ways. `close()` deletes it and waits. Dropping it (the runner drops
//! a timed-out probe's future) spawns the same cleanup as a task. If even that task never runs
//! (the runtime is shutting down), the lease's `Drop` kills the browser's process tree
//! synchronously. In every case the pool slot is released only after the browser is gone, so
//! `max_sessions` bounds real chromium processes, not just handles.
//!
//! Deleting a session is queued behind whatever command it is running, both in fantoccini and in
//! chromedriver, so a session stuck in a page load that never finishes cannot be deleted until
//! chromedriver's page-load timeout (5 minutes). The cleanup therefore waits only briefly, then
//! kills that session's browser itself when chromedriver runs locally. That makes the stuck
//! command fail, and the queued delete then goes through.

use super::procs;
use super::stats;
use super::{ArtifactsConfig, BrowserError};
use fantoccini::error::{CmdError, ErrorStatus, NewSessionError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// How long a graceful delete may take before the browser is killed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the console log read may take.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);
/// Console errors kept per session, and the length each is cut to.
const MAX_CONSOLE_ERRORS: usize = 200;
const MAX_CONSOLE_CHARS: usize = 1000;
/// Length an error message from chromedriver is cut to.
const MAX_MESSAGE_CHARS: usize = 400;

/// One run's browser session; holds a pool slot until the browser is gone.
pub struct Session {
    /// The WebDriver client.
    pub client: fantoccini::Client,
    pub(super) id: String,
    pub(super) lease: Option<Lease>,
    pub(super) console: std::sync::Mutex<Vec<String>>,
    pub(super) artifacts: Arc<ArtifactsConfig>,
    pub(super) broken: Arc<AtomicBool>,
}

/// What a session owns besides its client: the slot, the private profile, and the knowledge
/// needed to kill its browser.
pub(super) struct Lease {
    /// chromium's browser process, when chromedriver runs on this machine.
    pub browser_pid: Option<u32>,
    /// The private profile (`--user-data-dir`), removed when the lease drops.
    pub profile: Option<tempfile::TempDir>,
    pub broken: Arc<AtomicBool>,
    /// Set once the browser is known to be gone.
    pub finished: bool,
    // Dropped last, after the profile is removed: field order is drop order.
    pub _active: stats::Active,
    pub _slot: OwnedSemaphorePermit,
}

impl Session {
    /// The WebDriver session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Ends the session: deletes it (closing the browser) and releases the pool slot.
    pub async fn close(mut self) {
        if let Some(lease) = self.lease.take() {
            lease.finish(self.client.clone()).await;
        }
    }

    /// Marks the driver suspect: the run hit a timeout or a WebDriver transport error. Before the
    /// next session the driver is health-checked and, if it does not answer quickly, replaced.
    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    /// JavaScript errors and `console.error` messages of the session so far (chromedriver's
    /// `SEVERE` browser log entries, which also include failed resource loads, except chromium's
    /// own `/favicon.ico` request).
    ///
    /// chromedriver hands each log entry out once, so they are accumulated here and every call
    /// returns all of them. A log that cannot be read returns what was collected before.
    pub async fn console_errors(&self) -> Vec<String> {
        match tokio::time::timeout(LOG_TIMEOUT, self.client.issue_cmd(BrowserLog)).await {
            Ok(Ok(entries)) => {
                let mut console = self.console.lock().unwrap_or_else(|e| e.into_inner());
                let severe = entries
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["level"].as_str() == Some("SEVERE"))
                    .filter(|e| !favicon_miss(e))
                    .filter_map(|e| e["message"].as_str());
                for message in severe {
                    if console.len() < MAX_CONSOLE_ERRORS {
                        console.push(message.chars().take(MAX_CONSOLE_CHARS).collect());
                    }
                }
            }
            Ok(Err(e)) => {
                if is_transport(&e) {
                    self.mark_broken();
                }
                tracing::debug!(error = %e, "cannot read the browser console log");
            }
            Err(_) => tracing::debug!("reading the browser console log timed out"),
        }
        self.console
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Tells whether a failed WebDriver command means the browser or chromedriver is gone
    /// (`Some(BrowserError::Died)`) rather than that the step failed on the page. A transport
    /// failure also marks the driver broken.
    pub fn died(&self, err: &CmdError) -> Option<BrowserError> {
        if is_transport(err) {
            self.mark_broken();
            return Some(BrowserError::Died(format!("lost chromedriver: {err}")));
        }
        match err {
            CmdError::Standard(wd) if browser_gone(&wd.error, &wd.message) => {
                Some(BrowserError::Died(trim_message(&wd.message)))
            }
            _ => None,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        // A dropped session (a timed-out run) is cleaned up in the background. Without a runtime
        // the lease's own Drop kills the browser synchronously instead.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            handle.spawn(lease.finish(client));
        }
    }
}

impl Lease {
    /// Deletes the session and makes sure its browser is gone, killing it if the delete does not
    /// do that quickly.
    pub async fn finish(mut self, client: fantoccini::Client) {
        // Read before anything exits: the link lives in the profile.
        let singleton = self.marker().and_then(|m| singleton_dir(Path::new(&m)));
        match tokio::time::timeout(CLOSE_TIMEOUT, client.close()).await {
            // fantoccini reports success even when the delete request failed, so whether the
            // browser is really gone is checked below, not trusted from here.
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if is_transport(&e) {
                    self.broken.store(true, Ordering::Relaxed);
                }
                tracing::debug!(error = %e, "closing the browser session failed");
            }
            Err(_) => {
                self.broken.store(true, Ordering::Relaxed);
                tracing::warn!(
                    "the browser session did not close within {}s; killing its browser",
                    CLOSE_TIMEOUT.as_secs()
                );
            }
        }
        if let (Some(pid), Some(marker)) = (self.browser_pid, self.marker()) {
            // chromedriver answers a delete once chromium has exited; a browser still running
            // means the delete never arrived (chromedriver gone) or was not obeyed.
            if !gone_within(pid, Duration::from_secs(1)).await {
                self.broken.store(true, Ordering::Relaxed);
                procs::kill_tree(pid, &marker);
                gone_within(pid, Duration::from_secs(2)).await;
            }
            remove_singleton(singleton);
        }
        self.finished = true;
    }

    /// The profile path, which appears on the browser's command line.
    fn marker(&self) -> Option<String> {
        Some(self.profile.as_ref()?.path().to_str()?.to_string())
    }
}

/// Waits until `pid` has exited, up to `within`.
async fn gone_within(pid: u32, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while procs::alive(pid) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let (Some(pid), Some(marker)) = (self.browser_pid, self.marker()) {
            let singleton = singleton_dir(Path::new(&marker));
            procs::kill_tree(pid, &marker);
            remove_singleton(singleton);
        }
    }
}

/// chromium keeps its single-instance socket in a directory of its own under `TMPDIR`, linked
/// from the profile; a clean exit removes it, a kill leaves it behind. Read before the kill.
fn singleton_dir(profile: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(profile.join("SingletonSocket")).ok()?;
    let dir = target.parent()?.to_path_buf();
    let name = dir.file_name()?.to_str()?;
    name.starts_with("org.chromium.Chromium.").then_some(dir)
}

fn remove_singleton(dir: Option<PathBuf>) {
    if let Some(dir) = dir {
        // Usually already gone (a clean exit removes it); any other failure only leaves a socket.
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// chromium asks every site for `/favicon.ico` on its own, and many shops have none: that 404 is
/// not the page's error and would make every console check noisy.
fn favicon_miss(entry: &serde_json::Value) -> bool {
    entry["source"].as_str() == Some("network")
        && entry["message"]
            .as_str()
            .and_then(|m| m.split_whitespace().next())
            .is_some_and(|url| url.ends_with("/favicon.ico"))
}

/// chromedriver's log endpoint (`POST /session/{id}/se/log`), which fantoccini has no method for.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        // Without a session id there is nothing to ask; an unparsable URL makes the command fail
        // cleanly instead of asking another endpoint.
        let id = session_id.ok_or(url::ParseError::EmptyHost)?;
        base_url.join(&format!("session/{id}/se/log"))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// Whether the WebDriver endpoint itself could not be talked to.
pub(super) fn is_transport(err: &CmdError) -> bool {
    matches!(
        err,
        CmdError::Failed(_) | CmdError::FailedC(_) | CmdError::Lost(_)
    )
}

/// chromedriver's ways of saying that chromium crashed or went away.
fn browser_gone(status: &ErrorStatus, message: &str) -> bool {
    const GONE: [&str; 6] = [
        "chrome not reachable",
        "disconnected",
        "not connected to devtools",
        "session deleted",
        "tab crashed",
        "target crashed",
    ];
    let message = message.to_ascii_lowercase();
    *status == ErrorStatus::InvalidSessionId || GONE.iter().any(|m| message.contains(m))
}

/// Why a new session failed: the endpoint could not be talked to (worth a driver restart), or it
/// answered with a refusal (chromium missing or crashing, bad capabilities).
pub(super) enum OpenError {
    Transport(String),
    Refused(String),
}

pub(super) fn classify_new_session(err: NewSessionError) -> OpenError {
    match err {
        NewSessionError::Failed(e) => OpenError::Transport(e.to_string()),
        NewSessionError::FailedC(e) => OpenError::Transport(e.to_string()),
        NewSessionError::Lost(e) => OpenError::Transport(e.to_string()),
        NewSessionError::UnexpectedError(e) if is_transport(&e) => {
            OpenError::Transport(e.to_string())
        }
        NewSessionError::UnexpectedError(e) => OpenError::Refused(trim_message(&e.to_string())),
        NewSessionError::SessionNotCreated(wd) => OpenError::Refused(trim_message(&wd.message)),
        // fantoccini files chromedriver's "unknown error" answers (chromium crashed on start)
        // here, as the raw JSON error; its message is what a person needs.
        NewSessionError::NotW3C(json) => OpenError::Refused(trim_message(
            json["message"]
                .as_str()
                .or_else(|| json["value"]["message"].as_str())
                .unwrap_or(&json.to_string()),
        )),
        NewSessionError::BadWebdriverUrl(e) => {
            OpenError::Refused(format!("bad WebDriver URL: {e}"))
        }
    }
}

/// One line, cut to a readable length: chromedriver's messages span lines and can be long.
pub(super) fn trim_message(message: &str) -> String {
    let one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_MESSAGE_CHARS {
        one_line
    } else {
        let cut: String = one_line.chars().take(MAX_MESSAGE_CHARS).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_chromedriver_messages() {
        let m = "session not created: Chrome failed to start\n  (exited normally)\n";
        assert_eq!(
            trim_message(m),
            "session not created: Chrome failed to start (exited normally)"
        );
        assert_eq!(trim_message(&"x".repeat(500)).chars().count(), 401);
    }

    #[test]
    fn recognises_a_dead_browser() {
        assert!(browser_gone(
            &ErrorStatus::UnknownError,
            "disconnected: not connected to DevTools"
        ));
        assert!(browser_gone(&ErrorStatus::InvalidSessionId, "whatever"));
        assert!(!browser_gone(
            &ErrorStatus::NoSuchElement,
            "no such element"
        ));
    }
}
