//! A test shop whose support channels only work with JavaScript, on loopback: a feedback form
//! that a script builds and posts with `fetch()`, a callback widget inside an iframe, a page
//! that throws on load, and a page where the awaited element never appears. Every message the
//! APIs receive is recorded so that tests can assert what actually arrived. The callback API can
//! also have SIPp call the number it was given back through a SIP server ([`BrowserShop::dial_on_callback`]),
//! as a telephony integration would.

use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What the shop's APIs received.
#[derive(Default)]
pub struct BrowserShopState {
    feedback: Mutex<Vec<serde_json::Value>>,
    callbacks: Mutex<Vec<serde_json::Value>>,
    /// Where callback requests are "mailed" (a Maildir), when set.
    maildir: Mutex<Option<PathBuf>>,
    /// Who calls back each callback request (SIP server port, caller, password), when set.
    dial: Mutex<Option<(u16, String, String)>>,
    /// The SIPp of the last call back, to be checked by the test.
    dialer: Mutex<Option<super::sipp::Sipp>>,
}

/// A running browser shop.
pub struct BrowserShop {
    pub addr: SocketAddr,
    pub state: Arc<BrowserShopState>,
}

impl BrowserShop {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    /// Bodies posted to `/api/feedback`.
    pub fn feedback(&self) -> Vec<serde_json::Value> {
        lock(&self.state.feedback).clone()
    }
    /// Mails each callback request into the Maildir at `dir` from now on.
    pub fn deliver_to(&self, dir: PathBuf) {
        *lock(&self.state.maildir) = Some(dir);
    }
    /// Calls back each callback request from now on: SIPp dials the request's `phone` as
    /// `user` (digest `password`) through the SIP server at 127.0.0.1:`sip_port`.
    pub fn dial_on_callback(&self, sip_port: u16, user: &str, password: &str) {
        *lock(&self.state.dial) = Some((sip_port, user.into(), password.into()));
    }
    /// The SIPp of the last call back, if one was dialed.
    pub fn take_dialer(&self) -> Option<super::sipp::Sipp> {
        lock(&self.state.dialer).take()
    }
    /// Bodies posted to `/api/callback`.
    pub fn callbacks(&self) -> Vec<serde_json::Value> {
        lock(&self.state.callbacks).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the shop on 127.0.0.1, port chosen by the OS.
pub async fn start_browser_shop() -> BrowserShop {
    let state = Arc::new(BrowserShopState::default());
    let app = Router::new()
        .route("/feedback", get(|| async { Html(FEEDBACK_PAGE) }))
        .route("/api/feedback", post(feedback))
        .route("/widget", get(|| async { Html(WIDGET_PAGE) }))
        .route("/widget/frame", get(|| async { Html(WIDGET_FRAME) }))
        .route("/api/callback", post(callback))
        .route("/broken-js", get(|| async { Html(BROKEN_JS_PAGE) }))
        .route("/never", get(|| async { Html(NEVER_PAGE) }))
        .route("/stuck", get(|| async { Html(STUCK_PAGE) }))
        .with_state(state.clone());
    let addr = super::serve(app).await;
    BrowserShop { addr, state }
}

async fn feedback(
    State(state): State<Arc<BrowserShopState>>,
    axum::Json(body): axum::Json<serde_json::Value>,
) -> Response {
    let accepted = body
        .get("message")
        .and_then(|m| m.as_str())
        .is_some_and(|m| !m.is_empty());
    lock(&state.feedback).push(body);
    axum::Json(serde_json::json!({ "accepted": accepted })).into_response()
}

async fn callback(
    State(state): State<Arc<BrowserShopState>>,
    axum::Json(body): axum::Json<serde_json::Value>,
) -> Response {
    let maildir = lock(&state.maildir).clone();
    if let Some(dir) = maildir {
        let field = |name: &str| {
            body.get(name)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let mail = format!(
            "From: widget@example.ru\r\nTo: support@example.ru\r\nSubject: Callback to {}\r\n\r\n{}\r\n",
            field("phone"),
            field("comment")
        );
        let n = lock(&state.callbacks).len();
        let _ = std::fs::write(dir.join("new").join(format!("{n}.widget")), mail);
    }
    let dial = lock(&state.dial).clone();
    if let Some((port, user, password)) = dial {
        let number = body
            .get("phone")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let state = state.clone();
        // The telephony integration dials the number it was given, a moment after the request.
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let sipp =
                super::sipp::Sipp::dial("dial_answered.xml", port, &number, &user, &password);
            *lock(&state.dialer) = Some(sipp);
        });
    }
    lock(&state.callbacks).push(body);
    axum::Json(serde_json::json!({ "accepted": true })).into_response()
}

/// An empty `<div>` until the script has run; the form appears after 300 ms, as when a
/// framework loads its bundle first. The answer is written by the script, never by the server.
const FEEDBACK_PAGE: &str = r#"<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>Обратная связь</title></head>
<body><h1>Напишите нам</h1><div id="app"></div>
<script>
setTimeout(function () {
  var app = document.getElementById('app');
  app.innerHTML =
    '<form id="feedback">' +
    '<input id="name" name="name" placeholder="Имя">' +
    '<select id="topic" name="topic"><option value="other">Другое</option><option value="order">Заказ</option></select>' +
    '<textarea id="message" name="message"></textarea>' +
    '<label><input type="checkbox" id="agree"> Согласен</label>' +
    '<button id="send" type="submit">Отправить</button>' +
    '</form><div class="result"></div>';
  document.getElementById('feedback').addEventListener('submit', function (e) {
    e.preventDefault();
    var body = {
      name: document.getElementById('name').value,
      topic: document.getElementById('topic').value,
      agree: document.getElementById('agree').checked,
      message: document.getElementById('message').value
    };
    fetch('/api/feedback', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body)
    }).then(function (r) { return r.json(); }).then(function (answer) {
      // A slow backend: the thanks come a moment after the click.
      setTimeout(function () {
        document.querySelector('.result').textContent =
          answer.accepted ? 'Спасибо! Мы ответим в течение часа.' : 'Ошибка';
      }, 200);
    });
  });
}, 300);
</script></body></html>"#;

/// A callback button that opens a widget in an iframe.
const WIDGET_PAGE: &str = r#"<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>Магазин</title></head>
<body><h1>Магазин</h1><button id="callback-button">Перезвоните мне</button><div id="slot"></div>
<script>
document.getElementById('callback-button').addEventListener('click', function () {
  var frame = document.createElement('iframe');
  frame.id = 'widget';
  frame.src = '/widget/frame';
  frame.style.width = '400px';
  frame.style.height = '300px';
  document.getElementById('slot').appendChild(frame);
});
</script></body></html>"#;

/// The widget itself, inside the iframe.
const WIDGET_FRAME: &str = r#"<!doctype html>
<html lang="ru"><head><meta charset="utf-8"></head>
<body><form id="callback">
<input id="phone" name="phone" type="tel">
<input id="comment" name="comment">
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
  }).then(function () {
    document.querySelector('.result').textContent = 'Мы перезвоним в течение 5 минут';
  });
});
</script></body></html>"#;

/// A page that works but logs two errors: a `console.error` and an uncaught exception.
const BROKEN_JS_PAGE: &str = r#"<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>Сломано</title></head>
<body><h1 id="title">Каталог</h1>
<script>
console.error('cart widget failed to load');
throw new Error('checkout is not defined');
</script></body></html>"#;

/// A page whose chat widget never turns up.
const NEVER_PAGE: &str = r#"<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>Где чат</title></head>
<body><h1>Чат скоро появится</h1><p id="marker">never-page-marker</p></body></html>"#;

/// A page whose script never yields once loaded: every WebDriver command on it stalls.
const STUCK_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"></head>
<body><h1>Loading</h1><script>setTimeout(function () { for (;;) {} }, 300);</script></body></html>"#;
