//! Failure evidence: a screenshot and the page source of a run, kept under
//! `<artifacts.dir>/<check>/<run>/`, pruned to the newest `artifacts.keep` runs per check and to
//! `artifacts.max_age`.
//!
//! Each file is optional: a crashed tab can still give its source but no screenshot, or the other
//! way round, and half the evidence is better than none.

use super::session::Session;
use super::stats;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long taking the screenshot or reading the source may take.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(15);

/// What [`Session::save_artifacts`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifacts {
    /// The run's directory, `<artifacts.dir>/<check>/<run>/`.
    pub dir: PathBuf,
    /// `screenshot.png`, if it could be taken.
    pub screenshot: Option<PathBuf>,
    /// `page.html` (the current page source), if it could be read.
    pub page: Option<PathBuf>,
}

impl Session {
    /// Writes `screenshot.png` and `page.html` of the current page to
    /// `<artifacts.dir>/<check>/<run>/`, then prunes that check's older runs. Fails only when
    /// nothing could be written; the message says why.
    pub async fn save_artifacts(&self, check: &str, run: &str) -> Result<Artifacts, String> {
        let check_dir = self.artifacts.dir.join(path_component(check)?);
        let dir = check_dir.join(path_component(run)?);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut problems = Vec::new();

        let screenshot = match tokio::time::timeout(CAPTURE_TIMEOUT, self.client.screenshot()).await
        {
            Ok(Ok(png)) => write(&dir.join("screenshot.png"), &png, &mut problems).await,
            Ok(Err(e)) => {
                problems.push(format!("no screenshot: {e}"));
                None
            }
            Err(_) => {
                problems.push("no screenshot: timed out".into());
                None
            }
        };
        let page = match tokio::time::timeout(CAPTURE_TIMEOUT, self.client.source()).await {
            Ok(Ok(html)) => write(&dir.join("page.html"), html.as_bytes(), &mut problems).await,
            Ok(Err(e)) => {
                problems.push(format!("no page source: {e}"));
                None
            }
            Err(_) => {
                problems.push("no page source: timed out".into());
                None
            }
        };
        if screenshot.is_none() && page.is_none() {
            // Leave no empty run directory to crowd out real evidence.
            let _ = tokio::fs::remove_dir(&dir).await;
            return Err(problems.join("; "));
        }
        stats::artifacts_written();

        let (keep, max_age) = (self.artifacts.keep, self.artifacts.max_age.get());
        let current = dir.clone();
        // Directory walking and removal are blocking file-system work.
        let pruned =
            tokio::task::spawn_blocking(move || prune(&check_dir, &current, keep, max_age)).await;
        if let Ok(Err(e)) = pruned {
            tracing::warn!(error = %e, "cannot prune old browser artifacts");
        }
        Ok(Artifacts {
            dir,
            screenshot,
            page,
        })
    }
}

async fn write(path: &Path, bytes: &[u8], problems: &mut Vec<String>) -> Option<PathBuf> {
    match tokio::fs::write(path, bytes).await {
        Ok(()) => Some(path.to_path_buf()),
        Err(e) => {
            problems.push(format!("cannot write {}: {e}", path.display()));
            None
        }
    }
}

/// A check or run name as one safe path component: no separators, no `..`, nothing that a
/// shell would trip on.
fn path_component(name: &str) -> Result<String, String> {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() || safe.chars().all(|c| c == '.') {
        Err(format!("{name:?} cannot name an artifacts directory"))
    } else {
        Ok(safe)
    }
}

/// Removes run directories of one check beyond the `keep` newest and those older than `max_age`,
/// never `current` (the run just written). Symlinks and plain files are left alone.
pub(crate) fn prune(
    check_dir: &Path,
    current: &Path,
    keep: usize,
    max_age: Duration,
) -> std::io::Result<()> {
    let now = SystemTime::now();
    let mut runs: Vec<(SystemTime, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(check_dir)? {
        let entry = entry?;
        let meta = entry.path().symlink_metadata()?;
        if meta.is_dir() && entry.path() != current {
            runs.push((meta.modified()?, entry.path()));
        }
    }
    // Newest first; the current run counts as the newest of the `keep`.
    runs.sort_by(|a, b| b.cmp(a));
    let room = keep.saturating_sub(1);
    for (i, (modified, path)) in runs.into_iter().enumerate() {
        let too_old = now.duration_since(modified).is_ok_and(|age| age > max_age);
        if i >= room || too_old {
            std::fs::remove_dir_all(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components_are_safe() {
        assert_eq!(path_component("feedback-form"), Ok("feedback-form".into()));
        assert_eq!(path_component("a/b"), Ok("a_b".into()));
        assert_eq!(path_component("../x"), Ok(".._x".into()));
        assert!(path_component("..").is_err());
        assert!(path_component("").is_err());
    }
}
