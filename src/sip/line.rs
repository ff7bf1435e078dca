//! A registered account's line (`register: true`): the one long-lived SIP endpoint supportwatch
//! holds, so that a callback check can see the shop's call ring on it.
//!
//! [`Lines`] keeps one task per registered account. The task opens one socket to the account's
//! proxy (UDP or TCP as the URI says), REGISTERs with digest authentication and a Contact naming
//! that socket (re-registering once with the `received`/`rport` address when a NAT rewrote it),
//! refreshes at half the granted expiry, pings the proxy with OPTIONS over UDP so a lost
//! registrar is noticed, answers the server's OPTIONS keepalives and takes INVITEs. On any
//! failure it marks the line down, counts the failure and retries with a doubling backoff.
//!
//! An INVITE is handed to the callback run waiting on the line ([`Lines::wait`]), after 180
//! Ringing, and then answered (200 with SDP, BYE after a second) or rejected as the run asked.
//! When no run waits it is refused with 480 and counted: a stray call is never a proof. Only one
//! run waits on a line at a time, so a call in a run's window is that run's call.
//!
//! Requests that arrive while one of the line's own transactions (a REGISTER, an OPTIONS ping)
//! is in flight are kept and served right after it: over TCP nobody resends them, so an INVITE
//! in that window would otherwise be lost.

use super::digest::Credentials;
use super::message::{self, IncomingRequest, Request};
use super::transaction::{self, TIMER_F};
use super::transport::Connection;
use super::uac::{self, Client};
use super::uri::{SipUri, Transport};
use super::{PhoneSpec, SipError};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a line paces itself. The defaults suit production; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The expiry asked for in REGISTER, seconds.
    pub expires: u32,
    /// Between OPTIONS pings of the proxy over UDP (a dead registrar is otherwise noticed only
    /// at the next refresh).
    pub keepalive: Duration,
    /// The first retry delay after a failure; it doubles up to `backoff_max`.
    pub backoff: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
    /// How long an answered call stays up before our BYE.
    pub hold: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            expires: 300,
            keepalive: Duration::from_secs(30),
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            hold: Duration::from_secs(1),
        }
    }
}

/// What to do with the call a run waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pickup {
    /// Answer (200 with SDP), hang up after [`Timing::hold`].
    Answer,
    /// Reject with this final status (486 Busy Here or 603 Decline).
    Reject(u16),
}

/// The call that reached the line while a run waited.
#[derive(Debug, Clone)]
pub struct IncomingCall {
    /// When the INVITE arrived (the phone started ringing).
    pub at: SystemTime,
    /// The caller's display name from From, if any (printable, at most 64 characters).
    pub display: Option<String>,
    /// The caller's user part (number) from From, if any.
    pub user: Option<String>,
}

impl IncomingCall {
    /// The caller ID as one would read it on a phone: `"Shop" <+74950000000>` or just the number.
    pub fn caller_id(&self) -> String {
        match (&self.display, &self.user) {
            (Some(d), Some(u)) => format!("\"{d}\" <{u}>"),
            (Some(d), None) => format!("\"{d}\""),
            (None, Some(u)) => u.clone(),
            (None, None) => "anonymous".into(),
        }
    }
}

/// A line's state, as the metrics show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineStats {
    /// Registered now.
    pub up: bool,
    /// Failed registrations (and lost lines) since the line started.
    pub failures: u64,
    /// INVITEs that came when no run waited.
    pub unexpected_calls: u64,
}

struct Waiter {
    pickup: Pickup,
    tx: oneshot::Sender<IncomingCall>,
}

/// What a line's task and the runs waiting on it share.
struct Shared {
    name: String,
    up: AtomicBool,
    failures: AtomicU64,
    unexpected: AtomicU64,
    /// Held by the one run waiting on the line.
    turn: tokio::sync::Mutex<()>,
    /// The waiting run's mailbox for its call.
    waiter: Mutex<Option<Waiter>>,
}

impl Shared {
    fn set_up(&self, up: bool, why: &str) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!(phone = %self.name, "SIP line registered");
            } else {
                tracing::warn!(phone = %self.name, reason = %why, "SIP line down");
            }
        }
    }

    fn take_waiter(&self) -> Option<Waiter> {
        self.waiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

struct Entry {
    key: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The lines of every registered account. Each daemon holds its own (created at start, applied
/// on every reload, stopped at shutdown): two daemons in one process never share an account.
pub struct Lines {
    running: Mutex<HashMap<String, Entry>>,
    timing: Timing,
}

impl Default for Lines {
    fn default() -> Self {
        Lines::new(Timing::default())
    }
}

impl Lines {
    /// Lines paced by `timing`, none running.
    pub fn new(timing: Timing) -> Lines {
        Lines {
            running: Mutex::new(HashMap::new()),
            timing,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a line for every account with `register: true` and stops those no longer
    /// declared (or changed); an unchanged account keeps its registration.
    pub async fn apply(&self, phones: &BTreeMap<String, PhoneSpec>) {
        let mut stopping = Vec::new();
        {
            let mut running = self.entries();
            let names: Vec<String> = running.keys().cloned().collect();
            for name in names {
                let keep = phones
                    .get(&name)
                    .is_some_and(|spec| spec.register && spec.line_key() == running[&name].key);
                if !keep && let Some(entry) = running.remove(&name) {
                    stopping.push(entry);
                }
            }
            for (name, spec) in phones.iter().filter(|(_, s)| s.register) {
                if running.contains_key(name) {
                    continue;
                }
                let shared = Arc::new(Shared {
                    name: name.clone(),
                    up: AtomicBool::new(false),
                    failures: AtomicU64::new(0),
                    unexpected: AtomicU64::new(0),
                    turn: tokio::sync::Mutex::new(()),
                    waiter: Mutex::new(None),
                });
                let stop = CancellationToken::new();
                // The line's task: it owns the socket and lives until `stop` (a reload that
                // drops the account, or the daemon's shutdown), which it checks between messages.
                let task = tokio::spawn(run_line(
                    spec.clone(),
                    shared.clone(),
                    self.timing,
                    stop.clone(),
                ));
                running.insert(
                    name.clone(),
                    Entry {
                        key: spec.line_key(),
                        shared,
                        stop,
                        task,
                    },
                );
            }
        }
        stop_entries(stopping).await;
    }

    /// Stops every line (unregistering each, briefly) and waits for their tasks to end, so no
    /// socket is left open.
    pub async fn stop_all(&self) {
        let stopping: Vec<Entry> = self.entries().drain().map(|(_, e)| e).collect();
        stop_entries(stopping).await;
    }

    /// Stops the line of account `name`, if one is held.
    pub async fn stop(&self, name: &str) {
        let stopping: Vec<Entry> = self.entries().remove(name).into_iter().collect();
        stop_entries(stopping).await;
    }

    /// Every line's state, by account name.
    pub fn stats(&self) -> Vec<(String, LineStats)> {
        let mut out: Vec<(String, LineStats)> = self
            .entries()
            .iter()
            .map(|(name, e)| {
                let s = &e.shared;
                (
                    name.clone(),
                    LineStats {
                        up: s.up.load(Ordering::Relaxed),
                        failures: s.failures.load(Ordering::Relaxed),
                        unexpected_calls: s.unexpected.load(Ordering::Relaxed),
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether a line is held for `name`.
    pub fn holds(&self, name: &str) -> bool {
        self.entries().contains_key(name)
    }

    /// Waits until `deadline` for a call to reach `name`'s line, answering it as `pickup` says.
    /// `Ok(None)`: no call came (or another run held the line until the deadline). `Err`: no
    /// line is held for the account.
    pub async fn wait(
        &self,
        name: &str,
        pickup: Pickup,
        deadline: Instant,
    ) -> Result<Option<IncomingCall>, String> {
        let shared = self
            .entries()
            .get(name)
            .map(|e| e.shared.clone())
            .ok_or_else(|| {
                format!(
                    "no line is held for phone `{name}`: set `register: true` on it and run the daemon"
                )
            })?;
        // One run per line: a second callback run on the account waits here, within its own
        // deadline, so any call during a run's window is that run's.
        let Ok(_turn) = tokio::time::timeout_at(deadline, shared.turn.lock()).await else {
            return Ok(None);
        };
        // The line's task sends the call through this one-shot channel when the INVITE comes.
        let (tx, rx) = oneshot::channel();
        *shared.waiter.lock().unwrap_or_else(PoisonError::into_inner) = Some(Waiter { pickup, tx });
        let got = tokio::time::timeout_at(deadline, rx).await;
        shared.take_waiter();
        match got {
            Ok(Ok(call)) => Ok(Some(call)),
            // The line stopped (a reload removed it) with our waiter still set.
            Ok(Err(_)) => Err(format!("the line of phone `{name}` was stopped")),
            Err(_) => Ok(None),
        }
    }
}

async fn stop_entries(entries: Vec<Entry>) {
    for entry in &entries {
        entry.stop.cancel();
    }
    for entry in entries {
        // The task unregisters within a few seconds; past that it is aborted (dropping the socket).
        let abort = entry.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), entry.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// The line's life: sessions separated by a doubling backoff, until `stop`.
async fn run_line(spec: PhoneSpec, shared: Arc<Shared>, timing: Timing, stop: CancellationToken) {
    let mut backoff = timing.backoff;
    loop {
        let started = Instant::now();
        let result = session(&spec, &shared, timing, &stop).await;
        let why = match result {
            Ok(()) => break,
            Err(why) => why,
        };
        shared.failures.fetch_add(1, Ordering::Relaxed);
        shared.set_up(false, &why);
        tracing::debug!(phone = %shared.name, reason = %why, "SIP line session ended");
        // A line that stayed up a while starts its backoff over.
        if started.elapsed() > timing.backoff_max {
            backoff = timing.backoff;
        }
        // Wait out the backoff, unless the daemon stops the line meanwhile.
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(timing.backoff_max);
    }
    shared.set_up(false, "stopped");
}

/// The account's fixed parts of a session.
struct Account<'a> {
    spec: &'a PhoneSpec,
    registrar: SipUri,
    password: Option<&'a str>,
}

/// One connection: register, then serve until the connection fails (`Err`) or `stop` (`Ok`).
async fn session(
    spec: &PhoneSpec,
    shared: &Shared,
    timing: Timing,
    stop: &CancellationToken,
) -> Result<(), String> {
    let proxy = spec.proxy_uri()?;
    let from = spec.from_uri()?;
    let tls = match proxy.transport {
        Transport::Tls => {
            let roots = crate::tlsconf::roots(
                spec.ca_file
                    .as_ref()
                    .map(|t| std::path::Path::new(t.expose())),
            )?;
            let config = crate::tlsconf::client_config(roots);
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        }
        Transport::Udp | Transport::Tcp => None,
    };
    let account = Account {
        spec,
        registrar: from.with_user(None),
        password: spec.password.as_ref().map(|p| p.expose()),
    };
    let mut conn = tokio::select! {
        _ = stop.cancelled() => return Ok(()),
        c = Connection::open_via(&proxy, tls.as_ref(), spec.nameserver()?) => c.map_err(|e| e.to_string())?,
    };
    let mut client = Client::new(from);
    let mut contact = None;
    // Requests that came while one of our transactions was in flight, served right after it.
    let mut queued = Vec::new();
    let mut reg = register(
        &mut conn,
        &mut client,
        &account,
        (contact, timing.expires),
        &mut queued,
    )
    .await?;
    // A NAT between us and the registrar: register the address it sees, once.
    if let Some(public) = reg.public
        && public != conn.local_addr()
    {
        contact = Some(public);
        reg = register(
            &mut conn,
            &mut client,
            &account,
            (contact, timing.expires),
            &mut queued,
        )
        .await?;
    }
    shared.set_up(true, "");
    let mut refresh = Instant::now() + reg.granted / 2;
    let ping = conn.transport() == Transport::Udp;
    let mut keepalive = Instant::now() + timing.keepalive;
    let mut recent: VecDeque<String> = VecDeque::new();
    loop {
        for bytes in std::mem::take(&mut queued) {
            serve(&mut conn, &bytes, shared, timing, &mut recent).await?;
        }
        // Four things wake the line: the daemon stops it, the registration is due for refresh,
        // the proxy is due a ping (UDP only), or a message arrives. `recv` is cancel-safe, so a
        // timer winning the race loses no bytes.
        let wake = if ping {
            refresh.min(keepalive)
        } else {
            refresh
        };
        tokio::select! {
            _ = stop.cancelled() => {
                // Best effort: tell the registrar we are gone, briefly.
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    register(&mut conn, &mut client, &account, (contact, 0), &mut Vec::new()),
                ).await;
                return Ok(());
            }
            _ = tokio::time::sleep_until(wake) => {
                if Instant::now() >= refresh {
                    let asked = (contact, timing.expires);
                    reg = register(&mut conn, &mut client, &account, asked, &mut queued).await?;
                    refresh = Instant::now() + reg.granted / 2;
                } else {
                    let (request, branch) = client.request(&conn, "OPTIONS", &account.registrar, None);
                    let wait = Duration::from_secs(8);
                    transaction::non_invite_keeping(&mut conn, &request, &branch, wait, &mut queued)
                        .await
                        .map_err(|e| format!("the proxy stopped answering: {e}"))?;
                }
                keepalive = Instant::now() + timing.keepalive;
            }
            received = conn.recv() => {
                let bytes = received.map_err(|e| e.to_string())?;
                serve(&mut conn, &bytes, shared, timing, &mut recent).await?;
            }
        }
    }
}

/// A successful registration.
struct Registered {
    /// The expiry the registrar granted.
    granted: Duration,
    /// Our address as the registrar saw it (`received`/`rport` of the answer's Via).
    public: Option<SocketAddr>,
}

/// One REGISTER (and its answer to a challenge) asking for `expires` seconds (0 removes it).
async fn register(
    conn: &mut Connection,
    client: &mut Client,
    account: &Account<'_>,
    (contact, expires): (Option<SocketAddr>, u32),
    queued: &mut Vec<Vec<u8>>,
) -> Result<Registered, String> {
    let mut authorization = None;
    for attempt in 0..2 {
        let (mut request, branch) =
            client.request(conn, "REGISTER", &account.registrar, authorization.take());
        // To names the address of record, not the registrar.
        request.set_header("To", format!("<{}>", client.from()));
        request.set_header("Expires", expires.to_string());
        if let Some(public) = contact {
            let mut uri = client.from().clone();
            uri.host = public.ip().to_string();
            uri.port = Some(public.port());
            uri.transport = conn.transport();
            request.set_header("Contact", format!("<{uri}>"));
        }
        let exchange = transaction::non_invite_keeping(conn, &request, &branch, TIMER_F, queued)
            .await
            .map_err(|e| match e {
                SipError::Timeout(_) => "the registrar did not answer REGISTER".to_string(),
                other => other.to_string(),
            })?;
        let response = exchange.response;
        match response.status {
            200..=299 => {
                return Ok(Registered {
                    granted: granted(&response, expires),
                    public: via_public(response.header("Via").unwrap_or_default()),
                });
            }
            401 | 407 if attempt == 0 => {
                let Some(password) = account.password else {
                    return Err(format!(
                        "REGISTER was challenged ({}) and the account has no password",
                        response.status
                    ));
                };
                let credentials = Credentials {
                    user: account.spec.auth_name(),
                    password,
                };
                authorization = Some(uac::answer_challenge(
                    &response,
                    &credentials,
                    "REGISTER",
                    &account.registrar,
                )?);
            }
            401 | 407 => {
                return Err("REGISTER refused the credentials: wrong user or password".into());
            }
            status => {
                return Err(format!(
                    "REGISTER answered {status} {}",
                    message::printable(&response.reason, 60)
                ));
            }
        }
    }
    Err("REGISTER was challenged twice".into())
}

/// The expiry granted: our Contact's `expires` parameter, else Expires, else what we asked;
/// at least 10 seconds so a stingy registrar cannot make us spin.
fn granted(response: &message::Response, asked: u32) -> Duration {
    let from_contact = response.headers_named("Contact").find_map(|c| {
        c.split(';').skip(1).find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("expires")
                .then(|| value.trim().parse::<u32>().ok())
                .flatten()
        })
    });
    let seconds = from_contact
        .or_else(|| {
            response
                .header("Expires")
                .and_then(|e| e.trim().parse().ok())
        })
        .unwrap_or(asked);
    Duration::from_secs(u64::from(seconds.max(10)))
}

/// `received` and `rport` of the topmost Via: where the registrar saw us.
fn via_public(via: &str) -> Option<SocketAddr> {
    let first = via.split(',').next()?;
    let mut received = None;
    let mut rport = None;
    for param in first.split(';').skip(1) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "received" => received = value.trim().parse::<std::net::IpAddr>().ok(),
            "rport" => rport = value.trim().parse::<u16>().ok(),
            _ => {}
        }
    }
    Some(SocketAddr::new(received?, rport?))
}

/// Handles one message that arrived outside a transaction of ours.
async fn serve(
    conn: &mut Connection,
    bytes: &[u8],
    shared: &Shared,
    timing: Timing,
    recent: &mut VecDeque<String>,
) -> Result<(), String> {
    if message::is_response(bytes) {
        return Ok(()); // a late retransmission of an answer already taken
    }
    let Ok(request) = message::parse_request(bytes) else {
        return Ok(()); // keep-alive CRLFs, noise
    };
    let call_id = first(&request, "Call-ID").to_string();
    match request.method.as_str() {
        "INVITE" => {
            // A retransmission of an INVITE already answered: its answer is on its way.
            if recent.contains(&call_id) {
                return Ok(());
            }
            recent.push_back(call_id);
            if recent.len() > 16 {
                recent.pop_front();
            }
            invite(conn, &request, shared, timing).await
        }
        "OPTIONS" | "BYE" | "CANCEL" => send(conn, request.response(200, "OK")).await,
        "ACK" => Ok(()),
        _ => send(conn, request.response(501, "Not Implemented")).await,
    }
}

async fn send(conn: &mut Connection, bytes: Vec<u8>) -> Result<(), String> {
    conn.send(&bytes).await.map_err(|e| e.to_string())
}

fn first<'a>(request: &'a IncomingRequest, name: &'a str) -> &'a str {
    request.headers_named(name).next().unwrap_or_default()
}

/// An INVITE: the waiting run's call, or an unexpected one (480).
async fn invite(
    conn: &mut Connection,
    request: &IncomingRequest,
    shared: &Shared,
    timing: Timing,
) -> Result<(), String> {
    let at = SystemTime::now();
    let (display, user) = caller(first(request, "From"));
    let tag = format!("{:016x}", rand::random::<u64>());
    let Some(waiter) = shared.take_waiter().filter(|w| !w.tx.is_closed()) else {
        shared.unexpected.fetch_add(1, Ordering::Relaxed);
        let caller_id = IncomingCall { at, display, user }.caller_id();
        tracing::warn!(
            phone = %shared.name,
            caller = %caller_id,
            "a call reached the line while no callback check waited; refused with 480"
        );
        return send(
            conn,
            reply(request, 480, "Temporarily Unavailable", &tag, None),
        )
        .await;
    };
    send(conn, reply(request, 180, "Ringing", &tag, None)).await?;
    let call = IncomingCall { at, display, user };
    let Pickup::Reject(status) = waiter.pickup else {
        // The run may have given up just now; the call is still answered and hung up properly.
        let _ = waiter.tx.send(call);
        return answer(conn, request, &tag, timing).await;
    };
    let reason = match status {
        603 => "Decline",
        _ => "Busy Here",
    };
    let _ = waiter.tx.send(call);
    send(conn, reply(request, status, reason, &tag, None)).await
}

/// Answers with 200 and an SDP answer, waits for the ACK, holds the call and hangs up.
async fn answer(
    conn: &mut Connection,
    request: &IncomingRequest,
    tag: &str,
    timing: Timing,
) -> Result<(), String> {
    // An RTP socket for the call's life only: the SDP must name a real port; dropped on return.
    let rtp = tokio::net::UdpSocket::bind(SocketAddr::new(conn.local_addr().ip(), 0))
        .await
        .map_err(|e| format!("cannot open an RTP socket: {e}"))?;
    let media = rtp.local_addr().map_err(|e| e.to_string())?;
    let sdp = super::sdp::offer(media);
    let ok = reply(
        request,
        200,
        "OK",
        tag,
        Some((conn.local_addr(), sdp.clone())),
    );
    send(conn, ok.clone()).await?;
    let call_id = first(request, "Call-ID").to_string();
    let reliable = conn.transport().reliable();
    // Wait for the ACK (resending the 200 over UDP), then hold the call; a BYE from the caller
    // ends it early.
    let ack_by = Instant::now() + Duration::from_secs(4);
    let mut resend = Instant::now() + transaction::T1;
    let mut acked = false;
    let mut hang_up_at = ack_by;
    loop {
        let wake = if acked || reliable {
            hang_up_at
        } else {
            resend.min(hang_up_at)
        };
        // Either a timer (resend the 200, or time to hang up) or a message on the line.
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {
                if Instant::now() >= hang_up_at {
                    break;
                }
                send(conn, ok.clone()).await?;
                resend = Instant::now() + transaction::T1 * 2;
            }
            received = conn.recv() => {
                let bytes = received.map_err(|e| e.to_string())?;
                let Ok(incoming) = message::parse_request(&bytes) else { continue };
                let ours = first(&incoming, "Call-ID") == call_id;
                match incoming.method.as_str() {
                    "ACK" if ours && !acked => {
                        acked = true;
                        hang_up_at = Instant::now() + timing.hold;
                    }
                    "BYE" if ours => return send(conn, incoming.response(200, "OK")).await,
                    "OPTIONS" => send(conn, incoming.response(200, "OK")).await?,
                    // A retransmitted INVITE of this call gets its 200 again; a re-INVITE (a
                    // session refresh, hold) a 200 of its own with our unchanged SDP.
                    "INVITE" if ours => {
                        let media = Some((conn.local_addr(), sdp.clone()));
                        send(conn, reply(&incoming, 200, "OK", tag, media)).await?;
                    }
                    // Another call while this one is up: the line is busy.
                    "INVITE" => send(conn, reply(&incoming, 486, "Busy Here", "busy", None)).await?,
                    _ => {}
                }
            }
        }
    }
    drop(rtp);
    bye(conn, request, tag).await
}

/// Our BYE for the call `invite` set up, through the route the proxy recorded.
async fn bye(conn: &mut Connection, invite: &IncomingRequest, tag: &str) -> Result<(), String> {
    let contact = first(invite, "Contact");
    let target = contact
        .split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(uri, _)| uri)
        .unwrap_or_else(|| contact.split(';').next().unwrap_or_default())
        .trim()
        .to_string();
    if target.is_empty() {
        return Ok(()); // nowhere to send it; the caller's own timers end the call
    }
    let branch = format!("z9hG4bK{:016x}", rand::random::<u64>());
    let local = conn.local_addr();
    let sent_by = match local {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    let mut headers = vec![
        (
            "Via",
            format!(
                "SIP/2.0/{} {sent_by};branch={branch};rport",
                conn.transport().via_name()
            ),
        ),
        ("Max-Forwards", "70".to_string()),
    ];
    // The UAS uses the Record-Route set in the order received (RFC 3261 12.1.1).
    for route in invite.headers_named("Record-Route") {
        headers.push(("Route", route.to_string()));
    }
    headers.extend([
        ("From", format!("{};tag={tag}", first(invite, "To"))),
        ("To", first(invite, "From").to_string()),
        ("Call-ID", first(invite, "Call-ID").to_string()),
        ("CSeq", "1 BYE".to_string()),
        ("User-Agent", crate::USER_AGENT.to_string()),
    ]);
    let request = Request {
        method: "BYE",
        uri: target,
        headers,
        body: None,
    };
    match transaction::non_invite(conn, &request, &branch, Duration::from_secs(8)).await {
        Ok(_) | Err(SipError::Timeout(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// A response to `request` with our To tag; 18x and 2xx carry Record-Route and Contact, and
/// `sdp` (our address, the body) makes it a 200 with an SDP answer.
fn reply(
    request: &IncomingRequest,
    status: u16,
    reason: &str,
    tag: &str,
    sdp: Option<(SocketAddr, String)>,
) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    for value in request.headers_named("Via") {
        out.push_str(&format!("Via: {value}\r\n"));
    }
    if (100..300).contains(&status) {
        for value in request.headers_named("Record-Route") {
            out.push_str(&format!("Record-Route: {value}\r\n"));
        }
    }
    out.push_str(&format!("From: {}\r\n", first(request, "From")));
    let to = first(request, "To");
    if to.contains(";tag=") {
        out.push_str(&format!("To: {to}\r\n"));
    } else {
        out.push_str(&format!("To: {to};tag={tag}\r\n"));
    }
    out.push_str(&format!("Call-ID: {}\r\n", first(request, "Call-ID")));
    out.push_str(&format!("CSeq: {}\r\n", first(request, "CSeq")));
    out.push_str(&format!("User-Agent: {}\r\n", crate::USER_AGENT));
    match sdp {
        Some((local, body)) => {
            let host = match local {
                SocketAddr::V4(a) => a.to_string(),
                SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            };
            out.push_str(&format!(
                "Contact: <sip:{host}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        }
        None => out.push_str("Content-Length: 0\r\n\r\n"),
    }
    out.into_bytes()
}

/// The display name and user part of a From header, made printable.
fn caller(from: &str) -> (Option<String>, Option<String>) {
    let (display, rest) = match from.find('<') {
        Some(i) => (from[..i].trim().trim_matches('"').trim(), &from[i + 1..]),
        None => ("", from),
    };
    let uri = rest.split(['>', ';']).next().unwrap_or_default();
    let user = uri
        .split_once(':')
        .and_then(|(_, r)| r.split_once('@'))
        .map(|(u, _)| message::printable(u, 64))
        .filter(|u| !u.is_empty());
    let display = Some(message::printable(display, 64)).filter(|d| !d.is_empty());
    (display, user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_id_from_from_headers() {
        let (d, u) = caller("\"Shop Dialer\" <sip:+74950001122@shop.example>;tag=1");
        assert_eq!(d.as_deref(), Some("Shop Dialer"));
        assert_eq!(u.as_deref(), Some("+74950001122"));
        let (d, u) = caller("sip:100@127.0.0.1:5070;tag=abc");
        assert_eq!((d, u.as_deref()), (None, Some("100")));
    }

    #[test]
    fn public_address_from_via() {
        assert_eq!(
            via_public(
                "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKx;rport=40000;received=203.0.113.9"
            ),
            Some("203.0.113.9:40000".parse().unwrap())
        );
        assert_eq!(
            via_public("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKx;rport"),
            None
        );
    }
}
