//! The weekly digest: its content from a seeded database read at a fixed moment (numbers,
//! targets verdict, Russian and English), sent exactly once per period across restarts with an
//! injected clock, as a multipart e-mail with HTML and text, and from the demo on request.

mod common;

use common::recorder::{Answer, Recorder};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use supportwatch::alert::digest::content::{self, Extras};
use supportwatch::alert::history::{History, report};
use supportwatch::alert::service::AlertService;
use supportwatch::alert::store::{Incident, RunRecord, Store};
use supportwatch::metrics::Metrics;
use supportwatch::notify::Language;
use supportwatch::value::{Channel, Dur};

/// Monday 7 December 2026, 09:00 in Moscow: a period's start.
const MONDAY: i64 = 1_796_623_200;
const DAY: i64 = 86_400;

fn at(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
}

fn run(
    check: &str,
    channel: &str,
    kind: &str,
    started: i64,
    failed: bool,
    latency: f64,
) -> RunRecord {
    RunRecord {
        check: check.into(),
        started_at: started as f64,
        duration: 1.0,
        result: if failed { "failure" } else { "success" }.into(),
        reason_kind: failed.then(|| "not_delivered".into()),
        reason: failed.then(|| "no mail within 5m".into()),
        shop: "demo".into(),
        channel: channel.into(),
        kind: kind.into(),
        latency: (!failed).then_some(latency),
        ..RunRecord::default()
    }
}

/// The week before [`MONDAY`]: a form every 5 minutes (2,016, two lost), a chat every
/// 15 minutes (672, replies in 3 s), a callback every 105 minutes (96, ringing after 20 min),
/// and the chat silent for 14 minutes on Tuesday night.
fn seed(store: &Store) {
    let start = MONDAY - 7 * DAY;
    let mut runs = Vec::new();
    for i in 0..2016 {
        runs.push(run(
            "contact",
            "feedback_form",
            "form",
            start + i * 300,
            i == 5 || i == 700,
            41.0,
        ));
    }
    for i in 0..672 {
        runs.push(run(
            "chat-bot",
            "chat",
            "chat",
            start + i * 900 + 10,
            false,
            3.0,
        ));
    }
    for i in 0..96 {
        runs.push(run(
            "callback",
            "callback",
            "callback",
            start + i * 6300 + 20,
            false,
            1200.0,
        ));
    }
    // Tuesday 1 December, 23:05 Moscow.
    let started = (start + DAY + 14 * 3600 + 300) as f64;
    let incident = Incident {
        check: "chat-bot".into(),
        shop: "demo".into(),
        channel: "chat".into(),
        kind: "chat".into(),
        started_at: started,
        ended_at: Some(started + 14.0 * 60.0),
        reason_kind: "no_reply".into(),
        reason: "no reply within 30s".into(),
    };
    store
        .commit_runs(&runs, 100_000, None, &[incident], &[], MONDAY as f64)
        .expect("seed the history");
}

fn targets() -> BTreeMap<Channel, Dur> {
    BTreeMap::from([
        (Channel::FeedbackForm, Dur(Duration::from_secs(7200))),
        (Channel::Chat, Dur(Duration::from_secs(600))),
        (Channel::Callback, Dur(Duration::from_secs(900))),
    ])
}

#[test]
fn the_digest_tells_the_week_in_numbers_against_the_targets_in_both_languages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("history.db")).expect("open");
    seed(&store);
    let zone = jiff::tz::TimeZone::get("Europe/Moscow").expect("zone");
    let history = History::new(&store, at(MONDAY));
    let week =
        report::build(&history, "demo", Duration::from_secs(7 * 86_400), &zone).expect("report");
    let extras = Extras {
        certs: vec![("shop-tls".into(), 12.4)],
        mailboxes: vec![("support".into(), 0.91)],
    };
    let en = content::compose(Language::En, MONDAY, &week, &targets(), &extras, &zone);
    assert_eq!(
        en.title, "demo: weekly report, 30 Nov – 07 Dec",
        "{}",
        en.text
    );
    for expected in [
        "2,016 form submissions, 2,014 mails delivered, 672 chats, 96 callbacks",
        "Feedback form: up 99.9 %, no incidents; median 4",
        "(target 2.0 h: met)",
        "Chat: up 100 %, 1 incident; median 3 s",
        "(target 10 min: met)",
        "Callback request: up 100 %, no incidents; median 20 min",
        "(target 15 min: not met)",
        "Chat, Tue 01 Dec 23:05 – Tue 01 Dec 23:19 (14 min): is not answering",
        "shop-tls: 12 days left",
        "support: 91 %",
    ] {
        assert!(
            en.text.contains(expected),
            "{expected:?} missing from:\n{}",
            en.text
        );
    }
    let ru = content::compose(Language::Ru, MONDAY, &week, &targets(), &extras, &zone);
    assert_eq!(
        ru.title, "demo: отчёт за неделю, 30.11 – 07.12",
        "{}",
        ru.text
    );
    for expected in [
        "отправок формы: 2\u{a0}016, доставлено писем: 2\u{a0}014, чатов: 672, заявок на звонок: 96",
        "Форма обратной связи: работал 99,9 %, без сбоев",
        "(цель 2,0 ч: выполнена)",
        "Заказ обратного звонка: работал 100 %, без сбоев; медиана 20 мин",
        "(цель 15 мин: не выполнена)",
        "Чат, 01.12 23:05 – 01.12 23:19 (14 мин): не отвечает",
        "shop-tls: осталось дней: 12",
    ] {
        assert!(
            ru.text.contains(expected),
            "{expected:?} missing from:\n{}",
            ru.text
        );
    }
    // The HTML holds the same lines, escaped, in a document of its language.
    assert!(en.html.starts_with("<!DOCTYPE html>"), "{}", en.html);
    assert!(en.html.contains("<html lang=\"en\">"), "{}", en.html);
    assert!(
        en.html.contains("<li>Chat, Tue 01 Dec 23:05"),
        "{}",
        en.html
    );
    assert!(ru.html.contains("<html lang=\"ru\">"), "{}", ru.html);
    // The report gains the verdict.
    let mut judged = week.clone();
    content::apply_targets(&mut judged, &targets());
    let met: HashMap<&str, Option<bool>> = judged
        .channels
        .iter()
        .map(|c| (c.channel.as_str(), c.target_met))
        .collect();
    assert_eq!(met["feedback_form"], Some(true));
    assert_eq!(met["chat"], Some(true));
    assert_eq!(met["callback"], Some(false));
}

/// Two chat checks failing together (the bot silent from 23:05, the widget from 23:10 to 23:25)
/// are one outage for the owner: counted once, listed once over their joint span; the report's
/// JSON keeps each check's incident and gains the count beside them.
#[test]
fn overlapping_incidents_of_one_channel_are_one_outage_in_the_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("history.db")).expect("open");
    seed(&store);
    let started = (MONDAY - 7 * DAY + DAY + 14 * 3600 + 600) as f64;
    let widget = Incident {
        check: "chat-widget".into(),
        shop: "demo".into(),
        channel: "chat".into(),
        kind: "browser".into(),
        started_at: started,
        ended_at: Some(started + 15.0 * 60.0),
        reason_kind: "no_reply".into(),
        reason: "no reply within 30s".into(),
    };
    store
        .commit_runs(&[], 100_000, None, &[widget], &[], MONDAY as f64)
        .expect("record the widget's incident");
    let zone = jiff::tz::TimeZone::get("Europe/Moscow").expect("zone");
    let history = History::new(&store, at(MONDAY));
    let week =
        report::build(&history, "demo", Duration::from_secs(7 * 86_400), &zone).expect("report");
    let extras = Extras::default();
    let en = content::compose(Language::En, MONDAY, &week, &targets(), &extras, &zone);
    assert!(
        en.text.contains("Chat: up 100 %, 1 incident; median 3 s"),
        "{}",
        en.text
    );
    assert!(
        en.text
            .contains("Chat, Tue 01 Dec 23:05 – Tue 01 Dec 23:25 (20 min): is not answering"),
        "{}",
        en.text
    );
    assert_eq!(
        en.text.matches("Chat, Tue 01 Dec").count(),
        1,
        "{}",
        en.text
    );
    let ru = content::compose(Language::Ru, MONDAY, &week, &targets(), &extras, &zone);
    assert!(
        ru.text.contains("Чат: работал 100 %, сбоев: 1"),
        "{}",
        ru.text
    );

    let json = serde_json::to_value(&week).expect("json");
    let chat = json["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["channel"] == "chat")
        .expect("chat")
        .clone();
    assert_eq!(chat["incidents"].as_array().map(Vec::len), Some(2));
    assert_eq!(chat["outages"].as_u64(), Some(1));
    assert!(chat.get("outage_list").is_none(), "{chat}");
}

/// A config with one check of shop `demo`, its owner's Telegram at `telegram`, the digest on
/// Mondays at 09:00 Moscow time, and the database in `dir`.
fn config(dir: &std::path::Path, notifier: &str) -> supportwatch::assemble::Prepared {
    common::prepare(&format!(
        "storage: {{ path: {db:?} }}
notifiers:
{notifier}
digest:
  every: Mon 09:00
  timezone: Europe/Moscow
  notifiers: [owner]
  targets: {{ feedback_form: 2h, chat: 10m, callback: 15m }}
checks:
  - {{ name: contact, kind: http, url: \"http://127.0.0.1:9/\", labels: {{ shop: demo }} }}
",
        db = dir.join("history.db").display().to_string()
    ))
}

/// The alerting task on `store` at the clock's time, with the sender of its run reports (the
/// task ends when that closes); stopped by the caller.
fn start(
    store: &Arc<Store>,
    prepared: &supportwatch::assemble::Prepared,
    clock: &Arc<Mutex<SystemTime>>,
) -> (AlertService, Reports) {
    let (tx, reports) = tokio::sync::broadcast::channel(8);
    let now = clock.clone();
    let service = AlertService::start(
        store.clone(),
        prepared.alert_setup(),
        reports,
        Arc::new(Metrics::new()),
        Arc::new(move || *now.lock().expect("clock")),
    )
    .expect("start alerting");
    (service, tx)
}

type Reports = tokio::sync::broadcast::Sender<Arc<supportwatch::outcome::RunReport>>;

/// Waits until `store` records `period` for shop `demo` (the tick has seen it).
async fn recorded(store: &Store, period: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store.digest_periods().expect("periods").get("demo") != Some(&period) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "period {period} never recorded: {:?}",
            store.digest_periods()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn titles(telegram: &Recorder) -> Vec<String> {
    telegram
        .requests()
        .iter()
        .map(|r| {
            let text = r.json()["text"].as_str().unwrap_or_default().to_string();
            text.lines().next().unwrap_or_default().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_goes_once_per_period_across_restarts_and_a_downtime_sends_only_the_latest() {
    let telegram = Recorder::start().await;
    telegram.answer_always(Answer::json(200, serde_json::json!({"ok": true})));
    let dir = tempfile::tempdir().expect("tempdir");
    let prepared = config(
        dir.path(),
        &format!(
            "  owner: {{ kind: telegram, api_url: \"{}\", bot_token: \"1:x\", chat_id: \"42\" }}",
            telegram.url("")
        ),
    );
    let store = Arc::new(Store::open(&dir.path().join("history.db")).expect("open"));
    seed(&store);
    let week = 7 * DAY;

    // First start on a Wednesday: the week in progress counts as sent, nothing goes out.
    let clock = Arc::new(Mutex::new(at(MONDAY - 5 * DAY)));
    let (service, _reports) = start(&store, &prepared, &clock);
    recorded(&store, MONDAY - week).await;
    service.stop().await;
    assert!(telegram.requests().is_empty(), "{:?}", titles(&telegram));

    // Monday 09:00:01: the digest of the seeded week goes out once.
    *clock.lock().expect("clock") = at(MONDAY + 1);
    let (service, _reports) = start(&store, &prepared, &clock);
    telegram
        .wait_until("the digest", |got| !got.is_empty())
        .await;
    recorded(&store, MONDAY).await;
    service.stop().await;
    let got = telegram.requests();
    assert_eq!(titles(&telegram), ["demo: weekly report, 30 Nov – 07 Dec"]);
    let text = got[0].json()["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(text.contains("2,016 form submissions"), "{text}");
    assert!(text.contains("(target 15 min: not met)"), "{text}");

    // A restart an hour later, in the same period: nothing again. Then, in the same run, the
    // clock jumps three weeks (the daemon was "down" over two Mondays): one digest, of the
    // latest week, not three.
    *clock.lock().expect("clock") = at(MONDAY + 3600);
    let (service, _reports) = start(&store, &prepared, &clock);
    // Ticks come every 500 ms; ten of them would have sent a duplicate.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(telegram.requests().len(), 1, "{:?}", titles(&telegram));
    *clock.lock().expect("clock") = at(MONDAY + 3 * week + 60);
    telegram
        .wait_until("the latest digest", |got| got.len() >= 2)
        .await;
    recorded(&store, MONDAY + 3 * week).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    service.stop().await;
    assert_eq!(
        titles(&telegram),
        [
            "demo: weekly report, 30 Nov – 07 Dec",
            "demo: weekly report, 21 Dec – 28 Dec"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_e_mail_digest_is_html_with_a_text_part() {
    let mail = tempfile::tempdir().expect("tempdir");
    let maildir = mail.path().join("owner");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let smtp = listener.local_addr().expect("addr");
    let stop = tokio_util::sync::CancellationToken::new();
    let server = supportwatch::demo::smtp::MailServer {
        mailboxes: Arc::new(HashMap::from([(
            "owner@shop.example".to_string(),
            maildir.clone(),
        )])),
        auto_reply_from: None,
        broken: Arc::new(supportwatch::demo::shop::Breaks::new(BTreeSet::new())),
    };
    // The capturing mail server, until the test ends.
    tokio::spawn(server.serve(listener, stop.clone()));
    let dir = tempfile::tempdir().expect("tempdir");
    let prepared = config(
        dir.path(),
        &format!(
            "  owner: {{ kind: email, smtp: \"smtp://{smtp}\", from: monitor@shop.example, to: [owner@shop.example], language: ru }}"
        ),
    );
    let store = Arc::new(Store::open(&dir.path().join("history.db")).expect("open"));
    seed(&store);
    let clock = Arc::new(Mutex::new(at(MONDAY + 60)));
    let (service, _reports) = start(&store, &prepared, &clock);
    service.commands().digest_now().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let message = loop {
        let mut files = std::fs::read_dir(maildir.join("new")).expect("read maildir");
        if let Some(Ok(file)) = files.next() {
            break std::fs::read_to_string(file.path()).expect("read message");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no digest e-mail arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    service.stop().await;
    stop.cancel();
    // One message, multipart/alternative: the text part and the HTML part.
    assert!(
        message.contains("Content-Type: multipart/alternative"),
        "{message}"
    );
    assert_eq!(
        message.matches("Content-Type: text/plain").count(),
        1,
        "{message}"
    );
    assert_eq!(
        message.matches("Content-Type: text/html").count(),
        1,
        "{message}"
    );
    let parsed = mail_parser::MessageParser::default()
        .parse(message.as_bytes())
        .expect("parse the e-mail");
    let text = parsed.body_text(0).expect("text part");
    assert!(text.contains("заявок на звонок: 96"), "{text}");
    let html = parsed.body_html(0).expect("html part");
    assert!(html.contains("<li>Чат, 01.12 23:05"), "{html}");
    let subject = parsed.subject().unwrap_or_default();
    assert!(subject.starts_with("demo: отчёт за неделю"), "{subject}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_digest_now_reaches_the_owners_telegram() {
    supportwatch::tlsconf::install_crypto_provider();
    let (shop, daemon) =
        supportwatch::demo::start("127.0.0.1:0".parse().expect("addr"), BTreeSet::new())
            .await
            .expect("demo starts");
    supportwatch::demo::digest_after_first_runs(&daemon).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let digest = loop {
        if let Some(m) = shop
            .owner_inbox
            .messages()
            .into_iter()
            .find(|m| m.contains("weekly report"))
        {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the owner got {:?}",
            shop.owner_inbox.messages()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(digest.contains("demo: weekly report"), "{digest}");
    assert!(digest.contains("Feedback form: up 100 %"), "{digest}");
    assert!(digest.contains("form submissions"), "{digest}");
    assert!(daemon.stop().await);
}

#[test]
fn report_prints_the_digest_as_html_and_the_verdict_in_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("history.db");
    let yaml = format!(
        "storage: {{ path: {db:?} }}
notifiers:
  owner: {{ kind: telegram, bot_token: \"1:x\", chat_id: \"42\" }}
digest: {{ every: Mon 09:00, notifiers: [owner], targets: {{ callback: 15m }} }}
checks:
  - {{ name: callback, kind: http, url: \"http://127.0.0.1:9/\", labels: {{ shop: demo }} }}
",
        db = db.display().to_string()
    );
    std::fs::write(dir.path().join("shop.yaml"), yaml).expect("write config");
    let store = Store::open(&db).expect("open");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let runs: Vec<RunRecord> = (0..10)
        .map(|i| {
            run(
                "callback",
                "callback",
                "callback",
                now - 3600 - i * 600,
                false,
                1200.0,
            )
        })
        .collect();
    store
        .commit_runs(&runs, 1000, None, &[], &[], now as f64)
        .expect("seed");
    let report = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_supportwatch"))
            .args(["report", "--shop", "demo", "--format", format, "--config"])
            .arg(dir.path())
            .output()
            .expect("run report");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let html = report("html");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("<li>10 callbacks</li>"), "{html}");
    assert!(html.contains("(target 15 min: not met)</li>"), "{html}");
    let json: serde_json::Value = serde_json::from_str(&report("json")).expect("json");
    let callback = &json["channels"][0];
    assert_eq!(callback["target_seconds"], 900.0, "{json}");
    assert_eq!(callback["target_met"], false, "{json}");
    assert!(report("text").contains("15 min NOT met"));
}
