//! A test shop with HTML forms, on loopback: a feedback form guarded by a CSRF token tied to a
//! session cookie, a Contact Form 7 look-alike with its REST endpoint, a form answering JSON, a
//! multipart upload form, a GET search form and forms whose handlers are broken. Every submission
//! is recorded so that tests can assert what actually arrived.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What one form submission brought.
#[derive(Clone, Debug, Default)]
pub struct Submission {
    /// Path posted to.
    pub path: String,
    /// Text fields in the order received.
    pub fields: Vec<(String, String)>,
    /// Uploaded files.
    pub files: Vec<UploadedFile>,
    /// Request headers (lowercase names).
    pub headers: HashMap<String, String>,
}

impl Submission {
    /// The first value of field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// Header `name` (lowercase), or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

/// A file part of a multipart submission.
#[derive(Clone, Debug, Default)]
pub struct UploadedFile {
    pub field: String,
    pub file_name: String,
    pub content_type: String,
    pub content: String,
}

#[derive(Default)]
pub struct FormShopState {
    /// Session id → the CSRF token issued with it.
    sessions: Mutex<HashMap<String, String>>,
    next_session: AtomicU64,
    submissions: Mutex<Vec<Submission>>,
    /// Thank-you pages shown to a known session.
    pub thanks_shown: AtomicU64,
    /// Where accepted feedback is "mailed" (a Maildir), when set.
    maildir: Mutex<Option<PathBuf>>,
}

/// A running form shop.
pub struct FormShop {
    pub addr: SocketAddr,
    pub state: Arc<FormShopState>,
}

impl FormShop {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    /// Every submission so far, accepted or not.
    pub fn submissions(&self) -> Vec<Submission> {
        lock(&self.state.submissions).clone()
    }
    /// Session ids handed out so far.
    pub fn sessions(&self) -> Vec<String> {
        lock(&self.state.sessions).keys().cloned().collect()
    }
    /// From now on, accepted feedback is delivered as a mail into the Maildir at `dir`.
    pub fn deliver_to(&self, dir: PathBuf) {
        *lock(&self.state.maildir) = Some(dir);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the form shop on `127.0.0.1:0`.
pub async fn start_form_shop() -> FormShop {
    let state = Arc::new(FormShopState::default());
    let app = Router::new()
        .route("/feedback", get(feedback_page))
        .route("/feedback/send", post(feedback_send))
        .route("/feedback/thanks", get(feedback_thanks))
        .route("/search", get(search))
        .route("/wp/contact/", get(cf7_page).post(cf7_fallback))
        .route(
            "/wp-json/contact-form-7/v1/contact-forms/{id}/feedback",
            post(cf7_rest),
        )
        .route("/ticket", get(ticket_page))
        .route("/api/tickets", post(ticket_send))
        .route("/upload", get(upload_page))
        .route("/upload/send", post(upload_send))
        .route("/broken", get(broken_page))
        .route("/broken/500", post(broken_500))
        .route("/broken/wrong", post(broken_wrong))
        .with_state(state.clone());
    let addr = super::serve(app).await;
    FormShop { addr, state }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// Records a submission: URL-encoded or multipart body, and the headers.
fn record(state: &FormShopState, path: &str, headers: &HeaderMap, body: &[u8]) -> Submission {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut submission = Submission {
        path: path.to_string(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        ..Submission::default()
    };
    if let Some(boundary) = content_type.split("boundary=").nth(1) {
        parse_multipart(body, boundary.trim_matches('"'), &mut submission);
    } else {
        submission.fields = url::form_urlencoded::parse(body).into_owned().collect();
    }
    lock(&state.submissions).push(submission.clone());
    submission
}

/// Just enough of RFC 7578 for the test: parts split on the boundary, a name, maybe a file name.
fn parse_multipart(body: &[u8], boundary: &str, submission: &mut Submission) {
    let text = String::from_utf8_lossy(body);
    for part in text.split(&format!("--{boundary}")) {
        let Some((head, content)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let content = content.strip_suffix("\r\n").unwrap_or(content).to_string();
        let param = |key: &str| {
            head.split(&format!("{key}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(str::to_string)
        };
        let Some(name) = param("name") else { continue };
        match param("filename") {
            Some(file_name) => submission.files.push(UploadedFile {
                field: name,
                file_name,
                content_type: head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Type: "))
                    .or_else(|| head.lines().find_map(|l| l.strip_prefix("content-type: ")))
                    .unwrap_or("")
                    .to_string(),
                content,
            }),
            None => submission.fields.push((name, content)),
        }
    }
}

// (a) The feedback form: a session cookie set on a redirect, a CSRF token tied to it.

#[derive(serde::Deserialize)]
struct PageQuery {
    /// Renders a token that does not belong to the session, as a cached page would.
    stale: Option<String>,
}

async fn feedback_page(
    State(state): State<Arc<FormShopState>>,
    Query(query): Query<PageQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let known = cookie(&headers, "sid").and_then(|sid| lock(&state.sessions).get(&sid).cloned());
    let Some(csrf) = known else {
        // A new visitor gets the session cookie on a redirect back to the same page.
        let n = state.next_session.fetch_add(1, Ordering::SeqCst);
        let sid = format!("s{n:04}");
        lock(&state.sessions).insert(sid.clone(), format!("csrf-{n}-{}", n * 7919 + 17));
        return (
            StatusCode::FOUND,
            [
                ("set-cookie", format!("sid={sid}; Path=/; HttpOnly")),
                ("location", uri.to_string()),
            ],
        )
            .into_response();
    };
    let csrf = if query.stale.is_some() {
        "csrf-from-yesterday".to_string()
    } else {
        csrf
    };
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><meta name="csrf-token" content="{csrf}"><title>Контакты</title></head>
<body>
<form id="search" action="/search" method="get"><input name="q"><input type="hidden" name="lang" value="ru"><button>Найти</button></form>
<form id="feedback" action="/feedback/send" method="post">
  <input type="hidden" name="_csrf" value="{csrf}">
  <label>Имя <input name="name" required></label>
  <label>E-mail <input type="email" name="email" required></label>
  <label>Телефон <input type="tel" name="phone"></label>
  <select name="topic"><option value="order">Заказ</option><option value="other" selected>Другое</option></select>
  <label><input type="checkbox" name="agree" value="yes" checked> Согласен</label>
  <label><input type="checkbox" name="newsletter" value="yes"> Новости</label>
  <textarea name="message" required></textarea>
  <input name="promo" value="SALE" disabled>
  <button type="button" name="preview">Предпросмотр</button>
  <button type="submit" name="send" value="1">Отправить</button>
</form>
<form id="subscribe" action="/subscribe" method="post"><input type="email" name="email"><button>OK</button></form>
</body></html>"#
    ))
    .into_response()
}

async fn feedback_send(
    State(state): State<Arc<FormShopState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let submission = record(&state, "/feedback/send", &headers, &body);
    let issued = cookie(&headers, "sid").and_then(|sid| lock(&state.sessions).get(&sid).cloned());
    let Some(csrf) = issued else {
        return (StatusCode::FORBIDDEN, "Forbidden: no session").into_response();
    };
    if submission.field("_csrf") != Some(csrf.as_str()) || submission.header("x-csrf-token") != csrf
    {
        return (StatusCode::FORBIDDEN, "Forbidden: CSRF check failed").into_response();
    }
    let maildir = lock(&state.maildir).clone();
    if let Some(dir) = maildir {
        let mail = format!(
            "From: shop@example.ru\r\nTo: support@example.ru\r\nSubject: Feedback from {}\r\n\r\n{}\r\n",
            submission.field("name").unwrap_or(""),
            submission.field("message").unwrap_or("")
        );
        let n = state.next_session.fetch_add(1, Ordering::SeqCst);
        let _ = std::fs::write(dir.join("new").join(format!("{n}.shop")), mail);
    }
    // Post/Redirect/Get: the thank-you page is a page of its own.
    (StatusCode::SEE_OTHER, [("location", "/feedback/thanks")]).into_response()
}

async fn feedback_thanks(State(state): State<Arc<FormShopState>>, headers: HeaderMap) -> Response {
    let known = cookie(&headers, "sid").is_some_and(|sid| lock(&state.sessions).contains_key(&sid));
    if !known {
        return Html("Сессия истекла, отправьте форму ещё раз").into_response();
    }
    state.thanks_shown.fetch_add(1, Ordering::SeqCst);
    Html("<h1>Спасибо! Ваше сообщение отправлено</h1>").into_response()
}

// (e) The search form's target.

async fn search(Query(query): Query<HashMap<String, String>>) -> String {
    format!(
        "Найдено 0 результатов по запросу «{}» (lang={})",
        query.get("q").map(String::as_str).unwrap_or(""),
        query.get("lang").map(String::as_str).unwrap_or("")
    )
}

// (b) Contact Form 7: nonces in hidden inputs, submitted by a script to a REST endpoint.

async fn cf7_page() -> Html<&'static str> {
    Html(
        r#"<html><body><div class="wpcf7 no-js" id="wpcf7-f42-p7-o1" lang="ru-RU" dir="ltr">
<form action="/wp/contact/#wpcf7-f42-p7-o1" method="post" class="wpcf7-form init" aria-label="Контактная форма" novalidate="novalidate" data-status="init">
<div style="display: none;">
<input type="hidden" name="_wpcf7" value="42" />
<input type="hidden" name="_wpcf7_version" value="5.9.3" />
<input type="hidden" name="_wpcf7_locale" value="ru_RU" />
<input type="hidden" name="_wpcf7_unit_tag" value="wpcf7-f42-p7-o1" />
<input type="hidden" name="_wpcf7_container_post" value="7" />
<input type="hidden" name="_wpcf7_posted_data_hash" value="" />
</div>
<p><input size="40" class="wpcf7-form-control wpcf7-text wpcf7-validates-as-required" aria-required="true" value="" type="text" name="your-name" /></p>
<p><input size="40" class="wpcf7-form-control wpcf7-email wpcf7-validates-as-required" aria-required="true" value="" type="email" name="your-email" /></p>
<p><textarea cols="40" rows="10" class="wpcf7-form-control wpcf7-textarea" name="your-message"></textarea></p>
<p><input class="wpcf7-form-control wpcf7-submit has-spinner" type="submit" value="Отправить" /></p>
<div class="wpcf7-response-output" aria-hidden="true"></div>
</form></div></body></html>"#,
    )
}

/// Without JavaScript the form posts to the page, which answers with HTML, not JSON.
async fn cf7_fallback(
    State(state): State<Arc<FormShopState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Html<&'static str> {
    record(&state, "/wp/contact/", &headers, &body);
    Html(
        "<html><body><div class=\"wpcf7-response-output\">Спасибо за сообщение.</div></body></html>",
    )
}

async fn cf7_rest(
    State(state): State<Arc<FormShopState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/wp-json/contact-form-7/v1/contact-forms/{id}/feedback");
    let s = record(&state, &path, &headers, &body);
    if s.field("_wpcf7") != Some(id.as_str()) || s.field("_wpcf7_unit_tag").is_none() {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"code": "wpcf7_not_found", "message": "The requested contact form was not found."})),
        )
            .into_response();
    }
    let missing: Vec<&str> = ["your-name", "your-email"]
        .into_iter()
        .filter(|f| s.field(f).unwrap_or("").is_empty())
        .collect();
    let answer = if missing.is_empty() {
        serde_json::json!({
            "contact_form_id": 42, "status": "mail_sent",
            "message": "Thank you for your message. It has been sent.",
            "posted_data_hash": "5d1b1c", "into": "#wpcf7-f42-p7-o1", "invalid_fields": []
        })
    } else {
        serde_json::json!({
            "contact_form_id": 42, "status": "validation_failed",
            "message": "One or more fields have an error. Please check and try again.",
            "into": "#wpcf7-f42-p7-o1",
            "invalid_fields": missing.iter().map(|f| serde_json::json!({"field": f, "message": "Please fill out this field."})).collect::<Vec<_>>()
        })
    };
    axum::Json(answer).into_response()
}

// (c) A form whose handler answers JSON.

async fn ticket_page() -> Html<&'static str> {
    Html(
        r#"<form class="ticket" action="/api/tickets" method="post">
<input type="hidden" name="source" value="web"><input name="subject" required><textarea name="body"></textarea>
<button>Создать обращение</button></form>"#,
    )
}

async fn ticket_send(
    State(state): State<Arc<FormShopState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let s = record(&state, "/api/tickets", &headers, &body);
    axum::Json(serde_json::json!({
        "ok": s.field("source") == Some("web"),
        "ticket": 1042,
        "subject": s.field("subject").unwrap_or(""),
    }))
    .into_response()
}

// (d) A multipart form with a file input.

async fn upload_page() -> Html<&'static str> {
    Html(
        r#"<form id="claim" action="/upload/send" method="post" enctype="multipart/form-data">
<input type="hidden" name="nonce" value="n-77"><textarea name="message" required></textarea>
<input type="file" name="attachment" required><input type="file" name="photo">
<button type="submit">Отправить претензию</button></form>"#,
    )
}

async fn upload_send(
    State(state): State<Arc<FormShopState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let s = record(&state, "/upload/send", &headers, &body);
    match s.files.iter().find(|f| f.field == "attachment") {
        Some(f) if s.field("nonce") == Some("n-77") => {
            format!("Претензия принята, файл {} получен", f.file_name).into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "Нет файла").into_response(),
    }
}

// (f) Handlers that say thanks with an error status, or answer the wrong text.

async fn broken_page() -> Html<&'static str> {
    Html(
        r#"<form id="fail500" action="/broken/500" method="post"><input name="message"><button>Send</button></form>
<form id="wrong" action="/broken/wrong" method="post"><input name="message"><button>Send</button></form>"#,
    )
}

async fn broken_500(
    State(state): State<Arc<FormShopState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, "/broken/500", &headers, &body);
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "Спасибо! Ваше сообщение отправлено",
    )
        .into_response()
}

async fn broken_wrong(
    State(state): State<Arc<FormShopState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, "/broken/wrong", &headers, &body);
    "Ошибка: сообщение не отправлено, попробуйте позже".into_response()
}
