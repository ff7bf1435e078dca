//! A real mail server for integration tests: postfix (SMTP, submission, SMTPS) and dovecot
//! (IMAP, IMAPS, quota, sieve) on 127.0.0.1, started once per test binary by
//! `tests/mailserver/start` in a temporary directory.
//!
//! The first call to [`mail_server`] starts it (well under a second once the Debian packages
//! are installed); every test in the binary then shares that instance, so tests tell their
//! messages apart by a unique token (a subject or Message-ID) rather than by counting. The
//! start script leaves a watchdog behind that stops both daemons and removes the directory
//! once this process has exited; set `MAILSERVER_KEEP_DIR=1` to keep the logs and maildirs.
//!
//! ```ignore
//! let server = common::mailserver::mail_server();
//! let support = server.user("support");
//! // … send a message with a unique subject to support.address on server.smtp_port …
//! let file = server.wait_for_message("support", "unique subject", Duration::from_secs(10));
//! ```
//!
//! Users (all `@test.local`): `support` (files `[spam-test]` subjects and `X-Spam-Flag: YES`
//! into `Junk`), `autoreply` (a sieve vacation reply to every message that names it in To or
//! Cc), `customer` (receives those replies), `full` (1 MB quota, ~95% used) and `spare`.
//! Mail to other domains bounces; nothing leaves the machine.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The users the start script creates, by short name.
pub const USERS: [&str; 5] = ["support", "autoreply", "customer", "full", "spare"];

/// One mailbox on the test server.
#[derive(Debug, Clone)]
pub struct MailUser {
    /// Full address, also the login name: `support@test.local`.
    pub address: String,
    pub password: String,
    /// The Maildir++ root: INBOX in `cur/` and `new/`, folders in `.NAME/`.
    pub maildir: PathBuf,
}

/// A running test mail server.
#[derive(Debug)]
pub struct MailServer {
    /// Plain SMTP like port 25: no AUTH, takes mail for the test domain from 127.0.0.1.
    pub smtp_port: u16,
    /// Submission: STARTTLS required before AUTH PLAIN/LOGIN.
    pub submission_port: u16,
    /// Implicit TLS, then AUTH.
    pub smtps_port: u16,
    /// IMAP with STARTTLS (plain LOGIN is accepted too).
    pub imap_port: u16,
    /// Implicit TLS IMAP.
    pub imaps_port: u16,
    /// The CA that signed the servers' certificate (for `localhost` and 127.0.0.1).
    pub ca_file: PathBuf,
    /// The instance's directory: configuration, logs (`postfix.log`, `dovecot.log`), mail.
    pub dir: PathBuf,
    /// The mail domain, `test.local`.
    pub domain: String,
    users: HashMap<String, MailUser>,
    /// Keeps the directory for as long as the process lives (statics are never dropped; the
    /// watchdog removes it after exit).
    _tempdir: tempfile::TempDir,
}

static SERVER: OnceLock<MailServer> = OnceLock::new();

/// The test binary's mail server, started on first use. Panics with the start script's
/// output if it cannot start: a test that needs a mail server fails, it never skips.
pub fn mail_server() -> &'static MailServer {
    SERVER.get_or_init(start)
}

impl MailServer {
    /// The user called `name` (one of [`USERS`]); panics for any other name.
    pub fn user(&self, name: &str) -> &MailUser {
        self.users.get(name).unwrap_or_else(|| {
            panic!("the test mail server has no user {name:?}; it has {USERS:?}")
        })
    }

    /// Messages in all of `user`'s folders (INBOX and every `.Folder`, `cur/` and `new/`).
    pub fn count_messages(&self, user: &str) -> usize {
        // Dovecot moves files from new/ to cur/ when a client looks at a folder; a count taken
        // during such a move can be off by one, so count until two counts agree.
        let mut last = message_files(&self.user(user).maildir).len();
        for _ in 0..10 {
            let now = message_files(&self.user(user).maildir).len();
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }

    /// Polls `user`'s folders until a message containing `needle` (bytes, anywhere in the raw
    /// message) appears; returns its file, or `None` after `timeout`.
    ///
    /// Blocks the calling thread. In an async test with work of its own still running on the
    /// same runtime, use [`MailServer::wait_for_message_async`].
    pub fn wait_for_message(&self, user: &str, needle: &str, timeout: Duration) -> Option<PathBuf> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.find_message(user, needle) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// [`MailServer::wait_for_message`] for async tests: sleeps without blocking the runtime.
    pub async fn wait_for_message_async(
        &self,
        user: &str,
        needle: &str,
        timeout: Duration,
    ) -> Option<PathBuf> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.find_message(user, needle) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops this instance's dovecot (IMAP and LMTP) and waits until IMAP refuses connections.
    /// Postfix keeps accepting mail meanwhile and holds it deferred in its queue, as a shop's
    /// mail server does while its mailbox server is down, until [`MailServer::start_dovecot`].
    pub fn stop_dovecot(&self) {
        let pid_file = self.dir.join("dovecot/master.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", pid_file.display()));
        let pid = pid.trim();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        assert_eq!(
            exe,
            Path::new("/usr/sbin/dovecot"),
            "{} names pid {pid}, which is not this instance's dovecot",
            pid_file.display()
        );
        let status = Command::new("kill")
            .args(["-TERM", pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_ok()
            || dovecot_alive(pid)
        {
            assert!(
                Instant::now() < deadline,
                "dovecot (pid {pid}) did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts this instance's dovecot again and waits until IMAP and LMTP answer.
    pub fn start_dovecot(&self) {
        // Into the instance's log, not a pipe: the daemon keeps its output open, so reading a
        // pipe to its end would wait for as long as dovecot runs.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("start.log"))
            .expect("open start.log");
        let status = Command::new("dovecot")
            .arg("-c")
            .arg(self.dir.join("dovecot.conf"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .status()
            .expect("run dovecot");
        assert!(
            status.success(),
            "dovecot did not start; see {}",
            self.dir.join("start.log").display()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_err()
            || !self.dir.join("dovecot/lmtp").exists()
        {
            assert!(Instant::now() < deadline, "dovecot did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks postfix to deliver its deferred mail now (`postqueue -f`).
    pub fn flush_queue(&self) {
        let output = Command::new("postqueue")
            .arg("-c")
            .arg(self.dir.join("postfix"))
            .arg("-f")
            .output()
            .expect("run postqueue");
        assert!(
            output.status.success(),
            "postqueue -f failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The first message file of `user` that contains `needle`.
    pub fn find_message(&self, user: &str, needle: &str) -> Option<PathBuf> {
        let needle = needle.as_bytes();
        message_files(&self.user(user).maildir)
            .into_iter()
            // A file can move to cur/ between listing and reading; the next poll finds it.
            .find(|file| std::fs::read(file).is_ok_and(|bytes| contains(&bytes, needle)))
    }
}

/// Whether process `pid` runs (a zombie counts as gone: it only waits to be reaped).
fn dovecot_alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// Every message file in a Maildir++ tree: `cur/` and `new/` of the root and of each `.Folder`.
/// `tmp/` holds deliveries still being written, so it is left out.
fn message_files(maildir: &Path) -> Vec<PathBuf> {
    let mut folders = vec![maildir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(maildir) {
        folders.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
    }
    let mut files = Vec::new();
    for folder in folders {
        for sub in ["cur", "new"] {
            let Ok(entries) = std::fs::read_dir(folder.join(sub)) else {
                continue;
            };
            files.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| e.path()),
            );
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Ports the start script is told to use, by its environment variable names.
const PORT_VARS: [&str; 5] = [
    "SMTP_PORT",
    "SUBMISSION_PORT",
    "SMTPS_PORT",
    "IMAP_PORT",
    "IMAPS_PORT",
];

/// Free loopback ports, all different: the listeners are held until every port is chosen.
/// Another process may still take one before the servers bind it, hence the retry in `start`.
fn free_ports() -> Vec<u16> {
    let listeners: Vec<TcpListener> = PORT_VARS
        .iter()
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

fn start() -> MailServer {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mailserver/start");
    let mut failures = Vec::new();
    for _ in 0..3 {
        // In /tmp rather than $TMPDIR: postfix, dovecot and the mail user must be able to reach
        // their sockets and maildirs in it (a TMPDIR under /root is closed to them), and unix
        // socket paths must stay short.
        let tempdir = tempfile::Builder::new()
            .prefix("supportwatch-mail-")
            .tempdir_in("/tmp")
            .expect("create a temporary directory for the mail server");
        let ports = free_ports();
        let output = Command::new(&script)
            .arg(tempdir.path())
            .arg(std::process::id().to_string())
            .envs(
                PORT_VARS
                    .iter()
                    .zip(&ports)
                    .map(|(k, p)| (k, p.to_string())),
            )
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        if output.status.success() {
            return load(tempdir);
        }
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let port_taken = stderr.contains("in use");
        failures.push(format!("{}\n{stderr}", output.status));
        if !port_taken {
            break;
        }
        // Someone took one of the ports between choosing and binding: choose again.
    }
    panic!(
        "the test mail server did not start ({} needs root and the Debian packages postfix, \
         dovecot-imapd, dovecot-lmtpd, dovecot-sieve; scripts/test installs them):\n{}",
        script.display(),
        failures.join("\n---\n")
    );
}

/// Reads `DIR/env`, written by the start script once everything answers.
fn load(tempdir: tempfile::TempDir) -> MailServer {
    let dir = tempdir.path().to_path_buf();
    let path = dir.join("env");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let env: HashMap<&str, &str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .collect();
    let get = |key: &str| -> String {
        env.get(key)
            .unwrap_or_else(|| panic!("{} has no {key}", path.display()))
            .to_string()
    };
    let port = |key: &str| -> u16 {
        get(key)
            .parse()
            .unwrap_or_else(|e| panic!("{key} in {} is not a port: {e}", path.display()))
    };
    let users = USERS
        .iter()
        .map(|name| {
            let key = name.to_uppercase();
            let user = MailUser {
                address: get(&format!("{key}_USER")),
                password: get(&format!("{key}_PASSWORD")),
                maildir: PathBuf::from(get(&format!("{key}_MAILDIR"))),
            };
            (name.to_string(), user)
        })
        .collect();
    MailServer {
        smtp_port: port("SMTP_PORT"),
        submission_port: port("SUBMISSION_PORT"),
        smtps_port: port("SMTPS_PORT"),
        imap_port: port("IMAP_PORT"),
        imaps_port: port("IMAPS_PORT"),
        ca_file: PathBuf::from(get("CA_FILE")),
        domain: get("DOMAIN"),
        dir,
        users,
        _tempdir: tempdir,
    }
}
