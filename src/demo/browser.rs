//! Leaving the demo's browser checks out when chromedriver is not installed.
//!
//! The checks are cut out of the config text, not out of the loaded config: the daemon loads
//! (and reloads) its config from text, so the text it gets must be the one it runs. The cut is
//! by lines, from each check's first line to the next check (comments in between belong to the
//! next one), which is exact for block-style check lists like `checks/demo.yaml`'s.

use crate::browser::{BrowserConfig, INSTALL_HINT};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A demo check that was not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The check's name.
    pub check: String,
    /// Why, with the command that fixes it.
    pub reason: String,
}

/// `text` without its browser checks when chromedriver is missing, and the checks left out.
/// A config that does not load is returned as it is: the daemon reports its problems.
pub(super) fn skip_without_chromedriver(
    path: &Path,
    text: &str,
    vars: &HashMap<String, String>,
) -> (String, Vec<Skipped>) {
    let loaded = crate::value::with_overlay(vars, || {
        crate::config::load_sources(&[(path.to_path_buf(), text.to_string())])
    });
    let Ok(config) = loaded else {
        return (text.to_string(), Vec::new());
    };
    let Some(missing) = chromedriver_missing(&config.browser) else {
        return (text.to_string(), Vec::new());
    };
    let reason = format!("needs a browser, and {missing}; install it with `{INSTALL_HINT}`");
    let starts: Vec<(usize, bool, &str)> = config
        .checks
        .iter()
        .map(|c| {
            let line = usize::try_from(c.origin.line).unwrap_or(1).max(1) - 1;
            (line, c.spec.uses_browser(), c.name.as_str())
        })
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    let mut keep = vec![true; lines.len()];
    let mut skipped = Vec::new();
    for (i, &(start, browser, name)) in starts.iter().enumerate() {
        if !browser {
            continue;
        }
        let next = starts.get(i + 1).map(|s| s.0).unwrap_or_else(|| {
            // The last check ends at the next top-level key, or at the end of the file.
            (start + 1..lines.len())
                .find(|&l| {
                    let line = lines[l];
                    !line.starts_with([' ', '#', '-']) && !line.trim().is_empty()
                })
                .unwrap_or(lines.len())
        });
        let mut end = next.min(lines.len());
        while end > start + 1 && {
            let t = lines[end - 1].trim();
            t.is_empty() || t.starts_with('#')
        } {
            end -= 1;
        }
        keep[start..end].iter_mut().for_each(|k| *k = false);
        skipped.push(Skipped {
            check: name.to_string(),
            reason: reason.clone(),
        });
    }
    let kept: Vec<&str> = lines
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(l, _)| *l)
        .collect();
    (kept.join("\n") + "\n", skipped)
}

/// Why chromedriver cannot be started, or `None` when it can (or an external WebDriver
/// endpoint is configured).
fn chromedriver_missing(config: &BrowserConfig) -> Option<String> {
    if config.webdriver_url.is_some() {
        return None;
    }
    let name = &config.chromedriver;
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(name)]
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
            .unwrap_or_default()
    };
    if candidates.iter().any(|p| is_executable(p)) {
        None
    } else if name.contains('/') {
        Some(format!("chromedriver is not installed at `{name}`"))
    } else {
        Some(format!("chromedriver (`{name}`) is not on PATH"))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_chromedriver_the_browser_checks_are_cut_out_and_the_rest_still_loads() {
        let text = super::super::DEMO_CONFIG.replace(
            "browser:\n",
            "browser:\n  chromedriver: /nonexistent/chromedriver\n",
        );
        let path = PathBuf::from("checks/demo.yaml");
        let (kept, skipped) = skip_without_chromedriver(&path, &text, &HashMap::new());
        let names: Vec<&str> = skipped.iter().map(|s| s.check.as_str()).collect();
        assert_eq!(names, ["demo-js-contact-form", "demo-callback-widget"]);
        assert_eq!(
            skipped[0].reason,
            "needs a browser, and chromedriver is not installed at `/nonexistent/chromedriver`; install it with `apt-get install chromium chromium-driver`"
        );
        let config = crate::config::load_sources(&[(path, kept)]).expect("still loads");
        let left: Vec<&str> = config.checks.iter().map(|c| c.name.as_str()).collect();
        let all = crate::config::load_sources(&[(PathBuf::from("d.yaml"), text)])
            .expect("loads")
            .checks
            .into_iter()
            .map(|c| c.name)
            .filter(|n| !names.contains(&n.as_str()))
            .collect::<Vec<_>>();
        assert_eq!(left, all);
        assert!(config.checks.iter().all(|c| !c.spec.uses_browser()));
    }

    #[test]
    fn a_chromedriver_on_path_or_an_external_webdriver_skips_nothing() {
        let mut config = BrowserConfig {
            chromedriver: "sh".into(),
            ..BrowserConfig::default()
        };
        assert_eq!(chromedriver_missing(&config), None);
        config.chromedriver = "no-such-chromedriver".into();
        assert_eq!(
            chromedriver_missing(&config).as_deref(),
            Some("chromedriver (`no-such-chromedriver`) is not on PATH")
        );
        config.webdriver_url = Some(crate::value::Text::literal("http://127.0.0.1:4444"));
        assert_eq!(chromedriver_missing(&config), None);
    }
}
