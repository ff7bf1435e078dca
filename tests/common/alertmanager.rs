//! A real Alertmanager (`/usr/bin/prometheus-alertmanager`, Debian package
//! `prometheus-alertmanager`) on 127.0.0.1 with its own storage, no cluster and a receiver that
//! sends nowhere: what the notifier tests post into and the fleet tests' Prometheus alerts into.
//! The tests read what it holds through its API (`/api/v2/alerts`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a wait on Alertmanager may take on a busy machine.
const WITHIN: Duration = Duration::from_secs(60);

/// A real Alertmanager on 127.0.0.1, killed when dropped.
pub struct Alertmanager {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`, for a Prometheus `alerting:` target.
    pub addr: String,
    dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        // It must not outlive its test, whether it passed or failed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    /// Starts it and waits until `/-/ready` answers.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
        )
        .expect("write config");
        let port = super::closed_port();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).expect("log file");
        let child = Command::new("/usr/bin/prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "start /usr/bin/prometheus-alertmanager (Debian package prometheus-alertmanager)",
            );
        let am = Alertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
            addr: format!("127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + WITHIN;
        loop {
            if let Ok(r) = client().get(format!("{}/-/ready", am.url)).send().await
                && r.status().is_success()
            {
                return am;
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager did not become ready: {}",
                am.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its process id, to show it is gone after the test.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// Every active (not resolved, not expired) alert it holds.
    pub async fn all_active(&self) -> Vec<serde_json::Value> {
        let response = client()
            .get(format!("{}/api/v2/alerts?active=true", self.url))
            .send()
            .await
            .expect("GET /api/v2/alerts");
        let bytes = response.bytes().await.expect("alerts body");
        serde_json::from_slice(&bytes).expect("alerts JSON")
    }

    /// Active alerts whose label `name` is `value`.
    pub async fn active(&self, name: &str, value: &str) -> Vec<serde_json::Value> {
        self.all_active()
            .await
            .into_iter()
            .filter(|a| a["labels"][name] == value)
            .collect()
    }

    /// Polls until `done` holds for the active alerts labelled `name=value`, or a minute passes.
    pub async fn wait_for(
        &self,
        name: &str,
        value: &str,
        what: &str,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + WITHIN;
        loop {
            let alerts = self.active(name, value).await;
            if done(&alerts) {
                return alerts;
            }
            assert!(Instant::now() < deadline, "{what}; alerts now: {alerts:#?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A plain HTTP client with a short timeout, for the engines' APIs on loopback.
pub fn client() -> reqwest::Client {
    supportwatch::tlsconf::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}
