//! The non-INVITE client transaction (RFC 3261 17.1.2): send, retransmit over UDP with timer
//! E (T1 doubling up to T2, then T2 once a provisional answer came), give up at timer F, and
//! return the first final response whose Via branch and CSeq method match the request.
//!
//! Over TCP and TLS the transport retransmits, so the request is sent once. Responses that do
//! not belong to the transaction (stray retransmissions, requests from the server) are ignored.

use super::SipError;
use super::message::{self, Request, Response};
use super::transport::Connection;
use std::time::{Duration, Instant};

/// RTT estimate (RFC 3261 T1).
pub const T1: Duration = Duration::from_millis(500);
/// Longest retransmit interval for non-INVITE requests (RFC 3261 T2).
pub const T2: Duration = Duration::from_secs(4);
/// Non-INVITE transaction timeout, timer F = 64·T1.
pub const TIMER_F: Duration = Duration::from_secs(32);

/// A final response and how long it took.
#[derive(Debug)]
pub struct Exchange {
    /// The final response.
    pub response: Response,
    /// From the first send to the final response.
    pub rtt: Duration,
}

/// Runs one non-INVITE transaction of `request` (whose top Via carries `branch`) on `conn`,
/// giving up after `timer_f`.
pub async fn non_invite(
    conn: &mut Connection,
    request: &Request,
    branch: &str,
    timer_f: Duration,
) -> Result<Exchange, SipError> {
    let bytes = request.to_bytes();
    let started = Instant::now();
    let give_up = tokio::time::Instant::now() + timer_f;
    conn.send(&bytes).await?;
    let reliable = conn.transport().reliable();
    let mut interval = T1;
    let mut next_send = tokio::time::Instant::now() + interval;
    let mut provisional = false;
    loop {
        // Three things can happen first: the transaction times out (timer F), it is time to
        // retransmit (timer E, UDP only), or a message arrives. `recv` is cancel-safe, so losing
        // the race to a timer loses no bytes.
        let wake = if reliable {
            give_up
        } else {
            next_send.min(give_up)
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {
                if tokio::time::Instant::now() >= give_up {
                    return Err(SipError::Timeout(timer_f));
                }
                conn.send(&bytes).await?;
                interval = if provisional { T2 } else { (interval * 2).min(T2) };
                next_send = tokio::time::Instant::now() + interval;
            }
            received = conn.recv() => {
                let received = received?;
                if !message::is_response(&received) {
                    continue;
                }
                let response = match message::parse_response(&received) {
                    Ok(r) => r,
                    // Over UDP a garbled datagram may be noise; on a stream it is the end.
                    Err(e) if reliable => return Err(SipError::Protocol(e)),
                    Err(_) => continue,
                };
                let ours = response.top_branch() == Some(branch)
                    && response.cseq().is_some_and(|(_, m)| m == request.method);
                if !ours {
                    continue;
                }
                if response.is_final() {
                    return Ok(Exchange { response, rtt: started.elapsed() });
                }
                if !provisional {
                    provisional = true;
                    next_send = tokio::time::Instant::now() + T2;
                }
            }
        }
    }
}
