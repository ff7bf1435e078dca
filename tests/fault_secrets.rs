//! Fault: servers that echo the credentials they were sent.
//!
//! A hostile IMAP server (implicit TLS, test CA) answers LOGIN with
//! `NO [AUTHENTICATIONFAILED] bad password <the password it got>` (and the password again where
//! the message gets cut short), and a hostile SMTP server
//! answers AUTH PLAIN with `535 5.7.8 rejected <the base64 string it got>`. The real binary runs
//! `check` (text and `--json`) and `run` (with storage and a webhook notifier) against them; no
//! password and none of its encodings may appear in stdout, stderr (the log), the SQLite file or
//! the notifier's payload, and the redaction marker must (so the servers' echoes did arrive).

mod common;

use common::daemon::ConfigDir;
use common::recorder::Recorder;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use supportwatch::demo::pki::{Authority, Validity};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const IMAP_USER: &str = "support@shop.test";
const IMAP_PASSWORD: &str = "imap-Pa55word/with+chars";
const SMTP_USER: &str = "monitor@shop.test";
const SMTP_PASSWORD: &str = "smtp-Secret horse~battery";
/// The e-mail notifier logs in to the same hostile server, with the same password.
const ALERTS_USER: &str = "alerts@shop.test";
const MARKER: &str = "<redacted>";

/// What the hostile servers received: proof that the secrets were on the wire to be echoed.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<String>>>);

impl Received {
    fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// An IMAP server over implicit TLS that speaks just enough to refuse a LOGIN, quoting the
/// password it was sent.
async fn hostile_imap(acceptor: tokio_rustls::TlsAcceptor, received: Received) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind imap");
    let port = listener.local_addr().expect("addr").port();
    // Accept loop: one task per connection, so a client that reconnects is served again.
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let received = received.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut tls = BufReader::new(tls);
                let greeting = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hostile ready\r\n";
                if tls.get_mut().write_all(greeting.as_bytes()).await.is_err() {
                    return;
                }
                let mut line = String::new();
                while matches!(tls.read_line(&mut line).await, Ok(n) if n > 0) {
                    let command = line.trim_end().to_string();
                    line.clear();
                    let mut words = command.splitn(3, ' ');
                    let tag = words.next().unwrap_or("*").to_string();
                    let verb = words.next().unwrap_or("").to_ascii_uppercase();
                    let args = words.next().unwrap_or("");
                    let reply = match verb.as_str() {
                        "CAPABILITY" => {
                            format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n")
                        }
                        "LOGIN" => {
                            // The last argument is the quoted password: echo it unquoted.
                            let password = args
                                .rsplit_once(' ')
                                .map(|(_, p)| p)
                                .unwrap_or(args)
                                .trim_matches('"')
                                .replace("\\\"", "\"")
                                .replace("\\\\", "\\");
                            received.push(password.clone());
                            // Twice: whole, and where supportwatch cuts the server's text
                            // (at 120 characters) in the middle of the password.
                            format!(
                                "{tag} NO [AUTHENTICATIONFAILED] bad password {password}; the \
                                 audit trail of this server has details, {password}\r\n"
                            )
                        }
                        "LOGOUT" => format!("* BYE\r\n{tag} OK bye\r\n"),
                        _ => format!("{tag} BAD unknown command\r\n"),
                    };
                    if tls.get_mut().write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A plain SMTP server on loopback. `hostile`: it offers AUTH PLAIN and answers it with a 535
/// that quotes the base64 string it got. Otherwise it takes every message without AUTH.
async fn smtp(hostile: bool, received: Received) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
    let port = listener.local_addr().expect("addr").port();
    // Accept loop: one task per connection.
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let received = received.clone();
            tokio::spawn(async move {
                let (read, mut write) = tcp.into_split();
                let mut lines = BufReader::new(read);
                if write.write_all(b"220 shop.test ESMTP\r\n").await.is_err() {
                    return;
                }
                let mut in_data = false;
                let mut line = String::new();
                while matches!(lines.read_line(&mut line).await, Ok(n) if n > 0) {
                    let command = line.trim_end().to_string();
                    line.clear();
                    if in_data {
                        if command == "." {
                            in_data = false;
                            let _ = write.write_all(b"250 2.0.0 queued\r\n").await;
                        }
                        continue;
                    }
                    let verb = command
                        .split([' ', ':'])
                        .next()
                        .unwrap_or("")
                        .to_ascii_uppercase();
                    let reply = match verb.as_str() {
                        "EHLO" if hostile => "250-shop.test\r\n250 AUTH PLAIN".to_string(),
                        "EHLO" => "250-shop.test\r\n250 8BITMIME".to_string(),
                        "AUTH" => {
                            let encoded = command.rsplit(' ').next().unwrap_or("").to_string();
                            received.push(encoded.clone());
                            format!("535 5.7.8 rejected {encoded}")
                        }
                        "DATA" => {
                            in_data = true;
                            "354 go ahead".to_string()
                        }
                        "QUIT" => "221 bye".to_string(),
                        _ => "250 ok".to_string(),
                    };
                    if write
                        .write_all(format!("{reply}\r\n").as_bytes())
                        .await
                        .is_err()
                        || verb == "QUIT"
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every form of the two passwords that must not leave the process.
fn forbidden_forms(received: &[String]) -> Vec<String> {
    let mut forms = vec![
        IMAP_PASSWORD.to_string(),
        SMTP_PASSWORD.to_string(),
        base64(IMAP_PASSWORD.as_bytes()),
        base64(SMTP_PASSWORD.as_bytes()),
        base64(format!("\0{SMTP_USER}\0{SMTP_PASSWORD}").as_bytes()),
        base64(format!("\0{IMAP_USER}\0{IMAP_PASSWORD}").as_bytes()),
        // Percent-encoded, as in a URL.
        IMAP_PASSWORD.replace('/', "%2F").replace('+', "%2B"),
        SMTP_PASSWORD.replace(' ', "%20").replace('~', "%7E"),
        // Long unique pieces, in case a message was cut short.
        IMAP_PASSWORD[..12].to_string(),
        SMTP_PASSWORD[..12].to_string(),
    ];
    forms.extend(received.iter().filter(|r| r.len() >= 8).cloned());
    forms
}

fn assert_clean(what: &str, text: &str, forbidden: &[String]) {
    for form in forbidden {
        assert!(
            !text.contains(form.as_str()),
            "{what} shows the secret form {form:?}:\n{text}"
        );
    }
}

/// The servers, the CA file and the config directory of one test.
struct Setup {
    dir: ConfigDir,
    hook: Recorder,
    received: Received,
    _ca_dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    supportwatch::tlsconf::install_crypto_provider();
    let ca = Authority::new("supportwatch fault test CA").expect("a CA");
    let cert = ca
        .issue(&["127.0.0.1"], Validity::days(30))
        .expect("a server certificate");
    let acceptor =
        tokio_rustls::TlsAcceptor::from(cert.server_config(&[]).expect("a server config"));
    let ca_dir = tempfile::tempdir().expect("a temporary directory");
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca.cert_pem).expect("write the CA file");
    let password_file = ca_dir.path().join("smtp-password");
    std::fs::write(&password_file, format!("{SMTP_PASSWORD}\n")).expect("write the password");

    let received = Received::default();
    let imap_port = hostile_imap(acceptor, received.clone()).await;
    let hostile_smtp = smtp(true, received.clone()).await;
    let benign_smtp = smtp(false, received.clone()).await;
    let hook = Recorder::start().await;

    let dir = ConfigDir::new();
    dir.write(
        "checks.yaml",
        &format!(
            "mailboxes:
  support: {{ imap: \"imaps://127.0.0.1:{imap_port}\", user: {IMAP_USER}, password: \"${{SW_FAULT_IMAP_PASSWORD}}\", ca_file: \"{ca}\" }}
notifiers:
  ops: {{ kind: webhook, url: \"{hook}\" }}
  mail: {{ kind: email, smtp: \"smtp://127.0.0.1:{hostile_smtp}\", user: {ALERTS_USER}, password: \"${{file:{password_file}}}\", from: {ALERTS_USER}, to: [owner@shop.test] }}
alerting:
  group_wait: 0s
  failure_threshold: 1
  routes: [ {{ notify: [ops, mail] }} ]
checks:
  - name: smtp-auth
    kind: mail
    channel: email
    smtp: \"smtp://127.0.0.1:{hostile_smtp}\"
    user: {SMTP_USER}
    password: \"${{file:{password_file}}}\"
    from: {SMTP_USER}
    to: {IMAP_USER}
    interval: 15s
    timeout: 12s
    retries: 0
  - name: imap-login
    kind: mail
    channel: email
    smtp: \"smtp://127.0.0.1:{benign_smtp}\"
    from: {SMTP_USER}
    to: {IMAP_USER}
    deliver: {{ mailbox: support, within: 6s }}
    interval: 15s
    timeout: 12s
    retries: 0
",
            ca = ca_file.display(),
            hook = hook.url("/alerts"),
            password_file = password_file.display(),
        ),
    );
    Setup {
        dir,
        hook,
        received,
        _ca_dir: ca_dir,
    }
}

async fn check(setup: &Setup, json: bool) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_supportwatch"));
    command
        .args(["check", "--all", "--config"])
        .arg(setup.dir.path())
        .env("SW_FAULT_IMAP_PASSWORD", IMAP_PASSWORD)
        .env("RUST_LOG", "debug")
        .kill_on_drop(true);
    if json {
        command.arg("--json");
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("check ends within a minute")
        .expect("run supportwatch check")
}

/// The address in the daemon's "supportwatch running addr=…" log line.
async fn wait_for_listen_address(log: &Mutex<String>) -> String {
    let started = Instant::now();
    loop {
        let found = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines()
            .find(|l| l.contains("supportwatch running"))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string);
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the daemon never said where it listens"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `/healthz` once it lists `notifier` as failing.
async fn wait_for_failing_notifier(addr: &str, notifier: &str) -> String {
    let started = Instant::now();
    loop {
        let body = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .expect("GET /healthz")
            .text()
            .await
            .expect("the /healthz body");
        let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        if health["notifiers_failing"].get(notifier).is_some() {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "`{notifier}` never failed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every value of every table, as text.
fn database_text(path: &std::path::Path) -> String {
    let db = rusqlite::Connection::open(path).expect("open the alert database");
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .expect("list tables")
        .query_map([], |row| row.get(0))
        .expect("query tables")
        .collect::<Result<_, _>>()
        .expect("table names");
    let mut text = String::new();
    for table in tables {
        let mut statement = db
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .expect("select");
        let columns = statement.column_count();
        let mut rows = statement.query([]).expect("query");
        while let Some(row) = rows.next().expect("row") {
            for i in 0..columns {
                let value = match row.get_ref(i).expect("value") {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                    other => format!("{other:?}"),
                };
                text.push_str(&value);
                text.push('\n');
            }
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_credentials_never_leave_the_process() {
    let setup = setup().await;

    // `check`, as text and as JSON, side by side.
    let (text, json) = tokio::join!(check(&setup, false), check(&setup, true));
    let received = setup.received.all();
    assert!(
        received.iter().any(|r| r == IMAP_PASSWORD),
        "the IMAP server got the password: {received:?}\n{}\n{}",
        String::from_utf8_lossy(&text.stdout),
        String::from_utf8_lossy(&text.stderr)
    );
    assert!(
        received.iter().any(|r| r.len() > 20 && r != IMAP_PASSWORD),
        "the SMTP server got an AUTH PLAIN string: {received:?}"
    );
    let forbidden = forbidden_forms(&received);
    for (what, output) in [("check", &text), ("check --json", &json)] {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_clean(&format!("{what} stdout"), &stdout, &forbidden);
        assert_clean(&format!("{what} stderr"), &stderr, &forbidden);
        // Both failures carry the servers' echoes, scrubbed.
        assert!(
            stdout.matches(MARKER).count() >= 2,
            "{what}: both echoes are shown redacted:\n{stdout}\n{stderr}"
        );
        assert!(stdout.contains("bad password"), "{what}:\n{stdout}");
        assert!(stdout.contains("535 5.7.8 rejected"), "{what}:\n{stdout}");
    }
    let reports: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("check --json prints JSON");
    let messages: Vec<&str> = reports
        .as_array()
        .expect("an array of reports")
        .iter()
        .filter_map(|r| r["failure"]["message"].as_str())
        .collect();
    assert_eq!(messages.len(), 2, "{reports}");
    assert!(messages.iter().all(|m| m.contains(MARKER)), "{messages:?}");

    // The daemon: history in SQLite, alerts through the webhook, the log on stderr.
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_supportwatch"))
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(setup.dir.path())
        .current_dir(setup.dir.path())
        .env("SW_FAULT_IMAP_PASSWORD", IMAP_PASSWORD)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start supportwatch run");
    // The log, read as it comes: it names the address the server listens on.
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = daemon.stderr.take().expect("piped stderr");
    let reader = {
        let log = log.clone();
        // Reads the daemon's stderr to its end (the daemon's exit), so its pipe never fills.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    setup
        .hook
        .wait_until("alerts for both checks", |got| {
            let bodies: String = got
                .iter()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect();
            bodies.contains("smtp-auth") && bodies.contains("imap-login")
        })
        .await;
    // The e-mail notifier's refusal (a 535 quoting its AUTH PLAIN string) shows in /healthz.
    let addr = wait_for_listen_address(&log).await;
    let health = wait_for_failing_notifier(&addr, "mail").await;
    assert_clean("/healthz", &health, &forbidden_forms(&setup.received.all()));
    assert!(health.contains(MARKER), "{health}");
    // SIGTERM drains the runs and flushes the history.
    let pid = daemon.id().expect("the daemon's pid");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let started = Instant::now();
    let output = loop {
        if let Some(_status) = daemon.try_wait().expect("wait") {
            break daemon.wait_with_output().await.expect("output");
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = daemon.start_kill();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    reader.await.expect("the log reader ends with the daemon");
    let forbidden = forbidden_forms(&setup.received.all());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        stderr.contains(ALERTS_USER),
        "the e-mail notifier logged in: {stderr}"
    );
    assert_clean("run stdout", &stdout, &forbidden);
    assert_clean("run log", &stderr, &forbidden);
    assert!(
        stderr.contains(MARKER),
        "the log shows the echoes redacted:\n{stderr}"
    );

    let payload: String = setup
        .hook
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_clean("the notifier payload", &payload, &forbidden);
    assert!(payload.contains(MARKER), "{payload}");

    let db_path = setup.dir.path().join("sw.db");
    let stored = database_text(&db_path);
    assert_clean("the database", &stored, &forbidden);
    assert!(stored.contains(MARKER), "{stored}");
    // The runs' phases, observations and details are stored too (for the ops page), redacted.
    assert!(stored.contains(r#"{"details":["#), "{stored}");
    // Not even in pages SQLite no longer points to, nor in its journal.
    for file in ["sw.db", "sw.db-wal", "sw.db-journal"] {
        if let Ok(bytes) = std::fs::read(setup.dir.path().join(file)) {
            assert_clean(file, &String::from_utf8_lossy(&bytes), &forbidden);
        }
    }
}

/// A config with one secret (a Telegram bot token) taken from `${SW_RELOAD_TOKEN}`.
fn source_with_token(token: &str) -> supportwatch::daemon::ConfigSource {
    supportwatch::daemon::ConfigSource::Inline {
        path: "reload.yaml".into(),
        text: "notifiers:\n  owner: { kind: telegram, bot_token: \"${SW_RELOAD_TOKEN}\", chat_id: \"1\" }\nchecks:\n  - { name: home, kind: http, url: \"http://127.0.0.1:9/\" }\n".into(),
        vars: [("SW_RELOAD_TOKEN".to_string(), token.to_string())].into(),
    }
}

#[test]
fn a_reload_brings_the_new_configs_secrets() {
    let first = source_with_token("4242:first-token")
        .load()
        .expect("the first config loads");
    let line = "refused 4242:first-token and 4343:second-token";
    assert_eq!(
        first.checks[0].redactor.scrub(line),
        "refused <redacted> and 4343:second-token"
    );
    assert_eq!(
        supportwatch::value::redact::current().scrub(line),
        "refused <redacted> and 4343:second-token"
    );

    let second = source_with_token("4343:second-token")
        .load()
        .expect("the reloaded config loads");
    assert_eq!(
        second.checks[0].redactor.scrub(line),
        "refused 4242:first-token and <redacted>"
    );
    // Runs of the old config may still be logging: the log scrubs both for one generation.
    assert_eq!(
        supportwatch::value::redact::scrub_installed(line),
        "refused <redacted> and <redacted>"
    );
    source_with_token("4444:third-token")
        .load()
        .expect("the third config loads");
    assert_eq!(
        supportwatch::value::redact::scrub_installed(line),
        "refused 4242:first-token and <redacted>"
    );
}

#[test]
fn what_interpolation_puts_into_a_request_header_is_a_secret() {
    let vars = [("SW_HEADER_TOKEN".to_string(), "shop-api-7731".to_string())].into();
    let config = supportwatch::value::with_overlay(&vars, || {
        supportwatch::config::load_sources(&[(
            "headers.yaml".into(),
            "checks:\n  - name: api\n    kind: http\n    url: \"http://127.0.0.1:9/\"\n    headers: { Authorization: \"Bearer ${SW_HEADER_TOKEN}\" }\n".into(),
        )])
    })
    .expect("the config loads");
    let prepared = supportwatch::assemble::prepare(config).expect("the config prepares");
    assert_eq!(
        prepared
            .redactor
            .scrub("401: invalid header Authorization: Bearer shop-api-7731"),
        "401: invalid header Authorization: Bearer <redacted>"
    );
}
