//! The demo shop: a small web shop on loopback with the support channels supportwatch checks.
//!
//! `--break CHANNEL` makes one channel fail the way real shops fail: the site answers 503, the
//! feedback form says "thank you" but never sends the mail, the mail server swallows mail, the
//! hotline answers and plays nothing, the callback is promised and never made.
//!
//! The contact page is a classic server-rendered form: a session cookie, a CSRF token tied to it
//! in a hidden input, and a handler that mails the message to support through the demo's SMTP
//! server. Two more channels need a real browser: a contact form that a script
//! builds and posts as JSON, and a callback widget inside an iframe (`widgets.rs`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What `supportwatch demo --break NAME` can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Break {
    /// The site answers 503.
    Website,
    /// The feedback forms and API thank the visitor and drop the message.
    FeedbackForm,
    /// The mail server accepts mail and drops it.
    Email,
    /// The callback form thanks the visitor and drops the request (no webhook, no call).
    Callback,
    /// The callback form's CRM still posts its webhook, but nobody ever dials.
    CallbackCall,
    /// The chat bot falls silent.
    Chat,
    /// The hotline answers and plays silence.
    Phone,
}

impl Break {
    /// Every break, in the order `--help` lists them.
    pub const ALL: [Break; 7] = [
        Break::Website,
        Break::FeedbackForm,
        Break::Email,
        Break::Callback,
        Break::CallbackCall,
        Break::Chat,
        Break::Phone,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Break::Website => "website",
            Break::FeedbackForm => "feedback_form",
            Break::Email => "email",
            Break::Callback => "callback",
            Break::CallbackCall => "callback-call",
            Break::Chat => "chat",
            Break::Phone => "phone",
        }
    }

    /// The break called `name` on the command line.
    pub fn parse(name: &str) -> Option<Break> {
        Break::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// What fails on purpose; the demo can heal it while it runs.
#[derive(Default, Debug)]
pub struct Breaks(std::sync::Mutex<BTreeSet<Break>>);

impl Breaks {
    /// These broken.
    pub fn new(broken: BTreeSet<Break>) -> Self {
        Breaks(std::sync::Mutex::new(broken))
    }
    /// Whether `channel` fails on purpose.
    pub fn contains(&self, channel: &Break) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(channel)
    }
    /// Makes everything work again; returns what was broken.
    pub fn heal(&self) -> BTreeSet<Break> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// What the shop's handlers share.
#[derive(Clone, Default)]
pub struct ShopState {
    /// Channels that fail on purpose.
    pub broken: Arc<Breaks>,
    /// The shop's SMTP server, where the contact form sends its mail.
    pub smtp: Option<std::net::SocketAddr>,
    /// Where the callback form's CRM posts its webhook.
    pub hook: super::callback_backend::HookTarget,
    /// Every message the owner's (stand-in) Telegram received.
    pub owner_inbox: super::owner_phone::Inbox,
    /// The shop's phone system, which the callback CRM dials through.
    pub pbx: Option<super::pbx::Pbx>,
}

/// The address the contact form mails to.
pub const SUPPORT_ADDRESS: &str = "support@demo-shop.test";
/// The address the demo's mail check sends from (and where auto-replies arrive).
pub const MONITOR_ADDRESS: &str = "monitor@demo-shop.test";
const SESSION_COOKIE: &str = "demo_session";

/// The shop's routes.
pub fn router(state: ShopState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/api/status", get(status))
        .route("/api/feedback", post(feedback))
        .route("/contacts", get(contacts_page).post(contacts_submit))
        .merge(super::widgets::routes())
        .merge(super::callback_backend::routes())
        .merge(super::chat::routes())
        .merge(super::owner_phone::routes())
        .with_state(state)
}

async fn home(State(state): State<ShopState>) -> Response {
    if state.broken.contains(&Break::Website) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Html("<h1>Maintenance</h1>"),
        )
            .into_response();
    }
    Html(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\"><title>Demo shop</title></head>\
         <body><h1>Demo shop</h1><p>Служба поддержки: support@demo-shop.test</p></body></html>",
    )
    .into_response()
}

async fn status(State(state): State<ShopState>) -> Response {
    let website = !state.broken.contains(&Break::Website);
    Json(serde_json::json!({
        "status": if website { "ok" } else { "degraded" },
        "channels": { "feedback_form": !state.broken.contains(&Break::FeedbackForm) },
    }))
    .into_response()
}

async fn feedback(
    State(state): State<ShopState>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let message = body.get("message").and_then(|m| m.as_str()).unwrap_or("");
    let token = headers
        .get(crate::TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // A broken feedback backend still says 200: the failure supportwatch exists to catch.
    let accepted = !state.broken.contains(&Break::FeedbackForm) && !message.is_empty();
    Json(serde_json::json!({
        "accepted": accepted,
        "ticket": if accepted { format!("T-{}", token.len() + message.len()) } else { String::new() },
        "message": "Спасибо! Мы ответим в течение 2 часов.",
    }))
    .into_response()
}

/// The CSRF token of a session: derived, so the shop keeps no per-visitor state.
fn csrf_for(session: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in session.bytes().chain(*b"demo-shop-csrf") {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

async fn contacts_page(headers: HeaderMap) -> Response {
    let session = session_of(&headers).unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let csrf = csrf_for(&session);
    let page = format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\"><title>Контакты</title>\
         <meta name=\"csrf-token\" content=\"{csrf}\"></head><body><h1>Напишите нам</h1>\
         <form id=\"search\" action=\"/search\" method=\"get\"><input name=\"q\"></form>\
         <form id=\"feedback\" action=\"/contacts\" method=\"post\">\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
         <label>Имя <input name=\"name\" required></label>\
         <label>E-mail <input type=\"email\" name=\"email\" required></label>\
         <label>Тема <select name=\"topic\"><option value=\"order\" selected>Заказ</option><option value=\"other\">Другое</option></select></label>\
         <label>Сообщение <textarea name=\"message\" required></textarea></label>\
         <button type=\"submit\">Отправить</button></form></body></html>"
    );
    (
        [(
            axum::http::header::SET_COOKIE,
            format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Lax"),
        )],
        Html(page),
    )
        .into_response()
}

async fn contacts_submit(
    State(state): State<ShopState>,
    headers: HeaderMap,
    axum::extract::Form(form): axum::extract::Form<std::collections::HashMap<String, String>>,
) -> Response {
    let field = |name: &str| form.get(name).map(|v| v.trim()).unwrap_or("");
    let csrf_ok = session_of(&headers).is_some_and(|s| csrf_for(&s) == field("csrf_token"));
    if !csrf_ok {
        return (
            StatusCode::FORBIDDEN,
            Html("<h1>Сессия устарела, обновите страницу</h1>"),
        )
            .into_response();
    }
    if field("name").is_empty() || field("email").is_empty() || field("message").is_empty() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Html("<h1>Заполните все поля</h1>"),
        )
            .into_response();
    }
    // A broken form still thanks the visitor: the silent failure supportwatch exists to catch.
    if !state.broken.contains(&Break::FeedbackForm)
        && let Some(smtp) = state.smtp
    {
        let body = format!(
            "Новое сообщение с сайта\nИмя: {}\nE-mail: {}\nТема: {}\n\n{}\n",
            field("name"),
            field("email"),
            field("topic"),
            field("message")
        );
        if let Err(e) = send_mail(smtp, field("email"), FORM_SUBJECT, &body).await {
            // Like many real shops, the page does not tell the visitor; the log does.
            tracing::warn!(error = %e, "demo shop: contact form mail not sent");
        }
    }
    Html(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\"><title>Спасибо</title></head>\
         <body><h1>Спасибо! Ваше сообщение отправлено.</h1><p>Мы ответим в течение 2 часов.</p></body></html>",
    )
    .into_response()
}

/// Subject of the contact forms' mail.
pub(super) const FORM_SUBJECT: &str = "Сообщение с формы обратной связи";

pub(super) async fn send_mail(
    smtp: std::net::SocketAddr,
    reply_to: &str,
    subject: &str,
    body: &str,
) -> Result<(), String> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let mut builder = Message::builder()
        .from(
            "Demo shop <noreply@demo-shop.test>"
                .parse()
                .map_err(|e| format!("{e}"))?,
        )
        .to(SUPPORT_ADDRESS.parse().map_err(|e| format!("{e}"))?)
        .subject(subject);
    if let Ok(addr) = reply_to.parse() {
        builder = builder.reply_to(addr);
    }
    let message = builder
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(body.to_string())
        .map_err(|e| e.to_string())?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.ip().to_string())
        .port(smtp.port())
        .timeout(Some(Duration::from_secs(10)))
        .build();
    transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Serves `router` over TLS on `listener` until `stop` is cancelled.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    stop: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (tcp, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        // Without it the handshake's small writes wait on delayed ACKs: ~40 ms per connection.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            // A client that connects and never finishes its handshake must not keep a task forever.
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    _ => return,
                };
            let io = hyper_util::rt::TokioIo::new(tls);
            // With upgrades, so a WebSocket chat can be served over TLS as well.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .with_upgrades()
                .await;
        });
    }
}
