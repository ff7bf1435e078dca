//! The two ways a chat conversation travels: HTTP (a POST per message, optionally polling for the
//! reply) and a WebSocket held open for the whole conversation.
//!
//! Every wait is bounded by the turn's deadline: `within`, stretched to shortly before the
//! attempt's `timeout` so that a late reply is told from none. A bot that never answers costs one
//! attempt's timeout, never a hung task.

use super::{ChatProbe, Heard, MAX_MESSAGE, extract, max_body};
use crate::net::send;
use crate::outcome::{FailureKind, Observation, Outcome, RunContext};
use crate::value::{Pattern, TemplateVars};
use futures::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One conversation with the bot, and the conversation id it gave, once known.
pub(super) enum Conversation {
    Http {
        session: String,
    },
    Ws {
        stream: Box<WsStream>,
        session: String,
    },
}

impl Conversation {
    /// Connects (WebSocket) and sends the `handshake` messages; nothing to do for HTTP.
    pub(super) async fn open(
        probe: &ChatProbe,
        ctx: &RunContext,
        vars: &TemplateVars<'_>,
        within: crate::value::Dur,
    ) -> Result<Self, Outcome> {
        if probe.client.is_some() {
            return Ok(Conversation::Http {
                session: String::new(),
            });
        }
        let mut request =
            probe.url.as_str().into_client_request().map_err(|e| {
                Outcome::fail(FailureKind::Internal, format!("bad WebSocket url: {e}"))
            })?;
        let headers = request.headers_mut();
        let header = |name: &str, value: &str| -> Result<_, Outcome> {
            let name = http::HeaderName::from_bytes(name.as_bytes());
            let value = http::HeaderValue::from_str(value);
            match (name, value) {
                (Ok(n), Ok(v)) => Ok((n, v)),
                _ => Err(Outcome::fail(FailureKind::Internal, "invalid header")),
            }
        };
        let (n, v) = header(crate::TOKEN_HEADER, &ctx.token)?;
        headers.insert(n, v);
        let (n, v) = header("user-agent", crate::USER_AGENT)?;
        headers.insert(n, v);
        for (name, value) in &probe.spec.headers {
            let (n, v) = header(name, value.expose())?;
            headers.insert(n, v);
        }
        if let Some(p) = &probe.spec.subprotocol {
            let (n, v) = header("sec-websocket-protocol", p)?;
            headers.insert(n, v);
        }
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let connector = probe.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        ctx.begin("connect");
        // The TCP connection is made here, not by tungstenite, so that `resolve:` applies and a
        // name that does not resolve is told from a server that does not answer.
        let connecting = async {
            let host = probe.url.host_str().unwrap_or_default();
            let port = probe.url.port_or_known_default().unwrap_or(80);
            let tcp = probe
                .resolve
                .connect(host, port, probe.url.port().is_some())
                .await
                .map_err(|e| {
                    let kind = match e {
                        crate::net::ConnectError::Dns(_) => FailureKind::Dns,
                        crate::net::ConnectError::Connect(_) => FailureKind::Connect,
                    };
                    Outcome::fail(kind, format!("{}: {e}", probe.spec.url))
                })?;
            tokio_tungstenite::client_async_tls_with_config(request, tcp, Some(config), connector)
                .await
                .map_err(|e| classify(&e, &probe.spec.url.to_string()))
        };
        let connected = tokio::time::timeout(within.get(), connecting).await;
        ctx.end();
        let (mut stream, response) = match connected {
            Err(_) => {
                return Err(Outcome::fail(
                    FailureKind::Connect,
                    format!(
                        "{}: no WebSocket connection within {within}",
                        probe.spec.url
                    ),
                ));
            }
            Ok(result) => result?,
        };
        if let Some(wanted) = &probe.spec.subprotocol {
            let got = response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok());
            if got != Some(wanted.as_str()) {
                return Err(Outcome::fail(
                    FailureKind::Protocol,
                    format!("the server did not accept subprotocol `{wanted}`"),
                ));
            }
        }
        for text in &probe.spec.handshake {
            let message = text.render(vars, "", "");
            let sent =
                tokio::time::timeout(within.get(), stream.send(Message::text(message))).await;
            if !matches!(sent, Ok(Ok(()))) {
                return Err(Outcome::fail(
                    FailureKind::Protocol,
                    "the WebSocket closed while sending the handshake messages",
                ));
            }
        }
        Ok(Conversation::Ws {
            stream: Box::new(stream),
            session: String::new(),
        })
    }

    /// The conversation id so far (empty until the bot gave one).
    pub(super) fn session(&self) -> &str {
        match self {
            Conversation::Http { session } | Conversation::Ws { session, .. } => session,
        }
    }

    /// Sends `message` and listens for the reply until `within` has passed.
    pub(super) async fn turn(
        &mut self,
        probe: &ChatProbe,
        ctx: &RunContext,
        vars: &TemplateVars<'_>,
        message: &str,
        pattern: Option<&Pattern>,
        within: Duration,
    ) -> Result<Heard, Outcome> {
        match self {
            Conversation::Http { session } => {
                http_turn(probe, ctx, vars, session, message, pattern, within).await
            }
            Conversation::Ws { stream, session } => {
                ws_turn(probe, ctx, stream, session, vars, message, pattern, within).await
            }
        }
    }

    /// Says goodbye politely, without waiting long for the bot to agree.
    pub(super) async fn close(self) {
        if let Conversation::Ws { mut stream, .. } = self {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), SinkExt::close(&mut *stream)).await;
        }
    }
}

/// How long before the attempt's deadline a turn stops listening, leaving time to report.
const REPORT_MARGIN: Duration = Duration::from_millis(250);

/// Until when a turn started at `started` listens: past `within` up to shortly before the
/// attempt's deadline, so a bot that answers late is reported as slow, not as silent.
fn listen_deadline(started: Instant, within: Duration, ctx: &RunContext) -> tokio::time::Instant {
    let on_time = started + within;
    let until = ctx
        .deadline()
        .and_then(|end| end.checked_sub(REPORT_MARGIN))
        .filter(|t| *t > on_time)
        .unwrap_or(on_time);
    tokio::time::Instant::from_std(until)
}

fn payload(probe: &ChatProbe, vars: &TemplateVars<'_>, message: &str, session: &str) -> String {
    match &probe.request {
        Some(json) => json.render(vars, message, session).to_string(),
        None => message.to_string(),
    }
}

fn learn_session(probe: &ChatProbe, session: &mut String, body: &[u8]) {
    if let Some(pointer) = &probe.spec.session_at
        && session.is_empty()
        && let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(found) = doc.pointer(pointer)
    {
        *session = match found {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
    }
}

async fn http_turn(
    probe: &ChatProbe,
    ctx: &RunContext,
    vars: &TemplateVars<'_>,
    session: &mut String,
    message: &str,
    pattern: Option<&Pattern>,
    within: Duration,
) -> Result<Heard, Outcome> {
    let Some(client) = &probe.client else {
        return Err(Outcome::fail(FailureKind::Internal, "no HTTP client"));
    };
    let started = Instant::now();
    let deadline = listen_deadline(started, within, ctx);
    let mut request = client
        .post(probe.url.clone())
        .header(crate::TOKEN_HEADER, &ctx.token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(payload(probe, vars, message, session));
    for (name, value) in &probe.spec.headers {
        request = request.header(name.as_str(), value.expose());
    }
    let mut heard = Heard::default();
    let answer =
        match tokio::time::timeout_at(deadline, send(ctx, request, "send", None, max_body())).await
        {
            // The POST itself is the wait for a synchronous bot: its deadline is the reply's.
            Err(_) => return Ok(heard),
            Ok(Err(broken)) => {
                return Err(broken.into_outcome(&format!("POST {}", probe.spec.url), 5));
            }
            Ok(Ok(answer)) => answer,
        };
    if !(200..300).contains(&answer.status) {
        let mut failed = Outcome::fail(
            FailureKind::Status,
            format!(
                "POST {}: status {}, expected 2xx",
                probe.spec.url, answer.status
            ),
        );
        failed
            .observations
            .push(Observation::HttpStatus(answer.status));
        return Err(failed);
    }
    learn_session(probe, session, &answer.body);
    if let Some(text) = extract(&answer.body, probe.spec.reply_at.as_deref()) {
        heard.hear(text, started, pattern);
        return Ok(heard);
    }
    let Some(poll) = &probe.spec.poll else {
        heard.why_none = Some(" (the bot's answer held no reply and no `poll` is set)".into());
        return Ok(heard);
    };
    // Each poll is its own `poll` phase (recorded by `send`).
    loop {
        let url = poll.url.render(vars, message, session);
        let request = client
            .get(url.as_str())
            .header(crate::TOKEN_HEADER, &ctx.token);
        match tokio::time::timeout_at(deadline, send(ctx, request, "poll", None, max_body())).await
        {
            Err(_) => break,
            Ok(Ok(answer)) if (200..300).contains(&answer.status) => {
                if let Some(text) = extract(&answer.body, probe.spec.reply_at.as_deref()) {
                    heard.hear(text, started, pattern);
                    break;
                }
            }
            // A failed poll is retried until the deadline: the bot may be busy, not gone.
            Ok(_) => {}
        }
        if tokio::time::Instant::now() + poll.interval.get() >= deadline {
            tokio::time::sleep_until(deadline).await;
            break;
        }
        tokio::time::sleep(poll.interval.get()).await;
    }
    Ok(heard)
}

#[allow(clippy::too_many_arguments)] // One turn's whole context; a struct would only rename it.
async fn ws_turn(
    probe: &ChatProbe,
    ctx: &RunContext,
    stream: &mut WsStream,
    session: &mut String,
    vars: &TemplateVars<'_>,
    message: &str,
    pattern: Option<&Pattern>,
    within: Duration,
) -> Result<Heard, Outcome> {
    let started = Instant::now();
    let deadline = listen_deadline(started, within, ctx);
    let text = payload(probe, vars, message, session);
    ctx.begin("send");
    let sent = tokio::time::timeout_at(deadline, stream.send(Message::text(text))).await;
    ctx.begin("reply");
    let mut heard = Heard::default();
    match sent {
        Err(_) => return Ok(heard),
        Ok(Err(e)) => return Err(classify(&e, &probe.spec.url.to_string())),
        Ok(Ok(())) => {}
    }
    // Bots send typing indicators, greetings and events before the answer: keep listening until
    // a reply matches or the deadline passes.
    loop {
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => break,
            Ok(next) => next,
        };
        let bytes = match next {
            Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
            Some(Ok(Message::Binary(b))) => b.to_vec(),
            // Pings are answered by tungstenite itself; pongs and raw frames carry no reply.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | None => {
                heard.why_none = Some(" (the server closed the WebSocket)".into());
                break;
            }
            Some(Err(e)) => {
                ctx.end();
                return Err(classify(&e, &probe.spec.url.to_string()));
            }
        };
        learn_session(probe, session, &bytes);
        if let Some(reply) = extract(&bytes, probe.spec.reply_at.as_deref())
            && heard.hear(reply, started, pattern)
        {
            break;
        }
    }
    ctx.end();
    Ok(heard)
}

fn classify(e: &tungstenite::Error, url: &str) -> Outcome {
    use tungstenite::Error;
    let (kind, what) = match e {
        Error::Http(response) => (
            FailureKind::Status,
            format!(
                "the WebSocket upgrade was refused with status {}",
                response.status().as_u16()
            ),
        ),
        // rustls reports a refused certificate as an I/O error of the handshake.
        Error::Io(io) if is_tls_error(io) => (FailureKind::Tls, io.to_string()),
        Error::Io(io) => (FailureKind::Connect, io.to_string()),
        Error::Tls(tls) => (FailureKind::Tls, tls.to_string()),
        // Its text quotes the URL as used, which may hold a `${SECRET}`; `url` is the template.
        Error::Url(tungstenite::error::UrlError::UnableToConnect(_)) => {
            (FailureKind::Connect, "unable to connect".to_string())
        }
        Error::Capacity(c) => (
            FailureKind::Protocol,
            format!("{c} (messages are read up to 1 MiB)"),
        ),
        other => (FailureKind::Protocol, other.to_string()),
    };
    Outcome::fail(kind, format!("{url}: {what}"))
}

/// Whether an I/O error is a TLS failure (certificate, handshake) rather than a network one.
fn is_tls_error(io: &std::io::Error) -> bool {
    io.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}
