//! Stand-ins for three `Session` methods that `crate::browser` is about to gain (console log,
//! failure evidence, marking a session broken). Their signatures follow the planned ones, so the
//! swap is a change of call sites; this file then goes away.

use crate::browser::{BrowserConfig, Session};
use std::path::PathBuf;

/// Evidence saved for a failed run.
pub(super) struct Artifacts {
    /// `<artifacts.dir>/<check>/<run>/`.
    #[allow(dead_code)]
    pub dir: PathBuf,
    /// The screenshot (PNG), if it could be taken.
    pub screenshot: Option<PathBuf>,
    /// The page's HTML as the browser had it, if it could be read.
    pub page: Option<PathBuf>,
}

/// `GET`-style legacy log command of chromedriver: the browser's console since the last call.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }
    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// Console messages of level SEVERE (uncaught exceptions, `console.error`, failed loads).
pub(super) async fn console_errors(session: &Session) -> Vec<String> {
    let Ok(value) = session.client.issue_cmd(BrowserLog).await else {
        return Vec::new();
    };
    value
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e.get("level").and_then(|l| l.as_str()) == Some("SEVERE"))
                .filter_map(|e| e.get("message").and_then(|m| m.as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Saves a screenshot and the page source under `<artifacts.dir>/<check>/<run>/`.
pub(super) async fn save_artifacts(
    session: &Session,
    config: &BrowserConfig,
    check: &str,
    run: &str,
) -> Result<Artifacts, String> {
    let dir = config.artifacts.dir.join(check).join(run);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let png = session
        .client
        .screenshot()
        .await
        .map_err(|e| format!("no screenshot: {e}"))?;
    let html = session
        .client
        .source()
        .await
        .map_err(|e| format!("no page source: {e}"))?;
    let screenshot = dir.join("screenshot.png");
    let page = dir.join("page.html");
    tokio::fs::write(&screenshot, png)
        .await
        .map_err(|e| format!("cannot write {}: {e}", screenshot.display()))?;
    tokio::fs::write(&page, html)
        .await
        .map_err(|e| format!("cannot write {}: {e}", page.display()))?;
    Ok(Artifacts {
        dir,
        screenshot: Some(screenshot),
        page: Some(page),
    })
}

/// Tells the pool not to trust this session's driver any more.
pub(super) fn mark_broken(_session: &Session) {}
