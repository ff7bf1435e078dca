//! A real Prometheus server (`/usr/bin/prometheus`, Debian package `prometheus`) on 127.0.0.1 with
//! a fresh TSDB, started from a config and rule files the test writes: what the fleet tests
//! scrape supportwatch with and evaluate `dashboards/fleet-alerts.yml` in. The tests read what it
//! saw through its HTTP API (`/api/v1/query`, `/api/v1/rules`).

use super::alertmanager::client;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a wait on Prometheus may take on a busy machine.
pub const WITHIN: Duration = Duration::from_secs(60);

/// A real Prometheus on 127.0.0.1, killed when dropped.
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // It must not outlive its test, whether it passed or failed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Writes `config` (prometheus.yml) and `files` (name, text: rule files it names, relative to
    /// it) to a fresh directory, starts the server and waits until `/-/ready` answers.
    pub async fn start(config: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write a rule file");
        }
        let port = super::closed_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/prometheus (Debian package prometheus)");
        let prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + WITHIN;
        loop {
            if let Ok(r) = client()
                .get(format!("{}/-/ready", prometheus.url))
                .send()
                .await
                && r.status().is_success()
            {
                return prometheus;
            }
            let exited = !prometheus.running();
            assert!(
                !exited && Instant::now() < deadline,
                "prometheus did not become ready (exited: {exited}): {}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its process id, to show it is gone after the test.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn running(&self) -> bool {
        // `try_wait` needs `&mut`; /proc says as much for a child not yet reaped.
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .is_ok_and(|stat| !stat.contains(") Z "))
    }

    /// What it has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The `data` of a successful answer of `GET /api/v1/PATH` with `query`.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> serde_json::Value {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/{path}", self.url), query)
            .expect("an API URL");
        let response = client()
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /api/v1/{path}: {e}"));
        let bytes = response.bytes().await.expect("an answer");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON answer");
        assert_eq!(
            body["status"], "success",
            "/api/v1/{path} {query:?}: {body}"
        );
        body["data"].clone()
    }

    /// The samples of instant vector `expr` now (`/api/v1/query`).
    pub async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let data = self.api("query", &[("query", expr)]).await;
        assert_eq!(data["resultType"], "vector", "{expr}: {data}");
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `expr` until `done` holds for its samples, or [`WITHIN`] passes.
    pub async fn wait_query(
        &self,
        expr: &str,
        what: &str,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + WITHIN;
        loop {
            let samples = self.query(expr).await;
            if done(&samples) {
                return samples;
            }
            assert!(
                Instant::now() < deadline,
                "{what}; `{expr}` now: {samples:#?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The alerting rule `alert` as `/api/v1/rules` shows it (health, lastEvaluation, alerts).
    pub async fn rule(&self, alert: &str) -> serde_json::Value {
        let data = self.api("rules", &[("type", "alert")]).await;
        data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .find(|r| r["name"] == alert)
            .unwrap_or_else(|| panic!("no rule {alert} loaded: {data}"))
    }

    /// [`Prometheus::rule`] once it has been evaluated (its health is no longer `unknown`).
    pub async fn evaluated_rule(&self, alert: &str) -> serde_json::Value {
        let deadline = Instant::now() + WITHIN;
        loop {
            let rule = self.rule(alert).await;
            if rule["health"] != "unknown" {
                return rule;
            }
            assert!(Instant::now() < deadline, "{alert} never evaluated: {rule}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The value of a sample from `/api/v1/query` (`"value": [time, "text"]`).
pub fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a sample: {sample}"))
}
