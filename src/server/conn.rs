//! Accepting and serving connections for the built-in web server, within limits.
//!
//! `axum::serve` has no header timeout and no connection limit, so a few hundred idle sockets
//! could use up the file descriptors that outgoing checks need. Here every connection has a
//! deadline for its request head (hyper's `header_read_timeout`, which also ends idle keep-alive
//! connections), the listeners share one cap on open connections, and:
//!
//! - below `max - reserve` open connections, a new connection is served normally;
//! - above, the oldest connection that has not yet sent a request head is closed to make room
//!   (idle sockets never starve a scrape, which sends its request at once);
//! - when none can be closed, the main listener still accepts up to `max` connections, serving
//!   only `/metrics` and `/healthz` on them (the reserve), and the hooks listener refuses;
//! - past `max`, new connections are closed at once.

use crate::metrics::server::ServerMetrics;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// The routes a connection in the reserve may use.
const RESERVED_PATHS: [&str; 2] = ["/metrics", "/healthz"];
/// How long a shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Limits for both listeners together.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Of those, kept for `/metrics` and `/healthz` on the main listener.
    pub reserve: usize,
    /// Time to send a complete request head (and, with TLS, to finish the handshake); also how
    /// long an idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
}

impl Limits {
    /// Limits sized from the file-descriptor limit: a quarter of it for inbound connections,
    /// so that outgoing check connections, mailboxes and the database keep the rest.
    pub fn for_fd_limit(fd_limit: u64, configured: Option<usize>) -> Self {
        let derived = usize::try_from(fd_limit / 4)
            .unwrap_or(usize::MAX)
            .clamp(16, 16_384);
        let max_connections = configured.unwrap_or(derived).max(4);
        Limits {
            max_connections,
            reserve: (max_connections / 8).max(2),
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Which listener; the hooks listener has no reserve (it serves no scrapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `server.listen`.
    Main,
    /// `server.hooks_listen`.
    Hooks,
}

impl Listener {
    fn label(self) -> &'static str {
        match self {
            Listener::Main => "main",
            Listener::Hooks => "hooks",
        }
    }
}

/// Open connections of both listeners: their count, and those still waiting for their first
/// request head (oldest first), which may be closed to make room.
pub struct Tracker {
    limits: Limits,
    metrics: Arc<ServerMetrics>,
    state: Mutex<TrackerState>,
    /// Signalled whenever a connection closes.
    freed: tokio::sync::Notify,
}

#[derive(Default)]
struct TrackerState {
    next_id: u64,
    open: usize,
    /// id → (listener, the token that closes it).
    waiting: BTreeMap<u64, (Listener, CancellationToken)>,
}

/// What a new connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Full,
    ReserveOnly,
}

/// One open connection's place in the [`Tracker`]; leaving it closes the books.
struct Slot {
    id: u64,
    listener: Listener,
    evict: CancellationToken,
    tracker: Arc<Tracker>,
}

impl Slot {
    /// The connection sent a request head: it is in use and no longer closed to make room.
    fn mark_used(&self) {
        self.tracker.lock().waiting.remove(&self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.tracker.lock();
        state.open = state.open.saturating_sub(1);
        state.waiting.remove(&self.id);
        drop(state);
        self.tracker.freed.notify_waiters();
        self.tracker
            .metrics
            .connections_open
            .with_label_values(&[self.listener.label()])
            .dec();
    }
}

impl Tracker {
    /// A tracker for `limits`, counting into `metrics`.
    pub fn new(limits: Limits, metrics: Arc<ServerMetrics>) -> Arc<Self> {
        Arc::new(Tracker {
            limits,
            metrics,
            state: Mutex::new(TrackerState::default()),
            freed: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        // A poisoned lock only means a panic elsewhere mid-update; the counts are still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, listener: Listener, reason: &str) {
        self.metrics
            .connections_closed
            .with_label_values(&[listener.label(), reason])
            .inc();
    }

    /// Waits (at most a second) while evicted connections are still closing and the count is
    /// past `max + reserve`: the next connection waits in the kernel's backlog for the
    /// milliseconds that takes, instead of being refused.
    async fn wait_for_room(&self) {
        let hard = self.limits.max_connections + self.limits.reserve;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            // Registered before the check, so a close in between is not missed.
            let freed = self.freed.notified();
            if self.lock().open < hard || tokio::time::Instant::now() >= deadline {
                return;
            }
            let _ = tokio::time::timeout_at(deadline, freed).await;
        }
    }

    /// Decides about a connection just accepted; `None` means close it now.
    fn admit(self: &Arc<Self>, listener: Listener) -> Option<(Slot, Admission)> {
        let Limits {
            max_connections,
            reserve,
            ..
        } = self.limits;
        let mut state = self.lock();
        let general = max_connections.saturating_sub(reserve);
        let mut admission = Some(Admission::Full);
        if state.open >= general {
            // Make room by closing the connection that has waited longest without a request.
            // Its slot is freed when its task sees the token, a moment later, so the count may
            // briefly exceed `max` by the evictions in flight; `wait_for_room` bounds that.
            if let Some((_, (victim_listener, token))) = state.waiting.pop_first() {
                token.cancel();
                self.count(victim_listener, "evicted");
            } else if state.open < max_connections && listener == Listener::Main {
                admission = Some(Admission::ReserveOnly);
            } else {
                admission = None;
            }
        }
        let Some(admission) = admission else {
            drop(state);
            self.count(listener, "limit");
            return None;
        };
        state.open += 1;
        state.next_id += 1;
        let id = state.next_id;
        let evict = CancellationToken::new();
        state.waiting.insert(id, (listener, evict.clone()));
        drop(state);
        self.metrics
            .connections_open
            .with_label_values(&[listener.label()])
            .inc();
        let slot = Slot {
            id,
            listener,
            evict,
            tracker: self.clone(),
        };
        Some((slot, admission))
    }
}

/// Accepts connections on `listener` until `shutdown`, serving `router` on each (over TLS when
/// `tls` is set).
pub async fn accept_loop(
    listener: tokio::net::TcpListener,
    kind: Listener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tracker: Arc<Tracker>,
    shutdown: CancellationToken,
) {
    // Tracks the connection tasks so a shutdown can wait for requests in flight.
    let connections = tokio_util::task::TaskTracker::new();
    let mut emfile_logged = false;
    loop {
        tracker.wait_for_room().await;
        // Either the next connection or the end; a shutdown stops accepting at once.
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // EMFILE/ENFILE: out of descriptors. Go's net/http backs off the same way; a
                // tight retry loop would spin a core while nothing can be accepted.
                if !emfile_logged {
                    tracing::warn!(%error, listener = kind.label(), "cannot accept connections");
                    emfile_logged = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        emfile_logged = false;
        let Some((slot, admission)) = tracker.admit(kind) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        let timeout = tracker.limits.header_read_timeout;
        // One task per connection; it ends when the client leaves, the head times out, the
        // connection is closed to make room, or the server shuts down.
        connections.spawn(async move {
            match tls {
                None => serve_connection(stream, slot, admission, router, timeout, shutdown).await,
                Some(acceptor) => {
                    // The handshake counts against the head's deadline, and the connection can
                    // still be closed to make room while it runs.
                    let handshake = tokio::select! {
                        _ = slot.evict.cancelled() => return,
                        done = tokio::time::timeout(timeout, acceptor.accept(stream)) => done,
                    };
                    match handshake {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, slot, admission, router, timeout, shutdown)
                                .await
                        }
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => slot.tracker.count(slot.listener, "header_timeout"),
                    }
                }
            }
        });
    }
    connections.close();
    // Requests in flight get a moment to finish; connections end themselves on `shutdown`.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connections.wait()).await;
}

async fn serve_connection<IO>(
    io: IO,
    slot: Slot,
    admission: Admission,
    router: Router,
    timeout: Duration,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slot = Arc::new(slot);
    let service_slot = slot.clone();
    let to_hyper = hyper_util::service::TowerToHyperService::new(router);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        service_slot.mark_used();
        let refuse =
            admission == Admission::ReserveOnly && !RESERVED_PATHS.contains(&request.uri().path());
        if refuse {
            service_slot
                .tracker
                .count(service_slot.listener, "reserve_only");
            return futures::future::Either::Left(std::future::ready(Ok::<_, Infallible>(busy())));
        }
        futures::future::Either::Right(hyper::service::Service::call(&to_hyper, request))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(64 * 1024);
    if admission == Admission::ReserveOnly {
        // A reserve slot serves one request, then goes back to the pool.
        builder.keep_alive(false);
    }
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    // The connection runs until it ends by itself, is closed to make room, or the server stops
    // (then the request in flight, if any, may finish).
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = slot.evict.cancelled() => return,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result
        && error.is_timeout()
    {
        slot.tracker.count(slot.listener, "header_timeout");
    }
}

fn busy() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::CONNECTION, "close")],
        "too many connections; only /metrics and /healthz are served now\n",
    )
        .into_response()
}

/// Raises the soft limit on open files to the hard limit (as Go's runtime and most servers do),
/// so inbound connections and outgoing checks do not share a needlessly small budget. Returns
/// the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current != Some(hard)
    {
        limit.current = Some(hard);
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(%error, "cannot raise the open-files limit");
        }
    }
    // `None` is unlimited; the connection cap is clamped anyway.
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(max: usize, reserve: usize) -> Arc<Tracker> {
        let metrics = crate::metrics::Metrics::new();
        let limits = Limits {
            max_connections: max,
            reserve,
            header_read_timeout: Duration::from_secs(1),
        };
        Tracker::new(limits, metrics.server.clone())
    }

    #[test]
    fn idle_connections_make_room_and_busy_ones_leave_the_reserve() {
        let tracker = tracker(4, 2);
        let a = tracker.admit(Listener::Main).unwrap();
        let b = tracker.admit(Listener::Main).unwrap();
        assert_eq!((a.1, b.1), (Admission::Full, Admission::Full));
        // Full: the oldest idle connection (a) is closed to make room.
        let c = tracker.admit(Listener::Main).unwrap();
        assert_eq!(c.1, Admission::Full);
        assert!(a.0.evict.is_cancelled());
        drop(a);
        // All in use: the main listener gets the reserve, the hooks listener nothing.
        b.0.mark_used();
        c.0.mark_used();
        assert!(tracker.admit(Listener::Hooks).is_none());
        let d = tracker.admit(Listener::Main).unwrap();
        assert_eq!(d.1, Admission::ReserveOnly);
        d.0.mark_used();
        let e = tracker.admit(Listener::Main).unwrap();
        assert_eq!(e.1, Admission::ReserveOnly);
        e.0.mark_used();
        assert!(tracker.admit(Listener::Main).is_none());
        drop(b);
        assert_eq!(
            tracker.admit(Listener::Main).unwrap().1,
            Admission::ReserveOnly
        );
    }
}
