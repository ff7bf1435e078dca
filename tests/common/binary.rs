//! `supportwatch run` as a separate process, the way the fault suites drive it: JSON log lines
//! collected as they come (a reader thread, so a full pipe never blocks the daemon), the web
//! address read from its start-up line, and the process killed when the test is done with it.
//!
//! The waits block the calling thread; the suites that use them run on a multi-threaded runtime,
//! so their own test servers keep answering meanwhile.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the daemon may take to start, log or stop on a busy machine.
pub const WITHIN: Duration = Duration::from_secs(30);

/// The running binary and every line it has logged so far.
pub struct Binary {
    /// The process, for signals.
    pub child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Binary {
    /// Starts `run --listen 127.0.0.1:0 --config DIR` in `dir` with `env` added.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Binary {
        Binary::start_limited(dir, env, None)
    }

    /// [`Binary::start`]; with `fd_limit`, under `ulimit -n` (soft and hard, so the daemon cannot
    /// raise it).
    pub fn start_limited(dir: &Path, env: &[(&str, &str)], fd_limit: Option<u32>) -> Binary {
        Binary::start_with(dir, &[], env, fd_limit)
    }

    /// [`Binary::start_limited`], with `args` after `run` (e.g. `--shard 0/3`).
    pub fn start_with(
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        fd_limit: Option<u32>,
    ) -> Binary {
        // The tests' own HTTP clients need a TLS provider even for http://.
        supportwatch::tlsconf::install_crypto_provider();
        let bin = env!("CARGO_BIN_EXE_supportwatch");
        let mut command = match fd_limit {
            Some(limit) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .args(["--log-format", "json", "run", "--listen", "127.0.0.1:0"])
            .args(args)
            .arg("--config")
            .arg(dir)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the supportwatch binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        // Drains stderr until the process exits.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Binary { child, log }
    }

    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The whole log so far, one line each.
    pub fn log(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits for the first line, from line `skip` on, that contains `text`, and returns it.
    /// Panics when the process exits first or nothing comes within [`WITHIN`].
    pub fn wait_for_line(&mut self, text: &str, skip: usize) -> String {
        self.wait_for(skip, |line| line.contains(text).then(|| line.to_string()))
            .unwrap_or_else(|log| panic!("no `{text}` logged:\n{log}"))
    }

    /// The string field `field` of the first line whose message is `message`.
    pub fn logged(&mut self, message: &str, field: &str) -> String {
        self.wait_for(0, |line| {
            let json = serde_json::from_str::<serde_json::Value>(line).ok()?;
            if json["fields"]["message"] != message {
                return None;
            }
            json["fields"][field].as_str().map(str::to_string)
        })
        .unwrap_or_else(|log| panic!("no `{message}` with `{field}` logged:\n{log}"))
    }

    /// The address of the web server, from the start-up line.
    pub fn addr(&mut self) -> SocketAddr {
        self.logged("supportwatch running", "addr")
            .parse()
            .expect("a socket address")
    }

    fn wait_for<T>(
        &mut self,
        skip: usize,
        mut found: impl FnMut(&str) -> Option<T>,
    ) -> Result<T, String> {
        let started = Instant::now();
        loop {
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited {
                // Let the reader take the last lines before looking a final time.
                std::thread::sleep(Duration::from_millis(200));
            }
            if let Some(hit) = self.lines().iter().skip(skip).find_map(|l| found(l)) {
                return Ok(hit);
            }
            if exited || started.elapsed() > WITHIN {
                let why = if exited { "exited" } else { "still running" };
                return Err(format!("(supportwatch {why})\n{}", self.log()));
            }
            // Nothing announces a new line; look again shortly.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit code and the whole log (SIGKILL after [`WITHIN`]).
    pub fn stop(mut self) -> (Option<i32>, String) {
        super::daemon::signal(&self.child, "-TERM");
        let started = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if started.elapsed() > WITHIN {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = self.child.wait().expect("exit status");
        // The reader ends with the process; give it a moment to take the last lines.
        std::thread::sleep(Duration::from_millis(200));
        (status.code(), self.log())
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        // A daemon must not outlive its test, whether it passed or failed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of the samples of `metric` in exposition `text` whose label sets contain every one of
/// `labels` (e.g. `reason="permits"`); `None` when there is no such sample.
pub fn metric_sum(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    let labelled = format!("{metric}{{");
    let plain = format!("{metric} ");
    text.lines()
        .filter(|l| l.starts_with(&labelled) || l.starts_with(&plain))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
}
