//! The `form` probe against a real test shop on loopback: what arrives at the server (CSRF token,
//! session cookie, the run's token), every way a form check fails, and delivery into a Maildir.

mod common;

use common::forms::{FormShop, start_form_shop};
use common::{closed_port, run_once, start_shop, start_silent};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use supportwatch::outcome::{FailureKind, Observation};
use supportwatch::outcome::{RunReport, RunResult};

/// The YAML with `$SHOP` replaced by the shop's base URL (keeps `{{token}}` readable).
fn with_shop(yaml: &str, shop: &FormShop) -> String {
    yaml.replace("$SHOP", &shop.url(""))
}

async fn run(yaml: &str, shop: &FormShop) -> RunReport {
    run_once(&with_shop(yaml, shop)).await
}

/// Runs `yaml`'s check, which must fail with `kind` and exactly `message`.
async fn assert_fails(yaml: &str, shop: &FormShop, kind: FailureKind, message: &str) {
    let report = run(yaml, shop).await;
    let failure = report.failure.expect("the check must fail");
    assert_eq!(failure.message, message);
    assert_eq!(failure.kind, kind, "{}", failure.message);
    assert_eq!(report.result, RunResult::Failure);
}

const FEEDBACK: &str = r##"
checks:
  - name: feedback-form
    kind: form
    channel: feedback_form
    retries: 0
    url: "$SHOP/feedback"
    form: "form#feedback"
    fields:
      name: Monitoring
      email: monitor@example.ru
      message: "Automated test {{token}}, please ignore"
    expect: { status: 200, body: "(?i)спасибо|thank you" }
"##;

#[tokio::test]
async fn a_feedback_form_passes_carrying_session_cookie_csrf_token_and_run_token() {
    let shop = start_form_shop().await;
    let report = run(FEEDBACK, &shop).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert!(report.observations.contains(&Observation::HttpStatus(200)));
    let phases: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(phases, ["load", "parse", "submit"]);

    // What the server received: the session cookie it set on the redirect, the token it put in
    // the page (as field and header), the run's token in the message, an honest User-Agent.
    let submissions = shop.submissions();
    assert_eq!(submissions.len(), 1);
    let s = &submissions[0];
    let sessions = shop.sessions();
    assert_eq!(sessions.len(), 1, "one session for the whole run");
    assert_eq!(s.header("cookie"), format!("sid={}", sessions[0]));
    let csrf = s.field("_csrf").expect("the hidden CSRF input is carried");
    assert!(csrf.starts_with("csrf-"), "{csrf}");
    assert_eq!(s.header("x-csrf-token"), csrf);
    assert_eq!(
        s.field("message"),
        Some(format!("Automated test {}, please ignore", report.token).as_str())
    );
    assert_eq!(s.header("x-supportwatch-token"), report.token);
    assert!(
        s.header("user-agent")
            .contains("automated support-channel test")
    );
    assert_eq!(s.header("referer"), shop.url("/feedback"));
    assert_eq!(s.header("origin"), shop.url(""));
    assert_eq!(
        s.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    // Defaults a browser sends, in form order; no disabled field, no unchecked box, and the
    // submit button's name and value.
    let names: Vec<&str> = s.fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "_csrf", "name", "email", "phone", "topic", "agree", "message", "send"
        ]
    );
    assert_eq!(s.field("topic"), Some("other"));
    assert_eq!(s.field("agree"), Some("yes"));
    assert_eq!(s.field("send"), Some("1"));
    // The 303 to the thank-you page was followed with the session cookie.
    assert_eq!(shop.state.thanks_shown.load(Ordering::SeqCst), 1);

    let details = report.details.join("\n");
    let port = shop.addr.port();
    let expected = format!(
        "page http://127.0.0.1:{port}/feedback: status 200\n\
         form \"form#feedback\": POST http://127.0.0.1:{port}/feedback/send, urlencoded\n\
         sent 7 fields (1 hidden, 3 defaults, 3 filled)\n\
         submit button \"send\"\n\
         cookies carried: sid\n\
         CSRF token from <meta name=\"csrf-token\"> sent as X-CSRF-Token\n\
         answer from http://127.0.0.1:{port}/feedback/thanks\n\
         status 200\n"
    );
    assert!(details.starts_with(&expected), "{details}");
    // Field values and the CSRF token never show; templates would, values do not.
    assert!(
        !details.contains("Monitoring") && !details.contains(csrf),
        "{details}"
    );
}

#[tokio::test]
async fn a_stale_csrf_token_is_refused_by_the_shop_and_reported_as_its_status() {
    let shop = start_form_shop().await;
    let stale = FEEDBACK.replace("/feedback\"", "/feedback?stale=1\"");
    let report = run(&stale, &shop).await;
    let failure = report.failure.expect("a 403 fails the check");
    assert_eq!(failure.kind, FailureKind::Status);
    assert_eq!(failure.message, "status 403, expected 200");
    assert!(report.observations.contains(&Observation::HttpStatus(403)));
    // The shop's guard is real: a post without the session cookie is refused too.
    let blind = run(
        r##"
checks:
  - name: blind-post
    kind: http
    method: POST
    url: "$SHOP/feedback/send"
    form: { _csrf: "csrf-0-17", message: "hello" }
    expect: { status: 403, body: "no session" }
"##,
        &shop,
    )
    .await;
    assert_eq!(blind.result, RunResult::Success, "{:?}", blind.failure);
}

const CF7: &str = r##"
checks:
  - name: wp-contact
    kind: form
    channel: feedback_form
    retries: 0
    url: "$SHOP/wp/contact/"
    form: "form.wpcf7-form"
    action: "/wp-json/contact-form-7/v1/contact-forms/42/feedback"
    fields:
      your-name: Monitoring
      your-email: monitor@example.ru
      your-message: "Automated test {{token}}, please ignore"
    expect:
      json: { /status: mail_sent }
"##;

#[tokio::test]
async fn contact_form_7_posts_its_nonces_to_the_rest_endpoint_and_reads_the_json_answer() {
    let shop = start_form_shop().await;
    let report = run(CF7, &shop).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    let s = &shop.submissions()[0];
    assert_eq!(
        s.path,
        "/wp-json/contact-form-7/v1/contact-forms/42/feedback"
    );
    assert_eq!(s.field("_wpcf7"), Some("42"));
    assert_eq!(s.field("_wpcf7_unit_tag"), Some("wpcf7-f42-p7-o1"));
    assert_eq!(s.field("_wpcf7_posted_data_hash"), Some(""));
    assert!(
        s.field("your-message")
            .is_some_and(|m| m.contains(&report.token))
    );
    assert!(
        report
            .details
            .iter()
            .any(|d| d
                .contains("POST /wp-json/contact-form-7/v1/contact-forms/42/feedback (action:)")),
        "{:?}",
        report.details
    );

    // CF7 marks fields with aria-required, not `required`: the shop's own validation answers.
    assert_fails(
        &CF7.replace("      your-email: monitor@example.ru\n", ""),
        &shop,
        FailureKind::Expectation,
        "JSON `/status` is \"validation_failed\", expected \"mail_sent\"",
    )
    .await;
    // Without `action:` the form posts to the page, which answers HTML.
    let fallback = run(
        &CF7.replace(
            "    action: \"/wp-json/contact-form-7/v1/contact-forms/42/feedback\"\n",
            "",
        ),
        &shop,
    )
    .await;
    let failure = fallback.failure.expect("HTML is not JSON");
    assert!(
        failure.message.starts_with("body is not JSON"),
        "{}",
        failure.message
    );
    assert_eq!(
        shop.submissions().last().map(|s| s.path.as_str()),
        Some("/wp/contact/")
    );
}

#[tokio::test]
async fn a_form_answering_json_is_judged_by_expect_json() {
    let shop = start_form_shop().await;
    let yaml = r##"
checks:
  - name: ticket
    kind: form
    retries: 0
    url: "$SHOP/ticket"
    fields: { subject: "Automated test {{token}}" }
    expect: { json: { /ok: true, /ticket: 1042 } }
"##;
    let report = run(yaml, &shop).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert_fails(
        &yaml.replace("/ticket: 1042", "/ticket: 1"),
        &shop,
        FailureKind::Expectation,
        "JSON `/ticket` is 1042, expected 1",
    )
    .await;
}

#[tokio::test]
async fn a_multipart_form_uploads_the_file_with_the_token() {
    let shop = start_form_shop().await;
    let yaml = r##"
checks:
  - name: claim
    kind: form
    retries: 0
    url: "$SHOP/upload"
    form: "#claim"
    fields: { message: "Automated test {{token}}" }
    files:
      attachment: { name: "test.txt", content: "automated test {{token}}", content_type: text/plain }
    expect: { body: "файл test.txt получен" }
"##;
    let report = run(yaml, &shop).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    let s = &shop.submissions()[0];
    assert!(
        s.header("content-type")
            .starts_with("multipart/form-data; boundary=")
    );
    assert_eq!(s.field("nonce"), Some("n-77"));
    let file = &s.files[0];
    assert_eq!(
        (
            file.field.as_str(),
            file.file_name.as_str(),
            file.content_type.as_str()
        ),
        ("attachment", "test.txt", "text/plain")
    );
    assert_eq!(file.content, format!("automated test {}", report.token));
    // The empty file input is sent as an empty part, as a browser does.
    assert_eq!(s.files.len(), 2);
    assert_eq!(s.files[1].file_name, "");

    // Without the required file the form is never sent.
    let before = shop.submissions().len();
    assert_fails(
        &yaml.replace(
            "      attachment: { name: \"test.txt\", content: \"automated test {{token}}\", content_type: text/plain }\n",
            "      photo: { name: \"p.jpg\", content: \"x\" }\n",
        ),
        &shop,
        FailureKind::Expectation,
        "required field \"attachment\" of form \"#claim\" is empty; set it under `files:`",
    )
    .await;
    assert_eq!(shop.submissions().len(), before);
}

#[tokio::test]
async fn a_get_form_sends_its_fields_in_the_query_string() {
    let shop = start_form_shop().await;
    let report = run(
        r##"
checks:
  - name: search
    kind: form
    retries: 0
    url: "$SHOP/feedback"
    form: "#search"
    fields: { q: "{{token}}" }
    expect: { body: "по запросу «sw-search-\\d+-[0-9a-f]{8}» \\(lang=ru\\)" }
"##,
        &shop,
    )
    .await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    let port = shop.addr.port();
    assert!(
        report.details.contains(&format!(
            "form \"#search\": GET http://127.0.0.1:{port}/search, query string"
        )),
        "{:?}",
        report.details
    );
    // The query holds the token: details show that there is one, never what it is.
    assert!(
        report
            .details
            .contains(&format!("answer from http://127.0.0.1:{port}/search?…")),
        "{:?}",
        report.details
    );
}

#[tokio::test]
async fn thanks_with_an_error_status_or_the_wrong_text_fails_with_the_precise_reason() {
    let shop = start_form_shop().await;
    let yaml = r##"
checks:
  - name: broken
    kind: form
    retries: 0
    url: "$SHOP/broken"
    form: "#FORM"
    fields: { message: "Automated test {{token}}" }
    expect: { body: "(?i)спасибо|thank you" }
"##;
    assert_fails(
        &yaml.replace("FORM", "fail500"),
        &shop,
        FailureKind::Status,
        "status 500, expected 2xx",
    )
    .await;
    assert_fails(
        &yaml.replace("FORM", "wrong"),
        &shop,
        FailureKind::Expectation,
        "body does not match /(?i)спасибо|thank you/",
    )
    .await;
}

#[tokio::test]
async fn a_selector_matching_no_form_names_the_forms_on_the_page() {
    let shop = start_form_shop().await;
    assert_fails(
        &FEEDBACK.replace("form#feedback", "form#contact"),
        &shop,
        FailureKind::Expectation,
        &format!(
            "no form matches \"form#contact\" on {} (the page has 3 forms: #search, #feedback, #subscribe)",
            shop.url("/feedback")
        ),
    )
    .await;
    // A selector matching several forms uses the first, and says so.
    let report = run(
        &FEEDBACK.replace("form#feedback", "form[method=post]"),
        &shop,
    )
    .await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert!(
        report.details[1].starts_with("form \"form[method=post]\" (first of 2 matches): POST"),
        "{:?}",
        report.details
    );
}

#[tokio::test]
async fn an_unknown_field_fails_listing_the_form_s_fields() {
    let shop = start_form_shop().await;
    assert_fails(
        &FEEDBACK.replace("      email:", "      e-mail:"),
        &shop,
        FailureKind::Expectation,
        "form \"form#feedback\" has no field \"e-mail\" (its fields: _csrf, name, email, phone, topic, agree, newsletter, message)",
    )
    .await;
    assert!(shop.submissions().is_empty(), "nothing is sent");
}

#[tokio::test]
async fn a_required_field_left_empty_is_named() {
    let shop = start_form_shop().await;
    assert_fails(
        &FEEDBACK.replace("      email: monitor@example.ru\n", ""),
        &shop,
        FailureKind::Expectation,
        "required field \"email\" of form \"form#feedback\" is empty; set it under `fields:`",
    )
    .await;
    assert!(shop.submissions().is_empty(), "nothing is sent");
}

#[tokio::test]
async fn the_submit_selector_picks_the_button_or_names_the_buttons_there_are() {
    let shop = start_form_shop().await;
    let picked = FEEDBACK.replace(
        "    form: \"form#feedback\"\n",
        "    form: \"form#feedback\"\n    submit: \"button[name=send]\"\n",
    );
    let report = run(&picked, &shop).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert_eq!(shop.submissions()[0].field("send"), Some("1"));
    assert_fails(
        &picked.replace("button[name=send]", "button[name=go]"),
        &shop,
        FailureKind::Expectation,
        "no submit button in form \"form#feedback\" matches \"button[name=go]\" (its submit buttons: name=send)",
    )
    .await;
}

#[tokio::test]
async fn a_page_that_is_missing_or_too_large_fails_clearly() {
    let forms = start_form_shop().await;
    assert_fails(
        &FEEDBACK.replace("/feedback\"", "/nope\""),
        &forms,
        FailureKind::Status,
        &format!(
            "page {} answered status 404, expected 2xx",
            forms.url("/nope")
        ),
    )
    .await;
    // A 2 GB page: read up to max_body, then the connection is dropped.
    let shop = start_shop("127.0.0.1").await;
    let report = run_once(&format!(
        "checks:\n  - name: huge\n    kind: form\n    retries: 0\n    url: \"{}\"\n    max_body: 64KiB\n",
        shop.url("/huge")
    ))
    .await;
    let failure = report.failure.expect("must fail");
    assert_eq!(failure.kind, FailureKind::Expectation);
    assert_eq!(
        failure.message,
        format!(
            "page {} is larger than max_body (65536 bytes), so its form cannot be read whole; raise max_body",
            shop.url("/huge")
        )
    );
    // Give the server time to notice the dropped connection: what it sent stays bounded.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let sent = shop.stats.huge_bytes_sent.load(Ordering::SeqCst);
    assert!(sent < 64 << 20, "server produced {sent} bytes");
}

#[tokio::test]
async fn a_refused_connection_names_the_request() {
    let port = closed_port();
    let report = run_once(&format!(
        "checks:\n  - name: down\n    kind: form\n    retries: 0\n    url: \"http://127.0.0.1:{port}/contacts\"\n"
    ))
    .await;
    let failure = report.failure.expect("must fail");
    assert_eq!(failure.kind, FailureKind::Connect, "{}", failure.message);
    assert!(
        failure
            .message
            .starts_with(&format!("GET http://127.0.0.1:{port}/contacts: ")),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_hanging_server_is_timed_out_in_the_phase_it_hangs_in() {
    let silent = start_silent("127.0.0.1").await;
    let report = run_once(&format!(
        "checks:\n  - name: hang\n    kind: form\n    retries: 0\n    timeout: 1s\n    url: \"http://{silent}/contacts\"\n"
    ))
    .await;
    assert_eq!(report.result, RunResult::Timeout);
    assert_eq!(
        report.failure.map(|f| f.message).as_deref(),
        Some("timed out after 1s during load")
    );
    // The page loads, the endpoint the form posts to never answers.
    let shop = start_form_shop().await;
    let report = run(
        &CF7.replace(
            "/wp-json/contact-form-7/v1/contact-forms/42/feedback",
            &format!("http://{silent}/feedback"),
        )
        .replace("retries: 0", "retries: 0\n    timeout: 1s"),
        &shop,
    )
    .await;
    assert_eq!(report.result, RunResult::Timeout);
    assert_eq!(
        report.failure.map(|f| f.message).as_deref(),
        Some("timed out after 1s during submit")
    );
}

fn maildir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("support");
    common::make_maildir(&root);
    (dir, root)
}

fn delivering(root: &std::path::Path, within: &str) -> String {
    format!(
        "mailboxes:\n  support: {{ maildir: \"{}\", poll_interval: 100ms }}\n{}    deliver: {{ mailbox: support, within: {within} }}\n",
        root.display(),
        FEEDBACK
    )
}

#[tokio::test]
async fn deliver_proves_the_message_reached_the_mailbox() {
    let shop = start_form_shop().await;
    let (_dir, root) = maildir();
    shop.deliver_to(root.clone());
    let report = run(&delivering(&root, "10s"), &shop).await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert!(
        common::delivery_latency(&report).is_some(),
        "{:?}",
        report.observations
    );
    let phases: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(phases, ["load", "parse", "submit", "deliver"]);
    common::assert_test_message_deleted(&report);
}

#[tokio::test]
async fn a_message_that_never_arrives_fails_as_not_delivered() {
    let shop = start_form_shop().await;
    let (_dir, root) = maildir();
    let report = run(&delivering(&root, "1s"), &shop).await;
    let failure = report.failure.expect("nothing was delivered");
    assert_eq!(failure.kind, FailureKind::NotDelivered);
    assert!(
        failure.message.starts_with("not delivered within 1s"),
        "{}",
        failure.message
    );
}

/// Config problems, each reported at load with the check's location.
fn load_error(yaml: &str) -> String {
    match supportwatch::config::load_sources(&[(PathBuf::from("t.yaml"), yaml.to_string())])
        .and_then(supportwatch::assemble::prepare)
    {
        Ok(_) => panic!("must be refused:\n{yaml}"),
        Err(e) => {
            e.0.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        }
    }
}

#[test]
fn config_problems_are_reported_at_load_with_their_location() {
    let check = "checks:\n  - name: f\n    kind: form\n    url: https://shop.example/contacts\n";
    let cases = [
        (
            "    fields: { message: \"{{token}}\" }\n    deliver: { mailbox: support }\n",
            "t.yaml:2:5: check \"f\": deliver: unknown mailbox `support` (none are declared under `mailboxes:`)",
        ),
        (
            "    form: \"form[[\"\n",
            "t.yaml:2:5: check \"f\": invalid CSS selector `form[[` in `form`: no qualified name in attribute selector",
        ),
        (
            "    submit: \"button[\"\n",
            "t.yaml:2:5: check \"f\": invalid CSS selector `button[` in `submit`: Unexpected EOL",
        ),
        (
            "    feilds: { a: b }\n",
            "t.yaml:5:5: check \"f\": unknown field `feilds`, expected one of url, form, fields, files, submit, action, headers, expect, active_hours, outside_hours, max_redirects, max_body, ca_file, deliver, via, steps, step_timeout, fail_on_console_error (did you mean `fields`?)",
        ),
        (
            "    files: { cv: { name: a.txt, content: x, content_type: \"not a type\" } }\n",
            "t.yaml:2:5: check \"f\": files.cv.content_type `not a type` is not a MIME type like text/plain",
        ),
        (
            "    action: \"mailto:support@example.ru\"\n",
            "t.yaml:2:5: check \"f\": action `mailto:support@example.ru` must be an http(s) URL",
        ),
        (
            "    expect: { json: { status: ok } }\n",
            "t.yaml:2:5: check \"f\": expect.json key `status` is not a JSON pointer; write `/status`",
        ),
    ];
    for (extra, expected) in cases {
        assert_eq!(load_error(&format!("{check}{extra}")), expected, "{extra}");
    }
    // A delivery is recognised by the token, so the form must send it.
    let mailbox = "mailboxes:\n  support: { maildir: /tmp/nowhere }\n";
    assert_eq!(
        load_error(&format!(
            "{mailbox}{check}    fields: {{ message: hello }}\n    deliver: {{ mailbox: support }}\n"
        )),
        "t.yaml:4:5: check \"f\": deliver needs the run's token in what the form sends: put {{token}} in a field, e.g. message: \"Automated test {{token}}, please ignore\""
    );
}

#[test]
fn list_shows_the_form_and_page_templates_not_secrets() {
    let prepared = common::prepare_with(
        "checks:\n  - name: f\n    kind: form\n    url: \"https://shop.example/contacts?key=${FORM_KEY}\"\n    form: \"#feedback\"\n",
        &[("FORM_KEY", "s3cr3t")],
    );
    let summary = prepared.checks[0].check.spec.summary();
    assert_eq!(
        summary,
        "form \"#feedback\" at https://shop.example/contacts?key=${FORM_KEY}"
    );
}
