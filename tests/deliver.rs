//! The delivery watcher against a real Maildir on disk: found before or after the wait began,
//! cleanup, spam folders, deadlines, extra patterns, and many waits sharing one watcher.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use supportwatch::demo::smtp::write_maildir;
use supportwatch::mailbox::watch::WaitRequest;
use supportwatch::mailbox::{MailboxSpec, WaitError, Watcher};

fn spec(maildir: &Path, extra: &str) -> MailboxSpec {
    let yaml = format!(
        "maildir: \"{}\"\npoll_interval: 200ms\n{extra}",
        maildir.display()
    );
    serde_saphyr::from_str(&yaml).expect("mailbox spec parses")
}

fn watcher(maildir: &Path, extra: &str) -> Watcher {
    let spec = spec(maildir, extra);
    let store = supportwatch::mailbox::build("support", &spec).expect("mailbox builds");
    Watcher::new("support", store, &spec)
}

fn maildir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    common::make_maildir(dir.path());
    dir
}

fn mail(token: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: shop@example.test\r\nTo: support@example.test\r\nSubject: {subject}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nНовое сообщение: Automated test {token}\r\n"
    )
    .into_bytes()
}

fn request(token: &str) -> WaitRequest {
    WaitRequest {
        token: token.to_string(),
        since: SystemTime::now() - Duration::from_secs(1),
        pattern: None,
        cleanup: true,
    }
}

fn files(dir: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .map(|s| {
            std::fs::read_dir(dir.join(s))
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum()
}

const T1: &str = "sw-feedback-1795430400-00000001";
const T2: &str = "sw-feedback-1795430400-00000002";

#[tokio::test]
async fn a_message_already_there_is_found_and_deleted() {
    let dir = maildir();
    let w = watcher(dir.path(), "");
    let req = request(T1);
    write_maildir(dir.path(), &mail(T1, "Contact form")).expect("write");
    write_maildir(dir.path(), &mail(T2, "Another run")).expect("write");
    let found = w
        .wait(req, Instant::now() + Duration::from_secs(10))
        .await
        .expect("delivered");
    assert_eq!(found.folder, "INBOX");
    assert!(!found.spam);
    assert_eq!(found.subject, "Contact form");
    assert!(matches!(found.cleanup, Some(Ok(()))));
    assert_eq!(files(dir.path()), 1, "only the other run's message is left");
}

#[tokio::test]
async fn a_message_arriving_later_is_found_before_the_deadline() {
    let dir = maildir();
    let w = watcher(dir.path(), "");
    let path = dir.path().to_path_buf();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let written_at = SystemTime::now();
        write_maildir(&path, &mail(T1, "late-ish")).expect("write");
        written_at
    });
    let found = w
        .wait(request(T1), Instant::now() + Duration::from_secs(20))
        .await
        .expect("delivered");
    let written_at = writer.await.expect("writer");
    // Seen after it was written, and within a few poll intervals (200 ms) of it.
    let after_write = found
        .observed_at
        .duration_since(written_at)
        .expect("observed only after it was written");
    assert!(after_write < Duration::from_secs(10), "{after_write:?}");
    assert_eq!(files(dir.path()), 0);
}

#[tokio::test]
async fn nothing_arriving_ends_at_the_deadline() {
    let dir = maildir();
    let w = watcher(dir.path(), "");
    write_maildir(dir.path(), &mail(T2, "someone else's")).expect("write");
    let start = Instant::now();
    let result = w
        .wait(request(T1), Instant::now() + Duration::from_millis(800))
        .await;
    assert!(matches!(result, Err(WaitError::NotFound)), "{result:?}");
    assert!(start.elapsed() >= Duration::from_millis(800));
    assert_eq!(files(dir.path()), 1, "other mail is never touched");
}

#[tokio::test]
async fn a_message_in_the_junk_folder_is_reported_as_spam() {
    let dir = maildir();
    let w = watcher(dir.path(), "");
    write_maildir(&dir.path().join(".Junk"), &mail(T1, "[SPAM] Contact form")).expect("write");
    let found = w
        .wait(request(T1), Instant::now() + Duration::from_secs(10))
        .await
        .expect("found");
    assert!(found.spam);
    assert_eq!(found.folder, "Junk");
}

#[tokio::test]
async fn an_extra_pattern_must_match_too() {
    let dir = maildir();
    let w = watcher(dir.path(), "");
    write_maildir(dir.path(), &mail(T1, "Wrong subject")).expect("write");
    let mut req = request(T1);
    req.pattern = Some(
        serde_saphyr::from_str::<supportwatch::value::Pattern>("\"Subject: Contact form\"")
            .expect("pattern"),
    );
    let result = w
        .wait(req, Instant::now() + Duration::from_millis(600))
        .await;
    assert!(matches!(result, Err(WaitError::NotFound)), "{result:?}");
    assert_eq!(files(dir.path()), 1, "an unmatched message is not deleted");
}

#[tokio::test]
async fn old_mail_with_the_token_does_not_count() {
    let dir = maildir();
    let w = watcher(dir.path(), "");
    let path = write_maildir(dir.path(), &mail(T1, "old")).expect("write");
    let old = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(old))
        .expect("set mtime");
    let result = w
        .wait(request(T1), Instant::now() + Duration::from_millis(600))
        .await;
    assert!(matches!(result, Err(WaitError::NotFound)), "{result:?}");
}

#[tokio::test]
async fn many_waits_share_one_watcher_and_each_gets_its_own_message() {
    let dir = maildir();
    let w = watcher(dir.path(), "");
    let tokens: Vec<String> = (0..20)
        .map(|i| format!("sw-load-1795430400-{i:08x}"))
        .collect();
    let waits = tokens.iter().map(|t| {
        let w = w.clone();
        let t = t.clone();
        tokio::spawn(async move {
            w.wait(request(&t), Instant::now() + Duration::from_secs(20))
                .await
        })
    });
    let waits: Vec<_> = waits.collect();
    for t in &tokens {
        write_maildir(dir.path(), &mail(t, t)).expect("write");
    }
    for (wait, t) in waits.into_iter().zip(&tokens) {
        let found = wait.await.expect("task").expect("delivered");
        assert_eq!(&found.subject, t);
    }
    assert_eq!(files(dir.path()), 0, "every test message cleaned up");
}

#[tokio::test]
async fn a_missing_maildir_is_a_clear_error() {
    let w = watcher(Path::new("/nonexistent/maildir"), "");
    let err = w
        .wait(request(T1), Instant::now() + Duration::from_secs(10))
        .await
        .expect_err("no mailbox");
    assert_eq!(
        err.to_string(),
        "maildir /nonexistent/maildir: folder `INBOX` does not exist"
    );
}

#[tokio::test]
async fn quota_is_read_from_maildirsize() {
    let dir = maildir();
    std::fs::write(dir.path().join("maildirsize"), "1000000S\n950000 10\n").expect("write");
    let w = watcher(dir.path(), "quota_max: 90%\n");
    write_maildir(dir.path(), &mail(T1, "x")).expect("write");
    let found = w
        .wait(request(T1), Instant::now() + Duration::from_secs(10))
        .await
        .expect("found");
    let quota = found.quota.expect("quota read");
    assert_eq!((quota.used, quota.limit), (950_000, 1_000_000));
}

/// The delivery stage of a run that submitted at `submitted_at`, proving into the Maildir `dir`.
fn stage(
    dir: &Path,
    token: &str,
    deliver_yaml: &str,
    mailbox_extra: &str,
) -> supportwatch::outcome::FollowUp {
    let specs =
        std::collections::BTreeMap::from([("support".to_string(), spec(dir, mailbox_extra))]);
    let mailboxes = supportwatch::deliver::Mailboxes::build(&specs).expect("mailboxes build");
    let deliver: supportwatch::deliver::DeliverSpec =
        serde_saphyr::from_str(deliver_yaml).expect("deliver parses");
    let ctx = supportwatch::outcome::RunContext::new("feedback".into(), token.to_string());
    supportwatch::deliver::follow_up(
        &ctx,
        SystemTime::now(),
        Some(&deliver),
        None,
        &mailboxes,
        None,
    )
    .expect("a deliver block makes a follow-up")
}

#[tokio::test]
async fn mail_after_the_deadline_fails_the_run_and_is_counted_late_and_cleaned_up() {
    let dir = maildir();
    let follow_up = stage(
        dir.path(),
        T1,
        "{ mailbox: support, within: 500ms, late_window: 20s }",
        "",
    );
    let result = follow_up.stage.await;
    let failure = result.outcome.failure.expect("missed its deadline");
    assert_eq!(
        failure.kind,
        supportwatch::outcome::FailureKind::NotDelivered
    );
    assert_eq!(
        failure.message,
        "not delivered within 500ms (mailbox support)"
    );
    write_maildir(dir.path(), &mail(T1, "late")).expect("write");
    let late = result.late.expect("a late watch").await;
    match late {
        supportwatch::outcome::LateDelivery::Arrived(after) => {
            assert!(after >= Duration::from_millis(500), "{after:?}")
        }
        other => panic!("expected a late arrival, got {other:?}"),
    }
    assert_eq!(
        files(dir.path()),
        0,
        "the late test message is cleaned up too"
    );
}

#[tokio::test]
async fn mail_that_never_comes_is_counted_lost_after_the_late_window() {
    let dir = maildir();
    let result = stage(
        dir.path(),
        T1,
        "{ mailbox: support, within: 300ms, late_window: 300ms }",
        "",
    )
    .stage
    .await;
    let late = result.late.expect("a late watch").await;
    assert_eq!(late, supportwatch::outcome::LateDelivery::Lost);
}

#[tokio::test]
async fn a_missed_delivery_into_a_mailbox_over_quota_max_names_the_full_mailbox() {
    let dir = maildir();
    std::fs::write(dir.path().join("maildirsize"), "1000000S\n990000 40\n").expect("write");
    let result = stage(
        dir.path(),
        T1,
        "{ mailbox: support, within: 800ms }",
        "quota_max: 90%\n",
    )
    .stage
    .await;
    let failure = result.outcome.failure.expect("not delivered");
    assert_eq!(failure.kind, supportwatch::outcome::FailureKind::Quota);
    assert_eq!(
        failure.message,
        "not delivered within 800ms: mailbox support is 99.0% full (quota_max 90%)"
    );
}
