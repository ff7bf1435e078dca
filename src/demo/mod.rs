//! `supportwatch demo`: a local demo shop and the real daemon checking it, no external service.
//!
//! The shop listens on loopback (HTTP, and HTTPS with a certificate from a CA made at start). Its
//! addresses reach `checks/demo.yaml` as `${DEMO_…}` variables, so the demo runs exactly the code
//! paths a real deployment does: config loading, scheduler, probes, metrics.
//!
//! The shop's phone system is an in-process SIP PBX on loopback UDP (`pbx`): the hotline the
//! `phone` checks call, the registrar of the demo's `demo-line` account, and the dialer through
//! which the callback form's CRM really calls back.
//!
//! The browser checks need chromium and chromedriver. When chromedriver is not installed, the
//! demo removes those checks from its config before the daemon starts and lists them in
//! [`DemoShop::skipped`] with the install command, so the rest of the demo still runs.

mod browser;
pub mod callback_backend;
mod chat;
pub mod owner_phone;
pub mod pbx;
pub mod pki;
pub mod shop;
pub mod smtp;
mod widgets;

pub use browser::Skipped;
pub use shop::Break;

use crate::daemon::{ConfigSource, Daemon, DaemonError};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The demo checks, built in so `supportwatch demo` works from any directory.
pub const DEMO_CONFIG: &str = include_str!("../../checks/demo.yaml");

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Certificates could not be made.
    #[error("{0}")]
    Pki(String),
    /// A local socket or file could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The daemon did not start.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
}

/// A running demo shop.
pub struct DemoShop {
    /// `http://127.0.0.1:PORT`
    pub http_url: String,
    /// `https://127.0.0.1:PORT`
    pub https_url: String,
    /// `127.0.0.1:PORT` of the HTTPS listener.
    pub tls_target: String,
    /// PEM file of the CA that signed the shop's certificate.
    pub ca_file: PathBuf,
    /// `127.0.0.1:PORT` of the shop's SMTP server.
    pub smtp: SocketAddr,
    /// Maildir of support@demo-shop.test.
    pub support_maildir: PathBuf,
    /// Maildir of monitor@demo-shop.test (the sender of test mail; auto-replies land here).
    pub monitor_maildir: PathBuf,
    /// Where browser checks keep the screenshot and page of a failed run.
    pub artifacts_dir: PathBuf,
    /// Checks left out because they need a browser that is not installed.
    pub skipped: Vec<Skipped>,
    /// The channels that fail on purpose (`--break`); healing them shows an alert resolve.
    pub breaks: Arc<shop::Breaks>,
    /// The messages the shop owner received through the demo's Telegram stand-in.
    pub owner_inbox: owner_phone::Inbox,
    /// The shop's SIP PBX (hotline, registrar, callback dialer).
    pub pbx: pbx::Pbx,
    /// Secret the demo CRM authenticates its webhook with (made fresh at every start).
    hook_secret: String,
    /// Password of the demo's SIP account at the PBX (made fresh at every start).
    sip_password: String,
    hook: callback_backend::HookTarget,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl DemoShop {
    /// Starts the shop on loopback ports chosen by the OS.
    pub async fn start(broken: BTreeSet<Break>) -> Result<Self, DemoError> {
        let io = |what: &str| {
            let what = what.to_string();
            move |source| DemoError::Io { what, source }
        };
        let authority = pki::Authority::new("supportwatch demo CA").map_err(DemoError::Pki)?;
        let leaf = authority
            .issue(&["localhost", "127.0.0.1"], pki::Validity::days(90))
            .map_err(DemoError::Pki)?;
        let dir = tempfile::Builder::new()
            .prefix("supportwatch-demo-")
            .tempdir()
            .map_err(io("cannot create a temporary directory"))?;
        let ca_file = dir.path().join("demo-ca.pem");
        std::fs::write(&ca_file, &authority.ca.cert_pem).map_err(io("cannot write the demo CA"))?;
        let server_config = leaf
            .server_config(&[])
            .map_err(|e| DemoError::Pki(e.to_string()))?;

        let stop = CancellationToken::new();
        let breaks = Arc::new(shop::Breaks::new(broken));
        let support_maildir = dir.path().join("mail").join("support");
        let monitor_maildir = dir.path().join("mail").join("monitor");
        for maildir in [&support_maildir, &monitor_maildir] {
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(maildir.join(sub))
                    .map_err(io("cannot create the demo mailboxes"))?;
            }
        }
        let smtp_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("cannot listen on 127.0.0.1"))?;
        let smtp = smtp_listener.local_addr().map_err(io("no local address"))?;
        let mail_server = smtp::MailServer {
            mailboxes: Arc::new(HashMap::from([
                (shop::SUPPORT_ADDRESS.to_string(), support_maildir.clone()),
                (shop::MONITOR_ADDRESS.to_string(), monitor_maildir.clone()),
            ])),
            auto_reply_from: Some(shop::SUPPORT_ADDRESS.to_string()),
            broken: breaks.clone(),
        };
        tokio::spawn(mail_server.serve(smtp_listener, stop.clone()));
        let hook = callback_backend::HookTarget::default();
        let owner_inbox = owner_phone::Inbox::default();
        let sip_password = random_secret();
        let pbx = pbx::Pbx::start(sip_password.clone(), breaks.clone(), stop.clone())
            .await
            .map_err(io("cannot listen on 127.0.0.1 (UDP)"))?;
        let state = shop::ShopState {
            broken: breaks.clone(),
            smtp: Some(smtp),
            hook: hook.clone(),
            owner_inbox: owner_inbox.clone(),
            pbx: Some(pbx.clone()),
        };
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("cannot listen on 127.0.0.1"))?;
        let https = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("cannot listen on 127.0.0.1"))?;
        let http_addr = http.local_addr().map_err(io("no local address"))?;
        let https_addr = https.local_addr().map_err(io("no local address"))?;
        let router = shop::router(state);
        let http_stop = stop.clone();
        let http_router = router.clone();
        tokio::spawn(async move {
            let _ = axum::serve(http, http_router)
                .with_graceful_shutdown(async move { http_stop.cancelled().await })
                .await;
        });
        tokio::spawn(shop::serve_tls(https, server_config, router, stop.clone()));
        let artifacts_dir = dir.path().join("artifacts");
        Ok(DemoShop {
            http_url: format!("http://{http_addr}"),
            https_url: format!("https://{https_addr}"),
            tls_target: https_addr.to_string(),
            ca_file,
            smtp,
            support_maildir,
            monitor_maildir,
            artifacts_dir,
            skipped: Vec::new(),
            hook_secret: random_secret(),
            sip_password,
            pbx,
            breaks,
            owner_inbox,
            hook,
            _dir: dir,
            stop,
        })
    }

    /// The `${DEMO_…}` variables `checks/demo.yaml` uses.
    pub fn vars(&self) -> HashMap<String, String> {
        HashMap::from([
            ("DEMO_SHOP_URL".to_string(), self.http_url.clone()),
            ("DEMO_SHOP_HTTPS_URL".to_string(), self.https_url.clone()),
            (
                "DEMO_SHOP_WS_URL".to_string(),
                self.http_url.replacen("http://", "ws://", 1),
            ),
            ("DEMO_SHOP_TLS".to_string(), self.tls_target.clone()),
            (
                "DEMO_CA_FILE".to_string(),
                self.ca_file.display().to_string(),
            ),
            ("DEMO_SMTP".to_string(), self.smtp.to_string()),
            (
                "DEMO_SUPPORT_MAILDIR".to_string(),
                self.support_maildir.display().to_string(),
            ),
            (
                "DEMO_MONITOR_MAILDIR".to_string(),
                self.monitor_maildir.display().to_string(),
            ),
            (
                "DEMO_ARTIFACTS_DIR".to_string(),
                self.artifacts_dir.display().to_string(),
            ),
            ("DEMO_HOOK_SECRET".to_string(), self.hook_secret.clone()),
            ("DEMO_PBX".to_string(), self.pbx.addr().to_string()),
            ("DEMO_SIP_PASSWORD".to_string(), self.sip_password.clone()),
            (
                "DEMO_TELEGRAM_API".to_string(),
                format!("{}/telegram", self.http_url),
            ),
            (
                "DEMO_STATE_DIR".to_string(),
                self._dir.path().display().to_string(),
            ),
        ])
    }

    /// Points the demo CRM at the daemon listening on `addr`.
    pub fn connect_hook(&self, addr: SocketAddr) {
        self.hook.set(
            format!("http://{addr}/hooks/demo-crm"),
            self.hook_secret.clone(),
        );
    }
}

/// A fresh random secret, so a demo left running is not an open door with a known key.
fn random_secret() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

impl Drop for DemoShop {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `demo --digest-now`: waits until the checks have run (a check's second run means every one
/// has had its first, or 30 s), then has the daemon send the weekly digest of what they found.
pub async fn digest_after_first_runs(daemon: &Daemon) {
    let mut reports = daemon.scheduler.subscribe();
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    // Reports until a check repeats or the deadline; a lagging receiver only skips reports.
    while let Ok(Ok(report)) = tokio::time::timeout_at(deadline, reports.recv()).await {
        if !seen.insert(report.check.to_string()) {
            break;
        }
    }
    // The run history is written within a fraction of a second of each run; wait that out
    // so the digest reads it.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    daemon.digest_now().await;
}

/// Starts the demo shop and the daemon on `checks/demo.yaml` (the file in the current directory
/// when there is one, so it can be edited; the built-in copy otherwise). Browser checks are left
/// out, and listed in [`DemoShop::skipped`], when chromedriver is not installed.
pub async fn start(
    listen: SocketAddr,
    broken: BTreeSet<Break>,
) -> Result<(DemoShop, Daemon), DemoError> {
    let mut shop = DemoShop::start(broken).await?;
    let path = PathBuf::from("checks/demo.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| DEMO_CONFIG.to_string());
    let vars = shop.vars();
    let (text, skipped) = browser::skip_without_chromedriver(&path, &text, &vars);
    shop.skipped = skipped;
    let source = ConfigSource::Inline { path, text, vars };
    let daemon = Daemon::start(source, Some(listen)).await?;
    // The daemon's port is known only now (it may be :0); the CRM waits for it.
    shop.connect_hook(daemon.addr);
    Ok((shop, daemon))
}
