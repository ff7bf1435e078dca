//! The chromedriver process supportwatch starts itself: spawn, readiness, health, kill.
//!
//! chromedriver is started once and kept warm (starting it costs a few hundred milliseconds,
//! reusing it costs nothing). It runs in its own process group: every chromium it launches
//! inherits the group, so killing the group kills them all, even the ones whose sessions were
//! never closed. Its stdout and stderr go to a small ring buffer, so a driver that will not start
//! can say why.

use super::BrowserError;
use super::procs;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

/// How long a fresh chromedriver may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Output lines kept from chromedriver, and the length each is cut to.
const TAIL_LINES: usize = 20;
const TAIL_LINE_CHARS: usize = 300;
/// Lines of that output quoted in an error.
const QUOTED_LINES: usize = 5;
/// Largest `/status` answer read.
const STATUS_MAX_BYTES: usize = 64 * 1024;

/// A running chromedriver.
pub(crate) struct Driver {
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    /// Counts starts within one `Browser`, so a failed session restarts the driver it used, not
    /// one another run has already replaced.
    pub generation: u64,
    /// Major version of chromedriver, which must equal chromium's.
    pub major: Option<u32>,
    port: u16,
    /// chromedriver's pid, which is also its process group id.
    pid: u32,
    child: tokio::process::Child,
    output: Tail,
    /// chromedriver's and its browsers' `TMPDIR`. chromedriver and chromium put scratch
    /// directories there that only a clean exit removes; a private directory lets a kill remove
    /// them too. Declared after `child`: removed only once the processes are killed.
    _tmp: tempfile::TempDir,
}

/// The last lines chromedriver printed.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: &str) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line.chars().take(TAIL_LINE_CHARS).collect());
    }

    /// The last few lines, for an error message.
    fn quote(&self) -> String {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let skip = lines.len().saturating_sub(QUOTED_LINES);
        let text: Vec<&str> = lines.iter().skip(skip).map(String::as_str).collect();
        if text.is_empty() {
            "chromedriver printed nothing".into()
        } else {
            format!("chromedriver said: {}", text.join(" | "))
        }
    }

    /// Copies one of chromedriver's outputs into the tail until it closes. Reading also keeps
    /// chromedriver from blocking on a full pipe.
    fn follow(&self, stream: impl AsyncRead + Unpin + Send + 'static) {
        let tail = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tail.push(&line);
            }
        });
    }
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits until `/status` says ready.
    pub async fn start(path: &str, generation: u64) -> Result<Driver, BrowserError> {
        let binary = locate(path)?;
        // The port is picked by binding and releasing it; another process may take it in between,
        // so a start that fails on the port is tried again with a new one.
        let mut last = None;
        for _ in 0..3 {
            match Self::start_on_free_port(&binary, generation).await {
                Err(StartFailure::PortTaken(e)) => last = Some(e),
                Err(StartFailure::Fatal(e)) => return Err(e),
                Ok(driver) => return Ok(driver),
            }
        }
        Err(last.unwrap_or_else(|| BrowserError::DriverStart("no free port".into())))
    }

    async fn start_on_free_port(binary: &Path, generation: u64) -> Result<Driver, StartFailure> {
        let fatal = |e: String| StartFailure::Fatal(BrowserError::DriverStart(e));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| fatal(format!("no free loopback port: {e}")))?;
        let tmp = tempfile::Builder::new()
            .prefix("supportwatch-chromedriver-")
            .tempdir()
            .map_err(|e| fatal(format!("cannot create a temporary directory: {e}")))?;
        let mut child = tokio::process::Command::new(binary)
            .env("TMPDIR", tmp.path())
            // chromedriver's default is to accept local connections only; `--allowed-ips`
            // would make it listen on every interface, so it is deliberately not passed.
            .arg(format!("--port={port}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            // Its own group, so the group kill reaches every chromium it starts (see the module
            // docs); kill_on_drop is a second line of defence for chromedriver itself.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StartFailure::Fatal(BrowserError::DriverNotFound {
                    path: binary.display().to_string(),
                }),
                _ => fatal(format!("cannot run {}: {e}", binary.display())),
            })?;
        let pid = child
            .id()
            .ok_or_else(|| fatal("chromedriver exited at once".into()))?;
        let output = Tail::default();
        if let Some(out) = child.stdout.take() {
            output.follow(out);
        }
        if let Some(err) = child.stderr.take() {
            output.follow(err);
        }
        let mut driver = Driver {
            url: format!("http://127.0.0.1:{port}/"),
            generation,
            major: None,
            port,
            pid,
            child,
            output,
            _tmp: tmp,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = driver.child.try_wait() {
                // Give the output readers a moment to collect the last words.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let said = driver.output.quote();
                let message = format!("{} exited ({status}); {said}", binary.display());
                return Err(if said.contains("Address already in use") {
                    StartFailure::PortTaken(BrowserError::DriverStart(message))
                } else {
                    fatal(message)
                });
            }
            if let Ok(s) = status(port, Duration::from_millis(500)).await
                && s.ready
            {
                driver.major = s.major;
                return Ok(driver);
            }
            if Instant::now() >= deadline {
                let said = driver.output.quote();
                return Err(fatal(format!(
                    "{} did not report ready on port {port} within {}s; {said}",
                    binary.display(),
                    START_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// chromedriver's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Whether `/status` answers within `within`.
    pub async fn answers(&self, within: Duration) -> bool {
        status(self.port, within).await.is_ok()
    }
}

impl Driver {
    /// Kills chromedriver and every chromium it started, waits (briefly) until they are gone, and
    /// removes their scratch files.
    pub async fn stop(mut self) {
        procs::kill_group(self.pid);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        // Killed processes take a moment to exit; files they still hold would survive removal.
        for _ in 0..100 {
            if procs::group_members(self.pid).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Driver {
    /// The synchronous fallback (a `Browser` being dropped): kill, and remove what can be removed.
    fn drop(&mut self) {
        procs::kill_group(self.pid);
        let _ = self.child.start_kill();
    }
}

enum StartFailure {
    PortTaken(BrowserError),
    Fatal(BrowserError),
}

/// Resolves the configured chromedriver: a path is taken as is, a bare name is looked up on PATH.
fn locate(path: &str) -> Result<PathBuf, BrowserError> {
    let not_found = || BrowserError::DriverNotFound { path: path.into() };
    if path.contains('/') {
        let p = PathBuf::from(path);
        return if p.is_file() { Ok(p) } else { Err(not_found()) };
    }
    on_path(path).ok_or_else(not_found)
}

/// The first file named `name` in a directory of PATH.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What `/status` says.
pub(crate) struct Status {
    pub ready: bool,
    pub major: Option<u32>,
}

/// `GET /status` on loopback, bounded by `within`. A hand-written HTTP/1.1 request keeps this
/// free of client setup and makes the bound cover connect, send and read alike.
pub(crate) async fn status(port: u16, within: Duration) -> Result<Status, String> {
    let body = tokio::time::timeout(within, get_status(port))
        .await
        .map_err(|_| format!("no answer within {}ms", within.as_millis()))??;
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("bad /status answer: {e}"))?;
    let value = &json["value"];
    Ok(Status {
        ready: value["ready"].as_bool().unwrap_or(false),
        major: value["build"]["version"]
            .as_str()
            .and_then(|v| v.split('.').next()?.parse().ok()),
    })
}

async fn get_status(port: u16) -> Result<Vec<u8>, String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    // chromedriver keeps the socket open after answering despite `Connection: close`, so the
    // body is read by its Content-Length rather than to EOF.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before a full answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > STATUS_MAX_BYTES {
            return Err("answer too large".into());
        }
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") && !head.starts_with("http/1.0 200") {
            return Err(format!(
                "answered {}",
                head.lines().next().unwrap_or_default()
            ));
        }
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let body = &buf[end + 4..];
        match length {
            Some(len) if body.len() >= len => return Ok(body[..len].to_vec()),
            Some(_) => {}
            // Without a length only a complete JSON document tells the answer is whole.
            None if serde_json::from_slice::<serde_json::Value>(body).is_ok() => {
                return Ok(body.to_vec());
            }
            None => {}
        }
    }
}
