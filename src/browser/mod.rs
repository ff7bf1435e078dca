//! Real-browser sessions for `browser` checks (and `form` with `via: browser`): WebDriver through
//! chromedriver and headless chromium.
//!
//! [`Browser`] owns the WebDriver endpoint — a chromedriver it starts itself on loopback and keeps
//! warm ([`driver`]), or an existing one at `browser.webdriver_url` — and a bounded pool of
//! sessions. Each run gets a fresh session with a fresh profile ([`Session`]) and its check's own
//! trust and host overrides ([`SessionOptions`]), so no browser is shared between checks; what a
//! run does with it (the steps) is the probe's business.
//!
//! The pool never leaks a browser: a session closed, dropped, or abandoned on a dead driver ends
//! its chromium (see [`session`]), and dropping the `Browser` kills chromedriver's whole process
//! group. A driver that died, or that a run marked broken and that then fails a health check, is
//! replaced before the next session is handed out.

mod artifacts;
mod config;
mod driver;
mod nssdb;
mod options;
mod procs;
mod session;
mod stats;

pub use artifacts::Artifacts;
pub use config::{ArtifactsConfig, BrowserConfig, validate};
pub use nssdb::CERTUTIL_HINT;
pub use options::SessionOptions;
pub use session::Session;
pub use stats::{PoolStats, pool_stats};

use driver::Driver;
use session::{Lease, OpenError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore};

/// The Debian packages a browser check needs.
pub const INSTALL_HINT: &str = "apt-get install chromium chromium-driver";

/// Why a `ca_file` cannot be used with an external WebDriver endpoint.
pub const REMOTE_CA_FILE: &str = "`ca_file` on a browser check needs the chromedriver supportwatch \
     starts itself (the CA is trusted in a database made for that run's chromium on this machine); \
     browser.webdriver_url is set";

/// How long chromedriver may take to create a session (it launches chromium).
const NEW_SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// How quickly a driver marked broken must answer `/status` to be kept.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Chrome major version assumed in the user agent until the real one is known (an external
/// WebDriver endpoint tells it only with the first session).
const FALLBACK_MAJOR: u32 = 156;

/// Why a browser session could not be had or used. Messages name the cause plainly.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrowserError {
    /// chromedriver is not installed.
    #[error("chromedriver not found at `{path}`; install it with `{INSTALL_HINT}`")]
    DriverNotFound {
        /// What was looked for.
        path: String,
    },
    /// chromedriver did not start or answer.
    #[error("chromedriver did not start: {0}")]
    DriverStart(String),
    /// The WebDriver endpoint refused a new session (chromium missing, crashed, ...).
    #[error("cannot start a browser session: {0}")]
    Session(String),
    /// chromedriver or chromium died during the run.
    #[error("the browser died during the run: {0}")]
    Died(String),
}

/// The WebDriver endpoint and the session pool of one loaded config.
pub struct Browser {
    config: BrowserConfig,
    artifacts: Arc<ArtifactsConfig>,
    slots: Arc<Semaphore>,
    /// The local chromedriver, once started. An async mutex: starting one takes up to seconds,
    /// and runs that need it meanwhile should wait for that start rather than begin their own.
    driver: Mutex<Option<Driver>>,
    starts: AtomicU64,
    /// Set by a run that hit a timeout or transport error; checked before the next session.
    broken: Arc<AtomicBool>,
    /// Chrome's major version, for the user agent; 0 until known.
    major: AtomicU32,
}

/// Where a new session is asked for.
struct Endpoint {
    url: String,
    /// The local driver's generation, `None` for an external endpoint.
    generation: Option<u64>,
}

impl Browser {
    /// A pool for `config`; nothing is started until the first session is asked for.
    pub fn new(config: BrowserConfig) -> Self {
        // fantoccini's client is built on rustls, which needs the process-wide crypto provider.
        crate::tlsconf::install_crypto_provider();
        Browser {
            slots: Arc::new(Semaphore::new(config.max_sessions.max(1))),
            artifacts: Arc::new(config.artifacts.clone()),
            config,
            driver: Mutex::new(None),
            starts: AtomicU64::new(0),
            broken: Arc::new(AtomicBool::new(false)),
            major: AtomicU32::new(0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BrowserConfig {
        &self.config
    }

    /// The pid of the chromedriver this pool started (also its process group id), if it runs.
    pub async fn driver_pid(&self) -> Option<u32> {
        self.driver.lock().await.as_ref().map(Driver::pid)
    }

    /// Waits for a free slot, makes sure the driver runs, and opens a fresh session.
    ///
    /// A session that fails because the local driver cannot be talked to restarts the driver and
    /// is tried once more.
    pub async fn session(&self) -> Result<Session, BrowserError> {
        self.session_with(&SessionOptions::default()).await
    }

    /// [`Self::session`] with a check's own trust and host overrides. A `ca_file` needs the local
    /// chromedriver: its database is made on this machine's file system.
    pub async fn session_with(&self, options: &SessionOptions) -> Result<Session, BrowserError> {
        let slot = {
            let _waiting = stats::Waiting::enter();
            self.slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| BrowserError::Session("browser pool closed".into()))?
        };
        let mut retried = false;
        loop {
            let endpoint = self.endpoint().await?;
            let profile = match endpoint.generation {
                // A profile of our own, so it is removed even if chromedriver dies, and so the
                // browser can be found by it. A remote driver uses its own file system.
                Some(_) => Some(
                    tempfile::Builder::new()
                        .prefix("supportwatch-chromium-")
                        .tempdir()
                        .map_err(|e| {
                            BrowserError::Session(format!("cannot create a browser profile: {e}"))
                        })?,
                ),
                None => None,
            };
            let launcher = match (&profile, options.trust.is_empty()) {
                (_, true) => None,
                (Some(profile), false) => Some(
                    nssdb::prepare(
                        profile.path(),
                        &options.trust,
                        self.config.chromium.as_deref(),
                    )
                    .await?,
                ),
                (None, false) => return Err(BrowserError::Session(REMOTE_CA_FILE.into())),
            };
            let caps = self.capabilities(
                profile.as_ref().map(|p| p.path()),
                launcher.as_deref(),
                options,
            );
            let opened = tokio::time::timeout(NEW_SESSION_TIMEOUT, async {
                fantoccini::ClientBuilder::rustls()
                    .map_err(|e| OpenError::Refused(format!("TLS setup: {e}")))?
                    .capabilities(caps)
                    .connect(&endpoint.url)
                    .await
                    .map_err(session::classify_new_session)
            })
            .await;
            match opened {
                Ok(Ok(client)) => {
                    return Ok(self.wrap(client, endpoint.generation.is_some(), profile, slot));
                }
                Ok(Err(OpenError::Transport(e))) => match endpoint.generation {
                    Some(generation) if !retried => {
                        tracing::warn!(error = %e, "chromedriver did not answer; restarting it");
                        retried = true;
                        self.restart(generation).await;
                    }
                    _ => return Err(BrowserError::Session(format!("WebDriver endpoint: {e}"))),
                },
                Ok(Err(OpenError::Refused(e))) => {
                    let hint = if e.contains("binary") || e.contains("cannot find Chrome") {
                        format!("; install chromium with `{INSTALL_HINT}`")
                    } else {
                        String::new()
                    };
                    return Err(BrowserError::Session(format!("{e}{hint}")));
                }
                Err(_) => {
                    self.broken.store(true, Ordering::Relaxed);
                    return Err(BrowserError::Session(format!(
                        "no session within {}s",
                        NEW_SESSION_TIMEOUT.as_secs()
                    )));
                }
            }
        }
    }

    fn wrap(
        &self,
        client: fantoccini::Client,
        local: bool,
        profile: Option<tempfile::TempDir>,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Session {
        let response = client.session_creation_response();
        let id = response
            .map(|r| r.session_id().to_string())
            .unwrap_or_default();
        let caps = response.and_then(|r| r.capabilities());
        if let Some(major) = caps.and_then(|c| {
            c.get("browserVersion")?
                .as_str()?
                .split('.')
                .next()?
                .parse()
                .ok()
        }) {
            self.major.store(major, Ordering::Relaxed);
        }
        // `goog:processID` is chromium's browser process, meaningful only on this machine.
        let browser_pid = caps
            .filter(|_| local)
            .and_then(|c| c.get("goog:processID")?.as_u64())
            .and_then(|p| u32::try_from(p).ok());
        Session {
            client,
            id,
            lease: Some(Lease {
                browser_pid,
                profile,
                broken: self.broken.clone(),
                finished: false,
                _active: stats::Active::enter(),
                _slot: slot,
            }),
            console: std::sync::Mutex::new(Vec::new()),
            artifacts: self.artifacts.clone(),
            broken: self.broken.clone(),
        }
    }

    /// The endpoint to ask, starting or replacing the local driver if it is missing, dead, or
    /// marked broken and not answering.
    async fn endpoint(&self) -> Result<Endpoint, BrowserError> {
        if let Some(url) = &self.config.webdriver_url {
            self.broken.store(false, Ordering::Relaxed);
            let mut url = url.expose().to_string();
            // fantoccini joins paths onto this URL; without the slash `/wd/hub` would lose `hub`.
            if !url.ends_with('/') {
                url.push('/');
            }
            return Ok(Endpoint {
                url,
                generation: None,
            });
        }
        let mut guard = self.driver.lock().await;
        let replace = match guard.as_mut() {
            None => false,
            Some(d) => {
                if d.exited() {
                    tracing::warn!("chromedriver exited; starting a new one");
                    true
                } else if self.broken.swap(false, Ordering::Relaxed)
                    && !d.answers(HEALTH_TIMEOUT).await
                {
                    tracing::warn!("chromedriver stopped answering; restarting it");
                    true
                } else {
                    false
                }
            }
        };
        if replace && let Some(old) = guard.take() {
            old.stop().await;
            stats::driver_restarted();
        }
        let driver = match guard.as_mut() {
            Some(d) => d,
            None => {
                let generation = self.starts.fetch_add(1, Ordering::Relaxed);
                let d = Driver::start(&self.config.chromedriver, generation).await?;
                if let Some(major) = d.major {
                    self.major.store(major, Ordering::Relaxed);
                }
                guard.insert(d)
            }
        };
        Ok(Endpoint {
            url: driver.url.clone(),
            generation: Some(driver.generation),
        })
    }

    /// Kills the driver of `generation` if it is still the current one; the next
    /// [`Self::endpoint`] starts a fresh one.
    async fn restart(&self, generation: u64) {
        let mut guard = self.driver.lock().await;
        if guard.as_ref().is_some_and(|d| d.generation == generation)
            && let Some(old) = guard.take()
        {
            old.stop().await;
            stats::driver_restarted();
        }
    }

    /// The capabilities of a new session.
    ///
    /// `launcher` starts chromium in place of the configured binary (see [`nssdb`]).
    fn capabilities(
        &self,
        profile: Option<&std::path::Path>,
        launcher: Option<&std::path::Path>,
        options: &SessionOptions,
    ) -> serde_json::Map<String, serde_json::Value> {
        // `validate` rejected a bad window at load; the default is a sane fallback regardless.
        let (width, height) = config::parse_window(&self.config.window).unwrap_or((1366, 768));
        let mut args = vec![
            "--headless=new".to_string(),
            // supportwatch often runs as root (containers), where chromium's sandbox cannot start.
            "--no-sandbox".to_string(),
            // /dev/shm is 64 MB in Docker; chromium crashes on big pages with it.
            "--disable-dev-shm-usage".to_string(),
            "--disable-gpu".to_string(),
            format!("--window-size={width},{height}"),
            format!("--lang={}", self.config.locale),
            format!("--user-agent={}", self.user_agent()),
        ];
        if let Some(profile) = profile {
            args.push(format!("--user-data-dir={}", profile.display()));
        }
        args.extend(options.resolver_flag());
        let mut chrome = serde_json::json!({
            "args": args,
            "prefs": { "intl.accept_languages": config::accept_languages(&self.config.locale) },
        });
        let binary = match launcher {
            Some(l) => Some(l.display().to_string()),
            None => self.config.chromium.clone(),
        };
        if let Some(binary) = binary {
            chrome["binary"] = serde_json::Value::String(binary);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert("pageLoadStrategy".into(), "normal".into());
        caps.insert(
            "goog:loggingPrefs".into(),
            serde_json::json!({ "browser": "ALL" }),
        );
        caps.insert("goog:chromeOptions".into(), chrome);
        caps
    }

    /// The configured user agent, or desktop Chrome's (reduced) user agent for the running major
    /// version with supportwatch's note appended.
    ///
    /// Headless chromium would say `HeadlessChrome`, which bot filters block although no customer
    /// ever sends it; the appended note is what honestly identifies the test. The string is built
    /// rather than read from `navigator.userAgent`, which would cost a browser start: Chrome's
    /// reduced user agent is fixed except for the major version, and chromedriver's major version
    /// always equals chromium's.
    fn user_agent(&self) -> String {
        if let Some(ua) = &self.config.user_agent {
            return ua.clone();
        }
        let major = match self.major.load(Ordering::Relaxed) {
            0 => FALLBACK_MAJOR,
            m => m,
        };
        format!(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/{major}.0.0.0 Safari/537.36 {}",
            crate::USER_AGENT
        )
    }
}
