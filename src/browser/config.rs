//! The `browser:` section: inert data, checked once at load by [`validate`].
//!
//! Everything a session needs from the config (window size, locale, user agent) is parsed here
//! too, so a bad value is reported when the file loads and never when a run starts.

use crate::value::{Dur, Text};
use serde::Deserialize;
use std::path::PathBuf;

/// The `browser:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserConfig {
    /// An existing WebDriver endpoint (chromedriver, Selenium); when unset supportwatch starts
    /// `chromedriver` itself.
    pub webdriver_url: Option<Text>,
    /// The chromedriver binary (default: `chromedriver` on PATH).
    #[serde(default = "default_chromedriver")]
    pub chromedriver: String,
    /// The chromium binary (default: let chromedriver find it).
    pub chromium: Option<String>,
    /// Browser runs at once, across all checks.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Window size, `WIDTHxHEIGHT`.
    #[serde(default = "default_window")]
    pub window: String,
    /// User agent (default: chromium's, with supportwatch's automated-test note appended).
    pub user_agent: Option<String>,
    /// Browser language (`Accept-Language`, `navigator.language`).
    #[serde(default = "default_locale")]
    pub locale: String,
    /// Evidence kept on failure.
    #[serde(default)]
    pub artifacts: ArtifactsConfig,
}

/// Where failure evidence (screenshot, page HTML) goes and how long it is kept.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsConfig {
    /// Directory; `<dir>/<check>/<run>/` per failed run.
    #[serde(default = "default_artifacts_dir")]
    pub dir: PathBuf,
    /// Failed runs kept per check (older ones are pruned).
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// Runs older than this are pruned.
    #[serde(default = "default_max_age")]
    pub max_age: Dur,
}

fn default_chromedriver() -> String {
    "chromedriver".into()
}
fn default_max_sessions() -> usize {
    2
}
fn default_window() -> String {
    "1366x768".into()
}
fn default_locale() -> String {
    "ru-RU".into()
}
fn default_artifacts_dir() -> PathBuf {
    PathBuf::from("artifacts")
}
fn default_keep() -> usize {
    20
}
fn default_max_age() -> Dur {
    Dur::secs(7 * 86400)
}

impl Default for ArtifactsConfig {
    fn default() -> Self {
        ArtifactsConfig {
            dir: default_artifacts_dir(),
            keep: default_keep(),
            max_age: default_max_age(),
        }
    }
}

impl Default for BrowserConfig {
    fn default() -> Self {
        BrowserConfig {
            webdriver_url: None,
            chromedriver: default_chromedriver(),
            chromium: None,
            max_sessions: default_max_sessions(),
            window: default_window(),
            user_agent: None,
            locale: default_locale(),
            artifacts: ArtifactsConfig::default(),
        }
    }
}

/// Smallest and largest window edge accepted, pixels. Below ~200 px most shops switch to a
/// layout no customer sees; above 10000 px chromium's screenshot buffer gets absurd.
const WINDOW_EDGE: std::ops::RangeInclusive<u32> = 200..=10_000;

/// Checks what serde cannot check about the `browser:` section. Every problem is reported, one
/// message each, starting with `browser: ` and naming its field.
pub fn validate(config: &BrowserConfig) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if config.max_sessions == 0 {
        problems.push("browser: max_sessions must be at least 1".to_string());
    }
    if let Err(e) = parse_window(&config.window) {
        problems.push(format!("browser: window: {e}"));
    }
    if !valid_locale(&config.locale) {
        problems.push(format!(
            "browser: locale {:?} is not a language tag such as `ru-RU` or `en`",
            config.locale
        ));
    }
    if let Some(ua) = &config.user_agent
        && (ua.trim().is_empty() || ua.chars().any(char::is_control))
    {
        problems.push("browser: user_agent must be one non-empty line".to_string());
    }
    if config.chromedriver.trim().is_empty() {
        problems.push("browser: chromedriver must name a binary (default: `chromedriver`)".into());
    }
    if let Some(url) = &config.webdriver_url {
        match url::Url::parse(url.expose()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(_) => problems.push(format!(
                "browser: webdriver_url {url} must be an http:// or https:// URL with a host"
            )),
            Err(e) => problems.push(format!("browser: webdriver_url {url}: {e}")),
        }
    }
    if config.artifacts.keep == 0 {
        problems.push(
            "browser: artifacts.keep must be at least 1 (the evidence of the last failure)".into(),
        );
    }
    if config.artifacts.max_age.get().is_zero() {
        problems.push("browser: artifacts.max_age must be longer than 0s".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// `WIDTHxHEIGHT` → (width, height).
pub(crate) fn parse_window(window: &str) -> Result<(u32, u32), String> {
    let shape = || format!("{window:?} must be WIDTHxHEIGHT, e.g. 1366x768");
    let (w, h) = window.split_once(['x', 'X']).ok_or_else(shape)?;
    let w: u32 = w.trim().parse().map_err(|_| shape())?;
    let h: u32 = h.trim().parse().map_err(|_| shape())?;
    if !WINDOW_EDGE.contains(&w) || !WINDOW_EDGE.contains(&h) {
        return Err(format!(
            "{window:?}: width and height must be between {} and {} pixels",
            WINDOW_EDGE.start(),
            WINDOW_EDGE.end()
        ));
    }
    Ok((w, h))
}

/// A BCP 47-shaped tag: a 2–8 letter language, then `-`-separated alphanumeric subtags.
fn valid_locale(locale: &str) -> bool {
    let mut parts = locale.split('-');
    let lang_ok = parts
        .next()
        .is_some_and(|l| (2..=8).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphabetic()));
    lang_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// `Accept-Language` for a locale: `ru-RU` → `ru-RU,ru`, so servers that only know the bare
/// language still answer in it.
pub(crate) fn accept_languages(locale: &str) -> String {
    match locale.split_once('-') {
        Some((lang, _)) => format!("{locale},{lang}"),
        None => locale.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_shapes() {
        assert_eq!(parse_window("1366x768"), Ok((1366, 768)));
        assert!(parse_window("1366*768").is_err());
        assert!(parse_window("10x768").is_err());
        assert!(parse_window("x").is_err());
    }

    #[test]
    fn locales() {
        assert!(valid_locale("ru-RU"));
        assert!(valid_locale("en"));
        assert!(valid_locale("zh-Hant-TW"));
        assert!(!valid_locale(""));
        assert!(!valid_locale("ru_RU"));
        assert!(!valid_locale("ru-"));
        assert_eq!(accept_languages("ru-RU"), "ru-RU,ru");
        assert_eq!(accept_languages("en"), "en");
    }

    #[test]
    fn validate_collects_every_problem() {
        let config = BrowserConfig {
            window: "big".into(),
            locale: "ru_RU".into(),
            max_sessions: 0,
            ..BrowserConfig::default()
        };
        let Err(e) = validate(&config) else {
            panic!("accepted a bad config")
        };
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e.iter().all(|m| m.starts_with("browser: ")), "{e:?}");
        assert!(validate(&BrowserConfig::default()).is_ok());
    }
}
