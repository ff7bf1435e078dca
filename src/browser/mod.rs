//! Real-browser sessions for `browser` checks (and `form` with `via: browser`): WebDriver through
//! chromedriver and headless chromium.
//!
//! [`Browser`] owns the WebDriver endpoint — a chromedriver it starts itself on loopback, or an
//! existing one at `browser.webdriver_url` — and a bounded pool of sessions. Each run gets a
//! fresh session with a fresh profile ([`Session`]); what a run does with it (the steps) is the
//! probe's business.

mod config;

pub use config::{ArtifactsConfig, BrowserConfig, validate};

use std::sync::Arc;
use tokio::sync::{Mutex, Semaphore};

/// The Debian packages a browser check needs.
pub const INSTALL_HINT: &str = "apt-get install chromium chromium-driver";

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
    slots: Arc<Semaphore>,
    driver: Mutex<Option<Driver>>,
}

/// A chromedriver process started by supportwatch, or an external endpoint.
struct Driver {
    url: String,
    child: Option<tokio::process::Child>,
}

impl Browser {
    /// A pool for `config`; nothing is started until the first session is asked for.
    pub fn new(config: BrowserConfig) -> Self {
        Browser {
            slots: Arc::new(Semaphore::new(config.max_sessions.max(1))),
            config,
            driver: Mutex::new(None),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BrowserConfig {
        &self.config
    }

    /// Waits for a free slot, makes sure the driver runs, and opens a fresh session.
    pub async fn session(&self) -> Result<Session, BrowserError> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BrowserError::Session("browser pool closed".into()))?;
        let url = self.driver_url().await?;
        let client = fantoccini::ClientBuilder::rustls()
            .map_err(|e| BrowserError::Session(e.to_string()))?
            .capabilities(self.capabilities())
            .connect(&url)
            .await
            .map_err(|e| BrowserError::Session(e.to_string()))?;
        Ok(Session {
            client,
            _slot: slot,
        })
    }

    async fn driver_url(&self) -> Result<String, BrowserError> {
        let mut driver = self.driver.lock().await;
        if let Some(d) = driver.as_ref() {
            return Ok(d.url.clone());
        }
        let started = match &self.config.webdriver_url {
            Some(url) => Driver {
                url: url.expose().to_string(),
                child: None,
            },
            None => start_chromedriver(&self.config.chromedriver).await?,
        };
        let url = started.url.clone();
        *driver = Some(started);
        Ok(url)
    }

    fn capabilities(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".to_string(),
            "--disable-dev-shm-usage".to_string(),
            format!("--window-size={}", self.config.window.replace('x', ",")),
            format!("--lang={}", self.config.locale),
        ];
        if let Some(ua) = &self.config.user_agent {
            args.push(format!("--user-agent={ua}"));
        }
        let mut options = serde_json::json!({
            "args": args,
            "prefs": { "intl.accept_languages": config::accept_languages(&self.config.locale) },
        });
        if let Some(binary) = &self.config.chromium {
            options["binary"] = serde_json::Value::String(binary.clone());
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        caps
    }
}

async fn start_chromedriver(path: &str) -> Result<Driver, BrowserError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BrowserError::DriverStart(e.to_string()))?;
    let child = tokio::process::Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BrowserError::DriverNotFound { path: path.into() },
            _ => BrowserError::DriverStart(e.to_string()),
        })?;
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(Driver {
                url,
                child: Some(child),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(BrowserError::DriverStart(format!(
        "no answer on port {port} after 5s"
    )))
}

/// One run's browser session; holds a pool slot until closed.
pub struct Session {
    /// The WebDriver client.
    pub client: fantoccini::Client,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Session {
    /// Ends the session (closes the browser).
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}
