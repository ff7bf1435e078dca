//! The `mail` probe against a scripted SMTP responder on loopback: the answers a real server
//! does not give on demand (552 mailbox full, 421 go away, no STARTTLS, a hang-up), and pacing
//! through one account.

use super::{failure, has_detail, phases, run};
use crate::common::prepare_with;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use supportwatch::outcome::FailureKind;
use supportwatch::outcome::RunResult;
use supportwatch::runner;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// What the scripted responder answers; every other command gets 250.
#[derive(Clone)]
struct Script {
    greeting: &'static str,
    rcpt: &'static str,
}

/// A scripted SMTP server on loopback. Returns its address and the commands it received.
async fn scripted_smtp(script: Script) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind scripted smtp");
    let addr = listener.local_addr().expect("local addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let script = script.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read);
                let say = |text: &str| format!("{text}\r\n");
                if write
                    .write_all(say(script.greeting).as_bytes())
                    .await
                    .is_err()
                    || !script.greeting.starts_with('2')
                {
                    log.lock().unwrap().push("(greeting refused)".into());
                    return;
                }
                let mut in_data = false;
                let mut line = String::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            let _ = write
                                .write_all(b"250 2.0.0 Ok: queued as SCRIPT1\r\n")
                                .await;
                        }
                        continue;
                    }
                    let command = line.trim_end().to_string();
                    log.lock().unwrap().push(command.clone());
                    let verb = command
                        .split([' ', ':'])
                        .next()
                        .unwrap_or("")
                        .to_ascii_uppercase();
                    let reply = match verb.as_str() {
                        "EHLO" => {
                            "250-scripted.test\r\n250-8BITMIME\r\n250 SIZE 10240000".to_string()
                        }
                        "RCPT" => script.rcpt.to_string(),
                        "DATA" => {
                            in_data = true;
                            "354 End data with <CR><LF>.<CR><LF>".to_string()
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
                            return;
                        }
                        _ => "250 2.0.0 Ok".to_string(),
                    };
                    if write.write_all(say(&reply).as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn scripted_check(name: &str, addr: SocketAddr) -> String {
    format!(
        r#"
checks:
  - name: {name}
    kind: mail
    channel: email
    retries: 0
    smtp: "smtp://{addr}"
    from: customer@test.local
    to: support@test.local
"#
    )
}

#[tokio::test]
async fn a_552_to_rcpt_to_is_mailbox_full_and_does_not_back_off() {
    let (addr, seen) = scripted_smtp(Script {
        greeting: "220 scripted.test ESMTP",
        rcpt: "552 5.2.2 <support@test.local>: Recipient address rejected: Mailbox full",
    })
    .await;
    let yaml = scripted_check("full-mailbox", addr);
    for _ in 0..2 {
        let report = run(&yaml, &[]).await;
        assert_eq!(
            failure(&report),
            (
                FailureKind::MailboxFull,
                "mailbox full: 552 5.2.2 <support@test.local>: Recipient address rejected: \
                 Mailbox full"
                    .into()
            )
        );
        assert_eq!(phases(&report), ["connect", "submit"]);
    }
    // Both runs reached RCPT TO: a full mailbox is not a reason to stop knocking.
    let rcpts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.starts_with("RCPT TO:"))
        .count();
    assert_eq!(rcpts, 2);
}

#[tokio::test]
async fn a_452_to_rcpt_to_is_mailbox_full_too() {
    let (addr, _) = scripted_smtp(Script {
        greeting: "220 scripted.test ESMTP",
        rcpt: "452 4.2.2 Mailbox full, try again later",
    })
    .await;
    let report = run(&scripted_check("full-mailbox-452", addr), &[]).await;
    assert_eq!(
        failure(&report),
        (
            FailureKind::MailboxFull,
            "mailbox full: 452 4.2.2 Mailbox full, try again later".into()
        )
    );
}

#[tokio::test]
async fn a_421_makes_the_account_back_off_instead_of_hammering() {
    let (addr, seen) = scripted_smtp(Script {
        greeting: "421 4.7.0 scripted.test Too many connections, try later",
        rcpt: "250 2.1.5 Ok",
    })
    .await;
    let yaml = scripted_check("busy-relay", addr);
    let first = run(&yaml, &[]).await;
    assert_eq!(
        failure(&first),
        (
            FailureKind::Smtp,
            format!(
                "smtp server {addr} refused the session: 421 4.7.0 scripted.test Too many \
                 connections, try later; smtp account {addr} backs off for 1m"
            )
        )
    );
    let second = run(&yaml, &[]).await;
    let (kind, message) = failure(&second);
    assert_eq!(kind, FailureKind::Smtp);
    let expected = format!(
        "smtp account {addr} backing off for 1m after 421 4.7.0 scripted.test Too many \
         connections, try later; next send in "
    );
    assert!(message.starts_with(&expected), "{message}");
    assert!(second.phases.is_empty(), "{:?}", second.phases);
    // The second run never connected.
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_retry_after_a_421_meets_the_back_off_instead_of_the_server() {
    let (addr, seen) = scripted_smtp(Script {
        greeting: "421 4.3.2 scripted.test Service shutting down",
        rcpt: "250 2.1.5 Ok",
    })
    .await;
    let yaml = scripted_check("busy-relay-retried", addr)
        .replace("retries: 0", "retries: 1\n    retry_delay: 10ms");
    let report = run(&yaml, &[]).await;
    assert_eq!(report.attempts, 2);
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Smtp);
    assert!(
        message.starts_with(&format!(
            "smtp account {addr} backing off for 1m after 421 4.3.2 scripted.test Service \
             shutting down; next send in "
        )),
        "{message}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_451_to_rcpt_to_backs_off_as_well() {
    let (addr, seen) = scripted_smtp(Script {
        greeting: "220 scripted.test ESMTP",
        rcpt: "451 4.3.0 Temporary lookup failure",
    })
    .await;
    let yaml = scripted_check("rcpt-451", addr);
    let first = run(&yaml, &[]).await;
    assert_eq!(
        failure(&first),
        (
            FailureKind::Smtp,
            format!(
                "RCPT TO:<support@test.local> refused: 451 4.3.0 Temporary lookup failure; smtp \
                 account {addr} backs off for 1m"
            )
        )
    );
    let second = run(&yaml, &[]).await;
    assert!(
        failure(&second).1.starts_with(&format!(
            "smtp account {addr} backing off for 1m after 451 4.3.0"
        )),
        "{:?}",
        second.failure
    );
    let connections = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.starts_with("EHLO"))
        .count();
    assert_eq!(connections, 1);
}

#[tokio::test]
async fn starttls_required_but_not_offered_is_a_tls_failure() {
    // The scripted server's EHLO has no STARTTLS, like a relay whose certificate was removed.
    let (addr, seen) = scripted_smtp(Script {
        greeting: "220 scripted.test ESMTP",
        rcpt: "250 2.1.5 Ok",
    })
    .await;
    let yaml = scripted_check("no-starttls", addr).replace("smtp://", "smtp+starttls://");
    let report = run(&yaml, &[]).await;
    assert_eq!(
        failure(&report),
        (
            FailureKind::Tls,
            format!("smtp server {addr} does not offer STARTTLS, which smtp+starttls:// requires")
        )
    );
    assert_eq!(phases(&report), ["connect", "tls"]);
    // Nothing was sent in the clear.
    assert!(
        !seen.lock().unwrap().iter().any(|c| c.starts_with("MAIL")),
        "{:?}",
        seen.lock().unwrap()
    );
}

#[tokio::test]
async fn a_server_that_hangs_up_before_greeting_is_a_protocol_failure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let report = run(&scripted_check("hangs-up", addr), &[]).await;
    assert_eq!(
        failure(&report),
        (
            FailureKind::Protocol,
            format!("smtp server {addr} closed the connection at the greeting")
        )
    );
}

#[tokio::test]
async fn a_server_that_never_greets_times_out_during_connect() {
    let addr = crate::common::start_silent("127.0.0.1").await;
    let yaml =
        scripted_check("silent-relay", addr).replace("retries: 0", "retries: 0\n    timeout: 1s");
    let report = run(&yaml, &[]).await;
    assert_eq!(report.result, RunResult::Timeout);
    assert_eq!(
        failure(&report),
        (
            FailureKind::Timeout,
            "timed out after 1s during connect".into()
        )
    );
}

#[tokio::test]
async fn min_interval_spaces_sends_through_one_account_across_checks() {
    let (addr, seen) = scripted_smtp(Script {
        greeting: "220 scripted.test ESMTP",
        rcpt: "250 2.1.5 Ok",
    })
    .await;
    let yaml = format!(
        r#"
checks:
  - name: paced-a
    kind: mail
    channel: email
    smtp: "smtp://{addr}"
    from: customer@test.local
    to: support@test.local
    min_interval: 2s
  - name: paced-b
    kind: mail
    channel: email
    smtp: "smtp://{addr}"
    from: customer@test.local
    to: spare@test.local
    min_interval: 2s
"#
    );
    let prepared = prepare_with(&yaml, &[]);
    let first = runner::execute(&prepared.checks[0], 1, None).await;
    assert_eq!(first.result, RunResult::Success, "{first:#?}");
    assert_eq!(phases(&first), ["connect", "submit"]);
    let second = runner::execute(&prepared.checks[1], 2, None).await;
    assert_eq!(second.result, RunResult::Success, "{second:#?}");
    assert_eq!(phases(&second), ["queue", "connect", "submit"]);
    let queued = second.phases[0].duration.expect("closed phase");
    assert!(
        queued > Duration::from_millis(1500) && queued < Duration::from_millis(2500),
        "{queued:?}"
    );
    assert!(has_detail(&second, "waited "), "{:?}", second.details);
    assert!(
        second
            .details
            .iter()
            .any(|d| d.ends_with(&format!("for min_interval 2s of smtp account {addr}"))),
        "{:?}",
        second.details
    );
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|c| c.starts_with("MAIL FROM:"))
            .count(),
        2
    );
}
