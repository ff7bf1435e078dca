//! A real SIP server for integration tests: a private Kamailio (registrar and proxy with digest
//! authentication, locations in memory) on 127.0.0.1, UDP and TCP on one free port, and TLS on
//! a second one when asked ([`SipServer::start_tls`]: a certificate for 127.0.0.1 from a private
//! CA made with rcgen for the test, its files and `tls.cfg` in the test's temporary directory).
//!
//! Each test starts its own instance with its own users ([`SipServer::start`]); it runs in the
//! foreground (`-DD -E`) with its pid file and runtime directory in a temporary directory, never
//! the system's, and is stopped (SIGTERM to the main process, which stops its children) when the
//! value is dropped. A watchdog shell stops it too should the test process die without
//! unwinding. Nothing listens beyond 127.0.0.1.
//!
//! The server takes `sip.test` and `shop.test` as its own names (for SRV tests, where a name
//! must lead to it). OPTIONS requests are answered by the Request-URI's user part, so each failure a phone check
//! reports has a line to test against:
//!
//! | user | answer |
//! |---|---|
//! | none (`sip:127.0.0.1:PORT`) | 200 OK |
//! | `auth` | 407 with a digest challenge for the From user (realm: From's domain), then 200 |
//! | `www` | 401 with a digest challenge, then 200 |
//! | `down` | 503 Service Unavailable |
//! | `forbidden` | 403 Forbidden |
//! | `silent` | nothing at all |
//! | `registered` | 200 when the From user has a registered contact, else 404 ([`SipServer::registered`]) |
//! | anything else | 404 Not Found |
//!
//! INVITEs are a proxy's: the caller (From user) must answer a 407 challenge, then the call is
//! relayed (record-routed, statefully, so CANCEL and ACK follow it) to the line named by the
//! Request-URI's user — a SIPp on 127.0.0.1 given to [`SipServer::start_with_lines`] — or
//! answered 404 when no such line exists.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Digest algorithm the server challenges with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

/// A running private Kamailio.
pub struct SipServer {
    /// UDP and TCP port on 127.0.0.1.
    pub port: u16,
    /// Configuration and `kamailio.log`.
    pub dir: PathBuf,
    /// The TLS listener, when started with one.
    pub tls: Option<TlsListener>,
    child: Child,
    _tempdir: tempfile::TempDir,
}

/// A TLS listener on 127.0.0.1 presenting a certificate for `127.0.0.1`.
pub struct TlsListener {
    /// TLS port on 127.0.0.1.
    pub port: u16,
    /// The PEM file of the CA that issued the server's certificate (what a client must trust).
    pub ca_file: PathBuf,
}

const MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules/";

impl SipServer {
    /// Starts Kamailio with `users` (name, password) and MD5 challenges.
    pub fn start(users: &[(&str, &str)]) -> SipServer {
        SipServer::start_with(users, Algorithm::Md5)
    }

    /// Starts Kamailio with `users` and the given digest algorithm. Panics with the server's
    /// log if it does not answer within 10 s: a test that needs it fails, it never skips.
    pub fn start_with(users: &[(&str, &str)], algorithm: Algorithm) -> SipServer {
        SipServer::start_full(users, &[], algorithm)
    }

    /// Starts Kamailio with `users` and `lines` (a user part called, the UDP port on 127.0.0.1
    /// its INVITEs are relayed to).
    pub fn start_with_lines(users: &[(&str, &str)], lines: &[(&str, u16)]) -> SipServer {
        SipServer::start_lines(users, lines, "")
    }

    /// [`SipServer::start_with_lines`], the calls relayed to the lines over TCP.
    pub fn start_with_tcp_lines(users: &[(&str, &str)], lines: &[(&str, u16)]) -> SipServer {
        SipServer::start_lines(users, lines, ";transport=tcp")
    }

    /// [`SipServer::start_with_lines`] with a TLS listener besides UDP and TCP (the lines are
    /// still reached over UDP: the server relays between the transports).
    pub fn start_tls(users: &[(&str, &str)], lines: &[(&str, u16)]) -> SipServer {
        SipServer::start_port(
            users,
            &line_targets(lines, ""),
            Algorithm::Md5,
            free_port(),
            true,
        )
    }

    /// Lines at `127.0.0.1:PORT` followed by `params`.
    fn start_lines(users: &[(&str, &str)], lines: &[(&str, u16)], params: &str) -> SipServer {
        SipServer::start_full(users, &line_targets(lines, params), Algorithm::Md5)
    }

    /// Starts Kamailio with `users` on a given `port` (to restart a server where its clients
    /// expect it).
    pub fn start_on(users: &[(&str, &str)], port: u16) -> SipServer {
        SipServer::start_port(users, &[], Algorithm::Md5, port, false)
    }

    fn start_full(
        users: &[(&str, &str)],
        lines: &[(String, String)],
        algorithm: Algorithm,
    ) -> SipServer {
        SipServer::start_port(users, lines, algorithm, free_port(), false)
    }

    fn start_port(
        users: &[(&str, &str)],
        lines: &[(String, String)],
        algorithm: Algorithm,
        port: u16,
        tls: bool,
    ) -> SipServer {
        let tempdir = tempfile::tempdir().expect("temporary directory");
        let dir = tempdir.path().to_path_buf();
        let tls = tls.then(|| tls_files(&dir));
        let config = dir.join("kamailio.cfg");
        let text = config_text(port, users, lines, algorithm, tls.as_ref(), &dir);
        std::fs::write(&config, text).expect("write config");
        let log = std::fs::File::create(dir.join("kamailio.log")).expect("log file");
        let child = Command::new("/usr/sbin/kamailio")
            .arg("-f")
            .arg(&config)
            .args(["-DD", "-E"])
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .arg("-Y")
            .arg(&dir)
            .args(["-m", "32", "-M", "4"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("kamailio is installed (scripts/test installs it)");
        // Should this process die without unwinding, stop the server anyway.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null && kill -0 {kam} 2>/dev/null; do sleep 1; done; \
                 kill -TERM {kam} 2>/dev/null",
                me = std::process::id(),
                kam = child.id()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let server = SipServer {
            port,
            dir,
            tls,
            child,
            _tempdir: tempdir,
        };
        server.wait_ready();
        server
    }

    /// `sip:[user@]127.0.0.1:PORT[;transport=tcp]`.
    pub fn uri(&self, user: Option<&str>, tcp: bool) -> String {
        let user = user.map(|u| format!("{u}@")).unwrap_or_default();
        let transport = if tcp { ";transport=tcp" } else { "" };
        format!("sip:{user}127.0.0.1:{}{transport}", self.port)
    }

    /// `sips:[user@]127.0.0.1:TLSPORT`; panics when the server has no TLS listener.
    pub fn sips_uri(&self, user: Option<&str>) -> String {
        let user = user.map(|u| format!("{u}@")).unwrap_or_default();
        let port = self.tls.as_ref().expect("started with start_tls").port;
        format!("sips:{user}127.0.0.1:{port}")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }

    /// Whether `user` has a contact in the location table now (blocking, at most 2 s).
    pub fn registered(&self, user: &str) -> bool {
        registered_at(self.port, user)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while Instant::now() < deadline {
            if options_udp(addr, "", "ready") == Some(200)
                && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && self.tls.as_ref().is_none_or(|tls| {
                    let addr = SocketAddr::from(([127, 0, 0, 1], tls.port));
                    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                })
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "kamailio did not answer on 127.0.0.1:{} within 10 s; log:\n{}",
            self.port,
            self.log()
        );
    }
}

impl Drop for SipServer {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the main process then stops the children it forked.
        if let Ok(pid) = i32::try_from(self.child.id())
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `user` has a contact in the location table of the server on `port` (asked over UDP,
/// retried for at most 2 s while nothing answers).
pub fn registered_at(port: u16, user: &str) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    (0..10).find_map(|_| options_udp(addr, "registered", user)) == Some(200)
}

/// `(name, "PORT[params]")` for each line.
fn line_targets(lines: &[(&str, u16)], params: &str) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|(name, port)| (name.to_string(), format!("{port}{params}")))
        .collect()
}

/// Makes a CA and a certificate for 127.0.0.1 with rcgen, writes `ca.pem`, `cert.pem` and
/// `key.pem` into `dir`, and picks a free TCP port for the TLS listener.
fn tls_files(dir: &std::path::Path) -> TlsListener {
    use base64::Engine as _;
    use supportwatch::demo::pki::{Authority, Validity};
    let ca = Authority::new("supportwatch Kamailio test CA").expect("CA");
    let cert = ca
        .issue(&["127.0.0.1"], Validity::days(30))
        .expect("certificate");
    let key = base64::engine::general_purpose::STANDARD.encode(cert.key_der.secret_pkcs8_der());
    let mut key_pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in key.as_bytes().chunks(64) {
        key_pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        key_pem.push('\n');
    }
    key_pem.push_str("-----END PRIVATE KEY-----\n");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.ca.cert_pem).expect("write CA");
    std::fs::write(dir.join("cert.pem"), &cert.cert_pem).expect("write certificate");
    std::fs::write(dir.join("key.pem"), key_pem).expect("write key");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free TCP port")
        .port();
    TlsListener { port, ca_file }
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// One OPTIONS over UDP to `sip:[to@]ADDR` from user `from`: the answer's status, or `None`
/// when none came within 200 ms.
fn options_udp(addr: SocketAddr, to: &str, from: &str) -> Option<u16> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    let local = socket.local_addr().ok()?;
    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
    let to = if to.is_empty() {
        String::new()
    } else {
        format!("{to}@")
    };
    let request = format!(
        "OPTIONS sip:{to}{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKready{}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{from}@127.0.0.1>;tag=1\r\nTo: <sip:{to}{addr}>\r\n\
         Call-ID: ready-{}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        local.port(),
        local.port()
    );
    socket.send_to(request.as_bytes(), addr).ok()?;
    let mut buf = [0u8; 2048];
    let n = socket.recv(&mut buf).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn config_text(
    port: u16,
    users: &[(&str, &str)],
    lines: &[(String, String)],
    algorithm: Algorithm,
    tls: Option<&TlsListener>,
    dir: &std::path::Path,
) -> String {
    let mut users: String = users
        .iter()
        .map(|(name, password)| format!("    $sht(users=>{name}) = \"{password}\";\n"))
        .collect();
    for (name, line_port) in lines {
        users.push_str(&format!(
            "    $sht(lines=>{name}) = \"sip:127.0.0.1:{line_port}\";\n"
        ));
    }
    let algorithm = match algorithm {
        Algorithm::Md5 => "MD5",
        Algorithm::Sha256 => "SHA-256",
    };
    // The tls module reads its certificate and key from tls.cfg, written beside the config;
    // clients are not asked for certificates.
    let tls = match tls {
        None => String::new(),
        Some(tls) => {
            let dir = dir.display();
            let tls_cfg = format!(
                "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
                 require_certificate = no\nprivate_key = {dir}/key.pem\n\
                 certificate = {dir}/cert.pem\n\n[client:default]\nmethod = TLSv1.2+\n\
                 verify_certificate = no\nrequire_certificate = no\n"
            );
            std::fs::write(format!("{dir}/tls.cfg"), tls_cfg).expect("write tls.cfg");
            format!(
                "enable_tls=yes\nlisten=tls:127.0.0.1:{port}\nloadmodule \"tls.so\"\n\
                 modparam(\"tls\", \"config\", \"{dir}/tls.cfg\")\n",
                port = tls.port
            )
        }
    };
    format!(
        r#"#!KAMAILIO
# supportwatch's test SIP server: a registrar and proxy with digest auth from a table.
debug=2
log_stderror=yes
fork=yes
children=1
tcp_children=1
disable_sctp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
alias="sip.test"
alias="shop.test"
mpath="{MODULES}"
{tls}loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "auth.so"
loadmodule "htable.so"
modparam("usrloc", "db_mode", 0)
modparam("htable", "htable", "users=>size=4;")
modparam("htable", "htable", "lines=>size=4;")
modparam("auth", "algorithm", "{algorithm}")

route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("OPTIONS") && uri==myself) {{
        if ($rU==$null) {{ sl_send_reply("200", "OK"); exit; }}
        if ($rU=="auth") {{
            if (!pv_auth_check("$fd", "$sht(users=>$fU)", "0", "1")) {{ auth_challenge("$fd", "1"); exit; }}
            sl_send_reply("200", "OK"); exit;
        }}
        if ($rU=="www") {{
            # pv_auth_check reads Proxy-Authorization on anything but REGISTER; this reads Authorization.
            if (!pv_www_authenticate("$fd", "$sht(users=>$fU)", "0")) {{ www_challenge("$fd", "1"); exit; }}
            sl_send_reply("200", "OK"); exit;
        }}
        if ($rU=="down") {{ sl_send_reply("503", "Service Unavailable"); exit; }}
        if ($rU=="forbidden") {{ sl_send_reply("403", "Forbidden"); exit; }}
        if ($rU=="silent") {{ drop; }}
        if ($rU=="registered") {{
            if (registered("location", "sip:$fU@127.0.0.1")) {{ sl_send_reply("200", "OK"); exit; }}
            sl_send_reply("404", "Not Found"); exit;
        }}
        sl_send_reply("404", "Not Found"); exit;
    }}
    if (has_totag()) {{
        # In-dialog: ACK and BYE follow the route set this proxy recorded.
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not Here"); exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("ACK")) {{ t_check_trans(); exit; }}
    if (is_method("INVITE")) {{
        if (!pv_auth_check("$fd", "$sht(users=>$fU)", "0", "1")) {{ auth_challenge("$fd", "1"); exit; }}
        consume_credentials();
        # A fixed line of the table, else a registered account (its Contact from REGISTER).
        if ($sht(lines=>$rU) != $null) {{ $du = $sht(lines=>$rU); }}
        else if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
        record_route();
        t_relay();
        exit;
    }}
    if (is_method("REGISTER")) {{
        if (!pv_auth_check("$fd", "$sht(users=>$fU)", "0", "1")) {{ auth_challenge("$fd", "0"); exit; }}
        save("location");
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}

event_route[htable:mod-init] {{
{users}}}
"#
    )
}
