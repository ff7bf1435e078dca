//! A recording HTTP server on loopback, posing as whatever a test talks to (a Bot API, a webhook
//! receiver, an Alertmanager): it keeps every request it gets (method, path, headers, body) and
//! answers each from a script the test writes: queued answers first, then a standing one, any
//! of them delayed or never given.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// How long [`Recorder::wait_until`] waits: generous, for a loaded CI machine.
pub const WAIT: Duration = Duration::from_secs(60);

/// One request the server got.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: the body should be JSON ({e}): {}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Header `name` as text, or "" when it is missing or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// What the server answers to one request.
#[derive(Clone, Debug)]
pub struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// How long to wait before answering.
    delay: Duration,
}

impl Answer {
    /// `status` with an empty body.
    pub fn status(status: u16) -> Self {
        Answer::text(status, "")
    }

    /// `status` with `body` as it is.
    pub fn text(status: u16, body: &str) -> Self {
        Answer {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    /// `status` with `body` as JSON (`content-type: application/json`).
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Answer::text(status, &body.to_string()).header("content-type", "application/json")
    }

    /// No answer at all: the request is held for an hour, past any client's timeout.
    pub fn hang() -> Self {
        Answer::status(200).after(Duration::from_secs(3600))
    }

    /// The same answer with header `name: value` added.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The same answer, given only after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status)
            .unwrap_or_else(|e| panic!("scripted status {}: {e}", self.status));
        let mut response = (status, self.body).into_response();
        for (name, value) in self.headers {
            let name = axum::http::HeaderName::from_bytes(name.as_bytes())
                .unwrap_or_else(|e| panic!("scripted header name {name:?}: {e}"));
            let value = value
                .parse()
                .unwrap_or_else(|e| panic!("scripted header value {value:?}: {e}"));
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// The answers still to give.
struct Script {
    /// Given once each, in order.
    next: VecDeque<Answer>,
    /// Given when `next` is empty.
    always: Answer,
}

struct Shared {
    /// Every request so far, in arrival order. A watch channel, so that a waiting test wakes on
    /// each new request instead of polling.
    requests: watch::Sender<Vec<Request>>,
    script: Mutex<Script>,
}

/// A running recording server; it serves until the test process ends.
pub struct Recorder {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Recorder {
    /// Starts a server on a free port of 127.0.0.1 that answers `200 ok` until told otherwise.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            requests: watch::Sender::new(Vec::new()),
            script: Mutex::new(Script {
                next: VecDeque::new(),
                always: Answer::text(200, "ok"),
            }),
        });
        let app = Router::new().fallback(record).with_state(shared.clone());
        let addr = super::serve(app).await;
        Recorder { addr, shared }
    }

    /// `http://ADDR` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers every request from now on with `answer`, once the queued answers are given.
    pub fn answer_always(&self, answer: Answer) {
        self.script().always = answer;
    }

    /// Answers the next request not yet answered from the queue with `answer`.
    pub fn answer_next(&self, answer: Answer) {
        self.script().next.push_back(answer);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.borrow().clone()
    }

    /// The latest request; panics if there was none.
    pub fn last(&self) -> Request {
        self.requests()
            .pop()
            .expect("the server should have seen a request")
    }

    /// Waits until `done` holds for the requests so far, at most [`WAIT`]; panics naming `what`
    /// if it never does.
    pub async fn wait_until(&self, what: &str, mut done: impl FnMut(&[Request]) -> bool) {
        // Subscribing marks the current list seen; `wait_for` checks it first all the same.
        let mut changes = self.shared.requests.subscribe();
        let waited = tokio::time::timeout(WAIT, changes.wait_for(|got| done(got))).await;
        match waited {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("the recorder's request channel closed: {e}"),
            Err(_) => panic!(
                "timed out after {WAIT:?} waiting for {what}; requests: {:#?}",
                self.requests()
            ),
        }
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.shared.script.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn record(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Chosen before the request is published, so a test that sees it has its answer fixed.
    let answer = {
        let mut script = shared.script.lock().unwrap_or_else(|e| e.into_inner());
        let always = script.always.clone();
        script.next.pop_front().unwrap_or(always)
    };
    shared.requests.send_modify(|requests| {
        requests.push(Request {
            method,
            path: uri.path().to_string(),
            headers,
            body,
        })
    });
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    answer.into_response()
}
