//! The real daemon for integration tests: a config directory of YAML files with its own alert
//! database, [`Daemon::start`] on it with the web server on 127.0.0.1:0, and a handle that gives
//! the daemon's address, metrics and reports and stops it when the test is done with it.

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use supportwatch::daemon::{ConfigSource, Daemon, DaemonError};
use supportwatch::outcome::RunReport;

/// How long [`next_report_of`] waits for a run: generous, for a loaded CI machine.
pub const RUN_WITHIN: Duration = Duration::from_secs(30);

/// A temporary config directory. It starts with `storage.yaml`, which keeps the alert database
/// inside it (never in the working directory); the test writes the rest.
pub struct ConfigDir {
    dir: tempfile::TempDir,
}

impl ConfigDir {
    pub fn new() -> Self {
        let dir = ConfigDir {
            dir: tempfile::tempdir().expect("a temporary config directory"),
        };
        dir.write(
            "storage.yaml",
            &format!(
                "storage: {{ path: \"{}\" }}\n",
                dir.path().join("sw.db").display()
            ),
        );
        dir
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes (or replaces) `file` in the directory.
    pub fn write(&self, file: &str, yaml: &str) {
        std::fs::write(self.path().join(file), yaml)
            .unwrap_or_else(|e| panic!("write config file {file}: {e}"));
    }

    /// Starts the daemon on this directory; panics if it does not start.
    pub async fn start(&self) -> TestDaemon {
        let daemon = self
            .try_start()
            .await
            .unwrap_or_else(|e| panic!("the daemon should start:\n{e}"));
        TestDaemon {
            daemon: Some(daemon),
        }
    }

    /// Starts the daemon on this directory, as `supportwatch run --listen 127.0.0.1:0` would.
    pub async fn try_start(&self) -> Result<Daemon, DaemonError> {
        Daemon::start(
            ConfigSource::Dir(self.path().to_path_buf()),
            Some("127.0.0.1:0".parse().expect("a loopback address")),
        )
        .await
    }
}

impl Default for ConfigDir {
    fn default() -> Self {
        ConfigDir::new()
    }
}

/// A running daemon; derefs to [`Daemon`] (`addr`, `metrics`, `scheduler`, `reload`). Stopped by
/// [`TestDaemon::stop`], or when dropped.
pub struct TestDaemon {
    /// `None` once stopped.
    daemon: Option<Daemon>,
}

impl TestDaemon {
    /// `http://ADDR` of the daemon's web server, followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The body of `GET path` on the daemon's web server.
    pub async fn get_text(&self, path: &str) -> String {
        get_text(&self.url(path)).await
    }

    /// Waits until the daemon's metrics contain `line`, at most [`RUN_WITHIN`]: for what the
    /// daemon records only in its metrics, such as a notification counted as sent.
    pub async fn wait_for_metric(&self, line: &str) {
        let deadline = tokio::time::Instant::now() + RUN_WITHIN;
        loop {
            let metrics = self.metrics.encode_text();
            if metrics.contains(line) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{line}` in the metrics within {RUN_WITHIN:?}:\n{metrics}"
            );
            // Nothing announces a change of the metrics; look again shortly.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The next report of `check` from now on.
    pub async fn next_report_of(&self, check: &str) -> Arc<RunReport> {
        next_report_of(self, check).await
    }

    /// Stops the daemon; whether every run finished within the shutdown grace.
    pub async fn stop(mut self) -> bool {
        let daemon = self.daemon.take().expect("stopped only once");
        daemon.stop().await
    }
}

impl Deref for TestDaemon {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        self.daemon.as_ref().expect("not stopped yet")
    }
}

impl Drop for TestDaemon {
    /// A test that ends (or fails) without stopping the daemon still stops it, so that no check
    /// keeps running into the next test. A multi-threaded runtime can wait for that here; on a
    /// single thread the stop runs as a task, as far as the runtime lets it.
    fn drop(&mut self) {
        let Some(daemon) = self.daemon.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match runtime.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                // Blocking this worker is allowed once it hands its other tasks over.
                tokio::task::block_in_place(|| runtime.block_on(daemon.stop()));
            }
            _ => {
                // Cannot block the only thread: the stop runs once the test yields, if ever.
                runtime.spawn(daemon.stop());
            }
        }
    }
}

/// The next report of `check` that `daemon`'s scheduler publishes from now on, within
/// [`RUN_WITHIN`].
pub async fn next_report_of(daemon: &Daemon, check: &str) -> Arc<RunReport> {
    // Subscribed before waiting, so a run finishing meanwhile is not missed.
    let mut reports = daemon.scheduler.subscribe();
    let wait = async {
        loop {
            match reports.recv().await {
                Ok(r) if &*r.check == check => return r,
                Ok(_) => continue,
                Err(e) => panic!("report stream ended: {e}"),
            }
        }
    };
    tokio::time::timeout(RUN_WITHIN, wait)
        .await
        .unwrap_or_else(|_| panic!("no run of {check} within {RUN_WITHIN:?}"))
}

/// The body of `GET url`.
pub async fn get_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url} body: {e}"))
}

/// Starts the `supportwatch` binary as `run --listen 127.0.0.1:0 --config DIR`, in `dir` (where
/// the default alert database lands too), with `env` added and its output captured.
pub fn spawn_binary(dir: &Path, env: &[(&str, &str)]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_supportwatch"))
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir)
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the supportwatch binary")
}

/// Sends `signal` (`-TERM`, `-HUP`) to `child` with kill(1); whether it was delivered.
pub fn signal(child: &std::process::Child, signal: &str) -> bool {
    std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("run kill")
        .success()
}
