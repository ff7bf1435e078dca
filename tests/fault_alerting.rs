//! Alerting under faults, on the real binary: a disk that fills up under the alert database, and
//! `kill -9` while alerts fire and resolve. Every transition of an incident must reach the
//! webhook receiver on 127.0.0.1; a crash may repeat a message (at least once) but the repeat
//! carries the same `id`, so deduplicating by id gives exactly the transitions that happened.
//!
//! Deadlines are generous (a loaded CI machine); assertions are on what was received.

mod common;

use common::breakable::Shop;
use common::recorder::{Answer, Recorder, Request};
use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long one awaited event (a start, a message, a state) may take on a loaded machine.
const WITHIN: Duration = Duration::from_secs(20);

/// A config directory for one `chat` check run every second, alerting the receiver at once on
/// the first failure and the first pass, with its database at `db`.
fn config(shop: &Shop, receiver: &Recorder, db: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("config dir");
    let yaml = format!(
        "storage: {{ path: \"{db}\" }}\nnotifiers:\n  ops: {{ kind: webhook, url: \"{url}\", timeout: 5s }}\nalerting:\n  group_wait: 0s\n  failure_threshold: 1\n  success_threshold: 1\n  routes: [ {{ notify: [ops] }} ]\nchecks:\n  - {{ name: chat, kind: http, channel: chat, url: \"http://{shop}/svc/chat\", interval: 1s, timeout: 1s, retries: 0 }}\n",
        db = db.display(),
        url = receiver.url("/alerts"),
        shop = shop.addr,
    );
    std::fs::write(dir.path().join("alerting.yaml"), yaml).expect("write config");
    dir
}

/// The daemon binary, killed with SIGKILL when dropped (a test that fails midway leaves no
/// process behind, and a tmpfs under it can be unmounted).
struct Daemon {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Daemon {
    /// Starts `supportwatch run` on `config` with JSON logs into `log` (appended), and waits
    /// until it serves.
    async fn start(config: &Path, log: &Path) -> Daemon {
        // The test's own HTTP client (health, metrics) needs a TLS provider even for http://.
        supportwatch::tlsconf::install_crypto_provider();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let mut marker = out.try_clone().expect("log file");
        writeln!(marker, "--- start").expect("write log");
        let skip = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        let child = Command::new(env!("CARGO_BIN_EXE_supportwatch"))
            .args([
                "--log-format",
                "json",
                "run",
                "--listen",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(config)
            .current_dir(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start the supportwatch binary");
        let mut daemon = Daemon {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: log.to_path_buf(),
        };
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            if let Some(addr) = running_addr(log, skip) {
                daemon.addr = addr;
                return daemon;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("the daemon exited with {status}:\n{}", daemon.log_text());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the daemon did not start within {WITHIN:?}:\n{}",
                daemon.log_text()
            );
            // Nothing announces the start but the log; look again shortly.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits (at most [`WITHIN`]) for a clean exit.
    async fn terminate(mut self) {
        assert!(common::daemon::signal(&self.child, "-TERM"));
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "exit {status}:\n{}", self.log_text());
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no exit within {WITHIN:?} of SIGTERM:\n{}",
                self.log_text()
            );
            // Exit is not announced; look again shortly.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /healthz`: the status code and the body's `status`.
    async fn health(&self) -> (u16, String) {
        let reply = reqwest::get(format!("http://{}/healthz", self.addr))
            .await
            .expect("GET /healthz");
        let code = reply.status().as_u16();
        let body = reply.text().await.expect("/healthz body");
        let body: serde_json::Value = serde_json::from_str(&body).expect("/healthz is JSON");
        (
            code,
            body["status"].as_str().unwrap_or_default().to_string(),
        )
    }

    /// Waits until `/healthz` answers `code` with `status`.
    async fn wait_for_health(&self, code: u16, status: &str) {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let got = self.health().await;
            if got == (code, status.to_string()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/healthz stayed {got:?}, not ({code}, {status}) within {WITHIN:?}:\n{}",
                self.log_text()
            );
            // Health changes are not announced; look again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of the unlabelled sample `name` in `/metrics`.
    async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.addr))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|v| v.trim().parse().ok())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `addr` of the first "supportwatch running" line after byte `skip` of `log`.
fn running_addr(log: &Path, skip: u64) -> Option<SocketAddr> {
    let text = std::fs::read(log).ok()?;
    let text = text.get(usize::try_from(skip).ok()?..)?;
    text.lines().map_while(Result::ok).find_map(|line| {
        let json: serde_json::Value = serde_json::from_str(&line).ok()?;
        if json["fields"]["message"] != "supportwatch running" {
            return None;
        }
        json["fields"]["addr"].as_str()?.parse().ok()
    })
}

/// `(id, check, status)` of every alert in every payload received, in arrival order.
fn alerts(got: &[Request]) -> Vec<(String, String, String)> {
    got.iter()
        .flat_map(|r| r.json()["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            (s("id"), s("check"), s("status"))
        })
        .collect()
}

/// The statuses of the distinct alert ids, in the order each id first arrived.
fn transitions(got: &[Request]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    alerts(got)
        .into_iter()
        .filter(|(id, _, _)| {
            assert!(!id.is_empty(), "every alert carries an id: {got:#?}");
            seen.insert(id.clone())
        })
        .map(|(_, _, status)| status)
        .collect()
}

/// Waits until the receiver holds `n` distinct transitions.
async fn wait_for_transitions(receiver: &Recorder, n: usize, what: &str) {
    receiver
        .wait_until(what, |got| transitions(got).len() >= n)
        .await;
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a `size` tmpfs; `Err` with the reason when this machine cannot (not root, no
    /// mount permission in a container).
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system up with `fill`; the bytes written.
    fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(self.path().join("fill")).expect("create fill");
        let chunk = vec![0u8; 16 * 1024];
        let mut written = 0u64;
        // Byte-sized writes at the end take the last bytes a larger write would leave free.
        for size in [chunk.len(), 512, 1] {
            while file.write_all(&chunk[..size]).is_ok() {
                written += size as u64;
            }
        }
        written
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("fill")).expect("remove fill");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a process that outlived its kill): detach it so the directory goes.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_delays_persistence_but_never_an_alert() {
    if !nix_is_root() {
        println!("skipped: mounting a tmpfs needs root (this test runs as another user)");
        return;
    }
    let tmpfs = match Tmpfs::mount("2m") {
        Ok(t) => t,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let shop = Shop::start().await;
    let receiver = Recorder::start().await;
    let config = config(&shop, &receiver, &tmpfs.path().join("sw.db"));
    let log = config.path().join("daemon.log");
    let daemon = Daemon::start(config.path(), &log).await;
    daemon.wait_for_health(200, "ok").await;

    let filled = tmpfs.fill();
    assert!(
        filled > 0,
        "the tmpfs should take some bytes before it is full"
    );
    shop.set("chat", true);
    // Decided while the disk refuses the write: sent from memory all the same.
    wait_for_transitions(&receiver, 1, "the firing message while the disk is full").await;
    daemon.wait_for_health(503, "failing").await;
    assert_eq!(
        daemon.metric("supportwatch_storage_healthy").await,
        Some(0.0)
    );
    shop.set("chat", false);
    wait_for_transitions(&receiver, 2, "the resolve while the disk is full").await;
    // A second incident begins while the disk is still full...
    shop.set("chat", true);
    wait_for_transitions(&receiver, 3, "the second firing while the disk is full").await;
    assert_eq!(
        transitions(&receiver.requests()),
        ["firing", "resolved", "firing"]
    );

    // ...and is written once space returns: a restart after a SIGKILL (no flush at exit)
    // neither announces it again nor forgets to resolve it.
    tmpfs.free();
    daemon.wait_for_health(200, "ok").await;
    assert_eq!(
        daemon.metric("supportwatch_storage_healthy").await,
        Some(1.0)
    );
    let errors = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        errors.contains("storage works again"),
        "the catch-up should be logged:\n{errors}"
    );
    daemon.kill9();
    let daemon = Daemon::start(config.path(), &log).await;
    // Several runs of the still broken check: none may announce the incident again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        transitions(&receiver.requests()),
        ["firing", "resolved", "firing"],
        "the incident decided on a full disk was announced again after a restart"
    );
    shop.set("chat", false);
    wait_for_transitions(&receiver, 4, "the resolve after the restart").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = receiver.requests();
    assert_eq!(
        transitions(&got),
        ["firing", "resolved", "firing", "resolved"]
    );
    assert_eq!(alerts(&got).len(), 4, "no message repeats: {got:#?}");
    drop(daemon);
}

/// Whether this process runs as root (`id -u` is 0).
fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_alerts_fire_and_resolve_loses_nothing() {
    let shop = Shop::start().await;
    let receiver = Recorder::start().await;
    let dbdir = tempfile::tempdir().expect("db dir");
    let config = config(&shop, &receiver, &dbdir.path().join("sw.db"));
    let log = config.path().join("daemon.log");
    // Where each of the six kills lands, after the transition it follows reached the receiver:
    // at once (inside the window between a send and its record), or later. Deterministic, and
    // spread over the send, the record and the runs that follow.
    const KILL_AFTER_MS: [u64; 6] = [0, 400, 0, 900, 30, 150];
    let mut daemon = Daemon::start(config.path(), &log).await;
    let mut broken = false;
    for (i, after) in KILL_AFTER_MS.into_iter().enumerate() {
        broken = !broken;
        shop.set("chat", broken);
        wait_for_transitions(&receiver, i + 1, &format!("transition {}", i + 1)).await;
        tokio::time::sleep(Duration::from_millis(after)).await;
        daemon.kill9();
        daemon = Daemon::start(config.path(), &log).await;
    }
    // After the last restart, what a kill left in the outbox (sent or not) goes out; then quiet.
    wait_for_transitions(&receiver, KILL_AFTER_MS.len(), "every transition").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(daemon);

    let got = receiver.requests();
    let expected: Vec<&str> = (0..KILL_AFTER_MS.len())
        .map(|i| if i % 2 == 0 { "firing" } else { "resolved" })
        .collect();
    // Deduplicated by id: exactly the transitions, in order. None lost, none invented.
    assert_eq!(transitions(&got), expected, "{got:#?}");
    // Each kill can repeat at most the one message it interrupted between send and record.
    let duplicates = alerts(&got).len() - expected.len();
    println!(
        "{duplicates} duplicate(s) in {} kills (each one with the same id as the original)",
        KILL_AFTER_MS.len()
    );
    assert!(
        duplicates <= KILL_AFTER_MS.len(),
        "{duplicates} duplicates in {} kills: {got:#?}",
        KILL_AFTER_MS.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_waits_for_the_send_in_flight_and_records_it() {
    let shop = Shop::start().await;
    let receiver = Recorder::start().await;
    // The receiver takes its time to answer: the stop comes while the send is in flight.
    receiver.answer_always(Answer::text(200, "ok").after(Duration::from_millis(1500)));
    let dbdir = tempfile::tempdir().expect("db dir");
    let config = config(&shop, &receiver, &dbdir.path().join("sw.db"));
    let log = config.path().join("daemon.log");
    let daemon = Daemon::start(config.path(), &log).await;
    shop.set("chat", true);
    wait_for_transitions(&receiver, 1, "the firing message").await;
    daemon.terminate().await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("notification sent"), "{text}");

    // Still broken after the restart: the message that was answered during the stop is not
    // sent again.
    let daemon = Daemon::start(config.path(), &log).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = receiver.requests();
    assert_eq!(alerts(&got).len(), 1, "the firing was sent again: {got:#?}");
    drop(daemon);
}
