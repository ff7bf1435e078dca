//! A private DNS server for integration tests: dnsmasq on a free 127.0.0.1 port, serving only
//! the records a test gives it (`--no-resolv`, no `--server`, `--local=/test/`), so no query
//! ever leaves the machine. Killed when dropped.
//!
//! dnsmasq comes from Debian's `dnsmasq-base` package; CI installs it.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// A dnsmasq child process, killed when dropped.
pub struct Dnsmasq {
    child: Child,
    /// The UDP and TCP port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on 127.0.0.1");
        let port = udp.local_addr().expect("local address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

impl Dnsmasq {
    /// Starts dnsmasq serving `records` (its command-line options, e.g.
    /// `--srv-host=_sip._udp.shop.test,shop.test,5060`); panics if it cannot start.
    pub fn start(records: &[&str]) -> Dnsmasq {
        assert!(
            std::path::Path::new(DNSMASQ).exists(),
            "{DNSMASQ} is missing: these tests need a local DNS server; run `apt-get install dnsmasq-base`"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut cmd = Command::new(DNSMASQ);
        cmd.arg("--keep-in-foreground")
            .arg(format!("--port={port}"))
            .arg("--listen-address=127.0.0.1")
            .arg("--bind-interfaces")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg("--no-poll")
            .arg("--conf-file=/dev/null")
            // Answer NXDOMAIN for unknown names under .test instead of trying to forward them.
            .arg("--local=/test/")
            .arg("--log-facility=-")
            .arg(format!(
                "--pid-file={}",
                dir.path().join("dnsmasq.pid").display()
            ))
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // As root dnsmasq would switch to `nobody`; staying root avoids depending on that user.
        if is_root() {
            cmd.arg("--user=root");
        }
        let mut child = cmd.spawn().expect("start dnsmasq");
        // dnsmasq binds its UDP and TCP sockets together at start; TCP accepting means it answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
                }
                panic!("dnsmasq exited at start ({status}): {err}");
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not start listening on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Dnsmasq {
            child,
            port,
            _dir: dir,
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
