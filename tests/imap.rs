//! The IMAP backend against a real dovecot (the shared test mail server, `tests/common/mailserver.rs`):
//! implicit TLS and STARTTLS, LOGIN and AUTHENTICATE PLAIN, cleanup, spam folders, IDLE against
//! polling, quota, decoding, and the errors a user sees when something is wrong.
//!
//! Mail is delivered the way a shop's would be: over SMTP (postfix → LMTP → dovecot, sieve files
//! `[spam-test]` subjects into Junk). Every test shares one server, so each message carries its
//! own token and assertions look for that token, never at message counts.

mod common;

use common::mailserver::{MailServer, MailUser, mail_server};
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use supportwatch::mailbox::watch::WaitRequest;
use supportwatch::mailbox::{Delivered, MailStore, MailboxError, MailboxSpec, WaitError, Watcher};

/// How long a delivery may take end to end; normally well under a second.
const WITHIN: Duration = Duration::from_secs(30);

/// A mailbox declaration loaded from YAML, as a user would write it under `mailboxes:`.
/// `extra` is more YAML lines for the mailbox, indented by four spaces.
fn spec(url: &str, user: &MailUser, password: &str, extra: &str) -> MailboxSpec {
    let server = mail_server();
    let yaml = format!(
        "mailboxes:\n  box:\n    imap: \"{url}\"\n    user: {}\n    password: \"{password}\"\n    \
         ca_file: {}\n{extra}checks:\n  - {{ name: unused, kind: http, url: \"http://127.0.0.1:9/\" }}\n",
        user.address,
        server.ca_file.display(),
    );
    supportwatch::tlsconf::install_crypto_provider();
    let mut config =
        supportwatch::config::load_sources(&[(PathBuf::from("imap-test.yaml"), yaml.clone())])
            .unwrap_or_else(|e| panic!("config should load:\n{e}\n---\n{yaml}"));
    config.mailboxes.remove("box").expect("mailbox `box`")
}

/// [`spec`] for the harness user `support`, with its own password.
fn support_spec(url: &str, extra: &str) -> MailboxSpec {
    let support = mail_server().user("support");
    spec(url, support, &support.password, extra)
}

fn imaps(server: &MailServer) -> String {
    format!("imaps://127.0.0.1:{}", server.imaps_port)
}

fn imap_starttls(server: &MailServer) -> String {
    format!("imap://127.0.0.1:{}", server.imap_port)
}

fn store(spec: &MailboxSpec) -> Arc<dyn MailStore> {
    supportwatch::mailbox::build("box", spec).expect("mailbox builds")
}

fn watcher(spec: &MailboxSpec) -> Watcher {
    Watcher::new("box", store(spec), spec)
}

fn token() -> String {
    supportwatch::outcome::new_token("imap-test")
}

/// Waits for `token` with cleanup, at most [`WITHIN`].
async fn wait(watcher: &Watcher, token: &str, since: SystemTime) -> Result<Delivered, WaitError> {
    let request = WaitRequest {
        token: token.to_string(),
        since,
        pattern: None,
        cleanup: true,
    };
    watcher.wait(request, Instant::now() + WITHIN).await
}

/// [`wait`] in a task of its own, so that the test can send the message while it waits.
fn wait_in_background(
    watcher: &Watcher,
    token: &str,
    since: SystemTime,
) -> tokio::task::JoinHandle<Result<Delivered, WaitError>> {
    let (watcher, token) = (watcher.clone(), token.to_string());
    tokio::spawn(async move { wait(&watcher, &token, since).await })
}

/// Opening a session with `spec`, which must fail (`why` says why it must); the error.
async fn open_error(spec: &MailboxSpec, why: &str) -> MailboxError {
    match store(spec).open().await {
        Ok(_) => panic!("{why}"),
        Err(e) => e,
    }
}

fn smtp(server: &MailServer) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.smtp_port)
        .timeout(Some(Duration::from_secs(10)))
        .build()
}

/// Sends a plain message to `to` whose subject and body carry `token`.
async fn send(to: &str, subject: &str, token: &str) {
    let server = mail_server();
    let message = Message::builder()
        .from(
            server
                .user("customer")
                .address
                .parse()
                .expect("customer address"),
        )
        .to(to.parse().expect("recipient address"))
        .subject(subject)
        .body(format!("Automated test {token}, please ignore.\n"))
        .expect("a valid message");
    smtp(server)
        .send(message)
        .await
        .expect("SMTP accepts the message");
}

/// Sends `raw` (CRLF line ends) as it is.
async fn send_raw(to: &str, raw: &str) {
    let server = mail_server();
    let envelope = Envelope::new(
        Some(server.user("customer").address.parse().expect("address")),
        vec![to.parse().expect("address")],
    )
    .expect("envelope");
    smtp(server)
        .send_raw(&envelope, raw.as_bytes())
        .await
        .expect("SMTP accepts the message");
}

/// Waits until a message carrying `token` is in `user`'s maildir, at most [`WITHIN`].
async fn assert_arrives(user: &MailUser, token: &str) {
    let name = user.address.split('@').next().unwrap_or_default();
    assert!(
        mail_server()
            .wait_for_message_async(name, token, WITHIN)
            .await
            .is_some(),
        "the message with {token} reached {name}'s maildir"
    );
}

/// Cleanup deleted the message: no file of `user` carries the token any more.
async fn assert_gone(server: &MailServer, user: &str, token: &str) {
    // Expunge unlinks the file before its OK; the short grace covers a slow disk only.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.find_message(user, token).is_some() {
        assert!(
            Instant::now() < deadline,
            "the message with {token} is still in {user}'s maildir after cleanup"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn implicit_tls_finds_the_token_and_cleanup_deletes_the_message() {
    let server = mail_server();
    let support = server.user("support");
    let spec = support_spec(&imaps(server), "");
    let token = token();
    let since = SystemTime::now();
    send(&support.address, &format!("Contact form {token}"), &token).await;
    assert_arrives(support, &token).await;

    let found = wait(&watcher(&spec), &token, since)
        .await
        .expect("the token is found over imaps://");
    assert_eq!(found.folder, "INBOX");
    assert!(!found.spam);
    assert_eq!(found.subject, format!("Contact form {token}"));
    assert!(found.arrived.is_some(), "INTERNALDATE is read");
    assert!(
        matches!(found.cleanup, Some(Ok(()))),
        "cleanup: {:?}",
        found.cleanup
    );
    assert_gone(server, "support", &token).await;
}

#[tokio::test]
async fn starttls_with_auth_plain_finds_the_token() {
    let server = mail_server();
    let support = server.user("support");
    let spec = support_spec(&imap_starttls(server), "    auth: plain\n");
    let token = token();
    let since = SystemTime::now();
    // The wait starts first, so the message arrives while the watcher is already looking.
    let waiting = wait_in_background(&watcher(&spec), &token, since);
    send(&support.address, "Callback request", &token).await;
    let found = waiting
        .await
        .expect("wait task")
        .expect("the token is found over imap:// with STARTTLS");
    assert_eq!((found.folder.as_str(), found.spam), ("INBOX", false));
    assert!(matches!(found.cleanup, Some(Ok(()))));
    assert_gone(server, "support", &token).await;
}

#[tokio::test]
async fn a_wrong_password_is_a_login_error_without_the_password() {
    let server = mail_server();
    let support = server.user("support");
    for (url, auth) in [(imaps(server), "login"), (imap_starttls(server), "plain")] {
        let spec = spec(
            &url,
            support,
            "not-the-password-3141",
            &format!("    auth: {auth}\n"),
        );
        let started = Instant::now();
        let err = wait(&watcher(&spec), &token(), SystemTime::now())
            .await
            .expect_err("a wrong password cannot find anything");
        let text = err.to_string();
        assert!(
            text.starts_with("imap login to support@test.local failed: authentication rejected"),
            "{auth}: {text}"
        );
        assert!(
            matches!(err, WaitError::Mailbox(MailboxError::Login { .. })),
            "{err:?}"
        );
        assert!(!text.contains("not-the-password-3141"), "{text}");
        // A rejected login is final: the wait fails at once instead of retrying until the deadline.
        assert!(started.elapsed() < Duration::from_secs(10), "{auth}");
    }
}

#[tokio::test]
async fn mail_filed_as_junk_is_reported_as_spam() {
    let server = mail_server();
    let support = server.user("support");
    let spec = support_spec(&imaps(server), "");
    let token = token();
    let since = SystemTime::now();
    // The support user's sieve script files `[spam-test]` subjects into Junk.
    send(
        &support.address,
        &format!("[spam-test] feedback {token}"),
        &token,
    )
    .await;
    let found = wait(&watcher(&spec), &token, since)
        .await
        .expect("the token is found in Junk");
    assert_eq!(found.folder, "Junk");
    assert!(found.spam, "found in a spam folder");
    assert!(matches!(found.cleanup, Some(Ok(()))));
    assert_gone(server, "support", &token).await;
}

/// How long after the SMTP submission a message reached the maildir, and how long until the
/// watcher saw it. The message is sent once the watcher had time to settle into waiting.
async fn latency(user: &MailUser, extra: &str) -> (Duration, Duration) {
    let server = mail_server();
    let spec = spec(&imaps(server), user, &user.password, extra);
    let token = token();
    let since = SystemTime::now();
    let waiting = wait_in_background(&watcher(&spec), &token, since);
    // Connected, looked once, and now idling (or sleeping until the next poll).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = SystemTime::now();
    send(&user.address, "Latency probe", &token).await;
    let on_disk = {
        let name = user.address.split('@').next().unwrap_or_default();
        server.wait_for_message_async(name, &token, WITHIN).await;
        SystemTime::now().duration_since(sent).unwrap_or_default()
    };
    let found = waiting
        .await
        .expect("wait task")
        .expect("the token is found");
    let seen = found.observed_at.duration_since(sent).unwrap_or_default();
    (on_disk, seen)
}

#[tokio::test]
async fn idle_notices_new_mail_long_before_the_poll_interval() {
    let server = mail_server();
    // A mailbox of its own, so other tests' mail cannot wake the watcher early.
    let spare = server.user("spare");
    let (disk, idle) = latency(spare, "    poll_interval: 60s\n").await;
    println!("IDLE: in the maildir after {disk:?}, seen by the watcher after {idle:?}");
    let (disk, polling) = latency(spare, "    poll_interval: 2s\n    idle: false\n").await;
    println!("polling every 2 s: in the maildir after {disk:?}, seen after {polling:?}");
    assert!(
        idle < Duration::from_secs(30),
        "IDLE took {idle:?} with a 60 s poll interval"
    );
}

#[tokio::test]
async fn a_new_wait_interrupts_idle() {
    let server = mail_server();
    // A mailbox no other test writes to, so nothing but the new wait can end the IDLE.
    let customer = server.user("customer");
    let spec = spec(
        &imaps(server),
        customer,
        &customer.password,
        "    poll_interval: 60s\n",
    );
    let watcher = watcher(&spec);
    let early = token();
    let since = SystemTime::now();
    send(
        &customer.address,
        "Arrived before anyone waited for it",
        &early,
    )
    .await;
    assert_arrives(customer, &early).await;
    // A wait for mail that never comes: the watcher looks once, then idles for up to 60 s.
    let never = {
        let watcher = watcher.clone();
        tokio::spawn(async move {
            let request = WaitRequest {
                token: token(),
                since,
                pattern: None,
                cleanup: false,
            };
            watcher
                .wait(request, Instant::now() + Duration::from_secs(20))
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let found = wait(&watcher, &early, since)
        .await
        .expect("the earlier message is found");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the new wait should end the IDLE at once, took {:?}",
        started.elapsed()
    );
    assert!(matches!(found.cleanup, Some(Ok(()))));
    assert_gone(server, "customer", &early).await;
    never.abort();
}

#[tokio::test]
async fn messages_larger_than_max_message_are_not_fetched() {
    let server = mail_server();
    // `full` has room for one small message; its 52 KB fillers are older than `since`.
    let full = server.user("full");
    let token = token();
    let since = SystemTime::now();
    let padding = "This line only makes the message bigger than one kilobyte.\n".repeat(40);
    send(&full.address, "Big message", &format!("{token}\n{padding}")).await;
    assert_arrives(full, &token).await;
    let ours = |list: Vec<supportwatch::mailbox::MessageRef>| {
        list.into_iter()
            .find(|m| m.size.is_some_and(|s| (2_000..10_000).contains(&s)))
            .expect("the new message is listed with its size")
    };

    let small = spec(
        &imaps(server),
        full,
        &full.password,
        "    max_message: 1KiB\n",
    );
    let mut session = store(&small).open().await.expect("login");
    let message = ours(session.list_new(since).await.expect("list"));
    assert_eq!(
        session.fetch(&message).await.expect("fetch"),
        None,
        "a message over max_message is skipped"
    );
    session.close().await;

    let spec = spec(&imaps(server), full, &full.password, "");
    let mut session = store(&spec).open().await.expect("login");
    let message = ours(session.list_new(since).await.expect("list"));
    let raw = session
        .fetch(&message)
        .await
        .expect("fetch")
        .expect("within max_message");
    assert!(String::from_utf8_lossy(&raw).contains(&token));
    assert_eq!(
        session.list_new(since).await.expect("list again"),
        Vec::new(),
        "a session returns each message once"
    );
    session.delete(&message).await.expect("delete");
    session.close().await;
    assert_gone(server, "full", &token).await;
}

#[tokio::test]
async fn quota_of_the_nearly_full_mailbox() {
    let server = mail_server();
    let full = server.user("full");
    let spec = spec(&imaps(server), full, &full.password, "");
    let mut session = store(&spec).open().await.expect("login as full");
    let quota = session
        .quota()
        .await
        .expect("GETQUOTAROOT")
        .expect("dovecot reports a storage quota");
    session.close().await;
    assert_eq!(quota.limit, 1024 * 1024, "{quota:?}");
    assert!(
        (0.93..0.97).contains(&quota.ratio()),
        "about 95% used: {quota:?} ({})",
        quota.ratio()
    );
}

/// Quoted-printable with every non-ASCII byte escaped, and a soft line break in the middle of
/// `split`, as mail software wraps long lines.
fn quoted_printable(text: &str, split: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split(split).enumerate() {
        if i > 0 {
            let (a, b) = split.split_at(split.len() / 2);
            out.push_str(&format!("{a}=\r\n{b}"));
        }
        for byte in part.bytes() {
            match byte {
                b'\n' => out.push_str("\r\n"),
                b'=' => out.push_str("=3D"),
                b' '..=b'~' => out.push(char::from(byte)),
                _ => out.push_str(&format!("={byte:02X}")),
            }
        }
    }
    out
}

#[tokio::test]
async fn a_cyrillic_quoted_printable_message_is_decoded() {
    let server = mail_server();
    let support = server.user("support");
    let spec = support_spec(&imap_starttls(server), "");
    let token = token();
    let body =
        format!("Здравствуйте! Это автоматическая проверка {token}, пожалуйста, не отвечайте.\n");
    let encoded = quoted_printable(&body, &token);
    assert!(
        !encoded.contains(&token),
        "the token is split in the raw bytes"
    );
    let raw = format!(
        "From: {customer}\r\nTo: {to}\r\nSubject: =?UTF-8?B?0J7QsdGA0LDRidC10L3QuNC1?=\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n{encoded}",
        customer = server.user("customer").address,
        to = support.address,
    );
    let since = SystemTime::now();
    send_raw(&support.address, &raw).await;
    let found = wait(&watcher(&spec), &token, since)
        .await
        .expect("the token is found in the decoded body");
    assert_eq!(found.subject, "Обращение");
    assert_gone(server, "support", &token).await;
}

#[tokio::test]
async fn an_unreachable_port_is_a_connect_error_naming_it() {
    let port = common::closed_port();
    let spec = support_spec(&format!("imaps://127.0.0.1:{port}"), "");
    let err = open_error(&spec, &format!("nothing listens on {port}")).await;
    assert!(matches!(err, MailboxError::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("connect to 127.0.0.1:{port} failed")),
        "{text}"
    );
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_a_tls_error() {
    let server = mail_server();
    let mut spec = support_spec(&imaps(server), "");
    // The system roots do not know the harness CA.
    spec.ca_file = None;
    let err = open_error(
        &spec,
        "the harness certificate must not be trusted by the system roots",
    )
    .await;
    assert!(matches!(err, MailboxError::Tls { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("TLS with 127.0.0.1:{} failed", server.imaps_port)),
        "{text}"
    );
}

#[tokio::test]
async fn a_configured_folder_that_does_not_exist_is_named() {
    let server = mail_server();
    for extra in [
        "    folders: [INBOX, Заявки]\n",
        "    spam_folders: [Spam]\n",
    ] {
        let spec = support_spec(&imaps(server), extra);
        let err = open_error(&spec, &format!("{extra}: the folder does not exist")).await;
        assert!(matches!(err, MailboxError::NoFolder { .. }), "{err:?}");
        let folder = if extra.contains("Заявки") {
            "Заявки"
        } else {
            "Spam"
        };
        assert!(
            err.to_string()
                .ends_with(&format!("folder `{folder}` does not exist")),
            "{err}"
        );
    }
}

/// A server that greets and then refuses every command, STARTTLS included.
async fn server_without_starttls() -> u16 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut tcp = BufReader::new(tcp);
                let _ = tcp.get_mut().write_all(b"* OK old server ready\r\n").await;
                let mut line = String::new();
                while matches!(tcp.read_line(&mut line).await, Ok(n) if n > 0) {
                    let tag = line.split_whitespace().next().unwrap_or("*").to_string();
                    let _ = tcp
                        .get_mut()
                        .write_all(format!("{tag} BAD unknown command\r\n").as_bytes())
                        .await;
                    line.clear();
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_server_without_starttls_is_refused() {
    let port = server_without_starttls().await;
    let spec = support_spec(&format!("imap://127.0.0.1:{port}"), "");
    let err = open_error(&spec, "no STARTTLS, no session").await;
    assert!(matches!(err, MailboxError::Tls { .. }), "{err:?}");
    assert!(
        err.to_string().ends_with(&format!(
            "TLS with 127.0.0.1:{port} failed: server does not offer STARTTLS"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_cannot_hang_the_watcher() {
    // Accepts connections and holds them open without a word.
    let port = common::start_silent("127.0.0.1").await.port();
    let spec = support_spec(&format!("imap://127.0.0.1:{port}"), "");
    let started = Instant::now();
    let err = open_error(&spec, "a silent server gives no session").await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded by the 15 s connect timeout, took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, MailboxError::Tls { .. }), "{err:?}");
    assert!(
        err.to_string().ends_with(&format!(
            "TLS with 127.0.0.1:{port} failed: STARTTLS timed out after 15s"
        )),
        "{err}"
    );
}

/// Everything any test in this binary logs from now on, at trace level, with `log` records
/// (async-imap's) forwarded as the daemon does.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .try_init()
            .expect("the only subscriber of this test binary");
        logs
    })
    .clone()
}

#[tokio::test]
async fn the_password_never_reaches_the_logs() {
    let logs = captured_logs();
    let server = mail_server();
    for (url, auth) in [(imaps(server), "login"), (imap_starttls(server), "plain")] {
        let spec = support_spec(&url, &format!("    auth: {auth}\n"));
        let session = store(&spec).open().await.expect("login");
        session.close().await;
    }
    let text =
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    // The capture works: async-imap's own trace of the commands it sent is there.
    assert!(
        text.contains("LOGIN \\\"support@test.local\\\"") && text.contains("AUTHENTICATE PLAIN"),
        "async-imap's command trace should be captured:\n{text}"
    );
    for name in common::mailserver::USERS {
        let user = server.user(name);
        let plain = base64(format!("\0{}\0{}", user.address, user.password).as_bytes());
        assert!(
            !text.contains(user.password.as_str()) && !text.contains(&plain),
            "{name}'s password is in the logs"
        );
    }
}

/// Standard base64, to recognise an AUTHENTICATE PLAIN response.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63])
            } else {
                '='
            });
        }
    }
    out
}
