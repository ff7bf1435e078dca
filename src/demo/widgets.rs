//! The demo shop's channels that only work with JavaScript, for the demo's browser checks: a
//! contact form that a script builds and posts as JSON (`/js-contacts`), and a callback widget
//! that opens in an iframe (`/callback`). Both mail support through the demo's SMTP server, so
//! the checks prove the whole trip; `--break feedback_form` silences the form's mail while its
//! page still says thank you.

use super::shop::Break;
use super::shop::{FORM_SUBJECT, ShopState, send_mail};
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

/// The pages and their JSON endpoints.
pub(super) fn routes() -> Router<ShopState> {
    Router::new()
        .route("/js-contacts", get(|| async { Html(JS_CONTACTS) }))
        .route("/api/contact", post(contact))
        .route("/callback", get(|| async { Html(CALLBACK_PAGE) }))
        .route("/callback/widget", get(|| async { Html(CALLBACK_WIDGET) }))
        .route("/api/callback", post(callback))
}

fn text<'a>(body: &'a serde_json::Value, key: &str) -> &'a str {
    body.get(key).and_then(|v| v.as_str()).unwrap_or("").trim()
}

async fn contact(State(state): State<ShopState>, Json(body): Json<serde_json::Value>) -> Response {
    let (name, email, message) = (
        text(&body, "name"),
        text(&body, "email"),
        text(&body, "message"),
    );
    if message.is_empty() {
        return Json(serde_json::json!({ "accepted": false, "error": "Напишите сообщение" }))
            .into_response();
    }
    // As on the classic form: a broken backend still thanks the visitor.
    if !state.broken.contains(&Break::FeedbackForm)
        && let Some(smtp) = state.smtp
    {
        let mail =
            format!("Новое сообщение с сайта (JS)\nИмя: {name}\nE-mail: {email}\n\n{message}\n");
        if let Err(e) = send_mail(smtp, email, FORM_SUBJECT, &mail).await {
            tracing::warn!(error = %e, "demo shop: JS contact form mail not sent");
        }
    }
    Json(serde_json::json!({ "accepted": true })).into_response()
}

async fn callback(State(state): State<ShopState>, Json(body): Json<serde_json::Value>) -> Response {
    let (phone, comment) = (text(&body, "phone"), text(&body, "comment"));
    if phone.is_empty() {
        return Json(serde_json::json!({ "accepted": false })).into_response();
    }
    if let Some(smtp) = state.smtp {
        let mail = format!("Перезвоните, пожалуйста\nТелефон: {phone}\n\n{comment}\n");
        if let Err(e) = send_mail(smtp, "", "Заказ обратного звонка", &mail).await
        {
            tracing::warn!(error = %e, "demo shop: callback request mail not sent");
        }
    }
    Json(serde_json::json!({ "accepted": true })).into_response()
}

/// Nothing but a `<div>` until the script has run, like a single-page app.
const JS_CONTACTS: &str = r#"<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>Контакты</title><link rel="icon" href="data:,"></head>
<body><h1>Напишите нам</h1><div id="app">Загрузка…</div>
<script>
setTimeout(function () {
  document.getElementById('app').innerHTML =
    '<form id="contact">' +
    '<label>Имя <input id="name"></label>' +
    '<label>E-mail <input id="email" type="email"></label>' +
    '<label>Сообщение <textarea id="message"></textarea></label>' +
    '<button id="send" type="submit">Отправить</button>' +
    '</form><p class="result"></p>';
  document.getElementById('contact').addEventListener('submit', function (e) {
    e.preventDefault();
    var value = function (id) { return document.getElementById(id).value; };
    fetch('/api/contact', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: value('name'), email: value('email'), message: value('message') })
    }).then(function (r) { return r.json(); }).then(function (answer) {
      document.querySelector('.result').textContent = answer.accepted
        ? 'Спасибо! Мы ответим в течение 2 часов.'
        : answer.error;
    });
  });
}, 300);
</script></body></html>"#;

/// A button that opens the callback widget in an iframe, as third-party widgets do.
const CALLBACK_PAGE: &str = r#"<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>Demo shop</title><link rel="icon" href="data:,"></head>
<body><h1>Demo shop</h1><button id="callback-button">Перезвоните мне</button><div id="slot"></div>
<script>
document.getElementById('callback-button').addEventListener('click', function () {
  var frame = document.createElement('iframe');
  frame.id = 'callback-widget';
  frame.src = '/callback/widget';
  frame.style.width = '420px';
  frame.style.height = '260px';
  document.getElementById('slot').appendChild(frame);
});
</script></body></html>"#;

/// The widget inside the iframe.
const CALLBACK_WIDGET: &str = r#"<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><link rel="icon" href="data:,"></head>
<body><form id="callback">
<label>Телефон <input id="phone" type="tel"></label>
<label>Комментарий <input id="comment"></label>
<button id="send" type="submit">Жду звонка</button>
</form><p class="result"></p>
<script>
document.getElementById('callback').addEventListener('submit', function (e) {
  e.preventDefault();
  fetch('/api/callback', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      phone: document.getElementById('phone').value,
      comment: document.getElementById('comment').value
    })
  }).then(function (r) { return r.json(); }).then(function (answer) {
    document.querySelector('.result').textContent =
      answer.accepted ? 'Мы перезвоним в течение 5 минут' : 'Укажите телефон';
  });
});
</script></body></html>"#;
