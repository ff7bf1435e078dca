//! The status page served on loopback from a seeded database read at an injected time: what an
//! owner reads (state words, uptime, incidents), who may read it (public, token, basic auth), that
//! no secret or internal URL shows, that evidence comes only from the artifacts directory, what a
//! page costs with thousands of checks, and that chromium renders it without console errors.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use supportwatch::alert::engine::AlertState;
use supportwatch::alert::store::{IncidentChange, LastValue, RunRecord, Store, ValueKind};
use supportwatch::server::auth::BasicAuth;
use supportwatch::server::status::{PageSetup, StatusPage, router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PAGE_TOKEN: &str = "pg-tok-7Hq2xWv9Lm";
const API_TOKEN: &str = "api-secret-Zx81Kd0Qp";
const INTERNAL: &str = "10.77.3.9";

fn at(ts: &str) -> SystemTime {
    let t: jiff::Timestamp = ts.parse().expect("timestamp");
    SystemTime::from(t)
}

fn secs(t: SystemTime) -> f64 {
    supportwatch::alert::engine::secs(t)
}

/// The injected now: 13:00 in Berlin (UTC+1 in March).
fn now() -> SystemTime {
    at("2026-03-20T12:00:00Z")
}

fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

fn config(artifacts: &Path) -> String {
    let maintenance_from = "2026-03-20T11:00:00Z";
    let maintenance_to = "2026-03-20T14:00:00Z";
    format!(
        r#"browser:
  artifacts: {{ dir: "{artifacts}" }}
alerting:
  shop_timezones: {{ berlin: Europe/Berlin }}
status_page:
  enabled: true
  shops:
    berlin: {{ public: true }}
    hidden: {{ token: "${{PAGE_TOKEN}}" }}
mailboxes:
  support: {{ maildir: "{artifacts}/support" }}
  orders: {{ maildir: "{artifacts}/orders" }}
checks:
  - name: form
    kind: form
    shop: berlin
    channel: feedback_form
    url: "http://{INTERNAL}/contact"
    form: "form#feedback"
    fields: {{ message: "Automated test {{{{token}}}}" }}
    deliver: {{ mailbox: support, within: 5m }}
  - name: chat
    kind: http
    shop: berlin
    channel: chat
    url: "http://{INTERNAL}/chat"
    headers: {{ Authorization: "Bearer ${{API_TOKEN}}" }}
  - name: mail
    kind: http
    shop: berlin
    channel: email
    url: "http://{INTERNAL}/mail"
    alert: {{ maintenance: [ {{ from: "{maintenance_from}", to: "{maintenance_to}" }} ] }}
  - name: hidden-site
    kind: http
    shop: hidden
    channel: website
    url: "http://{INTERNAL}/"
  - name: hidden-form
    kind: form
    shop: hidden
    channel: feedback_form
    url: "http://{INTERNAL}/order"
    form: "form#order"
    fields: {{ message: "Automated test {{{{token}}}}" }}
    deliver: {{ mailbox: orders, within: 5m }}
"#,
        artifacts = artifacts.display(),
    )
}

fn run(check: &str, channel: &str, started: SystemTime, failed: bool, latency: f64) -> RunRecord {
    RunRecord {
        check: check.into(),
        started_at: secs(started),
        duration: 1.5,
        result: if failed { "failure" } else { "success" }.into(),
        reason_kind: failed.then(|| "not_delivered".into()),
        // What a check may really say: the secret header and the internal address echoed back.
        reason: failed
            .then(|| format!("http://{INTERNAL}/contact answered 500 for Bearer {API_TOKEN}")),
        shop: if check == "hidden-site" {
            "hidden"
        } else {
            "berlin"
        }
        .into(),
        channel: channel.into(),
        kind: "http".into(),
        latency: Some(latency),
        ..RunRecord::default()
    }
}

/// A page over a database seeded for `days` of hourly runs: the form failed 08:00–10:00 local
/// (two failed runs, an ended incident), the chat has not replied since 11:00 local (firing),
/// the mailbox check is in maintenance now.
struct Bed {
    dir: tempfile::TempDir,
    page: Arc<StatusPage>,
    store: Arc<Store>,
}

fn seed(store: &Store, days: u64) {
    let start = now() - hours(24 * days);
    let mut runs = Vec::new();
    for h in 0..(24 * days) {
        let t = start + hours(h);
        let failed = t == now() - hours(5) || t == now() - hours(4);
        runs.push(run(
            "form",
            "feedback_form",
            t,
            failed,
            30.0 + (h % 7) as f64,
        ));
        runs.push(run("mail", "email", t, false, 12.0));
        runs.push(run("hidden-site", "website", t, false, 0.4));
        let chat_down = t >= now() - hours(2);
        let mut chat = run("chat", "chat", t, chat_down, 5.0);
        chat.reason_kind = chat_down.then(|| "no_reply".into());
        runs.push(chat);
    }
    // The last values the runs observed: the form's mailbox filled up, the mail check saw two
    // certificates; the other shop's check its own mailbox and certificate.
    let (first, newest) = (secs(start), secs(now() - hours(1)));
    let value = |kind: ValueKind, subject: &str, value: f64| LastValue {
        kind,
        subject: subject.into(),
        value,
    };
    let in_days = |days: f64| secs(now()) + days * 86_400.0;
    for r in &mut runs {
        r.values = match (r.check.as_str(), r.started_at) {
            ("form", t) if t == first => vec![value(ValueKind::MailboxFill, "support", 0.5)],
            ("form", t) if t == newest => {
                // What the alerting task stores of the run; the ops page scrubs it again.
                r.details = Some(
                    serde_json::json!({
                        "phases": [
                            { "name": "load", "seconds": 0.12, "ok": true },
                            { "name": "deliver", "seconds": null, "ok": false },
                        ],
                        "observations": [
                            { "kind": "http_status", "value": 200 },
                            { "kind": "mailbox_quota", "mailbox": "support", "ratio": 0.83 },
                        ],
                        "details": [format!("posted to http://{INTERNAL}/contact with Bearer {API_TOKEN}")],
                    })
                    .to_string(),
                );
                vec![value(ValueKind::MailboxFill, "support", 0.83)]
            }
            ("mail", t) if t == newest => vec![
                value(
                    ValueKind::CertNotAfter,
                    "smtp+starttls://mail.shop.example:587",
                    in_days(12.5),
                ),
                value(ValueKind::CertNotAfter, "shop.example:443", in_days(40.2)),
            ],
            ("hidden-site", t) if t == newest => vec![
                value(ValueKind::MailboxFill, "orders", 0.95),
                value(ValueKind::CertNotAfter, "hidden.example:443", in_days(2.1)),
            ],
            _ => Vec::new(),
        };
    }
    for chunk in runs.chunks(500) {
        store
            .commit_runs(chunk, 1_000_000, None, &[], &[], 0.0)
            .expect("commit runs");
    }
    let incident =
        |check: &str, channel: &str, from: u64, to: Option<u64>, reason: &str| IncidentChange {
            check: check.into(),
            shop: "berlin".into(),
            channel: channel.into(),
            kind: "http".into(),
            started_at: secs(now() - hours(from)),
            ended_at: to.map(|to| secs(now() - hours(to))),
            reason_kind: reason.into(),
            reason: format!("Bearer {API_TOKEN}"),
        };
    let chat_state = AlertState {
        firing: true,
        consecutive_failures: 2,
        failing_since: Some(secs(now() - hours(2))),
        reason_kind: "no_reply".into(),
        reason: format!("no reply from http://{INTERNAL}/chat"),
        announced: true,
        ..AlertState::default()
    };
    store
        .commit_runs(
            &[],
            1_000_000,
            Some(("chat", Some(&chat_state))),
            &[
                incident("form", "feedback_form", 5, Some(3), "not_delivered"),
                incident("chat", "chat", 2, None, "no_reply"),
            ],
            &[],
            0.0,
        )
        .expect("commit incidents");
}

fn bed(days: u64) -> Bed {
    let dir = tempfile::tempdir().expect("tempdir");
    let artifacts = dir.path().join("artifacts");
    std::fs::create_dir_all(artifacts.join("form/run-1")).expect("mkdir");
    std::fs::write(artifacts.join("form/run-1/screenshot.png"), b"\x89PNG fake").expect("png");
    std::fs::write(dir.path().join("outside.txt"), "OUTSIDE-THE-ARTIFACTS").expect("outside");
    std::os::unix::fs::symlink(
        dir.path().join("outside.txt"),
        artifacts.join("form/run-1/link.txt"),
    )
    .expect("symlink");
    let prepared = common::prepare_with(
        &config(&artifacts),
        &[("PAGE_TOKEN", PAGE_TOKEN), ("API_TOKEN", API_TOKEN)],
    );
    let store = Arc::new(Store::open(&dir.path().join("sw.db")).expect("open store"));
    seed(&store, days);
    let form_state = AlertState {
        evidence: Some(artifacts.join("form/run-1").display().to_string()),
        ..AlertState::default()
    };
    store
        .commit_runs(&[], 1, Some(("form", Some(&form_state))), &[], &[], 0.0)
        .expect("form state");
    let setup = PageSetup::from_prepared(&prepared);
    let page = Arc::new(StatusPage::new(store.clone(), setup, Arc::new(now)));
    Bed { dir, page, store }
}

/// Serves the status routes on 127.0.0.1; `auth` as `server.basic_auth_users` would.
async fn serve(page: Arc<StatusPage>, auth: Option<BasicAuth>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = router(page, auth.map(Arc::new));
    // The server lives as long as the test's runtime.
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    supportwatch::tlsconf::install_crypto_provider();
    reqwest::Client::new()
}

async fn get(url: &str, lang: &str) -> (u16, String) {
    let response = client()
        .get(url)
        .header("accept-language", lang)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The table row of `channel` (from its name to the row's end).
fn row<'a>(html: &'a str, channel: &str) -> &'a str {
    let start = html
        .find(&format!("<strong>{channel}</strong>"))
        .unwrap_or_else(|| panic!("no row for {channel}:\n{html}"));
    let rest = &html[start..];
    &rest[..rest.find("</tr>").unwrap_or(rest.len())]
}

#[tokio::test]
async fn the_shop_page_says_each_channels_state_uptime_and_incidents_in_the_shops_time() {
    let bed = bed(10);
    let base = serve(bed.page.clone(), None).await;
    let (status, html) = get(&format!("{base}/status/shop/berlin"), "en-GB,en;q=0.9").await;
    assert_eq!(status, 200, "{html}");

    let form = row(&html, "Feedback form");
    assert!(form.contains(r#"class="ok">works<"#), "{form}");
    // 24 runs in the last day, 2 failed; 168 and 240 in 7 and 30 days (10 days of history).
    assert!(form.contains("91.67 % / 98.81 % / 99.17 %"), "{form}");
    assert!(form.contains("<svg"), "a sparkline: {form}");
    // The last run began at 11:00 UTC, 12:00 in Berlin.
    assert!(form.contains("<td>12:00</td>"), "{form}");

    let chat = row(&html, "Chat");
    assert!(chat.contains(r#"class="bad""#), "{chat}");
    assert!(chat.contains("Chat is not answering since 11:00"), "{chat}");
    assert!(chat.contains("91.67 %"), "{chat}");

    let mail = row(&html, "Support mail");
    assert!(mail.contains(r#"class="pause">in maintenance<"#), "{mail}");
    assert!(mail.contains("100.00 % / 100.00 % / 100.00 %"), "{mail}");

    // No check of the shop proves a phone or a callback: no row for them.
    assert!(!html.contains("<strong>Phone</strong>"), "{html}");
    // The other shop's channel is not on this page.
    assert!(!html.contains("<strong>Website</strong>"), "{html}");

    // The ended incident in the owner's words, with its length; the open one as it stands.
    assert!(
        html.contains("Feedback form works again (was down from 08:00 to 10:00) — 2 h 0 min"),
        "{html}"
    );
    assert!(
        html.contains("<li>Chat is not answering since 11:00</li>"),
        "the chat's open incident: {html}"
    );

    // Certificates and mailboxes: the last values seen, the shop's own only.
    assert!(
        html.contains("certificate for mail.shop.example expires in 12 days"),
        "{html}"
    );
    assert!(
        html.contains("certificate for shop.example expires in 40 days"),
        "{html}"
    );
    assert!(html.contains("support mailbox 83 % full"), "{html}");
    assert!(!html.contains("orders"), "another shop's mailbox: {html}");
    assert!(
        !html.contains("hidden.example"),
        "another shop's site: {html}"
    );
    let (_, hidden) = get(
        &format!("{base}/status/shop/hidden?token={PAGE_TOKEN}"),
        "en",
    )
    .await;
    assert!(hidden.contains("orders mailbox 95 % full"), "{hidden}");
    assert!(
        hidden.contains("certificate for hidden.example expires in 2 days"),
        "{hidden}"
    );
    assert!(!hidden.contains("support mailbox"), "{hidden}");

    // Russian by Accept-Language.
    let (_, ru) = get(
        &format!("{base}/status/shop/berlin"),
        "ru-RU,ru;q=0.9,en;q=0.5",
    )
    .await;
    assert!(ru.contains(r#"<html lang="ru">"#), "{ru}");
    assert!(ru.contains("работает"), "{ru}");
    assert!(ru.contains("на обслуживании"), "{ru}");
    assert!(ru.contains("ящик support заполнен на 83 %"), "{ru}");
    assert!(
        ru.contains("Форма обратной связи снова работает (не работала с 08:00 до 10:00)"),
        "{ru}"
    );

    // The index lists the public shop only.
    let (status, index) = get(&format!("{base}/status"), "en").await;
    assert_eq!(status, 200);
    assert!(index.contains(r#"href="/status/shop/berlin""#), "{index}");
    assert!(!index.contains("hidden"), "{index}");
    drop(bed.dir);
}

#[tokio::test]
async fn a_token_shop_needs_its_token_or_basic_auth_and_ops_pages_need_basic_auth() {
    let bed = bed(2);
    let hash = bcrypt::hash("ops-password", 4).expect("hash");
    let users = [("ops".to_string(), hash)].into_iter().collect();
    let auth = BasicAuth::new(&users).expect("auth").expect("users");
    let base = serve(bed.page.clone(), Some(auth)).await;
    let client = client();
    let status = |url: String, user: Option<(&'static str, &'static str)>| {
        let client = client.clone();
        async move {
            let mut request = client.get(url);
            if let Some((u, p)) = user {
                request = request.basic_auth(u, Some(p));
            }
            request.send().await.expect("request").status().as_u16()
        }
    };
    assert_eq!(
        status(format!("{base}/status/shop/hidden"), None).await,
        401
    );
    assert_eq!(
        status(format!("{base}/status/shop/hidden?token=wrong"), None).await,
        401
    );
    assert_eq!(
        status(
            format!("{base}/status/shop/hidden?token={PAGE_TOKEN}"),
            None
        )
        .await,
        200
    );
    assert_eq!(
        status(
            format!("{base}/status/shop/hidden"),
            Some(("ops", "ops-password"))
        )
        .await,
        200
    );
    // A shop status_page does not list is no page at all.
    assert_eq!(
        status(format!("{base}/status/shop/nowhere"), None).await,
        404
    );
    // The public shop needs nothing; the ops view needs the server's users.
    assert_eq!(
        status(format!("{base}/status/shop/berlin"), None).await,
        200
    );
    assert_eq!(status(format!("{base}/status/check/form"), None).await, 401);
    assert_eq!(
        status(format!("{base}/status/check/form"), Some(("ops", "nope"))).await,
        401
    );
    assert_eq!(
        status(
            format!("{base}/status/check/form"),
            Some(("ops", "ops-password"))
        )
        .await,
        200
    );
    assert_eq!(
        status(
            format!("{base}/status/evidence/form/run-1/screenshot.png"),
            None
        )
        .await,
        401
    );
}

#[tokio::test]
async fn no_page_shows_a_secret_a_token_an_internal_address_or_a_variable() {
    let bed = bed(2);
    let base = serve(bed.page.clone(), None).await;
    let mut pages = Vec::new();
    for path in [
        "/status".to_string(),
        "/status/shop/berlin".to_string(),
        format!("/status/shop/hidden?token={PAGE_TOKEN}"),
        "/status/check/form".to_string(),
        "/status/check/chat".to_string(),
        "/status/check/hidden-site".to_string(),
    ] {
        for lang in ["en", "ru"] {
            let (status, html) = get(&format!("{base}{path}"), lang).await;
            assert_eq!(status, 200, "{path}: {html}");
            pages.push((path.clone(), html));
        }
    }
    let check_page = &pages[6].1;
    // The ops page does show the failed runs, their reasons scrubbed.
    assert!(check_page.contains("not_delivered"), "{check_page}");
    assert!(check_page.contains("[url] answered 500"), "{check_page}");
    // And each run's phases and observations, scrubbed like the reasons.
    assert!(
        check_page.contains(
            r#"<span class="ok">load 0.12 s ✓</span> · <span class="bad">deliver ✗</span>"#
        ),
        "{check_page}"
    );
    assert!(
        check_page.contains("http_status value=200; mailbox_quota mailbox=support ratio=0.83"),
        "{check_page}"
    );
    assert!(check_page.contains("posted to [url] with"), "{check_page}");
    for (path, html) in &pages {
        for forbidden in [PAGE_TOKEN, API_TOKEN, INTERNAL, "${", "Bearer api"] {
            assert!(
                !html.contains(forbidden),
                "{path} shows {forbidden}:\n{html}"
            );
        }
    }
}

/// Sends `path` as it is (no client normalises it) and returns the status line and body.
async fn raw_get(base: &str, path: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn evidence_is_served_from_the_artifacts_directory_only() {
    let bed = bed(2);
    let base = serve(bed.page.clone(), None).await;
    // The ops page links the last failure's files.
    let (_, check_page) = get(&format!("{base}/status/check/form"), "en").await;
    assert!(
        check_page.contains(r#"href="/status/evidence/form/run-1/screenshot.png""#),
        "{check_page}"
    );
    let ok = raw_get(&base, "/status/evidence/form/run-1/screenshot.png").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("image/png"), "{ok}");
    assert!(ok.contains("\u{fffd}PNG fake"), "{ok}");
    for attempt in [
        "/status/evidence/../outside.txt",
        "/status/evidence/form/../../outside.txt",
        "/status/evidence/%2e%2e/outside.txt",
        "/status/evidence/form/..%2f..%2foutside.txt",
        "/status/evidence/form%2f..%2f..%2foutside.txt",
        "/status/evidence/%2Fetc%2Fpasswd",
        "/status/evidence//etc/passwd",
        "/status/evidence/form/run-1/..%5c..%5c..%5coutside.txt",
        // A symlink inside the directory that points out of it.
        "/status/evidence/form/run-1/link.txt",
        // A directory is no file.
        "/status/evidence/form/run-1",
    ] {
        let response = raw_get(&base, attempt).await;
        assert!(
            response.starts_with("HTTP/1.1 404") || response.starts_with("HTTP/1.1 400"),
            "{attempt}: {response}"
        );
        assert!(!response.contains("OUTSIDE-THE-ARTIFACTS"), "{attempt}");
        assert!(!response.contains("root:"), "{attempt}");
    }
}

#[tokio::test]
async fn a_shop_page_costs_the_same_reads_whatever_the_number_of_checks_and_days() {
    // 2,000 checks of 40 shops, one run each in the last hour, beside the seeded shops.
    let short = bed(2);
    let long = bed(30);
    let many: Vec<RunRecord> = (0..2000)
        .map(|i| {
            let mut r = run(&format!("c{i}"), "chat", now() - hours(1), i % 10 == 0, 3.0);
            r.shop = format!("shop{}", i % 40);
            r
        })
        .collect();
    for store in [&short.store, &long.store] {
        for chunk in many.chunks(500) {
            store
                .commit_runs(chunk, 1_000_000, None, &[], &[], 0.0)
                .expect("commit");
        }
    }
    let render = |page: &StatusPage| {
        let before = page.reads();
        let started = Instant::now();
        let html = page
            .shop_html("berlin", supportwatch::notify::Language::En)
            .expect("renders");
        (page.reads() - before, started.elapsed(), html)
    };
    let (short_reads, _, short_html) = render(&short.page);
    let (long_reads, long_took, long_html) = render(&long.page);
    // Alert states, the shop's hourly roll-ups, its daily counts and the counts of the two
    // edge ranges, its last values, its incidents, and the newest run of each of its 3 checks:
    // whatever the history's length or the number of other checks.
    assert_eq!(short_reads, 10);
    assert_eq!(long_reads, 10);
    assert!(short_html.contains("Feedback form"));
    assert!(long_html.contains("Feedback form"));
    // Generous: the shape above is the claim; this only catches a page gone quadratic.
    assert!(long_took < Duration::from_secs(10), "{long_took:?}");
    // The index reads nothing.
    let before = long.page.reads();
    let _ = long
        .page
        .index_html(supportwatch::notify::Language::En, true);
    assert_eq!(long.page.reads(), before);
}

#[tokio::test]
async fn a_shop_page_reads_whole_days_from_daily_rollups_whatever_the_history() {
    let render = |bed: &Bed| {
        let (rows, steps) = (bed.page.rows_read(), bed.store.read_steps());
        let html = bed
            .page
            .shop_html("berlin", supportwatch::notify::Language::En)
            .expect("renders");
        assert!(html.contains("Feedback form"), "{html}");
        (bed.page.rows_read() - rows, bed.store.read_steps() - steps)
    };
    let (month, quarter) = (bed(40), bed(90));
    let (month_rows, month_steps) = render(&month);
    let (quarter_rows, quarter_steps) = render(&quarter);
    // Per check of the shop (3): the 48 hours' rows with histograms (sparkline, 24 h; the
    // current hour has no run yet, the seed's last run began at 11:00 UTC), 30 daily
    // counts (now is 12:00 UTC: the whole days from 30 days ago to today) and the 12 hours
    // before the first whole day of each of the 7 d and 30 d ranges. Hour by hour, 30 days
    // would be 721 rows per check.
    assert_eq!(month_rows, 3 * (47 + 30 + 2 * 12));
    // Longer history than the page's 30 days reads no more rows and takes no more steps.
    assert_eq!(quarter_rows, month_rows);
    assert_eq!(quarter_steps, month_steps);
}

/// The pixels of a PNG's image data, inflated (filter bytes included; enough to tell a blank
/// window from a rendered page).
fn png_pixels(png: &[u8]) -> Vec<u8> {
    use std::io::Read;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let mut idat = Vec::new();
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]) as usize;
        let kind = &png[at + 4..at + 8];
        let end = (at + 8 + len).min(png.len());
        if kind == b"IDAT" {
            idat.extend_from_slice(&png[at + 8..end]);
        }
        at = end + 4;
    }
    let mut pixels = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut pixels)
        .expect("inflate");
    pixels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_shop_page_without_console_errors() {
    let bed = bed(10);
    let base = serve(bed.page.clone(), None).await;
    let shots = tempfile::tempdir().expect("tempdir");
    // A browser check of the page itself (its chromium asks for Russian): its steps prove what chromium shows; the last one waits
    // for what the page never has, so the run fails there and leaves its screenshot.
    let yaml = format!(
        r##"browser:
  artifacts: {{ dir: "{dir}" }}
checks:
  - name: status-page
    kind: browser
    retries: 0
    timeout: 60s
    fail_on_console_error: true
    steps:
      - open: "{base}/status/shop/berlin"
      - expect_text: {{ selector: "h1", pattern: "berlin: каналы поддержки" }}
      - expect_text: {{ selector: "tbody", pattern: "на обслуживании" }}
      - wait_for: {{ selector: "#screenshot-now", state: visible, timeout: 1s }}
"##,
        dir = shots.path().display()
    );
    let prepared = common::prepare(&yaml);
    let report = supportwatch::runner::execute(&prepared.checks[0], 1, None).await;
    let failure = report.failure.clone().expect("the last step fails");
    assert_eq!(
        failure.message, "step 4 (wait_for \"#screenshot-now\" visible): not on the page after 1s",
        "{:#?}",
        report.details
    );
    let console: Vec<&String> = report
        .details
        .iter()
        .filter(|d| d.starts_with("console error: "))
        .collect();
    assert!(console.is_empty(), "{console:?}");
    let screenshot = report
        .details
        .iter()
        .find_map(|d| d.strip_prefix("screenshot: "))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("no screenshot in {:#?}", report.details));
    assert!(screenshot.starts_with(shots.path()), "{screenshot:?}");
    let pixels = png_pixels(&std::fs::read(&screenshot).expect("screenshot"));
    let distinct = pixels
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    // A blank window has white and the filter bytes; text, the sparkline and colours add many.
    assert!(distinct > 32, "{distinct} distinct byte values: blank?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_the_status_page_of_its_own_runs() {
    let site = common::serve(
        axum::Router::new().route("/", axum::routing::get(|| async { "интернет-магазин" })),
    )
    .await;
    let dir = common::daemon::ConfigDir::new();
    dir.write(
        "shop.yaml",
        &format!(
            "status_page: {{ enabled: true, shops: {{ berlin: {{ public: true }} }} }}\n\
             checks:\n  - {{ name: home, kind: http, shop: berlin, channel: website, \
             url: \"http://{site}/\", interval: 1s, timeout: 1s }}\n"
        ),
    );
    let daemon = dir.start().await;
    let report = daemon.next_report_of("home").await;
    assert_eq!(
        report.result,
        supportwatch::outcome::RunResult::Success,
        "{report:?}"
    );
    // The run reaches the database through the alerting task: wait for the page to show it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let html = loop {
        let (status, html) = get(&daemon.url("/status/shop/berlin"), "en").await;
        assert_eq!(status, 200, "{html}");
        if html.contains("100.00 %") || Instant::now() > deadline {
            break html;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let website = row(&html, "Website");
    assert!(website.contains(r#"class="ok">works<"#), "{website}");
    assert!(
        website.contains("100.00 % / 100.00 % / 100.00 %"),
        "{website}"
    );
    assert!(
        !html.contains(&site.to_string()),
        "no internal address: {html}"
    );
    let (_, index) = get(&daemon.url("/status"), "en").await;
    assert!(index.contains(r#"href="/status/shop/berlin""#), "{index}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turns_the_status_page_on_and_changes_who_may_see_which_shop() {
    let site =
        common::serve(axum::Router::new().route("/", axum::routing::get(|| async { "ok" }))).await;
    let dir = common::daemon::ConfigDir::new();
    let checks = format!(
        "checks:\n  - {{ name: home, kind: http, shop: berlin, channel: website, \
         url: \"http://{site}/\", interval: 1h }}\n  - {{ name: paris-home, kind: http, \
         shop: paris, channel: website, url: \"http://{site}/\", interval: 1h }}\n"
    );
    dir.write("shop.yaml", &checks);
    dir.write("status.yaml", "status_page: { enabled: false }\n");
    let daemon = dir.start().await;
    let status = |path: &'static str| {
        let url = daemon.url(path);
        async move {
            client()
                .get(url)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("/status").await, 404);
    assert_eq!(status("/status/shop/berlin").await, 404);

    dir.write(
        "status.yaml",
        "status_page: { enabled: true, shops: { berlin: { public: true } } }\n",
    );
    daemon.reload().await.expect("reload");
    assert_eq!(status("/status/shop/berlin").await, 200);
    assert_eq!(status("/status/shop/paris").await, 404, "not listed yet");

    dir.write(
        "status.yaml",
        "status_page:\n  enabled: true\n  language: ru\n  shops:\n    berlin: { token: tok-1 }\n    paris: { public: true }\n",
    );
    daemon.reload().await.expect("reload");
    assert_eq!(
        status("/status/shop/berlin").await,
        401,
        "now behind its token"
    );
    assert_eq!(status("/status/shop/berlin?token=tok-1").await, 200);
    let (code, paris) = get(&daemon.url("/status/shop/paris"), "").await;
    assert_eq!(code, 200, "{paris}");
    assert!(
        paris.contains(r#"<html lang="ru">"#),
        "the new language: {paris}"
    );
    daemon.stop().await;
}
