//! Proves the test mail server (`tests/mailserver/start`, `tests/common/mailserver.rs`) does what
//! the mail tests rely on: plain SMTP delivers to the inbox, spam-marked mail is filed in Junk,
//! the autoreply mailbox answers every message into the customer's mailbox, submission insists
//! on STARTTLS before AUTH and checks the password, SMTPS and IMAPS speak TLS with the harness
//! CA, and the `full` mailbox reports ~95% of its quota.
//!
//! All tests share one server instance, so each message carries a unique token and assertions
//! look for that token instead of counting messages.

mod common;

use common::mailserver::{MailServer, mail_server};
use lettre::address::Envelope;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// How long a delivery may take. Normally well under a second; generous for loaded CI machines.
const WAIT: Duration = Duration::from_secs(20);

/// A token no other message in this server carries.
fn token(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    format!("{label}-{}-{nanos}-{n}", std::process::id())
}

fn mailbox(address: &str) -> Mailbox {
    address.parse().expect("a valid test address")
}

/// TLS parameters that trust the harness CA, and only it.
fn tls_parameters(server: &MailServer) -> TlsParameters {
    let pem = std::fs::read(&server.ca_file).expect("read the harness CA");
    TlsParameters::builder("localhost".to_string())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(Certificate::from_pem(&pem).expect("harness CA is PEM"))
        .build_rustls()
        .expect("TLS parameters")
}

/// Plain SMTP on the port-25-like listener: no TLS, no AUTH.
fn smtp(server: &MailServer) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.smtp_port)
        .timeout(Some(Duration::from_secs(10)))
        .build()
}

/// Submission with STARTTLS and AUTH PLAIN as `user`.
fn submission(
    server: &MailServer,
    user: &str,
    password: &str,
) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.submission_port)
        .tls(Tls::Required(tls_parameters(server)))
        .credentials(Credentials::new(user.to_string(), password.to_string()))
        .authentication(vec![Mechanism::Plain])
        .timeout(Some(Duration::from_secs(10)))
        .build()
}

fn message(from: &str, to: &str, subject: &str) -> Message {
    Message::builder()
        .from(mailbox(from))
        .to(mailbox(to))
        .subject(subject)
        .body(format!("Test message: {subject}\n"))
        .expect("a valid message")
}

/// The folder a delivered message file sits in: "" for INBOX, else the Maildir++ name (".Junk").
fn folder_of(server: &MailServer, user: &str, file: &Path) -> String {
    let root = &server.user(user).maildir;
    let folder = file
        .parent()
        .and_then(Path::parent)
        .expect("message files live in FOLDER/cur or FOLDER/new");
    if folder == root {
        String::new()
    } else {
        folder
            .file_name()
            .expect("folder name")
            .to_string_lossy()
            .into_owned()
    }
}

async fn wait_for(server: &MailServer, user: &str, needle: &str) -> std::path::PathBuf {
    server
        .wait_for_message_async(user, needle, WAIT)
        .await
        .unwrap_or_else(|| {
            panic!(
                "no message containing {needle:?} reached {user} within {WAIT:?}; see {}",
                server.dir.join("postfix.log").display()
            )
        })
}

#[tokio::test]
async fn plain_smtp_delivers_to_the_inbox() {
    let server = mail_server();
    let subject = token("plain");
    let support = &server.user("support").address;
    let customer = &server.user("customer").address;
    smtp(server)
        .send(message(customer, support, &subject))
        .await
        .expect("plain SMTP takes mail for the test domain");
    let file = wait_for(server, "support", &subject).await;
    assert_eq!(
        folder_of(server, "support", &file),
        "",
        "{}",
        file.display()
    );
    assert!(server.count_messages("support") >= 1);
}

#[tokio::test]
async fn unknown_users_and_outside_mail_are_refused() {
    let server = mail_server();
    let customer = &server.user("customer").address;
    let unknown = format!("nobody@{}", server.domain);
    let error = smtp(server)
        .send(message(customer, &unknown, &token("unknown")))
        .await
        .expect_err("no such mailbox");
    assert!(error.is_permanent(), "{error}");

    // Mail for anywhere else resolves to postfix's error transport, which smtpd already
    // refuses at RCPT time: nothing is ever sent out.
    let outside = format!("{}@example.org", token("outside"));
    let error = smtp(server)
        .send(message(customer, &outside, "to the outside"))
        .await
        .expect_err("outside mail is refused");
    assert!(error.is_permanent(), "{error}");
    assert!(
        error.to_string().contains("outside mail is disabled"),
        "{error}"
    );
}

#[tokio::test]
async fn spam_marked_mail_goes_to_junk() {
    let server = mail_server();
    let support = &server.user("support").address;
    let customer = &server.user("customer").address;

    let subject = format!("[spam-test] x {}", token("junk-subject"));
    smtp(server)
        .send(message(customer, support, &subject))
        .await
        .expect("send spam-test subject");
    let file = wait_for(server, "support", &subject).await;
    assert_eq!(folder_of(server, "support", &file), ".Junk");

    // X-Spam-Flag is not a header lettre knows, so this one goes out raw.
    let marker = token("junk-flag");
    let raw = format!(
        "From: {customer}\r\nTo: {support}\r\nSubject: {marker}\r\nX-Spam-Flag: YES\r\n\r\nflagged\r\n"
    );
    let envelope = Envelope::new(
        Some(customer.parse().expect("address")),
        vec![support.parse().expect("address")],
    )
    .expect("envelope");
    smtp(server)
        .send_raw(&envelope, raw.as_bytes())
        .await
        .expect("send X-Spam-Flag message");
    let file = wait_for(server, "support", &marker).await;
    assert_eq!(folder_of(server, "support", &file), ".Junk");
}

#[tokio::test]
async fn autoreply_answers_every_message() {
    let server = mail_server();
    let autoreply = &server.user("autoreply").address;
    let customer = &server.user("customer").address;
    // Two messages in a row: the second must be answered too (no once-a-day vacation limit).
    for _ in 0..2 {
        let message_id = format!("<{}@{}>", token("autoreply"), server.domain);
        let email = Message::builder()
            .from(mailbox(customer))
            .to(mailbox(autoreply))
            .subject("Where is my order?")
            .message_id(Some(message_id.clone()))
            .body("Hello, where is my order?\n".to_string())
            .expect("a valid message");
        smtp(server)
            .send(email)
            .await
            .expect("send to the autoreply mailbox");
        // The reply refers to the original in In-Reply-To and References.
        let file = wait_for(server, "customer", &message_id).await;
        let reply = std::fs::read_to_string(&file).expect("read the reply");
        assert!(
            reply.contains("Subject: Auto: we received your message"),
            "{reply}"
        );
        assert!(
            reply.contains("We received your message and will answer within 2 hours"),
            "{reply}"
        );
        assert!(reply.contains("Auto-Submitted: auto-replied"), "{reply}");
        wait_for(server, "autoreply", &message_id).await;
    }
}

#[tokio::test]
async fn submission_wants_starttls_before_auth() {
    let server = mail_server();
    let stream = TcpStream::connect(("127.0.0.1", server.submission_port))
        .await
        .expect("connect to submission");
    let mut smtp_session = BufReader::new(stream);
    let greeting = read_smtp_reply(&mut smtp_session).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    let ehlo = smtp_command(&mut smtp_session, "EHLO client.test").await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(
        !ehlo.contains("AUTH"),
        "AUTH offered before STARTTLS: {ehlo}"
    );
    let auth = smtp_command(&mut smtp_session, "AUTH PLAIN AHNwYXJlAHNwYXJl").await;
    assert!(auth.starts_with('5'), "AUTH before STARTTLS: {auth}");
    let mail = smtp_command(
        &mut smtp_session,
        &format!("MAIL FROM:<{}>", server.user("customer").address),
    )
    .await;
    let rcpt = smtp_command(
        &mut smtp_session,
        &format!("RCPT TO:<{}>", server.user("support").address),
    )
    .await;
    assert!(
        mail.starts_with('5') || rcpt.starts_with('5'),
        "mail without AUTH: {mail} / {rcpt}"
    );
}

#[tokio::test]
async fn submission_checks_the_password() {
    let server = mail_server();
    let spare = server.user("spare");
    let support = &server.user("support").address;

    let wrong = submission(server, &spare.address, "not-the-password")
        .send(message(&spare.address, support, &token("wrong-password")))
        .await
        .expect_err("a wrong password is refused");
    assert!(wrong.is_permanent(), "{wrong}");

    let subject = token("submission");
    submission(server, &spare.address, &spare.password)
        .send(message(&spare.address, support, &subject))
        .await
        .expect("STARTTLS and AUTH with the right password");
    wait_for(server, "support", &subject).await;

    // Credentials without TLS: the server offers no AUTH on a plain connection.
    let plain = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.submission_port)
        .credentials(Credentials::new(
            spare.address.clone(),
            spare.password.clone(),
        ))
        .build()
        .send(message(&spare.address, support, &token("no-tls")))
        .await;
    assert!(plain.is_err(), "submission without TLS must fail");
}

#[tokio::test]
async fn smtps_authenticates_over_implicit_tls() {
    let server = mail_server();
    let spare = server.user("spare");
    let support = &server.user("support").address;
    let subject = token("smtps");
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.smtps_port)
        .tls(Tls::Wrapper(tls_parameters(server)))
        .credentials(Credentials::new(
            spare.address.clone(),
            spare.password.clone(),
        ))
        .timeout(Some(Duration::from_secs(10)))
        .build()
        .send(message(&spare.address, support, &subject))
        .await
        .expect("SMTPS with AUTH");
    wait_for(server, "support", &subject).await;
}

#[tokio::test]
async fn full_mailbox_reports_95_percent_of_its_quota() {
    let server = mail_server();
    let full = server.user("full");
    let mut imap = imaps(server).await;
    let greeting = read_line(&mut imap).await;
    assert!(greeting.starts_with("* OK"), "{greeting}");
    let login = imap_command(
        &mut imap,
        &format!("LOGIN \"{}\" \"{}\"", full.address, full.password),
    )
    .await;
    assert!(
        login.last().is_some_and(|l| l.starts_with("a OK")),
        "{login:?}"
    );
    let quota = imap_command(&mut imap, "GETQUOTAROOT INBOX").await;
    // * QUOTA "User quota" (STORAGE <used KiB> <limit KiB>)
    let storage = quota
        .iter()
        .find_map(|line| line.split("(STORAGE ").nth(1))
        .unwrap_or_else(|| panic!("no STORAGE in {quota:?}"));
    let numbers: Vec<u64> = storage
        .trim_end_matches(')')
        .split_whitespace()
        .map(|n| n.parse().expect("a number"))
        .collect();
    assert_eq!(numbers.len(), 2, "{quota:?}");
    let (used, limit) = (numbers[0], numbers[1]);
    assert_eq!(limit, 1024, "{quota:?}");
    let percent = used * 100 / limit;
    assert!((93..=97).contains(&percent), "{percent}% used: {quota:?}");
}

#[tokio::test]
async fn imap_offers_starttls_and_logs_in_after_it() {
    let server = mail_server();
    let spare = server.user("spare");
    let stream = TcpStream::connect(("127.0.0.1", server.imap_port))
        .await
        .expect("connect to IMAP");
    let mut plain = BufReader::new(stream);
    let greeting = read_line(&mut plain).await;
    assert!(greeting.starts_with("* OK"), "{greeting}");
    let capability = imap_command(&mut plain, "CAPABILITY").await;
    assert!(
        capability.iter().any(|l| l.contains("STARTTLS")),
        "{capability:?}"
    );
    let starttls = imap_command(&mut plain, "STARTTLS").await;
    assert!(
        starttls.last().is_some_and(|l| l.starts_with("a OK")),
        "{starttls:?}"
    );
    let tls = connector(server)
        .connect(server_name(), plain.into_inner())
        .await
        .expect("TLS after STARTTLS, verified against the harness CA");
    let mut imap = BufReader::new(tls);
    let login = imap_command(
        &mut imap,
        &format!("LOGIN \"{}\" \"{}\"", spare.address, spare.password),
    )
    .await;
    assert!(
        login.last().is_some_and(|l| l.starts_with("a OK")),
        "{login:?}"
    );
    let logout = imap_command(&mut imap, "LOGOUT").await;
    assert!(
        logout.last().is_some_and(|l| l.starts_with("a OK")),
        "{logout:?}"
    );
}

// --- A few lines of SMTP and IMAP, enough to look at what the servers offer.

fn connector(server: &MailServer) -> TlsConnector {
    let roots = supportwatch::tlsconf::roots_from_file(&server.ca_file).expect("harness CA");
    TlsConnector::from(Arc::new(supportwatch::tlsconf::client_config(roots)))
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("server name")
}

async fn imaps(server: &MailServer) -> BufReader<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", server.imaps_port))
        .await
        .expect("connect to IMAPS");
    let tls = connector(server)
        .connect(server_name(), tcp)
        .await
        .expect("IMAPS handshake, verified against the harness CA");
    BufReader::new(tls)
}

async fn read_line<S: AsyncRead + Unpin>(stream: &mut BufReader<S>) -> String {
    let mut line = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_line(&mut line))
        .await
        .expect("server answers within 10 s")
        .expect("read from server");
    assert!(read > 0, "server closed the connection");
    line.trim_end().to_string()
}

/// Sends one tagged IMAP command (tag `a`) and returns every line up to the tagged answer.
async fn imap_command<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    command: &str,
) -> Vec<String> {
    let inner = stream.get_mut();
    inner
        .write_all(format!("a {command}\r\n").as_bytes())
        .await
        .expect("write IMAP command");
    inner.flush().await.expect("flush");
    let mut lines = Vec::new();
    loop {
        let line = read_line(stream).await;
        let done = line.starts_with("a ");
        lines.push(line);
        if done {
            return lines;
        }
    }
}

/// Reads one SMTP reply, all its continuation lines joined with newlines.
async fn read_smtp_reply<S: AsyncRead + Unpin>(stream: &mut BufReader<S>) -> String {
    let mut reply = Vec::new();
    loop {
        let line = read_line(stream).await;
        let last = line.as_bytes().get(3) != Some(&b'-');
        reply.push(line);
        if last {
            return reply.join("\n");
        }
    }
}

async fn smtp_command<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    command: &str,
) -> String {
    let inner = stream.get_mut();
    inner
        .write_all(format!("{command}\r\n").as_bytes())
        .await
        .expect("write SMTP command");
    inner.flush().await.expect("flush");
    read_smtp_reply(stream).await
}
