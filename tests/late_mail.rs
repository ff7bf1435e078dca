//! Test mail that arrives after its run gave up, against the real postfix + dovecot: while
//! dovecot is stopped, postfix accepts each run's mail and holds it deferred, and the runs fail;
//! once dovecot is back and the queue is flushed, the mail (and the vacation auto-reply it causes
//! in the sender's mailbox) must be deleted, by the next run or by the daemon's sweep, even when
//! the daemon restarted in between, and counted in `supportwatch_mail_late_deleted_total`.
//!
//! A binary of its own: it stops the mail server's dovecot, which would break any other test
//! sharing the instance. Its two tests take turns (see [`SERIAL`]).

mod common;

use common::daemon::{ConfigDir, RUN_WITHIN, TestDaemon};
use common::mailserver::{MailServer, mail_server};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use supportwatch::alert::store::Store;
use supportwatch::outcome::{FailureKind, RunReport};
use tokio::sync::{Mutex, broadcast};

/// The tests stop and start the one dovecot; they must not do so at the same time.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Generous: postfix retries deferred mail every second or two, and the watchers poll every
/// 200 ms, but a loaded CI machine may take its time.
const ARRIVE_WITHIN: Duration = Duration::from_secs(60);

/// Dovecot stopped until dropped, so that a failing test leaves the server whole.
struct DovecotDown<'a> {
    server: &'a MailServer,
    down: bool,
}

impl<'a> DovecotDown<'a> {
    fn stop(server: &'a MailServer) -> Self {
        server.stop_dovecot();
        DovecotDown { server, down: true }
    }

    /// Starts dovecot again and has postfix deliver what it deferred.
    fn restart(&mut self) {
        self.server.start_dovecot();
        self.down = false;
        self.server.flush_queue();
    }
}

impl Drop for DovecotDown<'_> {
    fn drop(&mut self) {
        if self.down {
            self.server.start_dovecot();
        }
    }
}

/// `mailboxes:` — `autoreply` (the shop's support address, answering every message with a
/// vacation reply) over IMAP, so that stopping dovecot is an outage of the mailbox too, and
/// `customer` (the sender, who gets the replies) as its Maildir.
fn mailboxes(server: &MailServer, dir: &ConfigDir) -> String {
    let password = dir.path().join("imap-password");
    std::fs::write(&password, &server.user("autoreply").password).expect("write the password");
    format!(
        "mailboxes:\n  autoreply: {{ imap: \"imap://127.0.0.1:{}\", user: autoreply@test.local, \
         password: \"${{file:{}}}\", ca_file: \"{}\", poll_interval: 200ms }}\n  customer: \
         {{ maildir: \"{}\", poll_interval: 200ms }}\n",
        server.imap_port,
        password.display(),
        server.ca_file.display(),
        server.user("customer").maildir.display()
    )
}

/// A mail check from customer to autoreply every 3 s, failing after 2 s without its mail or the
/// auto-reply.
fn check(server: &MailServer) -> String {
    format!(
        "checks:\n  - name: support-mail\n    kind: mail\n    channel: email\n    \
         smtp: \"smtp://127.0.0.1:{}\"\n    interval: 3s\n    timeout: 3s\n    retries: 0\n    \
         helo: monitor.test.local\n    from: customer@test.local\n    to: autoreply@test.local\n    \
         deliver: {{ mailbox: autoreply, within: 2s }}\n    \
         auto_reply: {{ mailbox: customer, within: 2s }}\n",
        server.smtp_port
    )
}

/// The next report of `support-mail` on `reports`.
async fn next(reports: &mut broadcast::Receiver<Arc<RunReport>>) -> Arc<RunReport> {
    let wait = async {
        loop {
            match reports.recv().await {
                Ok(r) if &*r.check == "support-mail" => return r,
                Ok(_) => continue,
                Err(e) => panic!("report stream ended: {e}"),
            }
        }
    };
    tokio::time::timeout(RUN_WITHIN, wait)
        .await
        .unwrap_or_else(|_| panic!("no run of support-mail within {RUN_WITHIN:?}"))
}

/// A run that failed because the mailbox could not be read (dovecot is down).
fn assert_outage(report: &RunReport) {
    let failure = report
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("the run should fail while dovecot is down: {report:#?}"));
    assert_eq!(failure.kind, FailureKind::Connect, "{report:#?}");
}

/// The value of `supportwatch_mail_late_deleted_total{mailbox}` in `daemon`'s metrics.
fn deleted(daemon: &TestDaemon, mailbox: &str) -> u64 {
    let prefix = format!("supportwatch_mail_late_deleted_total{{mailbox=\"{mailbox}\"}} ");
    let metrics = daemon.metrics.encode_text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in the metrics:\n{metrics}"))
}

/// Whether `user` still has a message mentioning any of `tokens`.
fn any_left(server: &MailServer, user: &str, tokens: &[String]) -> bool {
    tokens
        .iter()
        .any(|t| server.find_message(user, t).is_some())
}

/// Whether postfix still holds mail (`postqueue -p`).
fn queue_empty(server: &MailServer) -> bool {
    let output = Command::new("postqueue")
        .arg("-c")
        .arg(server.dir.join("postfix"))
        .arg("-p")
        .output()
        .expect("run postqueue -p");
    String::from_utf8_lossy(&output.stdout).contains("Mail queue is empty")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_mail_of_runs_before_a_restart_is_deleted_by_the_sweep_after_it() {
    let _turn = SERIAL.lock().await;
    let server = mail_server();
    let dir = ConfigDir::new();
    dir.write("mailboxes.yaml", &mailboxes(server, &dir));
    dir.write("checks.yaml", &check(server));
    let mut dovecot = DovecotDown::stop(server);

    // Runs during the outage: postfix takes each mail and defers it; each run fails.
    let daemon = dir.start().await;
    let mut reports = daemon.scheduler.subscribe();
    let first = next(&mut reports).await;
    assert_outage(&first);
    assert!(
        daemon.stop().await,
        "the runs finish within the grace period"
    );
    let mut tokens = vec![first.token.clone()];
    while let Ok(report) = reports.try_recv() {
        if &*report.check == "support-mail" {
            assert_outage(&report);
            tokens.push(report.token.clone());
        }
    }
    let store = Store::open(&dir.path().join("sw.db")).expect("open the database");
    let remembered = store.late_tokens().expect("read the remembered tokens");
    let mut pairs: Vec<(String, String)> = remembered
        .iter()
        .map(|t| (t.mailbox.clone(), t.token.clone()))
        .collect();
    pairs.sort();
    let mut expected: Vec<(String, String)> = tokens
        .iter()
        .flat_map(|t| {
            [
                ("autoreply".into(), t.clone()),
                ("customer".into(), t.clone()),
            ]
        })
        .collect();
    expected.sort();
    assert_eq!(
        pairs, expected,
        "every failed run's token is remembered on disk, for the mailbox and for the sender's"
    );
    drop(store);

    // The outage ends: the deferred mail arrives, and the vacation replies to each.
    dovecot.restart();
    for token in &tokens {
        for user in ["autoreply", "customer"] {
            assert!(
                server
                    .wait_for_message_async(user, token, ARRIVE_WITHIN)
                    .await
                    .is_some(),
                "the late mail of {token} reaches {user}"
            );
        }
    }

    // A new daemon, whose only check has nothing to do with mail (and runs at most once an
    // hour): its first sweep deletes every one of them.
    dir.write(
        "checks.yaml",
        &format!(
            "checks:\n  - {{ name: home, kind: http, url: \"http://127.0.0.1:{}/\", interval: 1h }}\n",
            common::closed_port()
        ),
    );
    let daemon = dir.start().await;
    let n = tokens.len() as u64;
    for mailbox in ["autoreply", "customer"] {
        daemon
            .wait_for_metric(&format!(
                "supportwatch_mail_late_deleted_total{{mailbox=\"{mailbox}\"}} {n}\n"
            ))
            .await;
    }
    assert!(!any_left(server, "autoreply", &tokens), "test mail left");
    assert!(!any_left(server, "customer", &tokens), "auto-replies left");
    assert!(daemon.stop().await);
    let store = Store::open(&dir.path().join("sw.db")).expect("open the database");
    assert_eq!(
        store.late_tokens().expect("read the remembered tokens"),
        Vec::new(),
        "deleted mail's tokens are forgotten on disk too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_mail_is_deleted_by_the_next_runs_once_the_mailbox_is_back() {
    let _turn = SERIAL.lock().await;
    let server = mail_server();
    let dir = ConfigDir::new();
    dir.write("mailboxes.yaml", &mailboxes(server, &dir));
    dir.write("checks.yaml", &check(server));
    let mut dovecot = DovecotDown::stop(server);

    let daemon = dir.start().await;
    let mut reports = daemon.scheduler.subscribe();
    let first = next(&mut reports).await;
    assert_outage(&first);
    dovecot.restart();

    // The runs go on; once one passes, the mailbox is back. Every run that failed during the
    // outage (their mail has no late watch: the mailbox could not be read) must be cleaned up.
    let mut failed = vec![first.token.clone()];
    loop {
        let report = next(&mut reports).await;
        match &report.failure {
            None => break,
            Some(f) if f.kind == FailureKind::Connect => failed.push(report.token.clone()),
            // A run that began while dovecot came back may miss its mail by a hair; its own late
            // watch or the sweep takes care of it, and it is not among those counted below.
            Some(_) => {}
        }
    }
    let deadline = tokio::time::Instant::now() + ARRIVE_WITHIN;
    while !(queue_empty(server)
        && !any_left(server, "autoreply", &failed)
        && !any_left(server, "customer", &failed)
        && deleted(&daemon, "autoreply") >= failed.len() as u64
        && deleted(&daemon, "customer") >= failed.len() as u64)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the late mail of {failed:?} was not all delivered and deleted: queue empty {}, \
             autoreply {} deleted, customer {} deleted",
            queue_empty(server),
            deleted(&daemon, "autoreply"),
            deleted(&daemon, "customer")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(daemon.stop().await);
}
