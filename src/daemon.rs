//! The daemon: config → scheduler → metrics server, with reload and graceful shutdown.
//!
//! One task owns reloading, so reloads from SIGHUP and from `POST /-/reload` never race: both send
//! a request on the same channel and get the answer back. A new config is prepared completely
//! (every probe built) before it replaces the running one; if anything is wrong it is refused,
//! logged, and the old config keeps running.

use crate::alert::late_mail::LateMailKeeper;
use crate::alert::service::{AlertCommands, AlertService};
use crate::alert::store::Store;
use crate::assemble::Prepared;
use crate::config::ServerConfig;
use crate::config::{self, ConfigErrors};
use crate::fleet::Placement;
use crate::hooks::Hooks;
use crate::mailbox::late::LateMail;
use crate::metrics::Metrics;
use crate::schedule::Scheduler;
use crate::server::{self, AppState, ReloadRequest, WebOptions};
use crate::sip::line::Lines;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Where the config comes from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// Every `*.yaml` in a directory.
    Dir(PathBuf),
    /// One document held in memory (the demo's), with extra variables for `${…}`.
    Inline {
        /// Name used in messages.
        path: PathBuf,
        /// The YAML text.
        text: String,
        /// Variables visible to `${…}` besides the environment.
        vars: HashMap<String, String>,
    },
}

impl ConfigSource {
    /// Loads, validates and prepares the config.
    pub fn load(&self) -> Result<Prepared, ConfigErrors> {
        self.load_with(Arc::new(Hooks::default()))
    }

    /// [`Self::load`], with webhook deliveries waiting on `hooks`.
    pub fn load_with(&self, hooks: Arc<Hooks>) -> Result<Prepared, ConfigErrors> {
        self.load_shared(hooks, Arc::default(), Arc::default())
    }

    /// [`Self::load_with`], the mailboxes deleting late test mail remembered in `late` and
    /// callback checks waiting on the daemon's `lines`.
    pub fn load_shared(
        &self,
        hooks: Arc<Hooks>,
        late: Arc<LateMail>,
        lines: Arc<Lines>,
    ) -> Result<Prepared, ConfigErrors> {
        let config = match self {
            ConfigSource::Dir(dir) => config::load_dir(dir)?,
            ConfigSource::Inline { path, text, vars } => crate::value::with_overlay(vars, || {
                config::load_sources(&[(path.clone(), text.clone())])
            })?,
        };
        let prepared = crate::assemble::prepare_shared(config, hooks, late, lines)?;
        // From here on the log writer and error output scrub this config's secrets too.
        crate::value::redact::install(prepared.redactor.clone());
        Ok(prepared)
    }
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config has problems.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The alert database cannot be opened.
    #[error("{0}")]
    Storage(#[from] crate::alert::store::StoreError),
    /// The web server's TLS or auth settings cannot be used.
    #[error("{0}")]
    Web(#[from] crate::server::auth::WebConfigError),
    /// The metrics address is taken or not allowed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running daemon.
pub struct Daemon {
    /// The address the web server listens on.
    pub addr: SocketAddr,
    /// The address of the hooks listener, when `server.hooks_listen` is set.
    pub hooks_addr: Option<SocketAddr>,
    /// The scheduler (subscribe to its reports).
    pub scheduler: Scheduler,
    /// All metrics.
    pub metrics: Arc<Metrics>,
    /// The webhook registry (`POST /hooks/NAME`), shared by the web server and the checks.
    pub hooks: Arc<Hooks>,
    /// Notifier and storage health.
    pub alert_health: Arc<crate::alert::service::Health>,
    /// The lines of the registered phone accounts (`register: true`), this daemon's alone.
    pub lines: Arc<Lines>,
    alerts: AlertService,
    late_mail: Arc<LateMailKeeper>,
    reload_tx: mpsc::Sender<ReloadRequest>,
    server_stop: CancellationToken,
    grace: Duration,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    /// Loads the config, starts the scheduler and the web server.
    pub async fn start(
        source: ConfigSource,
        listen: Option<SocketAddr>,
    ) -> Result<Self, DaemonError> {
        Self::start_placed(source, listen, Placement::default()).await
    }

    /// [`Daemon::start`] as one instance of a fleet: only the checks `placement` owns run, and
    /// every series carries its location.
    pub async fn start_placed(
        source: ConfigSource,
        listen: Option<SocketAddr>,
        placement: Placement,
    ) -> Result<Self, DaemonError> {
        // One registry for the process: reloads swap its declarations, never the registry, so
        // runs waiting on a hook across a reload are still answered.
        let hooks = Arc::new(Hooks::default());
        // Likewise one memory of late test mail: tokens outlive reloads (and, on disk, restarts).
        let late = Arc::new(LateMail::new());
        // And one set of phone lines: registrations survive reloads that keep their accounts,
        // and belong to this daemon, not the process (a second daemon holds its own).
        let lines = Arc::new(Lines::default());
        let shared = (hooks.clone(), late.clone(), lines.clone());
        let placed = load_placed(source.clone(), shared, &placement).await?;
        let prepared = placed.prepared;
        hooks.configure(&prepared.config.hooks);
        hooks.set_elsewhere(placed.elsewhere);
        let metrics = Arc::new(Metrics::new());
        metrics.report_lines(lines.clone());
        let shard = placement.shard.map_or((0, 1), |s| (s.index, s.count));
        metrics.set_placement(shard, placement.instance_labels());
        let scheduler = Scheduler::new(metrics.clone());
        // Inbound connections are capped from the open-files limit, raised first so that they
        // and outgoing checks share the most the system allows.
        let fd_limit = server::conn::raise_fd_limit();
        let web = WebOptions::from_config(&prepared.config.server, fd_limit)?;
        let addr = listen.unwrap_or(prepared.config.server.listen);
        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::Bind { addr, source })
        };
        let listener = bind(addr).await?;
        let addr = listener.local_addr().unwrap_or(addr);
        let hooks_listener = match prepared.config.server.hooks_listen {
            Some(hooks_addr) => Some(bind(hooks_addr).await?),
            None => None,
        };
        let hooks_addr = hooks_listener.as_ref().and_then(|l| l.local_addr().ok());
        tracing::info!(
            max_connections = web.limits.max_connections,
            fd_limit,
            "web server limits"
        );
        let grace = prepared.config.scheduler.shutdown_grace.get();
        for warning in &prepared.warnings {
            tracing::warn!("{warning}");
        }
        // Alerting subscribes before the first run can finish, so it misses none.
        let storage_path = prepared.config.storage.path();
        // Opened once at start, before anything runs: a short blocking call is fine here.
        let store = Arc::new(Store::open(&storage_path)?);
        // The status page reads the same database; its routes always exist and answer while
        // `status_page.enabled`, so a reload can turn it on, off or change it.
        let status_page = Arc::new(server::status::StatusPage::new(
            store.clone(),
            server::status::PageSetup::from_prepared(&prepared),
            Arc::new(SystemTime::now),
        ));
        let alerts = AlertService::start(
            store.clone(),
            prepared.alert_setup(),
            scheduler.subscribe(),
            metrics.clone(),
            Arc::new(SystemTime::now),
        )?;
        let alert_health = alerts.health.clone();
        let late_mail = Arc::new(LateMailKeeper::start(
            late,
            store,
            metrics.clone(),
            alert_health.clone(),
        )?);
        // Registered phone accounts get their lines (long-lived tasks, stopped in `stop`),
        // before the scheduler starts the callback checks that wait on them.
        lines.apply(&prepared.config.phones).await;
        scheduler.apply(&prepared);
        // The whole config's checks, beside checks_owned (set by the scheduler): a fleet whose
        // owned checks add up to less than this has lost some.
        metrics.configured.set(placed.configured);
        let late_mail_for = prepared.config.storage.late_mail_for.get();
        late_mail.apply(&prepared.mailboxes, late_mail_for, &metrics);
        scheduler.start_watchdog(Duration::from_secs(1));
        metrics.record_reload(true);
        tracing::info!(
            %addr,
            checks = prepared.checks.len(),
            configured = placed.configured,
            shard = %placement.shard.map_or_else(|| "0/1".to_string(), |s| s.to_string()),
            location = placement.location.as_deref().unwrap_or(""),
            "supportwatch running"
        );
        if let Some(hooks_addr) = hooks_addr {
            tracing::info!(%hooks_addr, "webhooks served on their own listener");
        }

        let (reload_tx, reload_rx) = mpsc::channel(8);
        let server_stop = CancellationToken::new();
        let state = AppState {
            metrics: metrics.clone(),
            reload: reload_tx.clone(),
            hooks: hooks.clone(),
            alert_health: Some(alert_health.clone()),
            status: Some(status_page.clone()),
        };
        let stop = server_stop.clone();
        // The web server runs until `server_stop`; it ends only then.
        let server_task = tokio::spawn(server::serve_with(
            listener,
            hooks_listener,
            state,
            web,
            stop,
        ));
        // With --listen the config's server.listen is not used, so a change to it means nothing.
        let configured_listen = listen.is_none().then_some(prepared.config.server.listen);
        let started_server = prepared.config.server.clone();
        let running = Running {
            scheduler: scheduler.clone(),
            metrics: metrics.clone(),
            hooks: hooks.clone(),
            lines: lines.clone(),
            alerts: alerts.commands(),
            late_mail: late_mail.clone(),
            status: status_page,
            current: Arc::new(prepared),
            placement,
        };
        // The one task that reloads: requests from SIGHUP and the endpoint queue in its channel.
        let reload_task = tokio::spawn(reload_loop(
            source,
            reload_rx,
            running,
            (configured_listen, started_server),
            storage_path,
        ));
        Ok(Daemon {
            addr,
            hooks_addr,
            scheduler,
            metrics,
            hooks,
            alert_health,
            lines,
            alerts,
            late_mail,
            reload_tx,
            server_stop,
            grace,
            tasks: vec![server_task, reload_task],
        })
    }

    /// Queues every shop's weekly digest of the week up to now (`demo --digest-now`).
    pub async fn digest_now(&self) {
        self.alerts.commands().digest_now().await;
    }

    /// Reloads the config; `Err` carries the problems of a refused config.
    pub async fn reload(&self) -> Result<String, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.reload_tx
            .send(tx)
            .await
            .map_err(|_| "daemon is shutting down".to_string())?;
        rx.await
            .map_err(|_| "daemon is shutting down".to_string())?
    }

    /// Stops scheduling, lets running checks finish (bounded by `shutdown_grace`), stops serving.
    /// Returns whether every run finished in time.
    pub async fn stop(self) -> bool {
        let drained = self.scheduler.shutdown(self.grace).await;
        // After the runs: their results still reach alerting and the database.
        self.alerts.stop().await;
        // The tokens of runs that just gave up reach the disk before the process goes.
        self.late_mail.stop().await;
        // The phone lines unregister and close their sockets.
        self.lines.stop_all().await;
        self.server_stop.cancel();
        drop(self.reload_tx);
        for task in self.tasks {
            task.abort();
        }
        drained
    }

    /// Runs until SIGTERM or SIGINT; SIGHUP reloads.
    pub async fn run_until_signal(self) -> bool {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut hup), Ok(mut term)) = (
                signal(SignalKind::hangup()),
                signal(SignalKind::terminate()),
            ) else {
                tracing::error!("cannot install signal handlers; stopping");
                return self.stop().await;
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: reloading config");
                        // The outcome is logged by the reload loop.
                        let _ = self.reload().await;
                    }
                    _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                    _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        self.stop().await
    }
}

/// What a loaded config's checks share with the daemon: its webhook registry, its memory of late
/// test mail and its phone lines.
type SharedParts = (Arc<Hooks>, Arc<LateMail>, Arc<Lines>);

async fn load_blocking(
    source: ConfigSource,
    (hooks, late, lines): SharedParts,
) -> Result<Prepared, ConfigErrors> {
    // Reading files and trust stores blocks; keep it off the runtime's worker threads.
    match tokio::task::spawn_blocking(move || source.load_shared(hooks, late, lines)).await {
        Ok(result) => result,
        Err(e) => Err(ConfigErrors(vec![config::ConfigError::general(format!(
            "config loading panicked: {e}"
        ))])),
    }
}

/// A loaded config narrowed to what this instance of the fleet runs.
struct Placed {
    prepared: Prepared,
    /// Checks in the whole config.
    configured: i64,
    /// Hooks only other instances' checks wait on, with who runs them.
    elsewhere: std::collections::BTreeMap<String, String>,
}

/// Loads (and validates) the whole config, then keeps what `placement` owns.
async fn load_placed(
    source: ConfigSource,
    shared: SharedParts,
    placement: &Placement,
) -> Result<Placed, ConfigErrors> {
    let mut prepared = load_blocking(source, shared).await?;
    let configured = i64::try_from(prepared.checks.len()).unwrap_or(i64::MAX);
    let elsewhere = placement.apply(&mut prepared)?;
    Ok(Placed {
        prepared,
        configured,
        elsewhere,
    })
}

/// What the reload loop keeps between reloads.
struct Running {
    scheduler: Scheduler,
    metrics: Arc<Metrics>,
    hooks: Arc<Hooks>,
    lines: Arc<Lines>,
    alerts: AlertCommands,
    late_mail: Arc<LateMailKeeper>,
    status: Arc<server::status::StatusPage>,
    /// The config that runs now, re-applied when applying a new one fails half way.
    current: Arc<Prepared>,
    /// This instance's shard and location, the same for every reload.
    placement: Placement,
}

async fn reload_loop(
    source: ConfigSource,
    mut requests: mpsc::Receiver<ReloadRequest>,
    mut running: Running,
    (configured_listen, started_server): (Option<SocketAddr>, ServerConfig),
    storage_path: PathBuf,
) {
    while let Some(reply) = requests.recv().await {
        let late = running.late_mail.late.clone();
        let shared = (running.hooks.clone(), late, running.lines.clone());
        let loaded = load_placed(source.clone(), shared, &running.placement).await;
        let answer = match loaded {
            Ok(Placed {
                prepared,
                configured,
                elsewhere,
            }) => {
                if let Some(listening_on) = configured_listen
                    && prepared.config.server.listen != listening_on
                {
                    tracing::warn!(
                        configured = %prepared.config.server.listen,
                        %listening_on,
                        "server.listen changed; restart supportwatch to apply it"
                    );
                }
                let server_now = ServerConfig {
                    listen: started_server.listen,
                    ..prepared.config.server.clone()
                };
                if server_now != started_server {
                    tracing::warn!(
                        "server settings (TLS, auth, hooks_listen, lifecycle, max_connections) \
                         changed; restart supportwatch to apply them"
                    );
                }
                if prepared.config.storage.path() != storage_path {
                    tracing::warn!(
                        configured = %prepared.config.storage.path().display(),
                        in_use = %storage_path.display(),
                        "storage.path changed; restart supportwatch to apply it"
                    );
                }
                for warning in &prepared.warnings {
                    tracing::warn!("{warning}");
                }
                let prepared = Arc::new(prepared);
                match apply_caught(&running, prepared.clone()).await {
                    Ok(()) => {
                        running.hooks.set_elsewhere(elsewhere);
                        running.metrics.configured.set(configured);
                        running.current = prepared.clone();
                        running.metrics.record_reload(true);
                        let summary = format!("config reloaded: {} checks", prepared.checks.len());
                        tracing::info!("{summary}");
                        Ok(summary)
                    }
                    Err(panic) => {
                        // Whatever the new config changed before the failure is undone by
                        // applying the old one again; that one applied cleanly before.
                        if apply_caught(&running, running.current.clone())
                            .await
                            .is_err()
                        {
                            tracing::error!("re-applying the previous config failed too");
                        }
                        running.metrics.record_reload(false);
                        let message = format!(
                            "applying the new config failed ({panic}); the previous config keeps running"
                        );
                        tracing::error!("config reload failed: {message}");
                        Err(message)
                    }
                }
            }
            Err(errors) => {
                running.metrics.record_reload(false);
                tracing::error!(
                    "config reload refused; the previous config keeps running:\n{errors}"
                );
                Err(errors.to_string())
            }
        };
        let _ = reply.send(answer);
    }
}

/// Applies `prepared` to hooks, alerting and the scheduler in a task of its own, so that a panic
/// while applying is a failed reload (`Err` with the panic message) and the reload loop, and with
/// it `POST /-/reload` and SIGHUP, keeps working.
async fn apply_caught(running: &Running, prepared: Arc<Prepared>) -> Result<(), String> {
    let (scheduler, hooks, alerts) = (
        running.scheduler.clone(),
        running.hooks.clone(),
        running.alerts.clone(),
    );
    let (late_mail, metrics) = (running.late_mail.clone(), running.metrics.clone());
    let status = running.status.clone();
    let lines = running.lines.clone();
    caught(async move {
        // Only an accepted config changes which hooks exist and their secrets.
        hooks.configure(&prepared.config.hooks);
        status.apply(server::status::PageSetup::from_prepared(&prepared));
        alerts.apply(prepared.alert_setup()).await;
        // Lines of unchanged accounts stay registered; new ones start, dropped ones stop;
        // before the scheduler, so a new callback check finds its line.
        lines.apply(&prepared.config.phones).await;
        scheduler.apply(&prepared);
        let late_mail_for = prepared.config.storage.late_mail_for.get();
        late_mail.apply(&prepared.mailboxes, late_mail_for, &metrics);
    })
    .await
}

/// Runs `work` to completion; a panic in it becomes `Err` with the panic's message.
async fn caught(
    work: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    // Spawned only to catch a panic as a JoinError; awaited at once, so reloads stay serial.
    tokio::spawn(work)
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".to_string()),
            Err(e) => e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::caught;

    #[tokio::test]
    async fn a_panic_while_applying_is_an_error_with_its_message() {
        assert_eq!(caught(async {}).await, Ok(()));
        let limit = usize::MAX;
        let err = caught(async move { panic!("too many permits: {limit}") })
            .await
            .unwrap_err();
        assert_eq!(err, format!("too many permits: {}", usize::MAX));
        let err = caught(async { std::panic::panic_any(7_u8) })
            .await
            .unwrap_err();
        assert_eq!(err, "panic");
    }
}
